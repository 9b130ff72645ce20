//! `autoscaling`: HorizontalPodAutoscalers, stored as `autoscaling/v2`
//! (with its defaults, validation and status subresource) and also served
//! as `autoscaling/v1` from the same store, converted as Kubernetes does:
//! v1's `targetCPUUtilizationPercentage` is v2's CPU utilization metric,
//! and what v1 cannot say (other metrics, behavior, conditions) rides in
//! the `autoscaling.alpha.kubernetes.io/*` annotations of the v1 form.

use k8s_openapi::api::autoscaling::{v1, v2};
use serde_json::{Value, json};

mod validation;

use super::conversion::{Conversion, with_api_version};
use super::fields::{array_at, default_at, str_at};
use super::{Column, ResourceType, Strategy, Subresource};
use crate::error::Cause;
use validation::{validate_v1, validate_v2};

/// Both versions; v2 first, the version `kubectl` prefers.
pub fn kinds() -> Vec<ResourceType> {
    vec![
        ResourceType::of::<v2::HorizontalPodAutoscaler>()
            .short_names(&["hpa"])
            .categories(&["all"])
            .subresources(&[Subresource::Status])
            .strategy(HpaStrategy { v1: false }),
        ResourceType::of::<v1::HorizontalPodAutoscaler>()
            .short_names(&["hpa"])
            .categories(&["all"])
            .subresources(&[Subresource::Status])
            .stored_as(V1_AS_V2)
            .strategy(HpaStrategy { v1: true }),
    ]
}

/// `autoscaling/v1` stored as `autoscaling/v2`.
pub const V1_AS_V2: Conversion = Conversion {
    stored_group: "autoscaling",
    to_stored: v1_to_v2,
    from_stored: v2_to_v1,
};

const METRICS: &str = "autoscaling.alpha.kubernetes.io/metrics";
const CURRENT_METRICS: &str = "autoscaling.alpha.kubernetes.io/current-metrics";
const CONDITIONS: &str = "autoscaling.alpha.kubernetes.io/conditions";
const BEHAVIOR: &str = "autoscaling.alpha.kubernetes.io/behavior";

/// Kubernetes' CPU target when none is given.
const DEFAULT_CPU_UTILIZATION: i64 = 80;

fn cpu_metric(utilization: Value) -> Value {
    json!({"type": "Resource", "resource": {"name": "cpu",
        "target": {"type": "Utilization", "averageUtilization": utilization}}})
}

fn is_cpu_utilization(m: &Value) -> bool {
    str_at(m, "/type") == Some("Resource")
        && str_at(m, "/resource/name") == Some("cpu")
        && m.pointer("/resource/target/averageUtilization").is_some()
}

/// Takes the annotation `key` (a JSON document) out of `obj`.
fn take_annotation(obj: &mut Value, key: &str) -> Option<Value> {
    let annotations = obj.pointer_mut("/metadata/annotations")?.as_object_mut()?;
    let v = annotations.remove(key)?;
    if annotations.is_empty()
        && let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut)
    {
        m.remove("annotations");
    }
    v.as_str().and_then(|s| serde_json::from_str(s).ok())
}

fn put_annotation(obj: &mut Value, key: &str, value: &Value) {
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        let a = m.entry("annotations").or_insert_with(|| json!({}));
        if let Some(a) = a.as_object_mut() {
            a.insert(key.into(), json!(value.to_string()));
        }
    }
}

