//! The protobuf bodies kubectl ≥1.32 sends for `auth can-i`
//! (`application/vnd.kubernetes.protobuf`: `k8s\0`, then a
//! `runtime.Unknown` whose field 2 is the object), turned into the JSON
//! [`super::review`] reads. Only the spec is decoded, with the field
//! numbers of k8s.io/api `authorization/v1/generated.proto`; anything else
//! is skipped, as protobuf allows.

use serde_json::{Map, Value, json};

pub use crate::protowire::MEDIA_TYPE;
use crate::protowire::{Message, unknown};

fn text(b: &[u8]) -> Option<Value> {
    std::str::from_utf8(b).ok().map(|s| json!(s))
}

/// Fields `names[i]` = number `i + 1`, all strings.
fn strings(b: &[u8], names: &[&str]) -> Option<Value> {
    let f = Message::parse(b)?;
    let mut out = Map::new();
    for (i, name) in names.iter().enumerate() {
        if let Some(v) = f.last(i as u64 + 1) {
            out.insert(name.to_string(), text(v)?);
        }
    }
    Some(Value::Object(out))
}

const RESOURCE: &[&str] = &[
    "namespace",
    "verb",
    "group",
    "version",
    "resource",
    "subresource",
    "name",
];
const NON_RESOURCE: &[&str] = &["path", "verb"];

/// A review body as JSON, for `kind` (the review's kind).
pub fn decode(body: &[u8], kind: &str) -> Option<Value> {
    let object = Message::parse(unknown(body)?.last(2)?)?;
    let f = Message::parse(object.last(2).unwrap_or_default())?;
    let mut spec = Map::new();
    if kind == "SelfSubjectRulesReview" {
        if let Some(ns) = f.last(1) {
            spec.insert("namespace".into(), text(ns)?);
        }
        return Some(json!({"spec": spec}));
    }
    if let Some(b) = f.last(1) {
        spec.insert("resourceAttributes".into(), strings(b, RESOURCE)?);
    }
    if let Some(b) = f.last(2) {
        spec.insert("nonResourceAttributes".into(), strings(b, NON_RESOURCE)?);
    }
    if kind != "SelfSubjectAccessReview" {
        if let Some(u) = f.last(3) {
            spec.insert("user".into(), text(u)?);
        }
        let groups: Option<Vec<Value>> = f.all(4).map(text).collect();
        spec.insert("groups".into(), Value::Array(groups?));
        let mut extra = Map::new();
        for entry in f.all(5) {
            let e = Message::parse(entry)?;
            let key = text(e.last(1).unwrap_or_default())?;
            let items = Message::parse(e.last(2).unwrap_or_default())?;
            let values: Option<Vec<Value>> = items.all(1).map(text).collect();
            extra.insert(key.as_str()?.to_string(), Value::Array(values?));
        }
        spec.insert("extra".into(), Value::Object(extra));
        if let Some(u) = f.last(6) {
            spec.insert("uid".into(), text(u)?);
        }
    }
    Some(json!({"spec": spec}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protowire::tests::field;

    #[test]
    fn kubectls_protobuf_reviews_decode() {
        let attrs = [field(1, b"default"), field(2, b"list"), field(5, b"pods")].concat();
        let spec = field(1, &attrs);
        let obj = [field(1, b""), field(2, &spec)].concat();
        let body = [b"k8s\0".to_vec(), field(1, b"x"), field(2, &obj)].concat();
        let v = decode(&body, "SelfSubjectAccessReview").unwrap();
        assert_eq!(
            v["spec"]["resourceAttributes"],
            json!({"namespace": "default", "verb": "list", "resource": "pods"})
        );
        let spec = [field(3, b"bob"), field(4, b"g1"), field(4, b"g2")].concat();
        let obj = field(2, &spec);
        let body = [b"k8s\0".to_vec(), field(2, &obj)].concat();
        let v = decode(&body, "SubjectAccessReview").unwrap();
        assert_eq!(
            (v["spec"]["user"].clone(), v["spec"]["groups"].clone()),
            (json!("bob"), json!(["g1", "g2"]))
        );
        let rules = [b"k8s\0".to_vec(), field(2, &field(2, &field(1, b"dev")))].concat();
        assert_eq!(
            decode(&rules, "SelfSubjectRulesReview").unwrap()["spec"]["namespace"],
            "dev"
        );
        assert!(decode(b"k8s\0\x12\xff", "SelfSubjectAccessReview").is_none());
        assert!(decode(b"{}", "SelfSubjectAccessReview").is_none());
    }
}
