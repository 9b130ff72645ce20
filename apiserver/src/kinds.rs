//! The kinds this server stores, one strategy each: defaults, validation and
//! the columns `kubectl get` shows. Every kind's rules live here; the generic
//! request handling lives in `api.rs`.

use base64::Engine;
use serde_json::{Value, json};

use crate::error::Cause;
use crate::meta;

/// A column of `kubectl get` output (Table `columnDefinitions`).
pub struct Column {
    pub name: &'static str,
    pub kind: &'static str,
    pub description: &'static str,
    /// 0: always shown; 1: only with `-o wide`.
    pub priority: u8,
}

/// The rules of one kind.
pub trait Strategy: Send + Sync {
    /// The rule a name must satisfy.
    fn name_rule(&self) -> fn(&str) -> Option<String> {
        meta::dns1123_subdomain
    }
    /// Fill in defaults on create (never validation).
    fn prepare_create(&self, _obj: &mut Value) {}
    /// Normalize an update (never validation).
    fn prepare_update(&self, new: &mut Value, _old: &Value) {
        self.prepare_create(new)
    }
    /// Field errors of a (prepared) object; never mutates.
    fn validate(&self, _obj: &Value) -> Vec<Cause> {
        vec![]
    }
    /// Top-level fields of the kind besides apiVersion, kind and metadata;
    /// anything else is an unknown field (fieldValidation).
    fn fields(&self) -> &'static [&'static str] {
        &[]
    }
    /// Columns between NAME and AGE.
    fn columns(&self) -> Vec<Column> {
        vec![]
    }
    /// Cells for [`Strategy::columns`].
    fn cells(&self, _obj: &Value) -> Vec<Value> {
        vec![]
    }
}

/// A served resource type.
pub struct ResourceType {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub strategy: &'static dyn Strategy,
}

impl ResourceType {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The store key prefix of this resource in one namespace (or all).
    pub fn prefix(&self, namespace: Option<&str>) -> String {
        let group = if self.group.is_empty() {
            "core"
        } else {
            self.group
        };
        match namespace {
            Some(ns) if self.namespaced => format!("/registry/{group}/{}/{ns}/", self.plural),
            _ => format!("/registry/{group}/{}/", self.plural),
        }
    }

    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        format!("{}{name}", self.prefix(namespace))
    }
}

struct NamespaceStrategy;
impl Strategy for NamespaceStrategy {
    fn fields(&self) -> &'static [&'static str] {
        &["spec", "status"]
    }
    fn name_rule(&self) -> fn(&str) -> Option<String> {
        meta::dns1123_label
    }
    fn prepare_create(&self, obj: &mut Value) {
        if obj.pointer("/spec/finalizers").is_none() {
            obj["spec"] = json!({"finalizers": ["kubernetes"]});
        }
        if obj.pointer("/metadata/deletionTimestamp").is_none() {
            obj["status"] = json!({"phase": "Active"});
        }
    }
    fn columns(&self) -> Vec<Column> {
        vec![Column {
            name: "Status",
            kind: "string",
            description: "The status of the namespace",
            priority: 0,
        }]
    }
    fn cells(&self, obj: &Value) -> Vec<Value> {
        vec![
            obj.pointer("/status/phase")
                .cloned()
                .unwrap_or(json!("Active")),
        ]
    }
}

fn config_key_causes(obj: &Value, field: &str, causes: &mut Vec<Cause>) {
    if let Some(m) = obj.get(field) {
        match m.as_object() {
            Some(m) => {
                for k in m.keys() {
                    let ok = !k.is_empty()
                        && k.len() <= 253
                        && k.chars()
                            .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c));
                    if !ok {
                        causes.push(Cause::invalid(
                            format!("{field}[{k}]"),
                            format!("Invalid value: {k:?}: a valid config key must consist of alphanumeric characters, '-', '_' or '.'"),
                        ));
                    }
                }
            }
            None if m.is_null() => {}
            None => causes.push(Cause::invalid(field, "must be a map")),
        }
    }
}

fn count(obj: &Value, fields: &[&str]) -> usize {
    fields
        .iter()
        .filter_map(|f| obj.get(*f)?.as_object().map(|m| m.len()))
        .sum()
}

struct ConfigMapStrategy;
impl Strategy for ConfigMapStrategy {
    fn fields(&self) -> &'static [&'static str] {
        &["data", "binaryData", "immutable"]
    }
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut causes = Vec::new();
        config_key_causes(obj, "data", &mut causes);
        config_key_causes(obj, "binaryData", &mut causes);
        if let Some(m) = obj.get("data").and_then(Value::as_object) {
            for (k, v) in m {
                if !v.is_string() {
                    causes.push(Cause::invalid(format!("data[{k}]"), "must be a string"));
                }
            }
        }
        causes
    }
    fn columns(&self) -> Vec<Column> {
        vec![Column {
            name: "Data",
            kind: "string",
            description: "Number of data entries",
            priority: 0,
        }]
    }
    fn cells(&self, obj: &Value) -> Vec<Value> {
        vec![json!(count(obj, &["data", "binaryData"]))]
    }
}

