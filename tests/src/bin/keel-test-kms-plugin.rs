//! `keel-test-kms-plugin --socket PATH --key-file PATH [--key-id ID]`: the
//! test KMS v2 plugin ([`keel_tests::kms_plugin`]) as a process, for tests
//! that run `keel server`. Its key is read from the key file (32 bytes),
//! which is created on first start so a restarted plugin unwraps what it
//! wrapped before. Each call is printed to stderr.

use std::path::PathBuf;

use keel_tests::kms_plugin::{Plugin, serve};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (mut socket, mut key_file, mut key_id) = (None, None, "key-1".to_string());
    while let Some(a) = args.next() {
        let value = args.next().ok_or(format!("{a} needs a value"))?;
        match a.as_str() {
            "--socket" => socket = Some(PathBuf::from(value)),
            "--key-file" => key_file = Some(PathBuf::from(value)),
            "--key-id" => key_id = value,
            _ => return Err(format!("unknown option {a}").into()),
        }
    }
    let socket = socket.ok_or("--socket is required")?;
    let key_file = key_file.ok_or("--key-file is required")?;
    let secret: [u8; 32] = match std::fs::read(&key_file) {
        Ok(b) => b
            .try_into()
            .map_err(|_| "the key file must hold 32 bytes")?,
        Err(_) => {
            let s = keel_apiserver::encryption::aesgcmsiv::random_secret();
            std::fs::write(&key_file, s)?;
            s
        }
    };
    let mut plugin = Plugin::new(secret, &key_id);
    std::sync::Arc::get_mut(&mut plugin)
        .expect("not shared yet")
        .log = true;
    let task = serve(&socket, plugin)?;
    eprintln!("kms: serving on {}", socket.display());
    task.await?;
    Ok(())
}
