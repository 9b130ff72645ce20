//! Compiles the member protocol with the vendored protoc, so no system protoc is needed.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; nothing else reads the environment concurrently.
    unsafe { std::env::set_var("PROTOC", protoc) };
    println!("cargo:rerun-if-changed=proto/keel/member.proto");
    // Messages and clients here; the servers below.
    tonic_prost_build::configure()
        .build_server(false)
        .compile_protos(&["proto/keel/member.proto"], &["proto"])?;
    // The servers, on the messages above, except that `Kv.Watch` sends
    // `wire::WatchReply` (wire-identical, its events encoded once and shared
    // by every watcher).
    let wire = std::path::PathBuf::from(std::env::var("OUT_DIR")?).join("wire");
    std::fs::create_dir_all(&wire)?;
    tonic_prost_build::configure()
        .build_client(false)
        .out_dir(&wire)
        .extern_path(".keel.member", "crate::member")
        .extern_path(".keel.member.WatchReply", "crate::wire::WatchReply")
        .compile_protos(&["proto/keel/member.proto"], &["proto"])?;
    // Kubernetes' KMS v2 plugin API (secrets encrypted at rest).
    println!("cargo:rerun-if-changed=proto/kms/v2/api.proto");
    tonic_prost_build::configure().compile_protos(&["proto/kms/v2/api.proto"], &["proto"])?;
    Ok(())
}
