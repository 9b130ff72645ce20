//! Snapshots: the format (a header, the objects and retained events as raw
//! column-family records, and a CRC-32 over the body), building one from one
//! consistent RocksDB snapshot, and installing one, which verifies
//! everything before it replaces a single byte of state and survives a crash
//! between the file and the state.
//!
//! ```text
//! "KEELSNAP" | format u32 BE | body length u64 BE | body (bincode SnapshotBody) | crc32 u32 BE
//! ```

use std::sync::Arc;

use openraft::storage::Snapshot;
use openraft::{
    BasicNode, LogId, RaftSnapshotBuilder, SnapshotMeta, StorageError, StorageIOError,
    StoredMembership,
};
use rocksdb::{IteratorMode, WriteBatch};
use serde::{Deserialize, Serialize};

use crate::codec::{self, store_meta};
use crate::db::{CF_EVENTS, CF_OBJECTS, CF_STORE_META, Db};
use crate::error::StoreError;
use crate::snapshot_file::{SnapshotData, SnapshotFiles};
use crate::state_machine::AppliedState;
use crate::{KeyValue, NodeId, TypeConfig};

const MAGIC: &[u8; 8] = b"KEELSNAP";
const SNAPSHOT_FORMAT: u32 = 1;
const HEADER_LEN: usize = 8 + 4 + 8;

/// Everything a member needs to take over another member's state.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SnapshotBody {
    pub meta: SnapshotMeta<NodeId, openraft::BasicNode>,
    pub compacted: u64,
    pub event_count: u64,
    /// Objects-CF records (key, encoded KeyValue).
    pub objects: Vec<(Vec<u8>, Vec<u8>)>,
    /// Events-CF records (event key, encoded Event).
    pub events: Vec<(Vec<u8>, Vec<u8>)>,
}

impl SnapshotBody {
    pub fn membership(&self) -> &StoredMembership<NodeId, openraft::BasicNode> {
        &self.meta.last_membership
    }

    /// Serialize with header and checksum.
    pub fn to_bytes(&self) -> Vec<u8> {
        let body = codec::encode(self);
        let mut out = Vec::with_capacity(HEADER_LEN + body.len() + 4);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&SNAPSHOT_FORMAT.to_be_bytes());
        out.extend_from_slice(&(body.len() as u64).to_be_bytes());
        out.extend_from_slice(&body);
        out.extend_from_slice(&crc32fast::hash(&body).to_be_bytes());
        out
    }

    /// The body of a snapshot file after checking its magic, format,
    /// length and checksum.
    fn checked_body(bytes: &[u8]) -> Result<&[u8], StoreError> {
        let bad = |what: String| StoreError::Snapshot(what);
        if bytes.len() < HEADER_LEN + 4 {
            return Err(bad(format!(
                "{} bytes is shorter than a snapshot header",
                bytes.len()
            )));
        }
        if &bytes[..8] != MAGIC {
            return Err(bad("missing KEELSNAP magic at offset 0".into()));
        }
        let format = u32::from_be_bytes(bytes[8..12].try_into().expect("4 bytes"));
        if format != SNAPSHOT_FORMAT {
            return Err(bad(format!(
                "snapshot format {format}, this build reads {SNAPSHOT_FORMAT}"
            )));
        }
        let len = u64::from_be_bytes(bytes[12..20].try_into().expect("8 bytes")) as usize;
        if bytes.len() != HEADER_LEN + len + 4 {
            return Err(bad(format!(
                "truncated or padded: header announces a {len}-byte body, file has {} bytes",
                bytes.len()
            )));
        }
        let body = &bytes[HEADER_LEN..HEADER_LEN + len];
        let want = u32::from_be_bytes(bytes[HEADER_LEN + len..].try_into().expect("4 bytes"));
        let got = crc32fast::hash(body);
        if want != got {
            return Err(bad(format!(
                "checksum mismatch: body crc32 is {got:#010x}, trailer says {want:#010x}"
            )));
        }
        Ok(body)
    }

    /// Only the metadata of a snapshot file (its first field), after the
    /// same header and checksum checks as [`SnapshotBody::from_bytes`]:
    /// answering "which snapshot is current" must not decode every record.
    pub fn meta_from_bytes(
        bytes: &[u8],
    ) -> Result<SnapshotMeta<NodeId, openraft::BasicNode>, StoreError> {
        let body = Self::checked_body(bytes)?;
        codec::decode_prefix(body)
            .map_err(|e| StoreError::Snapshot(format!("metadata does not decode: {e}")))
    }

    /// Parse and verify a snapshot; every record is checked so a bad snapshot
    /// is refused as a whole.
    pub fn from_bytes(bytes: &[u8]) -> Result<SnapshotBody, StoreError> {
        let bad = |what: String| StoreError::Snapshot(what);
        let body = Self::checked_body(bytes)?;
        let parsed: SnapshotBody =
            codec::decode(body).map_err(|e| bad(format!("body does not decode: {e}")))?;
        for (k, v) in &parsed.objects {
            let kv: KeyValue = codec::decode(v).map_err(|e| {
                bad(format!(
                    "object {} does not decode: {e}",
                    String::from_utf8_lossy(k)
                ))
            })?;
            if kv.key.as_bytes() != k.as_slice() {
                return Err(bad(format!(
                    "object record {} holds key {}",
                    String::from_utf8_lossy(k),
                    kv.key
                )));
            }
        }
        for (k, v) in &parsed.events {
            let (rev, op) = codec::parse_event_key(k)
                .ok_or_else(|| bad(format!("event key of {} bytes", k.len())))?;
            let ev: crate::Event = codec::decode(v)
                .map_err(|e| bad(format!("event ({rev},{op}) does not decode: {e}")))?;
            if ev.revision != rev || ev.op_index != op {
                return Err(bad(format!(
                    "event record ({rev},{op}) holds ({},{})",
                    ev.revision, ev.op_index
                )));
            }
        }
        Ok(parsed)
    }
}

