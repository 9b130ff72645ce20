//! The delete verbs, as kube-apiserver's generic store runs them: one
//! object and a collection. One DELETE reads its options ([`options`]),
//! checks the preconditions, runs admission, then in one read-modify-write
//! decides: mark the object (graceful pods, [`graceful`]; finalizers,
//! including the GC ones the propagation policy adds, [`propagation`]),
//! leave it (already terminating), or remove it. Namespaces have their own
//! lifecycle ([`namespace`]); the ObjectMeta rules every update enforces on
//! the deletion fields are in [`objectmeta`].
//!
//! Answers: 200 with the object while its deletion is pending; once removed,
//! 200 with the object for the kinds Kubernetes returns it for
//! (`ReturnDeletedObject`), else a `Status` Success naming it; 202 only for
//! a pending deletion that set `orphanDependents: false`.

mod graceful;
mod namespace;
pub(super) mod objectmeta;
mod options;
mod propagation;
#[cfg(test)]
mod tests;

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::storage::{self, RangeRequest, UpdateError, Write, Written};
use super::{Registry, storage_error};
use crate::admission;
use crate::error::ApiError;
use crate::http::auth::UserInfo;
use crate::meta;
use crate::request::{Query, RequestTarget};
use crate::response;
use crate::selector::Selector;
use graceful::Before;

pub(super) use graceful::should_delete_during_update;
pub use options::DeleteOptions;

/// What one DELETE did.
pub(super) struct Outcome {
    /// The object to answer with: as marked, or as it was when removed.
    object: Value,
    /// Whether the object is gone.
    removed: bool,
}

/// What the read-modify-write of a DELETE decided.
enum Step {
    /// Already terminating and not shortened: nothing changes.
    Pending(Value),
    /// Marked (or re-marked) for deletion, and kept.
    Marked(Value),
    /// Removed now.
    Remove(Value),
    /// Marked with no grace and no finalizer: written, then removed (a pod
    /// deleted with grace 0, as kube-apiserver writes it).
    MarkThenRemove(Value),
}

/// The stored form of `obj`: without `resourceVersion` (the write's
/// revision is its resourceVersion).
fn stored(t: &RequestTarget, obj: &Value) -> Vec<u8> {
    let mut obj = t.rt.to_stored(obj.clone());
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
    }
    obj.to_string().into_bytes()
}

/// Whether Kubernetes answers a completed DELETE of `t` with the object
/// (its stores with `ReturnDeletedObject`, and custom resources) rather
/// than a `Status`.
fn returns_deleted_object(t: &RequestTarget) -> bool {
    match (t.rt.group.as_str(), t.rt.plural.as_str()) {
        ("", p) => matches!(p, "pods" | "services" | "namespaces" | "serviceaccounts"),
        ("storage.k8s.io", p) => matches!(
            p,
            "storageclasses" | "csidrivers" | "csinodes" | "volumeattachments"
        ),
        ("apiextensions.k8s.io", p) => p == "customresourcedefinitions",
        (g, _) => {
            !(g.ends_with(".k8s.io") || matches!(g, "apps" | "batch" | "autoscaling" | "policy"))
        }
    }
}

/// The HTTP answer to one DELETE.
fn answer(t: &RequestTarget, opts: &DeleteOptions, outcome: Outcome) -> Response {
    let code = if !outcome.removed && opts.accepted_when_pending() {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    if outcome.removed && !returns_deleted_object(t) {
        let o = &outcome.object;
        return response::json(
            code,
            &json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                "details": {
                    "name": o.pointer("/metadata/name"),
                    "group": t.rt.group,
                    "kind": t.rt.plural,
                    "uid": o.pointer("/metadata/uid"),
                },
            }),
        );
    }
    response::json(code, &outcome.object)
}

impl Registry {
    /// DELETE of an object.
    pub(super) async fn delete(
        &self,
        t: &RequestTarget,
        name: &str,
        q: &Query,
        body: Bytes,
        user: &UserInfo,
    ) -> Result<Response, ApiError> {
        if body.len() > super::MAX_BODY {
            return Err(ApiError::TooLarge {
                size: body.len(),
                limit: super::MAX_BODY,
            });
        }
        let opts = DeleteOptions::from_request(&body, q)?;
        let outcome = if namespace::is_namespace(t) {
            self.delete_namespace(t, name, &opts, user).await?
        } else {
            self.delete_object(t, name, &opts, user).await?
        };
        Ok(answer(t, &opts, outcome))
    }

