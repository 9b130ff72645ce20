//! [`Storage`] over the Raft member: every write is a one-operation
//! transaction with its preconditions and its actor, and the store's precondition failures
//! become `AlreadyExists`, `NotFound` or `Conflict` here, once. The only
//! file of the registry that knows `Member`.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use keel_store::{Member, Op, StoreError, WatchStart};

use super::{
    Actor, Consistency, EventStream, KeyValue, Preconditions, RangeRequest, RangeResponse, Storage,
    StorageError,
};

/// The registry's storage on a running store member.
pub struct MemberStorage {
    member: Arc<Member>,
}

impl MemberStorage {
    pub fn new(member: Arc<Member>) -> MemberStorage {
        MemberStorage { member }
    }
}

impl crate::registry::Registry {
    /// The built-in kinds over a store member, behind the watch cache: what
    /// the server runs. Here rather than beside
    /// [`Registry::with_storage`](crate::registry::Registry::with_storage)
    /// so that this file stays the registry's only one that knows `Member`.
    /// `KEEL_WATCH_CACHE=off` in the environment serves everything from the
    /// member instead (to compare, or to rule the cache out).
    pub fn new(member: Arc<Member>) -> crate::registry::Registry {
        crate::registry::Registry::serving(Arc::new(MemberStorage::new(member)))
    }

    /// The built-in kinds over `storage` (the member's, or a layer over it
    /// such as [`crate::encryption::EncryptedStorage`]), behind the watch
    /// cache as [`Registry::new`](crate::registry::Registry::new) describes.
    pub fn serving(storage: Arc<dyn Storage>) -> crate::registry::Registry {
        let kinds = crate::kinds::Kinds::builtin();
        if std::env::var("KEEL_WATCH_CACHE").is_ok_and(|v| v == "off") {
            crate::registry::Registry::with_storage(storage, kinds)
        } else {
            crate::registry::Registry::with_cache(storage, kinds)
        }
    }
}

impl From<StoreError> for StorageError {
    fn from(e: StoreError) -> StorageError {
        match e {
            StoreError::NoLeader(_)
            | StoreError::NotLeader { .. }
            | StoreError::Transport { .. }
            | StoreError::WatchDropped { .. } => StorageError::Unavailable(e.to_string()),
            StoreError::Timeout { .. } => StorageError::Timeout(e.to_string()),
            StoreError::Compacted {
                requested,
                compacted,
            } => StorageError::Compacted {
                requested,
                compacted,
            },
            StoreError::FutureRevision { requested, current } => {
                StorageError::FutureRevision { requested, current }
            }
            StoreError::InvalidContinue(m) => StorageError::InvalidContinue(m),
            StoreError::ValueTooLarge { key, size, limit } => {
                StorageError::TooLarge { key, size, limit }
            }
            StoreError::InvalidCommand(m) => StorageError::Invalid(m),
            StoreError::TooManyWatches { limit } => StorageError::TooManyWatches { limit },
            // Writes map their failures themselves ([`conditional`]); this
            // covers a failure of some other transaction.
            StoreError::Precondition(f) => StorageError::Conflict {
                key: f.key.clone(),
                detail: f.reason.to_string(),
            },
            e => StorageError::Internal(e.to_string()),
        }
    }
}

/// A refused update or delete: the key gone is `NotFound`, otherwise a
/// precondition failed.
fn conditional(key: &str, e: StoreError) -> StorageError {
    match e {
        StoreError::Precondition(f) if f.current.is_none() => StorageError::NotFound {
            key: key.to_string(),
            revision: None,
        },
        StoreError::Precondition(f) => StorageError::Conflict {
            key: key.to_string(),
            detail: f.reason.to_string(),
        },
        e => e.into(),
    }
}

fn guarded(mut op: Op, pre: Preconditions) -> Op {
    if let Some(r) = pre.mod_revision {
        op = op.if_mod_revision(r);
    }
    if let Some(uid) = pre.uid {
        op = op.if_uid(uid);
    }
    op
}

/// Watches started right after a read may find the read's revision not yet
/// published to watchers (the store publishes just after a read can see it):
/// retried this often, this far apart, before `FutureRevision` stands.
const WATCH_START_TRIES: usize = 50;
const WATCH_START_PAUSE: Duration = Duration::from_millis(10);

impl MemberStorage {
    /// A store watch as an [`EventStream`], retried while its start is
    /// briefly "in the future" (see `WATCH_START_TRIES`).
    fn watch_from<'a>(
        &'a self,
        prefix: &'a str,
        start: WatchStart,
    ) -> BoxFuture<'a, Result<EventStream, StorageError>> {
        async move {
            let mut tries = 0;
            let stream = loop {
                match self.member.watch(prefix, start) {
                    Err(StoreError::FutureRevision { .. }) if tries < WATCH_START_TRIES => {
                        tries += 1;
                        tokio::time::sleep(WATCH_START_PAUSE).await;
                    }
                    r => break r?,
                }
            };
            let events = futures::stream::unfold(stream, |mut s| async move {
                let item = s.next().await?;
                Some((item.map_err(StorageError::from), s))
            });
            Ok(events.boxed())
        }
        .boxed()
    }
}

