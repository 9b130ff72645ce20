//! The registry's storage seam: keys, bytes and revisions, with typed
//! `NotFound`, `AlreadyExists` and `Conflict`, behind one object-safe trait
//! ([`Storage`]), in the manner of Kubernetes' `storage.Interface`. The Raft
//! member implements it ([`MemberStorage`]) and so does an in-memory map
//! ([`MemoryStorage`]) that registry unit tests run against in milliseconds.
//! The watch cache ([`WatchCache`]) wraps either and serves lists and
//! watches from memory.
//!
//! Every write names its [`Actor`] (the requesting user and groups, or a
//! named system identity for the server's own writes), passed explicitly,
//! and the events it produces record it.
//!
//! The trait returns boxed futures so the registry can hold an
//! `Arc<dyn Storage>` without a generic parameter spreading through every
//! verb, and without a macro crate: one allocation per call is noise beside a
//! Raft round trip. The read-modify-write loop ([`guaranteed_update`]) is
//! written once over the trait's conditional `update`, so every
//! implementation retries the same way and the store's precondition failures
//! become `Conflict`/`NotFound` in exactly one place per implementation.

pub mod cache;
mod member;
mod memory;
#[cfg(test)]
mod tests;

use futures::future::BoxFuture;
use futures::stream::BoxStream;

pub use cache::WatchCache;
pub use keel_store::history::KeyHistory;
pub use keel_store::{
    Actor, Consistency, Event, EventKind, KeyValue, RangeRequest, RangeResponse, WatchMessage,
};
pub use member::MemberStorage;
pub use memory::MemoryStorage;

/// Rounds of a [`guaranteed_update`] before it gives up with a `Conflict`:
/// each lost race means another write landed, so running out takes
/// sustained contention.
pub const MAX_UPDATE_ATTEMPTS: usize = 16;

/// Everything a storage call can fail with, in storage terms. The registry
/// turns `NotFound`, `AlreadyExists` and `Conflict` into API errors naming
/// the resource; the others map to the wire as the store's errors always did
/// (`crate::error`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    /// The key does not exist. `revision` is the revision the absence was
    /// read at, when the call knows it (a get does, a refused write does not).
    #[error("key {key} not found")]
    NotFound { key: String, revision: Option<u64> },
    /// A create found the key already there.
    #[error("key {key} already exists")]
    AlreadyExists { key: String },
    /// A precondition (mod revision or uid) did not hold; nothing was written.
    #[error("key {key} was changed: {detail}")]
    Conflict { key: String, detail: String },
    /// The revision asked for is older than the oldest one retained.
    #[error("revision {requested} has been compacted (oldest available is {compacted})")]
    Compacted { requested: u64, compacted: u64 },
    /// The revision asked for is newer than anything this replica has.
    #[error("revision {requested} is in the future (current revision is {current})")]
    FutureRevision { requested: u64, current: u64 },
    /// A continuation token this storage did not issue, or a damaged one.
    #[error("invalid continuation token: {0}")]
    InvalidContinue(String),
    /// Nothing was written, and a later attempt may succeed (no leader, a
    /// peer unreachable, a watch cut off).
    #[error("{0}")]
    Unavailable(String),
    /// The outcome is unknown: a write may or may not have been applied.
    #[error("{0}")]
    Timeout(String),
    /// A value above the storage's size limit.
    #[error("value for key {key} is {size} bytes, above the limit of {limit} bytes")]
    TooLarge {
        key: String,
        size: usize,
        limit: usize,
    },
    /// A request the storage refuses as written (an empty or bad key).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// This replica already serves its maximum of open watches.
    #[error("too many open watches (the limit is {limit}); retry later")]
    TooManyWatches { limit: usize },
    /// Anything else: corrupt data, I/O, Raft shutting down.
    #[error("{0}")]
    Internal(String),
}

impl StorageError {
    /// Whether a later attempt may succeed. A `Timeout` may also have been
    /// applied: only a write guarded by a precondition may be repeated blindly.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            StorageError::Unavailable(_) | StorageError::Timeout(_)
        )
    }
}

/// Conditions a conditional write checks against the key's current state,
/// all together; a failed one is [`StorageError::Conflict`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Preconditions {
    /// The key was last modified at this revision.
    pub mod_revision: Option<u64>,
    /// The key was created with this uid.
    pub uid: Option<String>,
}

