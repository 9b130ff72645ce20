//! Typed checks with the Kubernetes types of `k8s-openapi`: an object is
//! decoded into its kind's type (a wrong type is reported with its field
//! path) and encoded back; fields of the request that did not survive the
//! round trip are unknown fields, reported or dropped per `fieldValidation`.

use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

/// A value that does not fit its field.
#[derive(Debug)]
pub struct TypeError {
    pub path: String,
    pub message: String,
}

/// Decode into the kind's type and encode back.
pub type Check = fn(&Value) -> Result<Value, TypeError>;

/// Register the kind's OpenAPI schema (and everything it refers to) with a
/// generator; returns the `$ref` to it.
pub type SchemaFn = fn(&mut schemars::SchemaGenerator) -> schemars::Schema;

/// What `k8s-openapi` knows of one kind.
#[derive(Clone, Copy)]
pub struct Typed {
    pub check: Check,
    pub schema: SchemaFn,
}

fn subschema<T: schemars::JsonSchema>(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
    g.subschema_for::<T>()
}

impl Typed {
    /// The check and schema of Kubernetes type `T`.
    pub fn of<T: DeserializeOwned + Serialize + schemars::JsonSchema>() -> Typed {
        Typed {
            check: roundtrip::<T>,
            schema: subschema::<T>,
        }
    }
}

fn roundtrip<T: DeserializeOwned + Serialize>(v: &Value) -> Result<Value, TypeError> {
    let typed: T = serde_path_to_error::deserialize(v).map_err(|e| TypeError {
        path: e.path().to_string(),
        message: e.inner().to_string(),
    })?;
    serde_json::to_value(&typed).map_err(|e| TypeError {
        path: ".".into(),
        message: e.to_string(),
    })
}

/// Paths of `input`'s fields that `known` (the round-tripped object) lacks,
/// and `input` with them removed. Nulls count as absent.
pub fn prune(input: &Value, known: &Value) -> (Vec<String>, Value) {
    let mut unknown = Vec::new();
    let pruned = walk(input, known, "", &mut unknown);
    (unknown, pruned)
}

fn walk(input: &Value, known: &Value, path: &str, unknown: &mut Vec<String>) -> Value {
    match (input, known) {
        (Value::Object(i), Value::Object(k)) => {
            let mut out = serde_json::Map::new();
            for (key, v) in i {
                if v.is_null() {
                    continue;
                }
                let p = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match k.get(key) {
                    Some(kv) => {
                        out.insert(key.clone(), walk(v, kv, &p, unknown));
                    }
                    None => unknown.push(p),
                }
            }
            Value::Object(out)
        }
        (Value::Array(i), Value::Array(k)) => i
            .iter()
            .enumerate()
            .map(|(n, v)| match k.get(n) {
                Some(kv) => walk(v, kv, &format!("{path}[{n}]"), unknown),
                None => v.clone(),
            })
            .collect(),
        _ => input.clone(),
    }
}

/// A YAML request body (`application/yaml`) as the JSON value it stands for,
/// as kube-apiserver converts YAML before decoding. One document only; the
/// parser's default budget bounds aliases and nesting, so hostile input is
/// an error, never a panic or an unbounded expansion.
pub fn from_yaml(body: &[u8]) -> Result<Value, String> {
    let text = std::str::from_utf8(body).map_err(|e| format!("the body is not UTF-8: {e}"))?;
    serde_saphyr::from_str::<Value>(text).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::Deployment;
    use serde_json::json;

    #[test]
    fn nested_unknown_fields_are_found_and_pruned() {
        let check = Typed::of::<Deployment>().check;
        let input = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "w", "labelz": {"a": "b"}, "creationTimestamp": null},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "w"}}, "template": {
                "metadata": {"labels": {"app": "w"}},
                "spec": {"containers": [{"name": "c", "image": "i", "imagee": "typo"}]}}},
        });
        let known = check(&input).unwrap();
        let (unknown, pruned) = prune(&input, &known);
        assert_eq!(
            unknown,
            vec![
                "metadata.labelz".to_string(),
                "spec.template.spec.containers[0].imagee".to_string()
            ]
        );
        assert!(
            pruned
                .pointer("/spec/template/spec/containers/0/imagee")
                .is_none()
        );
        assert_eq!(pruned.pointer("/spec/replicas"), Some(&json!(2)));
    }

    #[test]
    fn wrong_types_name_their_field() {
        let check = Typed::of::<Deployment>().check;
        let err = check(&json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "w"}, "spec": {"replicas": "three", "selector": {}, "template": {}}}))
            .unwrap_err();
        assert_eq!(err.path, "spec.replicas");
        assert!(err.message.contains("invalid type"), "{}", err.message);
    }

    #[test]
    fn yaml_bodies_decode_to_their_json() {
        let v = from_yaml(
            b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\ndata:\n  a: \"1\"\n  n: '2'\n",
        )
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "web"}, "data": {"a": "1", "n": "2"}})
        );
        for bad in [&b"a: [1"[..], b"\xff\xfe", b"a: &x [*x]", b"- a\nb: c"] {
            assert!(from_yaml(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
