//! The rules of HorizontalPodAutoscalers, as Kubernetes validates them:
//! replica bounds and the scale target (both versions), each v2 metric
//! with exactly its source and the target values it needs, and the
//! scaling behavior's windows and policies.

use serde_json::Value;

use crate::error::Cause;
use crate::kinds::fields::{array_at, parse_quantity, str_at};
use crate::meta;

/// Replica bounds and the scale target, the same in both versions.
fn validate_common(obj: &Value, causes: &mut Vec<Cause>) {
    let min = obj.pointer("/spec/minReplicas").and_then(Value::as_i64);
    let max = obj
        .pointer("/spec/maxReplicas")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if let Some(m) = min.filter(|m| *m < 1) {
        causes.push(Cause::invalid(
            "spec.minReplicas",
            format!("Invalid value: {m}: must be greater than or equal to 1"),
        ));
    }
    if max < 1 {
        causes.push(Cause::invalid(
            "spec.maxReplicas",
            format!("Invalid value: {max}: must be greater than 0"),
        ));
    }
    if min.is_some_and(|m| max < m) {
        causes.push(Cause::invalid(
            "spec.maxReplicas",
            format!("Invalid value: {max}: must be greater than or equal to `minReplicas`"),
        ));
    }
    for f in ["kind", "name"] {
        let at = format!("spec.scaleTargetRef.{f}");
        match str_at(obj, &format!("/spec/scaleTargetRef/{f}")).filter(|s| !s.is_empty()) {
            None => causes.push(Cause::required(at)),
            Some(v) => {
                if let Some(m) = meta::path_segment(v) {
                    causes.push(Cause::invalid(at, format!("Invalid value: {v:?}: {m}")));
                }
            }
        }
    }
}

pub(super) fn validate_v1(obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    validate_common(obj, &mut causes);
    if let Some(n) = obj
        .pointer("/spec/targetCPUUtilizationPercentage")
        .and_then(Value::as_i64)
        .filter(|n| *n < 1)
    {
        causes.push(Cause::invalid(
            "spec.targetCPUUtilizationPercentage",
            format!("Invalid value: {n}: must be greater than 0"),
        ));
    }
    causes
}

pub(super) fn validate_v2(obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    validate_common(obj, &mut causes);
    for (i, m) in array_at(obj, "/spec/metrics").iter().enumerate() {
        metric(m, &format!("spec.metrics[{i}]"), &mut causes);
    }
    if let Some(b) = obj.pointer("/spec/behavior").filter(|b| b.is_object()) {
        for rules in ["scaleUp", "scaleDown"] {
            if let Some(r) = b.get(rules).filter(|r| r.is_object()) {
                scaling_rules(r, &format!("spec.behavior.{rules}"), &mut causes);
            }
        }
    }
    causes
}

/// The metric source types and the field each one fills.
const SOURCES: &[(&str, &str)] = &[
    ("ContainerResource", "containerResource"),
    ("External", "external"),
    ("Object", "object"),
    ("Pods", "pods"),
    ("Resource", "resource"),
];

