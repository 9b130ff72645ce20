//! The rules a CRD version's schema must follow before it is served, as
//! Kubernetes checks them, in its order: the structural rules (every field
//! typed, value validations only on specified fields, metadata only
//! restricting name and generateName), the defaults, then the rules of CRD
//! schemas (no `$ref`, no `uniqueItems`, list and map types well formed),
//! then the CEL rules compiled ([`super::rules`]).

use serde_json::json;

use super::invariants::{Level, completeness, invariants};
use super::wording::{forbidden, invalid, not_supported, required};
use super::{Additional, Node, defaults, rules};
use crate::error::Cause;

/// The types a schema may name.
const TYPES: [&str; 6] = ["array", "boolean", "integer", "number", "object", "string"];

/// The implicit fields of a resource.
const META_FIELDS: [&str; 3] = ["apiVersion", "kind", "metadata"];

pub(super) fn at(path: &str, keyword: &str) -> String {
    format!("{path}.{keyword}")
}

pub(super) fn prop(path: &str, name: &str) -> String {
    format!("{path}.properties[{name}]")
}

/// Check `root` (found at `path`) and compile its CEL rules into it.
pub(super) fn check(root: &mut Node, path: &str) -> Result<(), Vec<Cause>> {
    let mut out = Vec::new();
    if root.nullable {
        out.push(forbidden(
            &at(path, "nullable"),
            "nullable cannot be true at the root",
        ));
    }
    let mut schema_errors = Vec::new();
    crd_rules(root, path, &Ctx::default(), true, &mut schema_errors);

    let init_error = unsupported(root);
    let mut cel_errors = Vec::new();
    if init_error.is_none() {
        let mut structural = Vec::new();
        invariants(root, Level::Root, path, &mut structural);
        completeness(root, root, path, path, &mut structural);
        structural.sort_by_key(|c| format!("{}: {}", c.field, c.message));
        if structural.is_empty() {
            if schema_errors.is_empty() {
                rules::compile(root, path, None, &mut cel_errors);
            }
            let d = defaults::check(root, path);
            if !d.is_empty() {
                // Kubernetes compiles rules only for schemas with valid defaults.
                cel_errors.clear();
                structural.extend(d);
            }
        } else {
            cel_errors.clear();
        }
        out.extend(structural);
    }
    out.extend(schema_errors);
    out.extend(cel_errors);
    if out.is_empty()
        && let Some(msg) = init_error
    {
        out.push(invalid(path, &json!(""), &msg));
    }
    if out.is_empty() { Ok(()) } else { Err(out) }
}

/// What the schema rules of a place depend on.
#[derive(Clone)]
struct Ctx {
    allow_defaults: bool,
    defaults_reason: String,
    inside_meta: bool,
}

impl Default for Ctx {
    fn default() -> Ctx {
        Ctx {
            allow_defaults: true,
            defaults_reason: String::new(),
            inside_meta: false,
        }
    }
}

impl Ctx {
    fn forbid_defaults(&self, reason: String) -> Ctx {
        Ctx {
            allow_defaults: false,
            defaults_reason: reason,
            inside_meta: self.inside_meta,
        }
    }
}

