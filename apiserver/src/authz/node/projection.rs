//! What the node graph reads of each object it follows, decoded from the
//! stored bytes without building the rest: a pod's containers' images and
//! resources, its managed fields and its status are skipped as they are
//! read. [`super::feed`] decodes every event of every followed resource on
//! every member; building each whole object was 6 % of a member's CPU while
//! pods were created through the API (docs/BENCHMARKS.md, issue 10).
//!
//! What is kept is a `Value` of the same shape as the object, so
//! [`super::refs`] and [`super::graph`] read it as they read a whole one.

use std::fmt;

use serde::Deserializer;
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use super::graph::Source;

/// Which part of a value to keep.
pub enum Keep {
    /// All of it.
    All,
    /// Of an object, these fields (each kept as its `Keep` says); of an
    /// array, each element as this says; a scalar as it is.
    Fields(&'static [(&'static str, Keep)]),
}

/// A container's references: its environment (`refs::pod_refs`).
const CONTAINER: Keep = Keep::Fields(&[("envFrom", Keep::All), ("env", Keep::All)]);

/// What the graph reads of a pod: its name, uid and annotations, its node,
/// and everything `refs::pod_refs` reads of its spec.
const POD: Keep = Keep::Fields(&[
    (
        "metadata",
        Keep::Fields(&[
            ("name", Keep::All),
            ("uid", Keep::All),
            ("annotations", Keep::All),
        ]),
    ),
    (
        "spec",
        Keep::Fields(&[
            ("nodeName", Keep::All),
            ("serviceAccountName", Keep::All),
            ("serviceAccount", Keep::All),
            ("imagePullSecrets", Keep::All),
            ("initContainers", CONTAINER),
            ("containers", CONTAINER),
            ("ephemeralContainers", CONTAINER),
            ("volumes", Keep::All),
        ]),
    ),
]);

/// What the graph reads of a claim: the volume it is bound to.
const CLAIM: Keep = Keep::Fields(&[("spec", Keep::Fields(&[("volumeName", Keep::All)]))]);

/// What the graph reads of a node: its uid.
const NODE: Keep = Keep::Fields(&[("metadata", Keep::Fields(&[("uid", Keep::All)]))]);

impl Source {
    /// What the graph reads of this resource's objects.
    pub fn keep(self) -> &'static Keep {
        match self {
            Source::Pods => &POD,
            Source::Claims => &CLAIM,
            Source::Nodes => &NODE,
        }
    }
}

/// The part of the JSON `raw` that `keep` names, or the parser's error when
/// `raw` is not JSON (the skipped parts are checked for syntax too).
pub fn project(raw: &[u8], keep: &'static Keep) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(raw);
    let v = keep.deserialize(&mut de)?;
    de.end()?;
    Ok(v)
}

impl<'de> DeserializeSeed<'de> for &'static Keep {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        match self {
            Keep::All => serde::Deserialize::deserialize(d),
            Keep::Fields(fields) => Pruning(fields).deserialize(d),
        }
    }
}

/// Builds what a [`Keep::Fields`] keeps, of a value and of each element of
/// an array.
#[derive(Clone, Copy)]
struct Pruning(&'static [(&'static str, Keep)]);

impl<'de> DeserializeSeed<'de> for Pruning {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Pruning {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            match self.0.iter().find(|(name, _)| *name == key) {
                Some((_, keep)) => {
                    // A repeated key counts as its last occurrence, as in a
                    // whole `Value`.
                    let v = map.next_value_seed(keep)?;
                    out.insert(key, v);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Value::Object(out))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(self)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("a number out of range"))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::project;
    use crate::authz::node::graph::Source;
    use crate::authz::node::refs::{ServiceAccount, pod_refs};

