//! Authentication as an HTTP layer: who made a request. The TLS handshake
//! verifies a client certificate against the cluster CA; [`authenticate`]
//! runs the authenticator chain ([`crate::authn`]: that certificate, else a
//! bearer token, else anonymous when enabled) and inserts the request's
//! [`UserInfo`] as a request extension for the chain that follows
//! (authorization and admission read it there). A bearer token that
//! authenticates nobody is a 401 here; a request with no user at all is
//! refused by [`require_user`] where one is needed.

use std::collections::BTreeMap;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rustls::pki_types::CertificateDer;

use super::AppState;
use crate::error::ApiError;

/// An authenticated user, as Kubernetes' `user.Info`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    /// Stable across renames where the authenticator knows one (a
    /// ServiceAccount's uid, the token file's uid column); else empty.
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    /// Who the store's events name for this user's writes: the name and the
    /// groups (the uid and extra stay in the audit log; a name is what RBAC
    /// and history are read by).
    pub fn actor(&self) -> keel_store::Actor {
        keel_store::Actor {
            user: self.name.clone(),
            groups: self.groups.clone(),
        }
    }

    /// The user of a client certificate chain the handshake verified: CN →
    /// name, each O → a group. A certificate whose subject does not parse
    /// still proved its signature, so it is a user, with no name.
    pub fn from_certificates(chain: &[CertificateDer<'_>]) -> Option<UserInfo> {
        let leaf = chain.first()?;
        let mut user = UserInfo::default();
        match keel_store::grpc::tls::subject(leaf.as_ref()) {
            Ok((name, groups)) => {
                user.name = name;
                user.groups = groups;
            }
            Err(e) => tracing::debug!(error = %e, "client certificate subject does not parse"),
        }
        Some(user)
    }
}

/// What a connection's TLS handshake proved, attached to every request
/// that comes over it.
#[derive(Clone, Debug, Default)]
pub struct Connection {
    /// The user of the verified client certificate; `None` without one.
    pub certificate_user: Option<UserInfo>,
}

/// The authentication layer: inserts the request's [`UserInfo`], when it
/// has one, for the handlers and layers after it; a bad bearer token is a
/// 401 `Status`.
pub async fn authenticate(State(s): State<AppState>, mut req: Request, next: Next) -> Response {
    let certificate_user = req
        .extensions()
        .get::<Connection>()
        .and_then(|c| c.certificate_user.clone());
    let authn = s.registry.authenticator();
    match authn
        .authenticate(certificate_user, req.headers(), &s.registry)
        .await
    {
        Ok(Some(user)) => {
            req.extensions_mut().insert(user);
        }
        Ok(None) => {}
        Err(e) => return e.into_response(),
    }
    next.run(req).await
}

/// Refuses an anonymous request with a 401 `Status`.
pub async fn require_user(req: Request, next: Next) -> Response {
    if req.extensions().get::<UserInfo>().is_none() {
        return ApiError::Unauthorized.into_response();
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_names_the_user_and_its_groups() {
        let dir = tempfile::tempdir().unwrap();
        let pki =
            crate::pki::Pki::load_or_create(dir.path(), &crate::pki::serving_names(&[])).unwrap();
        let der = rustls::pki_types::pem::PemObject::from_pem_slice(pki.admin_cert_pem.as_bytes())
            .unwrap();
        let user = UserInfo::from_certificates(&[der]).unwrap();
        assert_eq!(user.name, "admin");
        assert_eq!(user.groups, vec!["system:masters".to_string()]);
        assert!(user.extra.is_empty());
        assert_eq!(UserInfo::from_certificates(&[]), None);
    }
}
