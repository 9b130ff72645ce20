//! The controller manager's lease against a real API server: a holder
//! renews with one write and no read, a write by anyone else makes it read
//! and yield, and a manager that missed its renew deadline steps aside for
//! a lease duration instead of winning its own record straight back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use keel_controllers::leader::{Elector, LeaseConfig};
use keel_controllers::manager::{Manager, ManagerConfig};
use keel_controllers::metrics::Metrics;
use keel_tests::server::KeelServer;
use keel_tests::wait_for;

const LONG: Duration = Duration::from_secs(60);

/// Requests for leases with `verb` the server has answered, from its
/// `apiserver_request_total`.
fn lease_requests(s: &KeelServer, verb: &str) -> u64 {
    let out = s.curl(&["BASE/metrics"]).output().unwrap();
    assert!(out.status.success(), "GET /metrics failed");
    let prefix = format!("apiserver_request_total{{verb=\"{verb}\",resource=\"leases\",");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// A server without a controller manager of its own (its lease requests
/// would be counted here), and an admin client of it.
async fn server() -> (KeelServer, kube::Client) {
    let s = KeelServer::start(&[&"--controllers=false"]);
    let client = keel_controllers::client_from_kubeconfig(&s.kubeconfig())
        .await
        .unwrap();
    (s, client)
}

/// A counter of the manager's own metrics.
fn counter(m: &Metrics, name: &str) -> u64 {
    m.render()
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} "))?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_renews_with_one_write_and_yields_to_another_writer() {
    let (s, client) = server().await;
    let mut a = Elector::new(client, LeaseConfig::new("renewals", "a".into()));
    assert!(
        a.try_acquire_or_renew().await.unwrap(),
        "a free lease is won"
    );
    let (gets, puts) = (lease_requests(&s, "GET"), lease_requests(&s, "PUT"));
    for _ in 0..5 {
        assert!(a.try_acquire_or_renew().await.unwrap());
    }
    assert_eq!(lease_requests(&s, "GET"), gets, "a renewal read the lease");
    assert_eq!(lease_requests(&s, "PUT"), puts + 5);

    // Someone else writes the record: the next renewal conflicts, reads
    // the lease, and finds it is not the holder any more.
    let out = s
        .admin(&[
            "-n",
            "kube-system",
            "patch",
            "lease",
            "renewals",
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"holderIdentity":"b"}}"#,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!a.try_acquire_or_renew().await.unwrap(), "renewed over b");
    assert_eq!(a.observed_holder(), Some("b"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manager_that_missed_its_renew_deadline_steps_aside() {
    let (_s, client) = server().await;
    let lease_duration = Duration::from_secs(3);
    let mut config = ManagerConfig::new("slow".into());
    config.controllers = Vec::new();
    config.lease = LeaseConfig {
        lease_duration,
        // No renewal can finish within a millisecond: every renewal misses
        // the deadline, as on a member too loaded to renew in time.
        renew_deadline: Duration::from_millis(1),
        retry_period: Duration::from_millis(100),
        ..LeaseConfig::new("step-aside", "slow".into())
    };
    let metrics = Arc::new(Metrics::default());
    let manager = Manager::spawn(client, config, metrics.clone());
    let lost_at =
        wait_for("the manager to lose its lease", LONG, || {
            let m = metrics.clone();
            async move {
                (counter(&m, "keel_controller_manager_leader_lost_total") >= 1).then(Instant::now)
            }
        })
        .await;
    // The record still names this manager and nobody else competes, so it
    // leads again, but only after stepping aside for the lease duration.
    let again_at = wait_for("the manager to lead again", LONG, || {
        let m = metrics.clone();
        async move {
            (counter(&m, "keel_controller_manager_leader_acquired_total") >= 2).then(Instant::now)
        }
    })
    .await;
    let aside = again_at - lost_at;
    assert!(
        aside >= lease_duration - Duration::from_millis(300),
        "campaigned again {aside:?} after losing the lease"
    );
    manager.stop().await;
}
