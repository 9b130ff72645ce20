//! The one read-modify-write path (kube-apiserver's `GuaranteedUpdate`)
//! that update, patch, status, scale and binding go through, and the update
//! verb (PUT). A write that removes an object's last finalizer while it is
//! being deleted deletes it here too.

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use super::storage::{self, KeyValue, UpdateError, Write, Written};
use super::{Registry, conflict, decode, services, storage_error};
use crate::admission;
use crate::error::ApiError;
use crate::http::auth::UserInfo;
use crate::kinds::{StatusStrategy, Subresource};
use crate::request::{Query, RequestTarget};
use crate::response;

impl Registry {
    /// The one read-modify-write path of update, patch, status, scale and
    /// binding (kube-apiserver's `GuaranteedUpdate`): read the object, let
    /// `mutate` make the new one from it, and swap it in if nothing wrote in
    /// between; if something did, read again and redo the mutation. A
    /// resourceVersion in the new object is a precondition and fails at once
    /// with a 409; without one the write applies to whatever is current.
    pub(super) async fn guaranteed_update(
        &self,
        t: &RequestTarget,
        name: &str,
        q: &Query,
        user: &UserInfo,
        mut mutate: impl FnMut(&KeyValue, &Value) -> Result<Value, ApiError>,
    ) -> Result<Response, ApiError> {
        let key = t.rt.key(t.namespace.as_deref(), name);
        let actor = user.actor();
        // A Service's spec: checked against the service ranges, and the
        // stored object kept to release or reserve what the write changed.
        let service = services::is_service(t) && t.subresource.is_none();
        let mut service_old = None;
        let attempt = storage::guaranteed_update(&*self.storage, &key, &actor, |kv| {
            let old = t.rt.served(self.decode(kv)?);
            let new = mutate(kv, &old)?;
            let (write, (new, warnings)) = replace(t, name, kv, &old, new, q)?;
            if service {
                if new.get("spec") != old.get("spec") {
                    let causes = services::range_causes(&self.service_network(), &new);
                    if !causes.is_empty() {
                        return Err(ApiError::Invalid {
                            group: String::new(),
                            kind: t.rt.kind.clone(),
                            name: name.into(),
                            causes,
                        });
                    }
                }
                service_old = Some(old.clone());
            }
            // Also a no-op: whether a write was allowed does not depend on
            // whether it changed anything.
            self.admit(&admission::Attributes {
                user,
                operation: admission::Operation::Update,
                target: t,
                name,
                object: Some(&new),
                old: Some(&old),
            })?;
            // Stored under an encryption key that is no longer the first:
            // an unchanged object is written again, which re-encrypts it
            // (`keel secrets rotate`).
            let write = match write {
                Write::Keep
                    if q.get("dryRun").is_none_or(|d| d != "All") && self.storage.stale(kv) =>
                {
                    Write::Put(kv.value.clone())
                }
                w => w,
            };
            Ok((write, (new, warnings)))
        })
        .await;
        let ((mut new, warnings), written) = attempt.map_err(|e| match e {
            UpdateError::Rejected(e) => e,
            // Running out of attempts is a `Conflict` too: the same 409.
            UpdateError::Storage(e) => storage_error(t, name, e),
        })?;
        if let Written::Put { revision } = written {
            new["metadata"]["resourceVersion"] = json!(revision.to_string());
        }
        if let Some(old) = service_old {
            match written {
                Written::Put { .. } => self.after_service_update(&old, &new, &actor).await,
                Written::Deleted { .. } => self.release_service(&new).await,
                Written::Kept => {}
            }
        }
        Ok(response::with_warnings(
            response::json(StatusCode::OK, &new),
            &warnings,
        ))
    }

    /// PUT of an object or of its status.
    pub(super) async fn update(
        &self,
        t: &RequestTarget,
        name: &str,
        q: &Query,
        headers: &HeaderMap,
        body: Bytes,
        user: &UserInfo,
    ) -> Result<Response, ApiError> {
        let body = decode::parse_body(t, headers, &body, false)?;
        let (group, plural) = (t.rt.group.clone(), t.rt.plural.clone());
        self.guaranteed_update(t, name, q, user, |_, old| {
            // A uid in the body is a precondition, as in kube-apiserver: an
            // object deleted and created again under the same name is not
            // overwritten by a client that read the old one.
            let stored = old
                .pointer("/metadata/uid")
                .and_then(Value::as_str)
                .unwrap_or("");
            if let Some(uid) = body
                .pointer("/metadata/uid")
                .and_then(Value::as_str)
                .filter(|u| !u.is_empty() && *u != stored)
            {
                return Err(ApiError::Conflict {
                    group: group.clone(),
                    resource: plural.clone(),
                    name: name.into(),
                    message: format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {stored}"
                    ),
                });
            }
            Ok(body.clone())
        })
        .await
    }
}

