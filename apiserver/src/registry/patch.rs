//! The patch verb: JSON patch, merge patch and strategic merge patch
//! (built-in kinds only: it needs the kind's schema), reapplied to the
//! current object on every attempt of the guaranteed update. The
//! algorithms are in [`crate::patch`].

use axum::body::Bytes;
use axum::http::{HeaderMap, header};
use axum::response::Response;
use serde_json::Value;

use super::Registry;
use crate::error::ApiError;
use crate::http::auth::UserInfo;
use crate::patch::PatchError;
use crate::request::{Query, RequestTarget};
use crate::schema::Node;

/// The patch types every kind or only built-in kinds accept.
#[derive(Clone, Copy)]
pub(super) enum PatchType<'s> {
    Json,
    Merge,
    /// With the schema of the kind patched.
    Strategic(Node<'s>),
}

impl PatchType<'static> {
    /// The patch type the request's Content-Type names, for an object
    /// whose schema is `schema`. Strategic merge patch needs one: kinds
    /// without (custom resources) get 415, as from kube-apiserver.
    pub(super) fn of(
        headers: &HeaderMap,
        schema: Option<Node<'static>>,
    ) -> Result<PatchType<'static>, ApiError> {
        let ct = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let unsupported = |got: &str| {
            ApiError::UnsupportedMediaType(format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (got {got:?})"
            ))
        };
        match ct.split(';').next().unwrap_or("").trim() {
            "application/json-patch+json" => Ok(PatchType::Json),
            "application/merge-patch+json" => Ok(PatchType::Merge),
            "application/strategic-merge-patch+json" => schema
                .map(PatchType::Strategic)
                .ok_or_else(|| unsupported("application/strategic-merge-patch+json")),
            other => Err(unsupported(other)),
        }
    }
}

impl Registry {
    /// PATCH of an object or of its status.
    pub(super) async fn patch(
        &self,
        t: &RequestTarget,
        name: &str,
        q: &Query,
        headers: &HeaderMap,
        body: Bytes,
        user: &UserInfo,
    ) -> Result<Response, ApiError> {
        // Server-side apply ([`super::apply`]).
        if crate::fieldmanager::is_apply_patch(headers) {
            return self.apply_patch(t, name, q, body, user).await;
        }
        let schema = crate::schema::builtin().kind(&t.rt.group, &t.rt.version, &t.rt.kind);
        let ty = PatchType::of(headers, schema)?;
        let patch: Value = serde_json::from_slice(&body)
            .map_err(|e| ApiError::BadRequest(format!("the patch is not valid JSON: {e}")))?;
        // Reapplied to the current object on every attempt; a resourceVersion
        // the patch sets is a precondition, checked by `replace`. A patch that
        // changes nothing is no write (`replace` keeps the object), so the
        // resourceVersion stays.
        self.guaranteed_update(t, name, q, user, |_, old| {
            let mut new = old.clone();
            let refused = |m: String| ApiError::Invalid {
                group: t.rt.group.clone(),
                kind: t.rt.kind.clone(),
                name: name.into(),
                causes: vec![crate::error::Cause::invalid("patch", m)],
            };
            apply(&mut new, &patch, ty, refused)?;
            if !new.is_object() || !new.get("metadata").is_some_and(Value::is_object) {
                return Err(refused(
                    "the patched object must be a JSON object whose metadata is an object".into(),
                ));
            }
            Ok(new)
        })
        .await
    }
}

/// Apply a patch of type `ty` to `doc`; a malformed patch is a 400, one
/// that cannot apply is the error `refused` makes of its message.
pub(super) fn apply(
    doc: &mut Value,
    patch: &Value,
    ty: PatchType<'_>,
    refused: impl Fn(String) -> ApiError,
) -> Result<(), ApiError> {
    let failed = |e| match e {
        PatchError::Malformed(m) => ApiError::BadRequest(m),
        PatchError::Failed(m) => refused(m),
    };
    match ty {
        PatchType::Json => crate::patch::json_patch(doc, patch).map_err(failed),
        PatchType::Merge => {
            crate::patch::merge(doc, patch);
            Ok(())
        }
        PatchType::Strategic(schema) => {
            *doc = crate::patch::strategic::apply(doc, patch, Some(schema)).map_err(failed)?;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(ct: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
        h
    }

    /// A kind without a schema (a custom resource) takes JSON and merge
    /// patches; a strategic merge patch is 415 naming the accepted types.
    #[test]
    fn strategic_merge_needs_a_schema() {
        let smp = headers("application/strategic-merge-patch+json; charset=utf-8");
        match PatchType::of(&smp, None) {
            Err(ApiError::UnsupportedMediaType(m)) => {
                assert!(m.contains("application/merge-patch+json"), "{m}")
            }
            _ => panic!("a strategic merge patch without a schema must be 415"),
        }
        let pod = crate::schema::builtin().kind("", "v1", "Pod");
        assert!(matches!(
            PatchType::of(&smp, pod),
            Ok(PatchType::Strategic(_))
        ));
        for ct in [
            "application/merge-patch+json",
            "application/json-patch+json",
        ] {
            assert!(PatchType::of(&headers(ct), None).is_ok(), "{ct}");
        }
        assert!(PatchType::of(&headers("application/json"), pod).is_err());
    }
}
