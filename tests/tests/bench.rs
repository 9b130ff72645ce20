//! Smoke tests of every `keel bench` suite at a tiny size, so the suites
//! cannot rot: each must start its clusters, run every step against every
//! system and report numbers. How fast is not asserted (benchmarks report,
//! tests assert). The suites run one at a time: each starts several
//! processes. They go through `keel bench`, which runs the `keel-bench`
//! binary beside `keel` with the arguments unchanged.

use std::process::Command;
use std::sync::Mutex;

use keel_tests::keel_bin;
use serde_json::Value;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Run `keel bench <args> --json`; its JSON document.
fn bench(args: &[&str]) -> Value {
    let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let out = Command::new(keel_bin())
        .arg("bench")
        .args(args)
        .arg("--json")
        .output()
        .expect("run keel bench");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "keel bench {args:?} failed:\n{stderr}"
    );
    assert!(
        stderr.contains(&format!("[bench {}]", args[0])),
        "no progress lines:\n{stderr}"
    );
    let doc: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", String::from_utf8_lossy(&out.stdout)));
    assert!(doc["machine"].as_str().unwrap().contains("cores"));
    doc
}

/// The rows of a table as objects keyed by column.
fn rows(table: &Value) -> Vec<serde_json::Map<String, Value>> {
    let cols: Vec<String> = table["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    table["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            cols.iter()
                .cloned()
                .zip(r.as_array().unwrap().iter().cloned())
                .collect()
        })
        .collect()
}

fn positive(row: &serde_json::Map<String, Value>, col: &str) -> f64 {
    let v = row[col]
        .as_f64()
        .unwrap_or_else(|| panic!("{col} is not a number in {row:?}"));
    assert!(v > 0.0, "{col} is not positive in {row:?}");
    v
}

/// What a closed-loop step reports: `clients` each run one operation after
/// another for at least the step's duration.
struct Measured {
    clients: usize,
    ops: u64,
    ops_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
}

/// Check that a step's numbers can describe one real run (an ordering such as
/// p99 >= p50 holds by construction and proves nothing). Each client's
/// latencies add up to at most the elapsed time, so at least half the
/// operations taking p50 or more fit in `clients` x elapsed; no single
/// operation outlasts the step; and the step lasted at least `min_secs`.
fn consistent(what: &str, m: Measured, min_secs: f64) {
    let Measured {
        clients,
        ops,
        ops_per_sec,
        p50_ms,
        p99_ms,
        p999_ms,
    } = m;
    assert!(ops > 0, "{what}: no operation completed");
    for (name, v) in [
        ("ops/s", ops_per_sec),
        ("p50", p50_ms),
        ("p99", p99_ms),
        ("p999", p999_ms),
    ] {
        assert!(v.is_finite() && v > 0.0, "{what}: {name} is {v}");
    }
    assert!(
        p50_ms <= p99_ms && p99_ms <= p999_ms,
        "{what}: percentiles out of order: {p50_ms} {p99_ms} {p999_ms}"
    );
    // Rounding: rates to 0.001, latencies to 1 µs.
    let slack = 1.01;
    let elapsed_ms = ops as f64 / ops_per_sec * 1000.0;
    assert!(
        elapsed_ms * slack >= min_secs * 1000.0,
        "{what}: {ops} ops at {ops_per_sec}/s is {elapsed_ms:.1} ms, shorter than the step"
    );
    assert!(
        elapsed_ms < 600_000.0,
        "{what}: {ops} ops at {ops_per_sec}/s is {elapsed_ms:.1} ms, far longer than the step"
    );
    assert!(
        p999_ms <= elapsed_ms * slack + 0.01,
        "{what}: p999 {p999_ms} ms is longer than the whole step ({elapsed_ms:.1} ms)"
    );
    let half = (ops as f64 / 2.0).max(1.0);
    assert!(
        p50_ms * half <= clients as f64 * elapsed_ms * slack + 0.01,
        "{what}: {ops} ops by {clients} clients in {elapsed_ms:.1} ms cannot have a p50 of {p50_ms} ms"
    );
}

