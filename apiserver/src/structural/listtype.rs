//! The invariants of `x-kubernetes-list-type` lists: a `set` holds no
//! value twice; a `map` holds objects whose `x-kubernetes-list-map-keys`
//! values are unique. Duplicates are named by index, with the duplicated
//! value (a set) or key (a map), as Kubernetes names them.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::wording::{duplicate, invalid};
use super::{Additional, Node, path};
use crate::error::Cause;

/// Duplicate-item errors of the lists in `v` (at field path `at`).
pub(super) fn validate(n: &Node, v: &Value, at: &str) -> Vec<Cause> {
    let mut out = Vec::new();
    if let Value::Object(m) = v {
        object(n, m, at, &mut out);
    }
    out
}

fn object(n: &Node, m: &Map<String, Value>, at: &str, out: &mut Vec<Cause>) {
    if let Some(Additional::Schema(s)) = &n.additional {
        for (k, c) in m {
            walk(s, c, &path::key(at, k), out);
        }
    }
    for (k, c) in m {
        if let Some(p) = n.properties.get(k) {
            walk(p, c, &path::child(at, k), out);
        }
    }
}

fn walk(n: &Node, v: &Value, at: &str, out: &mut Vec<Cause>) {
    match v {
        Value::Object(m) => object(n, m, at, out),
        Value::Array(items) => {
            match n.list_type.as_deref() {
                Some("set") => {
                    for i in repeated(items) {
                        out.push(duplicate(&path::index(at, i), &items[i]));
                    }
                }
                Some("map") => map_list(n, items, at, out),
                _ => {}
            }
            if let Some(s) = &n.items {
                for (i, c) in items.iter().enumerate() {
                    walk(s, c, &path::index(at, i), out);
                }
            }
        }
        _ => {}
    }
}

/// The indexes of the second occurrence of each value seen more than once.
fn repeated(items: &[Value]) -> Vec<usize> {
    let mut seen: HashMap<String, usize> = HashMap::with_capacity(items.len());
    let mut out = Vec::new();
    for (i, x) in items.iter().enumerate() {
        // Compact JSON with sorted keys identifies scalars and compounds;
        // 1 and 1.0 stay distinct, as they are to Kubernetes.
        let times = seen.entry(x.to_string()).or_insert(0);
        *times += 1;
        if *times == 2 {
            out.push(i);
        }
    }
    out
}

fn map_list(n: &Node, items: &[Value], at: &str, out: &mut Vec<Cause>) {
    for (i, x) in items.iter().enumerate() {
        if !x.is_null() && !x.is_object() {
            out.push(invalid(
                &path::index(at, i),
                x,
                "must be an object for an array of list-type map",
            ));
            return;
        }
    }
    let keys: Vec<Value> = items
        .iter()
        .map(|x| {
            let mut key = Map::new();
            for k in &n.list_map_keys {
                if let Some(v) = x.get(k) {
                    key.insert(k.clone(), v.clone());
                }
            }
            Value::Object(key)
        })
        .collect();
    for i in repeated(&keys) {
        out.push(duplicate(&path::index(at, i), &keys[i]));
    }
}
