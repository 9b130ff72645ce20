//! `scheduling.k8s.io/v1`: PriorityClasses, with Kubernetes' defaults and
//! rules (a user-defined value of at most one billion, the reserved
//! `system-` prefix, `value` and `preemptionPolicy` fixed once created)
//! and the two system classes every cluster has ([`system_classes`]).

use k8s_openapi::api::scheduling::v1 as scheduling;
use serde_json::{Value, json};

use super::fields::{default_at, str_at};
use super::{Column, ResourceType, Strategy};
use crate::error::Cause;
use crate::meta;

/// The `scheduling.k8s.io` kinds.
pub fn kinds() -> Vec<ResourceType> {
    vec![
        ResourceType::of::<scheduling::PriorityClass>()
            .short_names(&["pc"])
            .strategy(PriorityClassStrategy),
    ]
}

/// The highest value a user-defined class may have.
const HIGHEST_USER_DEFINABLE: i64 = 1_000_000_000;

/// The classes Kubernetes creates at startup: (name, value, description).
const SYSTEM: &[(&str, i64, &str)] = &[
    (
        "system-node-critical",
        2_000_001_000,
        "Used for system critical pods that must not be moved from their current node.",
    ),
    (
        "system-cluster-critical",
        2_000_000_000,
        "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary.",
    ),
];

/// The system priority classes, as the server creates them at startup.
pub fn system_classes() -> Vec<Value> {
    SYSTEM
        .iter()
        .map(|(name, value, description)| {
            json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                "metadata": {"name": name}, "value": value, "description": description,
                "globalDefault": false, "preemptionPolicy": "PreemptLowerPriority"})
        })
        .collect()
}

struct PriorityClassStrategy;
impl Strategy for PriorityClassStrategy {
    fn prepare_create(&self, obj: &mut Value) {
        default_at(obj, &["preemptionPolicy"], json!("PreemptLowerPriority"));
    }
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        validate_priorityclass(obj)
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        let mut causes = Vec::new();
        if new.get("value") != old.get("value") {
            causes.push(Cause::forbidden(
                "value",
                "may not be changed in an update.",
            ));
        }
        causes.extend(Cause::immutable(
            new,
            old,
            "/preemptionPolicy",
            "preemptionPolicy",
        ));
        causes
    }
    fn columns(&self) -> Vec<Column> {
        vec![
            Column::new("Value", "The integer value of this priority class"),
            Column::new(
                "Global-Default",
                "Whether this is the default priority class",
            ),
            // After AGE, as kubectl prints it.
            Column::new("Age", "Time since creation."),
            Column::new(
                "PreemptionPolicy",
                "Whether pods of this class may preempt others",
            ),
        ]
    }
    fn cells(&self, obj: &Value) -> Vec<Value> {
        vec![
            json!(obj.get("value").and_then(Value::as_i64).unwrap_or(0)),
            json!(
                obj.get("globalDefault")
                    .and_then(Value::as_bool)
                    .unwrap_or(false)
            ),
            json!(meta::age(str_at(obj, "/metadata/creationTimestamp"))),
            json!(str_at(obj, "/preemptionPolicy").unwrap_or("")),
        ]
    }
}

fn validate_priorityclass(obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let name = str_at(obj, "/metadata/name").unwrap_or("");
    let value = obj.get("value").and_then(Value::as_i64).unwrap_or(0);
    match SYSTEM.iter().find(|(n, ..)| *n == name) {
        Some((_, v, _)) if *v != value => causes.push(Cause::forbidden(
            "metadata.name",
            format!("{name} is a reserved system priority class name and its value must be {v}"),
        )),
        Some(_) => {}
        None if name.starts_with("system-") => causes.push(Cause::forbidden(
            "metadata.name",
            "priority class names with 'system-' prefix are reserved",
        )),
        None if value > HIGHEST_USER_DEFINABLE => causes.push(Cause::forbidden(
            "value",
            format!("maximum allowed value of a user defined priority is {HIGHEST_USER_DEFINABLE}"),
        )),
        None => {}
    }
    if let Some(p) = str_at(obj, "/preemptionPolicy") {
        let supported = ["Never", "PreemptLowerPriority"];
        if !supported.contains(&p) {
            causes.push(Cause::not_supported("preemptionPolicy", p, &supported));
        }
    }
    causes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::fields::cause_fields as fields;

    #[test]
    fn priority_classes_follow_kubernetes_rules() {
        let mut pc = json!({"metadata": {"name": "high"}, "value": 1000});
        PriorityClassStrategy.prepare_create(&mut pc);
        assert_eq!(pc["preemptionPolicy"], "PreemptLowerPriority");
        assert!(validate_priorityclass(&pc).is_empty());
        for sys in system_classes() {
            assert!(validate_priorityclass(&sys).is_empty(), "{sys}");
        }
        let too_high = json!({"metadata": {"name": "high"}, "value": 1_000_000_001, "preemptionPolicy": "Sometimes"});
        assert_eq!(
            fields(&validate_priorityclass(&too_high)),
            ["value", "preemptionPolicy"]
        );
        let reserved = json!({"metadata": {"name": "system-mine"}, "value": 1});
        assert_eq!(
            fields(&validate_priorityclass(&reserved)),
            ["metadata.name"]
        );
        let mut changed = pc.clone();
        changed["value"] = json!(7);
        changed["preemptionPolicy"] = json!("Never");
        let causes = PriorityClassStrategy.validate_update(&changed, &pc);
        assert_eq!(fields(&causes), ["value", "preemptionPolicy"]);
        assert_eq!(
            causes[0].message,
            "Forbidden: may not be changed in an update."
        );
        let cells = PriorityClassStrategy.cells(&pc);
        assert_eq!(
            (cells[0].clone(), cells[1].clone(), cells[3].clone()),
            (json!(1000), json!(false), json!("PreemptLowerPriority"))
        );
    }
}
