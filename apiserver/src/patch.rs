//! JSON merge patch (RFC 7386) and JSON patch (RFC 6902), as `kubectl
//! label`, `annotate`, `scale` and `patch --type=merge|json` send them;
//! strategic merge patch, which kubectl `apply`, `edit`, `set` and `patch`
//! send for built-in kinds, is in [`strategic`].

use serde_json::Value;

mod order;
pub mod strategic;
#[cfg(test)]
mod strategic_tests;
#[cfg(test)]
mod two_way;

/// Why a JSON patch or a strategic merge patch was refused.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum PatchError {
    /// Not a JSON patch document (kube-apiserver: 400 BadRequest).
    #[error("{0}")]
    Malformed(String),
    /// A well-formed operation that does not apply to the object
    /// (kube-apiserver: 422).
    #[error("{0}")]
    Failed(String),
}

/// Apply a merge patch: objects merge recursively, `null` deletes, anything
/// else replaces.
pub fn merge(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Default::default());
            }
            let Value::Object(t) = target else {
                return;
            };
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other.clone(),
    }
}

fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

/// Split a JSON pointer into its parent pointer and last token.
fn split(path: &str) -> Result<(String, String), String> {
    // Replacing or removing the whole object would leave no object to store.
    if path.is_empty() {
        return Err("the root cannot be the target of this operation".into());
    }
    let i = path
        .rfind('/')
        .ok_or_else(|| format!("invalid JSON pointer {path:?}"))?;
    Ok((path[..i].to_string(), unescape(&path[i + 1..])))
}

fn add(doc: &mut Value, path: &str, value: Value) -> Result<(), String> {
    let (parent, last) = split(path)?;
    match doc.pointer_mut(&parent) {
        Some(Value::Object(m)) => {
            m.insert(last, value);
            Ok(())
        }
        Some(Value::Array(a)) => {
            let i = if last == "-" {
                a.len()
            } else {
                last.parse::<usize>()
                    .map_err(|_| format!("invalid array index {last:?}"))?
            };
            if i > a.len() {
                return Err(format!("array index {i} out of bounds at {path}"));
            }
            a.insert(i, value);
            Ok(())
        }
        _ => Err(format!("the path {parent:?} does not exist")),
    }
}

fn remove(doc: &mut Value, path: &str) -> Result<Value, String> {
    let (parent, last) = split(path)?;
    match doc.pointer_mut(&parent) {
        Some(Value::Object(m)) => m
            .remove(&last)
            .ok_or_else(|| format!("the path {path:?} does not exist")),
        Some(Value::Array(a)) => {
            let i = last
                .parse::<usize>()
                .map_err(|_| format!("invalid array index {last:?}"))?;
            if i >= a.len() {
                return Err(format!("array index {i} out of bounds at {path}"));
            }
            Ok(a.remove(i))
        }
        _ => Err(format!("the path {parent:?} does not exist")),
    }
}

/// Apply a JSON patch; on error the document may be partly changed, so
/// callers patch a copy.
pub fn json_patch(doc: &mut Value, patch: &Value) -> Result<(), PatchError> {
    let malformed = |m: &str| PatchError::Malformed(m.to_string());
    let ops = patch
        .as_array()
        .ok_or_else(|| malformed("a JSON patch must be an array of operations"))?;
    for op in ops {
        let kind = op
            .get("op")
            .and_then(Value::as_str)
            .ok_or_else(|| malformed("an operation needs \"op\""))?;
        let path = op
            .get("path")
            .and_then(Value::as_str)
            .ok_or_else(|| malformed("an operation needs \"path\""))?;
        apply_op(doc, op, kind, path).map_err(PatchError::Failed)?;
    }
    Ok(())
}

fn apply_op(doc: &mut Value, op: &Value, kind: &str, path: &str) -> Result<(), String> {
    let value = || {
        op.get("value")
            .cloned()
            .ok_or(format!("{kind} at {path} needs \"value\""))
    };
    let from = || {
        op.get("from")
            .and_then(Value::as_str)
            .ok_or(format!("{kind} at {path} needs \"from\""))
    };
    match kind {
        "add" => add(doc, path, value()?)?,
        "remove" => {
            remove(doc, path)?;
        }
        "replace" => {
            remove(doc, path)?;
            add(doc, path, value()?)?;
        }
        "move" => {
            let v = remove(doc, from()?)?;
            add(doc, path, v)?;
        }
        "copy" => {
            let v = doc
                .pointer(from()?)
                .cloned()
                .ok_or(format!("the path {:?} does not exist", from()?))?;
            add(doc, path, v)?;
        }
        "test" => {
            if doc.pointer(path) != Some(&value()?) {
                return Err(format!("test failed at {path}"));
            }
        }
        other => return Err(format!("unknown JSON patch operation {other:?}")),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut doc = json!({"a": "b", "c": {"d": "e", "f": "g"}, "l": [1, 2]});
        merge(
            &mut doc,
            &json!({"a": "z", "c": {"f": null}, "l": [3], "n": {"x": 1}}),
        );
        assert_eq!(
            doc,
            json!({"a": "z", "c": {"d": "e"}, "l": [3], "n": {"x": 1}})
        );
    }

    #[test]
    fn json_patch_operations() {
        let mut doc = json!({"spec": {"replicas": 1, "list": ["a", "b"]}, "metadata": {"labels": {"a/b": "1"}}});
        json_patch(
            &mut doc,
            &json!([
                {"op": "replace", "path": "/spec/replicas", "value": 4},
                {"op": "add", "path": "/spec/list/-", "value": "c"},
                {"op": "remove", "path": "/spec/list/0"},
                {"op": "remove", "path": "/metadata/labels/a~1b"},
                {"op": "copy", "from": "/spec/replicas", "path": "/spec/copy"},
                {"op": "test", "path": "/spec/copy", "value": 4},
            ]),
        )
        .unwrap();
        assert_eq!(
            doc,
            json!({"spec": {"replicas": 4, "list": ["b", "c"], "copy": 4}, "metadata": {"labels": {}}})
        );
        assert!(
            json_patch(
                &mut doc,
                &json!([{"op": "test", "path": "/spec/copy", "value": 5}])
            )
            .is_err()
        );
        assert!(
            json_patch(
                &mut doc,
                &json!([{"op": "replace", "path": "/nope/x", "value": 1}])
            )
            .is_err()
        );
    }

    #[test]
    fn whole_document_operations_are_refused_not_applied() {
        let orig = json!({"metadata": {"name": "x"}});
        for op in [
            json!([{"op": "add", "path": "", "value": 1}]),
            json!([{"op": "replace", "path": "", "value": {}}]),
            json!([{"op": "remove", "path": ""}]),
            json!([{"op": "move", "from": "", "path": "/a"}]),
        ] {
            let mut doc = orig.clone();
            assert!(
                matches!(json_patch(&mut doc, &op), Err(PatchError::Failed(_))),
                "{op}"
            );
            assert!(doc.is_object(), "{op} left {doc}");
        }
        let mut doc = orig.clone();
        assert!(matches!(
            json_patch(&mut doc, &json!({"op": "add"})),
            Err(PatchError::Malformed(_))
        ));
        assert!(matches!(
            json_patch(&mut doc, &json!([{"path": "/a"}])),
            Err(PatchError::Malformed(_))
        ));
    }

    #[test]
    fn merge_patches_of_any_shape_never_panic() {
        for p in [
            json!(5),
            json!("x"),
            json!(null),
            json!([1]),
            json!({"metadata": "x"}),
        ] {
            let mut doc = json!({"metadata": {"name": "x"}});
            merge(&mut doc, &p);
        }
    }
}
