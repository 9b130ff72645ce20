//! Defaulting: a field missing from an object (or null where the schema
//! does not allow null) takes its schema's `default`, in objects, in
//! `additionalProperties` maps and in list items, from the top down, so a
//! defaulted object gets the defaults of its own fields. And the check that
//! every `default` in a schema is valid and pruned, as Kubernetes requires
//! before serving it.

use serde_json::Value;

use super::{Node, embedded, prune, rules, validate, wording::invalid};
use crate::error::Cause;

/// Apply the defaults of `n` to `v`.
pub(super) fn apply(v: &mut Value, n: &Node) {
    match v {
        Value::Object(m) => {
            for (k, p) in &n.properties {
                let Some(d) = &p.default else {
                    continue;
                };
                match m.get(k) {
                    None => {
                        m.insert(k.clone(), d.clone());
                    }
                    Some(Value::Null) if !p.nullable => {
                        m.insert(k.clone(), d.clone());
                    }
                    Some(_) => {}
                }
            }
            let extra = n.additional.as_ref().and_then(|a| a.schema());
            for (k, c) in m.iter_mut() {
                if let Some(p) = n.properties.get(k) {
                    apply(c, p);
                } else if let Some(s) = extra {
                    if c.is_null()
                        && !s.nullable
                        && let Some(d) = &s.default
                    {
                        *c = d.clone();
                    }
                    apply(c, s);
                }
            }
        }
        Value::Array(items) => {
            let Some(s) = n.items.as_deref() else {
                return;
            };
            for c in items {
                if c.is_null()
                    && !s.nullable
                    && let Some(d) = &s.default
                {
                    *c = d.clone();
                }
                apply(c, s);
            }
        }
        _ => {}
    }
}

/// Every `default` in the schema at `path` (whose CEL rules are compiled)
/// must need no pruning and be valid against its own node.
pub(super) fn check(root: &Node, path: &str) -> Vec<Cause> {
    let mut out = Vec::new();
    walk(root, path, true, false, &mut out);
    out
}

/// `resource`: the node is a resource (the top, or embedded);
/// `inside_meta`: the node is in a resource's `apiVersion`, `kind` or
/// `metadata`, whose defaults Kubernetes checks in the surrounding object.
fn walk(n: &Node, at: &str, resource: bool, inside_meta: bool, out: &mut Vec<Cause>) {
    let resource = resource || n.embedded;
    let inside_meta = inside_meta && !resource;
    if let Some(d) = &n.default {
        let dp = format!("{at}.default");
        if !inside_meta {
            let mut pruned = d.clone();
            prune::prune_quietly(&mut pruned, n, resource);
            if pruned != *d {
                out.push(invalid(&dp, d, "must not have unknown fields"));
            }
        }
        let meta = embedded::validate(n, d, &dp, resource);
        if !meta.is_empty() {
            out.extend(meta);
        } else {
            let values = validate::value(n, d, Some(&dp));
            if !values.is_empty() {
                out.extend(values);
            } else {
                out.extend(rules::check(n, d, None, &dp));
            }
        }
    }
    if let Some(items) = &n.items {
        walk(items, &format!("{at}.items"), false, inside_meta, out);
    }
    for (k, p) in &n.properties {
        let meta =
            inside_meta || (resource && ["apiVersion", "kind", "metadata"].contains(&k.as_str()));
        walk(p, &format!("{at}.properties[{k}]"), false, meta, out);
    }
}
