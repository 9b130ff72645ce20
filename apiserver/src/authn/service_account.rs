//! ServiceAccount tokens: issued by the TokenRequest subresource
//! (`registry::token`), bound to a ServiceAccount and optionally a pod, and
//! accepted only while those objects still exist with the uids the token
//! names. The objects are looked up in the watch cache (memory); only a
//! miss there is confirmed with a read of the store, since the cache of a
//! member may not yet hold an object a client has just created elsewhere.

use std::collections::BTreeMap;

use serde_json::Value;

use super::jwt::{Claims, JwtError, KubernetesClaims, ObjectRef, SigningKey};
use super::verified::Verified;
use crate::http::auth::UserInfo;
use crate::registry::Registry;

/// The default issuer (`--service-account-issuer`), as kube-apiserver's
/// usual one.
pub const DEFAULT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// A TokenRequest without `expirationSeconds` gets an hour.
pub const DEFAULT_EXPIRATION_SECS: i64 = 3600;
/// The shortest validity a TokenRequest may ask for, as Kubernetes.
pub const MIN_EXPIRATION_SECS: i64 = 600;
/// Longer requests are shortened to this (kube-apiserver's
/// `--service-account-max-token-expiration`; Keel fixes it at two days).
pub const MAX_EXPIRATION_SECS: i64 = 48 * 3600;

/// The prefix of every ServiceAccount user name.
pub const USER_PREFIX: &str = "system:serviceaccount:";

/// Extra keys of a pod-bound token's user, as Kubernetes names them.
pub const EXTRA_POD_NAME: &str = "authentication.kubernetes.io/pod-name";
pub const EXTRA_POD_UID: &str = "authentication.kubernetes.io/pod-uid";

/// The cluster's ServiceAccount token issuer and verifier.
pub struct ServiceAccountTokens {
    key: SigningKey,
    issuer: String,
    /// The audiences this API accepts (`--api-audiences`, default the issuer).
    audiences: Vec<String>,
    /// Tokens whose signature this key already verified.
    verified: Verified,
}

