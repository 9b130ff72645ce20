//! The watch cache: a [`Storage`] over another one (the Raft member) that
//! keeps every object under `/registry/` in memory, fed by ONE store watch,
//! in the manner of kube-apiserver's cacher. Writes and GETs go to the inner
//! storage. From memory it serves:
//!
//! - LISTs of a whole resource or one namespace of it, without a continue
//!   token or an exact revision: `resourceVersion=0` at the cache's revision,
//!   and every other (consistent, or `NotOlderThan`) one after a linearizable
//!   read of the store's revision and a wait until the cache has applied it
//!   (kube-apiserver's consistent list from cache). A cache behind that
//!   revision asks the store for a progress notification on its watch (the
//!   newest revisions may carry no event for it, such as a failed write or a
//!   new leader's first entry). A cache that still does not get there within
//!   [`CONSISTENT_WAIT`], or a result larger than the `limit` (which would
//!   need a continue token), is read from the store as before. The registry
//!   streams such a LIST straight from the cache's objects ([`list`]).
//! - `spec.nodeName` field selectors on pods through an index, and
//!   `metadata.namespace` ones through the key order ([`index`]).
//! - watches that start within the ring of recent events, for any number of
//!   watchers per resource; each event is decoded and encoded once and the
//!   bytes shared ([`CachedEvent`]). Older starts, and anything before the
//!   first list completes, go to the store, so its `410 Gone` and
//!   `FutureRevision` answers are unchanged.

mod event;
#[cfg(test)]
mod fanout_tests;
mod index;
mod list;
mod reflector;
mod store;
mod subscription;
#[cfg(test)]
mod tests;

use std::fmt::Write as _;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use tokio::sync::watch;

pub use event::{CachedEvent, Line};
pub use store::Object;
pub use subscription::{Next, Subscription};

use super::{
    Actor, Consistency, EventStream, KeyValue, Preconditions, RangeRequest, RangeResponse, Storage,
    StorageError, WatchMessage,
};
use store::{State, scope_of};

/// How long a consistent LIST waits for the cache to reach the store's
/// revision before it reads the store instead.
pub const CONSISTENT_WAIT: Duration = Duration::from_millis(500);

/// How long a watch starting after a revision the cache has not reached
/// yet waits for it before asking the store whether it exists.
const FUTURE_WAIT: Duration = Duration::from_millis(200);

