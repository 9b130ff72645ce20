//! Three in-process members over the cuttable network: failover, partitions,
//! crashes mid-write, and a member that is removed, wiped and re-added.

use std::time::{Duration, Instant};

use keel_store::{Consistency, Op, StoreError, WatchMessage, WatchStart};
use keel_tests::{Cluster, objects, wait_for};
use openraft::async_runtime::WatchReceiver;

const LONG: Duration = Duration::from_secs(60);
/// How long writes may stay unavailable after the leader dies (see its use).
const FAILOVER_BOUND: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_failover_restores_writes() {
    let mut c = Cluster::start(3, 1).await;
    let leader = c.leader(LONG).await;
    tracing::info!("--- leader is {leader}; writing");
    let mut acked = Vec::new();
    for i in 0..10 {
        let key = format!("/f/{i}");
        let rev = c
            .member(leader)
            .txn(vec![Op::create(key.clone(), b"v".to_vec())])
            .await
            .unwrap();
        acked.push((key, rev));
    }
    tracing::info!("--- killing leader {leader}");
    let killed_at = Instant::now();
    c.kill(leader).await;
    let survivor = *c.running().first().unwrap();
    // Keep writing through a survivor until one is acknowledged again.
    let mut attempts = 0;
    let rev = loop {
        attempts += 1;
        match c
            .member(survivor)
            .txn(vec![Op::create(
                format!("/f/after/{attempts}"),
                b"v".to_vec(),
            )])
            .await
        {
            Ok(rev) => break rev,
            Err(e) => {
                assert!(e.is_retryable(), "a failover error must be retryable: {e}");
                assert!(
                    killed_at.elapsed() < LONG,
                    "no write succeeded within {LONG:?}: {e}"
                );
                // Back off briefly between attempts; the loop is bounded by the deadline above.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let unavailable = killed_at.elapsed();
    println!(
        "writes were unavailable for {unavailable:?} after the leader was killed ({attempts} attempts)"
    );
    // With the test timings (heartbeat 150 ms, election timeout 1-2 s, request
    // timeout 3 s) a survivor's timer fires within 2 s and an election takes a
    // round trip, so a few seconds is normal. The bound leaves room for several
    // split votes (2 s each) and one write that waits out its request timeout
    // on a loaded machine; an election that never settles exceeds it.
    assert!(
        unavailable < FAILOVER_BOUND,
        "writes were unavailable for {unavailable:?} after the leader was killed, over {FAILOVER_BOUND:?}"
    );
    let new_leader = c.leader(LONG).await;
    assert_ne!(new_leader, leader);
    // Every acknowledged write is readable on the survivors.
    for id in c.running() {
        for (key, rev) in &acked {
            let (kv, _) = c
                .member(id)
                .get(key, Consistency::Linearizable)
                .await
                .unwrap();
            assert_eq!(kv.unwrap().mod_revision, *rev, "member {id} key {key}");
        }
    }
    tracing::info!("--- restarting {leader}");
    c.restart(leader).await;
    c.wait_applied(rev, LONG).await;
    c.wait_converged(LONG).await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minority_never_acknowledges_and_heals_to_identical_state() {
    let c = Cluster::start(3, 2).await;
    let old = c.leader(LONG).await;
    c.member(old)
        .txn(vec![Op::create("/p/before", b"1".to_vec())])
        .await
        .unwrap();
    let majority: Vec<u64> = c.all_ids().into_iter().filter(|i| *i != old).collect();
    tracing::info!("--- isolating leader {old} from {majority:?}");
    c.router.isolate(old, &c.all_ids());
    // The isolated old leader cannot commit: its writes fail (never acknowledged).
    for i in 0..3 {
        let res = c
            .member(old)
            .txn(vec![Op::create(format!("/p/minority/{i}"), b"x".to_vec())])
            .await;
        assert!(res.is_err(), "the minority acknowledged a write: {res:?}");
        assert!(res.unwrap_err().is_retryable());
    }
    let linearizable = c
        .member(old)
        .get("/p/before", Consistency::Linearizable)
        .await;
    assert!(
        linearizable.is_err(),
        "a linearizable read on the minority must fail"
    );
    let new = c.leader_among(&majority, LONG).await;
    let mut last = 0;
    for i in 0..5 {
        last = c
            .member(new)
            .txn(vec![Op::create(format!("/p/majority/{i}"), b"y".to_vec())])
            .await
            .unwrap();
    }
    tracing::info!("--- healing");
    c.router.heal();
    c.wait_applied(last, LONG).await;
    let digest = c.wait_converged(LONG).await;
    println!("converged with digest {digest:016x}");
    for id in c.all_ids() {
        let objs = objects(&c.member(id)).await;
        assert!(
            objs.keys().all(|k| !k.starts_with("/p/minority/")),
            "member {id} holds an unacknowledged write"
        );
        assert_eq!(
            objs.keys()
                .filter(|k| k.starts_with("/p/majority/"))
                .count(),
            5
        );
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_forwards_writes_and_reads_linearizably() {
    let c = Cluster::start(3, 3).await;
    let leader = c.leader(LONG).await;
    let follower = c.all_ids().into_iter().find(|i| *i != leader).unwrap();
    let rev = c
        .member(follower)
        .txn(vec![Op::create("/fw/a", b"1".to_vec())])
        .await
        .unwrap();
    // Read-your-write on the other follower too: linearizable reads wait for the read index.
    for id in c.all_ids() {
        let (kv, at) = c
            .member(id)
            .get("/fw/a", Consistency::Linearizable)
            .await
            .unwrap();
        assert_eq!(kv.unwrap().mod_revision, rev);
        assert!(at >= rev);
    }
    // With the leader gone and no new one yet, a follower fails fast.
    c.router.isolate(follower, &c.all_ids());
    wait_for("the isolated follower to lose its leader", LONG, || async {
        c.member(follower)
            .leader()
            .is_none_or(|(l, _)| l != leader)
            .then_some(())
    })
    .await;
    let started = Instant::now();
    let err = c
        .member(follower)
        .txn(vec![Op::create("/fw/b", b"1".to_vec())])
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert!(err.is_retryable(), "{err}");
    println!("isolated follower answered in {took:?}: {err}");
    // "At once": a member that knows no leader refuses without proposing. Waiting
    // for a leader or for the write would take the request timeout (3 s).
    let request_timeout = c.configs[&follower].request_timeout;
    assert!(
        took < request_timeout / 3,
        "the isolated follower took {took:?} to refuse (request timeout {request_timeout:?})"
    );
    c.router.heal();
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_killed_mid_write_loses_nothing_and_catches_up() {
    let mut c = Cluster::start(3, 4).await;
    let leader = c.leader(LONG).await;
    let victim = c.all_ids().into_iter().find(|i| *i != leader).unwrap();
    // Writers keep going through the victim (forwarded) and the leader while it dies.
    let mut tasks = Vec::new();
    for w in 0..4 {
        let target = if w % 2 == 0 {
            c.member(victim)
        } else {
            c.member(leader)
        };
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..40 {
                let key = format!("/crash/{w}/{i}");
                if let Ok(rev) = target
                    .txn(vec![Op::create(key.clone(), vec![w as u8])])
                    .await
                {
                    acked.push((key, rev));
                }
            }
            acked
        }));
    }
    wait_for("writes to be in flight", LONG, || async {
        (c.member(leader).revisions().unwrap().0 > 20).then_some(())
    })
    .await;
    tracing::info!("--- killing {victim} mid-write");
    c.kill(victim).await;
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    println!("{} writes acknowledged around the crash", acked.len());
    c.restart(victim).await;
    let last = acked.iter().map(|(_, r)| *r).max().unwrap();
    c.wait_applied(last, LONG).await;
    c.wait_converged(LONG).await;
    for (key, rev) in &acked {
        let (kv, _) = c.member(victim).get(key, Consistency::Local).await.unwrap();
        assert_eq!(
            kv.map(|k| k.mod_revision),
            Some(*rev),
            "restarted member lost {key}"
        );
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_wiped_and_readded_member_catches_up_from_a_snapshot() {
    let mut c = Cluster::start_with(3, 5, |cfg| {
        cfg.snapshot_every = 100;
        cfg.keep_behind_snapshot = 10;
    })
    .await;
    let leader = c.leader(LONG).await;
    let gone = c.all_ids().into_iter().find(|i| *i != leader).unwrap();
    tracing::info!("--- removing {gone}");
    let members = c.member(leader).remove_member(gone).await.unwrap();
    assert!(members.iter().all(|m| m.id != gone));
    c.kill(gone).await;
    c.wipe(gone);
    let mut last = 0;
    for i in 0..300 {
        last = c
            .member(leader)
            .txn(vec![Op::create(format!("/snap/{i:04}"), vec![1u8; 512])])
            .await
            .unwrap();
    }
    c.member(leader).raft().trigger().snapshot().await.unwrap();
    c.member(leader)
        .raft()
        .wait(Some(LONG))
        .metrics(
            |m| m.purged.is_some_and(|p| p.index > 10),
            "leader purged its log behind a snapshot",
        )
        .await
        .unwrap();
    tracing::info!("--- re-adding {gone} with an empty directory");
    let fresh = c.start_member(gone).await;
    let mut early = fresh.watch("/snap/", WatchStart::Now).unwrap();
    let addr = c.configs[&gone].addr.clone();
    let members = c.member(leader).add_member(gone, addr).await.unwrap();
    assert!(members.iter().any(|m| m.id == gone && m.voter));
    c.wait_applied(last, LONG).await;
    c.wait_converged(LONG).await;
    let snap = fresh.raft().metrics().borrow_watched().snapshot;
    assert!(
        snap.is_some(),
        "the re-added member should have installed a snapshot"
    );
    assert_eq!(objects(&fresh).await.len(), 300);
    // A watcher open while the snapshot replaced the state is cut off with the
    // reason, and resumes by revision with the whole history.
    let err = loop {
        match tokio::time::timeout(LONG, early.next())
            .await
            .expect("watch stalled")
            .expect("watch ended")
        {
            Ok(_) => continue,
            Err(e) => break e,
        }
    };
    assert!(
        matches!(err, StoreError::WatchDropped { ref reason } if reason.contains("snapshot")),
        "{err}"
    );
    // The history before the snapshot did not come with it (issue 10): a
    // resume from before it is refused as compacted (410 at the API), and
    // one from the snapshot's revision delivers every later change.
    let compacted = match fresh.watch("/snap/", WatchStart::After(early.last_revision())) {
        Err(StoreError::Compacted { compacted, .. }) => compacted,
        other => panic!("a resume from before the snapshot: {other:?}"),
    };
    assert!(compacted >= snap.unwrap().index, "{compacted} {snap:?}");
    let mut resumed = fresh.watch("/snap/", WatchStart::After(compacted)).unwrap();
    for i in 0..300 {
        c.member(leader)
            .txn(vec![Op::create(
                format!("/snap/after/{i:04}"),
                vec![1u8; 16],
            )])
            .await
            .unwrap();
    }
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < 300 {
        match tokio::time::timeout(LONG, resumed.next())
            .await
            .expect("watch stalled")
            .expect("watch ended")
            .unwrap()
        {
            WatchMessage::Events { events, .. } => {
                seen.extend(events.iter().map(|e| e.key.clone()))
            }
            WatchMessage::Progress { .. } => {}
        }
    }
    drop((early, resumed, fresh));
    c.shutdown().await;
}

/// A leader whose followers do not answer cannot confirm a read: the read
/// fails as retryable (nothing was read or written), never as a refusal,
/// and reads work again once the followers answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unconfirmed_read_index_is_retryable_not_a_refusal() {
    let c = Cluster::start(3, 7).await;
    let leader = c.leader(LONG).await;
    c.member(leader)
        .txn(vec![Op::create("/ri/a", b"1".to_vec())])
        .await
        .unwrap();
    let ids = c.all_ids();
    c.router.isolate(leader, &ids);
    let err = c
        .member(leader)
        .get("/ri/a", Consistency::Linearizable)
        .await
        .expect_err("a leader cut off from its quorum confirmed a read");
    assert!(err.is_retryable(), "not retryable: {err}");
    c.router.heal();
    let new_leader = c.leader(LONG).await;
    wait_for("linearizable reads after the heal", LONG, || {
        let m = c.member(new_leader);
        async move { m.get("/ri/a", Consistency::Linearizable).await.ok() }
    })
    .await;
    c.shutdown().await;
}

/// The leader's counter of leadership confirmations for the read index.
fn confirmations(m: &keel_store::Member) -> u64 {
    m.render_metrics()
        .lines()
        .find_map(|l| l.strip_prefix("keel_store_read_index_confirmations_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("the confirmations counter")
}

/// Hundreds of concurrent linearizable reads, on the leader and through the
/// followers, share a few leadership confirmations instead of one each
/// (one each was a storm of heartbeats that cost a loaded leader its
/// leadership), and every read still sees each write acknowledged before
/// it began.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_linearizable_reads_share_read_index_rounds() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    let c = Cluster::start(3, 11).await;
    let leader = c.leader(LONG).await;
    let ids = c.all_ids();
    // Rounds take a while, as on a busy network: reads pile up behind them.
    for &f in ids.iter().filter(|i| **i != leader) {
        c.router.set_delay(leader, f, Duration::from_millis(40));
    }
    let first = c
        .member(leader)
        .txn(vec![Op::create("/rr/k", b"0".to_vec())])
        .await
        .unwrap();
    let acked = Arc::new(AtomicU64::new(first));
    let before = confirmations(&c.member(leader));

    // A writer keeps acknowledging new values while the reads run.
    let writer = {
        let (m, acked) = (c.member(leader), acked.clone());
        tokio::spawn(async move {
            for i in 1..=20u32 {
                let rev = m
                    .txn(vec![Op::update("/rr/k", i.to_string().into_bytes())])
                    .await
                    .unwrap();
                acked.fetch_max(rev, Ordering::SeqCst);
            }
        })
    };
    let mut reads = tokio::task::JoinSet::new();
    const READS: usize = 300;
    for i in 0..READS {
        let m = c.member(ids[i % ids.len()]);
        let acked = acked.clone();
        reads.spawn(async move {
            let floor = acked.load(Ordering::SeqCst);
            let (kv, _) = m.get("/rr/k", Consistency::Linearizable).await.unwrap();
            let seen = kv.expect("the key").mod_revision;
            assert!(
                seen >= floor,
                "a read that began after revision {floor} was acknowledged saw {seen}"
            );
        });
    }
    while let Some(r) = reads.join_next().await {
        r.unwrap();
    }
    writer.await.unwrap();
    let used = confirmations(&c.member(leader)) - before;
    println!("{READS} linearizable reads used {used} leadership confirmations");
    assert!(
        used <= (READS / 5) as u64,
        "{READS} concurrent reads took {used} leadership confirmations"
    );
    c.router.heal();
    c.shutdown().await;
}

/// A member's counter named `name` (a line `name value` of its metrics).
fn counter(m: &keel_store::Member, name: &str) -> u64 {
    m.render_metrics()
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("the counter {name}"))
}

/// Concurrent writes on a follower reach the leader in a few calls, not one
/// call each, and each keeps its own outcome: its own revision, or its own
/// failed precondition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_on_a_follower_share_forward_calls() {
    use std::collections::BTreeSet;

    let c = Cluster::start(3, 12).await;
    let leader = c.leader(LONG).await;
    let follower = c.all_ids().into_iter().find(|i| *i != leader).unwrap();
    // Commits take a while, as on a busy network: writes pile up behind them.
    for &id in c.all_ids().iter().filter(|i| **i != leader) {
        c.router.set_delay(leader, id, Duration::from_millis(20));
    }
    c.member(leader)
        .txn(vec![Op::create("/fc/taken", b"0".to_vec())])
        .await
        .unwrap();
    let calls_before = c.router.attempted(follower, "forward");

    const WRITES: usize = 200;
    let mut writes = tokio::task::JoinSet::new();
    for i in 0..WRITES {
        let m = c.member(follower);
        writes.spawn(async move {
            // Every tenth write asks to create a key that exists: it alone fails.
            let key = if i % 10 == 0 {
                "/fc/taken".to_string()
            } else {
                format!("/fc/{i:03}")
            };
            (
                i,
                m.txn(vec![Op::create(key, i.to_string().into_bytes())])
                    .await,
            )
        });
    }
    let mut revisions = BTreeSet::new();
    while let Some(r) = writes.join_next().await {
        let (i, res) = r.unwrap();
        if i % 10 == 0 {
            assert!(
                matches!(res, Err(StoreError::Precondition(_))),
                "write {i} on an existing key: {res:?}"
            );
        } else {
            let rev = res.unwrap_or_else(|e| panic!("write {i}: {e}"));
            assert!(revisions.insert(rev), "revision {rev} given twice");
        }
    }
    let succeeded = WRITES - WRITES / 10;
    assert_eq!(revisions.len(), succeeded);

    let calls = c.router.attempted(follower, "forward") - calls_before;
    println!("{WRITES} concurrent writes on a follower took {calls} forward calls");
    assert!(
        calls <= (WRITES / 5) as u64,
        "{WRITES} concurrent writes on a follower took {calls} forward calls"
    );
    let f = c.member(follower);
    assert_eq!(counter(&f, "keel_store_forward_calls_total"), calls);
    // The follower hears from the leader: every call went straight there,
    // without first asking its own Raft core who leads.
    assert_eq!(counter(&f, "keel_store_forwards_direct_total"), calls);
    assert_eq!(
        counter(&f, "keel_store_writes_forwarded_total"),
        WRITES as u64
    );
    // The cluster's shutdown waits for every handle on a member to go.
    drop(f);
    // Every write is where its revision says, on the leader.
    for i in (0..WRITES).filter(|i| i % 10 != 0) {
        let (kv, _) = c
            .member(leader)
            .get(&format!("/fc/{i:03}"), Consistency::Linearizable)
            .await
            .unwrap();
        let kv = kv.unwrap_or_else(|| panic!("key /fc/{i:03}"));
        assert_eq!(kv.value, i.to_string().into_bytes());
        assert!(revisions.contains(&kv.mod_revision));
    }
    c.router.heal();
    c.shutdown().await;
}
