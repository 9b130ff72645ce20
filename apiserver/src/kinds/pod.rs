//! Pods (`v1`), and the pod spec rules and defaults that workload templates
//! share.

use k8s_openapi::api::core::v1 as core;
use serde_json::{Value, json};

use super::columns::{Cell, cell};
use super::fields::{container_resources, default_at};
use super::{Column, ResourceType, Strategy, Subresource};
use crate::error::Cause;
use crate::meta;

/// Pods, with `/status` and `/binding`.
pub fn kinds() -> Vec<ResourceType> {
    vec![
        ResourceType::of::<core::Pod>()
            .short_names(&["po"])
            .categories(&["all"])
            .subresources(&[
                Subresource::Status,
                Subresource::Binding,
                Subresource::Eviction,
            ])
            .strategy(PodStrategy),
    ]
}

/// Pods: containers are required; READY counts ready containers.
struct PodStrategy;
impl Strategy for PodStrategy {
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        pod_update(new, old)
    }
    fn prepare_create(&self, obj: &mut Value) {
        if obj.pointer("/status/phase").is_none() {
            obj["status"] = json!({"phase": "Pending"});
        }
        if let Some(spec) = obj.get_mut("spec") {
            pod_spec_defaults(spec);
            default_toleration_seconds(spec);
        }
    }
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        validate_pod_spec(obj.get("spec"), "spec")
    }
    fn columns(&self) -> Vec<Column> {
        vec![
            Column::new("Ready", "Ready containers"),
            Column::new("Status", "Pod phase"),
            Column::new("Restarts", "Container restarts"),
            Column::new("IP", "Pod IP").wide(),
            Column::new("Node", "Node the pod runs on").wide(),
        ]
    }
    fn cells(&self, obj: &Value) -> Vec<Value> {
        let total = obj
            .pointer("/spec/containers")
            .and_then(Value::as_array)
            .map(Vec::len)
            .unwrap_or(0);
        let statuses = obj
            .pointer("/status/containerStatuses")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let ready = statuses
            .iter()
            .filter(|s| s.get("ready") == Some(&json!(true)))
            .count();
        let restarts: i64 = statuses
            .iter()
            .filter_map(|s| s.get("restartCount").and_then(Value::as_i64))
            .sum();
        vec![
            json!(format!("{ready}/{total}")),
            cell(obj, Cell::At("/status/phase")),
            json!(restarts),
            cell(obj, Cell::At("/status/podIP")),
            cell(obj, Cell::At("/spec/nodeName")),
        ]
    }
}

/// How long pods tolerate a node that is not ready or unreachable by
/// default (kube-apiserver's `--default-not-ready-toleration-seconds` and
/// `--default-unreachable-toleration-seconds`).
pub const DEFAULT_TOLERATION_SECONDS: i64 = 300;

/// The DefaultTolerationSeconds admission plugin, on pod create: a pod
/// with no toleration of the `node.kubernetes.io/not-ready` (or
/// `unreachable`) NoExecute taint gets one for 300 s, so taint-based
/// eviction moves it off a failed node after five minutes. A toleration
/// with that key or an empty key, and effect NoExecute or empty, counts.
fn default_toleration_seconds(spec: &mut Value) {
    let Some(spec) = spec.as_object_mut() else {
        return;
    };
    let tolerations = spec.entry("tolerations").or_insert_with(|| json!([]));
    if tolerations.is_null() {
        *tolerations = json!([]);
    }
    let Some(list) = tolerations.as_array_mut() else {
        return;
    };
    for key in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ] {
        let tolerated = list.iter().any(|t| {
            let field = |f: &str| t.get(f).and_then(Value::as_str).unwrap_or("");
            (field("key") == key || field("key").is_empty())
                && (field("effect") == "NoExecute" || field("effect").is_empty())
        });
        if !tolerated {
            list.push(json!({
                "key": key,
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": DEFAULT_TOLERATION_SECONDS,
            }));
        }
    }
}

