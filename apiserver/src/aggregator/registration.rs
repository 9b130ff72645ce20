//! The APIServices the aggregator knows: each stored `APIService` read into
//! a [`Registration`] (what to proxy where, and how to trust it), kept in an
//! index by group and version that a watch of the stored objects keeps
//! current, so that routing a request never reads the store.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use base64::Engine;
use futures::StreamExt;
use serde_json::Value;

use crate::registry::Registry;
use crate::registry::storage::{EventKind, RangeRequest, StorageError, WatchMessage};

/// The annotation that names an extension server's address directly
/// (`host:port`), for clusters where no Endpoints object is kept for it.
pub const BACKEND_ANNOTATION: &str = "keel.dev/backend";

/// `spec.service` of an APIService.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceRef {
    pub namespace: String,
    pub name: String,
    pub port: u16,
}

impl ServiceRef {
    /// The DNS name the extension server's certificate is verified for.
    pub fn dns_name(&self) -> String {
        format!("{}.{}.svc", self.name, self.namespace)
    }
}

/// One APIService, as the proxy and the availability controller use it.
#[derive(Clone, Debug, PartialEq)]
pub struct Registration {
    /// `version.group`.
    pub name: String,
    pub group: String,
    pub version: String,
    /// `None`: served by this server (a local APIService).
    pub service: Option<ServiceRef>,
    /// PEM (or DER) certificates the extension server's chain must lead to.
    pub ca_bundle: Vec<u8>,
    pub insecure_skip_tls_verify: bool,
    /// The [`BACKEND_ANNOTATION`], when set.
    pub backend: Option<String>,
    pub group_priority: i64,
    pub version_priority: i64,
    /// The stored `Available` condition: `Some(true)` when it is `True`.
    pub available: Option<bool>,
    /// The stored conditions, for the controller to keep transition times.
    pub conditions: Vec<Value>,
}

impl Registration {
    /// The registration of a stored APIService; `None` when it lacks a
    /// group version (validation refuses those; an object written around
    /// the API is skipped).
    pub fn from_object(obj: &Value) -> Option<Registration> {
        let s = |p: &str| obj.pointer(p).and_then(Value::as_str).unwrap_or_default();
        let (name, group, version) = (s("/metadata/name"), s("/spec/group"), s("/spec/version"));
        if version.is_empty() || name.is_empty() {
            return None;
        }
        let service = obj
            .pointer("/spec/service")
            .filter(|v| v.is_object())
            .map(|svc| ServiceRef {
                namespace: svc["namespace"].as_str().unwrap_or_default().to_string(),
                name: svc["name"].as_str().unwrap_or_default().to_string(),
                port: svc["port"]
                    .as_u64()
                    .and_then(|p| u16::try_from(p).ok())
                    .unwrap_or(443),
            });
        // caBundle is bytes: base64 in JSON.
        let ca_bundle = base64::engine::general_purpose::STANDARD
            .decode(s("/spec/caBundle"))
            .unwrap_or_default();
        let conditions: Vec<Value> = obj
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let available = conditions
            .iter()
            .find(|c| c["type"] == "Available")
            .map(|c| c["status"] == "True");
        Some(Registration {
            name: name.to_string(),
            group: group.to_string(),
            version: version.to_string(),
            service,
            ca_bundle,
            insecure_skip_tls_verify: obj.pointer("/spec/insecureSkipTLSVerify")
                == Some(&Value::Bool(true)),
            backend: obj
                .pointer("/metadata/annotations")
                .and_then(|a| a.get(BACKEND_ANNOTATION))
                .and_then(Value::as_str)
                .map(str::to_string),
            group_priority: obj
                .pointer("/spec/groupPriorityMinimum")
                .and_then(Value::as_i64)
                .unwrap_or(0),
            version_priority: obj
                .pointer("/spec/versionPriority")
                .and_then(Value::as_i64)
                .unwrap_or(0),
            available,
            conditions,
        })
    }

    /// Whether requests for this group version go to an extension server.
    pub fn is_remote(&self) -> bool {
        self.service.is_some()
    }
}

/// Every APIService by name, kept current from the store.
#[derive(Default)]
pub struct Index {
    by_name: RwLock<BTreeMap<String, Arc<Registration>>>,
    /// Woken on every change, so the availability controller checks a new
    /// or changed APIService at once instead of at its next round.
    pub changed: tokio::sync::Notify,
}

impl Index {
    /// The registration serving `group`/`version` from an extension server.
    pub fn remote(&self, group: &str, version: &str) -> Option<Arc<Registration>> {
        self.read()
            .values()
            .find(|r| r.group == group && r.version == version && r.is_remote())
            .cloned()
    }

