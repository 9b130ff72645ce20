//! Compiles the member protocol with the vendored protoc, so no system protoc is needed.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; nothing else reads the environment concurrently.
    unsafe { std::env::set_var("PROTOC", protoc) };
    println!("cargo:rerun-if-changed=proto/keel/member.proto");
    tonic_prost_build::configure().compile_protos(&["proto/keel/member.proto"], &["proto"])?;
    // Kubernetes' KMS v2 plugin API (secrets encrypted at rest).
    println!("cargo:rerun-if-changed=proto/kms/v2/api.proto");
    tonic_prost_build::configure().compile_protos(&["proto/kms/v2/api.proto"], &["proto"])?;
    Ok(())
}
