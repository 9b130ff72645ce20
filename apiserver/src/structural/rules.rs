//! The CEL rules (`x-kubernetes-validations`) of a schema: compiled with
//! [`crate::cel::Rules`] once the schema is otherwise valid, and evaluated
//! at every node of an object that has rules, as Kubernetes walks it
//! (fields, map entries, list items; nulls skipped). On an update a node's
//! old value is its counterpart in the old object: the same field, the same
//! map key (unless the map is atomic), the same list-map item by its keys;
//! set and atomic list items have none.

use serde_json::{Map, Value};

use super::wording::invalid;
use super::{Additional, Node, path};
use crate::cel::Rules;
use crate::error::Cause;

/// Compile the rules of every structural node of `n` (at `path` in the
/// CRD), and check that `oldSelf` is used only where an old value can be
/// found. `uncorrelatable`: the place above that has no old values.
pub(super) fn compile(
    n: &mut Node,
    path: &str,
    uncorrelatable: Option<&str>,
    out: &mut Vec<Cause>,
) {
    if let Some(raw) = n.raw.take() {
        match Rules::compile(&raw, path) {
            Ok(r) => n.rules = r,
            Err(causes) => out.extend(causes),
        }
        if let Some(place) = uncorrelatable {
            for (i, rule) in n.rule_texts.iter().enumerate() {
                if uses_old_self(rule) {
                    out.push(invalid(
                        &format!("{path}.x-kubernetes-validations[{i}].rule"),
                        &Value::String(rule.clone()),
                        &format!(
                            "oldSelf cannot be used on the uncorrelatable portion of the schema within {place}"
                        ),
                    ));
                }
            }
        }
    }
    let atomic_map = n.map_type.as_deref() == Some("atomic");
    let list_map = n.list_type.as_deref() == Some("map");
    if let Some(items) = n.items.as_deref_mut() {
        let below = uncorrelatable.or((!list_map).then_some(path));
        compile(items, &format!("{path}.items"), below, out);
    }
    for (k, p) in n.properties.iter_mut() {
        let below = uncorrelatable.or(atomic_map.then_some(path));
        compile(p, &format!("{path}.properties[{k}]"), below, out);
    }
    if let Some(Additional::Schema(s)) = n.additional.as_mut() {
        compile(
            s,
            &format!("{path}.additionalProperties"),
            uncorrelatable,
            out,
        );
    }
}

/// Whether any structural node of `n` has rules.
pub(super) fn any(n: &Node) -> bool {
    !n.rule_texts.is_empty()
        || n.items.as_deref().is_some_and(any)
        || n.properties.values().any(any)
        || n.additional
            .as_ref()
            .and_then(Additional::schema)
            .is_some_and(any)
}

/// Whether a rule refers to `oldSelf`.
fn uses_old_self(rule: &str) -> bool {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    rule.match_indices("oldSelf").any(|(i, m)| {
        let before = rule[..i].chars().next_back();
        let after = rule[i + m.len()..].chars().next();
        !before.is_some_and(ident) && !after.is_some_and(ident)
    })
}

/// The cause Kubernetes adds instead of evaluating rules when the object
/// already fails its schema in ways the rules could trip on.
pub(super) fn blocked(causes: &[Cause]) -> Option<Cause> {
    const BLOCKING: [&str; 5] = [
        "FieldValueNotSupported",
        "FieldValueRequired",
        "FieldValueTooLong",
        "FieldValueTooMany",
        "FieldValueTypeInvalid",
    ];
    causes.iter().any(|c| BLOCKING.contains(&c.reason)).then(|| {
        invalid(
            "",
            &Value::Null,
            "some validation rules were not checked because the object was invalid; correct the existing errors to complete validation",
        )
    })
}

/// The errors of every rule in `v` (at field path `at`), each node given
/// its counterpart in `old` as `oldSelf`.
pub(super) fn check(n: &Node, v: &Value, old: Option<&Value>, at: &str) -> Vec<Cause> {
    let mut out = Vec::new();
    walk(n, v, old, at, false, &mut out);
    out
}

/// The errors that only the old values bring: what each node's rules give
/// with its counterpart, less what they give without.
pub(super) fn check_transitions(n: &Node, new: &Value, old: &Value, at: &str) -> Vec<Cause> {
    let mut out = Vec::new();
    walk(n, new, Some(old), at, true, &mut out);
    out
}

fn walk(
    n: &Node,
    v: &Value,
    old: Option<&Value>,
    at: &str,
    transitions: bool,
    out: &mut Vec<Cause>,
) {
    if v.is_null() {
        return;
    }
    let old = old.filter(|o| !o.is_null());
    if let Some(rules) = &n.rules {
        if !transitions {
            out.extend(rules.check(v, old, at));
        } else if let Some(o) = old {
            let mut without = rules.check(v, None, at);
            for c in rules.check(v, Some(o), at) {
                match without.iter().position(|w| *w == c) {
                    Some(i) => {
                        without.remove(i);
                    }
                    None => out.push(c),
                }
            }
        }
    }
    match v {
        Value::Array(items) => {
            let Some(s) = n.items.as_deref() else {
                return;
            };
            let olds = old
                .and_then(Value::as_array)
                .filter(|_| n.list_type.as_deref() == Some("map"));
            for (i, item) in items.iter().enumerate() {
                let o = olds.and_then(|olds| counterpart(&n.list_map_keys, item, olds));
                walk(s, item, o, &path::index(at, i), transitions, out);
            }
        }
        Value::Object(m) => {
            let olds: Option<&Map<String, Value>> = old
                .and_then(Value::as_object)
                .filter(|_| n.map_type.as_deref() != Some("atomic"));
            if let Some(Additional::Schema(s)) = &n.additional {
                for (k, c) in m {
                    let o = olds.and_then(|o| o.get(k));
                    walk(s, c, o, &path::key(at, k), transitions, out);
                }
            }
            for (k, c) in m {
                if let Some(p) = n.properties.get(k) {
                    let o = olds.and_then(|o| o.get(k));
                    walk(p, c, o, &path::child(at, k), transitions, out);
                }
            }
        }
        _ => {}
    }
}

/// The item of `olds` with the same list-map keys as `item`.
fn counterpart<'a>(keys: &[String], item: &Value, olds: &'a [Value]) -> Option<&'a Value> {
    if !item.is_object() {
        return None;
    }
    olds.iter()
        .find(|o| o.is_object() && keys.iter().all(|k| o.get(k) == item.get(k)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn old_self_is_found_as_an_identifier_only() {
        assert!(uses_old_self("self == oldSelf"));
        assert!(uses_old_self("oldSelf.size() <= self.size()"));
        assert!(!uses_old_self("self.oldSelfish == 1"));
        assert!(!uses_old_self("self.x > 0"));
    }

    #[test]
    fn list_map_items_find_their_old_item_by_keys() {
        let keys = vec!["name".to_string(), "protocol".to_string()];
        let olds = vec![
            json!({"name": "a", "protocol": "TCP", "port": 1}),
            json!({"name": "a", "protocol": "UDP", "port": 2}),
        ];
        let new = json!({"name": "a", "protocol": "UDP", "port": 3});
        assert_eq!(counterpart(&keys, &new, &olds), Some(&olds[1]));
        let gone = json!({"name": "b", "protocol": "UDP"});
        assert_eq!(counterpart(&keys, &gone, &olds), None);
    }
}