/// Kubernetes' rules for CRD schemas, on every node including those under
/// `allOf`, `anyOf`, `oneOf` and `not`.
fn crd_rules(n: &Node, path: &str, ctx: &Ctx, is_root: bool, out: &mut Vec<Cause>) {
    if !n.ty.is_empty() && !TYPES.contains(&n.ty.as_str()) {
        let types: Vec<String> = TYPES.iter().map(|t| t.to_string()).collect();
        out.push(not_supported(&at(path, "type"), &json!(n.ty), &types));
    }
    if n.default.is_some() && !ctx.allow_defaults {
        let mut detail = "must not be set".to_string();
        if !ctx.defaults_reason.is_empty() {
            detail = format!("{detail} {}", ctx.defaults_reason);
        }
        out.push(forbidden(&at(path, "default"), &detail));
    }
    let u = &n.unsupported;
    for (present, keyword) in [
        (u.id, "id"),
        (u.additional_items, "additionalItems"),
        (u.pattern_properties, "patternProperties"),
        (u.definitions, "definitions"),
        (u.dependencies, "dependencies"),
        (u.reference, "$ref"),
    ] {
        if present {
            out.push(forbidden(
                &at(path, keyword),
                &format!("{keyword} is not supported"),
            ));
        }
    }
    if n.ty == "null" {
        out.push(forbidden(
            &at(path, "type"),
            "type cannot be set to null, use nullable as an alternative",
        ));
    }
    if u.items_array {
        out.push(forbidden(
            &at(path, "items"),
            "items must be a schema object and not an array",
        ));
    }
    if ctx.inside_meta && n.embedded {
        out.push(forbidden(
            &at(path, "x-kubernetes-embedded-resource"),
            "must not be used inside of resource meta",
        ));
    }
    if n.unique_items {
        out.push(forbidden(
            &at(path, "uniqueItems"),
            "uniqueItems cannot be set to true since the runtime complexity becomes quadratic",
        ));
    }
    if let Some(a) = &n.additional {
        if !n.properties.is_empty() && !matches!(a, Additional::Bool(true)) {
            out.push(forbidden(
                &at(path, "additionalProperties"),
                "additionalProperties and properties are mutual exclusive",
            ));
        }
        if let Additional::Schema(s) = a {
            let sub = if ctx.inside_meta {
                ctx.forbid_defaults(
                    "inside additionalProperties applying to object metadata".into(),
                )
            } else {
                ctx.clone()
            };
            crd_rules(s, &at(path, "additionalProperties"), &sub, false, out);
        }
    }
    for (k, p) in &n.properties {
        let mut sub = ctx.clone();
        if (is_root || n.embedded) && META_FIELDS.contains(&k.as_str()) {
            sub.inside_meta = true;
            if is_root {
                sub = sub.forbid_defaults(format!("in top-level {k}"));
            }
        }
        crd_rules(p, &prop(path, k), &sub, false, out);
    }
    if let Some(not) = &n.not {
        crd_rules(not, &at(path, "not"), ctx, false, out);
    }
    for (key, list) in [
        ("allOf", &n.all_of),
        ("oneOf", &n.one_of),
        ("anyOf", &n.any_of),
    ] {
        for (i, s) in list.iter().enumerate() {
            crd_rules(s, &format!("{path}.{key}[{i}]"), ctx, false, out);
        }
    }
    if let Some(items) = &n.items {
        crd_rules(items, &at(path, "items"), ctx, false, out);
    }
    if u.preserve_false {
        out.push(invalid(
            &at(path, "x-kubernetes-preserve-unknown-fields"),
            &json!(false),
            "must be true or undefined",
        ));
    }
    map_and_list_types(n, path, out);
}