impl Storage for MemberStorage {
    fn get<'a>(
        &'a self,
        key: &'a str,
        consistency: Consistency,
    ) -> BoxFuture<'a, Result<(KeyValue, u64), StorageError>> {
        async move {
            match self.member.get(key, consistency).await? {
                (Some(kv), revision) => Ok((kv, revision)),
                (None, revision) => Err(StorageError::NotFound {
                    key: key.to_string(),
                    revision: Some(revision),
                }),
            }
        }
        .boxed()
    }

    fn list(&self, req: RangeRequest) -> BoxFuture<'_, Result<RangeResponse, StorageError>> {
        async move { Ok(self.member.range(req).await?) }.boxed()
    }

    fn history<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<super::KeyHistory, StorageError>> {
        async move { Ok(self.member.history(key).await?) }.boxed()
    }

    fn create<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        uid: Option<String>,
        actor: &'a Actor,
    ) -> BoxFuture<'a, Result<u64, StorageError>> {
        async move {
            let mut op = Op::create(key, value);
            if let Some(uid) = uid {
                op = op.with_uid(uid);
            }
            let created = self.member.txn_by(vec![op], actor.clone()).await;
            created.map_err(|e| match e {
                StoreError::Precondition(_) => StorageError::AlreadyExists {
                    key: key.to_string(),
                },
                e => e.into(),
            })
        }
        .boxed()
    }

    fn update<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        preconditions: Preconditions,
        actor: &'a Actor,
    ) -> BoxFuture<'a, Result<u64, StorageError>> {
        async move {
            let op = guarded(Op::update(key, value), preconditions);
            self.member
                .txn_by(vec![op], actor.clone())
                .await
                .map_err(|e| conditional(key, e))
        }
        .boxed()
    }

    fn delete<'a>(
        &'a self,
        key: &'a str,
        preconditions: Preconditions,
        actor: &'a Actor,
    ) -> BoxFuture<'a, Result<u64, StorageError>> {
        async move {
            let op = guarded(Op::delete(key), preconditions);
            self.member
                .txn_by(vec![op], actor.clone())
                .await
                .map_err(|e| conditional(key, e))
        }
        .boxed()
    }

    fn watch<'a>(
        &'a self,
        prefix: &'a str,
        after: u64,
    ) -> BoxFuture<'a, Result<EventStream, StorageError>> {
        self.watch_from(prefix, WatchStart::After(after))
    }

    fn watch_archived<'a>(
        &'a self,
        prefix: &'a str,
        after: u64,
    ) -> BoxFuture<'a, Result<EventStream, StorageError>> {
        self.watch_from(prefix, WatchStart::AfterArchived(after))
    }

    fn linearize(&self) -> BoxFuture<'_, Result<u64, StorageError>> {
        async move { Ok(self.member.linearize().await?) }.boxed()
    }

    fn catch_up_to(&self, revision: u64) -> BoxFuture<'_, ()> {
        async move {
            if self
                .member
                .revisions()
                .is_ok_and(|(applied, _)| applied < revision)
            {
                let _ = self.member.linearize().await;
            }
        }
        .boxed()
    }

    fn request_progress(&self, prefix: &str) {
        self.member.hub().request_progress(prefix);
    }

    fn ready(&self) -> BoxFuture<'_, bool> {
        self.member.ready().boxed()
    }

    fn is_running(&self) -> bool {
        self.member.is_running()
    }

    fn render_metrics(&self) -> String {
        self.member.render_metrics()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ApiError;

    /// Carrying a store error through the storage seam answers the client
    /// exactly as the store error itself always did. (`StoreError` is not
    /// `Clone`, so each case builds it twice.)
    #[test]
    fn store_errors_reach_the_wire_unchanged() {
        let cases: [fn() -> StoreError; 14] = [
            || StoreError::NoLeader("none".into()),
            || StoreError::NotLeader {
                leader_id: 2,
                leader_addr: "127.0.0.1:1".into(),
            },
            || StoreError::Transport {
                target: 3,
                detail: "refused".into(),
            },
            || StoreError::WatchDropped {
                reason: "too slow".into(),
            },
            || StoreError::Timeout {
                step: "committing a write",
                millis: 5000,
            },
            || StoreError::Compacted {
                requested: 3,
                compacted: 9,
            },
            || StoreError::FutureRevision {
                requested: 90,
                current: 7,
            },
            || StoreError::InvalidContinue("not hexadecimal".into()),
            || StoreError::ValueTooLarge {
                key: "/k".into(),
                size: 10,
                limit: 5,
            },
            || StoreError::InvalidCommand("empty".into()),
            || StoreError::TooManyWatches { limit: 4 },
            || StoreError::Raft("shutting down".into()),
            || StoreError::Snapshot("bad checksum".into()),
            || StoreError::UnsupportedCommandVersion {
                found: 9,
                supported: 1,
            },
        ];
        for case in cases {
            let direct = ApiError::from(case());
            let carried = ApiError::from(StorageError::from(case()));
            assert_eq!(direct.status(), carried.status(), "{}", case());
        }
    }

    #[test]
    fn a_refused_write_is_not_found_only_when_the_key_is_gone() {
        let failure = |current: Option<KeyValue>| {
            StoreError::Precondition(Box::new(keel_store::command::TxnFailure {
                op_index: 0,
                key: "/k".into(),
                reason: keel_store::command::FailureReason::ModRevisionMismatch {
                    expected: 2,
                    actual: 3,
                },
                current,
            }))
        };
        assert!(matches!(
            conditional("/k", failure(None)),
            StorageError::NotFound { .. }
        ));
        let kv = KeyValue {
            key: "/k".into(),
            value: b"{}".to_vec(),
            create_revision: 2,
            mod_revision: 3,
            version: 2,
            uid: None,
        };
        assert!(matches!(
            conditional("/k", failure(Some(kv))),
            StorageError::Conflict { .. }
        ));
    }
}
