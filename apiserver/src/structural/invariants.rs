//! The structural rules of a CRD schema (Kubernetes' structural schema
//! invariants): every specified field typed, value validations in
//! `allOf`/`anyOf`/`oneOf`/`not` only on fields the schema specifies, and
//! metadata at the root restricting only name and generateName.
//! [`super::check`] runs them before the rules of CRD schemas.

use serde_json::json;

use super::check::{at, prop};
use super::wording::{forbidden, invalid, required};
use super::{Additional, Node};
use crate::error::Cause;

#[derive(Clone, Copy, PartialEq)]
pub(super) enum Level {
    Root,
    Item,
    Field,
}

/// The structural rules on the structural part of the schema (properties,
/// items, additionalProperties).
pub(super) fn invariants(n: &Node, level: Level, path: &str, out: &mut Vec<Cause>) {
    if n.ty == "array" && n.items.is_none() {
        out.push(required(&at(path, "items"), "must be specified"));
    }
    if let Some(items) = &n.items {
        invariants(items, Level::Item, &at(path, "items"), out);
    }
    for (k, p) in &n.properties {
        invariants(p, Level::Field, &prop(path, k), out);
    }
    if let Some(a) = &n.additional {
        if level == Level::Root {
            out.push(forbidden(
                &at(path, "additionalProperties"),
                "must not be used at the root",
            ));
        }
        if let Additional::Schema(s) = a {
            invariants(s, Level::Field, &at(path, "additionalProperties"), out);
        }
    }
    if n.int_or_string && n.preserve_unknown {
        out.push(invalid(
            &at(path, "x-kubernetes-preserve-unknown-fields"),
            &json!(true),
            "must be false if x-kubernetes-int-or-string is true",
        ));
    }
    if n.int_or_string && n.embedded {
        out.push(invalid(
            &at(path, "x-kubernetes-embedded-resource"),
            &json!(true),
            "must be false if x-kubernetes-int-or-string is true",
        ));
    }
    let skip_any_of = int_or_string_any_of(&n.any_of);
    let skip_first_all_of = n
        .all_of
        .first()
        .is_some_and(|a| int_or_string_any_of(&a.any_of));
    value_validations(n, skip_any_of, skip_first_all_of, level, path, out);

    let check_metadata = level == Level::Root || n.embedded;
    if n.embedded && n.ty != "object" {
        let detail = "must be object if x-kubernetes-embedded-resource is true";
        if n.ty.is_empty() {
            out.push(required(&at(path, "type"), detail));
        } else {
            out.push(invalid(&at(path, "type"), &json!(n.ty), detail));
        }
    } else if n.ty.is_empty() && !n.int_or_string && !n.preserve_unknown {
        let detail = match level {
            Level::Root => "must not be empty at the root",
            Level::Item => "must not be empty for specified array items",
            Level::Field => "must not be empty for specified object fields",
        };
        out.push(required(&at(path, "type"), detail));
    }
    if n.embedded && n.additional.is_some() {
        out.push(forbidden(
            &at(path, "additionalProperties"),
            "must not be used if x-kubernetes-embedded-resource is set",
        ));
    }
    if level == Level::Root && !n.ty.is_empty() && n.ty != "object" {
        out.push(invalid(
            &at(path, "type"),
            &json!(n.ty),
            "must be object at the root",
        ));
    }
    if check_metadata {
        for f in ["kind", "apiVersion"] {
            if let Some(p) = n.properties.get(f)
                && p.ty != "string"
            {
                out.push(invalid(
                    &at(&prop(path, f), "type"),
                    &json!(p.ty),
                    "must be string",
                ));
            }
        }
    }
    if let Some(meta) = n.properties.get("metadata") {
        let mp = prop(path, "metadata");
        if check_metadata && meta.ty != "object" {
            out.push(invalid(&at(&mp, "type"), &json!(meta.ty), "must be object"));
        }
        if level == Level::Root && !only_names(meta) {
            out.push(forbidden(
                &mp,
                "must not specify anything other than name and generateName, but metadata is implicitly specified",
            ));
        }
    }
    if n.embedded && !n.preserve_unknown && n.properties.is_empty() {
        out.push(required(
            &at(path, "properties"),
            "must not be empty if x-kubernetes-embedded-resource is true without x-kubernetes-preserve-unknown-fields",
        ));
    }
}

