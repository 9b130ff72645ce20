//! The TokenRequest subresource (`serviceaccounts/{name}/token`, what
//! `kubectl create token` calls): a ServiceAccount token for the account,
//! optionally bound to a pod, signed by the cluster ([`crate::authn`]).
//! Also the registry's side of checking such a token: the authenticator
//! the server configured, and the live objects a token is bound to.

use std::sync::Arc;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use super::storage::{Consistency, StorageError};
use super::{Registry, not_found};
use crate::authn::service_account::{
    DEFAULT_EXPIRATION_SECS, MAX_EXPIRATION_SECS, MIN_EXPIRATION_SECS, binding,
};
use crate::authn::{Authenticator, review};
use crate::error::{ApiError, Cause};
use crate::meta;
use crate::request::RequestTarget;
use crate::response;

impl Registry {
    /// Authenticate requests with `authn`; the server sets it once at start,
    /// before serving. Returns false if one was set (or used) already.
    pub fn set_authenticator(&self, authn: Arc<Authenticator>) -> bool {
        self.authn.set(authn).is_ok()
    }

    /// The authenticator; without one set, client certificates only.
    pub fn authenticator(&self) -> &Arc<Authenticator> {
        self.authn
            .get_or_init(|| Arc::new(Authenticator::x509_only()))
    }

