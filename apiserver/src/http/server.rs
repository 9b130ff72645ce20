//! Serving: the listener, HTTPS (rustls; HTTP/1.1 and HTTP/2 by ALPN) with
//! client certificates, the request limits, and the bootstrap of the default
//! namespaces.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Extension, Request, State};
use axum::http::{Method, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use keel_store::Member;
use serde_json::json;
use tokio::sync::Semaphore;

use super::auth::{Connection, UserInfo};
use super::{AppState, routes};
use crate::error::{ApiError, ServerError};
use crate::metrics::ApiMetrics;
use crate::pki::{Pki, serving_names};
use crate::registry::Registry;
use crate::request::RequestTarget;

/// Default of [`ApiConfig::max_watches`].
pub const DEFAULT_MAX_WATCHES: usize = 10_000;

/// Streams a client may reset before the server accepted them, per HTTP/2
/// connection, before the connection is closed (hyper's default of 20 is
/// its guard against "rapid reset" floods). A client that gives up on
/// requests to a busy server resets them: kube-rs controllers passed 20,
/// lost the connection and every watch on it, and listed everything again.
/// Still bounded, so a flood of resets ends the connection.
const API_RESET_STREAMS: usize = 1024;

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
    /// The `EncryptionConfiguration` file (`--encryption-provider-config`);
    /// `None`: `<data_dir>/pki/encryption-config.yaml`, written on first
    /// start ([`crate::encryption::default`]).
    pub encryption_provider_config: Option<PathBuf>,
    /// Token file, anonymous requests, ServiceAccount token issuer and
    /// audiences ([`crate::authn`]).
    pub authn: crate::authn::AuthnConfig,
    /// Where the audit log is written (`--audit-log-path`); `None`: no
    /// audit log ([`crate::audit`]).
    pub audit_log_path: Option<PathBuf>,
    /// Where Services get cluster IPs and node ports
    /// (`--service-cluster-ip-range`, `--service-node-port-range`).
    pub service_network: crate::registry::services::range::ServiceNetwork,
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
            encryption_provider_config: None,
            authn: crate::authn::AuthnConfig::default(),
            audit_log_path: None,
            service_network: Default::default(),
        }
    }
}

/// The user the controller manager authenticates as, bound to Kubernetes'
/// `system:kube-controller-manager` ClusterRole.
pub const CONTROLLER_MANAGER_USER: &str = "system:kube-controller-manager";

/// Write a private kubeconfig for `user` (a client certificate issued now by
/// the cluster CA under `pki.dir`) against `server`.
fn write_user_kubeconfig(
    pki: &Pki,
    path: &std::path::Path,
    server: &str,
    user: &str,
) -> Result<(), ServerError> {
    let issued = crate::pki::Ca::load(&pki.dir)?.issue_user(user, &[])?;
    crate::pki::write_private(
        path,
        crate::pki::kubeconfig(server, &pki.ca_pem, user, &issued).as_bytes(),
    )
}

