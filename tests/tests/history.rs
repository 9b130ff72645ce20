//! Object history and time-travel reads against a real server: `keel
//! history` lists every change of a ConfigMap (creates, updates by two
//! users, a delete and a re-create) with diffs, including changes that
//! retention already compacted away (served from the event archive); the
//! `keel.dev` endpoint refuses a user who may not get the object; a GET
//! with `resourceVersionMatch=Exact` returns the object as it was.

use std::process::Command;
use std::time::Duration;

use keel_tests::server::{KeelServer, output_with_stdin, succeeded as ok};
use keel_tests::{keel_bin, wait_until};

fn cm(mode: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: team\ndata:\n  mode: {mode}\n"
    )
}

fn rv(s: &KeelServer) -> u64 {
    ok(
        s.admin(&[
            "get",
            "cm",
            "settings",
            "-n",
            "team",
            "-o",
            "jsonpath={.metadata.resourceVersion}",
        ])
        .output()
        .unwrap(),
        "get rv",
    )
    .parse()
    .unwrap()
}

#[test]
fn history_lists_every_change_with_users_and_diffs_even_after_compaction() {
    let work = tempfile::tempdir().unwrap();
    let archive = work.path().join("archive");
    let mut s = KeelServer::start(&[
        &"--archive-dir",
        &archive,
        &"--archive-max-delay-s",
        &"1",
        &"--retain-events",
        &"30",
    ]);
    let alice = s.user_kubeconfig("alice", &["system:masters"]);
    ok(
        s.admin(&["create", "namespace", "team"]).output().unwrap(),
        "create ns",
    );
    ok(
        output_with_stdin(s.admin(&["apply", "-f", "-"]), cm("blue").as_bytes()),
        "create",
    );
    let first = rv(&s);
    let mut as_alice = s.kubectl();
    as_alice
        .arg("--kubeconfig")
        .arg(&alice)
        .args(["apply", "-f", "-"]);
    ok(
        output_with_stdin(as_alice, cm("green").as_bytes()),
        "alice's update",
    );
    let second = rv(&s);

    // A time-travel read inside the retained window.
    let old = ok(
        s.admin(&[
            "get",
            "--raw",
            &format!("/api/v1/namespaces/team/configmaps/settings?resourceVersion={first}&resourceVersionMatch=Exact"),
        ])
        .output()
        .unwrap(),
        "GET Exact",
    );
    let old: serde_json::Value = serde_json::from_str(&old).unwrap();
    assert_eq!(old["data"]["mode"], "blue");
    assert_eq!(old["metadata"]["resourceVersion"], first.to_string());

    ok(
        s.admin(&["delete", "cm", "settings", "-n", "team"])
            .output()
            .unwrap(),
        "delete",
    );
    ok(
        output_with_stdin(s.admin(&["apply", "-f", "-"]), cm("red").as_bytes()),
        "re-create",
    );
    // Enough other writes for retention to compact the first changes away.
    for i in 0..40 {
        ok(
            s.admin(&[
                "create",
                "cm",
                &format!("churn{i}"),
                "-n",
                "team",
                "--from-literal=i=1",
            ])
            .output()
            .unwrap(),
            "churn",
        );
    }
    let gone = wait_until(
        "retention to compact the first change",
        Duration::from_secs(60),
        || {
            let out = s
            .admin(&[
                "get",
                "--raw",
                &format!("/api/v1/namespaces/team/configmaps?resourceVersion={second}&resourceVersionMatch=Exact"),
            ])
            .output()
            .unwrap();
            let err = String::from_utf8_lossy(&out.stderr).into_owned();
            (!out.status.success()
                && (err.contains("Expired") || err.contains("410") || err.contains("too old")))
            .then_some(err)
        },
    );
    assert!(!gone.is_empty());
    let last = rv(&s);
    wait_until(
        "the archive to cover the last change",
        Duration::from_secs(60),
        || {
            let entries = keel_store::archive::open(&archive).ok()?;
            keel_store::archive::span(&entries)
                .is_some_and(|(_, to)| to >= last)
                .then_some(())
        },
    );

    let text = ok(
        Command::new(keel_bin())
            .args([
                "history",
                "configmap/settings",
                "-n",
                "team",
                "--kubeconfig",
            ])
            .arg(s.kubeconfig())
            .output()
            .unwrap(),
        "keel history",
    );
    let rows: Vec<&str> = text
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .next()
                .is_some_and(|w| w.parse::<u64>().is_ok())
        })
        .collect();
    let ops: Vec<&str> = rows
        .iter()
        .map(|l| l.split_whitespace().nth(2).unwrap())
        .collect();
    assert_eq!(ops, ["Create", "Update", "Delete", "Create"], "{text}");
    assert!(rows[0].starts_with(&first.to_string()), "{text}");
    assert!(
        rows[1].starts_with(&second.to_string()) && rows[1].ends_with("alice"),
        "{text}"
    );
    assert!(
        text.contains("~ data.mode: \"blue\" -> \"green\""),
        "{text}"
    );

    // The endpoint itself, as another client reads it.
    let body = ok(
        s.admin(&[
            "get",
            "--raw",
            "/apis/keel.dev/v1/history/core/v1/namespaces/team/configmaps/settings",
        ])
        .output()
        .unwrap(),
        "history endpoint",
    );
    let h: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(h["kind"], "ObjectHistory");
    let modes: Vec<&str> = h["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["object"]["data"]["mode"].as_str().unwrap())
        .collect();
    assert_eq!(modes, ["blue", "green", "green", "red"]);
    assert!(h["gaps"].as_array().unwrap().is_empty(), "{h}");

    // A watch from before the retained window, once the server restarted
    // (its watch cache's ring of recent events starts afresh): 410 without
    // the opt-in, the archive's replay with it.
    s.restart();
    let watch = |extra: &str| {
        let out = s
            .curl(&[
                "--max-time",
                "30",
                &format!(
                    "BASE/api/v1/namespaces/team/configmaps?watch=true&resourceVersion={first}&timeoutSeconds=3{extra}"
                ),
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let refused = watch("");
    assert!(refused.contains("\"code\":410"), "{refused}");
    let replayed = watch("&keelFromArchive=true");
    let events: Vec<serde_json::Value> = replayed
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let settings: Vec<(String, String)> = events
        .iter()
        .filter(|e| e["object"]["metadata"]["name"] == "settings")
        .map(|e| {
            (
                e["type"].as_str().unwrap().to_string(),
                e["object"]["data"]["mode"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect();
    assert_eq!(
        settings,
        [
            ("MODIFIED", "green"),
            ("DELETED", "green"),
            ("ADDED", "red")
        ]
        .map(|(a, b)| (a.to_string(), b.to_string())),
        "{replayed}"
    );
    assert_eq!(
        events.iter().filter(|e| e["type"] == "ADDED").count(),
        41,
        "the re-create and 40 churn ConfigMaps"
    );

    // Someone who may not get the ConfigMap may not read its history.
    let mallory = s.user_kubeconfig("mallory", &[]);
    let out = s
        .kubectl()
        .arg("--kubeconfig")
        .arg(&mallory)
        .args([
            "get",
            "--raw",
            "/apis/keel.dev/v1/history/core/v1/namespaces/team/configmaps/settings",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Forbidden"),
        "{out:?}"
    );
}
