//! Structural schemas of custom resources (a CRD version's
//! `schema.openAPIV3Schema`): the structural check, defaulting, pruning and
//! value validation Kubernetes' apiextensions server applies, with the CEL
//! rules of [`crate::cel`]. The CRD serving code ([`crate::kinds`]) holds one
//! [`Structural`] per served version.
//!
//! INTERFACE SKELETON: the bodies are filled in on branch w/structural.

use serde_json::Value;

use crate::error::Cause;

/// A version's structural schema, checked and ready to default, prune and
/// validate objects.
#[derive(Debug, Clone, Default)]
pub struct Structural {}

impl Structural {
    /// The structural schema of `schema` (a version's
    /// `schema.openAPIV3Schema`); the causes say why it is not structural,
    /// with field paths under `path` (e.g.
    /// `spec.versions[0].schema.openAPIV3Schema`), as Kubernetes words them.
    pub fn new(_schema: &Value, _path: &str) -> Result<Structural, Vec<Cause>> {
        Ok(Structural {})
    }

    /// Apply the schema's defaults to `obj` (on reads and writes).
    pub fn default(&self, _obj: &mut Value) {}

    /// Drop fields the schema does not know (except under
    /// `x-kubernetes-preserve-unknown-fields`); the JSON paths pruned, e.g.
    /// `.spec.foo`, for field validation warnings.
    pub fn prune(&self, _obj: &mut Value) -> Vec<String> {
        vec![]
    }

    /// Field errors of `obj` against the schema (types, formats, bounds,
    /// list types, embedded resources and CEL rules).
    pub fn validate(&self, _obj: &Value) -> Vec<Cause> {
        vec![]
    }

    /// Field errors of the change `old` → `new`: CEL transition rules
    /// (`oldSelf`).
    pub fn validate_update(&self, _new: &Value, _old: &Value) -> Vec<Cause> {
        vec![]
    }
}
