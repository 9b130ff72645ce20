//! The HTTP layer: the listener, TLS and request limits ([`server`]), the
//! one router ([`routes`]), who made each request ([`auth`]), acting as
//! another user ([`impersonate`]) and health ([`health`]). Everything below the router is HTTP-agnostic in intent:
//! a [`crate::request::RequestTarget`] and a verb, run by the
//! [`crate::registry::Registry`].

pub mod auth;
pub mod health;
pub mod impersonate;
pub mod routes;
pub mod server;

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::FromRef;
use axum::response::Response;

/// The request types of [`InProcess::handle`], for callers that drive the
/// API without a socket (the fuzz harness).
pub use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};

pub use auth::UserInfo;

use crate::registry::Registry;
use crate::registry::storage::Storage;

/// What every handler and layer of the router shares.
#[derive(Clone)]
pub struct AppState {
    pub registry: Arc<Registry>,
    pub metrics: Arc<crate::metrics::ApiMetrics>,
    pub limits: Arc<server::Limits>,
    /// Who may do what ([`crate::authz`]): a chain, built by [`server::start`].
    pub authorizer: Arc<dyn crate::authz::Authorizer>,
    /// The RBAC index, for SelfSubjectRulesReview (`None` without RBAC).
    pub rbac: Option<Arc<crate::authz::rbac::Rbac>>,
    /// The audit log, when one is written ([`crate::audit`]).
    pub audit: Option<Arc<crate::audit::AuditLog>>,
    /// API aggregation ([`crate::aggregator`]); `None` without the server's tasks.
    pub aggregator: Option<Arc<crate::aggregator::Aggregator>>,
}

/// Health reports on the registry's storage.
impl FromRef<AppState> for Arc<dyn Storage> {
    fn from_ref(s: &AppState) -> Arc<dyn Storage> {
        s.registry.storage.clone()
    }
}

/// The API server's whole request chain (routing, authentication, limits,
/// the registry) without a socket or TLS, every request made by one user:
/// how the fuzz harness drives the server.
#[derive(Clone)]
pub struct InProcess {
    registry: Arc<Registry>,
    service: hyper_util::service::TowerToHyperService<axum::Router>,
    user: UserInfo,
}

impl InProcess {
    /// Requests as `user`, with the default limits of [`server::ApiConfig`].
    pub fn new(registry: Arc<Registry>, user: UserInfo) -> InProcess {
        let defaults = server::ApiConfig::new(([127, 0, 0, 1], 0).into(), "");
        let state = AppState {
            registry: registry.clone(),
            metrics: Arc::default(),
            limits: Arc::new(server::Limits::new(&defaults)),
            // Without the server's RBAC tasks, only `system:masters` users
            // are allowed anything (the fuzz harness runs as one).
            authorizer: Arc::new(crate::authz::Chain(vec![Arc::new(
                crate::authz::rbac::PrivilegedGroup,
            )])),
            rbac: None,
            audit: None,
            aggregator: None,
        };
        InProcess {
            registry,
            service: hyper_util::service::TowerToHyperService::new(routes::router(state)),
            user,
        }
    }

    /// The registry the requests go to.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// One request; its response, whose body may still be streaming (a watch).
    pub async fn handle(
        &self,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> Response {
        let mut req = axum::http::Request::new(Body::from(body));
        *req.method_mut() = method;
        *req.uri_mut() = uri;
        *req.headers_mut() = headers;
        req.extensions_mut().insert(auth::Connection {
            certificate_user: Some(self.user.clone()),
        });
        match hyper::service::Service::call(&self.service, req).await {
            Ok(r) => r,
            Err(never) => match never {},
        }
    }
}