/// Raw (key, value) records of one column family.
type Records = Vec<(Vec<u8>, Vec<u8>)>;

/// Builds a snapshot from one consistent RocksDB view.
pub struct SnapshotBuilder {
    db: Arc<Db>,
    files: Arc<SnapshotFiles>,
}

impl SnapshotBuilder {
    pub(crate) fn new(db: Arc<Db>, files: Arc<SnapshotFiles>) -> SnapshotBuilder {
        SnapshotBuilder { db, files }
    }

    fn build(&self) -> Result<(SnapshotBody, Vec<u8>), StoreError> {
        let snap = self.db.db.snapshot();
        // Make every applied batch in the view durable before the snapshot
        // file claims it and lets Raft purge the log. Synced after taking the
        // view, so entries applied in between are covered too.
        self.db
            .db
            .flush_wal(true)
            .map_err(|source| StoreError::Io {
                step: "syncing the WAL before a snapshot",
                source,
            })?;
        let meta = |key: &'static [u8]| -> Result<Option<Vec<u8>>, StoreError> {
            snap.get_cf(self.db.cf(CF_STORE_META), key)
                .map_err(|source| StoreError::Io {
                    step: "reading store meta for a snapshot",
                    source,
                })
        };
        let applied: Option<LogId<NodeId>> =
            decode_meta(meta(store_meta::APPLIED)?, "applied")?.flatten();
        let membership: StoredMembership<NodeId, BasicNode> =
            decode_meta(meta(store_meta::MEMBERSHIP)?, "membership")?.unwrap_or_default();
        let compacted: u64 = decode_meta(meta(store_meta::COMPACTED)?, "compacted")?.unwrap_or(0);
        let event_count: u64 =
            decode_meta(meta(store_meta::EVENT_COUNT)?, "event_count")?.unwrap_or(0);
        let collect = |cf: &'static str| -> Result<Records, StoreError> {
            snap.iterator_cf(self.db.cf(cf), IteratorMode::Start)
                .map(|item| {
                    item.map(|(k, v)| (k.to_vec(), v.to_vec()))
                        .map_err(|source| StoreError::Io {
                            step: "reading state for a snapshot",
                            source,
                        })
                })
                .collect()
        };
        let objects = collect(CF_OBJECTS)?;
        let events = collect(CF_EVENTS)?;
        let mut body = SnapshotBody {
            meta: SnapshotMeta {
                last_log_id: applied,
                last_membership: membership,
                snapshot_id: String::new(),
            },
            compacted,
            event_count,
            objects,
            events,
        };
        let id_body = body.to_bytes();
        body.meta.snapshot_id = format!(
            "{}-{}-{:08x}",
            applied.map(|l| l.leader_id.term).unwrap_or(0),
            applied.map(|l| l.index).unwrap_or(0),
            crc32fast::hash(&id_body)
        );
        let bytes = body.to_bytes();
        tracing::info!(
            snapshot = %body.meta.snapshot_id,
            objects = body.objects.len(),
            events = body.events.len(),
            bytes = bytes.len(),
            "built snapshot"
        );
        Ok((body, bytes))
    }
}

