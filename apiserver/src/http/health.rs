//! Health, served once for the API and for `keel server --http-addr`:
//! `/livez` and `/healthz` (Raft is running on this member) and `/readyz`
//! (it can serve linearizable reads). Served without authentication, as
//! Kubernetes serves them to load balancers and probes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use keel_store::Member;

use crate::registry::storage::{MemberStorage, Storage};

/// Whether `storage` passes the check at `path` (`/readyz`, or `/livez` and
/// `/healthz`).
pub async fn probe(storage: &dyn Storage, path: &str) -> bool {
    match path {
        "/readyz" => storage.ready().await,
        _ => storage.is_running(),
    }
}

/// The three health routes, for any router whose state gives the storage.
pub fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Arc<dyn Storage>: axum::extract::FromRef<S>,
{
    Router::new()
        .route("/healthz", get(health))
        .route("/livez", get(health))
        .route("/readyz", get(health))
}

/// The health routes alone, over `member`, for a process that serves more
/// than the store: `/readyz` also waits for `started` (the API listening and
/// its kubeconfig written), as Kubernetes' readyz waits for post-start hooks.
pub fn router(member: Arc<Member>, started: Arc<AtomicBool>) -> Router {
    let storage: Arc<dyn Storage> = Arc::new(MemberStorage::new(member));
    let ready = move |State(storage): State<Arc<dyn Storage>>, uri: Uri| {
        let started = started.clone();
        async move {
            if started.load(Ordering::Acquire) {
                health(State(storage), uri).await
            } else {
                (StatusCode::SERVICE_UNAVAILABLE, "not ready: starting").into_response()
            }
        }
    };
    Router::new()
        .route("/healthz", get(health))
        .route("/livez", get(health))
        .route("/readyz", get(ready))
        .with_state(storage)
}

async fn health(State(storage): State<Arc<dyn Storage>>, uri: Uri) -> Response {
    if probe(&*storage, uri.path()).await {
        (StatusCode::OK, "ok").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready").into_response()
    }
}
