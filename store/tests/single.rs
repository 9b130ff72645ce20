//! A single member end to end: writes, reads, watches, bad input, refusal to
//! start on untrusted data, disk use under a steady churn, and the actors
//! events name.

use std::sync::Arc;
use std::time::Duration;

use keel_store::command::{Actor, Command, FailureReason, Op};
use keel_store::db::{CF_RAFT_META, CF_STORE_META, Db};
use keel_store::{
    Consistency, Member, PeerRequest, PeerResponse, RangeRequest, StoreError, WatchMessage,
    WatchStart,
};
use openraft::async_runtime::WatchReceiver;

mod common;
use common::{NoPeers, config, start, stop};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_reads_and_preconditions() {
    let dir = tempfile::tempdir().unwrap();
    let m = start(config(dir.path())).await;
    let r1 = m
        .txn(vec![
            Op::create("/a", b"1".to_vec()).with_uid("u1"),
            Op::create("/b", b"1".to_vec()),
        ])
        .await
        .unwrap();
    let (a, at) = m.get("/a", Consistency::Linearizable).await.unwrap();
    let a = a.unwrap();
    assert_eq!(
        (a.create_revision, a.mod_revision, a.version, at),
        (r1, r1, 1, r1)
    );
    // A stale mod revision fails with the key's current state, and writes nothing.
    let r2 = m
        .txn(vec![Op::update("/a", b"2".to_vec()).if_mod_revision(r1)])
        .await
        .unwrap();
    let err = m
        .txn(vec![
            Op::update("/b", b"x".to_vec()),
            Op::update("/a", b"3".to_vec()).if_mod_revision(r1),
        ])
        .await
        .unwrap_err();
    match err {
        StoreError::Precondition(f) => {
            assert_eq!(f.op_index, 1);
            assert_eq!(
                f.reason,
                FailureReason::ModRevisionMismatch {
                    expected: r1,
                    actual: r2
                }
            );
            assert_eq!(f.current.unwrap().value, b"2".to_vec());
        }
        e => panic!("expected a precondition failure, got {e}"),
    }
    assert_eq!(
        m.get("/b", Consistency::Local)
            .await
            .unwrap()
            .0
            .unwrap()
            .value,
        b"1".to_vec(),
        "all-or-nothing"
    );
    let err = m
        .txn(vec![Op::delete("/a").if_uid("other")])
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Precondition(ref f) if matches!(f.reason, FailureReason::UidMismatch { .. })),
        "{err}"
    );
    m.txn(vec![Op::delete("/a").if_uid("u1")]).await.unwrap();
    assert!(matches!(
        m.txn(vec![Op::create("/b", b"again".to_vec())]).await.unwrap_err(),
        StoreError::Precondition(ref f) if f.reason == FailureReason::AlreadyExists
    ));
    // A past revision still shows the deleted key.
    let mut req = RangeRequest::prefix("/");
    req.revision = Some(r2);
    let past = m.range(req).await.unwrap();
    assert_eq!(
        past.kvs.iter().map(|k| k.key.as_str()).collect::<Vec<_>>(),
        vec!["/a", "/b"]
    );
    let now = m.range(RangeRequest::prefix("/")).await.unwrap();
    assert_eq!(
        now.kvs.iter().map(|k| k.key.as_str()).collect::<Vec<_>>(),
        vec!["/b"]
    );
    let mut req = RangeRequest::prefix("/");
    req.revision = Some(now.revision + 100);
    assert!(matches!(
        m.range(req).await,
        Err(StoreError::FutureRevision { .. })
    ));
    let mut req = RangeRequest::prefix("/");
    req.continue_token = Some("garbage".into());
    assert!(matches!(
        m.range(req).await,
        Err(StoreError::InvalidContinue(_))
    ));
    stop(m).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_commands_are_refused_before_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.limits.max_value_bytes = 1024;
    let m = start(c).await;
    let before = m
        .txn(vec![Op::create("/first", b"1".to_vec())])
        .await
        .unwrap();
    let mut cmd = Command::txn(vec![Op::create("/v", b"1".to_vec())]);
    cmd.version = 99;
    let err = m.propose(cmd.clone()).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::UnsupportedCommandVersion {
                found: 99,
                supported: keel_store::command::COMMAND_VERSION
            }
        ),
        "{err}"
    );
    // The same command arriving from another member is refused as well.
    match m.handle(PeerRequest::Forward(cmd)).await {
        PeerResponse::Forward(Err(e)) => assert!(
            e.message.contains("unsupported command format version 99"),
            "{}",
            e.message
        ),
        other => panic!("unexpected {other:?}"),
    }
    let err = m
        .txn(vec![Op::create("/big", vec![7u8; 2048])])
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::ValueTooLarge { ref key, size, limit: 1024 } if key == "/big" && size > 1024),
        "{err}"
    );
    assert_eq!(m.revisions().unwrap().0, before, "nothing entered the log");
    assert!(m.get("/big", Consistency::Local).await.unwrap().0.is_none());
    // A compaction is checked like any command: a foreign version never enters the log.
    let mut compact = Command::compact(before);
    compact.version = 99;
    let err = m.propose(compact).await.unwrap_err();
    assert!(
        matches!(err, StoreError::UnsupportedCommandVersion { found: 99, .. }),
        "{err}"
    );
    assert_eq!(
        m.revisions().unwrap(),
        (before, 0),
        "nothing entered the log"
    );
    // A compaction past the head stops short of its own revision, so a watch
    // can still start at the head.
    let compacted = m.compact(u64::MAX).await.unwrap();
    let (head, now) = m.revisions().unwrap();
    assert_eq!((compacted, now), (head - 1, head - 1));
    assert!(matches!(
        m.watch("/", WatchStart::After(compacted - 1)),
        Err(StoreError::Compacted { .. })
    ));
    m.watch("/", WatchStart::After(compacted)).unwrap();
    stop(m).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_backfill_progress_lag_and_resume() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.watch.channel_capacity = 4;
    c.watch.progress_interval = Duration::from_millis(100);
    let m = start(c).await;
    let first = m
        .txn(vec![
            Op::create("/w/a", b"1".to_vec()),
            Op::create("/x/other", b"1".to_vec()),
        ])
        .await
        .unwrap();
    // An idle watcher hears progress carrying the current revision.
    let mut idle = m.watch("/w/", WatchStart::Now).unwrap();
    let (head, _) = m.revisions().unwrap();
    match idle.next().await.unwrap().unwrap() {
        WatchMessage::Progress { revision } => assert!(revision >= head),
        other => panic!("expected progress, got {other:?}"),
    }
    // A watcher that never reads is cut off; the writer is never blocked.
    let mut slow = m.watch("/w/", WatchStart::After(first)).unwrap();
    let mut last = first;
    for i in 0..20 {
        last = m
            .txn(vec![Op::update("/w/a", format!("{i}").into_bytes())])
            .await
            .unwrap();
    }
    let mut got = Vec::new();
    let err = loop {
        match slow.next().await.unwrap() {
            Ok(WatchMessage::Events { revision, .. }) => got.push(revision),
            Ok(WatchMessage::Progress { .. }) => {}
            Err(e) => break e,
        }
    };
    assert!(
        matches!(err, StoreError::WatchDropped { ref reason } if reason.contains("fell")),
        "{err}"
    );
    assert!(err.is_retryable());
    // Resume from the last revision seen: the rest arrives, in order, once.
    let resume_from = got.last().copied().unwrap_or(first);
    let mut resumed = m.watch("/w/", WatchStart::After(resume_from)).unwrap();
    while got.last() != Some(&last) {
        if let WatchMessage::Events { revision, .. } = resumed.next().await.unwrap().unwrap() {
            got.push(revision);
        }
    }
    let mut sorted = got.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(got, sorted, "ordered, no duplicates");
    assert_eq!(got.len(), 20);
    // Below the compacted revision a watch is refused.
    let compacted = m.compact(last - 5).await.unwrap();
    assert_eq!(compacted, last - 5);
    let err = m.watch("/w/", WatchStart::After(first)).unwrap_err();
    assert!(
        matches!(err, StoreError::Compacted { compacted: c, requested } if c == compacted && requested == first),
        "{err}"
    );
    // Open watch streams hold the database; close them before stopping.
    drop((idle, slow, resumed));
    stop(m).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_every_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let m = start(config(dir.path())).await;
    let mut revs = Vec::new();
    for i in 0..50 {
        revs.push(
            m.txn(vec![Op::create(format!("/r/{i:03}"), vec![i as u8])])
                .await
                .unwrap(),
        );
    }
    stop(m).await;
    let m = start(config(dir.path())).await;
    let all = m.range(RangeRequest::prefix("/r/")).await.unwrap();
    assert_eq!(all.kvs.len(), 50);
    for (kv, rev) in all.kvs.iter().zip(&revs) {
        assert_eq!(kv.mod_revision, *rev);
    }
    assert_eq!(m.events().unwrap().len(), 50);
    stop(m).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_data_is_refused_with_the_reason() {
    // A damaged meta value.
    let dir = tempfile::tempdir().unwrap();
    let m = start(config(dir.path())).await;
    m.txn(vec![Op::create("/a", b"1".to_vec())]).await.unwrap();
    stop(m).await;
    {
        let db = Db::open(dir.path()).unwrap();
        let mut batch = rocksdb::WriteBatch::default();
        batch.put_cf(db.cf(CF_RAFT_META), b"vote", b"\xff\xff\xff");
        db.write_synced(batch, "damaging the vote").unwrap();
    }
    let err = Member::open(config(dir.path()), Arc::new(NoPeers))
        .await
        .err()
        .expect("refused");
    assert!(
        matches!(err, StoreError::Corrupt { cf: "raft_meta", ref key, .. } if key == "vote"),
        "{err}"
    );

    // A data directory of another format version.
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Db::open(dir.path()).unwrap();
        let mut batch = rocksdb::WriteBatch::default();
        batch.put_cf(db.cf(CF_STORE_META), b"format", 7u32.to_be_bytes());
        db.write_synced(batch, "writing another format").unwrap();
    }
    let err = Member::open(config(dir.path()), Arc::new(NoPeers))
        .await
        .err()
        .expect("refused");
    assert!(
        matches!(
            err,
            StoreError::FormatVersion {
                found: 7,
                expected: 1,
                ..
            }
        ),
        "{err}"
    );

    // Truncated RocksDB files.
    let dir = tempfile::tempdir().unwrap();
    let m = start(config(dir.path())).await;
    for i in 0..20 {
        m.txn(vec![Op::create(format!("/t/{i}"), vec![1u8; 100])])
            .await
            .unwrap();
    }
    m.raft().trigger().snapshot().await.unwrap();
    m.raft()
        .wait(Some(Duration::from_secs(20)))
        .metrics(|x| x.snapshot.is_some(), "snapshot")
        .await
        .unwrap();
    stop(m).await;
    // Flush leaves SST files; cut every one of them in half.
    {
        Db::open(dir.path()).unwrap().flush().unwrap();
    }
    let mut truncated = 0;
    for entry in std::fs::read_dir(keel_store::data_dir::DataDir::new(dir.path()).db()).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "sst") {
            let len = std::fs::metadata(&p).unwrap().len();
            std::fs::OpenOptions::new()
                .write(true)
                .open(&p)
                .unwrap()
                .set_len(len / 2)
                .unwrap();
            truncated += 1;
        }
    }
    assert!(truncated > 0, "expected SST files to damage");
    let err = Member::open(config(dir.path()), Arc::new(NoPeers))
        .await
        .err()
        .expect("refused");
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            StoreError::OpenDb { .. } | StoreError::Corrupt { .. } | StoreError::Io { .. }
        ),
        "{msg}"
    );
    println!("refused: {msg}");
    // Refused for the damage, not for something else (a lock still held by
    // the previous open would also be an OpenDb naming the directory).
    let corruption = match &err {
        StoreError::OpenDb { source, .. } | StoreError::Io { source, .. } => {
            source.kind() == rocksdb::ErrorKind::Corruption
        }
        StoreError::Corrupt { .. } => true,
        _ => false,
    };
    assert!(corruption, "not refused as corruption: {msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_bounds_events_by_count_age_and_batch() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.retention.max_events = 6;
    c.retention.max_age = Some(Duration::from_secs(3600));
    c.retention.batch = 3;
    // The background task is not what this test drives; keep it out of the way.
    c.retention.interval = Duration::from_secs(3600);
    let m = start(c).await;
    let mut revs = Vec::new();
    for i in 0..10 {
        revs.push(
            m.txn(vec![Op::create(format!("/ret/{i}"), b"v".to_vec())])
                .await
                .unwrap(),
        );
    }
    let now = keel_store::command::now_ms();
    // 10 events, 6 allowed: the 4 oldest go, but one step drops at most 3.
    assert_eq!(m.retention_target(now).await.unwrap(), Some(revs[2]));
    assert_eq!(m.compact(revs[2]).await.unwrap(), revs[2]);
    assert_eq!(m.retention_target(now).await.unwrap(), Some(revs[3]));
    assert_eq!(m.compact(revs[3]).await.unwrap(), revs[3]);
    assert_eq!(
        m.retention_target(now).await.unwrap(),
        None,
        "within the count bound"
    );
    assert_eq!(m.events().unwrap().len(), 6);
    // Two hours later every event is too old: batches of 3 until none is left.
    let later = now + 2 * 3600 * 1000;
    assert_eq!(m.retention_target(later).await.unwrap(), Some(revs[6]));
    m.compact(revs[6]).await.unwrap();
    assert_eq!(m.retention_target(later).await.unwrap(), Some(revs[9]));
    m.compact(revs[9]).await.unwrap();
    assert_eq!(m.retention_target(later).await.unwrap(), None);
    assert!(m.events().unwrap().is_empty());
    // Objects are untouched by compaction; history below it is gone.
    assert_eq!(
        m.range(RangeRequest::prefix("/ret/"))
            .await
            .unwrap()
            .kvs
            .len(),
        10
    );
    let mut past = RangeRequest::prefix("/ret/");
    past.revision = Some(revs[5]);
    assert!(matches!(
        m.range(past).await,
        Err(StoreError::Compacted { .. })
    ));
    stop(m).await;
}

