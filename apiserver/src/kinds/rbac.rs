//! `rbac.authorization.k8s.io/v1`: roles and cluster roles (their rules),
//! and role bindings and cluster role bindings (subjects and a fixed role
//! reference).

use k8s_openapi::api::rbac::v1 as rbac;
use serde_json::{Value, json};

use super::columns::{self, Printed, at};
use super::fields::{array_at, default_at, selector, str_at};
use super::{Column, ResourceType, Strategy};
use crate::error::Cause;
use crate::meta;

/// The RBAC kinds, in discovery order.
pub fn kinds() -> Vec<ResourceType> {
    vec![
        ResourceType::of::<rbac::Role>().strategy(RoleStrategy {
            validate: validate_role,
        }),
        ResourceType::of::<rbac::ClusterRole>().strategy(RoleStrategy {
            validate: validate_clusterrole,
        }),
        ResourceType::of::<rbac::RoleBinding>().strategy(BindingStrategy {
            validate: validate_rolebinding,
        }),
        ResourceType::of::<rbac::ClusterRoleBinding>().strategy(BindingStrategy {
            validate: validate_clusterrolebinding,
        }),
    ]
}

/// Roles and cluster roles: names are path segments, rules are checked.
struct RoleStrategy {
    validate: fn(&Value) -> Vec<Cause>,
}

impl Strategy for RoleStrategy {
    fn name_rule(&self) -> fn(&str) -> Option<String> {
        meta::path_segment
    }
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        (self.validate)(obj)
    }
}

/// Role bindings and cluster role bindings.
struct BindingStrategy {
    validate: fn(&Value) -> Vec<Cause>,
}

impl Strategy for BindingStrategy {
    fn name_rule(&self) -> fn(&str) -> Option<String> {
        meta::path_segment
    }
    fn prepare_create(&self, obj: &mut Value) {
        binding_defaults(obj)
    }
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        (self.validate)(obj)
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        binding_update(new, old)
    }
    fn columns(&self) -> Vec<Column> {
        columns::columns(BINDING_COLUMNS)
    }
    fn cells(&self, obj: &Value) -> Vec<Value> {
        columns::cells(BINDING_COLUMNS, obj)
    }
}

const BINDING_COLUMNS: &[Printed] = &[at("Role", "Bound role", "/roleRef/name")];

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

fn rules(obj: &Value, namespaced: bool) -> Vec<Cause> {
    let mut causes = Vec::new();
    for (i, r) in array_at(obj, "/rules").iter().enumerate() {
        let at = format!("rules[{i}]");
        if array_at(r, "/verbs").is_empty() {
            causes.push(Cause::required_because(
                format!("{at}.verbs"),
                "verbs must contain at least one value",
            ));
        }
        let urls = array_at(r, "/nonResourceURLs");
        let resources = array_at(r, "/resources");
        if !urls.is_empty() {
            if namespaced {
                causes.push(Cause::invalid(
                    format!("{at}.nonResourceURLs"),
                    "Invalid value: namespaced rules cannot apply to non-resource URLs",
                ));
            } else if !resources.is_empty() || !array_at(r, "/apiGroups").is_empty() {
                causes.push(Cause::invalid(
                    format!("{at}.nonResourceURLs"),
                    "Invalid value: rules cannot apply to both regular resources and non-resource URLs",
                ));
            }
            continue;
        }
        if r.get("apiGroups")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty)
        {
            causes.push(Cause::required_because(
                format!("{at}.apiGroups"),
                "resource rules must supply at least one api group",
            ));
        }
        if resources.is_empty() {
            causes.push(Cause::required_because(
                format!("{at}.resources"),
                "resource rules must supply at least one resource",
            ));
        }
    }
    causes
}

fn validate_role(obj: &Value) -> Vec<Cause> {
    rules(obj, true)
}

fn validate_clusterrole(obj: &Value) -> Vec<Cause> {
    let mut causes = rules(obj, false);
    if let Some(agg) = obj.get("aggregationRule").filter(|a| a.is_object()) {
        for (i, s) in array_at(agg, "/clusterRoleSelectors").iter().enumerate() {
            causes.extend(selector(
                s,
                &format!("aggregationRule.clusterRoleSelectors[{i}]"),
            ));
        }
    }
    causes
}

/// The role reference's group and each subject's group, where Kubernetes
/// fills them in.
fn binding_defaults(obj: &mut Value) {
    if obj.get("roleRef").is_some_and(Value::is_object) {
        default_at(obj, &["roleRef", "apiGroup"], json!(RBAC_GROUP));
    }
    if let Some(subjects) = obj.get_mut("subjects").and_then(Value::as_array_mut) {
        for s in subjects {
            let group = match s.get("kind").and_then(Value::as_str) {
                Some("User" | "Group") => RBAC_GROUP,
                _ => "",
            };
            default_at(s, &["apiGroup"], json!(group));
        }
    }
}

