//! Encodes a Swagger 2.0 JSON document as gnostic's `openapi.v2.Document`
//! protobuf, the form kubectl ≤1.31 asks `/openapi/v2` for (it rejects JSON).
//!
//! Only the parts of the format Keel's documents use are written: info,
//! paths with operations and their parameters, and definitions (schemas with
//! `$ref`, types, properties, items, additionalProperties, allOf, required,
//! enums, defaults and vendor extensions). Field numbers follow gnostic's
//! `OpenAPIv2.proto`; values that protobuf cannot type (defaults, enums,
//! extensions) travel as YAML text, for which JSON is valid.

use serde_json::Value;

/// A protobuf message being written: fields in the order they are added.
#[derive(Default)]
struct Pb(Vec<u8>);

impl Pb {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }
    fn bytes(&mut self, field: u32, b: &[u8]) {
        self.varint(((field as u64) << 3) | 2);
        self.varint(b.len() as u64);
        self.0.extend_from_slice(b);
    }
    fn string(&mut self, field: u32, s: &str) {
        self.bytes(field, s.as_bytes());
    }
    fn boolean(&mut self, field: u32, b: bool) {
        if b {
            self.varint((field as u64) << 3);
            self.varint(1);
        }
    }
    fn message(&mut self, field: u32, build: impl FnOnce(&mut Pb)) {
        let mut m = Pb::default();
        build(&mut m);
        self.bytes(field, &m.0);
    }
}

/// `Any { yaml = 2 }`: a JSON value written as YAML (JSON is YAML).
fn any(pb: &mut Pb, field: u32, v: &Value) {
    pb.message(field, |a| a.string(2, &v.to_string()));
}

/// `NamedAny { name = 1, value = 2 }` for every `x-` key of an object.
fn extensions(pb: &mut Pb, field: u32, obj: &serde_json::Map<String, Value>) {
    for (k, v) in obj.iter().filter(|(k, _)| k.starts_with("x-")) {
        pb.message(field, |n| {
            n.string(1, k);
            any(n, 2, v);
        });
    }
}

fn schema(pb: &mut Pb, s: &Value) {
    let Some(obj) = s.as_object() else {
        return;
    };
    let str_of = |k: &str| obj.get(k).and_then(Value::as_str);
    if let Some(r) = str_of("$ref") {
        pb.string(1, r);
    }
    if let Some(f) = str_of("format") {
        pb.string(2, f);
    }
    if let Some(t) = str_of("title") {
        pb.string(3, t);
    }
    if let Some(d) = str_of("description") {
        pb.string(4, d);
    }
    if let Some(d) = obj.get("default") {
        any(pb, 5, d);
    }
    for r in obj
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        pb.string(19, r);
    }
    for e in obj
        .get("enum")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        any(pb, 20, e);
    }
    match obj.get("additionalProperties") {
        Some(Value::Bool(b)) => pb.message(21, |a| a.boolean(2, *b)),
        Some(sub @ Value::Object(_)) => pb.message(21, |a| a.message(1, |m| schema(m, sub))),
        _ => {}
    }
    match obj.get("type") {
        Some(Value::String(t)) => pb.message(22, |m| m.string(1, t)),
        Some(Value::Array(ts)) => pb.message(22, |m| {
            for t in ts.iter().filter_map(Value::as_str) {
                m.string(1, t);
            }
        }),
        _ => {}
    }
    match obj.get("items") {
        Some(Value::Array(items)) => pb.message(23, |m| {
            for i in items {
                m.message(1, |x| schema(x, i));
            }
        }),
        Some(item @ Value::Object(_)) => pb.message(23, |m| m.message(1, |x| schema(x, item))),
        _ => {}
    }
    for sub in obj
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        pb.message(24, |m| schema(m, sub));
    }
    if let Some(props) = obj.get("properties").and_then(Value::as_object) {
        pb.message(25, |m| {
            for (name, p) in props {
                m.message(1, |n| {
                    n.string(1, name);
                    n.message(2, |x| schema(x, p));
                });
            }
        });
    }
    extensions(pb, 31, obj);
}

/// `ParametersItem { parameter = 1 { non_body_parameter = 2 { query|path } } }`.
fn parameter(pb: &mut Pb, p: &Value) {
    let get = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or("");
    // QueryParameterSubSchema = 3 and PathParameterSubSchema = 4 share the
    // numbers of required, in, description, name; type is 6 and 5.
    let (which, type_field) = match get("in") {
        "path" => (4, 5),
        _ => (3, 6),
    };
    pb.message(1, |param| {
        param.message(2, |nb| {
            nb.message(which, |q| {
                q.boolean(1, p.get("required") == Some(&Value::Bool(true)));
                q.string(2, get("in"));
                if !get("description").is_empty() {
                    q.string(3, get("description"));
                }
                q.string(4, get("name"));
                q.string(type_field, get("type"));
            })
        })
    });
}

