//! The protobuf bodies kubectl ≥1.32 sends for `auth can-i`
//! (`application/vnd.kubernetes.protobuf`: `k8s\0`, then a
//! `runtime.Unknown` whose field 2 is the object), turned into the JSON
//! [`super::review`] reads. Only the spec is decoded, with the field
//! numbers of k8s.io/api `authorization/v1/generated.proto`; anything else
//! is skipped, as protobuf allows.

use serde_json::{Map, Value, json};

/// The media type of a Kubernetes protobuf body.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// A length-delimited field's bytes, or a varint.
enum Wire<'a> {
    Bytes(&'a [u8]),
    Other,
}

fn varint(buf: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..70).step_by(7) {
        let (&b, rest) = buf.split_first()?;
        *buf = rest;
        v |= u64::from(b & 0x7f).checked_shl(shift)?;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// The (number, value) fields of one message; `None` if malformed.
fn message(mut buf: &[u8]) -> Option<Vec<(u64, Wire<'_>)>> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let key = varint(&mut buf)?;
        let wire = match key & 7 {
            0 => {
                varint(&mut buf)?;
                Wire::Other
            }
            1 => {
                buf = buf.get(8..)?;
                Wire::Other
            }
            2 => {
                let len = usize::try_from(varint(&mut buf)?).ok()?;
                let b = buf.get(..len)?;
                buf = &buf[len..];
                Wire::Bytes(b)
            }
            5 => {
                buf = buf.get(4..)?;
                Wire::Other
            }
            _ => return None,
        };
        out.push((key >> 3, wire));
    }
    Some(out)
}

/// The bytes of field `n` (the last one, as protobuf merges).
fn bytes<'a>(fields: &[(u64, Wire<'a>)], n: u64) -> Option<&'a [u8]> {
    fields.iter().rev().find_map(|(k, w)| match w {
        Wire::Bytes(b) if *k == n => Some(*b),
        _ => None,
    })
}

fn text(b: &[u8]) -> Option<Value> {
    std::str::from_utf8(b).ok().map(|s| json!(s))
}

/// Fields `names[i]` = number `i + 1`, all strings.
fn strings(b: &[u8], names: &[&str]) -> Option<Value> {
    let f = message(b)?;
    let mut out = Map::new();
    for (i, name) in names.iter().enumerate() {
        if let Some(v) = bytes(&f, i as u64 + 1) {
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
    let unknown = message(body.strip_prefix(b"k8s\0")?)?;
    let object = message(bytes(&unknown, 2)?)?;
    let spec_bytes = bytes(&object, 2).unwrap_or_default();
    let f = message(spec_bytes)?;
    let mut spec = Map::new();
    if kind == "SelfSubjectRulesReview" {
        if let Some(ns) = bytes(&f, 1) {
            spec.insert("namespace".into(), text(ns)?);
        }
        return Some(json!({"spec": spec}));
    }
    if let Some(b) = bytes(&f, 1) {
        spec.insert("resourceAttributes".into(), strings(b, RESOURCE)?);
    }
    if let Some(b) = bytes(&f, 2) {
        spec.insert("nonResourceAttributes".into(), strings(b, NON_RESOURCE)?);
    }
    if kind != "SelfSubjectAccessReview" {
        if let Some(u) = bytes(&f, 3) {
            spec.insert("user".into(), text(u)?);
        }
        let groups: Option<Vec<Value>> = f
            .iter()
            .filter_map(|(k, w)| match w {
                Wire::Bytes(b) if *k == 4 => Some(text(b)),
                _ => None,
            })
            .collect();
        spec.insert("groups".into(), Value::Array(groups?));
        let mut extra = Map::new();
        for (k, w) in &f {
            if let (5, Wire::Bytes(entry)) = (*k, w) {
                let e = message(entry)?;
                let key = text(bytes(&e, 1).unwrap_or_default())?;
                let items = message(bytes(&e, 2).unwrap_or_default())?;
                let values: Option<Vec<Value>> = items
                    .iter()
                    .filter_map(|(n, w)| match w {
                        Wire::Bytes(b) if *n == 1 => Some(text(b)),
                        _ => None,
                    })
                    .collect();
                extra.insert(key.as_str()?.to_string(), Value::Array(values?));
            }
        }
        spec.insert("extra".into(), Value::Object(extra));
        if let Some(u) = bytes(&f, 6) {
            spec.insert("uid".into(), text(u)?);
        }
    }
    Some(json!({"spec": spec}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(n: u64, b: &[u8]) -> Vec<u8> {
        let mut out = vec![(n << 3 | 2) as u8, b.len() as u8];
        out.extend_from_slice(b);
        out
    }

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
