//! The protobuf bodies kubectl ≥1.32 sends for `create token` and `auth
//! whoami` (`application/vnd.kubernetes.protobuf`: the `k8s\0` magic, then
//! a `runtime.Unknown` whose `raw` is the object), turned into the JSON the
//! handlers read. Only the fields authentication reads are decoded (field
//! numbers from k8s.io/api `authentication/v1/generated.proto`); the rest
//! are skipped, as protobuf allows.

use serde_json::{Value, json};

pub use crate::protowire::MEDIA_TYPE;
use crate::protowire::{Field, Message, unknown};

fn string(b: &[u8]) -> Option<String> {
    String::from_utf8(b.to_vec()).ok()
}

/// The object bytes of a `k8s\0` + `runtime.Unknown` envelope.
fn raw(body: &[u8]) -> Option<&[u8]> {
    unknown(body)?.first(2)
}

/// Field `spec` (2) of a TokenRequest, TokenReview or SelfSubjectReview.
fn spec(body: &[u8]) -> Option<Vec<(u64, Field<'_>)>> {
    match Message::parse(raw(body)?)?.first(2) {
        Some(s) => Message::parse(s).map(|m| m.0),
        None => Some(vec![]),
    }
}

/// A TokenRequest as JSON (`spec` only: audiences, expirationSeconds,
/// boundObjectRef); `None` for a malformed body.
pub fn token_request(body: &[u8]) -> Option<Value> {
    let mut spec = json!({});
    let mut audiences = Vec::new();
    for (n, f) in self::spec(body)? {
        match (n, f) {
            (1, Field::Bytes(b)) => audiences.push(json!(string(b)?)),
            (4, Field::Varint(v)) => spec["expirationSeconds"] = json!(v as i64),
            (3, Field::Bytes(b)) => {
                let mut r = json!({});
                for (n, f) in Message::parse(b)?.0 {
                    let name = match n {
                        1 => "kind",
                        2 => "apiVersion",
                        3 => "name",
                        4 => "uid",
                        _ => continue,
                    };
                    if let Field::Bytes(b) = f {
                        r[name] = json!(string(b)?);
                    }
                }
                spec["boundObjectRef"] = r;
            }
            _ => {}
        }
    }
    if !audiences.is_empty() {
        spec["audiences"] = Value::Array(audiences);
    }
    Some(json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}))
}

/// A TokenReview as JSON (`spec`: token, audiences).
pub fn token_review(body: &[u8]) -> Option<Value> {
    let mut spec = json!({});
    let mut audiences = Vec::new();
    for (n, f) in self::spec(body)? {
        match (n, f) {
            (1, Field::Bytes(b)) => spec["token"] = json!(string(b)?),
            (2, Field::Bytes(b)) => audiences.push(json!(string(b)?)),
            _ => {}
        }
    }
    if !audiences.is_empty() {
        spec["audiences"] = Value::Array(audiences);
    }
    Some(json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": spec}))
}

/// A SelfSubjectReview has nothing to read: the envelope must parse.
pub fn self_subject_review(body: &[u8]) -> Option<Value> {
    raw(body).and_then(Message::parse)?;
    Some(json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protowire::MAGIC;
    use crate::protowire::tests::field as bytes;

    fn envelope(obj: &[u8]) -> Vec<u8> {
        let mut type_meta = bytes(1, b"authentication.k8s.io/v1");
        type_meta.extend(bytes(2, b"TokenRequest"));
        let mut body = MAGIC.to_vec();
        body.extend(bytes(1, &type_meta));
        body.extend(bytes(2, obj));
        body
    }

    #[test]
    fn a_token_request_decodes() {
        let mut bound = bytes(1, b"Pod");
        bound.extend(bytes(3, b"web"));
        let mut spec = bytes(1, b"vault");
        spec.extend(bytes(1, b"api"));
        spec.extend(bytes(3, &bound));
        // expirationSeconds = 7200: field 4, varint.
        spec.extend([4 << 3, 0xa0, 0x38]);
        let mut obj = bytes(1, b"");
        obj.extend(bytes(2, &spec));
        let v = token_request(&envelope(&obj)).unwrap();
        assert_eq!(v["spec"]["audiences"], json!(["vault", "api"]));
        assert_eq!(v["spec"]["expirationSeconds"], 7200);
        assert_eq!(
            v["spec"]["boundObjectRef"],
            json!({"kind": "Pod", "name": "web"})
        );
        assert!(self_subject_review(&envelope(&[])).is_some());
        assert!(token_request(b"{}").is_none());
        assert!(token_request(&envelope(&[0x12, 0x7f])).is_none());
    }

    #[test]
    fn a_token_review_decodes() {
        let mut spec = bytes(1, b"abc");
        spec.extend(bytes(2, b"aud"));
        let v = token_review(&envelope(&bytes(2, &spec))).unwrap();
        assert_eq!(v["spec"], json!({"token": "abc", "audiences": ["aud"]}));
    }
}