/// The `anyOf: [{type: integer}, {type: string}]` that may accompany
/// `x-kubernetes-int-or-string`.
fn int_or_string_any_of(any_of: &[Node]) -> bool {
    any_of.len() == 2
        && bare(&any_of[0], Keep::TYPE)
        && any_of[0].ty == "integer"
        && bare(&any_of[1], Keep::TYPE)
        && any_of[1].ty == "string"
}

/// Root metadata may restrict `name` and `generateName` only.
fn only_names(meta: &Node) -> bool {
    let names = meta
        .properties
        .keys()
        .all(|k| k == "name" || k == "generateName");
    names && bare(meta, Keep::TYPE | Keep::DEFAULT | Keep::PROPERTIES)
}

/// What [`bare`] lets a node have.
#[derive(Clone, Copy)]
struct Keep(u8);

impl Keep {
    const TYPE: Keep = Keep(1);
    const DEFAULT: Keep = Keep(2);
    const PROPERTIES: Keep = Keep(4);
    fn has(self, k: Keep) -> bool {
        self.0 & k.0 != 0
    }
}

impl std::ops::BitOr for Keep {
    type Output = Keep;
    fn bitor(self, o: Keep) -> Keep {
        Keep(self.0 | o.0)
    }
}

/// Whether `n` sets nothing but what `keep` allows.
fn bare(n: &Node, keep: Keep) -> bool {
    (keep.has(Keep::TYPE) || n.ty.is_empty())
        && (keep.has(Keep::DEFAULT) || n.default.is_none())
        && (keep.has(Keep::PROPERTIES) || n.properties.is_empty())
        && n.format.is_empty()
        && !n.nullable
        && !n.has_description
        && !n.has_title
        && n.additional.is_none()
        && n.items.is_none()
        && n.enumeration.is_none()
        && n.pattern.is_none()
        && n.maximum.is_none()
        && !n.exclusive_maximum
        && n.minimum.is_none()
        && !n.exclusive_minimum
        && n.multiple_of.is_none()
        && n.max_length.is_none()
        && n.min_length.is_none()
        && n.max_items.is_none()
        && n.min_items.is_none()
        && !n.unique_items
        && n.max_properties.is_none()
        && n.min_properties.is_none()
        && n.required.is_empty()
        && n.all_of.is_empty()
        && n.any_of.is_empty()
        && n.one_of.is_empty()
        && n.not.is_none()
        && !n.preserve_unknown
        && !n.embedded
        && !n.int_or_string
        && n.list_type.is_none()
        && n.list_map_keys.is_empty()
        && n.map_type.is_none()
        && n.rule_texts.is_empty()
}

/// The `allOf`, `anyOf`, `oneOf` and `not` of `n`, and its pattern.
fn value_validations(
    n: &Node,
    skip_any_of: bool,
    skip_first_all_of_any_of: bool,
    level: Level,
    path: &str,
    out: &mut Vec<Cause>,
) {
    if !skip_any_of {
        for (i, a) in n.any_of.iter().enumerate() {
            nested(a, false, level, &format!("{path}.anyOf[{i}]"), out);
        }
    }
    for (i, a) in n.all_of.iter().enumerate() {
        let skip = skip_first_all_of_any_of && i == 0;
        nested(a, skip, level, &format!("{path}.allOf[{i}]"), out);
    }
    for (i, a) in n.one_of.iter().enumerate() {
        nested(a, false, level, &format!("{path}.oneOf[{i}]"), out);
    }
    if let Some(not) = &n.not {
        nested(not, false, level, &at(path, "not"), out);
    }
    if let Some(p) = &n.pattern
        && p.re.is_none()
    {
        let err = regex::Regex::new(&p.source)
            .err()
            .map(|e| e.to_string().replace('\n', " "))
            .unwrap_or_default();
        out.push(invalid(
            &at(path, "pattern"),
            &json!(p.source),
            &format!("must be a valid regular expression, but isn't: {err}"),
        ));
    }
}

