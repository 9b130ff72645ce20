//! openraft's `RaftStateMachine`: applies committed entries to the objects and
//! events column families, one write batch per apply call ([`crate::apply`]:
//! objects, events, applied log id, revision offset), then tells the watch
//! hub. Snapshots are built and installed by
//! [`crate::snapshot`]; this hands them to openraft.

use std::sync::Arc;

use openraft::OptionalSend;
use openraft::storage::{EntryResponder, RaftStateMachine};
use rocksdb::{IteratorMode, WriteBatch};
use tokio_stream::{Stream, StreamExt};

use crate::apply::ApplyBatch;
use crate::archive::archiver::ArchiveProgress;
use crate::codec::{self, store_meta};
use crate::command::{COMMAND_VERSION, CommandBody, CommandOutcome, OLDEST_COMMAND_VERSION};
use crate::db::{CF_EVENTS, CF_STORE_META, Db};
use crate::error::StoreError;
use crate::snapshot::{SnapshotBuilder, install_file, verify_file};
use crate::snapshot_file::{SnapshotData, SnapshotFiles};
use crate::watch::WatchHub;
use crate::{Entry, EntryPayload, LogId, Snapshot, SnapshotMeta, StoredMembership, TypeConfig};

/// The applied state of one member.
pub struct StateMachine {
    db: Arc<Db>,
    hub: Arc<WatchHub>,
    files: Arc<SnapshotFiles>,
    applied: Option<LogId>,
    membership: StoredMembership,
    compacted: u64,
    event_count: u64,
    /// Revisions taken beyond one per entry by batch entries so far: the
    /// revision of the entry at index `i` is `i + revision_offset`.
    revision_offset: u64,
    /// See `store_meta::EVENTS_DELETED`.
    events_deleted: u64,
    /// The event archive's position: compaction never drops events above it.
    archive: Arc<ArchiveProgress>,
}

/// The persisted applied state, read at start.
pub struct AppliedState {
    pub applied: Option<LogId>,
    pub membership: StoredMembership,
    pub compacted: u64,
    pub event_count: u64,
    /// See [`StateMachine`]'s field of the same name.
    pub revision_offset: u64,
    /// See `store_meta::EVENTS_DELETED`.
    pub events_deleted: u64,
}

impl AppliedState {
    /// The revision of the last applied change.
    pub fn revision(&self) -> u64 {
        self.applied.map(|l| l.index).unwrap_or(0) + self.revision_offset
    }

    /// Read (and decode) the applied state; a value that does not decode makes
    /// the member refuse to start.
    pub fn load(db: &Db) -> Result<AppliedState, StoreError> {
        Ok(AppliedState {
            applied: db
                .get_decoded::<Option<LogId>>(CF_STORE_META, store_meta::APPLIED)?
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
            // Absent in a store written before batch entries existed: every
            // entry took one revision, so the revision is the index.
            revision_offset: db
                .get_decoded(CF_STORE_META, store_meta::REVISION_OFFSET)?
                .unwrap_or(0),
            events_deleted: db
                .get_decoded(CF_STORE_META, store_meta::EVENTS_DELETED)?
                .unwrap_or(0),
        })
    }
}

