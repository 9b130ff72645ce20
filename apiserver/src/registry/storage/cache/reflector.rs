//! The one task that feeds the watch cache: list everything under
//! `/registry/` at one revision, then follow the store's watch of it from
//! that revision. A watch that ends (cut off, a leader change) resumes from
//! the last revision applied; only a resume the store refuses as compacted
//! lists everything again. It stops when the cache is dropped.

use std::sync::{Arc, Weak};
use std::time::Duration;

use futures::StreamExt;

use super::Shared;
use super::store::{ROOT, State};
use crate::registry::storage::{Consistency, RangeRequest, Storage, StorageError, WatchMessage};

/// Keys read per page of a full list.
const PAGE: usize = 1000;

/// How often watchers of a resource without events get a bookmark.
pub const TICK: Duration = Duration::from_secs(1);

/// Pause before trying again after the store refused a list or a watch.
const RETRY: Duration = Duration::from_millis(200);

/// Why following the watch stopped.
enum Stop {
    /// The cache was dropped.
    Dropped,
    /// The store no longer has the events after the cache's revision.
    Compacted,
}

pub async fn run(shared: Weak<Shared>, inner: Arc<dyn Storage>) {
    loop {
        let revision = match list(&inner).await {
            Ok((revision, kvs)) => {
                let resources = State::build(revision, kvs);
                let Some(s) = shared.upgrade() else { return };
                s.lock().replace(revision, resources);
                s.revision.send_replace(revision);
                revision
            }
            Err(e) => {
                tracing::debug!("watch cache: list failed: {e}");
                if shared.strong_count() == 0 {
                    return;
                }
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        match follow(&shared, &inner, revision).await {
            Stop::Dropped => return,
            Stop::Compacted => tracing::info!("watch cache: resume compacted, listing again"),
        }
    }
}

/// Everything under [`ROOT`], page by page at the first page's revision.
async fn list(inner: &Arc<dyn Storage>) -> Result<(u64, Vec<keel_store::KeyValue>), StorageError> {
    let mut req = RangeRequest::prefix(ROOT);
    // The replica's own state: the watch brings it up to date, and reads
    // that need the newest state wait for the cache to reach it.
    req.consistency = Consistency::Local;
    req.limit = PAGE;
    let mut kvs = Vec::new();
    loop {
        let page = inner.list(req.clone()).await?;
        kvs.extend(page.kvs);
        match page.continue_token {
            Some(t) => req.continue_token = Some(t),
            None => return Ok((page.revision, kvs)),
        }
    }
}

/// Apply the store's events after `revision` until the cache is dropped or
/// the store can no longer resume where the cache is.
async fn follow(shared: &Weak<Shared>, inner: &Arc<dyn Storage>, mut revision: u64) -> Stop {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let mut stream = match inner.watch(ROOT, revision).await {
            Ok(s) => s,
            // Gone, or a store whose history is no longer the cache's (its
            // state replaced): only a new list can say what is there.
            Err(StorageError::Compacted { .. } | StorageError::FutureRevision { .. }) => {
                return Stop::Compacted;
            }
            Err(e) => {
                tracing::debug!("watch cache: watch from {revision} failed: {e}");
                if shared.strong_count() == 0 {
                    return Stop::Dropped;
                }
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        loop {
            let msg = tokio::select! {
                m = stream.next() => m,
                _ = tick.tick() => {
                    let Some(s) = shared.upgrade() else { return Stop::Dropped };
                    s.lock().tick();
                    continue;
                }
            };
            let Some(s) = shared.upgrade() else {
                return Stop::Dropped;
            };
            match msg {
                Some(Ok(WatchMessage::Events {
                    revision: r,
                    events,
                })) => {
                    s.lock().apply(r, &events);
                    revision = revision.max(r);
                }
                Some(Ok(WatchMessage::Progress { revision: r })) => {
                    s.lock().progress(r);
                    revision = revision.max(r);
                }
                Some(Err(StorageError::Compacted { .. })) => return Stop::Compacted,
                // Cut off or ended: resume where the cache is.
                Some(Err(e)) => {
                    tracing::debug!("watch cache: watch ended at {revision}: {e}");
                    break;
                }
                None => break,
            }
            s.revision.send_replace(revision);
        }
    }
}
