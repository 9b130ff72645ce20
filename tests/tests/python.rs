//! The official Python `kubernetes` client (installed by `make deps`) against
//! a `keel server` process: tests/python/client.py lists, creates, updates
//! with a conflict and resumes a watch across a reconnect.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use keel_tests::server::KeelServer;
use keel_tests::wait_until;

#[test]
fn python_kubernetes_client_works_unchanged() {
    let server = KeelServer::start(&[]);
    let kubeconfig = server.kubeconfig();
    // `make deps` puts the client in a venv and exports KEEL_PYTHON.
    let python = std::env::var("KEEL_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python/client.py");
    // The default namespaces appear shortly after start; the script retries nothing, so wait.
    let out = wait_until("the default namespace", Duration::from_secs(60), || {
        let o = Command::new(&python)
            .arg(&script)
            .arg(&kubeconfig)
            .output()
            .expect("python3");
        let text = String::from_utf8_lossy(&o.stderr).into_owned();
        (o.status.success() || !text.contains("\"default\" in names")).then_some(o)
    });
    drop(server);
    assert!(
        out.status.success(),
        "python client failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("python client: ok"));
}
