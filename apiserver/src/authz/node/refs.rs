//! What a pod references, read from its JSON: the Secrets, ConfigMaps,
//! PersistentVolumeClaims and ServiceAccount a node needs to run it, as
//! Kubernetes' pod visitors enumerate them. The node graph reads pods
//! through [`super::projection`], so a field read here must be kept there
//! too; its test compares the two readings.

use serde_json::Value;

/// The kind of an object a pod can reference (a vertex of the node graph).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RefKind {
    Secret,
    ConfigMap,
    PersistentVolumeClaim,
    ServiceAccount,
}

/// The objects one pod references, in its namespace, each name once.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodRefs(pub Vec<(RefKind, String)>);

impl PodRefs {
    fn add(&mut self, kind: RefKind, name: Option<&str>) {
        if let Some(name) = name.filter(|n| !n.is_empty())
            && !self.has(kind, name)
        {
            self.0.push((kind, name.to_string()));
        }
    }

    pub fn has(&self, kind: RefKind, name: &str) -> bool {
        self.0.iter().any(|(k, n)| *k == kind && n == name)
    }

    /// Whether any reference is of `kind`.
    pub fn any(&self, kind: RefKind) -> bool {
        self.0.iter().any(|(k, _)| *k == kind)
    }
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

fn items<'a>(v: &'a Value, pointer: &str) -> impl Iterator<Item = &'a Value> {
    v.pointer(pointer)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// Volume plugins whose credentials are a Secret named at this pointer
/// (Kubernetes' `VisitPodSecretNames` lists the same ones).
const VOLUME_SECRETS: &[&str] = &[
    "/secret/secretName",
    "/azureFile/secretName",
    "/cephfs/secretRef/name",
    "/cinder/secretRef/name",
    "/flexVolume/secretRef/name",
    "/iscsi/secretRef/name",
    "/rbd/secretRef/name",
    "/scaleIO/secretRef/name",
    "/storageos/secretRef/name",
    "/csi/nodePublishSecretRef/name",
];

/// Whether a pod's ServiceAccount is a reference: only when the pod names
/// one, or always (the node graph, where an unnamed one is "default").
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum ServiceAccount {
    Named,
    Defaulted,
}

/// Everything `pod` references.
pub fn pod_refs(pod: &Value, sa: ServiceAccount) -> PodRefs {
    let mut r = PodRefs::default();
    for s in items(pod, "/spec/imagePullSecrets") {
        r.add(RefKind::Secret, str_at(s, "/name"));
    }
    for list in [
        "/spec/initContainers",
        "/spec/containers",
        "/spec/ephemeralContainers",
    ] {
        for c in items(pod, list) {
            for from in items(c, "/envFrom") {
                r.add(RefKind::Secret, str_at(from, "/secretRef/name"));
                r.add(RefKind::ConfigMap, str_at(from, "/configMapRef/name"));
            }
            for e in items(c, "/env") {
                r.add(RefKind::Secret, str_at(e, "/valueFrom/secretKeyRef/name"));
                r.add(
                    RefKind::ConfigMap,
                    str_at(e, "/valueFrom/configMapKeyRef/name"),
                );
            }
        }
    }
    let pod_name = str_at(pod, "/metadata/name").unwrap_or_default();
    for v in items(pod, "/spec/volumes") {
        for p in VOLUME_SECRETS {
            r.add(RefKind::Secret, str_at(v, p));
        }
        r.add(RefKind::ConfigMap, str_at(v, "/configMap/name"));
        for s in items(v, "/projected/sources") {
            r.add(RefKind::Secret, str_at(s, "/secret/name"));
            r.add(RefKind::ConfigMap, str_at(s, "/configMap/name"));
        }
        r.add(
            RefKind::PersistentVolumeClaim,
            str_at(v, "/persistentVolumeClaim/claimName"),
        );
        // A generic ephemeral volume's claim is named after the pod and
        // the volume (Kubernetes' `ephemeral.VolumeClaimName`).
        if v.get("ephemeral").is_some()
            && let Some(vol) = str_at(v, "/name")
        {
            r.add(
                RefKind::PersistentVolumeClaim,
                Some(&format!("{pod_name}-{vol}")),
            );
        }
    }
    let named = str_at(pod, "/spec/serviceAccountName")
        .filter(|n| !n.is_empty())
        .or_else(|| str_at(pod, "/spec/serviceAccount").filter(|n| !n.is_empty()));
    match (named, sa) {
        (Some(n), _) => r.add(RefKind::ServiceAccount, Some(n)),
        (None, ServiceAccount::Defaulted) => r.add(RefKind::ServiceAccount, Some("default")),
        (None, ServiceAccount::Named) => {}
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_place_a_pod_names_an_object_is_a_reference() {
        let pod = json!({
            "metadata": {"name": "p"},
            "spec": {
                "imagePullSecrets": [{"name": "pull"}],
                "initContainers": [{"envFrom": [{"secretRef": {"name": "init-env"}}]}],
                "containers": [{
                    "envFrom": [{"configMapRef": {"name": "cm-env"}}],
                    "env": [
                        {"name": "A", "valueFrom": {"secretKeyRef": {"name": "s-key", "key": "k"}}},
                        {"name": "B", "valueFrom": {"configMapKeyRef": {"name": "cm-key", "key": "k"}}},
                        {"name": "C", "value": "plain"}
                    ]
                }],
                "volumes": [
                    {"name": "a", "secret": {"secretName": "s-vol"}},
                    {"name": "b", "configMap": {"name": "cm-vol"}},
                    {"name": "c", "projected": {"sources": [
                        {"secret": {"name": "s-proj"}}, {"configMap": {"name": "cm-proj"}},
                        {"serviceAccountToken": {"path": "t"}}
                    ]}},
                    {"name": "d", "persistentVolumeClaim": {"claimName": "claim"}},
                    {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}},
                    {"name": "f", "csi": {"driver": "x", "nodePublishSecretRef": {"name": "s-csi"}}}
                ]
            }
        });
        let r = pod_refs(&pod, ServiceAccount::Defaulted);
        for s in ["pull", "init-env", "s-key", "s-vol", "s-proj", "s-csi"] {
            assert!(r.has(RefKind::Secret, s), "{s}");
        }
        for c in ["cm-env", "cm-key", "cm-vol", "cm-proj"] {
            assert!(r.has(RefKind::ConfigMap, c), "{c}");
        }
        assert!(r.has(RefKind::PersistentVolumeClaim, "claim"));
        assert!(r.has(RefKind::PersistentVolumeClaim, "p-scratch"));
        assert!(r.has(RefKind::ServiceAccount, "default"));
        assert_eq!(r.0.len(), 13);
        assert!(!pod_refs(&pod, ServiceAccount::Named).any(RefKind::ServiceAccount));
    }
}