/// A node under `allOf`, `anyOf`, `oneOf` or `not`: value validations only.
fn nested(v: &Node, skip_any_of: bool, level: Level, path: &str, out: &mut Vec<Cause>) {
    value_validations(v, skip_any_of, false, level, path, out);
    if let Some(items) = &v.items {
        nested(items, false, level, &at(path, "items"), out);
    }
    for (k, p) in &v.properties {
        nested(p, false, Level::Field, &prop(path, k), out);
    }
    let structural = "must be empty to be structural";
    let undefined = "must be undefined to be structural";
    let not_true = "must be false to be structural";
    if !v.ty.is_empty() {
        out.push(forbidden(&at(path, "type"), structural));
    }
    if matches!(
        v.additional,
        Some(Additional::Schema(_) | Additional::Bool(true))
    ) {
        out.push(forbidden(&at(path, "additionalProperties"), undefined));
    }
    if v.default.is_some() {
        out.push(forbidden(&at(path, "default"), undefined));
    }
    if v.has_title {
        out.push(forbidden(&at(path, "title"), structural));
    }
    if v.has_description {
        out.push(forbidden(&at(path, "description"), structural));
    }
    if v.nullable {
        out.push(forbidden(&at(path, "nullable"), not_true));
    }
    for (set, kw) in [
        (v.preserve_unknown, "x-kubernetes-preserve-unknown-fields"),
        (v.embedded, "x-kubernetes-embedded-resource"),
        (v.int_or_string, "x-kubernetes-int-or-string"),
    ] {
        if set {
            out.push(forbidden(&at(path, kw), not_true));
        }
    }
    if !v.list_map_keys.is_empty() {
        out.push(forbidden(
            &at(path, "x-kubernetes-list-map-keys"),
            structural,
        ));
    }
    if v.list_type.is_some() {
        out.push(forbidden(&at(path, "x-kubernetes-list-type"), undefined));
    }
    if v.map_type.is_some() {
        out.push(forbidden(&at(path, "x-kubernetes-map-type"), undefined));
    }
    if !v.rule_texts.is_empty() {
        out.push(forbidden(&at(path, "x-kubernetes-validations"), structural));
    }
    if v.properties.contains_key("metadata") {
        out.push(forbidden(
            &prop(path, "metadata"),
            "must not be specified in a nested context",
        ));
    }
}

/// Every field a value validation names must be specified in the
/// structural part at the same place (Kubernetes checks the root's).
pub(super) fn completeness(v: &Node, s: &Node, s_path: &str, v_path: &str, out: &mut Vec<Cause>) {
    if let Some(not) = &v.not {
        nested_complete(not, Some(s), s_path, &at(v_path, "not"), out);
    }
    for (key, list) in [
        ("allOf", &v.all_of),
        ("anyOf", &v.any_of),
        ("oneOf", &v.one_of),
    ] {
        for (i, a) in list.iter().enumerate() {
            nested_complete(a, Some(s), s_path, &format!("{v_path}.{key}[{i}]"), out);
        }
    }
}

fn nested_complete(v: &Node, s: Option<&Node>, s_path: &str, v_path: &str, out: &mut Vec<Cause>) {
    let Some(s) = s else {
        out.push(required(
            s_path,
            &format!("because it is defined in {v_path}"),
        ));
        return;
    };
    completeness(v, s, s_path, v_path, out);
    if let Some(items) = &v.items {
        nested_complete(
            items,
            s.items.as_deref(),
            &at(s_path, "items"),
            &at(v_path, "items"),
            out,
        );
    }
    for (k, vf) in &v.properties {
        let (sp, vp) = (prop(s_path, k), prop(v_path, k));
        match s.properties.get(k) {
            Some(sf) => nested_complete(vf, Some(sf), &sp, &vp, out),
            None => out.push(required(&sp, &format!("because it is defined in {vp}"))),
        }
    }
}
