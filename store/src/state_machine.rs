//! openraft's `RaftStateMachine`: applies committed entries to the objects and
//! events column families, one write batch per entry (objects, events, applied
//! log id), then tells the watch hub. Snapshots are built and installed by
//! [`crate::snapshot`]; this hands them to openraft.

use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    BasicNode, Entry, EntryPayload, LogId, OptionalSend, SnapshotMeta, StorageError,
    StorageIOError, StoredMembership,
};
use rocksdb::{IteratorMode, WriteBatch};

use crate::codec::{self, store_meta};
use crate::command::{
    Action, COMMAND_VERSION, CommandBody, CommandOutcome, FailureReason, Op, Precondition,
    TxnFailure,
};
use crate::db::{CF_EVENTS, CF_OBJECTS, CF_STORE_META, Db};
use crate::error::StoreError;
use crate::snapshot::{SnapshotBody, SnapshotBuilder, install_body};
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
        let files = Arc::new(SnapshotFiles::open(db.dir().snapshots()));
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
        SnapshotBuilder::new(self.db.clone(), self.files.clone())
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
