//! Typed checks with the Kubernetes types of `k8s-openapi`: an object is
//! decoded into its kind's type (a wrong type is reported with its field
//! path) and encoded back; fields of the request that did not survive the
//! round trip are unknown fields, reported or dropped per `fieldValidation`.

use k8s_openapi::api;
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

/// A value that does not fit its field.
#[derive(Debug)]
pub struct TypeError {
    pub path: String,
    pub message: String,
}

/// Decode into the kind's type and encode back.
pub type Check = fn(&Value) -> Result<Value, TypeError>;

fn roundtrip<T: DeserializeOwned + Serialize>(v: &Value) -> Result<Value, TypeError> {
    let typed: T = serde_path_to_error::deserialize(v).map_err(|e| TypeError {
        path: e.path().to_string(),
        message: e.inner().to_string(),
    })?;
    serde_json::to_value(&typed).map_err(|e| TypeError {
        path: ".".into(),
        message: e.to_string(),
    })
}

/// The typed check of a kind, if `k8s-openapi` has its type.
pub fn check_for(group: &str, kind: &str) -> Option<Check> {
    use api::{apps::v1 as apps, batch::v1 as batch, core::v1 as core, rbac::v1 as rbac};
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiext;
    use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1 as apireg;
    Some(match (group, kind) {
        ("", "Namespace") => roundtrip::<core::Namespace>,
        ("", "Pod") => roundtrip::<core::Pod>,
        ("", "Node") => roundtrip::<core::Node>,
        ("", "Service") => roundtrip::<core::Service>,
        ("", "Endpoints") => roundtrip::<core::Endpoints>,
        ("", "ConfigMap") => roundtrip::<core::ConfigMap>,
        ("", "Secret") => roundtrip::<core::Secret>,
        ("", "ServiceAccount") => roundtrip::<core::ServiceAccount>,
        ("", "Event") => roundtrip::<core::Event>,
        ("", "PersistentVolume") => roundtrip::<core::PersistentVolume>,
        ("", "PersistentVolumeClaim") => roundtrip::<core::PersistentVolumeClaim>,
        ("", "ResourceQuota") => roundtrip::<core::ResourceQuota>,
        ("", "LimitRange") => roundtrip::<core::LimitRange>,
        ("apps", "Deployment") => roundtrip::<apps::Deployment>,
        ("apps", "ReplicaSet") => roundtrip::<apps::ReplicaSet>,
        ("apps", "StatefulSet") => roundtrip::<apps::StatefulSet>,
        ("apps", "DaemonSet") => roundtrip::<apps::DaemonSet>,
        ("apps", "ControllerRevision") => roundtrip::<apps::ControllerRevision>,
        ("batch", "Job") => roundtrip::<batch::Job>,
        ("coordination.k8s.io", "Lease") => roundtrip::<api::coordination::v1::Lease>,
        ("networking.k8s.io", "NetworkPolicy") => roundtrip::<api::networking::v1::NetworkPolicy>,
        ("storage.k8s.io", "StorageClass") => roundtrip::<api::storage::v1::StorageClass>,
        ("events.k8s.io", "Event") => roundtrip::<api::events::v1::Event>,
        ("rbac.authorization.k8s.io", "Role") => roundtrip::<rbac::Role>,
        ("rbac.authorization.k8s.io", "ClusterRole") => roundtrip::<rbac::ClusterRole>,
        ("rbac.authorization.k8s.io", "RoleBinding") => roundtrip::<rbac::RoleBinding>,
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => {
            roundtrip::<rbac::ClusterRoleBinding>
        }
        ("apiextensions.k8s.io", "CustomResourceDefinition") => {
            roundtrip::<apiext::CustomResourceDefinition>
        }
        ("apiregistration.k8s.io", "APIService") => roundtrip::<apireg::APIService>,
        _ => return None,
    })
}

/// Paths of `input`'s fields that `known` (the round-tripped object) lacks,
/// and `input` with them removed. Nulls count as absent.
pub fn prune(input: &Value, known: &Value) -> (Vec<String>, Value) {
    let mut unknown = Vec::new();
    let pruned = walk(input, known, "", &mut unknown);
    (unknown, pruned)
}

fn walk(input: &Value, known: &Value, path: &str, unknown: &mut Vec<String>) -> Value {
    match (input, known) {
        (Value::Object(i), Value::Object(k)) => {
            let mut out = serde_json::Map::new();
            for (key, v) in i {
                if v.is_null() {
                    continue;
                }
                let p = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match k.get(key) {
                    Some(kv) => {
                        out.insert(key.clone(), walk(v, kv, &p, unknown));
                    }
                    None => unknown.push(p),
                }
            }
            Value::Object(out)
        }
        (Value::Array(i), Value::Array(k)) => i
            .iter()
            .enumerate()
            .map(|(n, v)| match k.get(n) {
                Some(kv) => walk(v, kv, &format!("{path}[{n}]"), unknown),
                None => v.clone(),
            })
            .collect(),
        _ => input.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_unknown_fields_are_found_and_pruned() {
        let check = check_for("apps", "Deployment").unwrap();
        let input = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "w", "labelz": {"a": "b"}, "creationTimestamp": null},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "w"}}, "template": {
                "metadata": {"labels": {"app": "w"}},
                "spec": {"containers": [{"name": "c", "image": "i", "imagee": "typo"}]}}},
        });
        let known = check(&input).unwrap();
        let (unknown, pruned) = prune(&input, &known);
        assert_eq!(
            unknown,
            vec![
                "metadata.labelz".to_string(),
                "spec.template.spec.containers[0].imagee".to_string()
            ]
        );
        assert!(
            pruned
                .pointer("/spec/template/spec/containers/0/imagee")
                .is_none()
        );
        assert_eq!(pruned.pointer("/spec/replicas"), Some(&json!(2)));
    }

    #[test]
    fn wrong_types_name_their_field() {
        let check = check_for("apps", "Deployment").unwrap();
        let err = check(&json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "w"}, "spec": {"replicas": "three", "selector": {}, "template": {}}}))
            .unwrap_err();
        assert_eq!(err.path, "spec.replicas");
        assert!(err.message.contains("invalid type"), "{}", err.message);
    }
}
