//! The audit log of a real `keel server` driven by the real kubectl: every
//! request is one `audit.k8s.io/v1` Event line naming the user (and the user
//! it impersonated), the Kubernetes verb, the object and the answer's code,
//! at the Metadata level: no request or response body reaches the file.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use keel_tests::{free_port, keel_bin, wait_until};
use serde_json::Value;

struct Server {
    child: Child,
    dir: tempfile::TempDir,
    data: PathBuf,
    audit: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let audit = dir.path().join("audit").join("audit.log");
    let log = std::fs::File::create(dir.path().join("keel.log")).unwrap();
    let child = Command::new(keel_bin())
        .args(["server", "--data-dir"])
        .arg(&data)
        .args(["--peer-addr", &format!("127.0.0.1:{}", free_port())])
        .args(["--http-addr", &format!("127.0.0.1:{}", free_port())])
        .args(["--api-addr", &format!("127.0.0.1:{}", free_port())])
        .arg("--audit-log-path")
        .arg(&audit)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let s = Server {
        child,
        dir,
        data,
        audit,
    };
    wait_until("the API to serve", Duration::from_secs(60), || {
        (s.data.join("kubeconfig").exists()
            && kubectl(&s, &["get", "ns", "default"]).status.success())
        .then_some(())
    });
    s
}

fn kubectl(s: &Server, args: &[&str]) -> Output {
    let bin = Path::new("/usr/bin/kubectl");
    assert!(bin.exists(), "kubectl is missing: run `make deps`");
    let mut c = Command::new(bin);
    c.env("HOME", s.dir.path().join("home"))
        .arg("--kubeconfig")
        .arg(s.data.join("kubeconfig"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c.output().unwrap()
}

fn events(s: &Server) -> Vec<Value> {
    std::fs::read_to_string(&s.audit)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("every audit line is one JSON event"))
        .collect()
}

/// The first event `matches` accepts, waited for with a deadline (the
/// writer flushes shortly after each request); the events seen so far are
/// in the failure.
fn find(s: &Server, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let seen = events(s);
        if let Some(e) = seen.iter().find(|e| matches(e)) {
            return e.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no audit event for {what}; events:\n{}",
            seen.iter()
                .map(Value::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn each_request_is_one_metadata_event_with_user_verb_object_and_code() {
    let s = start();
    let secret_value = "audit-must-not-see-this-3f9c1";
    let created = kubectl(
        &s,
        &[
            "create",
            "configmap",
            "audited",
            "-n",
            "default",
            &format!("--from-literal=k={secret_value}"),
            "--dry-run=client",
            "-o",
            "json",
        ],
    );
    assert!(created.status.success(), "{created:?}");
    let mut apply = Command::new("/usr/bin/kubectl");
    apply
        .env("HOME", s.dir.path().join("home"))
        .arg("--kubeconfig")
        .arg(s.data.join("kubeconfig"))
        .args(["create", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = apply.spawn().unwrap();
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(&created.stdout)
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");

    let create = find(&s, "the create event", |e| {
        e["verb"] == "create" && e["objectRef"]["resource"] == "configmaps"
    });
    assert_eq!(create["kind"], "Event");
    assert_eq!(create["apiVersion"], "audit.k8s.io/v1");
    assert_eq!(create["level"], "Metadata");
    assert_eq!(create["stage"], "ResponseComplete");
    assert_eq!(create["user"]["username"], "admin");
    assert!(
        create["user"]["groups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g == "system:masters"),
        "{create}"
    );
    assert_eq!(create["objectRef"]["resource"], "configmaps");
    assert_eq!(create["objectRef"]["namespace"], "default");
    assert_eq!(create["objectRef"]["apiVersion"], "v1");
    assert_eq!(create["responseStatus"]["code"], 201);
    assert!(create["auditID"].as_str().is_some_and(|id| !id.is_empty()));
    assert!(create["requestReceivedTimestamp"].as_str().is_some());
    assert!(create["sourceIPs"][0] == "127.0.0.1", "{create}");

    // Impersonated and refused: both users, the list verb, the 403.
    let denied = kubectl(&s, &["get", "secrets", "-n", "default", "--as", "bob"]);
    assert!(!denied.status.success());
    let list = find(&s, "bob's refused list", |e| {
        e["impersonatedUser"]["username"] == "bob" && e["objectRef"]["resource"] == "secrets"
    });
    assert_eq!(list["user"]["username"], "admin");
    assert_eq!(list["verb"], "list");
    assert_eq!(list["responseStatus"]["code"], 403);

    // Metadata level: no body, so no value of the object.
    let text = std::fs::read_to_string(&s.audit).unwrap();
    assert!(
        !text.contains(secret_value),
        "a request body reached the audit log"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&s.audit).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the audit log is readable by others");
}
