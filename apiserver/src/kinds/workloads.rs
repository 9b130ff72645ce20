//! The `apps/v1` workloads: deployments, replica sets, stateful sets and
//! daemon sets (a selector that matches the pod template, which keeps the
//! pod spec's rules), and controller revisions.

use k8s_openapi::api::apps::v1 as apps;
use serde_json::{Value, json};

use super::columns::{self, Printed, at, ratio};
use super::fields::{default_at, selector};
use super::pod::{pod_spec_defaults, validate_pod_spec};
use super::{Column, ResourceType, Strategy, Subresource};
use crate::error::Cause;

/// The `apps` kinds, in discovery order.
pub fn kinds() -> Vec<ResourceType> {
    let workload = |defaults, columns| WorkloadStrategy { defaults, columns };
    let scaled = [Subresource::Status, Subresource::Scale];
    vec![
        ResourceType::of::<apps::Deployment>()
            .short_names(&["deploy"])
            .categories(&["all"])
            .subresources(&scaled)
            .strategy(workload(deployment_defaults, DEPLOYMENT_COLUMNS)),
        ResourceType::of::<apps::ReplicaSet>()
            .short_names(&["rs"])
            .categories(&["all"])
            .subresources(&scaled)
            .strategy(workload(replicaset_defaults, REPLICASET_COLUMNS)),
        ResourceType::of::<apps::StatefulSet>()
            .short_names(&["sts"])
            .categories(&["all"])
            .subresources(&scaled)
            .strategy(workload(statefulset_defaults, STATEFULSET_COLUMNS)),
        ResourceType::of::<apps::DaemonSet>()
            .short_names(&["ds"])
            .categories(&["all"])
            .subresources(&[Subresource::Status])
            .strategy(workload(daemonset_defaults, DAEMONSET_COLUMNS)),
        ResourceType::of::<apps::ControllerRevision>().strategy(ControllerRevisionStrategy),
    ]
}

/// A workload kind: its own defaults and columns, the rules all share.
struct WorkloadStrategy {
    defaults: fn(&mut Value),
    columns: &'static [Printed],
}

impl Strategy for WorkloadStrategy {
    fn prepare_create(&self, obj: &mut Value) {
        (self.defaults)(obj)
    }
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        validate_workload(obj)
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        workload_update(new, old)
    }
    fn columns(&self) -> Vec<Column> {
        columns::columns(self.columns)
    }
    fn cells(&self, obj: &Value) -> Vec<Value> {
        columns::cells(self.columns, obj)
    }
}

const READY: Printed = ratio(
    "Ready",
    "Ready replicas",
    "/status/readyReplicas",
    "/spec/replicas",
);

const DEPLOYMENT_COLUMNS: &[Printed] = &[
    READY,
    at("Up-to-date", "Updated replicas", "/status/updatedReplicas"),
    at(
        "Available",
        "Available replicas",
        "/status/availableReplicas",
    ),
];

const REPLICASET_COLUMNS: &[Printed] = &[
    at("Desired", "Desired replicas", "/spec/replicas"),
    at("Current", "Current replicas", "/status/replicas"),
    at("Ready", "Ready replicas", "/status/readyReplicas"),
];

const STATEFULSET_COLUMNS: &[Printed] = &[READY];

const DAEMONSET_COLUMNS: &[Printed] = &[
    at("Desired", "Desired pods", "/status/desiredNumberScheduled"),
    at("Current", "Current pods", "/status/currentNumberScheduled"),
    at("Ready", "Ready pods", "/status/numberReady"),
    at(
        "Up-to-date",
        "Pods of the current template",
        "/status/updatedNumberScheduled",
    ),
    at("Available", "Available pods", "/status/numberAvailable"),
];

/// Controller revisions: no rules beyond their type.
struct ControllerRevisionStrategy;
impl Strategy for ControllerRevisionStrategy {
    fn columns(&self) -> Vec<Column> {
        columns::columns(REVISION_COLUMNS)
    }
    fn cells(&self, obj: &Value) -> Vec<Value> {
        columns::cells(REVISION_COLUMNS, obj)
    }
}

const REVISION_COLUMNS: &[Printed] = &[at("Revision", "Revision", "/revision")];

/// Workloads: the selector never changes.
fn workload_update(new: &Value, old: &Value) -> Vec<Cause> {
    Cause::immutable(new, old, "/spec/selector", "spec.selector")
        .into_iter()
        .collect()
}

/// Workloads: a selector that selects the template's labels, replicas >= 0, valid containers.
fn validate_workload(obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    if obj
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .is_some_and(|r| r < 0)
    {
        causes.push(Cause::invalid(
            "spec.replicas",
            "must be greater than or equal to 0",
        ));
    }
    if let Some(sel) = obj.pointer("/spec/selector").filter(|s| s.is_object()) {
        causes.extend(selector(sel, "spec.selector"));
    }
    let selector = obj
        .pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object);
    let expressions = obj
        .pointer("/spec/selector/matchExpressions")
        .and_then(Value::as_array)
        .is_some_and(|e| !e.is_empty());
    match selector {
        None if !expressions => causes.push(Cause::required("spec.selector")),
        Some(sel) => {
            let labels = obj
                .pointer("/spec/template/metadata/labels")
                .and_then(Value::as_object);
            let matched = sel
                .iter()
                .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v));
            if !matched {
                causes.push(Cause::invalid(
                    "spec.template.metadata.labels",
                    "`selector` does not match template `labels`",
                ));
            }
        }
        None => {}
    }
    causes.extend(validate_pod_spec(
        obj.pointer("/spec/template/spec"),
        "spec.template.spec",
    ));
    causes
}

fn template_defaults(obj: &mut Value) {
    if let Some(spec) = obj.pointer_mut("/spec/template/spec") {
        pod_spec_defaults(spec);
    }
}

fn deployment_defaults(obj: &mut Value) {
    default_at(obj, &["spec", "replicas"], json!(1));
    default_at(
        obj,
        &["spec", "strategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}),
    );
    default_at(obj, &["spec", "revisionHistoryLimit"], json!(10));
    default_at(obj, &["spec", "progressDeadlineSeconds"], json!(600));
    template_defaults(obj);
}

fn replicaset_defaults(obj: &mut Value) {
    default_at(obj, &["spec", "replicas"], json!(1));
    template_defaults(obj);
}

fn statefulset_defaults(obj: &mut Value) {
    default_at(obj, &["spec", "replicas"], json!(1));
    default_at(obj, &["spec", "podManagementPolicy"], json!("OrderedReady"));
    default_at(
        obj,
        &["spec", "updateStrategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}),
    );
    default_at(obj, &["spec", "revisionHistoryLimit"], json!(10));
    default_at(
        obj,
        &["spec", "persistentVolumeClaimRetentionPolicy"],
        json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
    );
    template_defaults(obj);
}

fn daemonset_defaults(obj: &mut Value) {
    default_at(
        obj,
        &["spec", "updateStrategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}),
    );
    default_at(obj, &["spec", "revisionHistoryLimit"], json!(10));
    template_defaults(obj);
}
