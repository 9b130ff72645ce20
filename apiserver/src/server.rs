//! Serving: HTTPS (rustls; HTTP/1.1 and HTTP/2 by ALPN) with client
//! certificates, the routes outside the resource API (/version, health), the
//! request limits, and the bootstrap of the default namespaces.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Extension, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use keel_store::{Member, Op};
use serde_json::json;
use tokio::sync::Semaphore;

use crate::api::{ApiState, MAX_BODY};
use crate::error::{ApiError, ServerError};
use crate::pki::{Pki, serving_names};

/// Default of [`ApiConfig::max_watches`].
pub const DEFAULT_MAX_WATCHES: usize = 10_000;

/// How the API server is started.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    pub addr: SocketAddr,
    /// Where `pki/` and `kubeconfig` are kept.
    pub data_dir: PathBuf,
    /// Extra names for the serving certificate.
    pub extra_sans: Vec<String>,
    /// Requests served at once (watches excluded) before 429.
    pub max_in_flight: usize,
    /// Watches open at once on this member before 429; they are not counted
    /// in `max_in_flight`, since each one lasts minutes.
    pub max_watches: usize,
    /// Deadline of a non-watch request.
    pub request_timeout: Duration,
}

impl ApiConfig {
    pub fn new(addr: SocketAddr, data_dir: impl Into<PathBuf>) -> ApiConfig {
        ApiConfig {
            addr,
            data_dir: data_dir.into(),
            extra_sans: vec![],
            max_in_flight: 400,
            max_watches: DEFAULT_MAX_WATCHES,
            request_timeout: Duration::from_secs(60),
        }
    }
}

/// Whether the connection presented a client certificate signed by the CA.
#[derive(Clone, Copy, Debug)]
struct Identity {
    authenticated: bool,
}

struct Shared {
    api: Arc<ApiState>,
    metrics: crate::metrics::ApiMetrics,
    in_flight: Semaphore,
    /// One permit per open watch, held until its stream is dropped.
    watches: Arc<Semaphore>,
    timeout: Duration,
}