    /// A pod that names an object in every place `pod_refs` looks, beside
    /// everything the graph does not read.
    fn pod() -> Value {
        let volume_secrets = [
            json!({"name": "v1", "secret": {"secretName": "s-secret"}}),
            json!({"name": "v2", "azureFile": {"secretName": "s-azure", "shareName": "x"}}),
            json!({"name": "v3", "cephfs": {"monitors": ["m"], "secretRef": {"name": "s-ceph"}}}),
            json!({"name": "v4", "cinder": {"volumeID": "i", "secretRef": {"name": "s-cinder"}}}),
            json!({"name": "v5", "flexVolume": {"driver": "d", "secretRef": {"name": "s-flex"}}}),
            json!({"name": "v6", "iscsi": {"lun": 0, "secretRef": {"name": "s-iscsi"}}}),
            json!({"name": "v7", "rbd": {"image": "i", "secretRef": {"name": "s-rbd"}}}),
            json!({"name": "v8", "scaleIO": {"system": "s", "secretRef": {"name": "s-scaleio"}}}),
            json!({"name": "v9", "storageos": {"secretRef": {"name": "s-storageos"}}}),
            json!({"name": "v10", "csi": {"driver": "d", "nodePublishSecretRef": {"name": "s-csi"}}}),
            json!({"name": "v11", "configMap": {"name": "cm-vol"}}),
            json!({"name": "v12", "projected": {"sources": [
                {"secret": {"name": "s-proj"}}, {"configMap": {"name": "cm-proj"}},
                {"serviceAccountToken": {"path": "t"}}
            ]}}),
            json!({"name": "v13", "persistentVolumeClaim": {"claimName": "claim"}}),
            json!({"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}}),
        ];
        let container = |prefix: &str| {
            json!({
                "name": prefix, "image": "registry/image:1", "resources": {"limits": {"cpu": "1"}},
                "envFrom": [
                    {"secretRef": {"name": format!("{prefix}-s-from")}},
                    {"configMapRef": {"name": format!("{prefix}-cm-from")}}
                ],
                "env": [
                    {"name": "A", "valueFrom": {"secretKeyRef": {"name": format!("{prefix}-s-key"), "key": "k"}}},
                    {"name": "B", "valueFrom": {"configMapKeyRef": {"name": format!("{prefix}-cm-key"), "key": "k"}}},
                    {"name": "C", "value": "plain"}
                ]
            })
        };
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": "p", "namespace": "ns", "uid": "u-1", "resourceVersion": "7",
                "labels": {"app": "a"},
                "annotations": {"kubernetes.io/config.mirror": "x"},
                "managedFields": [{"manager": "m", "fieldsV1": {"f:spec": {}}}]
            },
            "spec": {
                "nodeName": "n1",
                "serviceAccountName": "sa",
                "imagePullSecrets": [{"name": "pull"}],
                "initContainers": [container("init")],
                "containers": [container("main"), container("side")],
                "ephemeralContainers": [container("debug")],
                "volumes": volume_secrets,
                "tolerations": [{"key": "k", "operator": "Exists"}]
            },
            "status": {"phase": "Running", "podIP": "10.0.0.1", "conditions": [{"type": "Ready"}]}
        })
    }

    #[test]
    fn a_projected_pod_has_every_reference_the_whole_pod_has() {
        let whole = pod();
        let raw = serde_json::to_vec(&whole).unwrap();
        let kept = project(&raw, Source::Pods.keep()).unwrap();
        for sa in [ServiceAccount::Named, ServiceAccount::Defaulted] {
            assert_eq!(pod_refs(&kept, sa), pod_refs(&whole, sa));
        }
        // 15 from the volumes, 4 per container, the pull secret and the
        // ServiceAccount.
        assert_eq!(pod_refs(&kept, ServiceAccount::Named).0.len(), 15 + 16 + 2);
        for pointer in [
            "/metadata/name",
            "/metadata/uid",
            "/metadata/annotations",
            "/spec/nodeName",
            "/spec/serviceAccountName",
        ] {
            assert_eq!(kept.pointer(pointer), whole.pointer(pointer), "{pointer}");
        }
        for skipped in [
            "/status",
            "/metadata/managedFields",
            "/spec/tolerations",
            "/spec/containers/0/image",
        ] {
            assert_eq!(kept.pointer(skipped), None, "{skipped}");
        }
    }

    #[test]
    fn claims_and_nodes_keep_what_the_graph_reads() {
        let claim = br#"{"metadata":{"name":"c"},"spec":{"volumeName":"pv-1","resources":{}}}"#;
        assert_eq!(
            project(claim, Source::Claims.keep()).unwrap(),
            json!({"spec": {"volumeName": "pv-1"}})
        );
        let node = br#"{"metadata":{"name":"n","uid":"u-9"},"status":{"capacity":{}}}"#;
        assert_eq!(
            project(node, Source::Nodes.keep()).unwrap(),
            json!({"metadata": {"uid": "u-9"}})
        );
    }

    #[test]
    fn a_projection_fails_where_a_whole_value_does_and_keeps_the_last_repeat() {
        for raw in [
            "not json",
            r#"{"status":{"a":1}"#,
            r#"{"metadata":{}} trailing"#,
            r#"{"spec":{"nodeName":1e400}}"#,
            r#"{"status":{"x":"\u00"}}"#,
            "",
        ] {
            assert!(
                serde_json::from_str::<Value>(raw).is_err(),
                "{raw} is not JSON"
            );
            assert!(
                project(raw.as_bytes(), Source::Pods.keep()).is_err(),
                "{raw}"
            );
        }
        let raw = br#"{"spec":{"nodeName":"a","nodeName":"b"},"spec":{"nodeName":"c"}}"#;
        let kept = project(raw, Source::Pods.keep()).unwrap();
        assert_eq!(kept, serde_json::from_slice::<Value>(raw).unwrap());
        // A scalar where an object is expected is kept as the scalar, and an
        // array's elements are pruned each, as a whole `Value` has them.
        let raw = br#"{"metadata":"x","spec":[{"nodeName":"n","image":"i"}]}"#;
        assert_eq!(
            project(raw, Source::Pods.keep()).unwrap(),
            json!({"metadata": "x", "spec": [{"nodeName": "n"}]})
        );
    }
}
