//! `apiextensions.k8s.io/v1`: custom resource definitions (names that match
//! their group and plural, one storage version, structural schemas).

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiext;
use serde_json::{Value, json};

use super::columns::{self, Printed, at};
use super::fields::{array_at, default_at, str_at};
use super::{Column, ResourceType, Strategy, Subresource};
use crate::crd::status as crd_status;
use crate::error::Cause;
use crate::meta;

/// The `apiextensions.k8s.io` kinds.
pub fn kinds() -> Vec<ResourceType> {
    vec![
        ResourceType::of::<apiext::CustomResourceDefinition>()
            .short_names(&["crd", "crds"])
            .subresources(&[Subresource::Status])
            .strategy(CrdStrategy),
    ]
}

struct CrdStrategy;
impl Strategy for CrdStrategy {
    fn prepare_create(&self, obj: &mut Value) {
        crd_defaults(obj);
        // The server owns the status: a new CRD starts with none but the
        // version it stores objects as.
        let mut status = json!({});
        crd_status::add_stored_version(&mut status, obj);
        if let Some(m) = obj.as_object_mut() {
            m.insert("status".into(), status);
        }
    }
    fn prepare_update(&self, new: &mut Value, _old: &Value) {
        crd_defaults(new);
        if new.is_object() {
            let mut status = new.get("status").cloned().unwrap_or_else(|| json!({}));
            crd_status::add_stored_version(&mut status, new);
            new["status"] = status;
        }
    }
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut causes = validate_crd(obj);
        causes.extend(crate::crd::validation::validate(obj));
        causes
    }
    fn validate_create(&self, obj: &Value) -> Vec<Cause> {
        crate::crd::validation::structural(obj)
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        let mut causes = crd_update(new, old);
        // Structural schemas are required unless the stored CRD already had
        // one that is not (it may keep it, and have its status written).
        if crate::crd::validation::structural(old).is_empty() {
            causes.extend(crate::crd::validation::structural(new));
        }
        causes
    }
    fn prepare_delete(&self, obj: &mut Value) {
        // Its objects go before it does ([`crate::crd::cleanup`]).
        let mut finalizers: Vec<Value> = obj
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if !finalizers.iter().any(|f| f == crd_status::FINALIZER) {
            finalizers.push(json!(crd_status::FINALIZER));
        }
        if obj.get("metadata").is_some_and(Value::is_object) {
            obj["metadata"]["finalizers"] = json!(finalizers);
        }
        let mut status = obj.get("status").cloned().unwrap_or_else(|| json!({}));
        crd_status::set_condition(
            &mut status,
            &crd_status::Condition::new(
                "Terminating",
                "True",
                "InstanceDeletionPending",
                "CustomResourceDefinition marked for deletion; CustomResource deletion will begin soon",
            ),
            &meta::rfc3339(meta::now_secs()),
        );
        if obj.is_object() {
            obj["status"] = status;
        }
    }
    fn columns(&self) -> Vec<Column> {
        columns::columns(COLUMNS)
    }
    fn cells(&self, obj: &Value) -> Vec<Value> {
        columns::cells(COLUMNS, obj)
    }
}

const COLUMNS: &[Printed] = &[
    at("Group", "API group", "/spec/group").wide(),
    at("Scope", "Scope", "/spec/scope").wide(),
];

/// Singular name, list kind and conversion strategy where they are missing.
fn crd_defaults(obj: &mut Value) {
    if let Some(kind) = str_at(obj, "/spec/names/kind").map(str::to_string) {
        default_at(
            obj,
            &["spec", "names", "singular"],
            json!(kind.to_lowercase()),
        );
        default_at(
            obj,
            &["spec", "names", "listKind"],
            json!(format!("{kind}List")),
        );
    }
    if obj.get("spec").is_some_and(Value::is_object) {
        default_at(obj, &["spec", "conversion", "strategy"], json!("None"));
    }
}

fn dns_label_at(obj: &Value, pointer: &str, field: &str, causes: &mut Vec<Cause>) {
    match str_at(obj, pointer) {
        None | Some("") => causes.push(Cause::required(field)),
        Some(v) => {
            if let Some(m) = meta::dns1123_label(v) {
                causes.push(Cause::invalid(field, format!("Invalid value: {v:?}: {m}")));
            }
        }
    }
}

