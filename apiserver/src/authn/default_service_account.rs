//! The ServiceAccount `default` of every namespace, as Kubernetes'
//! serviceaccounts controller keeps it: created for each namespace that
//! exists or appears, and again if deleted, except in a namespace being
//! deleted. Every member runs this loop; when two create the same account
//! one gets `AlreadyExists`, which is the outcome wanted.

use std::sync::{Arc, Weak};
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::http::auth::UserInfo;
use crate::registry::Registry;
use crate::registry::storage::{Consistency, EventKind, RangeRequest, StorageError, WatchMessage};
use crate::request::RequestTarget;

/// The account's name.
pub const NAME: &str = "default";

/// Pause before listing again after the watch ended or the store refused.
const RETRY: Duration = Duration::from_secs(1);

/// Keep every namespace's default ServiceAccount until the registry goes.
pub async fn run(registry: Weak<Registry>) {
    loop {
        let Some(r) = registry.upgrade() else { return };
        if let Err(e) = reconcile(&r).await {
            tracing::debug!(error = %e, "default service accounts: listing again");
        }
        drop(r);
        tokio::time::sleep(RETRY).await;
    }
}

/// One list of the namespaces, then their and the accounts' changes until
/// the watch ends.
async fn reconcile(registry: &Registry) -> Result<(), StorageError> {
    let kinds = &registry.kinds;
    let (Some(ns_type), Some(sa_type)) = (
        kinds.find("", "v1", "namespaces"),
        kinds.find("", "v1", "serviceaccounts"),
    ) else {
        return Ok(());
    };
    let list = registry
        .storage
        .list(RangeRequest::prefix(ns_type.prefix(None)))
        .await?;
    for kv in &list.kvs {
        if let Ok(ns) = serde_json::from_slice::<Value>(&kv.value) {
            ensure(registry, &ns).await?;
        }
    }
    let sa_prefix = sa_type.prefix(None);
    let namespaces = registry
        .storage
        .watch(&ns_type.prefix(None), list.revision)
        .await?;
    let accounts = registry.storage.watch(&sa_prefix, list.revision).await?;
    let mut events = futures::stream::select(namespaces, accounts);
    while let Some(msg) = events.next().await {
        let WatchMessage::Events { events, .. } = msg? else {
            continue;
        };
        for e in events {
            match e.kind {
                EventKind::Added if !e.key.starts_with(&sa_prefix) => {
                    if let Some(ns) = e
                        .value
                        .as_ref()
                        .and_then(|kv| serde_json::from_slice(&kv.value).ok())
                    {
                        ensure(registry, &ns).await?;
                    }
                }
                EventKind::Deleted if e.key.starts_with(&sa_prefix) => {
                    let Some((ns, NAME)) = e.key[sa_prefix.len()..].split_once('/') else {
                        continue;
                    };
                    let key = ns_type.key(None, ns);
                    if let Ok((kv, _)) = registry.storage.get(&key, Consistency::Linearizable).await
                        && let Ok(ns) = serde_json::from_slice::<Value>(&kv.value)
                    {
                        ensure(registry, &ns).await?;
                    }
                }
                _ => {}
            }
        }
    }
    Err(StorageError::Unavailable("the watch ended".into()))
}

/// Create `default` in the namespace `ns` (an object) unless it is being
/// deleted or the account exists. A failure that a later attempt may not
/// meet (no leader, an unknown outcome) is returned, so that the caller
/// lists again and retries; others are logged.
async fn ensure(registry: &Registry, ns: &Value) -> Result<(), StorageError> {
    if ns
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|d| !d.is_null())
    {
        return Ok(());
    }
    let Some(name) = ns.pointer("/metadata/name").and_then(Value::as_str) else {
        return Ok(());
    };
    let Some(rt) = registry.kinds.find("", "v1", "serviceaccounts") else {
        return Ok(());
    };
    // Memory first: most namespaces have their account, and each check
    // would otherwise be a write refused with AlreadyExists.
    let key = rt.key(Some(name), NAME);
    if registry.storage.get(&key, Consistency::Local).await.is_ok() {
        return Ok(());
    }
    let target = RequestTarget {
        rt: Arc::clone(&rt),
        namespace: Some(name.to_string()),
        name: None,
        subresource: None,
    };
    let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": NAME}});
    match registry
        .create_object(&target, sa, false, &controller())
        .await
    {
        Ok(_) => tracing::debug!(namespace = name, "created the default service account"),
        Err(ApiError::AlreadyExists { .. } | ApiError::NotFound { .. }) => {}
        Err(e @ (ApiError::Unavailable(_) | ApiError::StoreTimeout(_))) => {
            return Err(StorageError::Unavailable(format!(
                "creating the default service account of {name}: {e}"
            )));
        }
        Err(e) => {
            tracing::warn!(namespace = name, error = %e, "cannot create the default service account")
        }
    }
    Ok(())
}

/// Who the accounts are created by: the API server itself.
fn controller() -> UserInfo {
    UserInfo {
        name: "system:apiserver".into(),
        groups: vec!["system:masters".into(), super::AUTHENTICATED.into()],
        ..UserInfo::default()
    }
}
