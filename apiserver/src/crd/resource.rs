//! What a served custom resource version is: the [`ResourceType`] built from
//! one CRD version ([`resource_types`]), with its [`CustomResource`]
//! (storage version, scale paths, selectable fields, deprecation) and its
//! [`CustomResourceStrategy`] (the structural schema's defaults and
//! validation, generation, status on create, printer columns). The
//! registry serves it as it serves a built-in kind; the hooks that differ
//! read [`ResourceType::custom`].

use std::sync::Arc;

use serde_json::{Value, json};

use super::jsonpath::JsonPath;
use super::printer::{self, PrinterColumn};
use super::status;
use crate::error::{ApiError, Cause};
use crate::kinds::{Column, ResourceType, Strategy, Subresource};
use crate::request::Query;
use crate::structural::Structural;

/// Where a kind's `/scale` reads and writes (JSON pointers).
#[derive(Clone, Debug, PartialEq)]
pub struct ScalePaths {
    /// The desired replicas (`specReplicasPath`).
    pub spec: String,
    /// The observed replicas (`statusReplicasPath`).
    pub status: String,
    /// A label selector in its string form (`labelSelectorPath`).
    pub selector: Option<String>,
}

/// What a custom resource version serves beyond a built-in kind.
#[derive(Debug)]
pub struct CustomResource {
    /// The CRD's name (`widgets.example.com`).
    pub crd: String,
    /// `group/version` of the storage version: objects are stored as it.
    pub storage_api_version: String,
    /// The `/scale` paths, when the version has the scale subresource.
    pub scale: Option<ScalePaths>,
    /// Field selector labels besides `metadata.name` and
    /// `metadata.namespace` (`spec.versions[].selectableFields`).
    pub selectable: Vec<String>,
    /// The `Warning` every request to a deprecated version gets.
    pub warning: Option<String>,
    /// The CRD is being deleted: no new objects.
    pub terminating: bool,
}

impl CustomResource {
    /// A stored object as version `rt` serves it (`None` conversion: the
    /// same fields under the version's apiVersion), with its defaults.
    pub fn served(&self, rt: &ResourceType, mut obj: Value) -> Value {
        if let Some(m) = obj.as_object_mut() {
            m.insert("apiVersion".into(), json!(rt.api_version()));
        }
        if let Some(s) = &rt.structural {
            s.default(&mut obj);
        }
        obj
    }

    /// A served object as it is stored.
    pub fn to_stored(&self, mut obj: Value) -> Value {
        if let Some(m) = obj.as_object_mut() {
            m.insert("apiVersion".into(), json!(self.storage_api_version));
        }
        obj
    }

    /// Field selectors may name only `metadata.name`, `metadata.namespace`
    /// and the selectable fields (a 400 otherwise, as from kube-apiserver).
    pub fn check_field_selector(&self, q: &Query) -> Result<(), ApiError> {
        let selector = crate::selector::Selector::from_query(q)?;
        for r in &selector.fields.0 {
            let label = r.pointer.trim_start_matches('/').replace('/', ".");
            let known = label == "metadata.name"
                || label == "metadata.namespace"
                || self.selectable.contains(&label);
            if !known {
                return Err(ApiError::BadRequest(format!(
                    "field label not supported: {label}"
                )));
            }
        }
        Ok(())
    }
}

/// The rules of one custom resource version.
pub struct CustomResourceStrategy {
    structural: Arc<Structural>,
    /// The version has the status subresource: status is not written on
    /// create nor through the main resource.
    status: bool,
    columns: Vec<PrinterColumn>,
}

impl Strategy for CustomResourceStrategy {
    fn prepare_create(&self, obj: &mut Value) {
        if self.status
            && let Some(m) = obj.as_object_mut()
        {
            m.remove("status");
        }
        // Every custom resource starts at generation 1, with or without spec.
        if obj.get("metadata").is_some_and(Value::is_object) {
            obj["metadata"]["generation"] = json!(1);
        }
        self.structural.default(obj);
    }

    fn prepare_update(&self, new: &mut Value, old: &Value) {
        self.structural.default(new);
        // Any change outside metadata (and status, when it is a
        // subresource) is a new generation.
        let content = |o: &Value| {
            let mut c = o.clone();
            if let Some(m) = c.as_object_mut() {
                m.remove("metadata");
                m.remove("apiVersion");
                m.remove("kind");
                if self.status {
                    m.remove("status");
                }
            }
            c
        };
        let generation = old
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if content(new) != content(old) && new.get("metadata").is_some_and(Value::is_object) {
            new["metadata"]["generation"] = json!(generation + 1);
        }
    }

    fn validate(&self, obj: &Value) -> Vec<Cause> {
        self.structural.validate(obj)
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        self.structural.validate_update(new, old)
    }

    fn columns(&self) -> Vec<Column> {
        self.columns.iter().map(|c| c.column.clone()).collect()
    }

    fn cells(&self, obj: &Value) -> Vec<Value> {
        self.columns.iter().map(|c| printer::cell(c, obj)).collect()
    }
}