fn decode_meta<T: serde::de::DeserializeOwned>(
    v: Option<Vec<u8>>,
    key: &str,
) -> Result<Option<T>, StoreError> {
    v.map(|v| {
        codec::decode(&v).map_err(|detail| StoreError::Corrupt {
            cf: CF_STORE_META,
            key: key.into(),
            detail,
        })
    })
    .transpose()
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let this = SnapshotBuilder {
            db: self.db.clone(),
            files: self.files.clone(),
        };
        let (body, bytes) = tokio::task::spawn_blocking(move || {
            let (body, bytes) = this.build()?;
            // Builds run alongside installs: an install that replaced the
            // state (and the file) while this one read keeps its newer file.
            if !this
                .files
                .publish(&mut this.files.lock(), body.meta.last_log_id, &bytes)?
            {
                tracing::info!(snapshot = %body.meta.snapshot_id, "a newer snapshot file is in place; kept it");
            }
            Ok::<_, StoreError>((body, bytes))
        })
        .await
        .map_err(|e| StorageIOError::read_state_machine(&StoreError::Raft(e.to_string())))?
        .map_err(|e| StorageError::from(StorageIOError::read_state_machine(&e)))?;
        Ok(Snapshot {
            meta: body.meta,
            snapshot: Box::new(SnapshotData::memory(bytes)),
        })
    }
}

/// The write batch that replaces a member's whole state with `body`.
fn install_batch(db: &Db, body: &SnapshotBody) -> WriteBatch {
    let mut batch = WriteBatch::default();
    batch.delete_range_cf(db.cf(CF_OBJECTS), b"".as_slice(), [0xffu8].as_slice());
    batch.delete_range_cf(
        db.cf(CF_EVENTS),
        codec::event_key(0, 0).as_slice(),
        [0xffu8; 13].as_slice(),
    );
    for (k, v) in &body.objects {
        batch.put_cf(db.cf(CF_OBJECTS), k, v);
    }
    for (k, v) in &body.events {
        batch.put_cf(db.cf(CF_EVENTS), k, v);
    }
    let meta_cf = db.cf(CF_STORE_META);
    batch.put_cf(
        meta_cf,
        store_meta::APPLIED,
        codec::encode(&body.meta.last_log_id),
    );
    batch.put_cf(
        meta_cf,
        store_meta::MEMBERSHIP,
        codec::encode(&body.meta.last_membership),
    );
    batch.put_cf(
        meta_cf,
        store_meta::COMPACTED,
        codec::encode(&body.compacted),
    );
    batch.put_cf(
        meta_cf,
        store_meta::EVENT_COUNT,
        codec::encode(&body.event_count),
    );
    batch
}

/// Install `body` (verified, the bytes of `bytes`): the snapshot file first,
/// then the state in one synced batch, both under the file's lock. A crash
/// between the two leaves a file ahead of the state, which
/// [`recover_snapshot`] completes at the next start; never a file behind it.
pub(crate) fn install_body(
    db: &Db,
    files: &SnapshotFiles,
    body: &SnapshotBody,
    bytes: &[u8],
) -> Result<(), StoreError> {
    let mut guard = files.lock();
    files.publish(&mut guard, body.meta.last_log_id, bytes)?;
    fail_point("after the snapshot file, before the install batch")?;
    db.write_synced(install_batch(db, body), "installing a snapshot")
}

/// Finish an install that a crash interrupted: when the snapshot file is
/// ahead of the applied state, install it. Run before the state is loaded.
/// Returns whether it installed anything.
pub fn recover_snapshot(db: &Db) -> Result<bool, StoreError> {
    let files = SnapshotFiles::open(db.dir().snapshots());
    let Ok(Some((meta, mut file))) = files.read_current() else {
        return Ok(false);
    };
    let applied = AppliedState::load(db)?.applied;
    if meta.last_log_id <= applied {
        return Ok(false);
    }
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut file, &mut bytes)
        .map_err(|e| StoreError::Snapshot(format!("reading {}: {e}", files.path().display())))?;
    let body = SnapshotBody::from_bytes(&bytes)?;
    tracing::warn!(
        snapshot = %meta.snapshot_id,
        applied = ?applied,
        "the snapshot file is ahead of the state (an install was interrupted): installing it"
    );
    db.write_synced(
        install_batch(db, &body),
        "completing an interrupted snapshot install",
    )?;
    Ok(true)
}

/// Tests make a step fail here to stand for a crash at that point.
#[cfg(test)]
fn fail_point(at: &'static str) -> Result<(), StoreError> {
    if tests::CRASH_AT.with(|c| c.get()) == Some(at) {
        return Err(StoreError::Snapshot(format!("simulated crash {at}")));
    }
    Ok(())
}