#[test]
fn bench_store_runs_every_step_against_keel_and_etcd() {
    let doc = bench(&[
        "store",
        "--duration",
        "300ms",
        "--clients",
        "1,4",
        "--read-clients",
        "2",
        "--read-keys",
        "20",
        "--disk-duration",
        "200ms",
    ]);
    // The disk's own ceiling, measured before the clusters start.
    let disk = doc["disk"].as_array().expect("no disk ceiling");
    assert_eq!(disk.len(), 2, "{disk:?}");
    for (c, block) in disk.iter().zip([1024, 16384]) {
        assert_eq!(c["block"], block, "{c}");
        let syncs = c["syncs"].as_f64().unwrap();
        let secs = c["secs"].as_f64().unwrap();
        let rate = c["syncs_per_sec"].as_f64().unwrap();
        assert!(syncs >= 10.0 && secs >= 0.2, "{c}");
        assert!(
            (rate - syncs / secs).abs() <= rate * 0.01,
            "syncs/s disagrees with syncs and seconds: {c}"
        );
        let mb = c["mb_per_sec"].as_f64().unwrap();
        assert!(
            (mb - rate * block as f64 / 1e6).abs() <= mb * 0.01,
            "MB/s disagrees with syncs/s: {c}"
        );
    }
    // The baseline runs as Kubernetes runs etcd, as Keel's members run.
    assert_eq!(doc["etcd"], "over mutual TLS", "{doc}");
    let results = doc["results"].as_array().unwrap();
    for system in ["keel", "etcd"] {
        for (step, clients) in [
            ("put", 1),
            ("put", 4),
            ("get-linearizable", 2),
            ("get-serializable", 2),
            ("mixed-90r-10w", 2),
        ] {
            let r = results
                .iter()
                .find(|r| r["system"] == system && r["step"] == step && r["clients"] == clients)
                .unwrap_or_else(|| panic!("no result for {system} {step} c={clients}"));
            assert_eq!(r["errors"], 0, "{system} {step}: {r}");
            consistent(
                &format!("{system} {step} c={clients}"),
                Measured {
                    clients,
                    ops: r["ops"].as_u64().unwrap(),
                    ops_per_sec: r["ops_per_sec"].as_f64().unwrap(),
                    p50_ms: r["p50_ms"].as_f64().unwrap(),
                    p99_ms: r["p99_ms"].as_f64().unwrap(),
                    p999_ms: r["p999_ms"].as_f64().unwrap(),
                },
                0.3,
            );
            assert!(
                r["rss_mib"].as_f64().unwrap() > 0.0,
                "memory was not sampled: {r}"
            );
            // Read from the members' metrics (null when they could not be).
            let changes = r["leader_changes"]
                .as_u64()
                .unwrap_or_else(|| panic!("leader changes were not counted: {r}"));
            assert!(
                changes < 10,
                "{system} {step}: {changes} leader changes: {r}"
            );
        }
    }
}

#[test]
fn bench_api_measures_every_verb() {
    let doc = bench(&[
        "api",
        "--duration",
        "300ms",
        "--clients",
        "3",
        "--list-clients",
        "1",
        "--list-sizes",
        "20",
    ]);
    let rows = rows(&doc["tables"][0]);
    for verb in ["create", "get", "update", "list", "delete"] {
        let r = rows
            .iter()
            .find(|r| r["verb"] == verb)
            .unwrap_or_else(|| panic!("no {verb} row: {rows:?}"));
        positive(r, "RSS MiB");
        assert_eq!(r["errors"], 0, "{r:?}");
        let num = |col: &str| {
            r[col]
                .as_f64()
                .unwrap_or_else(|| panic!("{col} is not a number in {r:?}"))
        };
        consistent(
            verb,
            Measured {
                clients: r["clients"].as_u64().unwrap() as usize,
                ops: r["ops"].as_u64().unwrap(),
                ops_per_sec: num("ops/s"),
                p50_ms: num("p50 ms"),
                p99_ms: num("p99 ms"),
                p999_ms: num("p999 ms"),
            },
            // A client stops early once it has nothing left (get, delete).
            0.0,
        );
    }
}

#[test]
fn bench_watch_delivers_to_every_system() {
    // More watchers than one task of the load generator reads.
    let doc = bench(&[
        "watch",
        "--watchers",
        "150",
        "--rates",
        "20",
        "--duration",
        "500ms",
        "--grace",
        "5s",
    ]);
    let rows = rows(&doc["tables"][0]);
    for system in ["keel-api", "keel-store", "etcd"] {
        let r = rows
            .iter()
            .find(|r| r["system"] == system)
            .unwrap_or_else(|| panic!("no {system} row: {rows:?}"));
        positive(r, "acked");
        assert_eq!(r["delivered %"].as_f64(), Some(100.0), "{r:?}");
        assert_eq!(r["behind"], 0, "{r:?}");
        positive(r, "peak RSS MiB");
    }
}

