//! A write whose outcome is unknown is reported as unknown (a timeout), never
//! as the retryable "no leader" that promises nothing was written, whether the
//! leader's deadline passed or the leader's answer to a forwarding follower
//! was lost.

use std::time::Duration;

use keel_store::{Consistency, Op, StoreError};
use keel_tests::{Cluster, wait_for};

const LONG: Duration = Duration::from_secs(60);

/// Timers that keep member 1 the leader whatever the test delays: it
/// bootstraps the cluster (and so is elected at once), the others would wait
/// half a minute before calling an election.
fn steady_leader(cfg: &mut keel_store::MemberConfig) {
    cfg.election_timeout = (Duration::from_secs(30), Duration::from_secs(60));
    // The leader gives up on a write before the forwarding follower does.
    cfg.request_timeout = if cfg.id == 1 {
        Duration::from_secs(2)
    } else {
        Duration::from_secs(8)
    };
}

fn assert_unknown(err: &StoreError) {
    assert!(
        err.is_outcome_unknown() && matches!(err, StoreError::Timeout { .. }),
        "a write that may have been applied must be reported as unknown, got: {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_timeout_reaches_the_follower_as_unknown() {
    let c = Cluster::start_with(3, 21, steady_leader).await;
    assert_eq!(c.leader(LONG).await, 1);
    c.member(2)
        .txn(vec![Op::create("/o/warm", b"1".to_vec())])
        .await
        .unwrap();
    // Replication is slowed past the leader's 2 s deadline; the forwarded
    // request and the answer travel at once.
    c.router.set_delay(1, 2, Duration::from_secs(4));
    c.router.set_delay(1, 3, Duration::from_secs(4));
    let err = c
        .member(2)
        .txn(vec![Op::create("/o/slow", b"1".to_vec())])
        .await
        .unwrap_err();
    assert_unknown(&err);
    c.router.heal();
    // And it was indeed applied: calling it "no leader" would have invited a
    // client to repeat a write that happened.
    wait_for("the timed-out write to be applied", LONG, || async {
        c.member(1)
            .get("/o/slow", Consistency::Linearizable)
            .await
            .ok()
            .and_then(|(kv, _)| kv)
    })
    .await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_answer_to_a_forwarded_write_is_unknown() {
    let c = Cluster::start_with(3, 22, steady_leader).await;
    assert_eq!(c.leader(LONG).await, 1);
    c.member(2)
        .txn(vec![Op::create("/o/warm", b"1".to_vec())])
        .await
        .unwrap();
    // Member 2 reaches the leader, but nothing comes back from it; the
    // leader still commits with member 3.
    c.router.cut(1, 2);
    let err = c
        .member(2)
        .txn(vec![Op::create("/o/lost", b"1".to_vec())])
        .await
        .unwrap_err();
    assert_unknown(&err);
    let (kv, _) = c
        .member(1)
        .get("/o/lost", Consistency::Linearizable)
        .await
        .unwrap();
    assert!(kv.is_some(), "the write whose answer was lost was applied");
    c.router.heal();
    // A write that was never delivered stays a retryable error that promises
    // nothing was written.
    c.router.cut(2, 1);
    let err = c
        .member(2)
        .txn(vec![Op::create("/o/unsent", b"1".to_vec())])
        .await
        .unwrap_err();
    assert!(
        err.is_retryable() && !err.is_outcome_unknown(),
        "an undelivered write is retryable and known not applied: {err}"
    );
    c.router.heal();
    c.shutdown().await;
}