fn operation(pb: &mut Pb, op: &Value) {
    let Some(obj) = op.as_object() else {
        return;
    };
    if let Some(d) = obj.get("description").and_then(Value::as_str) {
        pb.string(3, d);
    }
    if let Some(id) = obj.get("operationId").and_then(Value::as_str) {
        pb.string(5, id);
    }
    for c in obj
        .get("consumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        pb.string(7, c);
    }
    for p in obj
        .get("parameters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        pb.message(8, |m| parameter(m, p));
    }
    extensions(pb, 13, obj);
}

/// The protobuf form of a Swagger 2.0 document.
pub fn encode(doc: &Value) -> Vec<u8> {
    let mut pb = Pb::default();
    pb.string(1, doc["swagger"].as_str().unwrap_or("2.0"));
    pb.message(2, |info| {
        info.string(1, doc["info"]["title"].as_str().unwrap_or(""));
        info.string(2, doc["info"]["version"].as_str().unwrap_or(""));
    });
    pb.message(8, |paths| {
        for (name, item) in doc["paths"].as_object().into_iter().flatten() {
            paths.message(2, |np| {
                np.string(1, name);
                np.message(2, |pi| {
                    for (method, field) in [
                        ("get", 2),
                        ("put", 3),
                        ("post", 4),
                        ("delete", 5),
                        ("patch", 8),
                    ] {
                        if let Some(op) = item.get(method) {
                            pi.message(field, |o| operation(o, op));
                        }
                    }
                    for p in item
                        .get("parameters")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        pi.message(9, |m| parameter(m, p));
                    }
                });
            });
        }
    });
    pb.message(9, |defs| {
        for (name, s) in doc["definitions"].as_object().into_iter().flatten() {
            defs.message(1, |ns| {
                ns.string(1, name);
                ns.message(2, |x| schema(x, s));
            });
        }
    });
    pb.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A hand-decoded walk over the bytes: tag, length, payload.
    fn fields(mut b: &[u8]) -> Vec<(u64, Vec<u8>)> {
        fn varint(b: &mut &[u8]) -> u64 {
            let mut v = 0u64;
            let mut shift = 0;
            loop {
                let byte = b[0];
                *b = &b[1..];
                v |= ((byte & 0x7f) as u64) << shift;
                if byte < 0x80 {
                    return v;
                }
                shift += 7;
            }
        }
        let mut out = Vec::new();
        while !b.is_empty() {
            let tag = varint(&mut b);
            if tag & 7 == 0 {
                out.push((tag >> 3, vec![varint(&mut b) as u8]));
            } else {
                let len = varint(&mut b) as usize;
                out.push((tag >> 3, b[..len].to_vec()));
                b = &b[len..];
            }
        }
        out
    }

    #[test]
    fn documents_encode_with_gnostic_field_numbers() {
        let long = "d".repeat(300);
        let doc = json!({
            "swagger": "2.0",
            "info": {"title": "T", "version": "v"},
            "paths": {"/p": {"patch": {"operationId": "op",
                "parameters": [{"name": "fieldValidation", "in": "query", "type": "string"}],
                "x-kubernetes-group-version-kind": {"group": "", "version": "v1", "kind": "Pod"}}}},
            "definitions": {"D": {"type": "object", "description": long,
                "properties": {"a": {"$ref": "#/definitions/E"}}, "required": ["a"]}},
        });
        let top = fields(&encode(&doc));
        assert_eq!(top[0], (1, b"2.0".to_vec()));
        assert_eq!(top[1].0, 2);
        assert_eq!(
            fields(&top[1].1),
            vec![(1, b"T".to_vec()), (2, b"v".to_vec())]
        );
        // paths → NamedPathItem → PathItem.patch → Operation
        let path = fields(&fields(&top[2].1)[0].1);
        assert_eq!(path[0], (1, b"/p".to_vec()));
        let op = fields(&fields(&path[1].1)[0].1);
        assert_eq!(op[0], (5, b"op".to_vec()));
        let query = fields(&fields(&fields(&fields(&op[1].1)[0].1)[0].1)[0].1);
        assert!(
            query.contains(&(4, b"fieldValidation".to_vec())),
            "{query:?}"
        );
        assert!(query.contains(&(2, b"query".to_vec())));
        assert_eq!(op[2].0, 13);
        let ext = fields(&op[2].1);
        assert_eq!(ext[0], (1, b"x-kubernetes-group-version-kind".to_vec()));
        let yaml = String::from_utf8(fields(&ext[1].1)[0].1.clone()).unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&yaml).unwrap()["kind"],
            json!("Pod")
        );
        // definitions → NamedSchema → Schema with a long (two-byte length) description
        let named = fields(&fields(&top[3].1)[0].1);
        assert_eq!(named[0], (1, b"D".to_vec()));
        let s = fields(&named[1].1);
        assert!(s.contains(&(4, long.into_bytes())));
        assert!(s.contains(&(19, b"a".to_vec())));
        let ty = s.iter().find(|(f, _)| *f == 22).unwrap();
        assert_eq!(fields(&ty.1), vec![(1, b"object".to_vec())]);
        let props = s.iter().find(|(f, _)| *f == 25).unwrap();
        let a = fields(&fields(&props.1)[0].1);
        assert_eq!(a[0], (1, b"a".to_vec()));
        assert_eq!(fields(&a[1].1), vec![(1, b"#/definitions/E".to_vec())]);
    }
}
