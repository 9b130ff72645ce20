//! openraft's `RaftStateMachine`: applies committed entries to the objects and
//! events column families, one write batch per entry (objects, events, applied
//! log id), then tells the watch hub. Also builds and installs snapshots.

use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    BasicNode, Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, SnapshotMeta,
    StorageError, StorageIOError, StoredMembership,
};
use rocksdb::{IteratorMode, WriteBatch};

use crate::codec::{self, store_meta};
use crate::command::{
    Action, COMMAND_VERSION, CommandBody, CommandOutcome, FailureReason, Op, Precondition,
    TxnFailure,
};
use crate::db::{CF_EVENTS, CF_OBJECTS, CF_STORE_META, Db};
use crate::error::StoreError;
use crate::snapshot::SnapshotBody;
use crate::snapshot_file::{SnapshotData, SnapshotFiles};
use crate::watch::WatchHub;
use crate::{Event, EventKind, KeyValue, NodeId, TypeConfig};

/// The applied state of one member.
pub struct StateMachine {
    db: Arc<Db>,
    hub: Arc<WatchHub>,
    files: Arc<SnapshotFiles>,
    applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, BasicNode>,
    compacted: u64,
    event_count: u64,
}

/// The persisted applied state, read at start.
pub struct AppliedState {
    pub applied: Option<LogId<NodeId>>,
    pub membership: StoredMembership<NodeId, BasicNode>,
    pub compacted: u64,
    pub event_count: u64,
}

impl AppliedState {
    /// Read (and decode) the applied state; a value that does not decode makes
    /// the member refuse to start.
    pub fn load(db: &Db) -> Result<AppliedState, StoreError> {
        Ok(AppliedState {
            applied: db
                .get_decoded::<Option<LogId<NodeId>>>(CF_STORE_META, store_meta::APPLIED)?
                .flatten(),
            membership: db
                .get_decoded(CF_STORE_META, store_meta::MEMBERSHIP)?
                .unwrap_or_default(),
            compacted: db
                .get_decoded(CF_STORE_META, store_meta::COMPACTED)?
                .unwrap_or(0),
            event_count: db
                .get_decoded(CF_STORE_META, store_meta::EVENT_COUNT)?
                .unwrap_or(0),
        })
    }
}

fn sm_err(e: StoreError) -> StorageError<NodeId> {
    StorageIOError::write_state_machine(&e).into()
}

impl StateMachine {
    pub fn new(db: Arc<Db>, hub: Arc<WatchHub>, state: AppliedState) -> StateMachine {
        let files = Arc::new(SnapshotFiles::open(&db.path));
        StateMachine {
            db,
            hub,
            files,
            applied: state.applied,
            membership: state.membership,
            compacted: state.compacted,
            event_count: state.event_count,
        }
    }

    fn read_object(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        self.db.get_decoded(CF_OBJECTS, key.as_bytes())
    }

    /// Evaluate a transaction against current state; on success fill `batch`
    /// and return the events it makes.
    fn apply_txn(
        &mut self,
        revision: u64,
        at_ms: u64,
        ops: &[Op],
        batch: &mut WriteBatch,
    ) -> Result<Result<Vec<Event>, TxnFailure>, StoreError> {
        let mut current = Vec::with_capacity(ops.len());
        for (i, op) in ops.iter().enumerate() {
            let cur = self.read_object(&op.key)?;
            if let Some(reason) = check(op, cur.as_ref()) {
                return Ok(Err(TxnFailure {
                    op_index: i as u32,
                    key: op.key.clone(),
                    reason,
                    current: cur,
                }));
            }
            current.push(cur);
        }
        let mut events = Vec::with_capacity(ops.len());
        for (i, (op, prev)) in ops.iter().zip(current).enumerate() {
            let (kind, value) = match &op.action {
                Action::Create { value, uid } => (
                    EventKind::Added,
                    Some(KeyValue {
                        key: op.key.clone(),
                        value: value.clone(),
                        create_revision: revision,
                        mod_revision: revision,
                        version: 1,
                        uid: uid.clone(),
                    }),
                ),
                Action::Update { value } => {
                    let prev = prev.as_ref().expect("checked: key exists");
                    (
                        EventKind::Modified,
                        Some(KeyValue {
                            key: op.key.clone(),
                            value: value.clone(),
                            create_revision: prev.create_revision,
                            mod_revision: revision,
                            version: prev.version + 1,
                            uid: prev.uid.clone(),
                        }),
                    )
                }
                Action::Delete => (EventKind::Deleted, None),
            };
            match &value {
                Some(kv) => {
                    batch.put_cf(self.db.cf(CF_OBJECTS), op.key.as_bytes(), codec::encode(kv))
                }
                None => batch.delete_cf(self.db.cf(CF_OBJECTS), op.key.as_bytes()),
            }
            let event = Event {
                revision,
                op_index: i as u32,
                kind,
                key: op.key.clone(),
                value,
                prev,
                at_ms,
            };
            batch.put_cf(
                self.db.cf(CF_EVENTS),
                codec::event_key(revision, i as u32),
                codec::encode(&event),
            );
            events.push(event);
        }
        Ok(Ok(events))
    }

