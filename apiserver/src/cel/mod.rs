//! CEL validation rules (`x-kubernetes-validations`) of custom resource
//! schemas: compiled once when a CRD is served, evaluated against `self`
//! and, for transition rules, `oldSelf`. [`crate::structural`] calls it at
//! each schema node that has rules.
//!
//! INTERFACE SKELETON: the bodies are filled in on branch w/cel.

use serde_json::Value;

use crate::error::Cause;

/// The compiled rules of one schema node.
#[derive(Debug, Clone, Default)]
pub struct Rules {}

impl Rules {
    /// The `x-kubernetes-validations` of `node` (one schema node, with its
    /// type information below it); `None` when it has none. The causes name
    /// the rules that do not compile, under `path` (the node's place in the
    /// CRD, e.g. `spec.validation.openAPIV3Schema.properties[spec].x-kubernetes-validations[0].rule`).
    pub fn compile(_node: &Value, _path: &str) -> Result<Option<Rules>, Vec<Cause>> {
        Ok(None)
    }

    /// Errors of `value` (`self`) at field path `path` (e.g. `spec.replicas`);
    /// `old` is `oldSelf` on an update where the value has a counterpart
    /// (transition rules are skipped without it).
    pub fn check(&self, _value: &Value, _old: Option<&Value>, _path: &str) -> Vec<Cause> {
        vec![]
    }
}
