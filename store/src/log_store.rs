//! openraft's `RaftLogStorage` on the `raft_log` and `raft_meta` column
//! families. An append is written at once (readable, so replication can start)
//! and acknowledged to openraft only after a flusher thread has fsync'd the
//! WAL; appends that arrive while a sync runs share the next one (group
//! commit). Truncate, purge and vote are single synced write batches. An
//! acknowledged entry or a granted vote survives a crash of the machine.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader};
use rocksdb::{Direction, IteratorMode, WriteBatch};

use crate::codec::{self, raft_meta};
use crate::db::{CF_RAFT_LOG, CF_RAFT_META, Db};
use crate::error::StoreError;
use crate::{Entry, LogId, TypeConfig, Vote};

/// The raft log of one member. Cheap to clone: clones share the database
/// and the flusher.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Db>,
    /// Appends waiting for their fsync; the flusher thread ends when the last
    /// clone is dropped.
    flusher: std::sync::mpsc::Sender<IOFlushed<TypeConfig>>,
}

/// Sync the WAL for every waiting append, in arrival order, many per fsync.
fn run_flusher(db: std::sync::Weak<Db>, rx: std::sync::mpsc::Receiver<IOFlushed<TypeConfig>>) {
    while let Ok(first) = rx.recv() {
        let mut waiting = vec![first];
        waiting.extend(rx.try_iter());
        let res = match db.upgrade() {
            Some(db) => db.db.flush_wal(true).map_err(|e| e.to_string()),
            None => Err("the database is closed".to_string()),
        };
        for cb in waiting {
            cb.io_completed(match &res {
                Ok(()) => Ok(()),
                Err(e) => Err(std::io::Error::other(format!(
                    "syncing raft log entries: {e}"
                ))),
            });
        }
    }
}

impl LogStore {
    pub fn new(db: Arc<Db>) -> LogStore {
        let (tx, rx) = std::sync::mpsc::channel();
        let weak = Arc::downgrade(&db);
        std::thread::Builder::new()
            .name("keel-log-flush".into())
            .spawn(move || run_flusher(weak, rx))
            .expect("spawning the raft log flusher thread");
        LogStore { db, flusher: tx }
    }

    /// Read every stored log entry and meta value once, so a member whose log
    /// cannot be decoded refuses to start instead of failing mid-flight.
    pub fn verify(&self) -> Result<(), StoreError> {
        self.db.get_decoded::<Vote>(CF_RAFT_META, raft_meta::VOTE)?;
        self.db
            .get_decoded::<Option<LogId>>(CF_RAFT_META, raft_meta::COMMITTED)?;
        let purged = self
            .db
            .get_decoded::<Option<LogId>>(CF_RAFT_META, raft_meta::LAST_PURGED)?
            .flatten();
        let mut expected = purged.map(|l| l.index + 1);
        for item in self
            .db
            .db
            .iterator_cf(self.db.cf(CF_RAFT_LOG), IteratorMode::Start)
        {
            let (k, v) = item.map_err(|source| StoreError::Io {
                step: "verifying the raft log",
                source,
            })?;
            let index = codec::parse_log_key(&k).ok_or_else(|| StoreError::Corrupt {
                cf: CF_RAFT_LOG,
                key: format!("{k:?}"),
                detail: "log key is not 8 bytes".into(),
            })?;
            let entry: Entry = codec::decode(&v).map_err(|detail| StoreError::Corrupt {
                cf: CF_RAFT_LOG,
                key: index.to_string(),
                detail,
            })?;
            if entry.log_id().index != index {
                return Err(StoreError::Corrupt {
                    cf: CF_RAFT_LOG,
                    key: index.to_string(),
                    detail: format!("entry holds log index {}", entry.log_id().index),
                });
            }
            if let Some(e) = expected
                && e != index
            {
                return Err(StoreError::Corrupt {
                    cf: CF_RAFT_LOG,
                    key: index.to_string(),
                    detail: format!("gap in the raft log: expected index {e}"),
                });
            }
            expected = Some(index + 1);
        }
        Ok(())
    }

    fn read_range(&self, start: u64, end: Option<u64>) -> Result<Vec<Entry>, StoreError> {
        let mut out = Vec::new();
        let key = codec::log_key(start);
        let iter = self.db.db.iterator_cf(
            self.db.cf(CF_RAFT_LOG),
            IteratorMode::From(&key, Direction::Forward),
        );
        for item in iter {
            let (k, v) = item.map_err(|source| StoreError::Io {
                step: "reading raft log entries",
                source,
            })?;
            let index = codec::parse_log_key(&k).unwrap_or(u64::MAX);
            if end.is_some_and(|end| index >= end) {
                break;
            }
            let entry = codec::decode(&v).map_err(|detail| StoreError::Corrupt {
                cf: CF_RAFT_LOG,
                key: index.to_string(),
                detail,
            })?;
            out.push(entry);
        }
        Ok(out)
    }