    /// The generic store's DELETE of one object (see the module notes).
    pub(super) async fn delete_object(
        &self,
        t: &RequestTarget,
        name: &str,
        opts: &DeleteOptions,
        user: &UserInfo,
    ) -> Result<Outcome, ApiError> {
        let (_, obj) = self.current(t, name).await?;
        // Checked before admission too, so a stale client fails early.
        graceful::check_preconditions(t, name, &obj, opts)?;
        self.admit(&admission::Attributes {
            user,
            operation: admission::Operation::Delete,
            target: t,
            name,
            object: None,
            old: Some(&obj),
        })?;
        let key = t.rt.key(t.namespace.as_deref(), name);
        let now = meta::now_secs();
        let dry_run = opts.dry_run();
        let actor = user.actor();
        let attempt = storage::guaranteed_update(&*self.storage, &key, &actor, |kv| {
            let old = t.rt.served(self.decode(kv)?);
            graceful::check_preconditions(t, name, &old, opts)?;
            let mut obj = old.clone();
            let before = graceful::before_delete(t, &mut obj, opts, now);
            if before == Before::Pending {
                return Ok((Write::Keep, Step::Pending(old)));
            }
            // The kind's own step on the first DELETE (a CRD's cleanup finalizer).
            if !graceful::is_deleting(&old) {
                t.rt.strategy.prepare_delete(&mut obj);
            }
            let current = propagation::finalizers(&obj);
            if let Some(f) = propagation::after_delete(opts, &current) {
                obj["metadata"]["finalizers"] = json!(f);
            }
            let held = !propagation::finalizers(&obj).is_empty();
            let step = match before {
                Before::NotGraceful if held => {
                    graceful::mark_as_deleting(&mut obj, now);
                    Step::Marked(obj)
                }
                Before::NotGraceful => Step::Remove(old.clone()),
                Before::Graceful { period } if held || period > 0 => Step::Marked(obj),
                Before::Graceful { .. } | Before::Pending => Step::MarkThenRemove(obj),
            };
            let write = match &step {
                _ if dry_run => Write::Keep,
                Step::Remove(_) => Write::Delete,
                Step::Marked(o) | Step::MarkThenRemove(o) if *o != old => Write::Put(stored(t, o)),
                _ => Write::Keep,
            };
            Ok((write, step))
        })
        .await;
        let (step, written) = attempt.map_err(|e| match e {
            UpdateError::Rejected(e) => e,
            UpdateError::Storage(e) => storage_error(t, name, e),
        })?;
        let with_revision = |mut o: Value| {
            if let Written::Put { revision } = written {
                o["metadata"]["resourceVersion"] = json!(revision.to_string());
            }
            o
        };
        Ok(match step {
            Step::Pending(o) | Step::Marked(o) => Outcome {
                object: with_revision(o),
                removed: false,
            },
            Step::Remove(o) => {
                if !dry_run {
                    self.removed(t, &o).await;
                }
                Outcome {
                    object: o,
                    removed: true,
                }
            }
            Step::MarkThenRemove(o) => {
                let o = with_revision(o);
                if !dry_run {
                    self.remove_marked(t, name, &o, &actor).await?;
                    self.removed(t, &o).await;
                }
                Outcome {
                    object: o,
                    removed: true,
                }
            }
        })
    }

    /// What an object's removal frees besides its key: a Service's
    /// cluster IP and node ports ([`super::services`]).
    pub(super) async fn removed(&self, t: &RequestTarget, obj: &Value) {
        if super::services::is_service(t) {
            self.release_service(obj).await;
        }
    }

    /// The second write of [`Step::MarkThenRemove`]: remove the object if it
    /// is still the one marked. Another writer may have removed it first
    /// (its node confirming, say): that is the outcome asked for.
    async fn remove_marked(
        &self,
        t: &RequestTarget,
        name: &str,
        marked: &Value,
        actor: &keel_store::Actor,
    ) -> Result<(), ApiError> {
        let key = t.rt.key(t.namespace.as_deref(), name);
        let uid = marked.pointer("/metadata/uid").cloned();
        let attempt = storage::guaranteed_update(&*self.storage, &key, actor, |kv| {
            let now = t.rt.served(self.decode(kv)?);
            let write = if now.pointer("/metadata/uid").cloned() == uid {
                Write::Delete
            } else {
                Write::Keep
            };
            Ok::<_, ApiError>((write, ()))
        })
        .await;
        match attempt {
            Ok(_) | Err(UpdateError::Storage(storage::StorageError::NotFound { .. })) => Ok(()),
            Err(UpdateError::Rejected(e)) => Err(e),
            Err(UpdateError::Storage(e)) => Err(storage_error(t, name, e)),
        }
    }

    /// DELETE of a collection: each selected object as a DELETE of it, with
    /// the request's options. Namespaces are not deleted as a collection.
    pub(super) async fn delete_collection(
        &self,
        t: &RequestTarget,
        q: &Query,
        body: Bytes,
        user: &UserInfo,
    ) -> Result<Response, ApiError> {
        if namespace::is_namespace(t) {
            return Err(ApiError::MethodNotAllowed);
        }
        if body.len() > super::MAX_BODY {
            return Err(ApiError::TooLarge {
                size: body.len(),
                limit: super::MAX_BODY,
            });
        }
        let opts = DeleteOptions::from_request(&body, q)?;
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
                match self.delete_object(&target, &name, &opts, user).await {
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