/// An `autoscaling/v1` object as `autoscaling/v2` (then v2's defaults).
pub fn v1_to_v2(mut obj: Value) -> Value {
    let mut metrics = Vec::new();
    if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut)
        && let Some(cpu) = spec
            .remove("targetCPUUtilizationPercentage")
            .filter(|v| !v.is_null())
    {
        metrics.push(cpu_metric(cpu));
    }
    if let Some(Value::Array(more)) = take_annotation(&mut obj, METRICS) {
        metrics.extend(more);
    }
    if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut)
        && !metrics.is_empty()
    {
        spec.insert("metrics".into(), Value::Array(metrics));
    }
    if let Some(b) = take_annotation(&mut obj, BEHAVIOR)
        && let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut)
    {
        spec.insert("behavior".into(), b);
    }
    let mut current = Vec::new();
    if let Some(status) = obj.get_mut("status").and_then(Value::as_object_mut)
        && let Some(cpu) = status
            .remove("currentCPUUtilizationPercentage")
            .filter(|v| !v.is_null())
    {
        current.push(json!({"type": "Resource", "resource": {"name": "cpu",
            "current": {"averageUtilization": cpu}}}));
    }
    if let Some(Value::Array(more)) = take_annotation(&mut obj, CURRENT_METRICS) {
        current.extend(more);
    }
    let conditions = take_annotation(&mut obj, CONDITIONS);
    if let Some(status) = obj.get_mut("status").and_then(Value::as_object_mut) {
        if !current.is_empty() {
            status.insert("currentMetrics".into(), Value::Array(current));
        }
        if let Some(c) = conditions {
            status.insert("conditions".into(), c);
        }
    }
    let mut obj = with_api_version(obj, "autoscaling/v2");
    v2_defaults(&mut obj);
    obj
}

/// An `autoscaling/v2` object as `autoscaling/v1`.
pub fn v2_to_v1(mut obj: Value) -> Value {
    let spec = obj.get_mut("spec").and_then(Value::as_object_mut);
    let (metrics, behavior) = match spec {
        Some(spec) => {
            let metrics = spec.remove("metrics");
            (metrics, spec.remove("behavior"))
        }
        None => (None, None),
    };
    let mut others = Vec::new();
    for m in metrics
        .as_ref()
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if is_cpu_utilization(m)
            && obj
                .pointer("/spec/targetCPUUtilizationPercentage")
                .is_none()
        {
            obj["spec"]["targetCPUUtilizationPercentage"] =
                m["resource"]["target"]["averageUtilization"].clone();
        } else {
            others.push(m.clone());
        }
    }
    if !others.is_empty() {
        put_annotation(&mut obj, METRICS, &Value::Array(others));
    }
    if let Some(b) = behavior.filter(|b| !b.is_null()) {
        put_annotation(&mut obj, BEHAVIOR, &b);
    }
    let status = obj.get_mut("status").and_then(Value::as_object_mut);
    let (current, conditions) = match status {
        Some(st) => (st.remove("currentMetrics"), st.remove("conditions")),
        None => (None, None),
    };
    let mut others = Vec::new();
    for m in current
        .as_ref()
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let cpu = str_at(m, "/type") == Some("Resource")
            && str_at(m, "/resource/name") == Some("cpu")
            && m.pointer("/resource/current/averageUtilization").is_some();
        if cpu
            && obj
                .pointer("/status/currentCPUUtilizationPercentage")
                .is_none()
        {
            obj["status"]["currentCPUUtilizationPercentage"] =
                m["resource"]["current"]["averageUtilization"].clone();
        } else {
            others.push(m.clone());
        }
    }
    if !others.is_empty() {
        put_annotation(&mut obj, CURRENT_METRICS, &Value::Array(others));
    }
    if let Some(c) = conditions.filter(|c| c.as_array().is_some_and(|a| !a.is_empty())) {
        put_annotation(&mut obj, CONDITIONS, &c);
    }
    with_api_version(obj, "autoscaling/v1")
}

/// Kubernetes' `autoscaling/v2` defaults: one replica at least, a CPU
/// target of 80%, and every unset part of a given `behavior`.
pub fn v2_defaults(obj: &mut Value) {
    let Some(spec) = obj.get_mut("spec").filter(|s| s.is_object()) else {
        return;
    };
    default_at(spec, &["minReplicas"], json!(1));
    if array_at(spec, "/metrics").is_empty() {
        spec["metrics"] = json!([cpu_metric(json!(DEFAULT_CPU_UTILIZATION))]);
    }
    if let Some(b) = spec.get_mut("behavior").filter(|b| b.is_object()) {
        let up = json!([{"type": "Pods", "value": 4, "periodSeconds": 15},
            {"type": "Percent", "value": 100, "periodSeconds": 15}]);
        let down = json!([{"type": "Percent", "value": 100, "periodSeconds": 15}]);
        for (rules, window, policies) in [("scaleUp", 0, up), ("scaleDown", 300, down)] {
            default_at(b, &[rules, "stabilizationWindowSeconds"], json!(window));
            default_at(b, &[rules, "selectPolicy"], json!("Max"));
            if array_at(&b[rules], "/policies").is_empty() {
                b[rules]["policies"] = policies;
            }
        }
    }
}

