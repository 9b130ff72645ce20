//! Smoke test of `keel bench store` at a tiny size, so the suite cannot rot:
//! it must start both clusters, run every step against both and report
//! numbers. How fast is not asserted (benchmarks report, tests assert).

use std::process::Command;

use keel_tests::keel_bin;

#[test]
fn bench_store_runs_every_step_against_keel_and_etcd() {
    let bin = keel_bin();
    let out = Command::new(&bin)
        .args([
            "bench",
            "store",
            "--duration",
            "300ms",
            "--clients",
            "1,4",
            "--read-clients",
            "2",
            "--read-keys",
            "20",
            "--json",
        ])
        .output()
        .expect("run keel bench store");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "keel bench store failed:\n{stderr}");
    assert!(
        stderr.contains("[bench store]"),
        "no progress lines:\n{stderr}"
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON output");
    assert!(doc["machine"].as_str().unwrap().contains("cores"));
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
            assert!(
                r["ops"].as_u64().unwrap() > 0,
                "{system} {step}: no operation completed: {r}"
            );
            assert!(r["ops_per_sec"].as_f64().unwrap() > 0.0);
            assert!(r["p99_ms"].as_f64().unwrap() >= r["p50_ms"].as_f64().unwrap());
            assert!(
                r["rss_mib"].as_f64().unwrap() > 0.0,
                "memory was not sampled: {r}"
            );
        }
    }
}
