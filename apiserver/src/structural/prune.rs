//! Pruning: fields the schema does not specify are dropped, as Kubernetes
//! drops them when it decodes a custom resource. Under
//! `x-kubernetes-preserve-unknown-fields` unknown fields stay (known ones
//! are still pruned below them); at the top and in embedded resources
//! `apiVersion`, `kind` and `metadata` stay, with `metadata` cut to
//! ObjectMeta's fields. Then nulls of non-nullable fields without a default
//! go, as a typed decode would drop them.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use serde_json::Value;

use super::{Additional, Node, path};

const META_FIELDS: [&str; 3] = ["apiVersion", "kind", "metadata"];

/// Prune `v` by `n`; `resource_root`: `v` is a resource (its `apiVersion`,
/// `kind` and `metadata` are implicit). Returns the paths dropped.
pub(super) fn prune(v: &mut Value, n: &Node, resource_root: bool) -> Vec<String> {
    let mut out = Vec::new();
    walk(
        v,
        Some(n),
        resource_root,
        "",
        &mut Pruned::Reported(&mut out),
    );
    out
}

/// Kubernetes' pruning alone (metadata left whole), for checking that a
/// schema's defaults need none.
pub(super) fn prune_quietly(v: &mut Value, n: &Node, resource_root: bool) {
    walk(v, Some(n), resource_root, "", &mut Pruned::Quiet);
}

/// Where dropped paths go, and whether metadata is cut to ObjectMeta.
enum Pruned<'a> {
    Reported(&'a mut Vec<String>),
    Quiet,
}

impl Pruned<'_> {
    fn record(&mut self, p: String) {
        if let Pruned::Reported(out) = self {
            out.push(p);
        }
    }
}

fn walk(v: &mut Value, n: Option<&Node>, resource: bool, at: &str, out: &mut Pruned<'_>) {
    let Some(n) = n else {
        match v {
            Value::Object(m) => {
                for k in std::mem::take(m).keys() {
                    out.record(path::child(at, k));
                }
            }
            Value::Array(items) => {
                for (i, x) in items.iter_mut().enumerate() {
                    walk(x, None, false, &path::index(at, i), out);
                }
            }
            _ => {}
        }
        return;
    };
    if n.preserve_unknown {
        keep_unknown(v, n, resource, at, out);
        return;
    }
    let embedded = resource || n.embedded;
    match v {
        Value::Object(m) => {
            let keys: Vec<String> = m.keys().cloned().collect();
            for k in keys {
                let here = path::child(at, &k);
                if embedded && META_FIELDS.contains(&k.as_str()) {
                    if k == "metadata"
                        && let Some(meta) = m.get_mut(&k)
                    {
                        object_meta(meta, &here, out);
                    }
                    continue;
                }
                let Some(c) = m.get_mut(&k) else {
                    continue;
                };
                if let Some(p) = n.properties.get(&k) {
                    walk(c, Some(p), false, &here, out);
                } else if let Some(a) = &n.additional {
                    walk(c, a.schema(), false, &here, out);
                } else {
                    if !META_FIELDS.contains(&k.as_str()) || !at.is_empty() {
                        out.record(here);
                    }
                    m.remove(&k);
                }
            }
        }
        Value::Array(items) => {
            for (i, x) in items.iter_mut().enumerate() {
                walk(x, n.items.as_deref(), false, &path::index(at, i), out);
            }
        }
        _ => {}
    }
}

/// Below `x-kubernetes-preserve-unknown-fields`: unknown fields stay, known
/// ones are pruned by their schema.
fn keep_unknown(v: &mut Value, n: &Node, resource: bool, at: &str, out: &mut Pruned<'_>) {
    let embedded = resource || n.embedded;
    match v {
        Value::Object(m) => {
            for (k, c) in m.iter_mut() {
                let here = path::child(at, k);
                if embedded && META_FIELDS.contains(&k.as_str()) {
                    if k == "metadata" {
                        object_meta(c, &here, out);
                    }
                    continue;
                }
                if let Some(p) = n.properties.get(k) {
                    walk(c, Some(p), false, &here, out);
                } else if let Some(a) = &n.additional {
                    walk(c, a.schema(), false, &here, out);
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = &n.items {
                for (i, x) in items.iter_mut().enumerate() {
                    keep_unknown(x, s, false, &path::index(at, i), out);
                }
            }
        }
        _ => {}
    }
}

/// ObjectMeta's field names.
fn object_meta_fields() -> &'static BTreeSet<String> {
    static FIELDS: OnceLock<BTreeSet<String>> = OnceLock::new();
    FIELDS.get_or_init(|| {
        crate::schema::builtin()
            .definition("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta")
            .map(|d| d.field_names().map(str::to_string).collect())
            .unwrap_or_default()
    })
}

/// Cut a resource's `metadata` (at `at`) to ObjectMeta's fields.
fn object_meta(meta: &mut Value, at: &str, out: &mut Pruned<'_>) {
    let Pruned::Reported(_) = out else {
        return;
    };
    let Some(m) = meta.as_object_mut() else {
        return;
    };
    let known = object_meta_fields();
    if known.is_empty() {
        return;
    }
    let unknown: Vec<String> = m.keys().filter(|k| !known.contains(*k)).cloned().collect();
    for k in unknown {
        m.remove(&k);
        out.record(path::child(at, &k));
    }
}

/// Drop nulls of fields that are neither nullable nor defaulted (a default
/// replaces the others, [`super::defaults`]).
pub(super) fn drop_nulls(v: &mut Value, n: Option<&Node>) {
    match v {
        Value::Object(m) => {
            let keys: Vec<String> = m.keys().cloned().collect();
            for k in keys {
                let s = n.and_then(|n| {
                    n.properties
                        .get(&k)
                        .or_else(|| n.additional.as_ref().and_then(Additional::schema))
                });
                let Some(c) = m.get_mut(&k) else {
                    continue;
                };
                if c.is_null() && s.is_some_and(|s| !s.nullable && s.default.is_none()) {
                    m.remove(&k);
                } else {
                    drop_nulls(c, s);
                }
            }
        }
        Value::Array(items) => {
            let s = n.and_then(|n| n.items.as_deref());
            for x in items {
                drop_nulls(x, s);
            }
        }
        _ => {}
    }
}