    fn last_purged(&self) -> Result<Option<LogId>, StoreError> {
        Ok(self
            .db
            .get_decoded::<Option<LogId>>(CF_RAFT_META, raft_meta::LAST_PURGED)?
            .flatten())
    }

    fn last_log_id(&self) -> Result<Option<LogId>, StoreError> {
        let mut iter = self
            .db
            .db
            .iterator_cf(self.db.cf(CF_RAFT_LOG), IteratorMode::End);
        match iter.next() {
            None => Ok(None),
            Some(item) => {
                let (k, v) = item.map_err(|source| StoreError::Io {
                    step: "reading the last log entry",
                    source,
                })?;
                let entry: Entry = codec::decode(&v).map_err(|detail| StoreError::Corrupt {
                    cf: CF_RAFT_LOG,
                    key: format!("{:?}", codec::parse_log_key(&k)),
                    detail,
                })?;
                Ok(Some(entry.log_id()))
            }
        }
    }

    /// Run a synced batch off the async executor; returns once it is on disk.
    async fn write_synced(&self, batch: WriteBatch, step: &'static str) -> Result<(), StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || db.write_synced(batch, step))
            .await
            .map_err(|e| StoreError::Raft(format!("storage task failed: {e}")))?
    }
}

/// openraft's storage traits take `io::Error`; the step and cause stay in
/// its message.
fn io_err(e: StoreError) -> std::io::Error {
    std::io::Error::other(e)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, std::io::Error> {
        let start = match range.start_bound() {
            Bound::Included(s) => *s,
            Bound::Excluded(s) => s + 1,
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(e) => Some(e + 1),
            Bound::Excluded(e) => Some(*e),
            Bound::Unbounded => None,
        };
        self.read_range(start, end).map_err(io_err)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, std::io::Error> {
        self.db
            .get_decoded(CF_RAFT_META, raft_meta::VOTE)
            .map_err(io_err)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, std::io::Error> {
        let last_purged_log_id = self.last_purged().map_err(io_err)?;
        let last_log_id = self.last_log_id().map_err(io_err)?.or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), std::io::Error> {
        let mut batch = WriteBatch::default();
        batch.put_cf(
            self.db.cf(CF_RAFT_META),
            raft_meta::VOTE,
            codec::encode(vote),
        );
        self.write_synced(batch, "saving the vote")
            .await
            .map_err(io_err)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), std::io::Error> {
        // Not synced: the committed index is a hint that speeds up restart; Raft
        // recovers it from a quorum if it is lost.
        self.db
            .db
            .put_cf(
                self.db.cf(CF_RAFT_META),
                raft_meta::COMMITTED,
                codec::encode(&committed),
            )
            .map_err(|source| {
                io_err(StoreError::Io {
                    step: "saving the committed index",
                    source,
                })
            })
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, std::io::Error> {
        Ok(self
            .db
            .get_decoded::<Option<LogId>>(CF_RAFT_META, raft_meta::COMMITTED)
            .map_err(io_err)?
            .flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), std::io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = WriteBatch::default();
        let cf = self.db.cf(CF_RAFT_LOG);
        for entry in entries {
            batch.put_cf(
                cf,
                codec::log_key(entry.log_id().index),
                codec::encode(&entry),
            );
        }
        // Written (and readable) now; durable only once the flusher has synced
        // the WAL, and only then is openraft told.
        if let Err(source) = self.db.db.write(batch) {
            let e = StoreError::Io {
                step: "appending raft log entries",
                source,
            };
            callback.io_completed(Err(std::io::Error::other(e.to_string())));
            return Err(io_err(e));
        }
        if let Err(std::sync::mpsc::SendError(cb)) = self.flusher.send(callback) {
            cb.io_completed(Err(std::io::Error::other("the raft log flusher stopped")));
        }
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), std::io::Error> {
        let from = last_log_id.map_or(0, |l| l.index + 1);
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(
            self.db.cf(CF_RAFT_LOG),
            codec::log_key(from),
            codec::log_key(u64::MAX),
        );
        batch.delete_cf(self.db.cf(CF_RAFT_LOG), codec::log_key(u64::MAX));
        self.write_synced(batch, "truncating the raft log")
            .await
            .map_err(io_err)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), std::io::Error> {
        // One atomic batch: last_purged_log_id is never behind the deleted range.
        let mut batch = WriteBatch::default();
        batch.put_cf(
            self.db.cf(CF_RAFT_META),
            raft_meta::LAST_PURGED,
            codec::encode(&Some(log_id)),
        );
        batch.delete_range_cf(
            self.db.cf(CF_RAFT_LOG),
            codec::log_key(0),
            codec::log_key(log_id.index + 1),
        );
        self.write_synced(batch, "purging the raft log")
            .await
            .map_err(io_err)?;
        let db = self.db.clone();
        let end = codec::log_key(log_id.index + 1);
        tokio::task::spawn_blocking(move || db.reclaim(CF_RAFT_LOG, &end));
        Ok(())
    }
}
