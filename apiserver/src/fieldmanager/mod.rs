//! Field management, as kube-apiserver's field manager does it: who owns
//! which fields of an object (`metadata.managedFields`), kept on every
//! write, and server-side apply on top of it.
//!
//! - [`fieldset`]: sets of field paths and their `FieldsV1` wire form.
//! - [`typed`]: objects read through the schema (structs, granular maps,
//!   associative lists, sets, atomic leaves); compare, merge and prune.
//! - [`managed`]: the `managedFields` entries and the Update bookkeeping.
//! - [`apply`]: the Apply operation: merge, ownership, removal of fields a
//!   manager stopped applying; [`conflicts`] says who else owns what.
//!
//! The registry calls in at three places: [`request_query`] when a write
//! arrives (who the manager is), [`on_create`] in create and [`on_update`]
//! in the one guaranteed-update path; `registry::apply` serves the
//! `application/apply-patch+yaml` PATCH with [`apply::apply`].

pub mod apply;
pub mod conflicts;
pub mod fieldset;
pub mod managed;
pub mod typed;

use axum::http::{HeaderMap, header};
use serde_json::{Value, json};

use crate::error::{ApiError, Cause};
use crate::request::{Query, RequestTarget};
use fieldset::FieldSet;
use managed::{Entry, Operation};
use typed::Sch;

/// Internal query keys (a NUL cannot come from a client: [`request_query`]
/// drops any such key): the manager of the write, its subresource, and
/// that the object's managedFields were already made by an apply.
pub const MANAGER: &str = "\0manager";
pub const SUBRESOURCE: &str = "\0subresource";
pub const APPLIED: &str = "\0applied";

/// The manager of writes that come from inside the server.
pub const SERVER_MANAGER: &str = "keel";

/// The longest manager name Kubernetes accepts.
const MAX_MANAGER: usize = 128;

/// The query of a write with the field manager resolved: `fieldManager`,
/// or else the User-Agent up to its first '/', as Kubernetes does; and the
/// subresource written.
pub fn request_query(q: &Query, headers: &HeaderMap, t: &RequestTarget) -> Query {
    let mut out: Query = q
        .iter()
        .filter(|(k, _)| !k.starts_with('\0'))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let manager = match q.get("fieldManager").filter(|m| !m.is_empty()) {
        Some(m) => m.clone(),
        None => headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|ua| {
                ua.split('/')
                    .next()
                    .unwrap_or("")
                    .chars()
                    .take(MAX_MANAGER)
                    .collect()
            })
            .unwrap_or_default(),
    };
    out.insert(MANAGER.into(), manager);
    if let Some(s) = t.subresource {
        out.insert(SUBRESOURCE.into(), s.name().into());
    }
    out
}

/// Whether a PATCH is a server-side apply (`application/apply-patch+yaml`).
pub fn is_apply_patch(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|ct| {
            ct.trim()
                .eq_ignore_ascii_case("application/apply-patch+yaml")
        })
}

/// An explicit `fieldManager` must be at most 128 printable characters.
pub fn check_manager(q: &Query) -> Result<(), ApiError> {
    let Some(m) = q.get("fieldManager") else {
        return Ok(());
    };
    let why = if m.len() > MAX_MANAGER {
        format!("Too long: may not be more than {MAX_MANAGER} bytes")
    } else if m.chars().any(|c| c.is_control()) {
        format!("Invalid value: {m:?}: must only contain printable characters")
    } else {
        return Ok(());
    };
    Err(patch_options_invalid(Cause::invalid("fieldManager", why)))
}

/// The 422 Kubernetes answers for bad write options.
pub fn patch_options_invalid(cause: Cause) -> ApiError {
    ApiError::Invalid {
        group: "meta.k8s.io".into(),
        kind: "PatchOptions".into(),
        name: String::new(),
        causes: vec![cause],
    }
}

/// The API version a write to `t` uses (`v1`, `apps/v1`).
pub fn api_version(t: &RequestTarget) -> String {
    if t.rt.group.is_empty() {
        t.rt.version.clone()
    } else {
        format!("{}/{}", t.rt.group, t.rt.version)
    }
}

