//! The event archive on running members: every event reaches every
//! member's archive, in order, without gaps or duplicates, while retention
//! compacts and a member restarts; a member that had to install a snapshot
//! records the revisions it never had as a gap, which a read refuses.

use std::path::{Path, PathBuf};
use std::time::Duration;

use keel_store::archive::{self, ArchiveConfig, Entry};
use keel_store::{Event, EventKind, MemberConfig, Op, RetentionConfig};
use keel_tests::{Cluster, wait_for};
use openraft::async_runtime::WatchReceiver;

const LONG: Duration = Duration::from_secs(60);

fn archive_dir(cfg: &MemberConfig) -> PathBuf {
    cfg.data_dir.join("archive")
}

fn archiving(cfg: &mut MemberConfig) {
    let mut a = ArchiveConfig::new(archive_dir(cfg));
    a.max_delay = Duration::from_millis(200);
    a.segment_events = 40;
    a.interval = Duration::from_millis(50);
    cfg.archive = Some(a);
    cfg.retention = RetentionConfig {
        max_events: 30,
        max_age: None,
        interval: Duration::from_millis(100),
        batch: 15,
    };
}

fn archived(dir: &Path, through: u64) -> Vec<Event> {
    let mut out = Vec::new();
    archive::read_range(dir, 0, through, |e| {
        out.push(e);
        Ok(())
    })
    .unwrap();
    out
}

async fn wait_archived(dir: &Path, through: u64) {
    let dir = dir.to_path_buf();
    wait_for(
        &format!("{} to reach revision {through}", dir.display()),
        LONG,
        || {
            let reached = archive::open(&dir)
                .ok()
                .and_then(|e| archive::span(&e))
                .is_some_and(|(_, to)| to >= through);
            async move { reached.then_some(()) }
        },
    )
    .await;
}

/// (revision, key, kind) of what the workload did.
type Done = Vec<(u64, String, EventKind)>;

