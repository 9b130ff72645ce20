//! One apply call's work: every committed entry openraft hands the state
//! machine in one call is evaluated against the stored objects plus what the
//! call's earlier entries wrote, into ONE RocksDB write batch (objects,
//! events, the applied log id and the revision offset), written once; the
//! events are then published to the watch hub in revision order.
//!
//! One batch per call instead of one per entry is what lets the apply stage
//! keep up when the leader commits entries faster than one RocksDB write
//! each: the write's fixed cost (WAL record, write-group handoff, memtable
//! locking) is paid once per call. Replay stays idempotent because the applied
//! log id and the revision offset travel in the same batch as the data.

use std::collections::HashMap;
use std::sync::Arc;

use rocksdb::WriteBatch;

use crate::codec;
use crate::command::{Action, Actor, FailureReason, Op, Precondition, TxnFailure};
use crate::db::{CF_EVENTS, CF_OBJECTS, Db};
use crate::error::StoreError;
use crate::{Event, EventKind, KeyValue};

/// Events per revision, in revision order.
pub(crate) type Published = Vec<(u64, Vec<Arc<Event>>)>;

/// The writes of one apply call, not yet in RocksDB.
pub(crate) struct ApplyBatch<'a> {
    db: &'a Db,
    pub(crate) batch: WriteBatch,
    /// Where the last event of each key written by an earlier entry of this
    /// call is in `events` (its value, `None` if deleted, is the key's
    /// state), so a later entry's preconditions see it before it reaches
    /// RocksDB, without a copy of every value.
    overlay: HashMap<String, (usize, usize)>,
    /// Events per revision, in revision order, for the hub once written.
    events: Published,
}

impl<'a> ApplyBatch<'a> {
    pub(crate) fn new(db: &'a Db) -> ApplyBatch<'a> {
        ApplyBatch {
            db,
            batch: WriteBatch::default(),
            overlay: HashMap::new(),
            events: Vec::new(),
        }
    }

    fn read(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        match self.overlay.get(key) {
            Some((rev, op)) => Ok(self.events[*rev].1[*op].value.clone()),
            None => self.db.get_decoded(CF_OBJECTS, key.as_bytes()),
        }
    }

    /// Evaluate a transaction at `revision`: on success its objects and events
    /// (each naming `actor`) join the batch and the number of events is
    /// returned; on a failed precondition nothing is written.
    pub(crate) fn txn(
        &mut self,
        revision: u64,
        at_ms: u64,
        ops: &[Op],
        actor: Option<&Actor>,
    ) -> Result<Result<u64, TxnFailure>, StoreError> {
        let mut current = Vec::with_capacity(ops.len());
        for (i, op) in ops.iter().enumerate() {
            let cur = self.read(&op.key)?;
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
        let actor = actor.map(|a| Arc::new(a.clone()));
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
            let objects = self.db.cf(CF_OBJECTS);
            match &value {
                Some(kv) => self
                    .batch
                    .put_cf(objects, op.key.as_bytes(), codec::encode(kv)),
                None => self.batch.delete_cf(objects, op.key.as_bytes()),
            }
            self.overlay
                .insert(op.key.clone(), (self.events.len(), events.len()));
            let event = Event {
                revision,
                op_index: i as u32,
                kind,
                key: op.key.clone(),
                value,
                prev,
                at_ms,
                actor: actor.clone(),
                wire: Default::default(),
            };
            self.batch.put_cf(
                self.db.cf(CF_EVENTS),
                codec::event_key(revision, i as u32),
                codec::encode_event(&event),
            );
            events.push(Arc::new(event));
        }
        let n = events.len() as u64;
        self.events.push((revision, events));
        Ok(Ok(n))
    }

    /// Write the batch without the WAL: the Raft log (fsync'd) is the
    /// record of what was applied, and replaying it is idempotent since the
    /// applied id is in this batch. A power cut or a crash loses what was
    /// applied since the last memtable flush (atomic across column
    /// families, see `Db::open`), and the member applies those entries
    /// again from its log; a snapshot flushes first, so the log is never
    /// purged past what is on disk. Writing each applied value to the WAL
    /// as well doubled the bytes every put cost the disk. Returns the
    /// events to publish, in revision order.
    pub(crate) fn write(self) -> Result<Published, StoreError> {
        if !self.batch.is_empty() {
            let mut wo = rocksdb::WriteOptions::default();
            wo.disable_wal(true);
            self.db
                .db
                .write_opt(self.batch, &wo)
                .map_err(|source| StoreError::Io {
                    step: "applying entries",
                    source,
                })?;
        }
        Ok(self.events)
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
