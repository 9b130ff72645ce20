//! API aggregation, as kube-aggregator does it: an `APIService` with
//! `spec.service` hands `/apis/<group>/<version>` and everything below it to
//! an extension API server, over TLS, with the requesting user asserted in
//! front-proxy headers under a client certificate the extension server
//! trusts.
//!
//! # Layout
//!
//! - [`registration`]: the APIServices, read into [`registration::Registration`]s
//!   and indexed by group version, kept current by a watch.
//! - [`backend`]: the extension server's address (an annotation, or the
//!   Endpoints of `spec.service`).
//! - [`tls`]: trusting the extension server (`caBundle`,
//!   `insecureSkipTLSVerify`) and presenting the front-proxy certificate.
//! - [`request_info`]: the authorization attributes of a proxied request,
//!   from its path (RBAC decides before anything is proxied).
//! - [`proxy`]: one request passed on, its answer streamed back.
//! - [`available`]: the controller that keeps each APIService's
//!   `Available` condition and reads the resource lists for discovery.
//! - [`discovery`]: `/apis`, `/apis/<group>` and aggregated discovery with
//!   the aggregated group versions merged in.
//! - [`publish`]: the ConfigMap `kube-system/extension-apiserver-authentication`.
//!
//! The router ([`crate::http::routes`]) asks [`Aggregator::remote`] for each
//! `/apis/<group>/<version>…` request before it resolves a served kind.

pub mod available;
pub mod backend;
pub mod discovery;
pub mod proxy;
pub mod publish;
pub mod registration;
pub mod request_info;
pub mod tls;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::authz::{self, Authorizer};
use crate::error::{ApiError, ServerError};
use crate::http::auth::UserInfo;
use crate::pki::Pki;
use crate::pki::front_proxy::FrontProxy;
use crate::registry::Registry;
use registration::{Index, Registration};

/// The largest aggregated discovery document re-read to merge into.
const MAX_DISCOVERY_DOC: usize = 64 << 20;

/// A TLS configuration and the version of the APIService it was built for.
type TlsFor = (Arc<Registration>, Arc<rustls::ClientConfig>);

/// The aggregator of one API server.
pub struct Aggregator {
    registry: Weak<Registry>,
    /// The APIServices.
    index: Arc<Index>,
    /// The proxy's client certificate and the fallback trust.
    identity: tls::Identity,
    /// Each APIService's TLS configuration, built once per version of it.
    tls: Mutex<BTreeMap<String, TlsFor>>,
    /// The resource lists the availability checks read, by APIService name.
    discovery: RwLock<BTreeMap<String, Value>>,
}

impl Aggregator {
    /// The aggregator of `registry`: the front-proxy certificates under the
    /// PKI directory (created on first start), and its tasks started: the
    /// APIService index, the availability controller, the published
    /// ConfigMap.
    pub fn start(registry: &Arc<Registry>, pki: &Pki) -> Result<Arc<Aggregator>, ServerError> {
        let fp = FrontProxy::load_or_create(&pki.dir)?;
        let identity = tls::Identity::new(&fp.client_cert_pem, &fp.client_key_pem, &pki.ca_pem)
            .map_err(|e| ServerError::Pki(e.to_string()))?;
        let agg = Arc::new(Aggregator {
            registry: Arc::downgrade(registry),
            index: Arc::default(),
            identity,
            tls: Mutex::default(),
            discovery: RwLock::default(),
        });
        tokio::spawn(registration::follow(
            Arc::downgrade(registry),
            agg.index.clone(),
        ));
        tokio::spawn(available::run(agg.clone()));
        publish::start(registry, publish::ours(&pki.ca_pem, &fp.ca_pem));
        Ok(agg)
    }

    /// The APIService that sends `group`/`version` to an extension server.
    pub fn remote(&self, group: &str, version: &str) -> Option<Arc<Registration>> {
        self.index.remote(group, version)
    }