/// A running API server.
pub struct RunningApi {
    pub addr: SocketAddr,
    pub kubeconfig: PathBuf,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningApi {
    /// Stop accepting connections and end the accept loop.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

fn version() -> serde_json::Value {
    json!({
        "major": "1", "minor": "33",
        "gitVersion": format!("v1.33.0+keel-{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": "", "gitTreeState": "clean", "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "rust", "compiler": "rustc", "platform": format!("{}/{}", std::env::consts::OS, if cfg!(target_arch = "x86_64") { "amd64" } else { std::env::consts::ARCH }),
    })
}

async fn health(State(s): State<Arc<Shared>>, uri: Uri) -> Response {
    let ok = match uri.path() {
        "/readyz" => s.api.member.ready().await,
        _ => s.api.member.raft().metrics().borrow().running_state.is_ok(),
    };
    if ok {
        (StatusCode::OK, "ok").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready").into_response()
    }
}

async fn resource(
    State(s): State<Arc<Shared>>,
    Extension(id): Extension<Identity>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !id.authenticated {
        return ApiError::Unauthorized.into_response();
    }
    let path = uri.path();
    if path == "/openapi/v2" {
        let accept = headers
            .get(axum::http::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let (ct, body) = crate::openapi::v2_document(accept.contains("protobuf"));
        return ([(axum::http::header::CONTENT_TYPE, ct)], body).into_response();
    }
    if path == "/openapi/v3" {
        return axum::Json(crate::openapi::served_index()).into_response();
    }
    if let Some(gv) = path.strip_prefix("/openapi/v3/") {
        return match crate::openapi::served_document(gv) {
            Some(doc) => axum::Json(doc).into_response(),
            None => ApiError::NoRoute.into_response(),
        };
    }
    if path == "/metrics" {
        let text = format!("{}{}", s.metrics.render(), s.api.member.render_metrics());
        return (
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4",
            )],
            text,
        )
            .into_response();
    }
    if !(path == "/api"
        || path.starts_with("/api/")
        || path == "/apis"
        || path.starts_with("/apis/"))
    {
        return ApiError::NoRoute.into_response();
    }
    let watch = method == Method::GET && is_watch(&uri);
    let (verb, resource) = crate::metrics::classify(method.as_str(), path, watch);
    let started = std::time::Instant::now();
    let mut watch_permit = None;
    let resp = if watch {
        match s.watches.clone().try_acquire_owned() {
            Err(_) => ApiError::TooManyRequests.into_response(),
            Ok(permit) => {
                watch_permit = Some(permit);
                s.metrics
                    .watches_total
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                s.api.clone().handle(method, uri, headers, body).await
            }
        }
    } else {
        match s.in_flight.try_acquire() {
            Err(_) => ApiError::TooManyRequests.into_response(),
            Ok(_permit) => match tokio::time::timeout(
                s.timeout,
                s.api.clone().handle(method, uri, headers, body),
            )
            .await
            {
                Ok(r) => r,
                Err(_) => ApiError::Timeout(s.timeout.as_secs()).into_response(),
            },
        }
    };
    s.metrics
        .observe(verb, &resource, resp.status().as_u16(), started.elapsed());
    if let Some(permit) = watch_permit
        && resp.status().is_success()
    {
        // Counted open, and holding its slot, until the stream body is dropped.
        let guard = WatchGuard {
            shared: s.clone(),
            _slot: permit,
        };
        s.metrics
            .watches_open
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (parts, body) = resp.into_parts();
        let stream =
            futures::stream::unfold((body.into_data_stream(), guard), |(mut b, g)| async move {
                use futures::StreamExt;
                b.next().await.map(|item| (item, (b, g)))
            });
        return Response::from_parts(parts, axum::body::Body::from_stream(stream));
    }
    resp
}

/// Whether the query asks for a watch, decoded as the router decodes it
/// (percent-decoding, the last of repeated keys), so that no request is
/// served as a watch while it is counted as a plain one, or the reverse.
fn is_watch(uri: &Uri) -> bool {
    axum::extract::Query::<Vec<(String, String)>>::try_from_uri(uri).is_ok_and(|q| {
        q.0.iter()
            .rev()
            .find(|(k, _)| k == "watch")
            .is_some_and(|(_, v)| v == "true" || v == "1")
    })
}

/// Decrements the open-watch gauge and frees the watch's slot when its
/// stream ends.
struct WatchGuard {
    shared: Arc<Shared>,
    _slot: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.shared
            .metrics
            .watches_open
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Create the default namespaces once a leader exists (idempotent).
async fn bootstrap_namespaces(member: Arc<Member>) {
    let ns_type = crate::kinds::all()
        .iter()
        .find(|t| t.plural == "namespaces")
        .expect("namespaces are served");
    for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        loop {
            let mut obj =
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
            obj["metadata"]["uid"] = json!(crate::meta::new_uid());
            obj["metadata"]["creationTimestamp"] =
                json!(crate::meta::rfc3339(crate::meta::now_secs()));
            ns_type.strategy.prepare_create(&mut obj);
            let uid = obj["metadata"]["uid"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            match member
                .txn(vec![
                    Op::create(ns_type.key(None, name), obj.to_string().into_bytes()).with_uid(uid),
                ])
                .await
            {
                Ok(_) | Err(keel_store::StoreError::Precondition(_)) => break,
                Err(e) if e.is_retryable() => tokio::time::sleep(Duration::from_millis(200)).await,
                Err(e) => {
                    tracing::warn!(namespace = name, error = %e, "cannot create a default namespace");
                    break;
                }
            }
        }
    }
}

/// Start serving the Kubernetes API for `member` and write the kubeconfig.
pub async fn start(cfg: ApiConfig, member: Arc<Member>) -> Result<RunningApi, ServerError> {
    let listener = tokio::net::TcpListener::bind(cfg.addr)
        .await
        .map_err(|source| ServerError::Bind {
            addr: cfg.addr.to_string(),
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ServerError::Bind {
        addr: cfg.addr.to_string(),
        source,
    })?;
    let host = if addr.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        addr.ip().to_string()
    };
    let mut sans = vec![host.clone()];
    sans.extend(cfg.extra_sans.iter().cloned());
    let pki = Pki::load_or_create(&cfg.data_dir.join("pki"), &serving_names(&sans))?;
    let kubeconfig = cfg.data_dir.join("kubeconfig");
    // It embeds the admin key: private like the key files.
    pki.write_kubeconfig(&kubeconfig, &format!("https://{host}:{}", addr.port()))?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(pki.server_config()?));
    let shared = Arc::new(Shared {
        api: Arc::new(ApiState::new(member.clone())),
        metrics: Default::default(),
        in_flight: Semaphore::new(cfg.max_in_flight),
        watches: Arc::new(Semaphore::new(cfg.max_watches.min(Semaphore::MAX_PERMITS))),
        timeout: cfg.request_timeout,
    });
    let app = axum::Router::new()
        .route(
            "/version",
            axum::routing::get(|| async { axum::Json(version()) }),
        )
        .route("/healthz", axum::routing::get(health))
        .route("/livez", axum::routing::get(health))
        .route("/readyz", axum::routing::get(health))
        .fallback(resource)
        .layer(DefaultBodyLimit::max(MAX_BODY * 2))
        .with_state(shared);
    tokio::spawn(bootstrap_namespaces(member));
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(async move {
        loop {
            let (tcp, peer) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        continue;
                    }
                },
                _ = stopped.changed() => return,
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let app = app.clone();
            tokio::spawn(async move {
                let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp))
                    .await
                {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => return,
                };
                let authenticated = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .is_some_and(|c| !c.is_empty());
                let svc = hyper_util::service::TowerToHyperService::new(
                    app.layer(Extension(Identity { authenticated })),
                );
                if let Err(e) = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(tls), svc)
                    .await
                {
                    tracing::debug!(%peer, error = %e, "connection ended");
                }
            });
        }
    });
    tracing::info!(%addr, kubeconfig = %kubeconfig.display(), "Kubernetes API serving");
    Ok(RunningApi {
        addr,
        kubeconfig,
        stop,
        task,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watches_are_recognised_as_the_router_decodes_them() {
        let w = |q: &str| is_watch(&format!("/api/v1/pods?{q}").parse::<Uri>().unwrap());
        assert!(w("watch=1") && w("watch=true") && w("limit=1&watch=%74rue"));
        assert!(w("watch=false&watch=1"));
        assert!(!w("watch=1&watch=false") && !w("watch=0") && !w("watchx=1"));
        assert!(!is_watch(&"/api/v1/pods".parse::<Uri>().unwrap()));
    }
}