/// `x-kubernetes-map-type`, `x-kubernetes-list-type` and
/// `x-kubernetes-list-map-keys` well formed.
fn map_and_list_types(n: &Node, path: &str, out: &mut Vec<Cause>) {
    let type_for = |what: &str, out: &mut Vec<Cause>| {
        let detail = format!(
            "must be {what} if x-kubernetes-{}-type is specified",
            if what == "object" { "map" } else { "list" }
        );
        if n.ty.is_empty() {
            out.push(required(&at(path, "type"), &detail));
        } else {
            out.push(invalid(&at(path, "type"), &json!(n.ty), &detail));
        }
    };
    if let Some(mt) = &n.map_type {
        if n.ty != "object" {
            type_for("object", out);
        }
        if mt != "atomic" && mt != "granular" {
            out.push(not_supported(
                &at(path, "x-kubernetes-map-type"),
                &json!(mt),
                &["atomic".into(), "granular".into()],
            ));
        }
    }
    let lt = n.list_type.as_deref();
    if lt.is_some() && n.ty != "array" {
        type_for("array", out);
    } else if lt == Some("set")
        && let Some(is) = &n.items
    {
        let detail = "must be atomic as item of a list with x-kubernetes-list-type=set";
        match is.ty.as_str() {
            "array" if is.list_type.as_deref().is_some_and(|t| t != "atomic") => out.push(invalid(
                &at(path, "items.x-kubernetes-list-type"),
                &json!(is.list_type),
                detail,
            )),
            "object" if is.map_type.as_deref() != Some("atomic") => out.push(invalid(
                &at(path, "items.x-kubernetes-map-type"),
                &json!(is.list_type),
                detail,
            )),
            _ => {}
        }
    }
    if let Some(t) = lt
        && !["atomic", "set", "map"].contains(&t)
    {
        out.push(not_supported(
            &at(path, "x-kubernetes-list-type"),
            &json!(t),
            &["atomic".into(), "set".into(), "map".into()],
        ));
    }
    let keys_path = at(path, "x-kubernetes-list-map-keys");
    if !n.list_map_keys.is_empty() {
        let detail = "must be map if x-kubernetes-list-map-keys is non-empty";
        match lt {
            None => out.push(required(&at(path, "x-kubernetes-list-type"), detail)),
            Some(t) if t != "map" => out.push(invalid(
                &at(path, "x-kubernetes-list-type"),
                &json!(t),
                detail,
            )),
            _ => {}
        }
    }
    if lt == Some("map") {
        if n.list_map_keys.is_empty() {
            out.push(required(
                &keys_path,
                "must not be empty if x-kubernetes-list-type is map",
            ));
        }
        match &n.items {
            None if !n.unsupported.items_array => out.push(required(
                &at(path, "items"),
                "must have a schema if x-kubernetes-list-type is map",
            )),
            None => {}
            Some(is) if is.ty != "object" => out.push(invalid(
                &at(path, "items.type"),
                &json!(is.ty),
                "must be object if parent array's x-kubernetes-list-type is map",
            )),
            Some(is) => {
                let keys = json!(n.list_map_keys);
                let mut seen = std::collections::BTreeSet::new();
                for k in &n.list_map_keys {
                    match is.properties.get(k) {
                        Some(s) if s.ty == "array" || s.ty == "object" => out.push(invalid(
                            &format!("{}.type", prop(&at(path, "items"), k)),
                            &json!(is.ty),
                            "must be a scalar type if parent array's x-kubernetes-list-type is map",
                        )),
                        Some(_) => {}
                        None => out.push(invalid(
                            &keys_path,
                            &keys,
                            "entries must all be names of item properties",
                        )),
                    }
                    if !seen.insert(k) {
                        out.push(invalid(
                            &keys_path,
                            &keys,
                            "must not contain duplicate entries",
                        ));
                    }
                }
            }
        }
    }
    // Items of sets and maps are never null, and map keys always have a
    // value.
    if let (Some(t @ ("set" | "map")), Some(is)) = (lt, &n.items) {
        if is.nullable {
            out.push(forbidden(
                &at(path, "items.nullable"),
                &format!("cannot be nullable when x-kubernetes-list-type is {t}"),
            ));
        }
        if t == "map" {
            for k in &n.list_map_keys {
                let Some(p) = is.properties.get(k) else {
                    continue;
                };
                let kp = prop(&at(path, "items"), k);
                if !is.required.contains(k) && p.default.is_none() {
                    out.push(required(
                        &at(&kp, "default"),
                        "this property is in x-kubernetes-list-map-keys, so it must have a default or be a required property",
                    ));
                }
                if p.nullable {
                    out.push(forbidden(
                        &at(&kp, "nullable"),
                        "this property is in x-kubernetes-list-map-keys, so it cannot be nullable",
                    ));
                }
            }
        }
    }
}

/// The first keyword that keeps Kubernetes from reading the schema as a
/// structural one at all (it reports it only when nothing else is wrong).
fn unsupported(n: &Node) -> Option<String> {
    let u = &n.unsupported;
    for (present, keyword) in [
        (u.id, "id"),
        (u.schema, "schema"),
        (u.reference, "$ref"),
        (u.pattern_properties, "patternProperties"),
        (u.dependencies, "dependencies"),
        (u.additional_items, "additionalItems"),
        (u.definitions, "definitions"),
    ] {
        if present {
            return Some(format!("OpenAPIV3Schema '{keyword}' is not supported"));
        }
    }
    if u.items_array {
        return Some("OpenAPIV3Schema 'items' must be a schema, but is an array".into());
    }
    if u.preserve_false {
        return Some(
            "internal error: 'x-kubernetes-preserve-unknown-fields' must be true or undefined"
                .into(),
        );
    }
    let nested = n
        .not
        .as_deref()
        .into_iter()
        .chain(&n.all_of)
        .chain(&n.any_of)
        .chain(&n.one_of)
        .chain(n.items.as_deref())
        .chain(n.properties.values());
    for c in nested {
        if let Some(m) = unsupported(c) {
            return Some(m);
        }
    }
    match &n.additional {
        Some(Additional::Schema(s)) => unsupported(s),
        _ => None,
    }
}