struct HpaStrategy {
    v1: bool,
}

impl Strategy for HpaStrategy {
    fn prepare_create(&self, obj: &mut Value) {
        if self.v1 {
            default_at(obj, &["spec", "minReplicas"], json!(1));
        } else {
            v2_defaults(obj);
        }
    }
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        if self.v1 {
            validate_v1(obj)
        } else {
            validate_v2(obj)
        }
    }
    fn columns(&self) -> Vec<Column> {
        vec![
            Column::new("Reference", "The target of the autoscaler"),
            Column::new("Targets", "The current and target values of its metrics"),
            Column::new("MinPods", "The lower limit for the number of pods"),
            Column::new("MaxPods", "The upper limit for the number of pods"),
            Column::new("Replicas", "Current number of replicas"),
        ]
    }
    fn cells(&self, obj: &Value) -> Vec<Value> {
        // One printer for both versions, as in Kubernetes: over the v2 form.
        let v2 = if self.v1 {
            v1_to_v2(obj.clone())
        } else {
            obj.clone()
        };
        let min = v2.pointer("/spec/minReplicas").and_then(Value::as_i64);
        vec![
            json!(format!(
                "{}/{}",
                str_at(&v2, "/spec/scaleTargetRef/kind").unwrap_or(""),
                str_at(&v2, "/spec/scaleTargetRef/name").unwrap_or("")
            )),
            json!(targets(
                array_at(&v2, "/spec/metrics"),
                array_at(&v2, "/status/currentMetrics")
            )),
            min.map_or(json!("<unset>"), |m| json!(m)),
            json!(
                v2.pointer("/spec/maxReplicas")
                    .and_then(Value::as_i64)
                    .unwrap_or(0)
            ),
            json!(
                v2.pointer("/status/currentReplicas")
                    .and_then(Value::as_i64)
                    .unwrap_or(0)
            ),
        ]
    }
}