#[test]
fn bench_scale_lists_and_compares_memory_with_etcd() {
    let doc = bench(&[
        "scale",
        "--nodes",
        "4",
        "--pods",
        "40",
        "--repeats",
        "1",
        "--node-lists",
        "4",
    ]);
    let ops = rows(&doc["tables"][0]);
    let row = |op: &str| {
        ops.iter()
            .find(|r| r["operation"] == op)
            .unwrap_or_else(|| panic!("no {op} row: {ops:?}"))
    };
    for op in [
        "create pods",
        "store puts, pod-sized values, same clients",
        "LIST all pods",
        "LIST one node's pods",
        "watch one node's pods: event after the write is sent",
    ] {
        positive(row(op), "per s");
        positive(row(op), "p99 ms");
    }
    // The store's own rate at the same concurrency, beside the API's.
    assert_eq!(
        row("store puts, pod-sized values, same clients")["runs"],
        40
    );
    // Every node's LIST was checked against the pods on it.
    assert_eq!(row("LIST one node's pods")["runs"], 4);
    assert_eq!(row("LIST one node's pods")["items"].as_f64(), Some(10.0));
    // The serving member's memory growth during the LISTs is measured.
    let grew = row("LIST all pods")["RSS +MiB"].as_f64();
    assert!(grew.is_some_and(|g| g >= 0.0), "RSS +MiB: {ops:?}");
    assert!(ops.iter().any(|r| r["system"] == "etcd"));
    let members = rows(&doc["tables"][1]);
    for system in ["keel", "etcd"] {
        let ms: Vec<_> = members.iter().filter(|r| r["system"] == system).collect();
        assert_eq!(ms.len(), 3, "{members:?}");
        for m in &ms {
            positive(m, "RSS MiB");
            positive(m, "disk MiB");
        }
        positive(ms[0], "peak RSS MiB, 3 members");
    }
}

/// `keel bench scale --hollow`'s table: the steps it must report.
fn hollow_steps(doc: &Value, pods: u64, steps: &[&str]) {
    let steps_rows = rows(&doc["tables"][0]);
    let row = |step: &str| {
        steps_rows
            .iter()
            .find(|r| r["step"] == step)
            .unwrap_or_else(|| panic!("no {step} row: {steps_rows:?}"))
    };
    for step in steps {
        positive(row(step), "per s");
    }
    for step in [
        "pods bound by the scheduler (created → bound)",
        "pods Running and Ready (bound → Ready)",
    ] {
        assert_eq!(row(step)["count"], pods, "{step}");
        positive(row(step), "p99 ms");
    }
    let memory = rows(&doc["tables"][1]);
    assert!(
        memory.iter().any(|r| r["process"]
            .as_str()
            .unwrap()
            .starts_with("keel hollow-nodes")),
        "{memory:?}"
    );
    positive(&memory[3], "peak RSS MiB");
}

#[test]
fn bench_scale_hollow_schedules_and_runs_pods() {
    let doc = bench(&[
        "scale",
        "--hollow",
        "--bare-pods",
        "--nodes",
        "4",
        "--pods",
        "20",
        "--clients",
        "4",
        "--hollow-processes",
        "2",
        "--timeout",
        "2m",
    ]);
    hollow_steps(
        &doc,
        20,
        &["nodes registered and Ready", "pods created (requests)"],
    );
}

#[test]
fn bench_scale_hollow_runs_pods_of_deployments() {
    let doc = bench(&[
        "scale",
        "--hollow",
        "--nodes",
        "3",
        "--pods",
        "12",
        "--deployments",
        "3",
        "--timeout",
        "2m",
    ]);
    hollow_steps(
        &doc,
        12,
        &[
            "nodes registered and Ready",
            "Deployments created (requests)",
            "pods created by ReplicaSets",
        ],
    );
}

#[test]
fn bench_failover_kills_the_leader_of_both_systems() {
    let doc = bench(&["failover", "--trials", "1", "--writers", "3"]);
    let rows = rows(&doc["tables"][0]);
    for system in ["keel", "etcd"] {
        let r = rows
            .iter()
            .find(|r| r["system"] == system)
            .unwrap_or_else(|| panic!("no {system} row: {rows:?}"));
        assert_eq!(r["trials"], 1);
        positive(r, "median ms");
    }
}