/// Kubernetes' order of versions: GA before beta before alpha, higher
/// numbers first, then versions of other shapes by name.
pub fn version_priority(a: &str, b: &str) -> std::cmp::Ordering {
    fn key(v: &str) -> Option<(u8, u64, u64)> {
        let rest = v.strip_prefix('v')?;
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        let major: u64 = rest[..digits].parse().ok()?;
        let tail = &rest[digits..];
        if tail.is_empty() {
            return Some((3, major, 0));
        }
        for (word, rank) in [("beta", 2), ("alpha", 1)] {
            if let Some(n) = tail.strip_prefix(word) {
                let minor: u64 = n.parse().ok()?;
                return Some((rank, major, minor));
            }
        }
        None
    }
    match (key(a), key(b)) {
        (Some(x), Some(y)) => y.cmp(&x),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.cmp(b),
    }
}

/// The scale paths of a version's `subresources.scale`, if it is valid.
fn scale_paths(scale: &Value) -> Option<ScalePaths> {
    let pointer = |k: &str| {
        scale
            .get(k)
            .and_then(Value::as_str)
            .and_then(|p| JsonPath::parse(p).ok())
            .and_then(|p| p.pointer())
    };
    Some(ScalePaths {
        spec: pointer("specReplicasPath")?,
        status: pointer("statusReplicasPath")?,
        selector: pointer("labelSelectorPath"),
    })
}

