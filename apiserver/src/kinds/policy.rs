//! `policy/v1`: PodDisruptionBudgets, with their status subresource,
//! Kubernetes' validation and the columns `kubectl get pdb` prints.

use k8s_openapi::api::policy::v1 as policy;
use serde_json::{Value, json};

use super::fields::{selector, str_at};
use super::{Column, ResourceType, Strategy, Subresource};
use crate::error::Cause;

/// The `policy` kinds.
pub fn kinds() -> Vec<ResourceType> {
    vec![
        ResourceType::of::<policy::PodDisruptionBudget>()
            .short_names(&["pdb"])
            .subresources(&[Subresource::Status])
            .strategy(PdbStrategy),
    ]
}

struct PdbStrategy;
impl Strategy for PdbStrategy {
    fn prepare_create(&self, obj: &mut Value) {
        // A new budget starts with an empty status (the disruption
        // controller fills it in); its counts are never omitted.
        obj["status"] = json!({"disruptionsAllowed": 0, "currentHealthy": 0,
            "desiredHealthy": 0, "expectedPods": 0});
    }
    fn prepare_update(&self, _new: &mut Value, _old: &Value) {}
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        validate_pdb(obj)
    }
    fn columns(&self) -> Vec<Column> {
        vec![
            Column::new(
                "Min Available",
                "The minimum number of pods that must be available",
            ),
            Column::new(
                "Max Unavailable",
                "The maximum number of pods that may be unavailable",
            ),
            Column::new(
                "Allowed Disruptions",
                "Calculated number of pods that may be disrupted at this time",
            ),
        ]
    }
    fn cells(&self, obj: &Value) -> Vec<Value> {
        let int_or_percent = |p: &str| match obj.pointer(p) {
            Some(Value::Number(n)) => json!(n.to_string()),
            Some(Value::String(s)) => json!(s),
            _ => json!("N/A"),
        };
        vec![
            int_or_percent("/spec/minAvailable"),
            int_or_percent("/spec/maxUnavailable"),
            json!(
                obj.pointer("/status/disruptionsAllowed")
                    .and_then(Value::as_i64)
                    .unwrap_or(0)
            ),
        ]
    }
}

/// An integer of at least 0, or a percentage of at most 100%.
fn int_or_percent(obj: &Value, pointer: &str, field: &str, causes: &mut Vec<Cause>) {
    match obj.pointer(pointer) {
        Some(Value::String(s)) => {
            let number = s
                .strip_suffix('%')
                .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
            match number {
                None => causes.push(Cause::invalid(
                    field,
                    format!("Invalid value: {s:?}: must be an integer or percentage (e.g '5%')"),
                )),
                Some(n) if n.parse::<u64>().ok().is_none_or(|n| n > 100) => {
                    causes.push(Cause::invalid(
                        field,
                        format!("Invalid value: {s:?}: must not be greater than 100%"),
                    ))
                }
                Some(_) => {}
            }
        }
        Some(Value::Number(n)) if n.as_i64().is_some_and(|n| n < 0) => causes.push(Cause::invalid(
            field,
            format!("Invalid value: {n}: must be greater than or equal to 0"),
        )),
        _ => {}
    }
}

fn validate_pdb(obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let set = |f: &str| {
        obj.pointer(&format!("/spec/{f}"))
            .is_some_and(|v| !v.is_null())
    };
    if set("minAvailable") && set("maxUnavailable") {
        causes.push(Cause::invalid(
            "spec",
            "Invalid value: \"object\": minAvailable and maxUnavailable cannot be both set",
        ));
    }
    int_or_percent(obj, "/spec/minAvailable", "spec.minAvailable", &mut causes);
    int_or_percent(
        obj,
        "/spec/maxUnavailable",
        "spec.maxUnavailable",
        &mut causes,
    );
    if let Some(sel) = obj.pointer("/spec/selector").filter(|s| !s.is_null()) {
        causes.extend(selector(sel, "spec.selector"));
    }
    if let Some(p) = str_at(obj, "/spec/unhealthyPodEvictionPolicy") {
        let supported = ["AlwaysAllow", "IfHealthyBudget"];
        if !supported.contains(&p) {
            causes.push(Cause::not_supported(
                "spec.unhealthyPodEvictionPolicy",
                p,
                &supported,
            ));
        }
    }
    for f in [
        "currentHealthy",
        "desiredHealthy",
        "expectedPods",
        "disruptionsAllowed",
    ] {
        if let Some(n) = obj.pointer(&format!("/status/{f}")).and_then(Value::as_i64)
            && n < 0
        {
            causes.push(Cause::invalid(
                format!("status.{f}"),
                format!("Invalid value: {n}: must be greater than or equal to 0"),
            ));
        }
    }
    causes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::fields::cause_fields as fields;

    #[test]
    fn budgets_are_validated_and_printed_as_kubernetes_does() {
        let mut ok = json!({"metadata": {"name": "web"}, "spec": {"minAvailable": "50%",
            "selector": {"matchLabels": {"app": "web"}}, "unhealthyPodEvictionPolicy": "AlwaysAllow"}});
        PdbStrategy.prepare_create(&mut ok);
        assert_eq!(ok["status"]["disruptionsAllowed"], 0);
        assert!(validate_pdb(&ok).is_empty());
        assert_eq!(
            PdbStrategy.cells(&ok),
            [json!("50%"), json!("N/A"), json!(0)]
        );
        let bad = json!({"spec": {"minAvailable": "150%", "maxUnavailable": -1,
            "selector": {"matchExpressions": [{"key": "a", "operator": "Near"}]},
            "unhealthyPodEvictionPolicy": "Sometimes"}, "status": {"expectedPods": -2}});
        assert_eq!(
            fields(&validate_pdb(&bad)),
            [
                "spec",
                "spec.minAvailable",
                "spec.maxUnavailable",
                "spec.selector.matchExpressions[0].operator",
                "spec.unhealthyPodEvictionPolicy",
                "status.expectedPods"
            ]
        );
        let word = json!({"spec": {"maxUnavailable": "half"}});
        assert_eq!(
            validate_pdb(&word)[0].message,
            "Invalid value: \"half\": must be an integer or percentage (e.g '5%')"
        );
        assert_eq!(PdbStrategy.cells(&word)[1], "half");
    }
}