/// The schema root of `t`'s kind: a custom resource version's structural
/// schema, else the built-in kind's.
pub fn schema_of(t: &RequestTarget) -> Sch<'_> {
    match &t.rt.structural {
        Some(s) => Sch::Crd(s.root()),
        None => typed::root(&t.rt.group, &t.rt.version, &t.rt.kind),
    }
}

fn manager(q: &Query) -> String {
    q.get(MANAGER)
        .cloned()
        .unwrap_or_else(|| SERVER_MANAGER.to_string())
}

fn subresource(q: &Query) -> String {
    q.get(SUBRESOURCE).cloned().unwrap_or_default()
}

/// Remove from `set` the fields nobody owns (identity and system metadata,
/// managedFields itself) and those a write to `subresource` of a kind with
/// a status subresource cannot change.
pub fn strip(set: &mut FieldSet, t: &RequestTarget, subresource: &str) {
    for f in ["f:apiVersion", "f:kind"] {
        set.children.remove(f);
    }
    if let Some(meta) = set.children.get_mut("f:metadata") {
        for f in [
            "name",
            "namespace",
            "uid",
            "resourceVersion",
            "generation",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "managedFields",
            "selfLink",
        ] {
            meta.children.remove(&fieldset::field(f));
        }
        if meta.is_empty() {
            set.children.remove("f:metadata");
        }
    }
    if t.rt.has(crate::kinds::Subresource::Status) {
        match subresource {
            "status" => {
                set.children
                    .retain(|k, _| k == "f:status" || k == "f:metadata");
            }
            _ => {
                set.children.remove("f:status");
            }
        }
    }
    set.member = false;
}

fn without_managed_fields(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("managedFields");
    }
    v
}

fn now() -> String {
    crate::meta::rfc3339(crate::meta::now_secs())
}

/// Called by create with the prepared object: its creator owns all of it
/// (an Update). An apply that creates has set its own entries.
pub fn on_create(t: &RequestTarget, obj: &mut Value, q: &Query) {
    if q.contains_key(APPLIED) {
        return;
    }
    let sub = subresource(q);
    let mut set = managed::whole(&schema_of(t), &without_managed_fields(obj));
    strip(&mut set, t, &sub);
    let me = Entry {
        manager: manager(q),
        operation: Operation::Update,
        api_version: api_version(t),
        subresource: sub,
        time: None,
        set,
    };
    managed::encode(obj, vec![me], &now());
}

/// Called by the guaranteed update with the prepared new object: the
/// writer takes the fields it changed, the others lose them. Entries the
/// client sent are used instead of the stored ones (a client may rewrite
/// managedFields; `[{}]` clears them), unless they do not decode or the
/// write is to a subresource. An apply has set its own entries.
pub fn on_update(t: &RequestTarget, old: &Value, new: &mut Value, q: &Query) {
    if q.contains_key(APPLIED) {
        return;
    }
    let sub = subresource(q);
    let stored = managed::decode(old).unwrap_or_default();
    let given = new.pointer("/metadata/managedFields").cloned();
    let mut entries = match given {
        Some(Value::Array(items)) if !items.is_empty() && sub.is_empty() => {
            if items.iter().all(|i| i == &json!({})) {
                Vec::new()
            } else {
                managed::decode(new).unwrap_or(stored)
            }
        }
        _ => stored,
    };
    let (o, n) = (without_managed_fields(old), without_managed_fields(new));
    let mut cmp = typed::compare(&schema_of(t), &o, &n);
    for s in [&mut cmp.added, &mut cmp.modified, &mut cmp.removed] {
        strip(s, t, &sub);
    }
    let me = Entry {
        manager: manager(q),
        operation: Operation::Update,
        api_version: api_version(t),
        subresource: sub,
        time: None,
        set: FieldSet::default(),
    };
    managed::record_update(&mut entries, me, &cmp);
    managed::encode(new, entries, &now());
}

#[cfg(test)]
mod crd_tests;
#[cfg(test)]
mod tests;