/// Pods: only container images (and a first node assignment) may change in the spec.
fn pod_update(new: &Value, old: &Value) -> Vec<Cause> {
    let strip = |v: &Value| -> Value {
        let mut spec = v.get("spec").cloned().unwrap_or(Value::Null);
        for list in ["containers", "initContainers"] {
            if let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) {
                for c in cs {
                    if let Some(o) = c.as_object_mut() {
                        o.remove("image");
                    }
                }
            }
        }
        if let Some(o) = spec.as_object_mut() {
            o.remove("activeDeadlineSeconds");
            o.remove("nodeName");
        }
        spec
    };
    let mut causes = Vec::new();
    if strip(new) != strip(old) {
        causes.push(Cause::forbidden(
            "spec",
            "pod updates may not change fields other than `spec.containers[*].image`, `spec.initContainers[*].image` or `spec.activeDeadlineSeconds`",
        ));
    }
    let old_node = old
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .unwrap_or("");
    if !old_node.is_empty()
        && new
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .unwrap_or("")
            != old_node
    {
        causes.push(Cause::invalid(
            "spec.nodeName",
            "Invalid value: field is immutable once set",
        ));
    }
    causes
}

/// Containers of a pod spec at `path` (field path prefix for errors).
pub(super) fn validate_pod_spec(spec: Option<&Value>, path: &str) -> Vec<Cause> {
    let mut causes = Vec::new();
    match spec
        .and_then(|s| s.get("containers"))
        .and_then(Value::as_array)
    {
        None => causes.push(Cause::required(format!("{path}.containers"))),
        Some(cs) if cs.is_empty() => causes.push(Cause::required(format!("{path}.containers"))),
        Some(cs) => {
            let mut names = std::collections::BTreeSet::new();
            for (i, c) in cs.iter().enumerate() {
                match c.get("name").and_then(Value::as_str) {
                    Some(n) if meta::dns1123_label(n).is_none() => {
                        if !names.insert(n.to_string()) {
                            causes
                                .push(Cause::duplicate(format!("{path}.containers[{i}].name"), n));
                        }
                    }
                    Some(n) => causes.push(Cause::invalid(
                        format!("{path}.containers[{i}].name"),
                        format!("Invalid value: {n:?}: must be a DNS label"),
                    )),
                    None => causes.push(Cause::required(format!("{path}.containers[{i}].name"))),
                }
                if c.get("image")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    causes.push(Cause::required(format!("{path}.containers[{i}].image")));
                }
                causes.extend(container_resources(c, &format!("{path}.containers[{i}]")));
            }
        }
    }
    causes
}

/// Defaults of a pod template's spec (the parts controllers and kubectl read).
pub(super) fn pod_spec_defaults(spec: &mut Value) {
    default_at(spec, &["restartPolicy"], json!("Always"));
    default_at(spec, &["terminationGracePeriodSeconds"], json!(30));
    default_at(spec, &["dnsPolicy"], json!("ClusterFirst"));
    default_at(spec, &["schedulerName"], json!("default-scheduler"));
    default_at(spec, &["securityContext"], json!({}));
    if let Some(cs) = spec.get_mut("containers").and_then(Value::as_array_mut) {
        for c in cs {
            default_at(
                c,
                &["terminationMessagePath"],
                json!("/dev/termination-log"),
            );
            default_at(c, &["terminationMessagePolicy"], json!("File"));
            let latest = c
                .get("image")
                .and_then(Value::as_str)
                .is_some_and(|i| !i.contains(':') || i.ends_with(":latest"));
            default_at(
                c,
                &["imagePullPolicy"],
                json!(if latest { "Always" } else { "IfNotPresent" }),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tolerations(spec: Value) -> Value {
        let mut pod = json!({"spec": spec});
        PodStrategy.prepare_create(&mut pod);
        pod["spec"]["tolerations"].clone()
    }

    #[test]
    fn default_toleration_seconds_for_not_ready_and_unreachable() {
        let added = tolerations(json!({"containers": [{"name": "a", "image": "x"}]}));
        assert_eq!(
            added,
            json!([
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            ])
        );
        // The pod's own toleration of one stays; only the other is added.
        let own = json!({"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5});
        let added = tolerations(json!({"containers": [], "tolerations": [own.clone()]}));
        assert_eq!(added.as_array().unwrap().len(), 2);
        assert_eq!(added[0], own);
        assert_eq!(added[1]["key"], "node.kubernetes.io/not-ready");
        // Tolerating everything (empty key, Exists) counts for both.
        let all = json!({"operator": "Exists"});
        assert_eq!(
            tolerations(json!({"containers": [], "tolerations": [all.clone()]})),
            json!([all])
        );
        // A NoSchedule toleration does not.
        let nosched = json!({"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoSchedule"});
        assert_eq!(
            tolerations(json!({"tolerations": [nosched]}))
                .as_array()
                .unwrap()
                .len(),
            3
        );
    }
}