/// The TARGETS cell: each metric's current value (or `<unknown>`) and its
/// target, the first two, then how many more.
fn targets(specs: &[Value], statuses: &[Value]) -> String {
    if specs.is_empty() {
        return "<none>".into();
    }
    const SHOWN: usize = 2;
    let text = |v: Option<&Value>| match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => "<unknown>".into(),
    };
    let list: Vec<String> = specs
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let status = statuses.get(i);
            let current = |source: &str, field: &str| {
                text(status.and_then(|s| s.pointer(&format!("/{source}/current/{field}"))))
            };
            match str_at(m, "/type").unwrap_or("") {
                t @ ("Resource" | "ContainerResource") => {
                    let source = if t == "Resource" {
                        "resource"
                    } else {
                        "containerResource"
                    };
                    let name = str_at(m, &format!("/{source}/name")).unwrap_or("");
                    let target = m
                        .pointer(&format!("/{source}/target"))
                        .unwrap_or(&Value::Null);
                    match target.get("averageValue") {
                        Some(v) => format!(
                            "{name}: {}/{}",
                            current(source, "averageValue"),
                            text(Some(v))
                        ),
                        None => {
                            let cur = status
                                .and_then(|s| {
                                    s.pointer(&format!("/{source}/current/averageUtilization"))
                                })
                                .and_then(Value::as_i64)
                                .map_or("<unknown>".into(), |n| format!("{n}%"));
                            let tgt = target
                                .get("averageUtilization")
                                .and_then(Value::as_i64)
                                .map_or("<auto>".into(), |n| format!("{n}%"));
                            format!("{name}: {cur}/{tgt}")
                        }
                    }
                }
                "Pods" => format!(
                    "{}/{}",
                    current("pods", "averageValue"),
                    text(m.pointer("/pods/target/averageValue"))
                ),
                t @ ("Object" | "External") => {
                    let source = if t == "Object" { "object" } else { "external" };
                    match m.pointer(&format!("/{source}/target/averageValue")) {
                        Some(v) => format!(
                            "{}/{} (avg)",
                            current(source, "averageValue"),
                            text(Some(v))
                        ),
                        None => format!(
                            "{}/{}",
                            current(source, "value"),
                            text(m.pointer(&format!("/{source}/target/value")))
                        ),
                    }
                }
                _ => "<unknown type>".into(),
            }
        })
        .collect();
    let shown = list
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if list.len() > SHOWN {
        format!("{shown} + {} more...", list.len() - SHOWN)
    } else {
        shown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hpa_v2() -> Value {
        json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, "maxReplicas": 5}})
    }

    #[test]
    fn v2_defaults_are_kubernetes() {
        let mut h = hpa_v2();
        h["spec"]["behavior"] = json!({"scaleDown": {"stabilizationWindowSeconds": 60}});
        v2_defaults(&mut h);
        assert_eq!(h["spec"]["minReplicas"], 1);
        assert_eq!(h["spec"]["metrics"], json!([cpu_metric(json!(80))]));
        assert_eq!(
            h["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"],
            60
        );
        assert_eq!(h["spec"]["behavior"]["scaleDown"]["selectPolicy"], "Max");
        assert_eq!(
            h["spec"]["behavior"]["scaleUp"]["policies"][0],
            json!({"type": "Pods", "value": 4, "periodSeconds": 15})
        );
        assert_eq!(
            h["spec"]["behavior"]["scaleUp"]["stabilizationWindowSeconds"],
            0
        );
        assert!(validate_v2(&h).is_empty(), "{:?}", validate_v2(&h));
        assert_eq!(
            HpaStrategy { v1: false }.cells(&h),
            [
                json!("Deployment/web"),
                json!("cpu: <unknown>/80%"),
                json!(1),
                json!(5),
                json!(0)
            ]
        );
    }

    #[test]
    fn v1_and_v2_convert_both_ways() {
        let v1 = json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "minReplicas": 1, "maxReplicas": 3, "targetCPUUtilizationPercentage": 50},
            "status": {"currentReplicas": 2, "desiredReplicas": 2, "currentCPUUtilizationPercentage": 40}});
        let v2 = v1_to_v2(v1.clone());
        assert_eq!(v2["apiVersion"], "autoscaling/v2");
        assert_eq!(v2["spec"]["metrics"], json!([cpu_metric(json!(50))]));
        assert_eq!(
            v2["status"]["currentMetrics"][0]["resource"]["current"]["averageUtilization"],
            40
        );
        assert_eq!(v2_to_v1(v2.clone()), v1);
        assert_eq!(HpaStrategy { v1: true }.cells(&v1)[1], "cpu: 40%/50%");
        // What v1 cannot say survives a v1 round trip in annotations.
        let mut rich = v2;
        rich["spec"]["metrics"].as_array_mut().unwrap().push(json!({"type": "Pods",
            "pods": {"metric": {"name": "qps"}, "target": {"type": "AverageValue", "averageValue": "10"}}}));
        rich["spec"]["behavior"] = json!({"scaleDown": {"selectPolicy": "Min"}});
        rich["status"]["conditions"] = json!([{"type": "AbleToScale", "status": "True"}]);
        let as_v1 = v2_to_v1(rich.clone());
        assert_eq!(as_v1["spec"]["targetCPUUtilizationPercentage"], 50);
        assert!(
            as_v1["metadata"]["annotations"][METRICS]
                .as_str()
                .unwrap()
                .contains("qps")
        );
        let back = v1_to_v2(as_v1);
        let mut expected = rich;
        v2_defaults(&mut expected);
        assert_eq!(back, expected);
    }

    #[test]
    fn targets_print_as_kubectl_prints_them() {
        let specs = [
            cpu_metric(json!(80)),
            json!({"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "100Mi"}}}),
            json!({"type": "External", "external": {"target": {"type": "AverageValue", "averageValue": "30"}}}),
        ];
        let status = [
            json!({"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 12}}}),
        ];
        assert_eq!(
            targets(&specs, &status),
            "cpu: 12%/80%, memory: <unknown>/100Mi + 1 more..."
        );
        assert_eq!(targets(&[], &[]), "<none>");
    }
}
