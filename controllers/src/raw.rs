//! The few calls the controllers make on objects of any resource, on raw
//! JSON so that nothing of an object is lost in a round trip: GET, DELETE
//! with a uid (and resourceVersion) precondition, and JSON patches guarded
//! by `test` operations, so that a write based on a stale read fails
//! instead of clobbering a concurrent change.

use kube::Client;
use kube::api::GetParams;
use kube::api::{Api, DeleteParams, DynamicObject, Preconditions, PropagationPolicy};
use serde_json::{Value, json};

use crate::discovery::ResourceInfo;
use crate::{Error, status_code};

/// An API handle for `info`, in `namespace` when the resource is namespaced.
pub(crate) fn api(
    client: &Client,
    info: &ResourceInfo,
    namespace: Option<&str>,
) -> Api<DynamicObject> {
    match (info.namespaced, namespace) {
        (true, Some(ns)) => Api::namespaced_with(client.clone(), ns, &info.ar),
        _ => Api::all_with(client.clone(), &info.ar),
    }
}

/// The object as stored, or `None` when it does not exist (404).
pub(crate) async fn get(
    client: &Client,
    info: &ResourceInfo,
    namespace: Option<&str>,
    name: &str,
) -> Result<Option<Value>, Error> {
    let url = api(client, info, namespace).resource_url().to_string();
    let req = kube::core::Request::new(url)
        .get(name, &GetParams::default())
        .map_err(|e| Error::Invalid(e.to_string()))?;
    match client.request::<Value>(req).await {
        Ok(v) => Ok(Some(v)),
        Err(e) if status_code(&e) == Some(404) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// What a guarded delete came to.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Deleted {
    /// Deleted, or marked for deletion.
    Done,
    /// Already gone.
    Gone,
    /// The object changed (or was replaced) since it was read: look again.
    Changed,
}

/// DELETE `name` only if it is still the object with `uid` (and, when
/// given, at `resource_version`).
pub(crate) async fn delete(
    client: &Client,
    info: &ResourceInfo,
    namespace: Option<&str>,
    name: &str,
    uid: &str,
    resource_version: Option<&str>,
    policy: PropagationPolicy,
) -> Result<Deleted, Error> {
    let dp = DeleteParams {
        propagation_policy: Some(policy),
        preconditions: Some(Preconditions {
            uid: Some(uid.to_string()),
            resource_version: resource_version.map(str::to_string),
        }),
        ..Default::default()
    };
    match api(client, info, namespace).delete(name, &dp).await {
        Ok(_) => Ok(Deleted::Done),
        Err(e) if status_code(&e) == Some(404) => Ok(Deleted::Gone),
        Err(e) if status_code(&e) == Some(409) => Ok(Deleted::Changed),
        Err(e) => Err(e.into()),
    }
}

/// What a guarded patch came to.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Patched {
    Done,
    Gone,
    /// A `test` failed (422) or the write conflicted: read again.
    Changed,
}

/// A list of `metadata` (`finalizers`, `ownerReferences`) to change from
/// `old` (`None`: absent) to `new` (empty: remove the field).
pub(crate) struct ListChange<'a> {
    pub field: &'a str,
    pub old: Option<&'a Value>,
    pub new: Vec<Value>,
}

/// Make `change`, only if the object still has `uid` and the field still
/// holds the old value.
pub(crate) async fn replace_metadata_list(
    client: &Client,
    info: &ResourceInfo,
    namespace: Option<&str>,
    name: &str,
    uid: &str,
    change: ListChange<'_>,
) -> Result<Patched, Error> {
    let ListChange { field, old, new } = change;
    let path = format!("/metadata/{field}");
    let mut ops = vec![json!({"op": "test", "path": "/metadata/uid", "value": uid})];
    match old {
        Some(old) => ops.push(json!({"op": "test", "path": path, "value": old})),
        None if new.is_empty() => return Ok(Patched::Done),
        None => {}
    }
    match (old.is_some(), new.is_empty()) {
        (true, true) => ops.push(json!({"op": "remove", "path": path})),
        (true, false) => ops.push(json!({"op": "replace", "path": path, "value": new})),
        (false, _) => ops.push(json!({"op": "add", "path": path, "value": new})),
    }
    let url = format!("{}/{name}", api(client, info, namespace).resource_url());
    let req = http::Request::patch(url)
        .header(http::header::CONTENT_TYPE, "application/json-patch+json")
        .body(serde_json::to_vec(&ops).map_err(|e| Error::Invalid(e.to_string()))?)
        .map_err(|e| Error::Invalid(e.to_string()))?;
    match client.request::<Value>(req).await {
        Ok(_) => Ok(Patched::Done),
        Err(e) if status_code(&e) == Some(404) => Ok(Patched::Gone),
        Err(e) if matches!(status_code(&e), Some(409 | 422)) => Ok(Patched::Changed),
        Err(e) => Err(e.into()),
    }
}

/// The strings of `/metadata/finalizers`.
pub(crate) fn finalizers(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|f| f.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Remove finalizer `name` from the object (read fresh), retrying a few
/// times on conflicts; `Ok(false)` when the object is gone or never had it.
pub(crate) async fn remove_finalizer(
    client: &Client,
    info: &ResourceInfo,
    namespace: Option<&str>,
    obj_name: &str,
    uid: &str,
    finalizer: &str,
) -> Result<bool, Error> {
    for _ in 0..5 {
        let Some(obj) = get(client, info, namespace, obj_name).await? else {
            return Ok(false);
        };
        if obj.pointer("/metadata/uid").and_then(Value::as_str) != Some(uid) {
            return Ok(false);
        }
        let old = obj.pointer("/metadata/finalizers");
        let current = finalizers(&obj);
        if !current.iter().any(|f| f == finalizer) {
            return Ok(false);
        }
        let new: Vec<Value> = current
            .into_iter()
            .filter(|f| f != finalizer)
            .map(Value::String)
            .collect();
        match replace_metadata_list(
            client,
            info,
            namespace,
            obj_name,
            uid,
            ListChange {
                field: "finalizers",
                old,
                new,
            },
        )
        .await?
        {
            Patched::Done => return Ok(true),
            Patched::Gone => return Ok(false),
            Patched::Changed => continue,
        }
    }
    Err(Error::Invalid(format!(
        "removing finalizer {finalizer} from {obj_name}: the object kept changing"
    )))
}