impl Preconditions {
    /// Only if the key is still at `revision`.
    pub fn mod_revision(revision: u64) -> Preconditions {
        Preconditions {
            mod_revision: Some(revision),
            uid: None,
        }
    }

    /// Only if the key was created with `uid`.
    pub fn uid(uid: impl Into<String>) -> Preconditions {
        Preconditions {
            mod_revision: None,
            uid: Some(uid.into()),
        }
    }

    /// Why `kv` fails these preconditions, `None` when it meets them.
    pub fn violated_by(&self, kv: &KeyValue) -> Option<String> {
        if let Some(expected) = self.mod_revision.filter(|r| *r != kv.mod_revision) {
            return Some(format!(
                "the key was modified at revision {}, expected {expected}",
                kv.mod_revision
            ));
        }
        match &self.uid {
            Some(expected) if kv.uid.as_deref() != Some(expected.as_str()) => {
                Some(format!("the key has uid {:?}, expected {expected}", kv.uid))
            }
            _ => None,
        }
    }
}

/// Events under a prefix, one message per revision, then progress
/// notifications; an error ends it.
pub type EventStream = BoxStream<'static, Result<WatchMessage, StorageError>>;

/// What the registry needs from storage. Keys are full storage keys (the
/// registry builds them from the kind); values are the encoded objects.
pub trait Storage: Send + Sync + 'static {
    /// One key and the revision it was read at; a missing key is
    /// `NotFound` carrying that revision.
    fn get<'a>(
        &'a self,
        key: &'a str,
        consistency: Consistency,
    ) -> BoxFuture<'a, Result<(KeyValue, u64), StorageError>>;

    /// One page of the keys under `req.prefix`: now, or at `req.revision`,
    /// or where `req.continue_token` left off (at the first page's revision).
    /// A revision older than the retained events is `Compacted`, one newer
    /// than this replica's is `FutureRevision`.
    fn list(&self, req: RangeRequest) -> BoxFuture<'_, Result<RangeResponse, StorageError>>;

    /// [`Storage::list`] for a caller that keeps only the objects whose
    /// fields (JSON pointer, value) all equal `fields`, and checks every
    /// object itself: storage with an index on one of them (the watch
    /// cache's `spec.nodeName`) may leave out objects that cannot match.
    fn list_matching(
        &self,
        req: RangeRequest,
        fields: Vec<(String, String)>,
    ) -> BoxFuture<'_, Result<RangeResponse, StorageError>> {
        let _ = fields;
        self.list(req)
    }

    /// Every change of `key` this storage knows, oldest first (the store's
    /// event archive and retained events): the `keel.dev` history endpoint.
    fn history<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<KeyHistory, StorageError>> {
        let _ = key;
        Box::pin(async {
            Err(StorageError::Invalid(
                "object history is not kept by this storage".into(),
            ))
        })
    }

    /// Create `key` on behalf of `actor`; the new revision. An existing key
    /// is `AlreadyExists`.
    fn create<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        uid: Option<String>,
        actor: &'a Actor,
    ) -> BoxFuture<'a, Result<u64, StorageError>>;

    /// Replace `key`'s value if `preconditions` hold, on behalf of `actor`;
    /// the new revision. A missing key is `NotFound`, a failed precondition
    /// `Conflict`.
    fn update<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        preconditions: Preconditions,
        actor: &'a Actor,
    ) -> BoxFuture<'a, Result<u64, StorageError>>;

    /// Delete `key` if `preconditions` hold, on behalf of `actor`; the
    /// revision of the delete. A missing key is `NotFound`, a failed
    /// precondition `Conflict`.
    fn delete<'a>(
        &'a self,
        key: &'a str,
        preconditions: Preconditions,
        actor: &'a Actor,
    ) -> BoxFuture<'a, Result<u64, StorageError>>;

    /// Every change under `prefix` with a revision strictly after `after`.
    fn watch<'a>(
        &'a self,
        prefix: &'a str,
        after: u64,
    ) -> BoxFuture<'a, Result<EventStream, StorageError>>;

    /// [`Storage::watch`], and below the retained window a replay from the
    /// store's event archive where it has one (a Keel opt-in for API
    /// watches); without one, as `watch`.
    fn watch_archived<'a>(
        &'a self,
        prefix: &'a str,
        after: u64,
    ) -> BoxFuture<'a, Result<EventStream, StorageError>> {
        self.watch(prefix, after)
    }

    /// Wait until this replica has applied every write acknowledged before
    /// the call; the revision it has reached.
    fn linearize(&self) -> BoxFuture<'_, Result<u64, StorageError>>;

    /// Before a watch starts at `revision`: a replica that has not applied it
    /// yet (a follower behind the leader a client read from) catches up
    /// first, as far as it can. One that still lacks it refuses the watch.
    fn catch_up_to(&self, revision: u64) -> BoxFuture<'_, ()>;

    /// Ask that watches of exactly `prefix` on this replica get a progress
    /// notification at its current revision, after every event up to it
    /// (the watch cache uses it to learn it is current when the newest
    /// revisions carried no event for it). Storage without watches of its
    /// own ignores it.
    fn request_progress(&self, _prefix: &str) {}

    /// Whether `kv`, as this storage returned it, is stored in a form that
    /// is no longer current (encrypted with a key other than the first
    /// configured one, [`crate::encryption`]): an update that changes
    /// nothing writes it again anyway, which re-encrypts it.
    fn stale(&self, _kv: &KeyValue) -> bool {
        false
    }

    /// Whether this replica can serve linearizable reads now (`/readyz`).
    fn ready(&self) -> BoxFuture<'_, bool>;

    /// Whether the storage is running at all (`/livez`, `/healthz`).
    fn is_running(&self) -> bool;

    /// The storage's own metrics, in Prometheus text exposition.
    fn render_metrics(&self) -> String;
}