fn validate_crd(obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let group = str_at(obj, "/spec/group").unwrap_or("");
    if group.is_empty() {
        causes.push(Cause::required("spec.group"));
    } else if meta::dns1123_subdomain(group).is_some() || !group.contains('.') {
        causes.push(Cause::invalid(
            "spec.group",
            format!("Invalid value: {group:?}: should be a domain with at least one dot"),
        ));
    }
    dns_label_at(obj, "/spec/names/plural", "spec.names.plural", &mut causes);
    if str_at(obj, "/spec/names/singular").is_some() {
        dns_label_at(
            obj,
            "/spec/names/singular",
            "spec.names.singular",
            &mut causes,
        );
    }
    match str_at(obj, "/spec/names/kind") {
        None | Some("") => causes.push(Cause::required("spec.names.kind")),
        Some(k) if !k.chars().all(|c| c.is_ascii_alphanumeric()) => {
            causes.push(Cause::invalid(
                "spec.names.kind",
                format!("Invalid value: {k:?}: may have mixed case, but should otherwise match: ^[a-z]([-a-z0-9]*[a-z0-9])?$"),
            ))
        }
        Some(_) => {}
    }
    let plural = str_at(obj, "/spec/names/plural").unwrap_or("");
    let name = str_at(obj, "/metadata/name").unwrap_or("");
    if !plural.is_empty() && !group.is_empty() && name != format!("{plural}.{group}") {
        causes.push(Cause::invalid(
            "metadata.name",
            format!("Invalid value: {name:?}: must be spec.names.plural+\".\"+spec.group"),
        ));
    }
    match str_at(obj, "/spec/scope") {
        Some("Namespaced" | "Cluster") => {}
        None => causes.push(Cause::required("spec.scope")),
        Some(s) => causes.push(Cause::not_supported(
            "spec.scope",
            s,
            &["Cluster", "Namespaced"],
        )),
    }
    let versions = array_at(obj, "/spec/versions");
    let mut seen = std::collections::BTreeSet::new();
    for (i, v) in versions.iter().enumerate() {
        let at = format!("spec.versions[{i}]");
        dns_label_at(v, "/name", &format!("{at}.name"), &mut causes);
        if let Some(n) = str_at(v, "/name")
            && !seen.insert(n)
        {
            causes.push(Cause::duplicate(format!("{at}.name"), n));
        }
        match v.pointer("/schema/openAPIV3Schema") {
            None => causes.push(Cause::required_because(
                format!("{at}.schema.openAPIV3Schema"),
                "schemas are required",
            )),
            Some(s) => match s.get("type").and_then(Value::as_str) {
                Some("object") => {}
                t => causes.push(Cause::not_supported(
                    format!("{at}.schema.openAPIV3Schema.type"),
                    t.unwrap_or(""),
                    &["object"],
                )),
            },
        }
        if v.pointer("/subresources/scale")
            .is_some_and(Value::is_object)
        {
            for f in ["specReplicasPath", "statusReplicasPath"] {
                if str_at(v, &format!("/subresources/scale/{f}")).is_none() {
                    causes.push(Cause::required(format!("{at}.subresources.scale.{f}")));
                }
            }
        }
    }
    let storage = versions
        .iter()
        .filter(|v| v.get("storage") == Some(&json!(true)))
        .count();
    if storage != 1 {
        causes.push(Cause::invalid(
            "spec.versions",
            "Invalid value: must have exactly one version marked as storage version",
        ));
    }
    if !versions.is_empty()
        && !versions
            .iter()
            .any(|v| v.get("served") == Some(&json!(true)))
    {
        causes.push(Cause::invalid(
            "spec.versions",
            "Invalid value: must have at least one version marked as served",
        ));
    }
    causes
}

fn crd_update(new: &Value, old: &Value) -> Vec<Cause> {
    [
        Cause::immutable(new, old, "/spec/group", "spec.group"),
        Cause::immutable(new, old, "/spec/scope", "spec.scope"),
        Cause::immutable(new, old, "/spec/names/plural", "spec.names.plural"),
    ]
    .into_iter()
    .flatten()
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::fields::cause_fields as fields;

    #[test]
    fn crds_name_their_group_and_one_storage_version() {
        let mut crd = json!({"metadata": {"name": "widgets.example.com"}, "spec": {
            "group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "kind": "Widget"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                          "schema": {"openAPIV3Schema": {"type": "object"}}}]}});
        crd_defaults(&mut crd);
        assert_eq!(crd["spec"]["names"]["singular"], "widget");
        assert_eq!(crd["spec"]["names"]["listKind"], "WidgetList");
        assert!(validate_crd(&crd).is_empty(), "{:?}", validate_crd(&crd));
        let mut bad = crd.clone();
        bad["metadata"]["name"] = json!("gadgets.example.com");
        bad["spec"]["versions"][0]["storage"] = json!(false);
        bad["spec"]["versions"][0]["schema"] = json!(null);
        assert_eq!(
            fields(&validate_crd(&bad)),
            [
                "metadata.name",
                "spec.versions[0].schema.openAPIV3Schema",
                "spec.versions"
            ]
        );
    }
}
