//! The store's error type: one enum for every failure a caller of `keel-store`
//! can see, each variant named after the step that failed.

use crate::command::TxnFailure;

/// Everything that can go wrong in the store, as seen from its callers.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// RocksDB refused to open the data directory (corrupt or truncated files, a lock held).
    #[error("cannot open the store at {path}: {source}")]
    OpenDb {
        path: String,
        #[source]
        source: rocksdb::Error,
    },
    /// The data directory cannot be created or laid out (see `data_dir`): the
    /// detail says what went wrong and, for an old layout, how to move it by hand.
    #[error("data directory {path}: {detail}")]
    DataDir { path: String, detail: String },
    /// A value on disk failed to decode: the member cannot trust its data.
    #[error("corrupt data in column family {cf}, key {key}: {detail}")]
    Corrupt {
        cf: &'static str,
        key: String,
        detail: String,
    },
    /// The data directory was written by an incompatible version of Keel.
    #[error(
        "data directory {path} has format version {found}, this build reads version {expected}"
    )]
    FormatVersion {
        path: String,
        found: u32,
        expected: u32,
    },
    /// A RocksDB read or write failed at run time.
    #[error("storage I/O failed while {step}: {source}")]
    Io {
        step: &'static str,
        #[source]
        source: rocksdb::Error,
    },
    /// The command was written by a newer (or corrupted) client.
    #[error(
        "unsupported command format version {found} (this member understands version {supported})"
    )]
    UnsupportedCommandVersion { found: u16, supported: u16 },
    /// A value is above the configured size limit.
    #[error("value for key {key} is {size} bytes, above the limit of {limit} bytes")]
    ValueTooLarge {
        key: String,
        size: usize,
        limit: usize,
    },
    /// A command that cannot be applied as written (empty, duplicate keys, bad key).
    #[error("invalid command: {0}")]
    InvalidCommand(String),
    /// A transaction's precondition failed; nothing was written.
    #[error("{0}")]
    Precondition(Box<TxnFailure>),
    /// No leader is known right now: retry later (maps to 503 at the API).
    #[error("no leader is known (retry): {0}")]
    NoLeader(String),
    /// This member is not the leader; the request belongs on `leader_id`.
    #[error("member is not the leader; member {leader_id} at {leader_addr} is")]
    NotLeader { leader_id: u64, leader_addr: String },
    /// The outcome is unknown: the write may or may not have been applied (the
    /// deadline passed after it was proposed, or the leader's answer to a
    /// forwarded write was lost). Never reported as [`StoreError::NoLeader`],
    /// which promises that nothing was written.
    #[error("timed out after {millis} ms while {step}; the outcome is unknown")]
    Timeout { step: &'static str, millis: u64 },
    /// The requested revision is older than the oldest retained event.
    #[error("revision {requested} has been compacted (oldest available is {compacted})")]
    Compacted { requested: u64, compacted: u64 },
    /// The requested revision is newer than anything this member has applied.
    #[error("revision {requested} is in the future (current revision is {current})")]
    FutureRevision { requested: u64, current: u64 },
    /// The hub cut this watcher off; resume from the last revision received.
    #[error("watch closed: {reason}")]
    WatchDropped { reason: String },
    /// The member already serves its configured maximum of open watches.
    #[error("too many open watches on this member (the limit is {limit}); retry later")]
    TooManyWatches { limit: usize },
    /// A continuation token that this store did not issue, or that is damaged.
    #[error("invalid continuation token: {0}")]
    InvalidContinue(String),
    /// A snapshot (or one of its chunks) failed verification.
    #[error("snapshot rejected: {0}")]
    Snapshot(String),
    /// Contacting another member failed.
    #[error("request to member {target} failed: {detail}")]
    Transport { target: u64, detail: String },
    /// A call came from a member of another cluster (see `crate::cluster_id`).
    #[error("wrong cluster: {0}")]
    WrongCluster(String),
    /// A membership change was refused.
    #[error("membership change failed: {0}")]
    Membership(String),
    /// The member cannot serve this now (a snapshot is being installed under
    /// the view a backup would read): retry.
    #[error("member busy (retry): {0}")]
    Busy(String),
    /// The event archive cannot be written or read: the detail names the
    /// file or the revisions.
    #[error("archive: {0}")]
    Archive(String),
    /// A backup could not be restored into a data directory.
    #[error("restore failed: {0}")]
    Restore(String),
    /// Raft itself failed or is shutting down.
    #[error("raft: {0}")]
    Raft(String),
}

impl StoreError {
    /// Whether the failure is transient, so a later attempt may succeed. When
    /// [`StoreError::is_outcome_unknown`] also holds, the first attempt may
    /// have been applied: only a write that is safe to apply twice (guarded
    /// by a precondition) may be repeated blindly.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            StoreError::NoLeader(_)
                | StoreError::Busy(_)
                | StoreError::Timeout { .. }
                | StoreError::Transport { .. }
                | StoreError::WatchDropped { .. }
        )
    }

    /// Whether a write may have been applied although it failed: only
    /// [`StoreError::Timeout`]. A write that fails otherwise was not applied
    /// (except when Raft itself stops under it, reported as [`StoreError::Raft`]).
    pub fn is_outcome_unknown(&self) -> bool {
        matches!(self, StoreError::Timeout { .. })
    }
}