/// Under a steady churn of updates to the same keys, retention and log purging
/// keep the database from growing without bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_use_levels_off_under_churn() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.retention.max_events = 300;
    c.retention.max_age = None;
    c.retention.interval = Duration::from_millis(100);
    c.retention.batch = 1000;
    c.snapshot_every = 500;
    c.keep_behind_snapshot = 100;
    let m = start(c).await;
    for k in 0..16 {
        m.txn(vec![Op::create(format!("/lease/{k}"), vec![0u8; 1024])])
            .await
            .unwrap();
    }
    let mut sizes = Vec::new();
    for round in 0..10u8 {
        let mut tasks = Vec::new();
        for k in 0..16 {
            let m = m.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..60u32 {
                    let mut v = vec![round; 1024];
                    v[..4].copy_from_slice(&i.to_be_bytes());
                    m.txn(vec![Op::update(format!("/lease/{k}"), v)])
                        .await
                        .unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        // Let retention catch up with this round, then measure what is on disk.
        let head = m.revisions().unwrap().0;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while m.events().unwrap().len() > 300 + 16 {
            assert!(
                std::time::Instant::now() < deadline,
                "retention did not keep up (head {head})"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Concurrent writers share log entries (group commit), so the log's
        // head is an index below the revision.
        let head_index = m
            .raft()
            .metrics()
            .borrow_watched()
            .last_applied
            .map_or(0, |l| l.index);
        m.raft().trigger().snapshot().await.unwrap();
        m.raft()
            .wait(Some(Duration::from_secs(30)))
            .metrics(
                |x| x.purged.is_some_and(|p| p.index + 200 >= head_index),
                "log purged behind the snapshot",
            )
            .await
            .unwrap();
        let bytes = m.disk_usage().unwrap();
        sizes.push(bytes);
        println!("round {round}: head revision {head}, data directory {bytes} bytes");
        if std::env::var("KEEL_DEBUG_FILES").is_ok() {
            let parts = keel_store::data_dir::DataDir::new(dir.path());
            for part in [parts.db(), parts.snapshots()] {
                for e in std::fs::read_dir(part).unwrap().flatten() {
                    println!("   {:?} {}", e.file_name(), e.metadata().unwrap().len());
                }
            }
        }
    }
    // 960 writes of 1 KiB per round put ~4 MB through the log, events and
    // objects: unbounded growth would add megabytes per round.
    let mean = |r: &[u64]| r.iter().sum::<u64>() / r.len() as u64;
    let early = mean(&sizes[1..4]);
    let late = mean(&sizes[sizes.len() - 3..]);
    assert!(
        late <= early + early / 2 + (1 << 20),
        "disk use keeps growing: {sizes:?}"
    );
    stop(m).await;
}

/// Many transactions at once share log entries (group commit), yet each gets
/// its own revision, its own outcome, and its own event, delivered in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_transactions_share_log_entries_but_not_revisions() {
    let dir = tempfile::tempdir().unwrap();
    let m = start(config(dir.path())).await;
    let seed = m
        .txn(vec![Op::create("/g/seed", b"0".to_vec())])
        .await
        .unwrap();
    // The answer can come before the metrics show the apply; a
    // linearizable read waits until they show everything committed.
    m.linearize().await.unwrap();
    let index_before = applied_index(&m);
    let start_rev = m.revisions().unwrap().0;
    let mut watch = m.watch("/g/", WatchStart::After(start_rev)).unwrap();
    const N: usize = 256;
    let mut tasks = Vec::new();
    for i in 0..N {
        let m = m.clone();
        tasks.push(tokio::spawn(async move {
            // Every other write names a revision the seed never had, so
            // failures sit inside batches next to successes.
            let op = if i % 2 == 0 {
                Op::create(format!("/g/{i}"), i.to_be_bytes().to_vec())
            } else {
                Op::update("/g/seed", i.to_be_bytes().to_vec()).if_mod_revision(seed + 1_000_000)
            };
            (i, m.txn(vec![op]).await)
        }));
    }
    let mut revisions = std::collections::BTreeMap::new();
    for t in tasks {
        let (i, res) = t.await.unwrap();
        match res {
            Ok(r) => {
                assert_eq!(i % 2, 0, "write {i} should have failed its precondition");
                assert!(revisions.insert(r, i).is_none(), "revision {r} given twice");
            }
            Err(StoreError::Precondition(f)) => {
                assert_eq!(i % 2, 1, "write {i} failed: {f}");
            }
            Err(e) => panic!("write {i}: {e}"),
        }
    }
    assert_eq!(revisions.len(), N / 2);
    // The watcher sees exactly the successful writes, in revision order.
    let mut seen = Vec::new();
    while seen.len() < N / 2 {
        let msg = tokio::time::timeout(Duration::from_secs(10), watch.next())
            .await
            .expect("the watch stalled")
            .expect("the watch ended")
            .unwrap();
        if let WatchMessage::Events { revision, events } = msg {
            assert_eq!(events.len(), 1);
            let i = revisions[&revision];
            assert_eq!(events[0].key, format!("/g/{i}"));
            seen.push(revision);
        }
    }
    assert_eq!(seen, revisions.keys().copied().collect::<Vec<_>>());
    // Fewer log entries than transactions: they were batched.
    let index_after = applied_index(&m);
    let entries = index_after - index_before;
    assert!(
        entries < N as u64,
        "{N} concurrent transactions took {entries} log entries"
    );
    assert!(m.revisions().unwrap().0 >= start_rev + N as u64);
    drop(watch);
    stop(m).await;
}

/// A watcher told nothing by the newest revisions (they changed other keys,
/// or failed) learns on request that it is current, after every earlier event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_on_request_reaches_only_that_prefix_after_its_events() {
    let dir = tempfile::tempdir().unwrap();
    let m = start(config(dir.path())).await;
    let mut quiet = m.watch("/quiet/", WatchStart::Now).unwrap();
    let mut busy = m.watch("/busy/", WatchStart::Now).unwrap();
    let own = m
        .txn(vec![Op::create("/quiet/a", b"1".to_vec())])
        .await
        .unwrap();
    m.txn(vec![Op::create("/busy/a", b"1".to_vec())])
        .await
        .unwrap();
    // A failed write takes a revision and makes no event at all.
    assert!(
        m.txn(vec![Op::create("/busy/a", b"2".to_vec())])
            .await
            .is_err()
    );
    let head = m.revisions().unwrap().0;
    assert!(head > own + 1);
    m.hub().request_progress("/quiet/");
    match next_msg(&mut quiet).await {
        WatchMessage::Events { revision, .. } => assert_eq!(revision, own),
        other => panic!("expected the quiet watcher's own event first, got {other:?}"),
    }
    assert_eq!(
        next_msg(&mut quiet).await,
        WatchMessage::Progress { revision: head }
    );
    // The other prefix got its event and no progress.
    assert!(matches!(
        next_msg(&mut busy).await,
        WatchMessage::Events { .. }
    ));
    assert!(
        tokio::time::timeout(Duration::from_millis(200), busy.next())
            .await
            .is_err(),
        "a watcher of another prefix was sent something"
    );
    drop((quiet, busy));
    stop(m).await;
}

async fn next_msg(w: &mut keel_store::WatchStream) -> WatchMessage {
    tokio::time::timeout(Duration::from_secs(10), w.next())
        .await
        .expect("the watch stalled")
        .expect("the watch ended")
        .unwrap()
}

/// Every event names the actor of its transaction: alone, or grouped into
/// batch entries with other users' transactions (and anonymous ones), live
/// to a watcher, read back from RocksDB, and after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_name_their_actors_through_batches_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let m = start(config(dir.path())).await;
    let actor = |i: usize| {
        Actor::new(
            format!("user-{i}"),
            [format!("team-{}", i % 3), "all".into()],
        )
    };
    // Two operations, one transaction: both events name alice.
    let alice = Actor::new("alice", ["dev"]);
    let first = m
        .txn_by(
            vec![
                Op::create("/a/x", b"1".to_vec()),
                Op::create("/a/y", b"1".to_vec()),
            ],
            alice.clone(),
        )
        .await
        .unwrap();
    // The answer can come before the metrics show the apply; a
    // linearizable read waits until they show everything committed.
    m.linearize().await.unwrap();
    let index_before = applied_index(&m);
    let mut watch = m.watch("/a/", WatchStart::After(first - 1)).unwrap();
    const N: usize = 128;
    let tasks: Vec<_> = (0..N)
        .map(|i| {
            let m = m.clone();
            tokio::spawn(async move {
                let ops = vec![Op::create(format!("/a/{i}"), b"v".to_vec())];
                // Every fourth write names nobody, as a `Kv` write without a certificate.
                match i % 4 {
                    0 => m.txn(ops).await,
                    _ => m.txn_by(ops, actor(i)).await,
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let index_after = applied_index(&m);
    assert!(
        index_after - index_before < N as u64,
        "{N} concurrent transactions took {} log entries: none was batched",
        index_after - index_before
    );
    let expected = |key: &str| -> Option<Actor> {
        match key.strip_prefix("/a/").unwrap() {
            "x" | "y" => Some(alice.clone()),
            i => {
                let i: usize = i.parse().unwrap();
                (!i.is_multiple_of(4)).then(|| actor(i))
            }
        }
    };
    let check = |events: &[keel_store::Event], from: &str| {
        assert_eq!(events.len(), N + 2, "{from}");
        for e in events {
            assert_eq!(
                e.actor.as_deref().cloned(),
                expected(&e.key),
                "{from}: {}",
                e.key
            );
        }
    };
    // Live, as the apply published them.
    let mut live = Vec::new();
    while live.len() < N + 2 {
        let msg = tokio::time::timeout(Duration::from_secs(10), watch.next())
            .await
            .expect("the watch stalled")
            .expect("the watch ended")
            .unwrap();
        if let WatchMessage::Events { events, .. } = msg {
            live.extend(events.iter().map(|e| (**e).clone()));
        }
    }
    check(&live, "live");
    // Read back from RocksDB: the store's event scan, and a watch replaying them.
    let stored: Vec<_> = m
        .events()
        .unwrap()
        .into_iter()
        .filter(|e| e.key.starts_with("/a/"))
        .collect();
    check(&stored, "stored");
    assert_eq!(stored, live);
    drop(watch);
    stop(m).await;
    let m = start(config(dir.path())).await;
    let after: Vec<_> = m
        .events()
        .unwrap()
        .into_iter()
        .filter(|e| e.key.starts_with("/a/"))
        .collect();
    assert_eq!(after, stored, "after a restart");
    let mut replay = m.watch("/a/", WatchStart::After(first - 1)).unwrap();
    let mut replayed = Vec::new();
    while replayed.len() < N + 2 {
        let msg = tokio::time::timeout(Duration::from_secs(10), replay.next())
            .await
            .expect("the replay stalled")
            .expect("the replay ended")
            .unwrap();
        if let WatchMessage::Events { events, .. } = msg {
            replayed.extend(events.iter().map(|e| (**e).clone()));
        }
    }
    assert_eq!(replayed, stored, "replayed from disk after a restart");
    drop(replay);
    stop(m).await;
}

/// The index of the last log entry `m` has applied.
fn applied_index(m: &Member) -> u64 {
    m.raft()
        .metrics()
        .borrow_watched()
        .last_applied
        .expect("an applied entry")
        .index
}