/// openraft's storage traits take `io::Error`; the step and cause stay in
/// its message.
fn sm_err(e: StoreError) -> std::io::Error {
    std::io::Error::other(e)
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
            revision_offset: state.revision_offset,
            events_deleted: state.events_deleted,
            archive: ArchiveProgress::disabled(),
        }
    }

    /// The snapshot directory: where snapshots are built, received and kept.
    pub fn files(&self) -> Arc<SnapshotFiles> {
        self.files.clone()
    }

    /// An empty file of the snapshot directory for a snapshot on its way in
    /// (removed unless it is installed).
    pub fn begin_receiving_snapshot(&self) -> Result<SnapshotData, StoreError> {
        self.files.receive()
    }

    /// Keep the events the archive has not taken yet (see `crate::archive`).
    pub fn with_archive(mut self, archive: Arc<ArchiveProgress>) -> StateMachine {
        self.archive = archive;
        self
    }

    /// The revision of the last applied change.
    fn revision(&self) -> u64 {
        self.applied.map(|l| l.index).unwrap_or(0) + self.revision_offset
    }

    /// One transaction into the call's batch; its outcome.
    fn apply_txn(
        &mut self,
        work: &mut ApplyBatch<'_>,
        revision: u64,
        at_ms: u64,
        ops: &[crate::command::Op],
        actor: Option<&crate::command::Actor>,
    ) -> Result<CommandOutcome, StoreError> {
        Ok(match work.txn(revision, at_ms, ops, actor)? {
            Ok(n) => {
                self.event_count += n;
                CommandOutcome::Applied { revision }
            }
            Err(failure) => CommandOutcome::Failed(failure),
        })
    }

    /// A batch entry's transactions, each at its own revision from
    /// `revision` on, with its own outcome.
    fn apply_batch<'t>(
        &mut self,
        work: &mut ApplyBatch<'_>,
        revision: u64,
        at_ms: u64,
        txns: impl ExactSizeIterator<
            Item = (&'t [crate::command::Op], Option<&'t crate::command::Actor>),
        >,
    ) -> Result<CommandOutcome, StoreError> {
        let n = txns.len() as u64;
        let mut outcomes = Vec::with_capacity(txns.len());
        for (j, (ops, actor)) in txns.enumerate() {
            outcomes.push(self.apply_txn(work, revision + j as u64, at_ms, ops, actor)?);
        }
        self.revision_offset += n.saturating_sub(1);
        Ok(CommandOutcome::Batch(outcomes))
    }

    /// Write the call's batch with the applied state (up to `last`) and hand
    /// its events to the hub.
    fn finish(&mut self, mut work: ApplyBatch<'_>, last: Option<LogId>) -> Result<(), StoreError> {
        let Some(last) = last else {
            return work.write().map(|_| ());
        };
        let meta = self.db.cf(CF_STORE_META);
        work.batch
            .put_cf(meta, store_meta::APPLIED, codec::encode(&Some(last)));
        work.batch.put_cf(
            meta,
            store_meta::EVENT_COUNT,
            codec::encode(&self.event_count),
        );
        work.batch.put_cf(
            meta,
            store_meta::REVISION_OFFSET,
            codec::encode(&self.revision_offset),
        );
        let events = work.write()?;
        self.applied = Some(last);
        for (revision, evs) in &events {
            self.hub.publish(*revision, evs);
        }
        self.hub.publish(self.revision(), &[]);
        Ok(())
    }

    /// Apply committed entries in one write batch (a compaction ends one
    /// and starts the next); their outcomes, in order.
    pub async fn apply_entries(
        &mut self,
        entries: impl IntoIterator<Item = Entry>,
    ) -> Result<Vec<CommandOutcome>, std::io::Error> {
        let mut out = Vec::new();
        let db = self.db.clone();
        let mut work = ApplyBatch::new(&db);
        let mut last = None;
        let mut new_compacted = None;
        for entry in entries {
            let log_id = entry.log_id;
            let index = log_id.index;
            if self.applied.is_some_and(|a| a.index >= index) {
                // Already applied before a restart: applying is idempotent.
                out.push(CommandOutcome::Internal {
                    revision: self.revision(),
                });
                continue;
            }
            // The entry's (first) revision: its index plus the revisions
            // earlier batch entries took beyond one each.
            let revision = index + self.revision_offset;
            let outcome = match &entry.payload {
                EntryPayload::Blank => CommandOutcome::Internal { revision },
                EntryPayload::Membership(m) => {
                    self.membership = StoredMembership::new(Some(log_id), m.clone());
                    work.batch.put_cf(
                        self.db.cf(CF_STORE_META),
                        store_meta::MEMBERSHIP,
                        codec::encode(&self.membership),
                    );
                    CommandOutcome::Internal { revision }
                }
                EntryPayload::Normal(cmd) => {
                    if !(OLDEST_COMMAND_VERSION..=COMMAND_VERSION).contains(&cmd.version) {
                        // Validated before proposing, so only a newer member could
                        // have written this: stop rather than diverge from it.
                        let e = StoreError::UnsupportedCommandVersion {
                            found: cmd.version,
                            supported: COMMAND_VERSION,
                        };
                        tracing::error!(revision, error = %e, "refusing to apply entry");
                        return Err(std::io::Error::other(format!(
                            "applying log entry {log_id}: {e}"
                        )));
                    }
                    let at = cmd.proposed_at_ms;
                    match &cmd.body {
                        CommandBody::Txn(ops) => self
                            .apply_txn(&mut work, revision, at, ops, None)
                            .map_err(sm_err)?,
                        CommandBody::TxnBy(txn) => self
                            .apply_txn(&mut work, revision, at, &txn.ops, txn.actor.as_ref())
                            .map_err(sm_err)?,
                        CommandBody::Batch(txns) => {
                            let txns = txns.iter().map(|ops| (&ops[..], None));
                            self.apply_batch(&mut work, revision, at, txns)
                                .map_err(sm_err)?
                        }
                        CommandBody::BatchBy(txns) => {
                            let txns = txns.iter().map(|t| (&t.ops[..], t.actor.as_ref()));
                            self.apply_batch(&mut work, revision, at, txns)
                                .map_err(sm_err)?
                        }
                        CommandBody::Compact { revision: target } => {
                            // A compaction counts the events it drops in
                            // RocksDB: what this call wrote so far goes first.
                            self.finish(std::mem::replace(&mut work, ApplyBatch::new(&db)), last)
                                .map_err(sm_err)?;
                            // Never compact the entry's own revision or beyond.
                            let target = (*target).min(revision.saturating_sub(1));
                            let before = self.compacted;
                            let compacted = self
                                .apply_compact(target, &mut work.batch)
                                .map_err(sm_err)?;
                            if compacted > before {
                                new_compacted = Some(compacted);
                            }
                            CommandOutcome::Compacted { compacted }
                        }
                    }
                }
            };
            last = Some(log_id);
            out.push(outcome);
        }
        self.finish(work, last).map_err(sm_err)?;
        if let Some(c) = new_compacted {
            self.hub.set_compacted(c);
            let db = self.db.clone();
            let end = codec::event_key(c + 1, 0);
            // Turn the range tombstone into free disk space, off the apply path.
            tokio::task::spawn_blocking(move || db.reclaim(CF_EVENTS, &end));
        }
        Ok(out)
    }

    /// Compact up to `target`: events up to it are no longer served, and
    /// are dropped from disk up to the archive's floor (the archiver drops
    /// the rest once it has them). Returns the new compacted revision.
    fn apply_compact(&mut self, target: u64, batch: &mut WriteBatch) -> Result<u64, StoreError> {
        if target <= self.compacted {
            return Ok(self.compacted);
        }
        let mut ro = rocksdb::ReadOptions::default();
        ro.set_iterate_lower_bound(codec::event_key(self.compacted + 1, 0).to_vec());
        ro.set_iterate_upper_bound(codec::event_key(target + 1, 0).to_vec());
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
        let drop_to = target.min(
            self.archive
                .floor
                .load(std::sync::atomic::Ordering::Acquire),
        );
        if drop_to > 0 {
            batch.delete_range_cf(
                self.db.cf(CF_EVENTS),
                codec::event_key(0, 0),
                codec::event_key(drop_to + 1, 0),
            );
        }
        if drop_to > self.events_deleted {
            self.events_deleted = drop_to;
            batch.put_cf(
                self.db.cf(CF_STORE_META),
                store_meta::EVENTS_DELETED,
                codec::encode(&self.events_deleted),
            );
        }
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

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = SnapshotData;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), std::io::Error> {
        Ok((self.applied, self.membership.clone()))
    }

    async fn apply<S>(&mut self, mut entries: S) -> Result<(), std::io::Error>
    where
        S: Stream<Item = Result<EntryResponder<TypeConfig>, std::io::Error>> + Unpin + OptionalSend,
    {
        // Everything openraft hands over in one call is applied in one write
        // batch; nobody hears of an outcome before that batch is written.
        let mut batch = Vec::new();
        let mut responders = Vec::new();
        while let Some(item) = entries.next().await {
            let (entry, responder) = item?;
            batch.push(entry);
            responders.push(responder);
        }
        let outcomes = self.apply_entries(batch).await?;
        for (responder, outcome) in responders.into_iter().zip(outcomes) {
            if let Some(r) = responder {
                r.send(outcome);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder::new(self.db.clone(), self.files.clone())
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: SnapshotData,
    ) -> Result<(), std::io::Error> {
        let snap_err = |e: &StoreError| {
            std::io::Error::other(format!(
                "installing the snapshot at {:?}: {e}",
                meta.last_log_id
            ))
        };
        // Streamed from the file it was received into, never read whole.
        let received = snapshot
            .into_file(&self.files)
            .await
            .map_err(|e| snap_err(&e))?;
        let (db, files, hub) = (self.db.clone(), self.files.clone(), self.hub.clone());
        let announced = meta.last_log_id;
        let installed = tokio::task::spawn_blocking(move || {
            let header = verify_file(&received.file, announced).inspect_err(|e| {
                tracing::error!(error = %e, "refusing snapshot");
            })?;
            // The events go and the state changes over several batches:
            // cut watchers off before, so none reads halfway.
            hub.reset(header.revision(), header.revision());
            install_file(&db, &files, &received.path, &received.file, announced)
        })
        .await
        .map_err(|e| snap_err(&StoreError::Raft(e.to_string())))?
        .map_err(|e| snap_err(&e))?;
        // The watch window starts at the snapshot: no events came with it.
        let revision = installed.header.revision();
        self.applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        self.revision_offset = installed.header.revision_offset;
        self.compacted = revision;
        self.event_count = 0;
        self.events_deleted = self.events_deleted.max(revision);
        self.hub.reset(revision, revision);
        tracing::info!(
            last_log_id = ?meta.last_log_id,
            revision,
            objects = installed.records,
            "installed snapshot"
        );
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, std::io::Error> {
        // Checking the file reads it through once: off the async workers.
        let files = self.files.clone();
        let current = tokio::task::spawn_blocking(move || files.read_current())
            .await
            .map_err(|e| std::io::Error::other(format!("reading the snapshot file: {e}")))?;
        match current {
            Ok(None) => Ok(None),
            Ok(Some((meta, file))) => Ok(Some(Snapshot {
                meta,
                snapshot: SnapshotData::file(file),
            })),
            Err(e) => {
                // The file is derived data: a damaged one is dropped and rebuilt.
                tracing::warn!(path = %self.files.path().display(), error = %e, "ignoring damaged snapshot file");
                Ok(None)
            }
        }
    }
}
