//! Structural schemas of custom resources (a CRD version's
//! `schema.openAPIV3Schema`): the structural check, defaulting, pruning and
//! value validation Kubernetes' apiextensions server applies, with the CEL
//! rules of [`crate::cel`]. The CRD serving code ([`crate::kinds`]) holds one
//! [`Structural`] per served version; server-side apply reads its list and
//! map types ([`crate::fieldmanager`]).
//!
//! Layout:
//! - `parse`: the schema's JSON read into a tree of [`Node`]s.
//! - `check`: the rules a CRD's schema must follow (Kubernetes'
//!   `ValidateCustomResourceDefinitionOpenAPISchema`), with `invariants`,
//!   the structural rules (`ValidateStructural`).
//! - `defaults`: `default` values applied to objects, and checked in schemas.
//! - `prune`: unknown fields dropped, and nulls of non-nullable fields.
//! - `validate`, `numbers`, `formats`: OpenAPI value validation, worded as
//!   Kubernetes' kube-openapi validator words it.
//! - `listtype`, `embedded`: list-type set and map uniqueness, embedded
//!   resources' `apiVersion`, `kind` and `metadata`.
//! - `rules`: the CEL rules of every node, and their `oldSelf` counterparts.
//! - `ssa`: what server-side apply asks of a node.
//! - `path`, `wording`: field paths and error bodies in Kubernetes' words.
//!
//! Field paths follow Kubernetes: a CRD's schema is named by
//! `properties[spec].items`, an object's fields by `spec.list[0].name`.

mod check;
mod defaults;
mod embedded;
mod formats;
mod invariants;
mod listtype;
mod numbers;
mod parse;
mod path;
mod prune;
mod rules;
mod ssa;
mod validate;
mod wording;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use serde_json::Value;

use crate::cel::Rules;
use crate::error::Cause;

pub use ssa::ObjectShape;

/// A version's structural schema, checked and ready to default, prune and
/// validate objects.
#[derive(Debug, Clone, Default)]
pub struct Structural {
    root: Node,
    /// Some node has CEL rules: only then does validation say that rules
    /// were skipped.
    has_rules: bool,
}

/// One node of a schema: its type, value validations and Kubernetes
/// extensions. Nodes under `allOf`, `anyOf`, `oneOf` and `not` use the same
/// shape; the structural check keeps them to value validations.
#[derive(Debug, Clone, Default)]
pub struct Node {
    /// `type` as written (`""` when absent).
    ty: String,
    /// `format` as written.
    format: String,
    /// `format` as the validator uses it: formats Kubernetes does not
    /// validate for this type are dropped, as its CRD handler does.
    effective_format: String,
    nullable: bool,
    default: Option<Value>,
    has_description: bool,
    has_title: bool,
    properties: BTreeMap<String, Node>,
    additional: Option<Additional>,
    items: Option<Box<Node>>,
    enumeration: Option<Vec<Value>>,
    pattern: Option<Pattern>,
    maximum: Option<f64>,
    exclusive_maximum: bool,
    minimum: Option<f64>,
    exclusive_minimum: bool,
    multiple_of: Option<f64>,
    max_length: Option<i64>,
    min_length: Option<i64>,
    max_items: Option<i64>,
    min_items: Option<i64>,
    unique_items: bool,
    max_properties: Option<i64>,
    min_properties: Option<i64>,
    required: Vec<String>,
    all_of: Vec<Node>,
    any_of: Vec<Node>,
    one_of: Vec<Node>,
    not: Option<Box<Node>>,
    preserve_unknown: bool,
    embedded: bool,
    int_or_string: bool,
    list_type: Option<String>,
    list_map_keys: Vec<String>,
    map_type: Option<String>,
    /// The `rule` texts of `x-kubernetes-validations` (empty: none).
    rule_texts: Vec<String>,
    rules: Option<Rules>,
    /// The schema node as written, kept until its rules are compiled.
    raw: Option<Value>,
    /// Keywords Kubernetes refuses in CRD schemas (`$ref`, `id`, …) that
    /// this node has, and other shapes it cannot read.
    unsupported: Unsupported,
    /// The top level of a custom resource: like an embedded resource, its
    /// `apiVersion`, `kind` and `metadata` are implicit.
    resource_root: bool,
}

