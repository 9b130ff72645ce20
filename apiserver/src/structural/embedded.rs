//! Embedded resources (`x-kubernetes-embedded-resource`): each needs an
//! `apiVersion` and a `kind`, and its `metadata` must be valid ObjectMeta
//! (a name is optional), as Kubernetes checks embedded objects such as a
//! template's.

use serde_json::{Map, Value, json};

use super::wording::{invalid, required};
use super::{Additional, Node, path};
use crate::error::Cause;

/// Errors of the embedded resources in `v` (at field path `at`);
/// `is_resource_root`: `v` itself is checked as a resource.
pub(super) fn validate(n: &Node, v: &Value, at: &str, is_resource_root: bool) -> Vec<Cause> {
    let mut out = Vec::new();
    walk(n, v, at, is_resource_root, &mut out);
    out
}

fn walk(n: &Node, v: &Value, at: &str, is_resource: bool, out: &mut Vec<Cause>) {
    match v {
        Value::Object(m) => {
            if is_resource || n.embedded {
                resource(m, at, out);
            }
            for (k, c) in m {
                if let Some(p) = n.properties.get(k) {
                    walk(p, c, &path::child(at, k), false, out);
                } else if let Some(Additional::Schema(s)) = &n.additional {
                    walk(s, c, &path::key(at, k), false, out);
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = &n.items {
                for (i, c) in items.iter().enumerate() {
                    walk(s, c, &path::index(at, i), false, out);
                }
            }
        }
        _ => {}
    }
}

fn resource(m: &Map<String, Value>, at: &str, out: &mut Vec<Cause>) {
    let av_path = path::child(at, "apiVersion");
    let kind_path = path::child(at, "kind");
    match m.get("apiVersion") {
        None => out.push(required(&av_path, "")),
        Some(Value::String(av)) if av.is_empty() => {
            out.push(invalid(&av_path, &json!(av), "must not be empty"))
        }
        Some(Value::String(av)) if av.matches('/').count() > 1 => out.push(invalid(
            &av_path,
            &json!(av),
            &format!("unexpected GroupVersion string: {av}"),
        )),
        Some(Value::String(_)) => {}
        Some(v) => out.push(invalid(&av_path, v, "must be a string")),
    }
    match m.get("kind") {
        None => out.push(required(&kind_path, "")),
        Some(Value::String(k)) if k.is_empty() => {
            out.push(invalid(&kind_path, &json!(k), "must not be empty"))
        }
        Some(Value::String(k)) => {
            if let Some(e) = dns1035_label(&k.to_ascii_lowercase()) {
                out.push(invalid(
                    &kind_path,
                    &json!(k),
                    &format!("may have mixed case, but should otherwise match: {e}"),
                ));
            }
        }
        Some(v) => out.push(invalid(&kind_path, v, "must be a string")),
    }
    if let Some(meta) = m.get("metadata") {
        metadata(meta, &path::child(at, "metadata"), out);
    }
}

/// ObjectMeta of an embedded resource: strings where ObjectMeta has
/// strings, a path-segment name if any, and valid labels and annotations.
fn metadata(meta: &Value, at: &str, out: &mut Vec<Cause>) {
    let Some(m) = meta.as_object() else {
        out.push(invalid(
            at,
            meta,
            &format!(
                "json: cannot unmarshal {} into Go value of type v1.ObjectMeta",
                json_type(meta)
            ),
        ));
        return;
    };
    for f in ["name", "namespace", "generateName"] {
        if let Some(v) = m.get(f).filter(|v| !v.is_null() && !v.is_string()) {
            out.push(invalid(
                at,
                meta,
                &format!(
                    "json: cannot unmarshal {} into Go struct field ObjectMeta.{f} of type string",
                    json_type(v)
                ),
            ));
            return;
        }
    }
    let mut wrapped = json!({ "metadata": meta });
    if m.get("name")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        // Kubernetes checks an embedded object as if it had a name.
        wrapped["metadata"]["name"] = json!("fakename");
    }
    for c in crate::meta::validate_meta(&wrapped, false, crate::meta::path_segment) {
        let rest = c.field.strip_prefix("metadata").unwrap_or(&c.field);
        out.push(Cause {
            field: format!("{at}{rest}"),
            ..c
        });
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Kubernetes' `IsDNS1035Label`: its messages joined by `,`.
fn dns1035_label(s: &str) -> Option<String> {
    let mut errs = Vec::new();
    if s.len() > 63 {
        errs.push("must be no more than 63 characters".to_string());
    }
    let b = s.as_bytes();
    let ok = !b.is_empty()
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b.last()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !ok {
        errs.push("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')".to_string());
    }
    (!errs.is_empty()).then(|| errs.join(","))
}
