//! Authentication: who made a request, as kube-apiserver's authenticator
//! chain decides it. In order: the client certificate the TLS handshake
//! verified (CN = user, O = groups), then a bearer token, which is either a
//! token from the static token file ([`token_file`]) or a ServiceAccount
//! JWT ([`service_account`], [`jwt`]). Every authenticated user is also in
//! `system:authenticated`. A bearer token that matches nothing is a 401,
//! never an anonymous request; a request with no credentials is anonymous
//! (`system:anonymous`, `system:unauthenticated`) only with
//! `--anonymous-auth`, and otherwise has no user (refused with 401 by
//! `http::auth::require_user`).
//!
//! Also here: the `authentication.k8s.io` reviews ([`review`]; their
//! protobuf bodies decode in [`crate::registry::protobuf`]), and the default
//! ServiceAccount of every namespace ([`default_service_account`]).

pub mod default_service_account;
pub mod jwt;
pub mod review;
pub mod service_account;
pub mod token_file;
pub mod verified;

use std::path::PathBuf;

use axum::http::{HeaderMap, header};

pub use service_account::ServiceAccountTokens;
pub use token_file::TokenFile;

use crate::error::ApiError;
use crate::http::auth::UserInfo;
use crate::registry::Registry;

/// The API group of the reviews and the TokenRequest.
pub const GROUP: &str = "authentication.k8s.io";

/// The group of every authenticated user.
pub const AUTHENTICATED: &str = "system:authenticated";
/// The anonymous user and its group (`--anonymous-auth`).
pub const ANONYMOUS: &str = "system:anonymous";
pub const UNAUTHENTICATED: &str = "system:unauthenticated";

/// Why authentication cannot start.
#[derive(Debug, thiserror::Error)]
pub enum AuthnError {
    #[error("token file {file}, line {line}: {reason}")]
    TokenFile {
        file: String,
        line: usize,
        reason: String,
    },
    #[error("token file {file}: {source}")]
    ReadTokenFile {
        file: String,
        source: std::io::Error,
    },
    #[error("service account signing key from {file}: {reason}")]
    SigningKey { file: String, reason: String },
}

/// How requests are authenticated (the `keel server` flags).
#[derive(Clone, Debug)]
pub struct AuthnConfig {
    /// `--token-auth-file`: static bearer tokens (Kubernetes' CSV format).
    pub token_auth_file: Option<PathBuf>,
    /// `--anonymous-auth`: requests without credentials are `system:anonymous`.
    pub anonymous_auth: bool,
    /// `--service-account-issuer`: the `iss` of ServiceAccount tokens.
    pub service_account_issuer: String,
    /// `--api-audiences`: audiences a token must carry one of (default the issuer).
    pub api_audiences: Vec<String>,
}

impl Default for AuthnConfig {
    fn default() -> AuthnConfig {
        AuthnConfig {
            token_auth_file: None,
            anonymous_auth: false,
            service_account_issuer: service_account::DEFAULT_ISSUER.into(),
            api_audiences: vec![],
        }
    }
}

/// The authenticator chain (module documentation).
pub struct Authenticator {
    tokens: TokenFile,
    service_accounts: ServiceAccountTokens,
    anonymous: bool,
}

impl Authenticator {
    pub fn new(
        tokens: TokenFile,
        service_accounts: ServiceAccountTokens,
        anonymous: bool,
    ) -> Authenticator {
        Authenticator {
            tokens,
            service_accounts,
            anonymous,
        }
    }

    /// The chain of `cfg`, ServiceAccount tokens signed with the key derived
    /// from the cluster CA's private key (the PEM file `ca_key_file`).
    pub fn load(
        cfg: &AuthnConfig,
        ca_key_file: &std::path::Path,
    ) -> Result<Authenticator, AuthnError> {
        let tokens = match &cfg.token_auth_file {
            Some(path) => TokenFile::load(path)?,
            None => TokenFile::default(),
        };
        let key_err = |reason: String| AuthnError::SigningKey {
            file: ca_key_file.display().to_string(),
            reason,
        };
        let pem = std::fs::read_to_string(ca_key_file).map_err(|e| key_err(e.to_string()))?;
        // The key's canonical PKCS#8 DER, so that members holding the same
        // key in another PEM layout still derive the same signing key.
        let der = rcgen::KeyPair::from_pem(&pem)
            .map_err(|e| key_err(e.to_string()))?
            .serialize_der();
        let key = jwt::SigningKey::from_ca_key(&der);
        Ok(Authenticator::new(
            tokens,
            ServiceAccountTokens::new(key, &cfg.service_account_issuer, &cfg.api_audiences),
            cfg.anonymous_auth,
        ))
    }

    /// Client certificates only, with a random ServiceAccount key: a
    /// registry the server did not configure (in-process tests).
    pub fn x509_only() -> Authenticator {
        Authenticator::new(
            TokenFile::default(),
            ServiceAccountTokens::new(
                jwt::SigningKey::random(),
                service_account::DEFAULT_ISSUER,
                &[],
            ),
            false,
        )
    }

    pub fn service_accounts(&self) -> &ServiceAccountTokens {
        &self.service_accounts
    }