    /// A request for `reg`'s group version (`rest`: the path after
    /// `/apis/<group>/<version>`): authorized here as a resource request
    /// when it names one (discovery paths were authorized as paths), then
    /// passed to the extension server as `user`.
    #[allow(clippy::too_many_arguments)]
    pub async fn serve(
        &self,
        reg: &Registration,
        authorizer: &dyn Authorizer,
        user: &UserInfo,
        rest: &[&str],
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<Response, ApiError> {
        if !rest.is_empty() {
            let q = crate::request::query(uri);
            let a = request_info::attributes(user, method, &reg.group, &reg.version, rest, &q);
            authz::check(authorizer, &a)?;
        }
        // As kube-aggregator: no traffic to a backend its check found down.
        if reg.available != Some(true) {
            return Err(ApiError::Unavailable("service unavailable".into()));
        }
        let registry = self
            .registry
            .upgrade()
            .ok_or_else(|| ApiError::Unavailable("the server is stopping".into()))?;
        let addr = backend::resolve(&registry, reg)
            .await
            .map_err(|u| ApiError::Unavailable(format!("service unavailable: {}", u.message)))?;
        let upstream = self
            .upstream(reg, addr.clone())
            .map_err(|e| ApiError::Unavailable(format!("service unavailable: {e}")))?;
        let path = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
        let req = proxy::request(
            method,
            path,
            proxy::forward_headers(headers, user, &addr),
            body,
        )
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        match upstream.send(req).await {
            Ok(resp) => Ok(proxy::response(resp)),
            Err(e) => {
                tracing::debug!(apiservice = %reg.name, %addr, error = %e, "extension server unreachable");
                Err(ApiError::Unavailable(format!(
                    "error trying to reach service: {e}"
                )))
            }
        }
    }

    /// Where a request for `reg` goes, at `addr`.
    fn upstream(&self, reg: &Registration, addr: String) -> Result<proxy::Upstream, tls::TlsError> {
        let mut cache = self.tls.lock().unwrap_or_else(PoisonError::into_inner);
        let cfg = match cache.get(&reg.name) {
            Some((r, cfg)) if **r == *reg => cfg.clone(),
            _ => {
                let cfg = tls::client_config(&self.identity, reg)?;
                cache.insert(reg.name.clone(), (Arc::new(reg.clone()), cfg.clone()));
                cfg
            }
        };
        Ok(proxy::Upstream {
            addr,
            tls: cfg,
            server_name: tls::server_name(reg),
        })
    }

    fn remember_discovery(&self, name: &str, list: Value) {
        self.discovery
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.to_string(), list);
    }

    fn forget_discovery(&self, name: &str) {
        self.discovery
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(name);
    }

    /// `/apis` with the aggregated groups added.
    pub fn merge_group_list(&self, list: &mut Value) {
        discovery::merge_group_list(list, &self.index.all());
    }

    /// `/apis/<group>`: the served group (`local`), else the aggregated one.
    pub fn group(&self, local: Result<Value, ApiError>, name: &str) -> Result<Value, ApiError> {
        match local {
            Err(ApiError::NoRoute) => {
                discovery::group(&self.index.all(), name).ok_or(ApiError::NoRoute)
            }
            other => other,
        }
    }

    /// Aggregated discovery of `/apis` (`resp`, as served for the local
    /// kinds) with the aggregated groups and their resources added.
    pub async fn merge_aggregated(&self, resp: Response) -> Response {
        let regs = self.index.all();
        if !regs.iter().any(|r| r.is_remote()) {
            return resp;
        }
        let (mut parts, body) = resp.into_parts();
        let Ok(bytes) = axum::body::to_bytes(body, MAX_DISCOVERY_DOC).await else {
            return ApiError::Internal("discovery document too large".into()).into_response();
        };
        let Ok(mut doc) = serde_json::from_slice::<Value>(&bytes) else {
            return Response::from_parts(parts, Body::from(bytes));
        };
        let items = {
            let lists = self
                .discovery
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            discovery::aggregated_items(&regs, &lists)
        };
        discovery::merge_aggregated(&mut doc, items);
        parts.headers.remove(header::CONTENT_LENGTH);
        parts.status = StatusCode::OK;
        Response::from_parts(parts, Body::from(doc.to_string()))
    }
}
