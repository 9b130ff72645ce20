//! The snapshot file only moves forward: a member that installs a snapshot
//! while builds of its own run (triggered again and again) ends with a
//! `snapshot.bin` that is the snapshot openraft reports, never an older one.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use keel_store::Op;
use keel_store::data_dir::DataDir;
use keel_store::snapshot;
use keel_store::snapshot_file::SNAPSHOT_FILE;
use keel_tests::{Cluster, wait_for};
use openraft::async_runtime::WatchReceiver;

const LONG: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_installed_snapshot_is_the_file_even_with_builds_racing_it() {
    let mut c = Cluster::start_with(3, 31, |cfg| {
        cfg.snapshot_every = 20;
        cfg.keep_behind_snapshot = 5;
    })
    .await;
    let leader = c.leader(LONG).await;
    let lagging = if leader == 3 { 2 } else { 3 };
    c.member(leader)
        .txn(vec![Op::create("/s/first", b"1".to_vec())])
        .await
        .unwrap();
    c.wait_applied_index(c.member(leader).status().applied_index, LONG)
        .await;
    c.kill(lagging).await;
    let mut last = 0;
    for i in 0..120 {
        last = c
            .member(leader)
            .txn(vec![Op::create(format!("/s/{i:03}"), vec![b'v'; 4096])])
            .await
            .unwrap();
    }
    c.member(leader)
        .raft()
        .wait(Some(LONG))
        .metrics(
            |m| m.purged.is_some_and(|p| p.index > 10),
            "the leader purged past the lagging member",
        )
        .await
        .unwrap();

    let member = c.restart(lagging).await;
    // Builds of its own state race the install the leader sends.
    let done = Arc::new(AtomicBool::new(false));
    let trigger = {
        let (member, done) = (member.clone(), done.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                let _ = member.raft().trigger().snapshot().await;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    member
        .raft()
        .wait(Some(LONG))
        .applied_index_at_least(Some(last), "the restarted member caught up")
        .await
        .unwrap();
    assert!(
        member.raft().metrics().borrow_watched().snapshot.is_some(),
        "it caught up from a snapshot"
    );
    done.store(true, Ordering::Relaxed);
    trigger.await.unwrap();

    // Once the last build has finished, the file is the snapshot openraft
    // reports (never an older one left by a build that lost the race).
    let path = DataDir::new(&c.configs[&lagging].data_dir)
        .snapshots()
        .join(SNAPSHOT_FILE);
    let file_meta = || {
        std::fs::read(&path)
            .ok()
            .and_then(|b| snapshot::meta_from_bytes(&b).ok())
            .and_then(|m| m.last_log_id)
    };
    wait_for(
        "snapshot.bin to be the member's current snapshot",
        Duration::from_secs(10),
        || {
            let (file, metrics) = (
                file_meta(),
                member.raft().metrics().borrow_watched().snapshot,
            );
            async move { (file.is_some() && file == metrics).then_some(()) }
        },
    )
    .await;
    let m = member.raft().metrics().borrow_watched().clone();
    assert!(
        file_meta() >= m.purged,
        "the snapshot file covers the purged log"
    );
    drop(member);
    c.shutdown().await;
}

/// Snapshot chunks that do not continue the transfer in progress are
/// refused and nothing is installed; a chunk from a deposed leader is
/// answered with the member's newer vote before a byte is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_order_or_stale_snapshot_chunks_change_nothing() {
    use keel_store::transport::SnapshotChunk;
    use keel_store::{PeerRequest, PeerResponse, SnapshotMeta, Vote};

    let c = Cluster::start(3, 32).await;
    let leader = c.leader(LONG).await;
    let rev = c
        .member(leader)
        .txn(vec![Op::create("/c/a", b"1".to_vec())])
        .await
        .unwrap();
    c.wait_applied(rev, LONG).await;
    let follower = c.all_ids().into_iter().find(|i| *i != leader).unwrap();
    let m = c.member(follower);
    let vote = m.raft().metrics().borrow_watched().vote;
    // The applied index in the metrics can trail the revision: wait until
    // the follower shows everything the leader applied.
    let target = c.member(leader).status().applied_index;
    let applied = wait_for(
        "the follower to show the leader's applied index",
        LONG,
        || {
            let a = m.status().applied_index;
            async move { (a >= target).then_some(a) }
        },
    )
    .await;
    let meta = SnapshotMeta {
        last_log_id: Some(keel_store::log_id(
            vote.leader_id.term,
            leader,
            applied + 100,
        )),
        ..Default::default()
    };
    let chunk = |vote: Vote, offset: u64, done: bool| {
        PeerRequest::Snapshot(SnapshotChunk {
            vote,
            meta: meta.clone(),
            offset,
            data: vec![7u8; 16],
            done,
        })
    };
    let refused = |r: PeerResponse| match r {
        PeerResponse::Snapshot(Err(e)) => e,
        other => panic!("expected a refusal, got {other:?}"),
    };

    // A chunk without the ones before it.
    let e = refused(m.handle(chunk(vote, 16, true)).await);
    assert!(e.contains("without the chunks before it"), "{e}");
    // A transfer that skips ahead.
    assert!(matches!(
        m.handle(chunk(vote, 0, false)).await,
        PeerResponse::Snapshot(Ok(_))
    ));
    let e = refused(m.handle(chunk(vote, 48, true)).await);
    assert!(e.contains("expected offset 16"), "{e}");
    // The refused transfer is gone: its continuation is refused too.
    let e = refused(m.handle(chunk(vote, 16, true)).await);
    assert!(e.contains("without the chunks before it"), "{e}");
    // From a leader of an older term: answered with the newer vote.
    let old = Vote::new_committed(vote.leader_id.term - 1, leader);
    match m.handle(chunk(old, 0, true)).await {
        PeerResponse::Snapshot(Ok(r)) => assert_eq!(r.vote, vote),
        other => panic!("expected the member's vote, got {other:?}"),
    }

    assert_eq!(m.status().applied_index, applied, "nothing was installed");
    let left = std::fs::read_dir(DataDir::new(&m.config().data_dir).snapshots())
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().contains("recv"))
                .count()
        })
        .unwrap_or(0);
    assert_eq!(left, 0, "no received file is left behind");
    drop(m);
    c.shutdown().await;
}
