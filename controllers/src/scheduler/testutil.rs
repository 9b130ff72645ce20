//! Builders of nodes, pods and volume listings for the scheduler's table tests.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use serde_json::{Value, json};

use super::volumes::VolumeLister;
use crate::persistentvolume::matching::ClaimKey;

/// A Ready node with `cpu` and `memory` allocatable, 110 pods, its
/// hostname label and `extra` labels; `patch` is merged into its JSON.
pub fn node(name: &str, cpu: &str, memory: &str, extra: &[(&str, &str)], patch: Value) -> Node {
    let mut labels: BTreeMap<String, String> =
        [("kubernetes.io/hostname".to_string(), name.to_string())].into();
    for (k, v) in extra {
        labels.insert(k.to_string(), v.to_string());
    }
    let mut v = json!({
        "metadata": {"name": name, "labels": labels},
        "spec": {},
        "status": {
            "allocatable": {"cpu": cpu, "memory": memory, "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    });
    merge(&mut v, patch);
    serde_json::from_value(v).unwrap()
}

/// A pod in namespace `ns` with one container requesting `cpu` and
/// `memory` ("" for none); `patch` is merged into its JSON.
pub fn pod(name: &str, cpu: &str, memory: &str, patch: Value) -> Pod {
    let mut requests = serde_json::Map::new();
    if !cpu.is_empty() {
        requests.insert("cpu".into(), json!(cpu));
    }
    if !memory.is_empty() {
        requests.insert("memory".into(), json!(memory));
    }
    let mut v = json!({
        "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}")},
        "spec": {"containers": [{"name": "c", "resources": {"requests": requests}}]},
    });
    merge(&mut v, patch);
    serde_json::from_value(v).unwrap()
}

/// JSON merge patch (RFC 7386) of `patch` into `v`.
pub fn merge(v: &mut Value, patch: Value) {
    match patch {
        Value::Object(p) => {
            if !v.is_object() {
                *v = json!({});
            }
            let o = v.as_object_mut().unwrap();
            for (k, pv) in p {
                if pv.is_null() {
                    o.remove(&k);
                } else {
                    merge(o.entry(k).or_insert(Value::Null), pv);
                }
            }
        }
        p => *v = p,
    }
}

/// An in-memory [`VolumeLister`].
#[derive(Default)]
pub struct Volumes {
    pub claims: Vec<PersistentVolumeClaim>,
    pub volumes: Vec<Arc<PersistentVolume>>,
    pub classes: Vec<StorageClass>,
    pub reserved: HashMap<String, ClaimKey>,
}

impl VolumeLister for Volumes {
    fn claim(&self, namespace: &str, name: &str) -> Option<Arc<PersistentVolumeClaim>> {
        self.claims
            .iter()
            .find(|c| {
                c.metadata.namespace.as_deref() == Some(namespace)
                    && c.metadata.name.as_deref() == Some(name)
            })
            .cloned()
            .map(Arc::new)
    }
    fn volume(&self, name: &str) -> Option<Arc<PersistentVolume>> {
        self.volumes
            .iter()
            .find(|v| v.metadata.name.as_deref() == Some(name))
            .cloned()
    }
    fn class(&self, name: &str) -> Option<Arc<StorageClass>> {
        self.classes
            .iter()
            .find(|c| c.metadata.name.as_deref() == Some(name))
            .cloned()
            .map(Arc::new)
    }
    fn volumes(&self) -> Vec<Arc<PersistentVolume>> {
        self.volumes.clone()
    }
    fn reserved_for(&self, volume: &str) -> Option<ClaimKey> {
        self.reserved.get(volume).cloned()
    }
}

/// A StorageClass with `mode` (Immediate or WaitForFirstConsumer).
pub fn class(name: &str, mode: &str) -> StorageClass {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "provisioner": "kubernetes.io/no-provisioner",
        "volumeBindingMode": mode,
    }))
    .unwrap()
}

/// A claim `name` in namespace `ns` for `size` of `class`, bound to `volume` if given.
pub fn claim(name: &str, size: &str, class: &str, volume: Option<&str>) -> PersistentVolumeClaim {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}")},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": class,
            "resources": {"requests": {"storage": size}},
            "volumeName": volume,
        },
    }))
    .unwrap()
}

/// An Available local volume of `size` and `class` on `node`.
pub fn local_volume(name: &str, size: &str, class: &str, node: &str) -> Arc<PersistentVolume> {
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {
                "capacity": {"storage": size},
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": class,
                "local": {"path": "/mnt/disk"},
                "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}
                ]}]}},
            },
            "status": {"phase": "Available"},
        }))
        .unwrap(),
    )
}

/// The pod patch that mounts `claims`.
pub fn with_claims(claims: &[&str]) -> Value {
    let vols: Vec<Value> = claims
        .iter()
        .map(|c| json!({"name": c, "persistentVolumeClaim": {"claimName": c}}))
        .collect();
    json!({"spec": {"volumes": vols}})
}
