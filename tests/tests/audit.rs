//! The audit log of a real `keel server` driven by the real kubectl: every
//! request is one `audit.k8s.io/v1` Event line naming the user (and the user
//! it impersonated), the Kubernetes verb, the object and the answer's code,
//! at the Metadata level: no request or response body reaches the file.

use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::time::Duration;

use keel_tests::server::{KeelServer, output_with_stdin};
use serde_json::Value;

struct Server {
    keel: KeelServer,
    audit: PathBuf,
}

fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit").join("audit.log");
    let keel = KeelServer::start_in(dir, &[&"--audit-log-path", &audit]);
    Server { keel, audit }
}

fn kubectl(s: &Server, args: &[&str]) -> Output {
    s.keel
        .admin(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap()
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
    let out = output_with_stdin(s.keel.admin(&["create", "-f", "-"]), &created.stdout);
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
