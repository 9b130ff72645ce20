//! Tests of building and installing snapshots: a multi-batch roundtrip, the
//! watch window after an install, refusals before any state changes, and
//! crashes between the file and the state or between two batches.

use std::cell::Cell;
use std::path::PathBuf;

use openraft::RaftSnapshotBuilder;
use openraft::storage::RaftStateMachine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::KeyValue;
use crate::state_machine::StateMachine;
use crate::watch::{WatchConfig, WatchHub, WatchStart};

thread_local! {
    /// The [`fail_point`] at which this thread's install "crashes".
    pub(super) static CRASH_AT: Cell<Option<&'static str>> = const { Cell::new(None) };
}

fn log_id(index: u64) -> Option<LogId> {
    Some(crate::log_id(2, 1, index))
}

/// An objects-CF record: `key` holding `len` bytes.
fn object(key: &str, len: usize, revision: u64) -> (Vec<u8>, Vec<u8>) {
    let kv = KeyValue {
        key: key.into(),
        value: (0..len).map(|i| (i * 7 + key.len()) as u8).collect(),
        create_revision: revision,
        mod_revision: revision,
        version: 1,
        uid: None,
    };
    (key.as_bytes().to_vec(), codec::encode(&kv))
}

/// Write `objects`, one event and an applied state at `index` straight to `db`.
fn fill(db: &Db, index: u64, offset: u64, objects: &[(Vec<u8>, Vec<u8>)]) {
    let mut batch = WriteBatch::default();
    for (k, v) in objects {
        batch.put_cf(db.cf(CF_OBJECTS), k, v);
    }
    batch.put_cf(db.cf(CF_EVENTS), codec::event_key(index, 0), b"event");
    let meta = db.cf(CF_STORE_META);
    batch.put_cf(meta, store_meta::APPLIED, codec::encode(&log_id(index)));
    batch.put_cf(meta, store_meta::REVISION_OFFSET, codec::encode(&offset));
    batch.put_cf(meta, store_meta::EVENT_COUNT, codec::encode(&1u64));
    db.write_synced(batch, "test").unwrap();
}

fn cf(db: &Db, name: &'static str) -> Vec<(Vec<u8>, Vec<u8>)> {
    db.db
        .iterator_cf(db.cf(name), IteratorMode::Start)
        .map(|i| {
            let (k, v) = i.unwrap();
            (k.to_vec(), v.to_vec())
        })
        .collect()
}

/// A snapshot at `index` holding `objects`, in a temporary file of `files`.
fn snapshot_file(
    files: &SnapshotFiles,
    index: u64,
    objects: &[(Vec<u8>, Vec<u8>)],
) -> (PathBuf, File) {
    let header = Header {
        meta: SnapshotMeta {
            last_log_id: log_id(index),
            ..Default::default()
        },
        revision_offset: 0,
    };
    let (path, file) = files.create_tmp("test").unwrap();
    let mut w = SnapshotWriter::new(&file, &header).unwrap();
    for (k, v) in objects {
        w.record(k, v).unwrap();
    }
    w.finish().unwrap();
    (path, file)
}

fn install(db: &Db, files: &SnapshotFiles, index: u64, objects: &[(Vec<u8>, Vec<u8>)]) {
    let (path, file) = snapshot_file(files, index, objects);
    install_file(db, files, &path, &file, log_id(index)).unwrap();
}

fn file_meta(db: &Db) -> Option<LogId> {
    let (meta, _) = SnapshotFiles::open(db.dir().snapshots())
        .read_current()
        .unwrap()
        .unwrap();
    meta.last_log_id
}