impl ServiceAccountTokens {
    /// Tokens signed with `key` for `issuer`; the API accepts `audiences`
    /// (the issuer when empty).
    pub fn new(key: SigningKey, issuer: &str, audiences: &[String]) -> ServiceAccountTokens {
        let audiences = if audiences.is_empty() {
            vec![issuer.to_string()]
        } else {
            audiences.to_vec()
        };
        ServiceAccountTokens {
            key,
            issuer: issuer.to_string(),
            audiences,
            verified: Verified::default(),
        }
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The audiences the API accepts, and a TokenRequest gets by default.
    pub fn audiences(&self) -> &[String] {
        &self.audiences
    }

    /// A signed token for `binding`, valid from `now` for `seconds`.
    pub fn issue(
        &self,
        binding: KubernetesClaims,
        audiences: Vec<String>,
        now: i64,
        seconds: i64,
    ) -> String {
        let claims = Claims {
            iss: self.issuer.clone(),
            sub: format!(
                "{USER_PREFIX}{}:{}",
                binding.namespace, binding.serviceaccount.name
            ),
            aud: audiences,
            exp: now + seconds,
            iat: now,
            nbf: now,
            jti: crate::meta::new_uid(),
            kubernetes: binding,
        };
        self.key.sign(&claims)
    }

    /// Signature, issuer, validity window and audience (`audiences`, or the
    /// API's when `None`): the claims and the audiences that matched.
    pub fn verify(
        &self,
        token: &str,
        now: i64,
        audiences: Option<&[String]>,
    ) -> Result<(Claims, Vec<String>), JwtError> {
        let claims = match self.verified.get(token) {
            Some(claims) => claims,
            None => {
                let claims = self.key.verify(token)?;
                self.verified.insert(token, &claims);
                claims
            }
        };
        let matched = claims.validate(&self.issuer, now, audiences.unwrap_or(&self.audiences))?;
        Ok((claims, matched))
    }

    /// The user of `token` if it verifies and the objects it is bound to
    /// still exist with the uids it names; else why not (logged, never sent).
    pub async fn authenticate(
        &self,
        token: &str,
        registry: &Registry,
        audiences: Option<&[String]>,
    ) -> Result<(UserInfo, Vec<String>), String> {
        let (claims, matched) = self
            .verify(token, crate::meta::now_secs(), audiences)
            .map_err(|e| e.to_string())?;
        let k = &claims.kubernetes;
        if claims.sub != format!("{USER_PREFIX}{}:{}", k.namespace, k.serviceaccount.name) {
            return Err("the subject does not name the bound service account".into());
        }
        let sa = registry
            .live_object(
                "serviceaccounts",
                &k.namespace,
                &k.serviceaccount.name,
                &k.serviceaccount.uid,
            )
            .await
            .map_err(|e| format!("looking up the service account: {e}"))?;
        if sa.is_none() {
            return Err(format!(
                "service account {}/{} (uid {}) no longer exists",
                k.namespace, k.serviceaccount.name, k.serviceaccount.uid
            ));
        }
        if let Some(pod) = &k.pod {
            let live = registry
                .live_object("pods", &k.namespace, &pod.name, &pod.uid)
                .await
                .map_err(|e| format!("looking up the pod: {e}"))?;
            if live.as_ref().is_none_or(|p| {
                p.pointer("/metadata/deletionTimestamp")
                    .is_some_and(|d| !d.is_null())
            }) {
                return Err(format!(
                    "pod {}/{} (uid {}) no longer exists",
                    k.namespace, pod.name, pod.uid
                ));
            }
        }
        Ok((user_of(k), matched))
    }
}

/// The user a ServiceAccount token stands for, as Kubernetes names it.
pub fn user_of(k: &KubernetesClaims) -> UserInfo {
    let mut extra = BTreeMap::new();
    if let Some(pod) = &k.pod {
        extra.insert(EXTRA_POD_NAME.to_string(), vec![pod.name.clone()]);
        extra.insert(EXTRA_POD_UID.to_string(), vec![pod.uid.clone()]);
    }
    UserInfo {
        name: format!("{USER_PREFIX}{}:{}", k.namespace, k.serviceaccount.name),
        uid: k.serviceaccount.uid.clone(),
        groups: vec![
            "system:serviceaccounts".into(),
            format!("system:serviceaccounts:{}", k.namespace),
        ],
        extra,
    }
}

/// What a token for the ServiceAccount `sa` (an object) in `namespace` is
/// bound to, with the pod `pod` (an object) when bound to one.
pub fn binding(namespace: &str, sa: &Value, pod: Option<&Value>) -> KubernetesClaims {
    let reference = |o: &Value| ObjectRef {
        name: o
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        uid: o
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
    };
    KubernetesClaims {
        namespace: namespace.to_string(),
        serviceaccount: reference(sa),
        pod: pod.map(reference),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tokens_name_the_service_account_user() {
        let tokens = ServiceAccountTokens::new(SigningKey::random(), DEFAULT_ISSUER, &[]);
        assert_eq!(tokens.audiences(), [DEFAULT_ISSUER]);
        let sa = json!({"metadata": {"name": "robot", "uid": "u1"}});
        let pod = json!({"metadata": {"name": "web", "uid": "p1"}});
        let b = binding("ns", &sa, Some(&pod));
        let now = crate::meta::now_secs();
        let token = tokens.issue(b.clone(), tokens.audiences().to_vec(), now, 3600);
        let (claims, matched) = tokens.verify(&token, now, None).unwrap();
        assert_eq!(claims.sub, "system:serviceaccount:ns:robot");
        assert_eq!(matched, [DEFAULT_ISSUER]);
        let user = user_of(&claims.kubernetes);
        assert_eq!(user.name, "system:serviceaccount:ns:robot");
        assert_eq!(user.uid, "u1");
        assert_eq!(
            user.groups,
            ["system:serviceaccounts", "system:serviceaccounts:ns"]
        );
        assert_eq!(user.extra[EXTRA_POD_NAME], ["web"]);
        assert_eq!(user.extra[EXTRA_POD_UID], ["p1"]);
        // Another audience is refused by the API, accepted where asked for.
        let vault = tokens.issue(b, vec!["vault".into()], now, 3600);
        assert!(matches!(
            tokens.verify(&vault, now, None),
            Err(JwtError::Audience(_))
        ));
        assert!(tokens.verify(&vault, now, Some(&["vault".into()])).is_ok());
        // Expired, though its signature is remembered.
        assert!(tokens.verified.get(&token).is_some());
        assert!(matches!(
            tokens.verify(&token, now + 3600 + super::super::jwt::LEEWAY_SECS, None),
            Err(JwtError::Expired(_))
        ));
    }

    #[test]
    fn remembered_signatures_are_bounded_and_exact() {
        let tokens = ServiceAccountTokens::new(SigningKey::random(), DEFAULT_ISSUER, &[]);
        let sa = json!({"metadata": {"name": "robot", "uid": "u1"}});
        let now = crate::meta::now_secs();
        let token = tokens.issue(
            binding("ns", &sa, None),
            tokens.audiences().to_vec(),
            now,
            3600,
        );
        tokens.verify(&token, now, None).unwrap();
        tokens.verify(&token, now, None).unwrap();
        assert_eq!(tokens.verified.len(), 1);
        // A token with the remembered one's payload but another signature
        // is checked, not looked up.
        let (signed, _) = token.rsplit_once('.').unwrap();
        let forged = format!("{signed}.{}", "A".repeat(86));
        assert!(matches!(
            tokens.verify(&forged, now, None),
            Err(JwtError::Signature)
        ));
        // Another key's token is refused even with this one remembered.
        let other = ServiceAccountTokens::new(SigningKey::random(), DEFAULT_ISSUER, &[]);
        let theirs = other.issue(
            binding("ns", &sa, None),
            other.audiences().to_vec(),
            now,
            3600,
        );
        assert!(matches!(
            tokens.verify(&theirs, now, None),
            Err(JwtError::Signature)
        ));
        assert_eq!(tokens.verified.len(), 1);
        let claims = tokens.verified.get(&token).unwrap();
        for i in 0..super::super::verified::CAPACITY + 10 {
            tokens.verified.insert(&format!("t{i}"), &claims);
            assert!(tokens.verified.len() <= super::super::verified::CAPACITY);
        }
    }
}
