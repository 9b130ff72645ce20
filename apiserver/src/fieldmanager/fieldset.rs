//! Sets of field paths, the unit of ownership in server-side apply, and
//! their wire form `FieldsV1`: a tree whose keys are path elements
//! (`f:name` a field, `k:{"name":"x"}` an associative list item by its
//! keys, `v:"x"` a set item, `i:0` a list index) and whose `.` key marks
//! the node itself as a member.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// How deep a decoded `FieldsV1` may nest (objects are bounded the same way
/// by the JSON decoder; this keeps recursion over a set bounded too).
pub const MAX_DEPTH: usize = 128;

/// A set of paths, as a tree: `member` says the path to this node is in the
/// set; `children` are the paths below it, by path element.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSet {
    pub member: bool,
    pub children: BTreeMap<String, FieldSet>,
}

/// A path element for field `name`.
pub fn field(name: &str) -> String {
    format!("f:{name}")
}

/// A path element for an associative list item with these key values
/// (sorted by key name, as Kubernetes writes them).
pub fn key(keys: &BTreeMap<String, Value>) -> String {
    let m: Map<String, Value> = keys.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    format!("k:{}", Value::Object(m))
}

/// A path element for a set item.
pub fn value(v: &Value) -> String {
    format!("v:{v}")
}

impl FieldSet {
    pub fn is_empty(&self) -> bool {
        !self.member && self.children.is_empty()
    }

    /// Add `path` as a member.
    pub fn insert(&mut self, path: &[String]) {
        let mut node = self;
        for pe in path {
            node = node.children.entry(pe.clone()).or_default();
        }
        node.member = true;
    }

    /// The node at `path`, if any path passes through it.
    pub fn get(&self, path: &[String]) -> Option<&FieldSet> {
        let mut node = self;
        for pe in path {
            node = node.children.get(pe)?;
        }
        Some(node)
    }

    /// Whether `path` is a member.
    pub fn has(&self, path: &[String]) -> bool {
        self.get(path).is_some_and(|n| n.member)
    }

    pub fn union(&self, other: &FieldSet) -> FieldSet {
        let mut out = self.clone();
        out.union_with(other);
        out
    }

    pub fn union_with(&mut self, other: &FieldSet) {
        self.member |= other.member;
        for (pe, child) in &other.children {
            self.children
                .entry(pe.clone())
                .or_default()
                .union_with(child);
        }
    }

    /// The members of `self` that are not members of `other`.
    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet {
            member: self.member && !other.member,
            children: BTreeMap::new(),
        };
        for (pe, child) in &self.children {
            let d = match other.children.get(pe) {
                Some(o) => child.difference(o),
                None => child.clone(),
            };
            if !d.is_empty() {
                out.children.insert(pe.clone(), d);
            }
        }
        out
    }

    /// The members of both.
    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet {
            member: self.member && other.member,
            children: BTreeMap::new(),
        };
        for (pe, child) in &self.children {
            if let Some(o) = other.children.get(pe) {
                let i = child.intersection(o);
                if !i.is_empty() {
                    out.children.insert(pe.clone(), i);
                }
            }
        }
        out
    }

    /// Every member path, in order.
    pub fn paths(&self) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        let mut prefix = Vec::new();
        self.collect(&mut prefix, &mut out);
        out
    }

    fn collect(&self, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        if self.member {
            out.push(prefix.clone());
        }
        for (pe, child) in &self.children {
            prefix.push(pe.clone());
            child.collect(prefix, out);
            prefix.pop();
        }
    }

    /// The `FieldsV1` form: a leaf member is `{}`, a member with members
    /// below it carries `".": {}`.
    pub fn to_fields_v1(&self) -> Value {
        let mut m = Map::new();
        if self.member && !self.children.is_empty() {
            m.insert(".".into(), Value::Object(Map::new()));
        }
        for (pe, child) in &self.children {
            m.insert(pe.clone(), child.to_fields_v1());
        }
        Value::Object(m)
    }

    /// Read a `FieldsV1` tree; anything else is an error naming what is wrong.
    pub fn from_fields_v1(v: &Value) -> Result<FieldSet, String> {
        Self::decode(v, 0)
    }

    fn decode(v: &Value, depth: usize) -> Result<FieldSet, String> {
        if depth > MAX_DEPTH {
            return Err(format!("fieldsV1 nests deeper than {MAX_DEPTH} levels"));
        }
        let m = v
            .as_object()
            .ok_or_else(|| format!("fieldsV1: expected an object, got {v}"))?;
        let mut out = FieldSet {
            // `{}` is a leaf, and so a member.
            member: m.is_empty(),
            children: BTreeMap::new(),
        };
        for (k, child) in m {
            if k == "." {
                out.member = true;
                continue;
            }
            check_element(k)?;
            out.children
                .insert(k.clone(), Self::decode(child, depth + 1)?);
        }
        Ok(out)
    }
}