fn many(n: usize, len: usize, revision: u64) -> Vec<(Vec<u8>, Vec<u8>)> {
    (0..n)
        .map(|i| object(&format!("/o/{i:06}"), len, revision))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_batch_snapshot_roundtrips_and_starts_the_watch_window_at_it() {
    // About 9 MiB of objects: several install batches and I/O buffers.
    let objects = many(3000, 3000, 40);
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Db::open(dir_a.path()).unwrap();
    fill(&a, 3100, 7, &objects);
    let files_a = Arc::new(SnapshotFiles::open(a.dir().snapshots()));
    let mut built = SnapshotBuilder::new(a.clone(), files_a)
        .build_snapshot()
        .await
        .unwrap();
    assert_eq!(built.meta.last_log_id, log_id(3100));

    // The receiving member holds other objects and events at an older state.
    let b = Db::open(dir_b.path()).unwrap();
    fill(&b, 10, 0, &many(50, 10, 3));
    let state = AppliedState::load(&b).unwrap();
    let hub = WatchHub::new(
        b.clone(),
        WatchConfig::default(),
        state.revision(),
        state.compacted,
    );
    let mut sm = StateMachine::new(b.clone(), hub.clone(), state);
    let mut early = hub.watch("/o/", WatchStart::Now).unwrap();
    // Chunks arrive as openraft writes them: 1 MiB at a time.
    let mut received = sm.begin_receiving_snapshot().unwrap();
    let mut chunk = vec![0u8; 1 << 20];
    loop {
        let n = built.snapshot.read(&mut chunk).await.unwrap();
        if n == 0 {
            break;
        }
        received.write_all(&chunk[..n]).await.unwrap();
    }
    sm.install_snapshot(&built.meta, received).await.unwrap();

    assert_eq!(cf(&b, CF_OBJECTS), cf(&a, CF_OBJECTS), "identical objects");
    assert!(
        cf(&b, CF_EVENTS).is_empty(),
        "no events come with a snapshot"
    );
    let state = AppliedState::load(&b).unwrap();
    assert_eq!(state.applied, log_id(3100));
    assert_eq!(state.revision(), 3107);
    assert_eq!((state.compacted, state.event_count), (3107, 0));
    assert_eq!(file_meta(&b), log_id(3100));
    let left: Vec<_> = std::fs::read_dir(b.dir().snapshots())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        left,
        [crate::snapshot_file::SNAPSHOT_FILE],
        "no temporary file left"
    );

    // The watch window starts at the snapshot.
    assert!(matches!(
        early.next().await,
        Some(Err(StoreError::WatchDropped { .. }))
    ));
    assert!(matches!(
        hub.watch("/o/", WatchStart::After(3106)),
        Err(StoreError::Compacted {
            requested: 3106,
            compacted: 3107
        })
    ));
    assert!(matches!(
        hub.watch("/o/", WatchStart::After(11)),
        Err(StoreError::Compacted { .. })
    ));
    hub.watch("/o/", WatchStart::After(3107)).unwrap();
    assert_eq!(
        crate::read::revisions(&b).unwrap(),
        (3107, 3107),
        "reads at past revisions before the snapshot are compacted too"
    );
}

#[tokio::test]
async fn a_damaged_or_misannounced_snapshot_changes_no_state() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    let before = many(5, 10, 3);
    fill(&db, 10, 0, &before);
    let state = AppliedState::load(&db).unwrap();
    let hub = WatchHub::new(db.clone(), WatchConfig::default(), 10, 0);
    let mut sm = StateMachine::new(db.clone(), hub, state);
    let files = SnapshotFiles::open(db.dir().snapshots());
    let (path, _) = snapshot_file(&files, 50, &many(20, 100, 40));
    let good = std::fs::read(&path).unwrap();
    std::fs::remove_file(path).unwrap();
    let meta = |index| SnapshotMeta {
        last_log_id: log_id(index),
        ..Default::default()
    };
    let send = SnapshotData::memory;

    let mut damaged = good.clone();
    let mid = damaged.len() / 2;
    damaged[mid] ^= 0x01;
    assert!(sm.install_snapshot(&meta(50), send(damaged)).await.is_err());
    let err = sm
        .install_snapshot(&meta(60), send(good.clone()))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("announced"), "{err}");
    let mut old_format = good;
    old_format[8..12].copy_from_slice(&1u32.to_be_bytes());
    let err = sm
        .install_snapshot(&meta(50), send(old_format))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("format 1"), "{err}");

    assert_eq!(cf(&db, CF_OBJECTS), before);
    assert_eq!(cf(&db, CF_EVENTS).len(), 1);
    assert_eq!(AppliedState::load(&db).unwrap().applied, log_id(10));
    assert!(files.read_current().unwrap().is_none(), "no file published");
}

#[test]
fn a_crash_inside_an_install_never_leaves_the_file_behind_the_state() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    let files = SnapshotFiles::open(db.dir().snapshots());
    install(&db, &files, 20, &[object("old", 1, 20)]);
    assert_eq!(file_meta(&db), log_id(20));

    // The next install stops between its two steps, as a crash would.
    let (path, file) = snapshot_file(&files, 50, &[object("new", 1, 50)]);
    CRASH_AT.with(|c| c.set(Some("after the snapshot file, before the install batch")));
    assert!(install_file(&db, &files, &path, &file, log_id(50)).is_err());
    CRASH_AT.with(|c| c.set(None));
    // The file is never behind the state: here it is ahead, and the next
    // start completes the install from it.
    assert_eq!(file_meta(&db), log_id(50));
    assert!(recover_snapshot(&db).unwrap());
    let state = AppliedState::load(&db).unwrap();
    assert_eq!(state.applied, log_id(50));
    assert_eq!(file_meta(&db), state.applied);
    assert!(db.get(CF_OBJECTS, b"new").unwrap().is_some());
    assert!(db.get(CF_OBJECTS, b"old").unwrap().is_none());
    // Nothing more to do once state and file agree.
    assert!(!recover_snapshot(&db).unwrap());
}