/// What a [`guaranteed_update`] writes for the current object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Write {
    /// Replace the value.
    Put(Vec<u8>),
    /// Delete the key (an object whose last finalizer went).
    Delete,
    /// Write nothing (a no-op update or a dry run).
    Keep,
}

/// What a [`guaranteed_update`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Written {
    /// Replaced at this revision.
    Put { revision: u64 },
    /// Deleted at this revision.
    Deleted { revision: u64 },
    /// Nothing was written.
    Kept,
}

/// Why a [`guaranteed_update`] failed: the storage's answer, or the caller's
/// `try_update` refusing the change.
#[derive(Debug, PartialEq)]
pub enum UpdateError<E> {
    Storage(StorageError),
    Rejected(E),
}

/// The one read-modify-write loop (Kubernetes' `GuaranteedUpdate`): read
/// `key` (linearizably), let `try_update` decide the write from the current
/// value, and apply it only if nothing wrote in between; if something did,
/// read again and decide again. A missing key is `NotFound` (also when it
/// goes between the read and the write); running out of attempts is
/// `Conflict`. `try_update` returns its own result beside the write, so the
/// caller can answer with the object it built. The write is `actor`'s.
pub async fn guaranteed_update<S, T, E, F>(
    storage: &S,
    key: &str,
    actor: &Actor,
    mut try_update: F,
) -> Result<(T, Written), UpdateError<E>>
where
    S: Storage + ?Sized,
    F: FnMut(&KeyValue) -> Result<(Write, T), E>,
{
    for _ in 0..MAX_UPDATE_ATTEMPTS {
        let (kv, _) = storage
            .get(key, Consistency::Linearizable)
            .await
            .map_err(UpdateError::Storage)?;
        let (write, out) = try_update(&kv).map_err(UpdateError::Rejected)?;
        let at = Preconditions::mod_revision(kv.mod_revision);
        let done = match write {
            Write::Keep => return Ok((out, Written::Kept)),
            Write::Put(value) => storage
                .update(key, value, at, actor)
                .await
                .map(|revision| Written::Put { revision }),
            Write::Delete => storage
                .delete(key, at, actor)
                .await
                .map(|revision| Written::Deleted { revision }),
        };
        match done {
            Ok(w) => return Ok((out, w)),
            // Written in between, or deleted: the next read tells which.
            Err(StorageError::Conflict { .. } | StorageError::NotFound { .. }) => continue,
            // A timeout included: the write may have happened, so it is never repeated.
            Err(e) => return Err(UpdateError::Storage(e)),
        }
    }
    Err(UpdateError::Storage(StorageError::Conflict {
        key: key.to_string(),
        detail: format!("still changing after {MAX_UPDATE_ATTEMPTS} attempts"),
    }))
}
