//! kubectl ≥ 1.32 sends its imperative `create secret|configmap|namespace|
//! serviceaccount|role|rolebinding|clusterrole|clusterrolebinding` as
//! protobuf bodies: against a real `keel server` each is stored as the same
//! object JSON would have made, and RBAC acts on the roles made that way.

use keel_tests::server::KeelServer;
use serde_json::Value;

fn run(s: &KeelServer, args: &[&str]) -> String {
    let out = s.admin(args).output().unwrap();
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn get(s: &KeelServer, args: &[&str]) -> Value {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", "json"]);
    serde_json::from_str(&run(s, &all)).unwrap()
}

#[test]
fn kubectl_create_commands_send_protobuf_and_are_stored() {
    let s = KeelServer::start(&[]);
    run(&s, &["create", "namespace", "team-a"]);
    assert_eq!(
        get(&s, &["namespace", "team-a"])["status"]["phase"],
        "Active"
    );

    run(
        &s,
        &[
            "create",
            "secret",
            "generic",
            "db",
            "-n",
            "team-a",
            "--from-literal=password=p4ss",
            "--type=Opaque",
        ],
    );
    let secret = get(&s, &["secret", "db", "-n", "team-a"]);
    // base64("p4ss")
    assert_eq!(secret["data"]["password"], "cDRzcw==");
    assert_eq!(secret["type"], "Opaque");

    run(
        &s,
        &[
            "create",
            "configmap",
            "conf",
            "-n",
            "team-a",
            "--from-literal=mode=fast",
        ],
    );
    assert_eq!(
        get(&s, &["configmap", "conf", "-n", "team-a"])["data"]["mode"],
        "fast"
    );

    run(&s, &["create", "serviceaccount", "robot", "-n", "team-a"]);
    assert_eq!(
        get(&s, &["serviceaccount", "robot", "-n", "team-a"])["metadata"]["name"],
        "robot"
    );

    run(
        &s,
        &[
            "create",
            "role",
            "pod-reader",
            "-n",
            "team-a",
            "--verb=get,list",
            "--resource=pods",
        ],
    );
    let role = get(&s, &["role", "pod-reader", "-n", "team-a"]);
    assert_eq!(
        role["rules"][0]["verbs"],
        serde_json::json!(["get", "list"])
    );
    assert_eq!(role["rules"][0]["resources"], serde_json::json!(["pods"]));
    run(
        &s,
        &[
            "create",
            "rolebinding",
            "alice-reads",
            "-n",
            "team-a",
            "--role=pod-reader",
            "--user=alice",
        ],
    );
    run(
        &s,
        &[
            "create",
            "clusterrole",
            "secret-lister",
            "--verb=list",
            "--resource=secrets",
        ],
    );
    run(
        &s,
        &[
            "create",
            "clusterrolebinding",
            "ops-list",
            "--clusterrole=secret-lister",
            "--group=ops",
        ],
    );
    let binding = get(&s, &["clusterrolebinding", "ops-list"]);
    assert_eq!(binding["roleRef"]["name"], "secret-lister");
    assert_eq!(binding["subjects"][0]["name"], "ops");

    // The roles made from protobuf bodies grant what they say.
    let can = |args: &[&str]| {
        let mut all = vec!["auth", "can-i"];
        all.extend_from_slice(args);
        let out = s.admin(&all).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    keel_tests::wait_until(
        "the RBAC index to see the new roles",
        std::time::Duration::from_secs(20),
        || {
            (can(&["get", "pods", "-n", "team-a", "--as", "alice"]) == "yes"
                && can(&["list", "secrets", "--as", "bob", "--as-group", "ops"]) == "yes")
                .then_some(())
        },
    );
    assert_eq!(
        can(&["delete", "pods", "-n", "team-a", "--as", "alice"]),
        "no"
    );
}
