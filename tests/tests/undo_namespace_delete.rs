//! docs/runbooks/undo-namespace-delete.md, step by step, against a real
//! server and kubectl: a namespace with a ConfigMap, a Secret and a
//! Deployment is deleted; the archive log names the delete's revision; a
//! scratch restore to the revision before it and `keel replay --for-apply`
//! export the namespace; once the deletion has finished, `kubectl apply`
//! brings every object back with its data.

use std::process::{Command, Output};

use keel_tests::server::{KeelServer, output_with_stdin, succeeded as ok};
use keel_tests::{keel_bin, wait_until};

fn keel(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    Command::new(keel_bin()).args(args).output().unwrap()
}

const TEAM: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: team
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: team
data:
  mode: blue
  level: "7"
---
apiVersion: v1
kind: Secret
metadata:
  name: db
  namespace: team
stringData:
  password: hunter2
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: team
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx:1.27
"#;

fn field(s: &KeelServer, args: &[&str]) -> String {
    ok(s.admin(args).output().unwrap(), "kubectl get")
}

#[test]
fn the_runbook_brings_a_deleted_namespace_back() {
    let work = tempfile::tempdir().unwrap();
    let archive = work.path().join("archive");
    let s = KeelServer::start(&[&"--archive-dir", &archive, &"--archive-max-delay-s", &"1"]);
    ok(
        output_with_stdin(s.admin(&["apply", "-f", "-"]), TEAM.as_bytes()),
        "apply",
    );
    // What you need: a backup from before the accident.
    let backup = work.path().join("backup.keel");
    ok(
        keel(&[
            &"snapshot",
            &"save",
            &backup,
            &"--addr",
            &s.peer_addr(),
            &"--data-dir",
            &s.data(),
        ]),
        "keel snapshot save",
    );
    ok(
        s.admin(&[
            "patch",
            "configmap",
            "settings",
            "-n",
            "team",
            "-p",
            r#"{"data":{"mode":"green"}}"#,
        ])
        .output()
        .unwrap(),
        "a change after the backup",
    );
    let before = field(
        &s,
        &[
            "get",
            "namespace",
            "team",
            "-o",
            "jsonpath={.metadata.resourceVersion}",
        ],
    );
    let last_rv: u64 = {
        let list = field(&s, &["get", "--raw", "/api/v1/namespaces/team/configmaps"]);
        let v: serde_json::Value = serde_json::from_str(&list).unwrap();
        v["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(!before.is_empty());

    // The accident.
    ok(
        s.admin(&["delete", "namespace", "team", "--wait=false"])
            .output()
            .unwrap(),
        "delete",
    );

    // 1. Find the revision of the delete (once the archive covers it).
    let log = wait_until(
        "the archive to hold the delete",
        std::time::Duration::from_secs(60),
        || {
            let status = ok(
                keel(&[&"archive", &"status", &archive]),
                "keel archive status",
            );
            let log = ok(
                keel(&[
                    &"archive",
                    &"log",
                    &archive,
                    &"--prefix",
                    &"/registry/core/namespaces/team",
                ]),
                "keel archive log",
            );
            let covered = status.lines().any(|l| {
                l.strip_prefix("covers:")
                    .and_then(|r| r.split_whitespace().last())
                    .and_then(|n| n.parse::<u64>().ok())
                    .is_some_and(|to| to > last_rv)
            });
            (covered && log.lines().any(|l| l.contains(" updated "))).then_some(log)
        },
    );
    let delete_rev: u64 = log
        .lines()
        .filter_map(|l| l.split_whitespace().next()?.parse::<u64>().ok())
        .find(|rev| *rev > last_rv)
        .unwrap_or_else(|| panic!("no change after {last_rv} in\n{log}"));
    assert!(
        log.lines()
            .any(|l| l.starts_with(&delete_rev.to_string()) && l.contains(" updated ")),
        "{log}"
    );

    // 2. Rebuild the state before the delete, aside.
    let scratch = work.path().join("before-delete");
    ok(
        keel(&[
            &"restore",
            &backup,
            &"--archive",
            &archive,
            &"--to-revision",
            &(delete_rev - 1).to_string(),
            &"--data-dir",
            &scratch,
        ]),
        "keel restore",
    );
    // 3. Export the namespace, ready to apply.
    let yaml = ok(
        keel(&[
            &"replay",
            &"--data-dir",
            &scratch,
            &"-n",
            &"team",
            &"--for-apply",
            &"--encryption-config",
            &s.data().join("pki").join("encryption-config.yaml"),
        ]),
        "keel replay",
    );
    // Only the list's own resourceVersion (the revision it shows) remains.
    assert_eq!(yaml.matches("\"resourceVersion\"").count(), 1, "{yaml}");
    assert!(!yaml.contains("kind\": \"ReplicaSet"), "{yaml}");
    // 4. Wait until the namespace is gone, then apply.
    ok(
        s.admin(&["wait", "--for=delete", "namespace/team", "--timeout=120s"])
            .output()
            .unwrap(),
        "kubectl wait --for=delete",
    );
    ok(
        output_with_stdin(s.admin(&["apply", "-f", "-"]), yaml.as_bytes()),
        "kubectl apply",
    );

    // 5. Check: every object is back with its data as of just before the delete.
    assert_eq!(
        field(
            &s,
            &[
                "get",
                "cm",
                "settings",
                "-n",
                "team",
                "-o",
                "jsonpath={.data.mode}/{.data.level}"
            ]
        ),
        "green/7"
    );
    assert_eq!(
        field(
            &s,
            &[
                "get",
                "secret",
                "db",
                "-n",
                "team",
                "-o",
                "jsonpath={.data.password}"
            ]
        ),
        "aHVudGVyMg=="
    );
    assert_eq!(
        field(
            &s,
            &[
                "get",
                "deployment",
                "web",
                "-n",
                "team",
                "-o",
                "jsonpath={.spec.replicas}/{.spec.template.spec.containers[0].image}"
            ]
        ),
        "2/nginx:1.27"
    );
    assert_eq!(
        field(
            &s,
            &["get", "namespace", "team", "-o", "jsonpath={.status.phase}"]
        ),
        "Active"
    );
}
