//! Elections after a partition and a kill: a survivor holding a longer but
//! stale log tail must not keep a member with the newer log from winning.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use keel_store::Op;
use keel_tests::{Cluster, wait_for};
use openraft::async_runtime::WatchReceiver;

const LONG: Duration = Duration::from_secs(60);

/// Member 3 leads, is cut off and takes ten writes that never commit (a
/// longer log tail from an old term). Members 1 and 2 elect a leader and
/// commit two writes (a shorter log from a newer term). That leader dies and
/// the partition heals: 3 (the higher id, the longer log) and the other
/// survivor must elect a leader, and a write must commit within 20 s.
///
/// Ranked by index alone, 3 calls an election about every second, each
/// raising its term past the survivor's, which it never wins; the survivor's
/// election timeout (at least 2 s here) never fires before 3 has moved on,
/// and with the lower id it cannot win a tie, so no leader is ever elected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_longer_log_does_not_keep_the_cluster_leaderless() {
    let mut c = Cluster::start_led_by(3, 11, 3, |cfg| {
        // Every stale write below must be a log entry of its own (no group
        // commit), so that member 3's log is the longer one, and revisions
        // stay log indexes.
        cfg.commit_slots = 64;
        if cfg.id != 3 {
            // Slower timers than member 3's election assist (every 1 s).
            cfg.election_timeout = (Duration::from_millis(2000), Duration::from_millis(3000));
        }
    })
    .await;
    assert_eq!(c.leader(LONG).await, 3, "member 3 bootstrapped the cluster");
    c.member(3)
        .txn(vec![Op::create("/e/before", b"1".to_vec())])
        .await
        .unwrap();
    c.wait_applied_index(c.member(3).status().last_log_index, LONG)
        .await;

    c.router.isolate(3, &c.all_ids());
    let before = c.member(3).status().last_log_index;
    let stale: Vec<_> = (0..10)
        .map(|i| {
            let m = c.member(3);
            tokio::spawn(async move {
                m.txn(vec![Op::create(format!("/e/stale/{i}"), b"x".to_vec())])
                    .await
            })
        })
        .collect();
    wait_for("the isolated leader to append the ten writes", LONG, || {
        let last = c.member(3).status().last_log_index;
        async move { (last >= before + 10).then_some(()) }
    })
    .await;

    let new_leader = c.leader_among(&[1, 2], LONG).await;
    let mut committed = 0;
    for i in 0..2 {
        committed = c
            .member(new_leader)
            .txn(vec![Op::create(format!("/e/new/{i}"), b"y".to_vec())])
            .await
            .unwrap();
    }
    let survivor = if new_leader == 1 { 2 } else { 1 };
    c.member(survivor)
        .raft()
        .wait(Some(LONG))
        .log_index_at_least(Some(committed), "the survivor holds the new writes")
        .await
        .unwrap();
    let (stale_log, new_log) = (
        c.member(3)
            .raft()
            .data_metrics()
            .borrow_watched()
            .last_log
            .unwrap(),
        c.member(survivor)
            .raft()
            .data_metrics()
            .borrow_watched()
            .last_log
            .unwrap(),
    );
    assert!(
        stale_log.index > new_log.index && stale_log < new_log,
        "the scenario needs a longer but older log on 3: {stale_log} vs {new_log}"
    );
    for w in stale {
        let err = w.await.unwrap().expect_err("a write on the cut-off leader");
        assert!(err.is_outcome_unknown(), "{err}");
    }

    c.kill(new_leader).await;
    c.router.heal();
    let healed = Instant::now();
    let attempt = AtomicU64::new(0);
    let rev = wait_for(
        "a write through the survivor to commit",
        Duration::from_secs(20),
        || {
            let n = attempt.fetch_add(1, Ordering::Relaxed);
            let m = c.member(survivor);
            async move {
                m.txn(vec![Op::create(format!("/e/after/{n}"), b"z".to_vec())])
                    .await
                    .ok()
            }
        },
    )
    .await;
    println!(
        "a write committed {:?} after the heal, at revision {rev}",
        healed.elapsed()
    );
    assert_eq!(c.leader(LONG).await, survivor, "the newer log wins");
    c.wait_applied(rev, LONG).await;
    c.wait_converged(LONG).await;
    c.shutdown().await;
}

/// A member cut off from the others for several election timeouts comes
/// back without unseating the leader. Its timer fires again and again, but
/// with pre-vote it first asks whether it could win, hears nothing while cut
/// off, and never raises its term. (Without pre-vote each timeout raised its
/// term, and the first message it sent after the cut healed made the leader
/// step down: an election, and writes stalled, for nothing.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_cut_off_for_a_while_rejoins_without_unseating_the_leader() {
    let c = Cluster::start(3, 12).await;
    let leader = c.leader(LONG).await;
    let loner = c.all_ids().into_iter().find(|i| *i != leader).unwrap();
    let rev = c
        .member(leader)
        .txn(vec![Op::create("/p/before", b"1".to_vec())])
        .await
        .unwrap();
    c.wait_applied(rev, LONG).await;
    let term = c.member(leader).status().term;
    assert_eq!(c.member(loner).status().term, term);

    c.router.isolate(loner, &c.all_ids());
    // Three rounds of asking both peers (for pre-votes or votes): its
    // election timer fired three times.
    let asks = || c.router.attempted(loner, "pre-vote") + c.router.attempted(loner, "vote");
    let asked = asks();
    wait_for("the loner to ask for votes three times", LONG, || {
        let n = asks();
        async move { (n >= asked + 6).then_some(()) }
    })
    .await;
    assert_eq!(
        c.router.attempted(loner, "vote"),
        0,
        "no pre-vote round succeeded, so no real election was called"
    );
    assert_eq!(
        c.member(loner).status().term,
        term,
        "the loner's term did not move"
    );
    assert_eq!(c.member(loner).status().leader, None, "it knows no leader");
    // The rest of the cluster went on writing meanwhile.
    c.member(leader)
        .txn(vec![Op::create("/p/during", b"1".to_vec())])
        .await
        .unwrap();

    c.router.heal();
    wait_for("the loner to hear from the leader again", LONG, || {
        let heard = c.member(loner).leader().map(|(id, _)| id);
        async move { (heard == Some(leader)).then_some(()) }
    })
    .await;
    // The loner catches up through the same leader, in the same term.
    let rev = c
        .member(loner)
        .txn(vec![Op::create("/p/after", b"1".to_vec())])
        .await
        .unwrap();
    c.wait_applied(rev, LONG).await;
    for id in c.all_ids() {
        let s = c.member(id).status();
        assert_eq!(
            (s.leader, s.term),
            (Some(leader), term),
            "member {id} follows the same leader in the same term"
        );
    }
    c.shutdown().await;
}