fn binding(obj: &Value, cluster: bool) -> Vec<Cause> {
    let mut causes = Vec::new();
    let kinds: &[&str] = if cluster {
        &["ClusterRole"]
    } else {
        &["Role", "ClusterRole"]
    };
    match obj.get("roleRef").filter(|r| r.is_object()) {
        None => causes.push(Cause::required("roleRef")),
        Some(r) => {
            if str_at(r, "/apiGroup") != Some(RBAC_GROUP) {
                causes.push(Cause::not_supported(
                    "roleRef.apiGroup",
                    str_at(r, "/apiGroup").unwrap_or(""),
                    &[RBAC_GROUP],
                ));
            }
            match str_at(r, "/kind") {
                Some(k) if kinds.contains(&k) => {}
                k => causes.push(Cause::not_supported("roleRef.kind", k.unwrap_or(""), kinds)),
            }
            match str_at(r, "/name") {
                None | Some("") => causes.push(Cause::required("roleRef.name")),
                Some(n) => {
                    if let Some(m) = meta::path_segment(n) {
                        causes.push(Cause::invalid(
                            "roleRef.name",
                            format!("Invalid value: {n:?}: {m}"),
                        ));
                    }
                }
            }
        }
    }
    for (i, s) in array_at(obj, "/subjects").iter().enumerate() {
        let at = format!("subjects[{i}]");
        let name = str_at(s, "/name").unwrap_or("");
        if name.is_empty() {
            causes.push(Cause::required(format!("{at}.name")));
        }
        let group = str_at(s, "/apiGroup").unwrap_or("");
        match str_at(s, "/kind") {
            Some("ServiceAccount") => {
                if !group.is_empty() {
                    causes.push(Cause::not_supported(format!("{at}.apiGroup"), group, &[""]));
                }
                if !name.is_empty()
                    && let Some(m) = meta::dns1123_subdomain(name)
                {
                    causes.push(Cause::invalid(
                        format!("{at}.name"),
                        format!("Invalid value: {name:?}: {m}"),
                    ));
                }
                if cluster && str_at(s, "/namespace").is_none_or(str::is_empty) {
                    causes.push(Cause::required(format!("{at}.namespace")));
                }
            }
            Some("User" | "Group") => {
                if group != RBAC_GROUP {
                    causes.push(Cause::not_supported(
                        format!("{at}.apiGroup"),
                        group,
                        &[RBAC_GROUP],
                    ));
                }
            }
            k => causes.push(Cause::not_supported(
                format!("{at}.kind"),
                k.unwrap_or(""),
                &["ServiceAccount", "User", "Group"],
            )),
        }
    }
    causes
}

fn validate_rolebinding(obj: &Value) -> Vec<Cause> {
    binding(obj, false)
}

fn validate_clusterrolebinding(obj: &Value) -> Vec<Cause> {
    binding(obj, true)
}

/// A binding's role never changes: Kubernetes makes users delete and recreate.
fn binding_update(new: &Value, old: &Value) -> Vec<Cause> {
    if new.get("roleRef") != old.get("roleRef") {
        return vec![Cause::invalid(
            "roleRef",
            "Invalid value: cannot change roleRef",
        )];
    }
    vec![]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::fields::cause_fields as fields;

    #[test]
    fn rbac_rules_bindings_and_defaults() {
        let role = json!({"rules": [{"verbs": [], "resources": ["pods"]}, {"verbs": ["get"], "nonResourceURLs": ["/x"]}]});
        assert_eq!(
            fields(&validate_role(&role)),
            [
                "rules[0].verbs",
                "rules[0].apiGroups",
                "rules[1].nonResourceURLs"
            ]
        );
        let cr = json!({"rules": [{"verbs": ["get"], "nonResourceURLs": ["/healthz"]}]});
        assert!(validate_clusterrole(&cr).is_empty());
        let mut rb = json!({"roleRef": {"kind": "Role", "name": "r"},
            "subjects": [{"kind": "User", "name": "alice"}, {"kind": "ServiceAccount", "name": "b"}]});
        binding_defaults(&mut rb);
        assert_eq!(rb["roleRef"]["apiGroup"], RBAC_GROUP);
        assert_eq!(rb["subjects"][0]["apiGroup"], RBAC_GROUP);
        assert_eq!(rb["subjects"][1]["apiGroup"], "");
        assert!(validate_rolebinding(&rb).is_empty());
        assert_eq!(
            fields(&validate_clusterrolebinding(&rb)),
            ["roleRef.kind", "subjects[1].namespace"]
        );
        let mut changed = rb.clone();
        changed["roleRef"]["name"] = json!("other");
        assert_eq!(fields(&binding_update(&changed, &rb)), ["roleRef"]);
    }
}