struct SecretStrategy;
impl Strategy for SecretStrategy {
    fn fields(&self) -> &'static [&'static str] {
        &["data", "stringData", "type", "immutable"]
    }
    fn prepare_create(&self, obj: &mut Value) {
        if obj
            .get("type")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            obj["type"] = json!("Opaque");
        }
        // stringData is write-only: it is merged into data, base64-encoded.
        if let Some(Value::Object(sd)) = obj.as_object_mut().and_then(|o| o.remove("stringData")) {
            if !obj.get("data").is_some_and(Value::is_object) {
                obj["data"] = json!({});
            }
            for (k, v) in sd {
                let s = v.as_str().unwrap_or_default().to_string();
                obj["data"][k] = json!(base64::engine::general_purpose::STANDARD.encode(s));
            }
        }
    }
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut causes = Vec::new();
        config_key_causes(obj, "data", &mut causes);
        if let Some(m) = obj.get("data").and_then(Value::as_object) {
            for (k, v) in m {
                let ok = v
                    .as_str()
                    .is_some_and(|s| base64::engine::general_purpose::STANDARD.decode(s).is_ok());
                if !ok {
                    causes.push(Cause::invalid(
                        format!("data[{k}]"),
                        "must be base64-encoded bytes",
                    ));
                }
            }
        }
        causes
    }
    fn columns(&self) -> Vec<Column> {
        vec![
            Column {
                name: "Type",
                kind: "string",
                description: "The type of the secret",
                priority: 0,
            },
            Column {
                name: "Data",
                kind: "string",
                description: "Number of data entries",
                priority: 0,
            },
        ]
    }
    fn cells(&self, obj: &Value) -> Vec<Value> {
        vec![
            obj.get("type").cloned().unwrap_or(json!("Opaque")),
            json!(count(obj, &["data"])),
        ]
    }
}

struct ServiceAccountStrategy;
impl Strategy for ServiceAccountStrategy {
    fn fields(&self) -> &'static [&'static str] {
        &[
            "secrets",
            "imagePullSecrets",
            "automountServiceAccountToken",
        ]
    }
    fn columns(&self) -> Vec<Column> {
        vec![Column {
            name: "Secrets",
            kind: "string",
            description: "Number of secrets",
            priority: 0,
        }]
    }
    fn cells(&self, obj: &Value) -> Vec<Value> {
        vec![json!(
            obj.get("secrets")
                .and_then(Value::as_array)
                .map(Vec::len)
                .unwrap_or(0)
        )]
    }
}

/// Every resource type this server serves.
pub fn all() -> &'static [ResourceType] {
    TYPES
}

static TYPES: &[ResourceType] = &[
    ResourceType {
        group: "",
        version: "v1",
        kind: "Namespace",
        plural: "namespaces",
        singular: "namespace",
        namespaced: false,
        short_names: &["ns"],
        categories: &[],
        strategy: &NamespaceStrategy,
    },
    ResourceType {
        group: "",
        version: "v1",
        kind: "ConfigMap",
        plural: "configmaps",
        singular: "configmap",
        namespaced: true,
        short_names: &["cm"],
        categories: &[],
        strategy: &ConfigMapStrategy,
    },
    ResourceType {
        group: "",
        version: "v1",
        kind: "Secret",
        plural: "secrets",
        singular: "secret",
        namespaced: true,
        short_names: &[],
        categories: &[],
        strategy: &SecretStrategy,
    },
    ResourceType {
        group: "",
        version: "v1",
        kind: "ServiceAccount",
        plural: "serviceaccounts",
        singular: "serviceaccount",
        namespaced: true,
        short_names: &["sa"],
        categories: &[],
        strategy: &ServiceAccountStrategy,
    },
];

/// Fields of ObjectMeta.
pub const META_FIELDS: &[&str] = &[
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
];

/// Unknown fields of an object of this type, as dotted paths.
pub fn unknown_fields(rt: &ResourceType, obj: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(m) = obj.as_object() {
        for k in m.keys() {
            if !["apiVersion", "kind", "metadata"].contains(&k.as_str())
                && !rt.strategy.fields().contains(&k.as_str())
            {
                out.push(k.clone());
            }
        }
    }
    if let Some(m) = obj.get("metadata").and_then(Value::as_object) {
        for k in m.keys() {
            if !META_FIELDS.contains(&k.as_str()) {
                out.push(format!("metadata.{k}"));
            }
        }
    }
    out
}