/// `additionalProperties`: a boolean or a schema.
#[derive(Debug, Clone)]
pub enum Additional {
    Bool(bool),
    Schema(Box<Node>),
}

impl Additional {
    /// The schema of the extra keys (`None`: a boolean).
    pub(crate) fn schema(&self) -> Option<&Node> {
        match self {
            Additional::Schema(s) => Some(s),
            Additional::Bool(_) => None,
        }
    }
}

/// A `pattern` and its compiled form (`None` when it does not compile; the
/// schema check refuses it).
#[derive(Debug, Clone)]
pub struct Pattern {
    source: String,
    re: Option<regex::Regex>,
}

/// What a node has that Kubernetes' CRD schemas do not allow.
#[derive(Debug, Clone, Default)]
struct Unsupported {
    id: bool,
    schema: bool,
    reference: bool,
    pattern_properties: bool,
    dependencies: bool,
    additional_items: bool,
    definitions: bool,
    items_array: bool,
    preserve_false: bool,
}

impl Structural {
    /// The structural schema of `schema` (a version's
    /// `schema.openAPIV3Schema`); the causes say why it is not structural,
    /// with field paths under `path` (e.g.
    /// `spec.versions[0].schema.openAPIV3Schema`), as Kubernetes words them.
    pub fn new(schema: &Value, path: &str) -> Result<Structural, Vec<Cause>> {
        let mut causes = Vec::new();
        let mut root = parse::parse(schema, path, 0, &mut causes);
        root.resource_root = true;
        if !causes.is_empty() {
            return Err(causes);
        }
        check::check(&mut root, path)?;
        let has_rules = rules::any(&root);
        Ok(Structural { root, has_rules })
    }

    /// Apply the schema's defaults to `obj` (on reads and writes): missing
    /// fields with a `default`, and nulls of non-nullable fields that have
    /// one, in objects, maps and list items.
    pub fn default(&self, obj: &mut Value) {
        defaults::apply(obj, &self.root);
    }

    /// Drop fields the schema does not know (except under
    /// `x-kubernetes-preserve-unknown-fields`; `metadata` of the object and of
    /// embedded resources keeps ObjectMeta's fields), and nulls of
    /// non-nullable fields without a default. Returns the paths dropped, as
    /// Kubernetes names unknown fields (`spec.foo`, `spec.list[0].bar`,
    /// `metadata.foo`), sorted, for `fieldValidation` (Strict refuses them,
    /// Warn warns `unknown field "spec.foo"`).
    pub fn prune(&self, obj: &mut Value) -> Vec<String> {
        let mut paths = prune::prune(obj, &self.root, true);
        prune::drop_nulls(obj, Some(&self.root));
        paths.sort();
        paths
    }

    /// Field errors of `obj` against the schema (types, formats, bounds,
    /// list types, embedded resources and CEL rules without `oldSelf`).
    /// `metadata` at the top is left to the registry's ObjectMeta checks.
    pub fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut causes = validate::value(&self.root, obj, None);
        causes.extend(embedded::validate(&self.root, obj, "", false));
        causes.extend(listtype::validate(&self.root, obj, ""));
        if !self.has_rules {
            return causes;
        }
        if let Some(blocking) = rules::blocked(&causes) {
            causes.push(blocking);
        } else {
            causes.extend(rules::check(&self.root, obj, None, ""));
        }
        causes
    }

    /// Field errors of the change `old` → `new` that [`Structural::validate`]
    /// of `new` does not give: the CEL transition rules (`oldSelf`), where
    /// `old` has a counterpart (the same field, map key or list-map item).
    pub fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        if !self.has_rules {
            return vec![];
        }
        let schema_errors = validate::value(&self.root, new, None);
        if rules::blocked(&schema_errors).is_some() {
            return vec![];
        }
        rules::check_transitions(&self.root, new, old, "")
    }

    /// The root node, for server-side apply.
    pub fn root(&self) -> &Node {
        &self.root
    }
}