    /// Drop events up to `target`; returns the new compacted revision.
    fn apply_compact(&mut self, target: u64, batch: &mut WriteBatch) -> Result<u64, StoreError> {
        if target <= self.compacted {
            return Ok(self.compacted);
        }
        let end = codec::event_key(target + 1, 0);
        let mut ro = rocksdb::ReadOptions::default();
        ro.set_iterate_upper_bound(end.to_vec());
        let mut removed = 0u64;
        for item in self
            .db
            .db
            .iterator_cf_opt(self.db.cf(CF_EVENTS), ro, IteratorMode::Start)
        {
            item.map_err(|source| StoreError::Io {
                step: "counting compacted events",
                source,
            })?;
            removed += 1;
        }
        batch.delete_range_cf(self.db.cf(CF_EVENTS), codec::event_key(0, 0), end);
        self.event_count = self.event_count.saturating_sub(removed);
        self.compacted = target;
        batch.put_cf(
            self.db.cf(CF_STORE_META),
            store_meta::COMPACTED,
            codec::encode(&self.compacted),
        );
        Ok(target)
    }
}

/// The first failed precondition of `op` against the key's current value.
fn check(op: &Op, cur: Option<&KeyValue>) -> Option<FailureReason> {
    match (&op.action, cur) {
        (Action::Create { .. }, Some(_)) => return Some(FailureReason::AlreadyExists),
        (Action::Update { .. } | Action::Delete, None) => return Some(FailureReason::NotFound),
        _ => {}
    }
    for p in &op.preconditions {
        match (p, cur) {
            (Precondition::Absent, Some(_)) => return Some(FailureReason::AlreadyExists),
            (Precondition::Absent, None) => {}
            (Precondition::ModRevision(_) | Precondition::Uid(_), None) => {
                return Some(FailureReason::NotFound);
            }
            (Precondition::ModRevision(expected), Some(kv)) if kv.mod_revision != *expected => {
                return Some(FailureReason::ModRevisionMismatch {
                    expected: *expected,
                    actual: kv.mod_revision,
                });
            }
            (Precondition::Uid(expected), Some(kv)) if kv.uid.as_deref() != Some(expected) => {
                return Some(FailureReason::UidMismatch {
                    expected: expected.clone(),
                    actual: kv.uid.clone(),
                });
            }
            _ => {}
        }
    }
    None
}

/// Raw (key, value) records of one column family.
type Records = Vec<(Vec<u8>, Vec<u8>)>;

/// Builds a snapshot from one consistent RocksDB view.
pub struct SnapshotBuilder {
    db: Arc<Db>,
    files: Arc<SnapshotFiles>,
}

