//! The patch verb: JSON patch, merge patch, and strategic merge patches
//! that mean the same as a merge patch, reapplied to the current object on
//! every attempt of the guaranteed update. The algorithms are in
//! [`crate::patch`].

use axum::body::Bytes;
use axum::http::{HeaderMap, header};
use axum::response::Response;
use serde_json::Value;

use super::Registry;
use crate::error::ApiError;
use crate::http::auth::UserInfo;
use crate::patch::PatchError;
use crate::request::{Query, RequestTarget};

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
        let ct = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let base = ct.split(';').next().unwrap_or("").trim().to_string();
        let patch: Value = serde_json::from_slice(&body)
            .map_err(|e| ApiError::BadRequest(format!("the patch is not valid JSON: {e}")))?;
        let json_patch = match base.as_str() {
            "application/merge-patch+json" => false,
            // Without lists or directives a strategic merge patch means the
            // same as a merge patch; list merge keys are not supported yet.
            "application/strategic-merge-patch+json"
                if crate::patch::smp_is_plain_merge(&patch) =>
            {
                false
            }
            "application/json-patch+json" => true,
            other => {
                return Err(ApiError::UnsupportedMediaType(format!(
                    "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json (got {other})"
                )));
            }
        };
        // Reapplied to the current object on every attempt; a resourceVersion
        // the patch sets is a precondition, checked by `replace`.
        self.guaranteed_update(t, name, q, user, |_, old| {
            let mut new = old.clone();
            let refused = |m: String| ApiError::Invalid {
                group: t.rt.group.clone(),
                kind: t.rt.kind.clone(),
                name: name.into(),
                causes: vec![crate::error::Cause::invalid("patch", m)],
            };
            apply(&mut new, &patch, json_patch, refused)?;
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

/// Apply a JSON patch (`json_patch`) or a merge patch to `doc`; a patch
/// that cannot apply is the error `refused` makes of its message.
pub(super) fn apply(
    doc: &mut Value,
    patch: &Value,
    json_patch: bool,
    refused: impl Fn(String) -> ApiError,
) -> Result<(), ApiError> {
    if json_patch {
        crate::patch::json_patch(doc, patch).map_err(|e| match e {
            PatchError::Malformed(m) => ApiError::BadRequest(m),
            PatchError::Failed(m) => refused(m),
        })
    } else {
        crate::patch::merge(doc, patch);
        Ok(())
    }
}