    /// Every registration, by name.
    pub fn all(&self) -> Vec<Arc<Registration>> {
        self.read().values().cloned().collect()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<Registration>>> {
        self.by_name
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Arc<Registration>>> {
        self.by_name
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Put the APIService `obj` (stored form) in the index; true when what
    /// the proxy or the controller acts on changed.
    pub fn put(&self, obj: &Value) -> bool {
        let Some(r) = Registration::from_object(obj) else {
            return false;
        };
        let mut map = self.write();
        let same = map.get(&r.name).is_some_and(|old| **old == r);
        if !same {
            map.insert(r.name.clone(), Arc::new(r));
        }
        !same
    }

    pub fn remove(&self, name: &str) -> bool {
        self.write().remove(name).is_some()
    }

    /// Replace the whole index with `objs`.
    fn reset(&self, objs: impl Iterator<Item = Value>) {
        let map = objs
            .filter_map(|o| Registration::from_object(&o))
            .map(|r| (r.name.clone(), Arc::new(r)))
            .collect();
        *self.write() = map;
    }
}

/// Keep `index` current until the registry goes: list the APIServices,
/// then follow their changes; list again when the watch ends.
pub async fn follow(registry: Weak<Registry>, index: Arc<Index>) {
    loop {
        let Some(r) = registry.upgrade() else { return };
        if let Err(e) = follow_once(&r, &index).await {
            tracing::debug!(error = %e, "apiservices: listing again");
        }
        drop(r);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn follow_once(registry: &Registry, index: &Index) -> Result<(), StorageError> {
    let Some(rt) = registry
        .kinds
        .find("apiregistration.k8s.io", "v1", "apiservices")
    else {
        return Ok(());
    };
    let prefix = rt.prefix(None);
    let list = registry
        .storage
        .list(RangeRequest::prefix(prefix.clone()))
        .await?;
    index.reset(
        list.kvs
            .iter()
            .filter_map(|kv| serde_json::from_slice::<Value>(&kv.value).ok()),
    );
    index.changed.notify_one();
    let mut events = registry.storage.watch(&prefix, list.revision).await?;
    while let Some(msg) = events.next().await {
        let WatchMessage::Events { events, .. } = msg? else {
            continue;
        };
        let mut changed = false;
        for e in events {
            match e.kind {
                EventKind::Deleted => {
                    changed |= index.remove(e.key.strip_prefix(&prefix).unwrap_or(&e.key))
                }
                _ => {
                    if let Some(obj) = e
                        .value
                        .as_ref()
                        .and_then(|kv| serde_json::from_slice::<Value>(&kv.value).ok())
                    {
                        changed |= index.put(&obj);
                    }
                }
            }
        }
        if changed {
            index.changed.notify_one();
        }
    }
    Err(StorageError::Unavailable("the watch ended".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn wardle(extra: Value) -> Value {
        let mut o = json!({
            "metadata": {"name": "v1alpha1.wardle.example.com"},
            "spec": {"group": "wardle.example.com", "version": "v1alpha1",
                "groupPriorityMinimum": 1000, "versionPriority": 15,
                "service": {"namespace": "wardle", "name": "api", "port": 8443},
                "caBundle": base64::engine::general_purpose::STANDARD.encode("PEM")},
        });
        if let (Some(o), Some(e)) = (o.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                o.insert(k.clone(), v.clone());
            }
        }
        o
    }

    #[test]
    fn an_apiservice_reads_into_where_and_how_to_proxy() {
        let r = Registration::from_object(&wardle(json!({}))).unwrap();
        assert_eq!(
            r.service,
            Some(ServiceRef {
                namespace: "wardle".into(),
                name: "api".into(),
                port: 8443
            })
        );
        assert_eq!(r.service.as_ref().unwrap().dns_name(), "api.wardle.svc");
        assert_eq!(r.ca_bundle, b"PEM");
        assert_eq!((r.available, r.backend.as_deref()), (None, None));
        let r = Registration::from_object(&wardle(json!({
            "metadata": {"name": "v1alpha1.wardle.example.com",
                "annotations": {BACKEND_ANNOTATION: "127.0.0.1:9443"}},
            "status": {"conditions": [{"type": "Available", "status": "True"}]},
        })))
        .unwrap();
        assert_eq!(
            (r.available, r.backend.as_deref()),
            (Some(true), Some("127.0.0.1:9443"))
        );
        let local =
            json!({"metadata": {"name": "v1.apps"}, "spec": {"group": "apps", "version": "v1"}});
        assert!(!Registration::from_object(&local).unwrap().is_remote());
    }

    #[test]
    fn the_index_finds_remote_group_versions_and_reports_changes() {
        let index = Index::default();
        assert!(index.put(&wardle(json!({}))));
        assert!(!index.put(&wardle(json!({}))), "the same object again");
        assert!(index.remote("wardle.example.com", "v1alpha1").is_some());
        assert!(index.remote("wardle.example.com", "v1").is_none());
        index.put(
            &json!({"metadata": {"name": "v1.apps"}, "spec": {"group": "apps", "version": "v1"}}),
        );
        assert!(
            index.remote("apps", "v1").is_none(),
            "local ones are not proxied"
        );
        assert!(index.remove("v1alpha1.wardle.example.com"));
        assert!(index.remote("wardle.example.com", "v1alpha1").is_none());
    }
}
