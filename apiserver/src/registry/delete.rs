//! The delete verbs: one object (with its preconditions, dry run and
//! finalizers) and a collection (every selected object, read at one revision).

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::storage::{Preconditions, RangeRequest};
use super::{Registry, conflict, storage_error};
use crate::admission;
use crate::error::ApiError;
use crate::http::auth::UserInfo;
use crate::meta;
use crate::request::{Query, RequestTarget};
use crate::response;
use crate::selector::Selector;

impl Registry {
    /// DELETE of an object: at once, or marked for deletion while it has finalizers.
    pub(super) async fn delete(
        &self,
        t: &RequestTarget,
        name: &str,
        q: &Query,
        body: Bytes,
        user: &UserInfo,
    ) -> Result<Response, ApiError> {
        let opts: Value = if body.is_empty() {
            json!({})
        } else {
            serde_json::from_slice(&body)
                .map_err(|e| ApiError::BadRequest(format!("invalid DeleteOptions: {e}")))?
        };
        let (kv, obj) = self.current(t, name).await?;
        if let Some(uid) = opts.pointer("/preconditions/uid").and_then(Value::as_str)
            && obj.pointer("/metadata/uid").and_then(Value::as_str) != Some(uid)
        {
            return Err(ApiError::Conflict {
                group: t.rt.group.clone(),
                resource: t.rt.plural.clone(),
                name: name.into(),
                message: format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    obj.pointer("/metadata/uid")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                ),
            });
        }
        if let Some(rv) = opts
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            && rv != kv.mod_revision.to_string()
        {
            return Err(conflict(t, name));
        }
        self.admit(&admission::Attributes {
            user,
            operation: admission::Operation::Delete,
            target: t,
            name,
            object: None,
            old: Some(&obj),
        })?;
        if q.get("dryRun").is_some_and(|d| d == "All")
            || opts
                .get("dryRun")
                .and_then(Value::as_array)
                .is_some_and(|a| a.iter().any(|d| d == "All"))
        {
            return Ok(response::json(StatusCode::OK, &obj));
        }
        let finalizers = obj
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| !f.is_empty());
        let key = t.rt.key(t.namespace.as_deref(), name);
        if finalizers {
            // Kept until its finalizers are removed; marked for deletion now.
            if obj.pointer("/metadata/deletionTimestamp").is_some() {
                return Ok(response::json(StatusCode::ACCEPTED, &obj));
            }
            let mut marked = obj.clone();
            marked["metadata"]["deletionTimestamp"] = json!(meta::rfc3339(meta::now_secs()));
            marked["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            if let Some(m) = marked["metadata"].as_object_mut() {
                m.remove("resourceVersion");
            }
            let at = Preconditions::mod_revision(kv.mod_revision);
            let rev = self
                .storage
                .update(
                    &key,
                    t.rt.to_stored(marked.clone()).to_string().into_bytes(),
                    at,
                    &user.actor(),
                )
                .await
                .map_err(|e| storage_error(t, name, e))?;
            marked["metadata"]["resourceVersion"] = json!(rev.to_string());
            return Ok(response::json(StatusCode::ACCEPTED, &marked));
        }
        self.storage
            .delete(
                &key,
                Preconditions::mod_revision(kv.mod_revision),
                &user.actor(),
            )
            .await
            .map_err(|e| storage_error(t, name, e))?;
        Ok(response::json(StatusCode::OK, &obj))
    }

    /// DELETE of a collection: each selected object as a DELETE of it.
    pub(super) async fn delete_collection(
        &self,
        t: &RequestTarget,
        q: &Query,
        user: &UserInfo,
    ) -> Result<Response, ApiError> {
        let selector = Selector::from_query(q)?;
        let mut req = RangeRequest::prefix(t.rt.prefix(t.namespace.as_deref()));
        let mut deleted = Vec::new();
        let mut revision = None;
        // The store answers in pages of bounded size; every page is read at
        // the first page's revision, so the collection is the one that existed
        // when the request started, however large.
        loop {
            let resp = self.storage.list(req.clone()).await?;
            revision.get_or_insert(resp.revision);
            for kv in &resp.kvs {
                let obj = t.rt.served(self.decode(kv)?);
                if !selector.matches(&obj) {
                    continue;
                }
                let name = obj
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let ns = obj
                    .pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                let target = RequestTarget {
                    rt: t.rt.clone(),
                    namespace: ns,
                    name: Some(name.clone()),
                    subresource: None,
                };
                match self.delete(&target, &name, q, Bytes::new(), user).await {
                    Ok(_) | Err(ApiError::NotFound { .. }) => deleted.push(obj),
                    Err(e) => return Err(e),
                }
            }
            match resp.continue_token {
                Some(token) => {
                    req.continue_token = Some(token);
                    req.revision = None;
                }
                None => break,
            }
        }
        let revision = revision.unwrap_or_default();
        Ok(response::json(
            StatusCode::OK,
            &json!({"kind": format!("{}List", t.rt.kind), "apiVersion": t.rt.api_version(), "metadata": {"resourceVersion": revision.to_string()}, "items": deleted}),
        ))
    }
}
