//! The server-side apply PATCH (`application/apply-patch+yaml`): the
//! applied configuration (YAML or JSON) is applied to the live object in
//! the guaranteed update, or creates the object when there is none. The
//! merge and ownership rules are in [`crate::fieldmanager::apply`].

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::Response;

use super::{Registry, decode};
use crate::error::{ApiError, Cause};
use crate::fieldmanager::{self, apply};
use crate::http::auth::UserInfo;
use crate::request::{Query, RequestTarget};
use crate::response;

impl Registry {
    /// PATCH with an applied configuration.
    pub(super) async fn apply_patch(
        &self,
        t: &RequestTarget,
        name: &str,
        q: &Query,
        body: Bytes,
        user: &UserInfo,
    ) -> Result<Response, ApiError> {
        let manager = match q.get("fieldManager").filter(|m| !m.is_empty()) {
            Some(m) => m.clone(),
            None => {
                return Err(fieldmanager::patch_options_invalid(
                    Cause::required_because("fieldManager", "is required for apply patch"),
                ));
            }
        };
        let force = match q.get("force").map(String::as_str) {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                return Err(ApiError::BadRequest(format!(
                    "invalid value for force: {other:?}"
                )));
            }
        };
        let mut cfg = crate::kinds::typed::from_yaml(&body)
            .map_err(|e| ApiError::BadRequest(format!("error decoding YAML: {e}")))?;
        apply::check_config(t, name, &mut cfg)?;
        let mut q = q.clone();
        q.insert(fieldmanager::APPLIED.into(), String::new());
        let sub = q
            .get(fieldmanager::SUBRESOURCE)
            .cloned()
            .unwrap_or_default();
        let now = crate::meta::rfc3339(crate::meta::now_secs());
        let applier = apply::Applier {
            target: t,
            manager: &manager,
            subresource: &sub,
            force,
            now: &now,
        };
        // Creates when missing; a create that loses a race to another
        // writer applies to what it wrote instead.
        for _ in 0..2 {
            match self.current(t, name).await {
                Err(ApiError::NotFound { .. }) if t.subresource.is_none() => {
                    let mut obj = apply::apply(&applier, None, &cfg)?;
                    decode::check_type(t, &mut obj)?;
                    let warnings = decode::field_validation(t, &mut obj, &q)?;
                    let dry_run = q.get("dryRun").is_some_and(|d| d == "All");
                    match self.create_managed(t, obj, dry_run, user, &q).await {
                        Ok(obj) => {
                            return Ok(response::with_warnings(
                                response::json(StatusCode::CREATED, &obj),
                                &warnings,
                            ));
                        }
                        Err(ApiError::AlreadyExists { .. }) => continue,
                        Err(e) => return Err(e),
                    }
                }
                Err(e) => return Err(e),
                Ok(_) => {
                    return self
                        .guaranteed_update(t, name, &q, user, |_, old| {
                            apply::apply(&applier, Some(old), &cfg)
                        })
                        .await;
                }
            }
        }
        Err(super::conflict(t, name))
    }
}
