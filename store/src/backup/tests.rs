//! Backups: saved from one view and summarised, restored byte for byte at a
//! bumped revision, identical on every member of a plan, and refused (with
//! nothing left behind) when damaged or aimed at a directory in use.

use std::collections::BTreeMap;

use rocksdb::{IteratorMode, WriteBatch};

use super::*;
use crate::KeyValue;
use crate::LogId;
use crate::codec::{self, raft_meta, store_meta};
use crate::db::{CF_EVENTS, CF_OBJECTS, CF_RAFT_META, CF_STORE_META, Db};
use crate::snapshot_file::SnapshotFiles;
use crate::state_machine::AppliedState;

fn object(key: &str, len: usize, revision: u64) -> (Vec<u8>, Vec<u8>) {
    let kv = KeyValue {
        key: key.into(),
        value: (0..len).map(|i| (i * 13 + key.len()) as u8).collect(),
        create_revision: revision - 1,
        mod_revision: revision,
        version: 2,
        uid: Some(format!("uid-{key}")),
    };
    (key.as_bytes().to_vec(), codec::encode(&kv))
}

/// Objects under two resources, an event and an applied state at `index`
/// with revision offset `offset`.
fn source(index: u64, offset: u64) -> (tempfile::TempDir, std::sync::Arc<Db>) {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    let mut batch = WriteBatch::default();
    for i in 0..30 {
        let (k, v) = object(
            &format!("/registry/core/pods/ns/p{i:03}"),
            200 + i,
            10 + i as u64,
        );
        batch.put_cf(db.cf(CF_OBJECTS), k, v);
    }
    for i in 0..5 {
        let (k, v) = object(&format!("/registry/apps/deployments/ns/d{i}"), 100, 20);
        batch.put_cf(db.cf(CF_OBJECTS), k, v);
    }
    batch.put_cf(db.cf(CF_EVENTS), codec::event_key(index, 0), b"event");
    let meta = db.cf(CF_STORE_META);
    let applied = Some(crate::log_id(4, 2, index));
    batch.put_cf(meta, store_meta::APPLIED, codec::encode(&applied));
    batch.put_cf(meta, store_meta::REVISION_OFFSET, codec::encode(&offset));
    batch.put_cf(meta, store_meta::COMPACTED, codec::encode(&7u64));
    db.write_synced(batch, "test").unwrap();
    (dir, db)
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

fn members(ids: &[u64]) -> BTreeMap<u64, String> {
    ids.iter()
        .map(|id| (*id, format!("127.0.0.1:{}", 7000 + id)))
        .collect()
}

fn saved(db: &Db) -> Vec<u8> {
    let mut out = Vec::new();
    let s = save(db, &mut out, 2, vec![(2, "m2:7002".into(), true)]).unwrap();
    assert_eq!(s.bytes, out.len() as u64);
    assert_eq!(s.objects, 35);
    out
}

#[test]
fn a_backup_is_summarised_and_restored_byte_for_byte_at_the_bumped_revision() {
    let (_src, db) = source(50, 3);
    let bytes = saved(&db);
    let sum = summarize(bytes.as_slice(), 3).unwrap();
    assert_eq!(sum.header.revision, 53);
    assert_eq!(sum.header.compacted, 7);
    assert_eq!(sum.header.taken_by, 2);
    assert_eq!(sum.header.members, vec![(2, "m2:7002".to_string(), true)]);
    assert_eq!(sum.objects, 35);
    assert_eq!(sum.bytes, bytes.len() as u64);
    assert_eq!(
        sum.crc32,
        u32::from_be_bytes(bytes[bytes.len() - 4..].try_into().unwrap())
    );
    assert_eq!(sum.by_prefix["/registry/core/pods"].objects, 30);
    assert_eq!(sum.by_prefix["/registry/apps/deployments"].objects, 5);
    assert_eq!(sum.by_prefix.len(), 2);

    let target = tempfile::tempdir().unwrap();
    let dir = target.path().join("restored");
    let plan = RestorePlan {
        data_dir: dir.clone(),
        members: members(&[1]),
        bump: 1000,
        cluster_token: "keel-cluster".into(),
        replay: None,
    };
    let mut seen = Vec::new();
    let r = restore(bytes.as_slice(), &plan, &mut |n| seen.push(n)).unwrap();
    assert_eq!((r.objects, r.revision, r.header.revision), (35, 1053, 53));
    assert_eq!(seen.last(), Some(&35));

    let restored = Db::open(&dir).unwrap();
    assert_eq!(cf(&restored, CF_OBJECTS), cf(&db, CF_OBJECTS));
    assert!(cf(&restored, CF_EVENTS).is_empty());
    let state = AppliedState::load(&restored).unwrap();
    assert_eq!((state.revision(), state.compacted), (1053, 1053));
    let log_id = crate::log_id(0, 0, 1);
    assert_eq!(state.applied, Some(log_id));
    assert_eq!(
        state
            .membership
            .membership()
            .voter_ids()
            .collect::<Vec<_>>(),
        vec![1]
    );
    let purged: Option<Option<LogId>> = restored
        .get_decoded(CF_RAFT_META, raft_meta::LAST_PURGED)
        .unwrap();
    assert_eq!(purged, Some(Some(log_id)));
    let (meta, _) = SnapshotFiles::open(restored.dir().snapshots())
        .read_current()
        .unwrap()
        .unwrap();
    assert_eq!(meta.last_log_id, Some(log_id));
}

#[test]
fn every_member_of_a_plan_gets_the_same_state() {
    let (_src, db) = source(9, 0);
    let bytes = saved(&db);
    let target = tempfile::tempdir().unwrap();
    let mut states = Vec::new();
    for id in 1..=3 {
        let plan = RestorePlan {
            data_dir: target.path().join(format!("m{id}")),
            members: members(&[1, 2, 3]),
            bump: 5,
            cluster_token: "keel-cluster".into(),
            replay: None,
        };
        assert_eq!(
            restore(bytes.as_slice(), &plan, &mut |_| {})
                .unwrap()
                .revision,
            14
        );
        let d = Db::open(&plan.data_dir).unwrap();
        states.push((
            cf(&d, CF_OBJECTS),
            cf(&d, CF_STORE_META),
            cf(&d, CF_RAFT_META),
            std::fs::read(
                d.dir()
                    .snapshots()
                    .join(crate::snapshot_file::SNAPSHOT_FILE),
            )
            .unwrap(),
        ));
    }
    assert!(states.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(states[0].0.len(), 35);
    // One new cluster id for the plan's members, in their metadata; another
    // restore point, bump or token makes another cluster.
    let id_of = |plan: &RestorePlan| {
        let r = restore(bytes.as_slice(), plan, &mut |_| {}).unwrap();
        let stored = Db::open(&plan.data_dir)
            .unwrap()
            .get(CF_STORE_META, store_meta::CLUSTER_ID)
            .unwrap()
            .unwrap();
        assert_eq!(stored, r.cluster_id.to_bytes());
        r.cluster_id
    };
    let plan = |name: &str, bump: u64, token: &str| RestorePlan {
        data_dir: target.path().join(name),
        members: members(&[1, 2, 3]),
        bump,
        cluster_token: token.into(),
        replay: None,
    };
    let id = id_of(&plan("again", 5, "keel-cluster"));
    assert!(
        states[0]
            .1
            .iter()
            .any(|(k, v)| k.as_slice() == store_meta::CLUSTER_ID && v.as_slice() == id.to_bytes())
    );
    assert_ne!(id_of(&plan("bumped", 6, "keel-cluster")), id);
    assert_ne!(id_of(&plan("token", 5, "other")), id);
}

#[test]
fn damaged_backups_are_refused_and_leave_no_directory_behind() {
    let (_src, db) = source(9, 0);
    let bytes = saved(&db);
    for i in 0..bytes.len() {
        let mut damaged = bytes.clone();
        damaged[i] ^= 0x20;
        assert!(
            summarize(damaged.as_slice(), 3).is_err(),
            "flipping byte {i} went unnoticed"
        );
    }
    let raft = crate::snapshot::format::SnapshotWriter::new(
        Vec::new(),
        &crate::snapshot::format::Header::default(),
    )
    .unwrap()
    .finish()
    .unwrap()
    .0;
    let err = summarize(raft.as_slice(), 3).unwrap_err().to_string();
    assert!(err.contains("missing KEELBKUP magic"), "{err}");

    let target = tempfile::tempdir().unwrap();
    let mut middle = bytes.clone();
    let at = bytes.len() / 2;
    middle[at] ^= 0x01;
    for (what, input) in [
        ("flipped", middle.as_slice()),
        ("truncated", &bytes[..bytes.len() - 10]),
    ] {
        let dir = target.path().join(what);
        let plan = RestorePlan {
            data_dir: dir.clone(),
            members: members(&[1]),
            bump: 0,
            cluster_token: "keel-cluster".into(),
            replay: None,
        };
        let err = restore(input, &plan, &mut |_| {}).unwrap_err();
        assert!(matches!(err, StoreError::Snapshot(_)), "{what}: {err}");
        assert!(
            !dir.exists(),
            "{what}: the failed restore left {}",
            dir.display()
        );
    }
}

#[test]
fn restore_refuses_a_directory_that_holds_anything() {
    let (src, db) = source(9, 0);
    let bytes = saved(&db);
    let plan = RestorePlan {
        data_dir: src.path().to_path_buf(),
        members: members(&[1]),
        bump: 0,
        cluster_token: "keel-cluster".into(),
        replay: None,
    };
    let err = restore(bytes.as_slice(), &plan, &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("is not empty"), "{err}");
    // The source store is untouched.
    assert_eq!(cf(&db, CF_OBJECTS).len(), 35);
    let empty = tempfile::tempdir().unwrap();
    let plan = RestorePlan {
        data_dir: empty.path().to_path_buf(),
        members: BTreeMap::new(),
        bump: 0,
        cluster_token: "keel-cluster".into(),
        replay: None,
    };
    let err = restore(bytes.as_slice(), &plan, &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("at least one member"), "{err}");
}

#[test]
fn a_view_taken_during_a_snapshot_install_is_busy() {
    let (_src, db) = source(9, 0);
    // An install's first batch moves the compacted revision past the
    // applied one; its last catches the applied one up.
    let mut batch = WriteBatch::default();
    batch.put_cf(
        db.cf(CF_STORE_META),
        store_meta::COMPACTED,
        codec::encode(&500u64),
    );
    db.write_synced(batch, "test").unwrap();
    let err = save(&db, Vec::new(), 1, Vec::new()).unwrap_err();
    assert!(
        matches!(err, StoreError::Busy(_)) && err.is_retryable(),
        "{err}"
    );
}

#[test]
fn key_prefixes_keep_their_first_segments() {
    assert_eq!(
        key_prefix("/registry/core/pods/ns/a", 3),
        "/registry/core/pods"
    );
    assert_eq!(key_prefix("/registry/core/pods/ns/a", 1), "/registry");
    assert_eq!(key_prefix("/short", 3), "/short");
    assert_eq!(key_prefix("plain/key", 1), "plain");
}