    /// The core object `plural`/`namespace`/`name` if it exists with `uid`:
    /// from the watch cache, and only when the cache lacks it (or holds
    /// another uid) from a linearizable read, since a client may present a
    /// token for an object this member's cache has not seen yet.
    pub async fn live_object(
        &self,
        plural: &str,
        namespace: &str,
        name: &str,
        uid: &str,
    ) -> Result<Option<Value>, ApiError> {
        let Some(rt) = self.kinds.find("", "v1", plural) else {
            return Ok(None);
        };
        let key = rt.key(Some(namespace), name);
        let has_uid = |v: &Value| v.pointer("/metadata/uid").and_then(Value::as_str) == Some(uid);
        if let Some(cache) = &self.cache
            && let Some(Some(o)) = cache.object(&key)
            && let Ok(v) = self.decode(&o.kv)
            && has_uid(&v)
        {
            return Ok(Some(v));
        }
        match self.storage.get(&key, Consistency::Linearizable).await {
            Ok((kv, _)) => Ok(Some(self.decode(&kv)?).filter(has_uid)),
            Err(StorageError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// POST `serviceaccounts/{name}/token`.
    pub(super) async fn create_token(
        &self,
        t: &RequestTarget,
        name: &str,
        headers: &HeaderMap,
        body: &Bytes,
        user: &crate::http::auth::UserInfo,
    ) -> Result<Response, ApiError> {
        let req = review::decode(headers, body, "TokenRequest")?;
        // NodeRestriction: a node's token must be bound to its own pod.
        self.admit(&crate::admission::Attributes {
            user,
            operation: crate::admission::Operation::Create,
            target: t,
            name,
            object: Some(&req),
            old: None,
        })?;
        let ns = t.namespace.clone().unwrap_or_default();
        let invalid = |cause: Cause| ApiError::Invalid {
            group: crate::authn::GROUP.into(),
            kind: "TokenRequest".into(),
            name: name.into(),
            causes: vec![cause],
        };
        let tokens = self.authenticator().service_accounts();
        let spec = req.get("spec").cloned().unwrap_or(json!({}));
        let audiences: Vec<String> = match spec.get("audiences").and_then(Value::as_array) {
            Some(a) if !a.is_empty() => a
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<_>>()
                .ok_or_else(|| invalid(Cause::invalid("spec.audiences", "must be strings")))?,
            _ => tokens.audiences().to_vec(),
        };
        let seconds = match spec.get("expirationSeconds") {
            None | Some(Value::Null) => DEFAULT_EXPIRATION_SECS,
            Some(v) => v.as_i64().ok_or_else(|| {
                invalid(Cause::invalid(
                    "spec.expirationSeconds",
                    "must be an integer",
                ))
            })?,
        };
        if seconds < MIN_EXPIRATION_SECS {
            return Err(invalid(Cause::invalid(
                "spec.expirationSeconds",
                "may not specify a duration less than 10 minutes",
            )));
        }
        let seconds = seconds.min(MAX_EXPIRATION_SECS);
        let (_, sa) = self.current(&t.main(), name).await?;
        let pod = match spec.get("boundObjectRef").filter(|r| !r.is_null()) {
            None => None,
            Some(r) => Some(self.bound_pod(&ns, name, r, &invalid).await?),
        };
        let now = meta::now_secs();
        let token = tokens.issue(
            binding(&ns, &sa, pod.as_ref()),
            audiences.clone(),
            now,
            seconds,
        );
        let mut out_spec = spec.clone();
        out_spec["audiences"] = json!(audiences);
        out_spec["expirationSeconds"] = json!(seconds);
        Ok(response::json(
            StatusCode::CREATED,
            &json!({
                "kind": "TokenRequest",
                "apiVersion": "authentication.k8s.io/v1",
                "metadata": {"name": name, "namespace": ns, "creationTimestamp": meta::rfc3339(now)},
                "spec": out_spec,
                "status": {"token": token, "expirationTimestamp": meta::rfc3339(now + seconds)},
            }),
        ))
    }

    /// The pod a token request binds to: it exists, runs as the account,
    /// has the uid the reference gives (if any) and is not being deleted.
    async fn bound_pod(
        &self,
        ns: &str,
        account: &str,
        r: &Value,
        invalid: &(dyn Fn(Cause) -> ApiError + Sync),
    ) -> Result<Value, ApiError> {
        let field = |f: &str| r.get(f).and_then(Value::as_str).unwrap_or_default();
        if field("kind") != "Pod" {
            return Err(invalid(Cause::not_supported(
                "spec.boundObjectRef.kind",
                field("kind"),
                &["Pod"],
            )));
        }
        if !matches!(field("apiVersion"), "" | "v1") {
            return Err(invalid(Cause::not_supported(
                "spec.boundObjectRef.apiVersion",
                field("apiVersion"),
                &["v1"],
            )));
        }
        let pod_name = field("name");
        if pod_name.is_empty() {
            return Err(invalid(Cause::required("spec.boundObjectRef.name")));
        }
        let pods = self.kinds.find("", "v1", "pods").ok_or(ApiError::NoRoute)?;
        let target = RequestTarget {
            rt: pods,
            namespace: Some(ns.to_string()),
            name: Some(pod_name.to_string()),
            subresource: None,
        };
        let (_, pod) = self.current(&target, pod_name).await.map_err(|e| match e {
            ApiError::NotFound { .. } => not_found(&target, pod_name),
            e => e,
        })?;
        let uid = pod
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !field("uid").is_empty() && field("uid") != uid {
            return Err(ApiError::Conflict {
                group: String::new(),
                resource: "pods".into(),
                name: pod_name.into(),
                message: format!(
                    "the UID in the bound object reference ({}) does not match the UID in record ({uid}); the object might have been deleted and then recreated",
                    field("uid")
                ),
            });
        }
        let runs_as = pod
            .pointer("/spec/serviceAccountName")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .unwrap_or(crate::authn::default_service_account::NAME);
        if runs_as != account {
            return Err(ApiError::BadRequest(format!(
                "cannot bind a token for service account {ns}/{account} to pod {pod_name}, which runs as {runs_as}"
            )));
        }
        if pod
            .pointer("/metadata/deletionTimestamp")
            .is_some_and(|d| !d.is_null())
        {
            return Err(ApiError::BadRequest(format!(
                "pod {ns}/{pod_name} is being deleted"
            )));
        }
        Ok(pod)
    }
}

#[cfg(test)]
mod tests {
    use axum::http::Method;
    use axum::response::IntoResponse;

    use super::*;
    use crate::http::auth::UserInfo;
    use crate::kinds::Kinds;
    use crate::registry::storage::MemoryStorage;
    use crate::request;

    /// `method` on `path` with a JSON `body`, as the router serves it: the
    /// status code and the JSON answer.
    async fn call(r: &Registry, method: Method, path: &str, body: Value) -> (u16, Value) {
        let segs = request::segments(path);
        let (group, version, rest) = match segs.as_slice() {
            ["api", v, rest @ ..] => ("", *v, rest),
            ["apis", g, v, rest @ ..] => (*g, *v, rest),
            _ => panic!("not an API path: {path}"),
        };
        let q = request::Query::new();
        let mut headers = HeaderMap::new();
        headers.insert("content-type", "application/json".parse().unwrap());
        let admin = UserInfo {
            name: "admin".into(),
            groups: vec!["system:masters".into()],
            ..UserInfo::default()
        };
        let resp = async {
            let t = RequestTarget::resolve(&r.kinds, group, version, rest)?;
            let verb = t.verb(&method, &q)?;
            r.serve(
                verb,
                &t,
                &q,
                &headers,
                Bytes::from(body.to_string()),
                &admin,
            )
            .await
        }
        .await
        .unwrap_or_else(ApiError::into_response);
        let code = resp.status().as_u16();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    const SA: &str = "/api/v1/namespaces/default/serviceaccounts";

    async fn registry() -> Registry {
        let r = Registry::with_storage(Arc::new(MemoryStorage::new()), Kinds::builtin());
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}});
        assert_eq!(
            call(&r, Method::POST, "/api/v1/namespaces", ns).await.0,
            201
        );
        let sa =
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "robot"}});
        assert_eq!(call(&r, Method::POST, SA, sa).await.0, 201);
        r
    }

    async fn token(r: &Registry, spec: Value) -> (u16, Value) {
        let req =
            json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec});
        call(r, Method::POST, &format!("{SA}/robot/token"), req).await
    }

    async fn user(r: &Registry, token: &str) -> Result<UserInfo, String> {
        r.authenticator()
            .token(token, r, None)
            .await
            .map(|(u, _)| u)
    }

    #[tokio::test]
    async fn a_token_lives_as_long_as_its_service_account() {
        let r = registry().await;
        let (code, tr) = token(&r, json!({})).await;
        assert_eq!(code, 201, "{tr}");
        assert_eq!(tr["spec"]["expirationSeconds"], DEFAULT_EXPIRATION_SECS);
        let t = tr["status"]["token"].as_str().unwrap().to_string();
        let u = user(&r, &t).await.unwrap();
        assert_eq!(u.name, "system:serviceaccount:default:robot");
        assert!(u.groups.iter().any(|g| g == "system:authenticated"));
        // Deleted, then recreated under the same name: refused both times.
        assert_eq!(
            call(&r, Method::DELETE, &format!("{SA}/robot"), Value::Null)
                .await
                .0,
            200
        );
        assert!(user(&r, &t).await.unwrap_err().contains("no longer exists"));
        let sa =
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "robot"}});
        assert_eq!(call(&r, Method::POST, SA, sa).await.0, 201);
        assert!(user(&r, &t).await.is_err());
    }

    #[tokio::test]
    async fn token_requests_are_checked() {
        let r = registry().await;
        // Too short; a missing account; a pod that does not exist.
        assert_eq!(token(&r, json!({"expirationSeconds": 60})).await.0, 422);
        let req = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest"});
        assert_eq!(
            call(&r, Method::POST, &format!("{SA}/nobody/token"), req)
                .await
                .0,
            404
        );
        let bound = json!({"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "web"}});
        assert_eq!(token(&r, bound.clone()).await.0, 404);
        let secret = json!({"boundObjectRef": {"kind": "Secret", "name": "s"}});
        assert_eq!(token(&r, secret).await.0, 422);
        // Too long is shortened; another audience is not the API's.
        let (_, long) = token(
            &r,
            json!({"expirationSeconds": 10 * MAX_EXPIRATION_SECS, "audiences": ["vault"]}),
        )
        .await;
        assert_eq!(long["spec"]["expirationSeconds"], MAX_EXPIRATION_SECS);
        let t = long["status"]["token"].as_str().unwrap();
        assert!(user(&r, t).await.unwrap_err().contains("audience"));
        let review = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
            "spec": {"token": t, "audiences": ["vault"]}});
        let (code, rv) = call(
            &r,
            Method::POST,
            "/apis/authentication.k8s.io/v1/tokenreviews",
            review,
        )
        .await;
        assert_eq!(code, 201);
        assert_eq!(rv["status"]["authenticated"], true);
        assert_eq!(rv["status"]["audiences"], json!(["vault"]));
        // Bound to a pod running as the account: the user names the pod;
        // the pod deleted, the token is refused.
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"},
            "spec": {"serviceAccountName": "robot", "containers": [{"name": "c", "image": "i"}]}});
        let (code, body) = call(&r, Method::POST, "/api/v1/namespaces/default/pods", pod).await;
        assert_eq!(code, 201, "{body}");
        let (code, tr) = token(&r, bound).await;
        assert_eq!(code, 201, "{tr}");
        let t = tr["status"]["token"].as_str().unwrap();
        let u = user(&r, t).await.unwrap();
        assert_eq!(u.extra["authentication.kubernetes.io/pod-name"], ["web"]);
        let (code, _) = call(
            &r,
            Method::DELETE,
            "/api/v1/namespaces/default/pods/web",
            Value::Null,
        )
        .await;
        assert_eq!(code, 200);
        assert!(user(&r, t).await.is_err());
        // Reviews are only created.
        let (code, _) = call(
            &r,
            Method::GET,
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            Value::Null,
        )
        .await;
        assert_eq!(code, 405);
        let ssr = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"});
        let (code, me) = call(
            &r,
            Method::POST,
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            ssr,
        )
        .await;
        assert_eq!(code, 201);
        assert_eq!(me["status"]["userInfo"]["username"], "admin");
    }
}