/// A path element must be one of the four kinds, with a JSON body where it
/// has one.
fn check_element(pe: &str) -> Result<(), String> {
    let bad = || format!("fieldsV1: invalid path element {pe:?}");
    let (kind, rest) = pe.split_once(':').ok_or_else(bad)?;
    match kind {
        "f" => Ok(()),
        "k" => match serde_json::from_str::<Value>(rest) {
            Ok(Value::Object(_)) => Ok(()),
            _ => Err(bad()),
        },
        "v" => serde_json::from_str::<Value>(rest)
            .map(|_| ())
            .map_err(|_| bad()),
        "i" => rest.parse::<u64>().map(|_| ()).map_err(|_| bad()),
        _ => Err(bad()),
    }
}

/// A path as Kubernetes prints it in conflicts: `.spec.replicas`,
/// `.spec.containers[name="nginx"].image`, `.metadata.finalizers[="x"]`.
pub fn display(path: &[String]) -> String {
    let mut out = String::new();
    for pe in path {
        if let Some(f) = pe.strip_prefix("f:") {
            out.push('.');
            out.push_str(f);
        } else if let Some(k) = pe.strip_prefix("k:") {
            let keys: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
            let parts: Vec<String> = keys.iter().map(|(k, v)| format!("{k}={v}")).collect();
            out.push_str(&format!("[{}]", parts.join(",")));
        } else if let Some(v) = pe.strip_prefix("v:") {
            out.push_str(&format!("[={v}]"));
        } else if let Some(i) = pe.strip_prefix("i:") {
            out.push_str(&format!("[{i}]"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn fields_v1_round_trips() {
        let v = json!({
            "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
            "f:spec": {
                "f:replicas": {},
                "f:containers": {"k:{\"name\":\"nginx\"}": {".": {}, "f:image": {}, "f:name": {}}},
            },
            "f:finalizers": {"v:\"x\"": {}},
        });
        let s = FieldSet::from_fields_v1(&v).unwrap();
        assert!(s.has(&p(&["f:metadata", "f:labels"])));
        assert!(!s.has(&p(&["f:metadata"])));
        assert!(s.has(&p(&["f:spec", "f:containers", "k:{\"name\":\"nginx\"}"])));
        assert_eq!(s.to_fields_v1(), v);
    }

    #[test]
    fn fields_v1_rejects_bad_elements_and_depth() {
        assert!(FieldSet::from_fields_v1(&json!({"x:y": {}})).is_err());
        assert!(FieldSet::from_fields_v1(&json!({"k:notjson": {}})).is_err());
        assert!(FieldSet::from_fields_v1(&json!({"f:a": 1})).is_err());
        let mut deep = json!({});
        for _ in 0..200 {
            deep = json!({ "f:a": deep });
        }
        assert!(FieldSet::from_fields_v1(&deep).is_err());
    }

    #[test]
    fn union_difference_intersection() {
        let mut a = FieldSet::default();
        a.insert(&p(&["f:spec", "f:replicas"]));
        a.insert(&p(&["f:spec", "f:paused"]));
        let mut b = FieldSet::default();
        b.insert(&p(&["f:spec", "f:replicas"]));
        b.insert(&p(&["f:data", "f:k"]));
        let u = a.union(&b);
        assert_eq!(u.paths().len(), 3);
        let d = a.difference(&b);
        assert_eq!(d.paths(), vec![p(&["f:spec", "f:paused"])]);
        let i = a.intersection(&b);
        assert_eq!(i.paths(), vec![p(&["f:spec", "f:replicas"])]);
        assert!(a.difference(&a).is_empty());
    }

    #[test]
    fn paths_display_as_kubernetes_prints_them() {
        assert_eq!(display(&p(&["f:spec", "f:replicas"])), ".spec.replicas");
        assert_eq!(
            display(&p(&[
                "f:spec",
                "f:containers",
                "k:{\"name\":\"nginx\"}",
                "f:image"
            ])),
            ".spec.containers[name=\"nginx\"].image"
        );
        assert_eq!(
            display(&p(&["f:metadata", "f:finalizers", "v:\"x\""])),
            ".metadata.finalizers[=\"x\"]"
        );
    }
}