#[test]
fn a_crash_between_install_batches_is_completed_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    fill(&db, 20, 0, &many(30, 10, 3));
    let files = SnapshotFiles::open(db.dir().snapshots());
    let objects = many(200, 1000, 40);
    let (path, file) = snapshot_file(&files, 50, &objects);
    CRASH_AT.with(|c| c.set(Some("between install batches")));
    let crashed = install_file_in_batches(&db, &files, &path, &file, log_id(50), 8 << 10);
    CRASH_AT.with(|c| c.set(None));
    assert!(crashed.is_err());
    // Halfway: the old objects are gone, the new ones partly written, and the
    // applied state still the old one, behind the file.
    let state = AppliedState::load(&db).unwrap();
    assert_eq!(state.applied, log_id(20));
    assert!(cf(&db, CF_OBJECTS).len() < objects.len());
    assert_eq!(file_meta(&db), log_id(50));

    assert!(recover_snapshot(&db).unwrap());
    assert_eq!(cf(&db, CF_OBJECTS), objects);
    assert!(cf(&db, CF_EVENTS).is_empty());
    let state = AppliedState::load(&db).unwrap();
    assert_eq!(state.applied, log_id(50));
    assert_eq!((state.compacted, state.event_count), (50, 0));
    assert!(!recover_snapshot(&db).unwrap());
}

#[test]
fn a_build_that_read_older_state_never_replaces_an_installed_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    let files = Arc::new(SnapshotFiles::open(db.dir().snapshots()));
    install(&db, &files, 20, &[object("a", 1, 20)]);
    // A build reads the state at 20 ...
    let built = SnapshotBuilder::new(db.clone(), files.clone())
        .build()
        .unwrap();
    assert_eq!(built.header.meta.last_log_id, log_id(20));
    let (header, _) = verify(BufReader::new(&built.file), true).unwrap();
    assert_eq!(header, built.header);
    // ... an install at 50 lands meanwhile ...
    install(&db, &files, 50, &[object("b", 1, 50)]);
    // ... and the build's file loses: the file stays at the installed state,
    // and the build's temporary file is gone.
    assert!(
        !files
            .publish(
                &mut files.lock(),
                built.header.meta.last_log_id,
                &built.path
            )
            .unwrap()
    );
    assert!(!built.path.exists());
    assert_eq!(file_meta(&db), log_id(50));
}

/// Applied batches skip the WAL (`ApplyBatch::write`), and a built snapshot
/// lets Raft purge the log up to it: everything it claims must be on disk,
/// none of it only in a memtable, once it is built.
#[test]
fn a_built_snapshot_leaves_nothing_it_claims_in_a_memtable() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    let files = Arc::new(SnapshotFiles::open(db.dir().snapshots()));
    // Written as an apply writes.
    let mut batch = WriteBatch::default();
    let (key, value) = object("a", 10, 7);
    batch.put_cf(db.cf(CF_OBJECTS), key, value);
    batch.put_cf(
        db.cf(CF_STORE_META),
        store_meta::APPLIED,
        codec::encode(&log_id(7)),
    );
    let in_memory = |db: &Db| -> u64 {
        let mut n = 0;
        for cf in [CF_OBJECTS, CF_STORE_META] {
            for property in [
                "rocksdb.num-entries-active-mem-table",
                "rocksdb.num-entries-imm-mem-tables",
            ] {
                n += db
                    .db
                    .property_int_value_cf(db.cf(cf), property)
                    .unwrap()
                    .unwrap();
            }
        }
        n
    };
    let before = in_memory(&db);
    let mut unsynced = rocksdb::WriteOptions::default();
    unsynced.disable_wal(true);
    db.db.write_opt(batch, &unsynced).unwrap();
    assert_eq!(in_memory(&db), before + 2);
    let built = SnapshotBuilder::new(db.clone(), files).build().unwrap();
    assert_eq!(built.header.meta.last_log_id, log_id(7));
    assert_eq!(
        in_memory(&db),
        0,
        "the snapshot claims state that is only in memory"
    );
}
