//! CEL validation rules (`x-kubernetes-validations`) of custom resource
//! schemas: compiled once when a CRD is served, evaluated against `self`
//! and, for transition rules, `oldSelf`. [`crate::structural`] calls it at
//! each schema node that has rules.
//!
//! Rules run in the `cel` crate's interpreter ([`library`] has the
//! functions); [`check`] stands in for the type checker the crate lacks,
//! [`convert`] turns JSON into CEL values by the schema and [`cost`] keeps
//! an expensive rule from running. Causes are worded as Kubernetes'
//! apiextensions server words them.

mod check;
mod convert;
mod cost;
mod library;
mod rule;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use serde_json::Value;

use crate::error::Cause;

pub use convert::parse_duration;
use rule::Rule;

/// The compiled rules of one schema node.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    rules: Vec<Rule>,
    /// The node's schema, to convert values and for the `"object"` of
    /// Kubernetes' messages.
    schema: Arc<Value>,
}

impl Rules {
    /// The `x-kubernetes-validations` of `node` (one schema node, with its
    /// type information below it); `None` when it has none. The causes name
    /// the rules that do not compile, under `path` (the node's place in the
    /// CRD, e.g. `spec.validation.openAPIV3Schema.properties[spec]`, giving
    /// `...properties[spec].x-kubernetes-validations[0].rule`).
    pub fn compile(node: &Value, path: &str) -> Result<Option<Rules>, Vec<Cause>> {
        let list_path = join(path, "x-kubernetes-validations");
        let list = match node.get("x-kubernetes-validations") {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::Array(list)) => list,
            Some(_) => {
                return Err(vec![Cause::invalid(
                    list_path,
                    "Invalid value: \"object\": must be a list of validation rules",
                )]);
            }
        };
        if list.is_empty() {
            return Ok(None);
        }
        let root;
        let node = if is_root(path) {
            root = with_root_fields(node);
            &root
        } else {
            node
        };
        let mut rules = Vec::with_capacity(list.len());
        let mut causes = Vec::new();
        for (i, raw) in list.iter().enumerate() {
            match Rule::compile(raw, node, &format!("{list_path}[{i}]")) {
                Ok(r) => rules.push(r),
                Err(mut c) => causes.append(&mut c),
            }
        }
        if !causes.is_empty() {
            return Err(causes);
        }
        Ok(Some(Rules {
            rules,
            schema: Arc::new(node.clone()),
        }))
    }

    /// Errors of `value` (`self`) at field path `path` (e.g. `spec.replicas`);
    /// `old` is `oldSelf` on an update where the value has a counterpart
    /// (transition rules are skipped without it).
    pub fn check(&self, value: &Value, old: Option<&Value>, path: &str) -> Vec<Cause> {
        rule::check_all(&self.rules, &self.schema, value, old, path)
    }

    /// Whether any rule reads `oldSelf`.
    pub fn has_transition_rules(&self) -> bool {
        self.rules.iter().any(Rule::is_transition)
    }
}

/// Whether `path` names a version's whole schema (`...openAPIV3Schema`).
fn is_root(path: &str) -> bool {
    path.ends_with("openAPIV3Schema")
}

/// The root schema as rules see it: the object's `apiVersion`, `kind` and
/// `metadata` (`name` and `generateName`) are there even when the schema
/// leaves them out, as Kubernetes exposes them to root rules.
fn with_root_fields(node: &Value) -> Value {
    let mut node = node.clone();
    let string = serde_json::json!({"type": "string"});
    if let Some(obj) = node.as_object_mut() {
        let props = obj
            .entry("properties")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Some(props) = props.as_object_mut() {
            props.entry("apiVersion").or_insert_with(|| string.clone());
            props.entry("kind").or_insert_with(|| string.clone());
            props.entry("metadata").or_insert_with(|| {
                serde_json::json!({
                    "type": "object",
                    "properties": {"name": string.clone(), "generateName": string.clone()}
                })
            });
        }
    }
    node
}

/// `path.child`, or `child` at the root.
fn join(path: &str, child: &str) -> String {
    if path.is_empty() {
        child.to_owned()
    } else {
        format!("{path}.{child}")
    }
}