async fn workload(c: &Cluster, leader: u64, from: usize, to: usize, done: &mut Done) {
    for i in from..to {
        let key = format!("/a/{:03}", i % 25);
        let (op, kind) = if i < 25 {
            (Op::create(key.clone(), vec![b'x'; 64]), EventKind::Added)
        } else if i % 7 == 0 {
            (Op::delete(key.clone()), EventKind::Deleted)
        } else if done
            .iter()
            .rev()
            .find(|d| d.1 == key)
            .is_some_and(|d| d.2 == EventKind::Deleted)
        {
            (Op::create(key.clone(), vec![b'y'; 64]), EventKind::Added)
        } else {
            (Op::update(key.clone(), vec![b'z'; 64]), EventKind::Modified)
        };
        let rev = c.member(leader).txn(vec![op]).await.unwrap();
        done.push((rev, key, kind));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_reaches_every_archive_through_compaction_and_a_restart() {
    let mut c = Cluster::start_with(3, 151, archiving).await;
    let leader = c.leader(LONG).await;
    let mut done = Done::new();
    workload(&c, leader, 0, 120, &mut done).await;
    let restarted = if leader == 3 { 2 } else { 3 };
    c.kill(restarted).await;
    workload(&c, leader, 120, 200, &mut done).await;
    c.restart(restarted).await;
    workload(&c, leader, 200, 260, &mut done).await;
    let last = done.last().unwrap().0;
    c.wait_applied(last, LONG).await;
    let mut histories = Vec::new();
    for id in 1..=3 {
        let dir = archive_dir(&c.configs[&id]);
        wait_archived(&dir, last).await;
        let events = archived(&dir, last);
        let seen: Done = events
            .iter()
            .map(|e| (e.revision, e.key.clone(), e.kind))
            .collect();
        assert_eq!(
            seen, done,
            "member {id}'s archive differs from the workload"
        );
        let entries = archive::open(&dir).unwrap();
        assert!(
            entries.iter().all(|e| matches!(e, Entry::Segment(_))),
            "member {id} recorded a gap: {entries:?}"
        );
        assert!(entries.len() > 2, "member {id}: {entries:?}");
        histories.push(events);
    }
    assert!(histories.windows(2).all(|w| w[0] == w[1]));
    // Retention compacted behind the archive on every member, and the
    // archive (not the member) now holds the old events.
    wait_for("every member to compact", LONG, || {
        let all = (1..=3).all(|id| c.member(id).status().compacted_revision > last / 2);
        async move { all.then_some(()) }
    })
    .await;
    let metrics = c.member(leader).render_metrics();
    assert!(metrics.contains("keel_archive_revision "), "{metrics}");
    assert!(metrics.contains("keel_archive_gaps_total 0"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_installs_a_snapshot_records_a_gap_it_never_had() {
    let mut c = Cluster::start_with(3, 152, |cfg| {
        archiving(cfg);
        cfg.snapshot_every = 20;
        cfg.keep_behind_snapshot = 5;
    })
    .await;
    let leader = c.leader(LONG).await;
    let lagging = if leader == 3 { 2 } else { 3 };
    let mut done = Done::new();
    workload(&c, leader, 0, 30, &mut done).await;
    c.wait_applied(done.last().unwrap().0, LONG).await;
    let lag_dir = archive_dir(&c.configs[&lagging]);
    let lag_index = c.member(lagging).status().last_log_index;
    c.kill(lagging).await;
    workload(&c, leader, 30, 160, &mut done).await;
    // The leader keeps entries a follower is being sent; it purges past the
    // dead member once a failed send frees them. Only then is a snapshot the
    // way back.
    wait_for(
        "the leader to purge the log past the killed member",
        LONG,
        || {
            let purged = c.member(leader).raft().metrics().borrow_watched().purged;
            async move { purged.is_some_and(|p| p.index > lag_index).then_some(()) }
        },
    )
    .await;
    c.restart(lagging).await;
    workload(&c, leader, 160, 170, &mut done).await;
    let last = done.last().unwrap().0;
    c.wait_applied(last, LONG).await;
    wait_archived(&lag_dir, last).await;
    let entries = archive::open(&lag_dir).unwrap();
    // A member slow to catch up after the install may be sent a second
    // snapshot (the leader snapshots every 20 entries): each is a gap.
    let gaps: Vec<(u64, u64, String)> = entries
        .iter()
        .filter_map(|e| match e {
            Entry::Gap { from, to, reason } => Some((*from, *to, reason.clone())),
            _ => None,
        })
        .collect();
    assert!(!gaps.is_empty(), "no gap recorded: {entries:?}");
    assert!(
        gaps.iter().all(|g| g.2.contains("snapshot install")),
        "{gaps:?}"
    );
    let gap = gaps[0].clone();
    let after_gaps = gaps.last().unwrap().1;
    let err = archive::read_range(&lag_dir, 0, last, |_| Ok(()))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!(
            "revisions {} to {} are a recorded gap",
            gap.0 + 1,
            gap.1
        )),
        "{err}"
    );
    // What it archived after the gap is whole, and so is another member's
    // archive across it.
    let after: Done = {
        let mut v = Vec::new();
        archive::read_range(&lag_dir, after_gaps, last, |e| {
            v.push((e.revision, e.key.clone(), e.kind));
            Ok(())
        })
        .unwrap();
        v
    };
    let expected: Done = done.iter().filter(|d| d.0 > after_gaps).cloned().collect();
    assert_eq!(after, expected);
    let other = archive_dir(&c.configs[&leader]);
    wait_archived(&other, last).await;
    assert_eq!(archived(&other, last).len(), done.len());
    let metrics = c.member(lagging).render_metrics();
    assert!(
        metrics.contains(&format!("keel_archive_gaps_total {}", gaps.len())),
        "{metrics}"
    );
}

/// An archiving step whose index cannot be written is retried from what
/// the index says: no entry twice, and every listed checksum is the one of
/// the file that holds the range.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_that_cannot_write_the_index_is_retried_without_a_trace() {
    let c = Cluster::start_with(1, 156, archiving).await;
    let m = c.member(1);
    let dir = archive_dir(&c.configs[&1]);
    let mut done = Done::new();
    workload(&c, 1, 0, 30, &mut done).await;
    wait_archived(&dir, done.last().unwrap().0).await;
    let failures = || {
        m.render_metrics()
            .lines()
            .find_map(|l| l.strip_prefix("keel_archive_failures_total "))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // A directory where the index's temporary file goes: creating it fails.
    let blocker = dir.join(format!("{}.tmp", archive::INDEX_FILE));
    // The archiver's own temporary index is there while it writes one.
    wait_for("room for the blocker", LONG, || {
        let made = match std::fs::create_dir(&blocker) {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
            Err(e) => panic!("creating {}: {e}", blocker.display()),
        };
        async move { made.then_some(()) }
    })
    .await;
    workload(&c, 1, 30, 90, &mut done).await;
    wait_for("archiving steps to fail", LONG, || {
        let failed = failures() >= 3;
        async move { failed.then_some(()) }
    })
    .await;
    std::fs::remove_dir(&blocker).unwrap();
    workload(&c, 1, 90, 100, &mut done).await;
    let last = done.last().unwrap().0;
    wait_archived(&dir, last).await;
    let entries = archive::open(&dir).unwrap();
    assert!(
        entries.windows(2).all(|w| w[0].range().1 == w[1].range().0),
        "entries overlap or repeat: {entries:?}"
    );
    let seen: Done = archived(&dir, last)
        .iter()
        .map(|e| (e.revision, e.key.clone(), e.kind))
        .collect();
    assert_eq!(seen, done);
    let unlisted: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| {
            n.ends_with(".seg")
                && !entries
                    .iter()
                    .any(|e| matches!(e, Entry::Segment(s) if &s.file == n))
        })
        .collect();
    assert!(
        unlisted.is_empty(),
        "segments left beside the index: {unlisted:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brief_keys_stay_out_of_the_archive_and_do_not_hold_it_back() {
    let c = Cluster::start_with(1, 153, archiving).await;
    let m = c.member(1);
    let lease = |i: usize| format!("/registry/coordination.k8s.io/leases/ns/l{}", i % 3);
    let mut long = Vec::new();
    let mut last = 0;
    for i in 0..30 {
        let op = if i < 3 {
            Op::create(lease(i), vec![b'l'; 16])
        } else {
            Op::update(lease(i), vec![b'l'; 16])
        };
        last = m.txn(vec![op]).await.unwrap();
        if i % 5 == 0 {
            let key = format!("/registry/core/configmaps/ns/c{i}");
            long.push((
                m.txn(vec![Op::create(key.clone(), b"v".to_vec())])
                    .await
                    .unwrap(),
                key,
            ));
        }
    }
    let dir = archive_dir(&c.configs[&1]);
    wait_archived(&dir, last).await;
    // A stretch in which only leases change: covered without a segment.
    for i in 30..80 {
        last = m
            .txn(vec![Op::update(lease(i), vec![b'l'; 16])])
            .await
            .unwrap();
    }
    wait_archived(&dir, last).await;
    let entries = archive::open(&dir).unwrap();
    assert!(
        matches!(entries.last(), Some(Entry::Quiet { .. })),
        "{entries:?}"
    );
    let seen: Vec<(u64, String)> = archived(&dir, last)
        .into_iter()
        .map(|e| (e.revision, e.key))
        .collect();
    assert_eq!(seen, long);
    // The floor moved past the leases: compaction may drop them. The
    // archiver sets its gauge after writing the index `wait_archived` reads.
    let floor = || {
        m.render_metrics()
            .lines()
            .find_map(|l| l.strip_prefix("keel_archive_revision "))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    wait_for("the archive's floor to pass the leases", LONG, || {
        let reached = floor() >= last;
        async move { reached.then_some(()) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_reads_the_state_at_any_revision_through_the_archive_offline() {
    use std::collections::BTreeMap;
    let mut c = Cluster::start_with(1, 154, archiving).await;
    let m = c.member(1);
    let mut model: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut states: Vec<(u64, BTreeMap<String, Vec<u8>>)> = Vec::new();
    for i in 0..150u32 {
        let key = format!("/r/{:02}", i % 17);
        let value = i.to_be_bytes().to_vec();
        let op = match (model.contains_key(&key), i % 5) {
            (true, 0) => Op::delete(key.clone()),
            (true, _) => Op::update(key.clone(), value.clone()),
            (false, _) => Op::create(key.clone(), value.clone()),
        };
        if model.contains_key(&key) && i % 5 == 0 {
            model.remove(&key);
        } else {
            model.insert(key, value);
        }
        let rev = m.txn(vec![op]).await.unwrap();
        states.push((rev, model.clone()));
    }
    let last = states.last().unwrap().0;
    let dir = archive_dir(&c.configs[&1]);
    wait_archived(&dir, last).await;
    let half = states[75].0;
    wait_for("compaction past the first half", LONG, || {
        let compacted = m.status().compacted_revision;
        async move { (compacted > half).then_some(()) }
    })
    .await;
    let compacted = m.status().compacted_revision;
    drop(m);
    let data = c.configs[&1].data_dir.clone();
    c.kill(1).await;
    for (rev, want) in states.iter().step_by(13) {
        let mut got = BTreeMap::new();
        let r = keel_store::replay::state_at(&data, Some(&dir), Some(*rev), |kv| {
            got.insert(kv.key.clone(), kv.value.clone());
            Ok(())
        })
        .unwrap();
        assert_eq!(r.revision, *rev);
        assert_eq!(
            &got, want,
            "state at revision {rev} (compacted {compacted})"
        );
    }
    // Below the compacted revision the archive is needed.
    let err = keel_store::replay::state_at(&data, None, Some(states[0].0), |_| Ok(())).unwrap_err();
    assert!(
        matches!(err, keel_store::StoreError::Compacted { .. }),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_from_below_the_retained_window_replays_the_archive_then_goes_live() {
    use keel_store::{WatchMessage, WatchStart};
    let c = Cluster::start_with(1, 155, archiving).await;
    let m = c.member(1);
    let mut done = Vec::new();
    for i in 0..150u32 {
        let key = format!("/w/{:02}", i % 11);
        let op = if i < 11 {
            Op::create(key.clone(), vec![1])
        } else {
            Op::update(key.clone(), i.to_be_bytes().to_vec())
        };
        done.push((m.txn(vec![op]).await.unwrap(), key));
        // Other keys, in a brief-class prefix, interleaved.
        m.txn(vec![if i == 0 {
            Op::create("/registry/coordination.k8s.io/leases/x/l", vec![0])
        } else {
            Op::update("/registry/coordination.k8s.io/leases/x/l", vec![0])
        }])
        .await
        .unwrap();
    }
    let last = done.last().unwrap().0;
    let dir = archive_dir(&c.configs[&1]);
    wait_archived(&dir, last).await;
    let start = done[3].0;
    wait_for("compaction past the watch's start", LONG, || {
        let compacted = m.status().compacted_revision;
        async move { (compacted > start + 100).then_some(()) }
    })
    .await;
    // Plain watches from there are compacted, as before; so is a replay
    // of a prefix holding brief-class keys, which the archive lacks.
    assert!(matches!(
        m.watch("/w/", WatchStart::After(start)),
        Err(keel_store::StoreError::Compacted { .. })
    ));
    assert!(matches!(
        m.watch("/registry/", WatchStart::AfterArchived(start)),
        Err(keel_store::StoreError::Compacted { .. })
    ));
    let mut w = m.watch("/w/", WatchStart::AfterArchived(start)).unwrap();
    let live = m
        .txn(vec![Op::update("/w/00", b"live".to_vec())])
        .await
        .unwrap();
    let mut seen = Vec::new();
    while seen.last().map(|s: &(u64, String)| s.0) != Some(live) {
        let msg = tokio::time::timeout(LONG, w.next())
            .await
            .expect("the watch went quiet")
            .expect("the watch ended")
            .unwrap();
        if let WatchMessage::Events { events, .. } = msg {
            seen.extend(events.iter().map(|e| (e.revision, e.key.clone())));
        }
    }
    let mut want: Vec<(u64, String)> = done.into_iter().filter(|d| d.0 > start).collect();
    want.push((live, "/w/00".into()));
    assert_eq!(seen, want);
}