fn metric(m: &Value, at: &str, causes: &mut Vec<Cause>) {
    let present: Vec<&str> = SOURCES
        .iter()
        .map(|(_, f)| *f)
        .filter(|f| m.get(*f).is_some_and(|v| !v.is_null()))
        .collect();
    let ty = str_at(m, "/type").unwrap_or("");
    let expected = SOURCES.iter().find(|(t, _)| *t == ty).map(|(_, f)| *f);
    match expected {
        None if ty.is_empty() => causes.push(Cause::required_because(
            format!("{at}.type"),
            "must specify a metric source type",
        )),
        None => causes.push(Cause::not_supported(
            format!("{at}.type"),
            ty,
            &SOURCES.iter().map(|(t, _)| *t).collect::<Vec<_>>(),
        )),
        Some(f) if !present.contains(&f) => causes.push(Cause::required_because(
            format!("{at}.{f}"),
            "must populate information for the given metric source",
        )),
        Some(_) => {}
    }
    if present.len() > 1 {
        for f in present.iter().filter(|f| Some(**f) != expected) {
            causes.push(Cause::forbidden(
                format!("{at}.{f}"),
                "must populate the given metric source only",
            ));
        }
    }
    let Some(f) = expected.filter(|f| present.contains(f)) else {
        return;
    };
    let src = &m[f];
    let sat = format!("{at}.{f}");
    let target = src.get("target").unwrap_or(&Value::Null);
    target_rules(target, &format!("{sat}.target"), causes);
    let has = |k: &str| target.get(k).is_some_and(|v| !v.is_null());
    match f {
        "resource" | "containerResource" => {
            if str_at(src, "/name").is_none_or(str::is_empty) {
                causes.push(Cause::required_because(
                    format!("{sat}.name"),
                    "must specify a resource name",
                ));
            }
            if f == "containerResource" && str_at(src, "/container").is_none_or(str::is_empty) {
                causes.push(Cause::required_because(
                    format!("{sat}.container"),
                    "must specify a container",
                ));
            }
            if !has("averageUtilization") && !has("averageValue") {
                causes.push(Cause::required_because(
                    format!("{sat}.target.averageUtilization"),
                    "must set either a target raw value or a target utilization",
                ));
            }
            if has("averageUtilization") && has("averageValue") {
                causes.push(Cause::forbidden(
                    format!("{sat}.target.averageValue"),
                    "may not set both a target raw value and a target utilization",
                ));
            }
        }
        _ => {
            if str_at(src, "/metric/name").is_none_or(str::is_empty) {
                causes.push(Cause::required_because(
                    format!("{sat}.metric.name"),
                    "must specify a metric name",
                ));
            }
            match f {
                "pods" if !has("averageValue") => causes.push(Cause::required_because(
                    format!("{sat}.target.averageValue"),
                    "must specify a positive target averageValue",
                )),
                "object" | "external" if !has("value") && !has("averageValue") => {
                    causes.push(Cause::required_because(
                        format!("{sat}.target.value"),
                        "must set either a target value or averageValue",
                    ))
                }
                _ => {}
            }
            if f == "object" {
                for k in ["kind", "name"] {
                    if str_at(src, &format!("/describedObject/{k}")).is_none_or(str::is_empty) {
                        causes.push(Cause::required(format!("{sat}.describedObject.{k}")));
                    }
                }
            }
        }
    }
}

fn target_rules(t: &Value, at: &str, causes: &mut Vec<Cause>) {
    match str_at(t, "/type").unwrap_or("") {
        "" => causes.push(Cause::required_because(
            format!("{at}.type"),
            "must specify a metric target type",
        )),
        "Utilization" | "Value" | "AverageValue" => {}
        other => causes.push(Cause::invalid(
            format!("{at}.type"),
            format!("Invalid value: {other:?}: must be either Utilization, Value, or AverageValue"),
        )),
    }
    for q in ["value", "averageValue"] {
        if let Some(v) = t.get(q).filter(|v| !v.is_null()) {
            let text = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let n = match v {
                Value::Number(n) => n.as_f64(),
                Value::String(s) => parse_quantity(s),
                _ => None,
            };
            if !n.is_some_and(|n| n > 0.0) {
                causes.push(Cause::invalid(
                    format!("{at}.{q}"),
                    format!("Invalid value: {text:?}: must be positive"),
                ));
            }
        }
    }
    if let Some(u) = t
        .get("averageUtilization")
        .and_then(Value::as_i64)
        .filter(|u| *u < 1)
    {
        causes.push(Cause::invalid(
            format!("{at}.averageUtilization"),
            format!("Invalid value: {u}: must be greater than 0"),
        ));
    }
}

/// Longest stabilization window and policy period (Kubernetes' limits).
const MAX_WINDOW: i64 = 3600;
const MAX_PERIOD: i64 = 1800;

