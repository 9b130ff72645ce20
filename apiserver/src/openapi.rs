//! OpenAPI v3 discovery: `/openapi/v3` lists one document per group-version,
//! and each document describes the served kinds with their
//! `x-kubernetes-group-version-kind` and a PATCH operation that accepts
//! `fieldValidation`, which tells kubectl (≥1.27) that the server validates
//! fields itself, so it sends `fieldValidation=Strict` instead of fetching
//! the v2 protobuf schema.
//!
//! Schemas come from the Kubernetes types (`k8s-openapi`'s JSON schemas,
//! generated for OpenAPI 3.0 by `schemars`), so `kubectl explain` works.

use serde_json::{Value, json};

use crate::kinds::ResourceType;

fn gv_path(t: &ResourceType) -> String {
    if t.group.is_empty() {
        format!("api/{}", t.version)
    } else {
        format!("apis/{}/{}", t.group, t.version)
    }
}

fn schema_name(t: &ResourceType) -> String {
    let group = if t.group.is_empty() {
        "core".to_string()
    } else {
        t.group.split('.').next().unwrap_or(t.group).to_string()
    };
    format!("io.k8s.api.{group}.{}.{}", t.version, t.kind)
}

/// A stable hash of a document, for the `?hash=` of its URL.
fn hash(v: &Value) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in v.to_string().bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016X}")
}

/// The served documents never change while the server runs: build them once.
fn cached() -> &'static (Value, std::collections::BTreeMap<String, Value>) {
    static DOCS: std::sync::OnceLock<(Value, std::collections::BTreeMap<String, Value>)> =
        std::sync::OnceLock::new();
    DOCS.get_or_init(|| {
        let types = crate::kinds::all();
        let mut docs = std::collections::BTreeMap::new();
        for t in types {
            let p = gv_path(t);
            if !docs.contains_key(&p)
                && let Some(d) = build_document(types, &p)
            {
                docs.insert(p, d);
            }
        }
        (index_of(&docs), docs)
    })
}

/// The `/openapi/v3` index of the served kinds.
pub fn served_index() -> &'static Value {
    &cached().0
}

/// The document of one served group-version path (`api/v1`, `apis/apps/v1`).
pub fn served_document(gv: &str) -> Option<&'static Value> {
    cached().1.get(gv)
}

/// The `/openapi/v3` index of built documents, each URL carrying its hash.
fn index_of(docs: &std::collections::BTreeMap<String, Value>) -> Value {
    let paths: serde_json::Map<String, Value> = docs
        .iter()
        .map(|(p, doc)| {
            (
                p.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={}", hash(doc))}),
            )
        })
        .collect();
    json!({"paths": paths})
}

/// The document of one group-version path (`api/v1`, `apis/apps/v1`).
fn build_document(types: &[ResourceType], gv: &str) -> Option<Value> {
    let kinds: Vec<&ResourceType> = types.iter().filter(|t| gv_path(t) == gv).collect();
    if kinds.is_empty() {
        return None;
    }
    let mut paths = serde_json::Map::new();
    let mut schemas = serde_json::Map::new();
    let mut generator = schemars::generate::SchemaSettings::openapi3().into_generator();
    let mut named: Vec<(String, Value)> = Vec::new();
    for t in kinds {
        let gvk = json!({"group": t.group, "version": t.version, "kind": t.kind});
        let name = match crate::typed::typed_for(t.group, t.kind) {
            Some(typed) => {
                let r = (typed.schema)(&mut generator);
                r.get("$ref")
                    .and_then(Value::as_str)
                    .and_then(|r| r.rsplit('/').next())
                    .map(str::to_string)
                    .unwrap_or_else(|| schema_name(t))
            }
            None => schema_name(t),
        };
        named.push((name.clone(), gvk.clone()));
        let reference = json!({"$ref": format!("#/components/schemas/{name}")});
        let item = if t.namespaced {
            format!("/{gv}/namespaces/{{namespace}}/{}/{{name}}", t.plural)
        } else {
            format!("/{gv}/{}/{{name}}", t.plural)
        };
        let mut params = vec![
            json!({"name": "name", "in": "path", "required": true, "schema": {"type": "string"}}),
        ];
        if t.namespaced {
            params.push(json!({"name": "namespace", "in": "path", "required": true, "schema": {"type": "string"}}));
        }
        let query = |n: &str| json!({"name": n, "in": "query", "schema": {"type": "string", "uniqueItems": true}});
        let op = |action: &str, method: &str| {
            json!({
                "operationId": format!("{method}{}", t.kind),
                "x-kubernetes-action": action,
                "x-kubernetes-group-version-kind": gvk,
                "parameters": [query("dryRun"), query("fieldManager"), query("fieldValidation")],
                "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": reference}}}},
            })
        };
        let mut patch = op("patch", "patch");
        patch["requestBody"] = json!({"content": {
            "application/json-patch+json": {"schema": {"type": "object"}},
            "application/merge-patch+json": {"schema": {"type": "object"}},
        }});
        let mut put = op("put", "replace");
        put["requestBody"] = json!({"content": {"application/json": {"schema": reference}}});
        paths.insert(item, json!({"parameters": params, "get": op("get", "read"), "put": put, "patch": patch, "delete": op("delete", "delete")}));
        if crate::typed::typed_for(t.group, t.kind).is_some() {
            continue;
        }
        schemas.insert(
            name,
            json!({
                "type": "object",
                "description": format!("{} ({}).", t.kind, if t.namespaced { "namespaced" } else { "cluster-scoped" }),
                "properties": {
                    "apiVersion": {"type": "string"},
                    "kind": {"type": "string"},
                    "metadata": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                },
                "x-kubernetes-preserve-unknown-fields": true,
                "x-kubernetes-group-version-kind": [gvk],
            }),
        );
    }
    for (k, v) in generator.take_definitions(true) {
        schemas.insert(k, v);
    }
    // The extension by which kubectl finds a kind's schema.
    for (name, gvk) in named {
        if let Some(Value::Object(schema)) = schemas.get_mut(&name) {
            schema.insert("x-kubernetes-group-version-kind".into(), json!([gvk]));
        }
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}

/// A minimal OpenAPI v2 document: kubectl ≤1.31 fetches `/openapi/v2` before
/// it creates from files and refuses to go on when it is missing; with no
/// definitions it leaves validation to the server (`fieldValidation`).
/// `protobuf` selects the gnostic `openapi.v2.Document` encoding kubectl asks
/// for (fields: swagger = 1, info = 2 {title = 1, version = 2}, paths = 8,
/// definitions = 9).
pub fn v2_document(protobuf: bool) -> (&'static str, Vec<u8>) {
    if !protobuf {
        let doc = json!({"swagger": "2.0", "info": {"title": "Kubernetes", "version": "v1.33.0"}, "paths": {}, "definitions": {}});
        return ("application/json", doc.to_string().into_bytes());
    }
    fn field(out: &mut Vec<u8>, number: u8, bytes: &[u8]) {
        out.push((number << 3) | 2);
        // Every field here is shorter than 128 bytes: a one-byte varint length.
        out.push(bytes.len() as u8);
        out.extend_from_slice(bytes);
    }
    let mut info = Vec::new();
    field(&mut info, 1, b"Kubernetes");
    field(&mut info, 2, b"v1.33.0");
    let mut doc = Vec::new();
    field(&mut doc, 1, b"2.0");
    field(&mut doc, 2, &info);
    field(&mut doc, 8, &[]);
    field(&mut doc, 9, &[]);
    (
        "application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
        doc,
    )
}