impl SnapshotBuilder {
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
fn install_body(
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
    let files = SnapshotFiles::open(&db.path);
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

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>), StorageError<NodeId>>
    {
        Ok((self.applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandOutcome>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut out = Vec::new();
        for entry in entries {
            let log_id = entry.log_id;
            let revision = log_id.index;
            if self.applied.is_some_and(|a| a.index >= revision) {
                // Already applied before a restart: applying is idempotent.
                out.push(CommandOutcome::Internal { revision });
                continue;
            }
            let mut batch = WriteBatch::default();
            let mut events = Vec::new();
            let mut new_compacted = None;
            let outcome = match &entry.payload {
                EntryPayload::Blank => CommandOutcome::Internal { revision },
                EntryPayload::Membership(m) => {
                    self.membership = StoredMembership::new(Some(log_id), m.clone());
                    batch.put_cf(
                        self.db.cf(CF_STORE_META),
                        store_meta::MEMBERSHIP,
                        codec::encode(&self.membership),
                    );
                    CommandOutcome::Internal { revision }
                }
                EntryPayload::Normal(cmd) => {
                    if cmd.version != COMMAND_VERSION {
                        // Validated before proposing, so only a newer member could
                        // have written this: stop rather than diverge from it.
                        let e = StoreError::UnsupportedCommandVersion {
                            found: cmd.version,
                            supported: COMMAND_VERSION,
                        };
                        tracing::error!(revision, error = %e, "refusing to apply entry");
                        return Err(StorageIOError::apply(log_id, &e).into());
                    }
                    match &cmd.body {
                        CommandBody::Txn(ops) => {
                            match self
                                .apply_txn(revision, cmd.proposed_at_ms, ops, &mut batch)
                                .map_err(sm_err)?
                            {
                                Ok(evs) => {
                                    self.event_count += evs.len() as u64;
                                    batch.put_cf(
                                        self.db.cf(CF_STORE_META),
                                        store_meta::EVENT_COUNT,
                                        codec::encode(&self.event_count),
                                    );
                                    events = evs;
                                    CommandOutcome::Applied { revision }
                                }
                                Err(failure) => CommandOutcome::Failed(failure),
                            }
                        }
                        CommandBody::Compact { revision: target } => {
                            // Never compact the entry's own revision or beyond.
                            let target = (*target).min(revision.saturating_sub(1));
                            let before = self.compacted;
                            let compacted =
                                self.apply_compact(target, &mut batch).map_err(sm_err)?;
                            batch.put_cf(
                                self.db.cf(CF_STORE_META),
                                store_meta::EVENT_COUNT,
                                codec::encode(&self.event_count),
                            );
                            if compacted > before {
                                new_compacted = Some(compacted);
                            }
                            CommandOutcome::Compacted { compacted }
                        }
                    }
                }
            };
            batch.put_cf(
                self.db.cf(CF_STORE_META),
                store_meta::APPLIED,
                codec::encode(&Some(log_id)),
            );
            // Not fsync'd: the raft log is, and replaying it is idempotent (the
            // applied id is in this same batch). Snapshots sync the WAL first.
            self.db.db.write(batch).map_err(|source| {
                sm_err(StoreError::Io {
                    step: "applying an entry",
                    source,
                })
            })?;
            self.applied = Some(log_id);
            if let Some(c) = new_compacted {
                self.hub.set_compacted(c);
                let db = self.db.clone();
                let end = codec::event_key(c + 1, 0);
                // Turn the range tombstone into free disk space, off the apply path.
                tokio::task::spawn_blocking(move || db.reclaim(CF_EVENTS, &end));
            }
            let shared: Vec<Arc<Event>> = events.into_iter().map(Arc::new).collect();
            self.hub.publish(revision, &shared);
            out.push(outcome);
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            db: self.db.clone(),
            files: self.files.clone(),
        }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<SnapshotData>, StorageError<NodeId>> {
        // Chunks go to a file of their own, bounded in size, not to memory.
        self.files
            .receive()
            .map(Box::new)
            .map_err(|e| StorageIOError::write_snapshot(None, &e).into())
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        mut snapshot: Box<SnapshotData>,
    ) -> Result<(), StorageError<NodeId>> {
        let snap_err = |e: &StoreError| -> StorageError<NodeId> {
            StorageIOError::read_snapshot(Some(meta.signature()), e).into()
        };
        let bytes = snapshot.read_all().await.map_err(|e| snap_err(&e))?;
        drop(snapshot);
        let body = SnapshotBody::from_bytes(&bytes).map_err(|e| {
            tracing::error!(snapshot = %meta.snapshot_id, error = %e, "refusing snapshot");
            snap_err(&e)
        })?;
        if body.meta.last_log_id != meta.last_log_id {
            let e = StoreError::Snapshot(format!(
                "snapshot {} covers {:?} but was announced as covering {:?}",
                body.meta.snapshot_id, body.meta.last_log_id, meta.last_log_id
            ));
            return Err(snap_err(&e));
        }
        let (db, files) = (self.db.clone(), self.files.clone());
        let body = tokio::task::spawn_blocking(move || {
            install_body(&db, &files, &body, &bytes).map(|()| body)
        })
        .await
        .map_err(|e| snap_err(&StoreError::Raft(e.to_string())))?
        .map_err(|e| snap_err(&e))?;
        self.applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        self.compacted = body.compacted;
        self.event_count = body.event_count;
        self.hub.reset(
            meta.last_log_id.map(|l| l.index).unwrap_or(0),
            body.compacted,
        );
        tracing::info!(
            snapshot = %meta.snapshot_id,
            objects = body.objects.len(),
            events = body.events.len(),
            "installed snapshot"
        );
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        match self.files.read_current() {
            Ok(None) => Ok(None),
            Ok(Some((meta, file))) => Ok(Some(Snapshot {
                meta,
                snapshot: Box::new(SnapshotData::file(file)),
            })),
            Err(e) => {
                // The file is derived data: a damaged one is dropped and rebuilt.
                tracing::warn!(path = %self.files.path().display(), error = %e, "ignoring damaged snapshot file");
                Ok(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use openraft::{CommittedLeaderId, LogId};

    use super::*;

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
        let (meta, _) = SnapshotFiles::open(&db.path)
            .read_current()
            .unwrap()
            .unwrap();
        meta.last_log_id
    }

    #[test]
    fn a_crash_inside_an_install_never_leaves_the_file_behind_the_state() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        let files = SnapshotFiles::open(&db.path);
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
        let files = Arc::new(SnapshotFiles::open(&db.path));
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