/// A running API server.
pub struct RunningApi {
    pub addr: SocketAddr,
    pub kubeconfig: PathBuf,
    /// A kubeconfig for `system:kube-controller-manager` (the controller
    /// manager's own identity: the lease, service accounts and their tokens).
    pub controller_manager_kubeconfig: PathBuf,
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

/// The request limits: requests served at once, watches open at once,
/// and the deadline of a request that is not a watch.
pub struct Limits {
    in_flight: Semaphore,
    /// One permit per open watch, held until its stream is dropped.
    watches: Arc<Semaphore>,
    timeout: Duration,
}

impl Limits {
    pub fn new(cfg: &ApiConfig) -> Limits {
        Limits {
            in_flight: Semaphore::new(cfg.max_in_flight),
            watches: Arc::new(Semaphore::new(cfg.max_watches.min(Semaphore::MAX_PERMITS))),
            timeout: cfg.request_timeout,
        }
    }
}

/// The limits layer of `/api` and `/apis`: a request beyond a limit is a
/// 429, one past its deadline a 504; each is counted in the metrics, and an
/// open watch holds its slot (and counts as open) until its stream ends.
pub async fn limits(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let watch = method == Method::GET && is_watch(req.uri());
    let (verb, resource) =
        crate::metrics::classify(&s.registry.kinds, method.as_str(), req.uri().path(), watch);
    let started = std::time::Instant::now();
    let mut watch_permit = None;
    let resp = if watch {
        match s.limits.watches.clone().try_acquire_owned() {
            Err(_) => ApiError::TooManyRequests.into_response(),
            Ok(permit) => {
                watch_permit = Some(permit);
                s.metrics.watches_total.fetch_add(1, Ordering::Relaxed);
                next.run(req).await
            }
        }
    } else {
        match s.limits.in_flight.try_acquire() {
            Err(_) => ApiError::TooManyRequests.into_response(),
            Ok(_permit) => match tokio::time::timeout(s.limits.timeout, next.run(req)).await {
                Ok(r) => r,
                Err(_) => ApiError::Timeout(s.limits.timeout.as_secs()).into_response(),
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
            metrics: s.metrics.clone(),
            _slot: permit,
        };
        s.metrics.watches_open.fetch_add(1, Ordering::Relaxed);
        let (parts, body) = resp.into_parts();
        let stream = body.into_data_stream().map(move |item| {
            let _ = &guard;
            item
        });
        return Response::from_parts(parts, Body::from_stream(stream));
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
    metrics: Arc<ApiMetrics>,
    _slot: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.metrics.watches_open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Create the default namespaces once a leader exists (idempotent),
/// through the registry's create.
async fn bootstrap_namespaces(registry: Arc<Registry>) {
    let ns_type = registry
        .kinds
        .find("", "v1", "namespaces")
        .expect("namespaces are served");
    let target = RequestTarget {
        rt: ns_type,
        namespace: None,
        name: None,
        subresource: None,
    };
    let apiserver = UserInfo {
        name: "system:apiserver".into(),
        groups: vec!["system:masters".into()],
        ..UserInfo::default()
    };
    for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        loop {
            let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
            match registry
                .create_object(&target, obj, false, &apiserver)
                .await
            {
                Ok(_) | Err(ApiError::AlreadyExists { .. }) => break,
                // No leader yet, or the write's outcome is unknown (then the
                // next attempt finds it exists).
                Err(ApiError::Unavailable(_) | ApiError::StoreTimeout(_)) => {
                    tokio::time::sleep(Duration::from_millis(200)).await
                }
                Err(e) => {
                    tracing::warn!(namespace = name, error = %e, "cannot create a default namespace");
                    break;
                }
            }
        }
    }
    bootstrap_priority_classes(&registry, &apiserver).await;
}

/// Create the system priority classes every Kubernetes cluster has
/// (idempotent; a leader exists once the namespaces are created).
async fn bootstrap_priority_classes(registry: &Registry, apiserver: &UserInfo) {
    let Some(rt) = registry
        .kinds
        .find("scheduling.k8s.io", "v1", "priorityclasses")
    else {
        return;
    };
    let target = RequestTarget {
        rt,
        namespace: None,
        name: None,
        subresource: None,
    };
    for obj in crate::kinds::scheduling::system_classes() {
        for _ in 0..50 {
            match registry
                .create_object(&target, obj.clone(), false, apiserver)
                .await
            {
                Err(ApiError::Unavailable(_) | ApiError::StoreTimeout(_)) => {
                    tokio::time::sleep(Duration::from_millis(200)).await
                }
                Ok(_) | Err(ApiError::AlreadyExists { .. }) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot create a system priority class");
                    break;
                }
            }
        }
    }
}

/// The member's storage behind encryption at rest ([`crate::encryption`]),
/// after the PKI exists (the default key derives from the CA key).
fn encrypted_storage(
    cfg: &ApiConfig,
    member: Arc<Member>,
) -> Result<Arc<dyn crate::registry::storage::Storage>, ServerError> {
    use crate::encryption::{EncryptedStorage, Encryption};
    let enc = Encryption::load(cfg.encryption_provider_config.as_deref(), &cfg.data_dir)
        .map_err(ServerError::Encryption)?;
    tracing::info!(file = %enc.source.display(), encrypted = ?enc.summary(), "encryption at rest");
    let member = Arc::new(crate::registry::storage::MemberStorage::new(member));
    Ok(Arc::new(EncryptedStorage::new(member, Arc::new(enc))))
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
    let controller_manager_kubeconfig = cfg.data_dir.join("controller-manager.kubeconfig");
    write_user_kubeconfig(
        &pki,
        &controller_manager_kubeconfig,
        &format!("https://{host}:{}", addr.port()),
        CONTROLLER_MANAGER_USER,
    )?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(pki.server_config()?));
    let registry = Arc::new(Registry::serving(encrypted_storage(&cfg, member)?));
    // Authorization: the `system:masters` bypass, then RBAC (its index,
    // aggregation and default policy run as tasks). The Node authorizer
    // goes at the front of `authorizers`, its NodeRestriction admission
    // plugin beside the escalation check.
    let rbac = crate::authz::rbac::Rbac::start(&registry);
    // Serves the stored CRDs' kinds (all of them after a restart) and keeps
    // their status.
    crate::crd::start(&registry);
    let node_graph = crate::authz::node::start(registry.storage.clone());
    registry.add_admission(Arc::new(crate::authz::node::NodeRestriction::new(
        node_graph.clone(),
    )));
    let authorizers: Vec<Arc<dyn crate::authz::Authorizer>> = vec![
        Arc::new(crate::authz::node::NodeAuthorizer::new(node_graph)),
        Arc::new(crate::authz::rbac::PrivilegedGroup),
        rbac.clone(),
    ];
    let authorizer: Arc<dyn crate::authz::Authorizer> = Arc::new(crate::authz::Chain(authorizers));
    registry.add_admission(Arc::new(crate::authz::rbac::Escalation::new(
        rbac.index().clone(),
        authorizer.clone(),
    )));
    let audit = match &cfg.audit_log_path {
        Some(path) => Some(crate::audit::AuditLog::open(path).await?),
        None => None,
    };
    let aggregator = crate::aggregator::Aggregator::start(&registry, &pki)?;
    let app = routes::router(AppState {
        registry: registry.clone(),
        metrics: Arc::default(),
        limits: Arc::new(Limits::new(&cfg)),
        authorizer,
        rbac: Some(rbac),
        audit,
        aggregator: Some(aggregator),
    });
    // ServiceAccount tokens are signed with a key derived from the CA's,
    // which every member of the cluster shares.
    let authn = crate::authn::Authenticator::load(&cfg.authn, &pki.dir.join("ca.key"))?;
    registry.set_authenticator(Arc::new(authn));
    registry.set_service_network(cfg.service_network.clone());
    tokio::spawn(crate::authn::default_service_account::run(Arc::downgrade(
        &registry,
    )));
    tokio::spawn(bootstrap_namespaces(registry));
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
                // Verified against the CA by the handshake; parsed once per connection.
                let certificate_user = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(UserInfo::from_certificates);
                let svc = hyper_util::service::TowerToHyperService::new(
                    app.layer(Extension(Connection { certificate_user }))
                        .layer(Extension(axum::extract::ConnectInfo(peer))),
                );
                let mut builder =
                    hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                builder
                    .http2()
                    .max_pending_accept_reset_streams(API_RESET_STREAMS);
                if let Err(e) = builder
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
        controller_manager_kubeconfig,
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
