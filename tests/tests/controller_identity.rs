//! Each controller acts as its own ServiceAccount (kube-controller-manager's
//! `--use-service-account-credentials`), with its own role: the accounts
//! exist, the roles allow what the controller does and not more, and the
//! audit log names the controller's account for what it wrote.

use std::time::Duration;

use keel_tests::server::KeelServer;
use keel_tests::wait_until;
use serde_json::Value;

fn json(out: std::process::Output) -> Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `kubectl auth can-i VERB WHAT` as `who`; `WHAT` may name a
/// subresource (`pods/binding`).
fn can_i(s: &KeelServer, who: &str, verb: &str, what: &str) -> bool {
    let (resource, sub) = what.split_once('/').unwrap_or((what, ""));
    let mut c = s.admin(&[
        "auth", "can-i", verb, resource, "--as", who, "-n", "default",
    ]);
    if !sub.is_empty() {
        c.args(["--subresource", sub]);
    }
    let out = c.output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim() == "yes"
}

#[test]
fn every_controller_runs_as_its_own_account_with_its_own_role() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.log");
    let s = KeelServer::start_in(dir, &[&"--audit-log-path", &audit]);
    let accounts: Vec<String> = keel_controllers::manager::CONTROLLERS
        .iter()
        .map(|(name, _)| keel_controllers::credentials::account(name))
        .collect();

    // The manager makes every account once it leads.
    wait_until(
        "every controller's account",
        Duration::from_secs(60),
        || {
            let sas = json(
                s.admin(&["get", "serviceaccounts", "-n", "kube-system", "-o", "json"])
                    .output()
                    .unwrap(),
            );
            let have: Vec<&str> = sas["items"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|i| i["metadata"]["name"].as_str())
                .collect();
            accounts
                .iter()
                .all(|a| have.contains(&a.as_str()))
                .then_some(())
        },
    );

    // Every account is bound to a role.
    let bindings = json(
        s.admin(&["get", "clusterrolebindings", "-o", "json"])
            .output()
            .unwrap(),
    );
    for a in &accounts {
        let bound = bindings["items"].as_array().unwrap().iter().any(|b| {
            b["subjects"].as_array().is_some_and(|subjects| {
                subjects.iter().any(|x| {
                    x["kind"] == "ServiceAccount"
                        && x["namespace"] == "kube-system"
                        && x["name"] == a.as_str()
                })
            })
        });
        assert!(bound, "the account {a} is bound to no ClusterRole");
    }

    // Each role allows its controller's work, and not another's.
    let sa = |a: &str| format!("system:serviceaccount:kube-system:{a}");
    assert!(can_i(&s, &sa("replicaset-controller"), "create", "pods"));
    assert!(!can_i(&s, &sa("replicaset-controller"), "get", "secrets"));
    assert!(!can_i(
        &s,
        &sa("replicaset-controller"),
        "create",
        "deployments.apps"
    ));
    assert!(can_i(
        &s,
        &sa("deployment-controller"),
        "create",
        "replicasets.apps"
    ));
    assert!(!can_i(&s, &sa("deployment-controller"), "create", "pods"));
    assert!(can_i(&s, &sa("kube-scheduler"), "create", "pods/binding"));
    assert!(!can_i(&s, &sa("kube-scheduler"), "delete", "nodes"));
    assert!(can_i(
        &s,
        &sa("statefulset-controller"),
        "create",
        "persistentvolumeclaims"
    ));
    assert!(can_i(&s, &sa("node-controller"), "patch", "nodes"));
    assert!(!can_i(&s, &sa("endpoint-controller"), "create", "pods"));

    // The garbage collector deletes an orphan as its own account.
    let orphan = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"orphan","namespace":"default",
        "ownerReferences":[{"apiVersion":"v1","kind":"ConfigMap","name":"gone","uid":"0b9a4c0e-0000-4000-8000-000000000001"}]}}"#;
    let out =
        keel_tests::server::output_with_stdin(s.admin(&["create", "-f", "-"]), orphan.as_bytes());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = wait_until(
        "the collector's delete in the audit log",
        Duration::from_secs(60),
        || {
            std::fs::read_to_string(&audit)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find(|e| {
                    e["verb"] == "delete"
                        && e["objectRef"]["resource"] == "configmaps"
                        && e["objectRef"]["name"] == "orphan"
                        && e["responseStatus"]["code"]
                            .as_u64()
                            .is_some_and(|c| c < 300)
                })
        },
    );
    assert_eq!(
        line["user"]["username"],
        sa("generic-garbage-collector"),
        "{line}"
    );
    // The lease is held by the manager's own identity, not the admin.
    let log = std::fs::read_to_string(&audit).unwrap();
    let lease_writer = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|e| {
            // A create's objectRef has no name: the lease is the only one
            // in kube-system until nodes register.
            e["objectRef"]["resource"] == "leases"
                && e["objectRef"]["namespace"] == "kube-system"
                && (e["verb"] == "create" || e["objectRef"]["name"] == "keel-controller-manager")
                && e["verb"] != "get"
                && e["responseStatus"]["code"]
                    .as_u64()
                    .is_some_and(|c| c < 300)
        })
        .unwrap_or_else(|| {
            let leases: Vec<&str> = log.lines().filter(|l| l.contains("leases")).collect();
            panic!("no write of the controller lease in {leases:#?}")
        });
    assert_eq!(
        lease_writer["user"]["username"],
        "system:kube-controller-manager"
    );
}
