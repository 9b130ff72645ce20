//! Feeds the node graph from the watch stream: for each followed resource,
//! list it once, then follow its watch from the list's revision, resuming
//! from the last revision seen when the watch ends and listing again only
//! when the store can no longer resume there. Over the registry's watch
//! cache this is memory to memory: no store read per request, and none per
//! event.

use std::sync::{Arc, Weak};
use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;

use super::graph::{Graph, Source};
use crate::registry::storage::{RangeRequest, Storage, StorageError, WatchMessage};

/// Pause before trying again after a refused list or watch.
const RETRY: Duration = Duration::from_millis(200);

/// How often an idle feed checks that its graph is still in use.
const ALIVE: Duration = Duration::from_secs(5);

/// Follow every [`Source`] into `graph` until the graph is dropped.
pub fn spawn(graph: &Arc<Graph>, storage: Arc<dyn Storage>) {
    for source in Source::ALL {
        tokio::spawn(run(Arc::downgrade(graph), storage.clone(), source));
    }
}

async fn run(graph: Weak<Graph>, storage: Arc<dyn Storage>, source: Source) {
    loop {
        let revision = match list(&*storage, source).await {
            Ok((revision, objects)) => {
                let Some(g) = graph.upgrade() else { return };
                g.replace(source, &objects);
                revision
            }
            Err(e) => {
                tracing::debug!(prefix = source.prefix(), "node graph: list failed: {e}");
                if graph.strong_count() == 0 {
                    return;
                }
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        if !follow(&graph, &*storage, source, revision).await {
            return;
        }
        tracing::info!(
            prefix = source.prefix(),
            "node graph: resume refused, listing again"
        );
    }
}

/// What the graph reads of an object of `source` (see [`super::projection`]).
fn decode(source: Source, value: &[u8]) -> Option<Value> {
    super::projection::project(value, source.keep())
        .map_err(|e| tracing::warn!("node graph: an object does not decode: {e}"))
        .ok()
}

async fn list(
    storage: &dyn Storage,
    source: Source,
) -> Result<(u64, Vec<(String, Value)>), StorageError> {
    let mut req = RangeRequest::prefix(source.prefix());
    let mut objects = Vec::new();
    loop {
        let page = storage.list(req.clone()).await?;
        objects.extend(
            page.kvs
                .iter()
                .filter_map(|kv| Some((kv.key.clone(), decode(source, &kv.value)?))),
        );
        match page.continue_token {
            Some(t) => req.continue_token = Some(t),
            None => return Ok((page.revision, objects)),
        }
    }
}

/// Apply events after `revision`; false once the graph is dropped, true
/// when only a new list can go on.
async fn follow(
    graph: &Weak<Graph>,
    storage: &dyn Storage,
    source: Source,
    mut revision: u64,
) -> bool {
    let mut alive = tokio::time::interval(ALIVE);
    loop {
        let mut stream = match storage.watch(source.prefix(), revision).await {
            Ok(s) => s,
            Err(StorageError::Compacted { .. } | StorageError::FutureRevision { .. }) => {
                return true;
            }
            Err(e) => {
                tracing::debug!(
                    prefix = source.prefix(),
                    "node graph: watch from {revision} failed: {e}"
                );
                if graph.strong_count() == 0 {
                    return false;
                }
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        loop {
            let msg = tokio::select! {
                m = stream.next() => m,
                _ = alive.tick() => {
                    if graph.strong_count() == 0 {
                        return false;
                    }
                    continue;
                }
            };
            let Some(g) = graph.upgrade() else {
                return false;
            };
            match msg {
                Some(Ok(WatchMessage::Events {
                    revision: r,
                    events,
                })) => {
                    for e in &events {
                        let obj = e.value.as_ref().and_then(|kv| decode(source, &kv.value));
                        // A value that does not decode is dropped from the
                        // graph: access is withdrawn, never widened.
                        g.apply(source, &e.key, obj.as_ref());
                    }
                    revision = revision.max(r);
                }
                Some(Ok(WatchMessage::Progress { revision: r })) => revision = revision.max(r),
                Some(Err(StorageError::Compacted { .. })) => return true,
                Some(Err(e)) => {
                    tracing::debug!(
                        prefix = source.prefix(),
                        "node graph: watch ended at {revision}: {e}"
                    );
                    break;
                }
                None => break,
            }
        }
        // A watch that keeps ending at once must not spin.
        tokio::time::sleep(RETRY).await;
    }
}