/// The served versions of a stored CRD as kinds, in Kubernetes' version
/// order (discovery prefers the first), named by its accepted names; an
/// error says why the CRD cannot be served.
pub fn resource_types(crd: &Value) -> Result<Vec<ResourceType>, String> {
    let s = |p: &str| crd.pointer(p).and_then(Value::as_str).unwrap_or("");
    let name = s("/metadata/name").to_string();
    let group = s("/spec/group").to_string();
    let plural = s("/spec/names/plural").to_string();
    let accepted = &crd["status"]["acceptedNames"];
    let a = |k: &str| {
        accepted
            .get(k)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
            .or_else(|| {
                crd.pointer(&format!("/spec/names/{k}"))
                    .and_then(Value::as_str)
            })
            .unwrap_or("")
            .to_string()
    };
    let kind = a("kind");
    let mut singular = a("singular");
    if singular.is_empty() {
        singular = kind.to_lowercase();
    }
    let list = |k: &str| -> Vec<String> {
        accepted
            .get(k)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect()
    };
    if group.is_empty() || plural.is_empty() || kind.is_empty() {
        return Err("the CRD has no group, plural or kind".into());
    }
    let storage = status::storage_version(crd).ok_or("the CRD has no storage version")?;
    let namespaced = s("/spec/scope") != "Cluster";
    let terminating = crd
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|d| !d.is_null());
    let mut versions: Vec<(usize, &Value)> = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
        .filter(|(_, v)| v.get("served") == Some(&json!(true)))
        .collect();
    versions.sort_by(|(_, x), (_, y)| {
        version_priority(
            x.get("name").and_then(Value::as_str).unwrap_or(""),
            y.get("name").and_then(Value::as_str).unwrap_or(""),
        )
    });
    let mut out = Vec::new();
    for (i, v) in versions {
        let version = v
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let path = format!("spec.versions[{i}].schema.openAPIV3Schema");
        let schema = v
            .pointer("/schema/openAPIV3Schema")
            .cloned()
            .unwrap_or_else(
                || json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
            );
        let structural = Arc::new(Structural::new(&schema, &path).map_err(|causes| {
            let list: Vec<String> = causes
                .iter()
                .map(|c| format!("{}: {}", c.field, c.message))
                .collect();
            format!(
                "the schema of {version} is not structural: {}",
                list.join("; ")
            )
        })?);
        let status_sub = v
            .pointer("/subresources/status")
            .is_some_and(Value::is_object);
        let scale = v
            .pointer("/subresources/scale")
            .filter(|s| s.is_object())
            .and_then(scale_paths);
        let mut subresources = Vec::new();
        if status_sub {
            subresources.push(Subresource::Status);
        }
        if scale.is_some() {
            subresources.push(Subresource::Scale);
        }
        let selectable = v
            .get("selectableFields")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|f| f.get("jsonPath").and_then(Value::as_str))
            .filter_map(|p| JsonPath::parse(p).ok()?.field_label())
            .collect();
        let warning = (v.get("deprecated") == Some(&json!(true))).then(|| {
            v.get("deprecationWarning")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| format!("{group}/{version} {kind} is deprecated"))
        });
        let strategy = CustomResourceStrategy {
            structural: structural.clone(),
            status: status_sub,
            columns: printer::columns_of(v),
        };
        let custom = CustomResource {
            crd: name.clone(),
            storage_api_version: format!("{group}/{storage}"),
            scale,
            selectable,
            warning,
            terminating,
        };
        let t = ResourceType {
            group: group.clone(),
            version,
            kind: kind.clone(),
            plural: plural.clone(),
            singular: singular.clone(),
            namespaced,
            short_names: list("shortNames"),
            categories: list("categories"),
            subresources,
            strategy: Arc::new(strategy),
            typed: None,
            create_only: false,
            conversion: None,
            structural: None,
            custom: Some(Arc::new(custom)),
        }
        .with_structural(structural);
        out.push(t);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd() -> Value {
        json!({"metadata": {"name": "widgets.example.com"}, "spec": {
            "group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"]},
            "versions": [
                {"name": "v1alpha1", "served": true, "storage": false, "deprecated": true,
                 "schema": {"openAPIV3Schema": {"type": "object"}}},
                {"name": "v1", "served": true, "storage": true,
                 "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.size",
                    "statusReplicasPath": ".status.size", "labelSelectorPath": ".status.selector"}},
                 "selectableFields": [{"jsonPath": ".spec.color"}],
                 "schema": {"openAPIV3Schema": {"type": "object"}}},
                {"name": "v2", "served": false, "storage": false,
                 "schema": {"openAPIV3Schema": {"type": "object"}}}]},
            "status": {"acceptedNames": {"plural": "widgets", "singular": "widget", "kind": "Widget",
                        "shortNames": ["wd"], "categories": ["all"]}}})
    }

    #[test]
    fn served_versions_become_kinds_in_version_order() {
        let types = resource_types(&crd()).unwrap();
        let versions: Vec<&str> = types.iter().map(|t| t.version.as_str()).collect();
        assert_eq!(versions, ["v1", "v1alpha1"]);
        let v1 = &types[0];
        assert_eq!(
            (v1.kind.as_str(), v1.singular.as_str()),
            ("Widget", "widget")
        );
        assert!(v1.namespaced && v1.typed.is_none() && v1.structural.is_some());
        assert_eq!(v1.short_names, ["wd"]);
        assert_eq!(v1.categories, ["all"]);
        assert_eq!(v1.subresources, [Subresource::Status, Subresource::Scale]);
        let c = v1.custom.as_ref().unwrap();
        assert_eq!(
            c.scale,
            Some(ScalePaths {
                spec: "/spec/size".into(),
                status: "/status/size".into(),
                selector: Some("/status/selector".into())
            })
        );
        assert_eq!(c.selectable, ["spec.color"]);
        assert_eq!(c.warning, None);
        let alpha = types[1].custom.as_ref().unwrap();
        assert_eq!(
            alpha.warning.as_deref(),
            Some("example.com/v1alpha1 Widget is deprecated")
        );
        // Both versions share one store, and objects are stored as v1.
        assert_eq!(types[0].prefix(Some("ns")), types[1].prefix(Some("ns")));
        let stored =
            types[1].to_stored(json!({"apiVersion": "example.com/v1alpha1", "kind": "Widget"}));
        assert_eq!(stored["apiVersion"], "example.com/v1");
        assert_eq!(
            types[1].served(stored)["apiVersion"],
            "example.com/v1alpha1"
        );
    }

    #[test]
    fn versions_sort_as_kubernetes_sorts_them() {
        let mut v = vec![
            "v1alpha1", "foo", "v2beta1", "v1", "v10", "v2", "v1beta2", "v1beta1", "bar",
        ];
        v.sort_by(|a, b| version_priority(a, b));
        assert_eq!(
            v,
            [
                "v10", "v2", "v1", "v2beta1", "v1beta2", "v1beta1", "v1alpha1", "bar", "foo"
            ]
        );
    }

    #[test]
    fn selectors_name_only_known_fields_and_generation_counts_content() {
        let types = resource_types(&crd()).unwrap();
        let c = types[0].custom.as_ref().unwrap();
        let q = |s: &str| Query::from([("fieldSelector".to_string(), s.to_string())]);
        assert!(
            c.check_field_selector(&q("metadata.name=a,metadata.namespace!=b"))
                .is_ok()
        );
        assert!(c.check_field_selector(&q("spec.color=red")).is_ok());
        assert!(matches!(
            c.check_field_selector(&q("spec.size=1")),
            Err(ApiError::BadRequest(m)) if m.contains("spec.size")
        ));
        let s = &types[0].strategy;
        let mut obj = json!({"metadata": {"name": "a"}, "spec": {"x": 1}, "status": {"s": 1}});
        s.prepare_create(&mut obj);
        assert_eq!(obj["metadata"]["generation"], 1);
        assert!(obj.get("status").is_none(), "status is a subresource");
        let old = json!({"metadata": {"name": "a", "generation": 4}, "spec": {"x": 1}, "status": {"s": 1}});
        let mut new = json!({"metadata": {"name": "a", "generation": 4, "labels": {"l": "v"}}, "spec": {"x": 1}, "status": {"s": 2}});
        s.prepare_update(&mut new, &old);
        assert_eq!(new["metadata"]["generation"], 4, "metadata and status only");
        new["extra"] = json!(true);
        s.prepare_update(&mut new, &old);
        assert_eq!(new["metadata"]["generation"], 5);
    }
}