/// What the cache and its reflector share; the reflector holds it weakly
/// and stops when the cache goes.
pub(crate) struct Shared {
    state: Mutex<State>,
    /// The revision the cache has applied, for readers that wait for one.
    revision: watch::Sender<u64>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every change to the state completes under the lock or not at all.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// See the module documentation.
pub struct WatchCache {
    inner: Arc<dyn Storage>,
    shared: Arc<Shared>,
}

impl WatchCache {
    /// A cache over `inner`; it starts filling at once (on the current
    /// Tokio runtime; without one it serves everything from `inner`).
    pub fn new(inner: Arc<dyn Storage>) -> Arc<WatchCache> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            revision: watch::channel(0).0,
        });
        if tokio::runtime::Handle::try_current().is_ok() {
            tokio::spawn(reflector::run(Arc::downgrade(&shared), inner.clone()));
        }
        Arc::new(WatchCache { inner, shared })
    }

    /// The storage under the cache.
    pub fn inner(&self) -> &Arc<dyn Storage> {
        &self.inner
    }

    /// The revision the cache has applied.
    pub fn revision(&self) -> u64 {
        *self.shared.revision.borrow()
    }

    /// Whether the first list has completed.
    pub fn synced(&self) -> bool {
        self.shared.lock().synced
    }

    /// The object at `key` as the cache holds it (`Some(None)`: absent at
    /// the cache's revision); `None` until the first list completes or for
    /// a key outside the cached shape, when the store must answer.
    pub fn object(&self, key: &str) -> Option<Option<Arc<Object>>> {
        let resource = store::resource_of(key)?;
        let st = self.shared.lock();
        if !st.synced {
            return None;
        }
        Some(st.resources.get(resource).and_then(|r| r.get(key)))
    }

    /// Wait up to `within` until the cache has applied `revision`.
    pub async fn reached(&self, revision: u64, within: Duration) -> bool {
        let mut rx = self.shared.revision.subscribe();
        matches!(
            tokio::time::timeout(within, rx.wait_for(|r| *r >= revision)).await,
            Ok(Ok(_))
        )
    }

    /// Events under `prefix` strictly after `after`, from the cache; `None`
    /// when the cache cannot serve them (not a resource prefix, not synced,
    /// older than the ring, or a revision the store does not have yet), so
    /// the caller asks the store.
    pub async fn subscribe(&self, prefix: &str, after: u64) -> Option<Subscription> {
        let resource = scope_of(prefix)?;
        if !self.synced() {
            return None;
        }
        if after > self.revision() && !self.reached(after, FUTURE_WAIT).await {
            // A revision without an event (no progress yet) is still a
            // start the cache can serve, filtering what comes; one the
            // store has not reached is the store's error to give.
            match self.inner.linearize().await {
                Ok(head) if after <= head => {}
                _ => return None,
            }
        }
        let mut st = self.shared.lock();
        let (backlog, rx) = st.resource(resource).subscribe(prefix, after)?;
        Some(Subscription::new(prefix, after, backlog, rx))
    }

    /// A LIST from the cache where it can serve it (module documentation),
    /// else from the store. `fields` are equality requirements the caller
    /// checks on every object: indexed ones narrow what is read.
    async fn list_cached(
        &self,
        req: RangeRequest,
        fields: &[(String, String)],
    ) -> Result<RangeResponse, StorageError> {
        match self.objects(&req, fields).await? {
            Some((objects, revision)) => Ok(RangeResponse {
                kvs: objects.iter().map(|o| o.kv.clone()).collect(),
                revision,
                continue_token: None,
            }),
            None => self.inner.list(req).await,
        }
    }

    /// What [`Storage::list_matching`] would answer from the cache, as the
    /// cache's own objects (nothing copied) and the revision they are at;
    /// `None` when the store must answer.
    pub async fn objects(
        &self,
        req: &RangeRequest,
        fields: &[(String, String)],
    ) -> Result<Option<(Vec<Arc<Object>>, u64)>, StorageError> {
        let servable = req.continue_token.is_none() && req.revision.is_none();
        let Some(resource) = scope_of(&req.prefix).filter(|_| servable && self.synced()) else {
            return Ok(None);
        };
        if matches!(req.consistency, Consistency::Linearizable) {
            let head = self.inner.linearize().await?;
            if self.revision() < head {
                // The newest revisions may carry no event under the root
                // (a failed write, a new leader's first entry): ask the
                // store to tell the cache's watch where it stands.
                self.inner.request_progress(store::ROOT);
            }
            if !self.reached(head, CONSISTENT_WAIT).await {
                return Ok(None);
            }
        }
        let field = |pointer: &str| {
            fields
                .iter()
                .find(|(p, _)| p == pointer)
                .map(|(_, v)| v.as_str())
        };
        let node = field(index::NODE_NAME);
        // The namespace is in the key: a namespace selector on a list of
        // every namespace reads that namespace's range only.
        let mut prefix = req.prefix.clone();
        if prefix == resource
            && let Some(ns) =
                field("/metadata/namespace").filter(|ns| !ns.is_empty() && !ns.contains('/'))
        {
            prefix = format!("{resource}{ns}/");
        }
        let (objects, revision) = {
            let mut st = self.shared.lock();
            let revision = st.revision;
            (st.resource(resource).select(&prefix, node), revision)
        };
        // One page of many needs the store's continue tokens.
        Ok((req.limit == 0 || objects.len() <= req.limit).then_some((objects, revision)))
    }

    fn render(&self) -> String {
        let st = self.shared.lock();
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP keel_watch_cache_revision The revision the API's watch cache has applied.\n\
             # TYPE keel_watch_cache_revision gauge\nkeel_watch_cache_revision {}",
            st.revision
        );
        let _ = writeln!(
            out,
            "# HELP keel_watch_cache_relists_total Times the watch cache listed the store again.\n\
             # TYPE keel_watch_cache_relists_total counter\nkeel_watch_cache_relists_total {}",
            st.relists
        );
        let mut names: Vec<&String> = st.resources.keys().collect();
        names.sort();
        for (metric, help) in [
            ("objects", "Objects in the watch cache"),
            ("watchers", "Watches served from the watch cache"),
            (
                "events",
                "Recent events the watch cache keeps for watch starts",
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP keel_watch_cache_{metric} {help}, per resource.\n# TYPE keel_watch_cache_{metric} gauge"
            );
            for name in &names {
                let r = &st.resources[*name];
                let v = match metric {
                    "objects" => r.len(),
                    "watchers" => r.watchers(),
                    _ => r.ring_len(),
                };
                let _ = writeln!(out, "keel_watch_cache_{metric}{{resource=\"{name}\"}} {v}");
            }
        }
        out
    }
}