/// What to write for `new` over `old` (both full objects), `old` read at
/// `kv`: the checks and system fields of every update, then a put, a delete
/// (the last finalizer of an object being deleted went), or nothing (a no-op
/// or a dry run). Beside the write, the object to answer with and warnings.
fn replace(
    t: &RequestTarget,
    name: &str,
    kv: &KeyValue,
    old: &Value,
    mut new: Value,
    q: &Query,
) -> Result<(Write, (Value, Vec<String>)), ApiError> {
    if !new.is_object() || !new.get("metadata").is_some_and(Value::is_object) {
        return Err(ApiError::BadRequest(format!(
            "the object must be a JSON object whose metadata is an object, describing a {}",
            t.rt.kind
        )));
    }
    decode::check_type(t, &mut new)?;
    let warnings = decode::field_validation(t, &mut new, q)?;
    if new.pointer("/metadata/name").and_then(Value::as_str) != Some(name) {
        return Err(ApiError::BadRequest(format!(
            "the name of the object ({}) does not match the name on the URL ({name})",
            new.pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("")
        )));
    }
    if t.rt.namespaced
        && let Some(ns) = new
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
        && Some(ns) != t.namespace.as_deref()
    {
        return Err(ApiError::BadRequest(
            "the namespace of the provided object does not match the namespace sent on the request"
                .into(),
        ));
    }
    let stored_uid = old.pointer("/metadata/uid").and_then(Value::as_str);
    if let Some(uid) = new
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .filter(|u| !u.is_empty())
        && Some(uid) != stored_uid
    {
        return Err(ApiError::Invalid {
            group: t.rt.group.clone(),
            kind: t.rt.kind.clone(),
            name: name.into(),
            causes: vec![crate::error::Cause::invalid(
                "metadata.uid",
                format!("Invalid value: {uid:?}: field is immutable"),
            )],
        });
    }
    if let Some(rv) = new
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        let rv: u64 = rv
            .parse()
            .map_err(|_| ApiError::BadRequest(format!("invalid resourceVersion {rv:?}")))?;
        if rv != kv.mod_revision {
            return Err(conflict(t, name));
        }
    }
    // The main resource never changes status; /status changes only status;
    // `/binding` writes the node and the PodScheduled condition.
    if t.rt.has(Subresource::Status) && t.subresource != Some(Subresource::Binding) {
        if t.subresource == Some(Subresource::Status) {
            StatusStrategy::prepare_status_update(&mut new, old);
        } else {
            StatusStrategy::prepare_main_update(&mut new, old);
        }
    }
    // Fields the system owns are kept from the stored object.
    for f in ["uid", "creationTimestamp", "namespace", "generation"] {
        match old["metadata"].get(f) {
            Some(v) => new["metadata"][f] = v.clone(),
            None => {
                if let Some(m) = new["metadata"].as_object_mut() {
                    m.remove(f);
                }
            }
        }
    }
    // deletionTimestamp and deletionGracePeriodSeconds stay; changes are refused.
    super::delete::objectmeta::prepare_update(&mut new, old);
    // `/finalize` writes what it is sent (but status): no kind rules.
    if t.subresource != Some(Subresource::Finalize) {
        t.rt.strategy.prepare_update(&mut new, old);
    }
    if new.get("spec").is_some() && new.get("spec") != old.get("spec") {
        let g = old
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(0)
            + 1;
        new["metadata"]["generation"] = json!(g);
    }
    crate::fieldmanager::on_update(t, old, &mut new, q);
    decode::validate(t, &new, Some(old))?;
    new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
    let dry_run = q.get("dryRun").is_some_and(|d| d == "All");
    // Being deleted and no finalizer left: the object goes now, with a
    // DELETED event (also heals one left behind by an older version).
    let finalized = super::delete::should_delete_during_update(t, &new, old);
    if finalized && !dry_run {
        return Ok((Write::Delete, (new, warnings)));
    }
    if new == *old || dry_run {
        // A no-op write keeps the resourceVersion.
        return Ok((Write::Keep, (new, warnings)));
    }
    // Stored without one: the revision of the write is its resourceVersion.
    if let Some(m) = new["metadata"].as_object_mut() {
        m.remove("resourceVersion");
    }
    let bytes = t.rt.to_stored(new.clone()).to_string().into_bytes();
    Ok((Write::Put(bytes), (new, warnings)))
}
