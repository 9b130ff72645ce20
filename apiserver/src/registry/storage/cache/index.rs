//! The watch cache's field index: pods by `spec.nodeName`, so a kubelet's
//! LIST of its node's pods reads a handful of keys out of 150,000. The
//! field is read from a small projection of each object, decoded once per
//! event on the cache side; objects by namespace need no index of their own
//! (a resource's map is ordered by key, and the key starts with the
//! namespace, so a namespace is one range of it).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// The indexed field, as a field selector's JSON pointer names it.
pub const NODE_NAME: &str = "/spec/nodeName";

/// Whether objects under `resource` (a resource prefix such as
/// `/registry/core/pods/`) are indexed by [`NODE_NAME`].
pub fn has_node_index(resource: &str) -> bool {
    resource == "/registry/core/pods/"
}

/// Only what the index reads. A field that is present but `null` is kept
/// apart from a missing one, because selectors read them differently.
#[derive(Deserialize)]
struct Projection {
    #[serde(default)]
    spec: Option<SpecProjection>,
}

#[derive(Deserialize)]
struct SpecProjection {
    #[serde(default, rename = "nodeName", deserialize_with = "present")]
    node_name: Option<Value>,
}

fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// A field's value as [`crate::selector::FieldSelector::matches`] reads it:
/// a string as itself, another JSON value as its text, missing as "".
fn as_selected(v: Option<&Value>) -> String {
    match v {
        None => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// The `spec.nodeName` of a stored object, as a field selector compares it.
/// Anything the projection cannot read (not an object, duplicate fields) is
/// read the slow way, so the index never disagrees with the selector.
pub fn node_name(raw: &[u8]) -> String {
    match serde_json::from_slice::<Projection>(raw) {
        Ok(p) => as_selected(p.spec.and_then(|s| s.node_name).as_ref()),
        Err(_) => serde_json::from_slice::<Value>(raw)
            .ok()
            .map(|v| as_selected(v.pointer(NODE_NAME)))
            .unwrap_or_default(),
    }
}

/// Keys by the value of one field.
#[derive(Default)]
pub struct FieldIndex {
    by_value: HashMap<String, BTreeSet<Arc<str>>>,
}

impl FieldIndex {
    pub fn insert(&mut self, value: &str, key: &Arc<str>) {
        self.by_value
            .entry(value.to_string())
            .or_default()
            .insert(key.clone());
    }

    pub fn remove(&mut self, value: &str, key: &str) {
        if let Some(keys) = self.by_value.get_mut(value) {
            keys.remove(key);
            if keys.is_empty() {
                self.by_value.remove(value);
            }
        }
    }

    /// The keys whose field is `value`, in key order.
    pub fn get(&self, value: &str) -> impl Iterator<Item = &Arc<str>> {
        self.by_value.get(value).into_iter().flatten()
    }

    /// Distinct values indexed.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.by_value.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_projection_reads_the_field_as_a_selector_does() {
        let sel = |raw: &str| {
            let v: Value = serde_json::from_str(raw).unwrap();
            as_selected(v.pointer(NODE_NAME))
        };
        for raw in [
            r#"{"spec":{"nodeName":"node-1","containers":[{"name":"c"}]}}"#,
            r#"{"spec":{"containers":[]}}"#,
            r#"{"metadata":{"name":"p"}}"#,
            r#"{"spec":null}"#,
            r#"{"spec":{"nodeName":null}}"#,
            r#"{"spec":{"nodeName":7}}"#,
            r#"{"spec":[1,2]}"#,
            r#"{"spec":{"nodeName":"a","nodeName":"b"}}"#,
        ] {
            assert_eq!(node_name(raw.as_bytes()), sel(raw), "{raw}");
        }
        assert_eq!(node_name(b"not json"), "");
    }

    #[test]
    fn an_index_forgets_a_key_it_no_longer_holds() {
        let mut idx = FieldIndex::default();
        let (a, b): (Arc<str>, Arc<str>) = ("/a".into(), "/b".into());
        idx.insert("n1", &a);
        idx.insert("n1", &b);
        idx.remove("n1", "/a");
        assert_eq!(idx.get("n1").map(|k| &**k).collect::<Vec<_>>(), ["/b"]);
        idx.remove("n1", "/b");
        assert_eq!(idx.len(), 0);
        assert_eq!(idx.get("n1").count(), 0);
    }
}
