//! Point-in-time recovery end to end: a server archives its events while a
//! seeded random workload creates, updates and deletes ConfigMaps and
//! deletes and recreates whole namespaces. The full state of namespaces
//! and ConfigMaps is recorded at several revisions (and one wall-clock
//! time); then the server is destroyed, and for each recorded point a new
//! server is restored from the one backup taken early on plus the archive:
//! its state is identical object by object, resourceVersions and uids
//! included.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use keel_tests::rand::Rng;
use keel_tests::server::KeelServer;
use keel_tests::{keel_bin, rng, seed, wait_until};

const BUMP: u64 = 1_000;

/// (kind, namespace, name) → (resourceVersion, uid, data or phase).
type State = BTreeMap<(String, String, String), (String, String, serde_json::Value)>;

fn get(s: &KeelServer, path: &str) -> (u16, serde_json::Value) {
    let out = s
        .curl(&[
            "--max-time",
            "20",
            "-w",
            "\n%{http_code}",
            &format!("BASE{path}"),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (
        code.trim().parse().unwrap_or(0),
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}

fn send(s: &KeelServer, method: &str, path: &str, body: &serde_json::Value) -> u16 {
    let out = s
        .curl(&[
            "--max-time",
            "20",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-X",
            method,
            "-H",
            "Content-Type: application/json",
            "-d",
            &body.to_string(),
            &format!("BASE{path}"),
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

/// The state of namespaces and ConfigMaps, and the list's revision.
fn state(s: &KeelServer) -> (State, u64) {
    let mut out = State::new();
    let mut rv = 0;
    for (kind, path) in [("ns", "/api/v1/namespaces"), ("cm", "/api/v1/configmaps")] {
        let (code, list) = get(s, path);
        assert_eq!(code, 200, "{path}: {list}");
        rv = rv.max(
            list["metadata"]["resourceVersion"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap(),
        );
        for o in list["items"].as_array().unwrap() {
            let m = &o["metadata"];
            // A server publishes its own CAs there at start (a restored one
            // its new ones): not the workload's state.
            if kind == "cm" && m["namespace"] == "kube-system" {
                continue;
            }
            out.insert(
                (
                    kind.to_string(),
                    m["namespace"].as_str().unwrap_or("").to_string(),
                    m["name"].as_str().unwrap().to_string(),
                ),
                (
                    m["resourceVersion"].as_str().unwrap().to_string(),
                    m["uid"].as_str().unwrap().to_string(),
                    if kind == "cm" {
                        o["data"].clone()
                    } else {
                        o["status"]["phase"].clone()
                    },
                ),
            );
        }
    }
    (out, rv)
}

/// No namespace is being deleted: nothing more will change on its own.
fn settle(s: &KeelServer) {
    wait_until(
        "namespaces to finish deleting",
        Duration::from_secs(60),
        || {
            let (_, list) = get(s, "/api/v1/namespaces");
            list["items"]
                .as_array()?
                .iter()
                .all(|n| n["status"]["phase"] != "Terminating")
                .then_some(())
        },
    );
}

fn run_ok(c: &mut Command, what: &str) -> String {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn archived_through(dir: &Path) -> u64 {
    keel_store::archive::open(dir)
        .ok()
        .and_then(|e| keel_store::archive::span(&e))
        .map_or(0, |(_, to)| to)
}

fn workload(s: &KeelServer, r: &mut impl Rng, steps: usize) {
    for _ in 0..steps {
        let ns = format!("ns{}", r.gen_range(0..3));
        let name = format!("cm{}", r.gen_range(0..6));
        let cm = serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": ns},
            "data": {"v": r.gen_range(0..1_000_000).to_string()},
        });
        let ns_obj =
            serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
        match r.gen_range(0..20) {
            0 => {
                send(
                    s,
                    "DELETE",
                    &format!("/api/v1/namespaces/{ns}"),
                    &serde_json::json!({}),
                );
                settle(s);
            }
            1..=8 => {
                if send(
                    s,
                    "POST",
                    &format!("/api/v1/namespaces/{ns}/configmaps"),
                    &cm,
                ) == 404
                {
                    assert_eq!(send(s, "POST", "/api/v1/namespaces", &ns_obj), 201);
                }
            }
            9..=15 => {
                send(
                    s,
                    "PUT",
                    &format!("/api/v1/namespaces/{ns}/configmaps/{name}"),
                    &cm,
                );
            }
            _ => {
                send(
                    s,
                    "DELETE",
                    &format!("/api/v1/namespaces/{ns}/configmaps/{name}"),
                    &serde_json::json!({}),
                );
            }
        }
    }
    settle(s);
}

#[test]
fn restores_to_every_recorded_revision_and_time_are_identical_object_by_object() {
    let mut r = rng(seed("pitr"));
    let work = tempfile::tempdir().unwrap();
    let archive = work.path().join("archive");
    let old = KeelServer::start(&[&"--archive-dir", &archive, &"--archive-max-delay-s", &"1"]);
    workload(&old, &mut r, 15);
    let backup = work.path().join("backup.keel");
    run_ok(
        Command::new(keel_bin())
            .args(["snapshot", "save"])
            .arg(&backup)
            .args(["--addr", &old.peer_addr()])
            .arg("--data-dir")
            .arg(old.data()),
        "keel snapshot save",
    );
    let mut points = Vec::new();
    for _ in 0..3 {
        workload(&old, &mut r, 25);
        let (s, rv) = state(&old);
        points.push((s, rv, None));
    }
    // One point by time: recorded, then the time taken, then more work.
    let (s, rv) = state(&old);
    let (at, at_ms) = rfc3339_now();
    points.push((s, rv, Some(at)));
    // Every later write must carry a later proposal time than `at`.
    while now_ms() <= at_ms {
        std::hint::spin_loop();
    }
    workload(&old, &mut r, 10);
    let last = state(&old).1;
    wait_until(
        "the archive to reach the last write",
        Duration::from_secs(60),
        || (archived_through(&archive) >= last).then_some(()),
    );
    let encryption = work.path().join("encryption-config.yaml");
    std::fs::copy(
        old.data().join("pki").join("encryption-config.yaml"),
        &encryption,
    )
    .unwrap();
    drop(old);

    for (i, (want, rv, at)) in points.into_iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let mut restore = Command::new(keel_bin());
        restore
            .arg("restore")
            .arg(&backup)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--archive")
            .arg(&archive)
            .args(["--bump-revision", &BUMP.to_string()])
            .arg("--encryption-config")
            .arg(&encryption);
        match &at {
            Some(t) => restore.args(["--to-time", t]),
            None => restore.args(["--to-revision", &rv.to_string()]),
        };
        let said = run_ok(&mut restore, "keel restore");
        let new = KeelServer::start_in(dir, &[&"--controllers=false"]);
        let (got, new_rv) = state(&new);
        assert_eq!(got, want, "point {i} (revision {rv}, time {at:?}): {said}");
        assert!(new_rv >= rv + BUMP, "point {i}: restored list at {new_rv}");
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Now as RFC 3339 with milliseconds (UTC), and in milliseconds.
fn rfc3339_now() -> (String, u64) {
    let ms = now_ms();
    let out = Command::new("date")
        .args([
            "-u",
            "-d",
            &format!("@{}.{:03}", ms / 1000, ms % 1000),
            "+%Y-%m-%dT%H:%M:%S.%3NZ",
        ])
        .output()
        .unwrap();
    (
        String::from_utf8(out.stdout).unwrap().trim().to_string(),
        ms,
    )
}
