//! Feeds the [`Index`] from the storage's watch stream: one task per RBAC
//! kind lists its prefix once, then watches from that revision and resumes
//! where it left off after an error; only a resume the store can no longer
//! serve (compacted) lists again. The registry's storage is the watch
//! cache, so this costs no store read per request and one cached watch per
//! kind.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use super::index::{Index, PREFIX};
use crate::registry::storage::{RangeRequest, Storage, StorageError, WatchMessage};

/// The four kinds' plurals, each under its own prefix.
pub const PLURALS: [&str; 4] = [
    "roles",
    "clusterroles",
    "rolebindings",
    "clusterrolebindings",
];

/// Pause after a failed list or watch (no leader yet, a watch cut off).
const RETRY: Duration = Duration::from_millis(200);

/// Keep `index` current from `storage` until the storage stops running.
pub fn spawn(storage: Arc<dyn Storage>, index: Arc<Index>) {
    for plural in PLURALS {
        tokio::spawn(feed(storage.clone(), index.clone(), plural));
    }
}

async fn feed(storage: Arc<dyn Storage>, index: Arc<Index>, plural: &'static str) {
    let prefix = format!("{PREFIX}{plural}/");
    let mut at: Option<u64> = None;
    while storage.is_running() {
        let after = match at {
            Some(rev) => rev,
            None => match storage.list(RangeRequest::prefix(prefix.clone())).await {
                Ok(r) => {
                    index.replace_all(
                        plural,
                        r.kvs
                            .iter()
                            .map(|kv| (kv.key.as_str(), kv.value.as_slice())),
                        r.revision,
                    );
                    r.revision
                }
                Err(e) => {
                    tracing::debug!(%prefix, error = %e, "RBAC index: list failed, retrying");
                    tokio::time::sleep(RETRY).await;
                    continue;
                }
            },
        };
        at = Some(after);
        let mut stream = match storage.watch(&prefix, after).await {
            Ok(s) => s,
            Err(e) => {
                if matches!(
                    e,
                    StorageError::Compacted { .. } | StorageError::FutureRevision { .. }
                ) {
                    at = None;
                }
                tracing::debug!(%prefix, error = %e, "RBAC index: watch failed, retrying");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        while let Some(msg) = stream.next().await {
            match msg {
                Ok(WatchMessage::Events { revision, events }) => {
                    index.apply_changes(
                        events.iter().map(|e| {
                            (
                                e.key.as_str(),
                                e.value.as_ref().map(|kv| kv.value.as_slice()),
                            )
                        }),
                        revision,
                    );
                    at = Some(revision);
                }
                Ok(WatchMessage::Progress { revision }) => at = Some(revision.max(after)),
                Err(e) => {
                    if matches!(e, StorageError::Compacted { .. }) {
                        at = None;
                    }
                    tracing::debug!(%prefix, error = %e, "RBAC index: watch ended, resuming");
                    break;
                }
            }
        }
        tokio::time::sleep(RETRY).await;
    }
}