#[test]
fn bench_restart_times_both_systems() {
    let doc = bench(&[
        "restart",
        "--objects",
        "50",
        "--events",
        "200",
        "--clients",
        "4",
        "--install-snapshot",
        "--keel-args=--snapshot-every=20 --keep-behind-snapshot=1",
    ]);
    let rows = rows(&doc["tables"][0]);
    for system in ["keel", "etcd"] {
        for restart in ["one follower", "whole cluster"] {
            let r = rows
                .iter()
                .find(|r| r["system"] == system && r["restart"] == restart)
                .unwrap_or_else(|| panic!("no {system} {restart} row: {rows:?}"));
            positive(r, "serves reads after ms");
            positive(r, "disk MiB/member");
        }
    }
    // A follower whose data directory was replaced caught up by installing
    // a snapshot (the suite fails if it caught up from the log instead).
    let snaps = crate::rows(&doc["tables"][1]);
    for member in ["leader, building", "follower, installing"] {
        let r = snaps
            .iter()
            .find(|r| r["member"] == member)
            .unwrap_or_else(|| panic!("no {member} row: {snaps:?}"));
        positive(r, "peak RSS MiB");
        positive(r, "snapshot MiB");
    }
}

#[test]
fn bench_replay_restores_and_replays_the_archive() {
    let doc = bench(&[
        "replay",
        "--objects",
        "200",
        "--events",
        "2000",
        "--value-bytes",
        "256",
        "--clients",
        "8",
    ]);
    let restores = rows(&doc["tables"][0]);
    for system in ["keel", "etcd"] {
        let r = restores
            .iter()
            .find(|r| r["system"] == system)
            .unwrap_or_else(|| panic!("no {system} row: {restores:?}"));
        for col in ["load s", "backup s", "backup MiB"] {
            positive(r, col);
        }
        // Keel's backup also holds what its API server wrote at start.
        assert!(positive(r, "objects in backup") >= 200.0, "{r:?}");
    }
    let keel = &restores[0];
    positive(keel, "restore s");
    positive(keel, "restored objects/s");
    // etcd's restore needs etcdutl (or 3.4's etcdctl); without one it says so.
    let etcd = &restores[1];
    match etcd["restore s"].as_str() {
        Some(text) => assert_eq!(text, "not measured (no etcdutl)", "{etcd:?}"),
        None => {
            positive(etcd, "restore s");
            positive(etcd, "restored objects/s");
        }
    }
    let replay = rows(&doc["tables"][1]);
    let row = |step: &str| {
        replay
            .iter()
            .find(|r| r["step"].as_str().unwrap().starts_with(step))
            .unwrap_or_else(|| panic!("no {step} row: {replay:?}"))
    };
    // Every archived event: the 200 creates, the 2,000 updates and the
    // API server's own writes.
    let read = row("read_range in-process");
    assert!(positive(read, "events") >= 2200.0, "{read:?}");
    for col in ["s", "events/s", "MiB/s"] {
        positive(read, col);
    }
    // The point-in-time restore replays at least the updates after the backup.
    let pitr = row("keel restore --archive");
    assert!(positive(pitr, "events") >= 2000.0, "{pitr:?}");
    positive(pitr, "s");
    positive(pitr, "events/s");
    for r in [read, pitr] {
        assert!(
            ["met", "missed"].contains(&r["goal"].as_str().unwrap()),
            "{r:?}"
        );
    }
    let run = rows(&doc["tables"][2]);
    for col in [
        "updates s",
        "archived after s",
        "segments",
        "archive MiB",
        "cores",
    ] {
        positive(&run[0], col);
    }
    assert!(run[0]["load avg at end"].as_str().unwrap().contains('.'));
}

/// `keel bench` hands everything after `bench` to keel-bench, `--help` included.
#[test]
fn keel_bench_passes_its_arguments_through() {
    let out = Command::new(keel_bin())
        .args(["bench", "--help"])
        .output()
        .expect("run keel bench --help");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("Usage: keel bench <COMMAND>"), "{stdout}");
    for suite in [
        "store", "api", "watch", "scale", "failover", "restart", "replay",
    ] {
        assert!(
            stdout.contains(&format!("\n  {suite} ")),
            "no {suite}:\n{stdout}"
        );
    }
    let out = Command::new(keel_bin())
        .args(["bench", "store", "--clients", "x"])
        .output()
        .expect("run keel bench store");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("invalid value 'x' for '--clients"),
        "{stderr}"
    );
}

/// A `keel` without keel-bench beside it says what is missing and how to build it.
#[test]
fn keel_bench_without_the_binary_says_how_to_build_it() {
    let keel = keel_bin();
    // A link to `keel` in a directory of its own (same filesystem as the build).
    let dir = tempfile::tempdir_in(keel.parent().unwrap()).unwrap();
    let lone = dir.path().join("keel");
    std::fs::hard_link(&keel, &lone).unwrap();
    let out = Command::new(&lone)
        .args(["bench", "store", "--json"])
        .output()
        .expect("run keel bench");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("keel-bench")
            && stderr.contains("cargo build -p keel-bench")
            && stderr.contains(&dir.path().join("keel-bench").display().to_string()),
        "{stderr}"
    );
}
