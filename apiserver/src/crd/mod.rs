//! Custom resources: the objects of CustomResourceDefinitions, served by
//! the generic registry once their CRD is `Established`, as Kubernetes'
//! apiextensions server does in-process.
//!
//! # Layout
//!
//! - [`controller`]: every member watches the stored CRDs, writes their
//!   status and adds or removes the served kinds in the registry's kind
//!   table; after a restart its first list serves what was stored.
//! - [`status`]: a CRD's status as a pure function: accepted names and
//!   conflicts, `NamesAccepted`, `Established`, `NonStructuralSchema`,
//!   `storedVersions`.
//! - [`resource`]: a CRD version as a served kind: its [`CustomResource`]
//!   hooks (storage version, scale paths, selectable fields, deprecation
//!   warning) and its strategy (structural defaults, pruning and
//!   validation; generation; printer columns).
//! - [`printer`]: `additionalPrinterColumns` in Tables.
//! - [`jsonpath`]: the JSONPath subset CRDs write.
//! - [`validation`]: the CRD checks serving depends on.
//! - [`cleanup`]: the `customresourcecleanup` finalizer: a deleted CRD's
//!   objects go first.

pub mod cleanup;
pub mod controller;
pub mod jsonpath;
pub mod printer;
pub mod resource;
pub mod status;
#[cfg(test)]
mod tests;
pub mod validation;

use serde_json::Value;

pub use controller::start;
pub use resource::{CustomResource, ScalePaths};

use crate::error::ApiError;
use crate::kinds::ResourceType;
use crate::kinds::typed::Typed;

/// The fields of a custom resource its schema does not know (dropped from
/// `obj`), as `fieldValidation` reports them: `metadata` checked as an
/// ObjectMeta (a wrong type is a 400), everything else pruned by the
/// version's structural schema.
pub fn unknown_fields(rt: &ResourceType, obj: &mut Value) -> Result<Vec<String>, ApiError> {
    let mut unknown = Vec::new();
    if let Some(meta) = obj.get("metadata").filter(|m| !m.is_null()) {
        let check = Typed::of::<k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>().check;
        let known = check(meta).map_err(|e| {
            let path = if e.path == "." {
                "metadata".to_string()
            } else {
                format!("metadata.{}", e.path)
            };
            ApiError::BadRequest(format!(
                "{kind} in version \"{v}\" cannot be handled as a {kind}: {msg} (field {path})",
                kind = rt.kind,
                v = rt.version,
                msg = e.message,
            ))
        })?;
        let (names, pruned) = crate::kinds::typed::prune(meta, &known);
        unknown.extend(names.into_iter().map(|n| format!("metadata.{n}")));
        obj["metadata"] = pruned;
    }
    if let Some(s) = &rt.structural {
        unknown.extend(
            s.prune(obj)
                .into_iter()
                .map(|p| p.trim_start_matches('.').to_string()),
        );
    }
    Ok(unknown)
}