    /// The user of a request: `certificate_user` (what the TLS handshake
    /// proved), else its bearer token, else anonymous when enabled.
    /// `Ok(None)`: no credentials and anonymous requests disabled. A bearer
    /// token that authenticates nobody is `Unauthorized`.
    pub async fn authenticate(
        &self,
        certificate_user: Option<UserInfo>,
        headers: &HeaderMap,
        registry: &Registry,
    ) -> Result<Option<UserInfo>, ApiError> {
        if let Some(user) = certificate_user {
            return Ok(Some(authenticated(user)));
        }
        if let Some(token) = bearer_token(headers) {
            return match self.token(token, registry, None).await {
                Ok((user, _)) => Ok(Some(user)),
                Err(why) => {
                    tracing::debug!(reason = %why, "bearer token refused");
                    Err(ApiError::Unauthorized)
                }
            };
        }
        Ok(self.anonymous.then(|| UserInfo {
            name: ANONYMOUS.into(),
            groups: vec![UNAUTHENTICATED.into()],
            ..UserInfo::default()
        }))
    }

    /// The user of a bearer token and the audiences it matched (`audiences`,
    /// or the API's when `None`), or why it authenticates nobody. Static
    /// tokens carry no audience: they are valid for the API's.
    pub async fn token(
        &self,
        token: &str,
        registry: &Registry,
        audiences: Option<&[String]>,
    ) -> Result<(UserInfo, Vec<String>), String> {
        if let Some(user) = self.tokens.user(token) {
            let api = self.service_accounts.audiences();
            let matched: Vec<String> = match audiences {
                None => api.to_vec(),
                Some(asked) => asked.iter().filter(|a| api.contains(a)).cloned().collect(),
            };
            if matched.is_empty() {
                return Err("a static token is valid only for the API's audiences".into());
            }
            return Ok((authenticated(user.clone()), matched));
        }
        if token.split('.').count() == 3 {
            let (user, matched) = self
                .service_accounts
                .authenticate(token, registry, audiences)
                .await?;
            return Ok((authenticated(user), matched));
        }
        Err("not a known token".into())
    }
}

/// `user`, in `system:authenticated`.
pub fn authenticated(mut user: UserInfo) -> UserInfo {
    if !user.groups.iter().any(|g| g == AUTHENTICATED) {
        user.groups.push(AUTHENTICATED.into());
    }
    user
}

/// The token of an `Authorization: Bearer <token>` header; an empty one
/// counts as none, as in Kubernetes.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(auth).unwrap());
        h
    }

    #[test]
    fn bearer_tokens_are_read_from_the_header() {
        assert_eq!(bearer_token(&headers("Bearer abc")), Some("abc"));
        assert_eq!(bearer_token(&headers("bearer  abc ")), Some("abc"));
        assert_eq!(bearer_token(&headers("Bearer ")), None);
        assert_eq!(bearer_token(&headers("Basic abc")), None);
        assert_eq!(bearer_token(&HeaderMap::new()), None);
    }

    #[tokio::test]
    async fn the_chain_authenticates_certificates_static_tokens_and_anonymous() {
        let registry = crate::registry::Registry::with_storage(
            std::sync::Arc::new(crate::registry::storage::MemoryStorage::default()),
            crate::kinds::Kinds::builtin(),
        );
        let tokens = TokenFile::parse("secret,alice,a-1,\"dev\"\n").unwrap();
        let sa = ServiceAccountTokens::new(
            jwt::SigningKey::random(),
            service_account::DEFAULT_ISSUER,
            &[],
        );
        let chain = Authenticator::new(tokens, sa, false);
        let none = HeaderMap::new();
        // A certificate user gains system:authenticated.
        let cert = UserInfo {
            name: "admin".into(),
            groups: vec!["system:masters".into()],
            ..UserInfo::default()
        };
        let user = chain
            .authenticate(Some(cert), &none, &registry)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(user.groups, ["system:masters", AUTHENTICATED]);
        // A static token.
        let user = chain
            .authenticate(None, &headers("Bearer secret"), &registry)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((user.name.as_str(), user.uid.as_str()), ("alice", "a-1"));
        assert_eq!(user.groups, ["dev", AUTHENTICATED]);
        // An unknown token, and a JWT of another cluster: 401, not anonymous.
        for bad in ["Bearer nope", "Bearer a.b.c"] {
            assert!(matches!(
                chain.authenticate(None, &headers(bad), &registry).await,
                Err(ApiError::Unauthorized)
            ));
        }
        // No credentials: nobody, unless anonymous requests are enabled.
        assert_eq!(
            chain.authenticate(None, &none, &registry).await.unwrap(),
            None
        );
        let open = Authenticator {
            anonymous: true,
            ..chain
        };
        let anon = open
            .authenticate(None, &none, &registry)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(anon.name, ANONYMOUS);
        assert_eq!(anon.groups, [UNAUTHENTICATED]);
        assert!(matches!(
            open.authenticate(None, &headers("Bearer nope"), &registry)
                .await,
            Err(ApiError::Unauthorized)
        ));
    }
}