#[cfg(not(test))]
fn fail_point(_at: &'static str) -> Result<(), StoreError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use openraft::CommittedLeaderId;

    use super::*;

    fn sample() -> SnapshotBody {
        let kv = KeyValue {
            key: "a".into(),
            value: b"1".to_vec(),
            create_revision: 2,
            mod_revision: 2,
            version: 1,
            uid: None,
        };
        SnapshotBody {
            meta: SnapshotMeta::default(),
            compacted: 0,
            event_count: 0,
            objects: vec![(b"a".to_vec(), codec::encode(&kv))],
            events: vec![],
        }
    }

    #[test]
    fn roundtrip_and_every_flipped_byte_is_caught() {
        let bytes = sample().to_bytes();
        let back = SnapshotBody::from_bytes(&bytes).unwrap();
        assert_eq!(back.objects, sample().objects);
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            assert!(
                matches!(SnapshotBody::from_bytes(&bad), Err(StoreError::Snapshot(_))),
                "flipping byte {i} went unnoticed"
            );
        }
        let err = SnapshotBody::from_bytes(&bytes[..bytes.len() - 3]).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
    }

    #[test]
    fn the_metadata_alone_reads_the_same_and_is_checked() {
        let mut body = sample();
        body.meta.snapshot_id = "7-3".into();
        body.meta.last_log_id = Some(openraft::LogId::new(
            openraft::CommittedLeaderId::new(2, 1),
            9,
        ));
        let bytes = body.to_bytes();
        let meta = SnapshotBody::meta_from_bytes(&bytes).unwrap();
        assert_eq!(meta, SnapshotBody::from_bytes(&bytes).unwrap().meta);
        assert_eq!(meta.snapshot_id, "7-3");
        let mut bad = bytes.clone();
        let last = bad.len() - 6;
        bad[last] ^= 0x40;
        assert!(SnapshotBody::meta_from_bytes(&bad).is_err());
    }

    thread_local! {
        /// The [`fail_point`] at which this thread's install "crashes".
        pub(super) static CRASH_AT: Cell<Option<&'static str>> = const { Cell::new(None) };
    }

    fn body_at(index: u64, key: &str) -> SnapshotBody {
        let kv = KeyValue {
            key: key.into(),
            value: b"v".to_vec(),
            create_revision: index,
            mod_revision: index,
            version: 1,
            uid: None,
        };
        let mut body = SnapshotBody {
            meta: Default::default(),
            compacted: 0,
            event_count: 0,
            objects: vec![(key.as_bytes().to_vec(), codec::encode(&kv))],
            events: vec![],
        };
        body.meta.last_log_id = Some(LogId::new(CommittedLeaderId::new(2, 1), index));
        body.meta.snapshot_id = format!("test-{index}");
        body
    }

    fn file_meta(db: &Db) -> Option<LogId<NodeId>> {
        let (meta, _) = SnapshotFiles::open(db.dir().snapshots())
            .read_current()
            .unwrap()
            .unwrap();
        meta.last_log_id
    }

    #[test]
    fn a_crash_inside_an_install_never_leaves_the_file_behind_the_state() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        let files = SnapshotFiles::open(db.dir().snapshots());
        let old = body_at(20, "old");
        install_body(&db, &files, &old, &old.to_bytes()).unwrap();
        assert_eq!(file_meta(&db), old.meta.last_log_id);

        // The next install stops between its two steps, as a crash would.
        let new = body_at(50, "new");
        CRASH_AT.with(|c| c.set(Some("after the snapshot file, before the install batch")));
        assert!(install_body(&db, &files, &new, &new.to_bytes()).is_err());
        CRASH_AT.with(|c| c.set(None));
        // The file is never behind the state: here it is ahead, and the next
        // start completes the install from it.
        assert_eq!(file_meta(&db), new.meta.last_log_id);
        assert!(recover_snapshot(&db).unwrap());
        let state = AppliedState::load(&db).unwrap();
        assert_eq!(state.applied, new.meta.last_log_id);
        assert_eq!(file_meta(&db), state.applied);
        assert!(db.get(CF_OBJECTS, b"new").unwrap().is_some());
        assert!(db.get(CF_OBJECTS, b"old").unwrap().is_none());
        // Nothing more to do once state and file agree.
        assert!(!recover_snapshot(&db).unwrap());
    }

    #[test]
    fn a_build_that_read_older_state_never_replaces_an_installed_file() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        let files = Arc::new(SnapshotFiles::open(db.dir().snapshots()));
        let first = body_at(20, "a");
        install_body(&db, &files, &first, &first.to_bytes()).unwrap();
        // A build reads the state at 20 ...
        let builder = SnapshotBuilder {
            db: db.clone(),
            files: files.clone(),
        };
        let (built, bytes) = builder.build().unwrap();
        assert_eq!(built.meta.last_log_id, first.meta.last_log_id);
        // ... an install at 50 lands meanwhile ...
        let newer = body_at(50, "b");
        install_body(&db, &files, &newer, &newer.to_bytes()).unwrap();
        // ... and the build's file loses: the file stays at the installed state.
        assert!(
            !files
                .publish(&mut files.lock(), built.meta.last_log_id, &bytes)
                .unwrap()
        );
        assert_eq!(file_meta(&db), newer.meta.last_log_id);
    }
}