fn scaling_rules(r: &Value, at: &str, causes: &mut Vec<Cause>) {
    if let Some(w) = r.get("stabilizationWindowSeconds").and_then(Value::as_i64) {
        let field = format!("{at}.stabilizationWindowSeconds");
        if w < 0 {
            causes.push(Cause::invalid(
                field,
                format!("Invalid value: {w}: must be greater than or equal to zero"),
            ));
        } else if w > MAX_WINDOW {
            causes.push(Cause::invalid(
                field,
                format!("Invalid value: {w}: must be less than or equal to {MAX_WINDOW}"),
            ));
        }
    }
    if let Some(p) = str_at(r, "/selectPolicy") {
        let supported = ["Disabled", "Max", "Min"];
        if !supported.contains(&p) {
            causes.push(Cause::not_supported(
                format!("{at}.selectPolicy"),
                p,
                &supported,
            ));
        }
    }
    let policies = array_at(r, "/policies");
    if policies.is_empty() {
        causes.push(Cause::required_because(
            format!("{at}.policies"),
            "must specify at least one Policy",
        ));
    }
    for (i, p) in policies.iter().enumerate() {
        let pat = format!("{at}.policies[{i}]");
        let ty = str_at(p, "/type").unwrap_or("");
        if ty != "Pods" && ty != "Percent" {
            causes.push(Cause::not_supported(
                format!("{pat}.type"),
                ty,
                &["Percent", "Pods"],
            ));
        }
        let value = p.get("value").and_then(Value::as_i64).unwrap_or(0);
        if value <= 0 {
            causes.push(Cause::invalid(
                format!("{pat}.value"),
                format!("Invalid value: {value}: must be greater than zero"),
            ));
        }
        let period = p.get("periodSeconds").and_then(Value::as_i64).unwrap_or(0);
        if period <= 0 {
            causes.push(Cause::invalid(
                format!("{pat}.periodSeconds"),
                format!("Invalid value: {period}: must be greater than zero"),
            ));
        } else if period > MAX_PERIOD {
            causes.push(Cause::invalid(
                format!("{pat}.periodSeconds"),
                format!("Invalid value: {period}: must be less than or equal to {MAX_PERIOD}"),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::fields::cause_fields as fields;
    use serde_json::json;

    fn hpa_v2() -> Value {
        json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, "maxReplicas": 5}})
    }

    #[test]
    fn v2_is_validated_as_kubernetes_does() {
        let mut h = hpa_v2();
        h["spec"]["minReplicas"] = json!(6);
        h["spec"]["scaleTargetRef"] = json!({"name": "a/b"});
        h["spec"]["metrics"] = json!([
            {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization"}}},
            {"type": "Pods", "resource": {"name": "cpu"}},
            {"type": "Sideways"},
            {"type": "External", "external": {"metric": {"name": "q"}, "target": {"type": "Value", "value": "-1"}}}]);
        h["spec"]["behavior"] = json!({"scaleUp": {"selectPolicy": "Most", "policies": [{"type": "Pods", "value": 0, "periodSeconds": 4000}]}});
        assert_eq!(
            fields(&validate_v2(&h)),
            [
                "spec.maxReplicas",
                "spec.scaleTargetRef.kind",
                "spec.scaleTargetRef.name",
                "spec.metrics[0].resource.target.averageUtilization",
                "spec.metrics[1].pods",
                "spec.metrics[2].type",
                "spec.metrics[3].external.target.value",
                "spec.behavior.scaleUp.selectPolicy",
                "spec.behavior.scaleUp.policies[0].value",
                "spec.behavior.scaleUp.policies[0].periodSeconds",
            ]
        );
    }

    #[test]
    fn v1_is_validated_as_kubernetes_does() {
        assert_eq!(
            fields(&validate_v1(&json!({"spec": {"maxReplicas": 0,
            "targetCPUUtilizationPercentage": 0, "scaleTargetRef": {"kind": "Deployment", "name": "w"}}}))),
            ["spec.maxReplicas", "spec.targetCPUUtilizationPercentage"]
        );
    }
}