/// A subscription as the store's kind of event stream (one message per
/// event); its end is an `Unavailable` error, as a store watch cut off.
fn event_stream(sub: Subscription) -> EventStream {
    futures::stream::unfold(Some(sub), |sub| async move {
        let mut sub = sub?;
        let item = match sub.next().await {
            Next::Event(e) => Ok(WatchMessage::Events {
                revision: e.revision(),
                events: vec![e.event.clone()],
            }),
            Next::Progress(revision) => Ok(WatchMessage::Progress { revision }),
            Next::End(why) => return Some((Err(StorageError::Unavailable(why)), None)),
        };
        Some((item, Some(sub)))
    })
    .boxed()
}

impl Storage for WatchCache {
    fn get<'a>(
        &'a self,
        key: &'a str,
        consistency: Consistency,
    ) -> BoxFuture<'a, Result<(KeyValue, u64), StorageError>> {
        self.inner.get(key, consistency)
    }

    fn history<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<super::KeyHistory, StorageError>> {
        self.inner.history(key)
    }

    fn watch_archived<'a>(
        &'a self,
        prefix: &'a str,
        after: u64,
    ) -> BoxFuture<'a, Result<EventStream, StorageError>> {
        // Below the cache's ring by definition: the storage under it.
        self.inner.watch_archived(prefix, after)
    }

    fn list(&self, req: RangeRequest) -> BoxFuture<'_, Result<RangeResponse, StorageError>> {
        async move { self.list_cached(req, &[]).await }.boxed()
    }

    fn list_matching(
        &self,
        req: RangeRequest,
        fields: Vec<(String, String)>,
    ) -> BoxFuture<'_, Result<RangeResponse, StorageError>> {
        async move { self.list_cached(req, &fields).await }.boxed()
    }

    fn create<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        uid: Option<String>,
        actor: &'a Actor,
    ) -> BoxFuture<'a, Result<u64, StorageError>> {
        self.inner.create(key, value, uid, actor)
    }

    fn update<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        preconditions: Preconditions,
        actor: &'a Actor,
    ) -> BoxFuture<'a, Result<u64, StorageError>> {
        self.inner.update(key, value, preconditions, actor)
    }

    fn delete<'a>(
        &'a self,
        key: &'a str,
        preconditions: Preconditions,
        actor: &'a Actor,
    ) -> BoxFuture<'a, Result<u64, StorageError>> {
        self.inner.delete(key, preconditions, actor)
    }

    fn watch<'a>(
        &'a self,
        prefix: &'a str,
        after: u64,
    ) -> BoxFuture<'a, Result<EventStream, StorageError>> {
        async move {
            match self.subscribe(prefix, after).await {
                Some(sub) => Ok(event_stream(sub)),
                None => self.inner.watch(prefix, after).await,
            }
        }
        .boxed()
    }

    fn linearize(&self) -> BoxFuture<'_, Result<u64, StorageError>> {
        self.inner.linearize()
    }

    fn catch_up_to(&self, revision: u64) -> BoxFuture<'_, ()> {
        self.inner.catch_up_to(revision)
    }

    fn stale(&self, kv: &KeyValue) -> bool {
        self.inner.stale(kv)
    }

    fn ready(&self) -> BoxFuture<'_, bool> {
        self.inner.ready()
    }

    fn is_running(&self) -> bool {
        self.inner.is_running()
    }

    fn render_metrics(&self) -> String {
        let mut out = self.inner.render_metrics();
        out.push_str(&self.render());
        out
    }
}
