//! OpenAPI v3 discovery: `/openapi/v3` lists one document per group-version,
//! and each document describes the served kinds with their
//! `x-kubernetes-group-version-kind` and a PATCH operation that accepts
//! `fieldValidation`, which tells kubectl (≥1.27) that the server validates
//! fields itself, so it sends `fieldValidation=Strict` instead of fetching
//! the v2 protobuf schema.
//!
//! Schemas come from the Kubernetes types (`k8s-openapi`'s JSON schemas,
//! generated for OpenAPI 3.0 by `schemars`), so `kubectl explain` works.
//! `/openapi/v2` carries the same schemas as Swagger 2.0 for kubectl ≤1.31.

use serde_json::{Value, json};

use std::sync::Arc;

use crate::kinds::{Kinds, ResourceType};

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
        t.group.split('.').next().unwrap_or(&t.group).to_string()
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
        let types = Kinds::builtin().all();
        let mut docs = std::collections::BTreeMap::new();
        for t in &types {
            let p = gv_path(t);
            if !docs.contains_key(&p)
                && let Some(d) = build_document(&types, &p)
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
fn build_document(types: &[Arc<ResourceType>], gv: &str) -> Option<Value> {
    let kinds: Vec<&Arc<ResourceType>> = types.iter().filter(|t| gv_path(t) == gv).collect();
    if kinds.is_empty() {
        return None;
    }
    let mut paths = serde_json::Map::new();
    let mut schemas = serde_json::Map::new();
    let mut generator = schemars::generate::SchemaSettings::openapi3().into_generator();
    let mut named: Vec<(String, Value)> = Vec::new();
    for t in kinds {
        let gvk = json!({"group": t.group, "version": t.version, "kind": t.kind});
        let name = match t.typed {
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
        if t.typed.is_some() {
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

/// A Swagger 2.0 schema from an OpenAPI 3.0 one: references point at
/// `#/definitions/`, and a reference wrapped in `allOf` to carry a
/// description becomes a plain `$ref` (v2 readers ignore `allOf`).
fn v2_schema(s: &Value) -> Value {
    match s {
        Value::Object(obj) => {
            let mut out = serde_json::Map::new();
            for (k, v) in obj {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => {
                        out.insert(
                            k.clone(),
                            json!(r.replace("#/components/schemas/", "#/definitions/")),
                        );
                    }
                    ("allOf", Value::Array(subs))
                        if subs.len() == 1 && subs[0].get("$ref").is_some() =>
                    {
                        out.insert("$ref".into(), v2_schema(&subs[0])["$ref"].clone());
                    }
                    ("nullable", _) => {}
                    // Property names are not keywords (LimitRangeItem has `default`).
                    ("properties", Value::Object(props)) => {
                        let props = props.iter().map(|(n, p)| (n.clone(), v2_schema(p)));
                        out.insert(k.clone(), Value::Object(props.collect()));
                    }
                    // Extensions and literal values are data, not schemas.
                    (k, v) if k.starts_with("x-") || k == "enum" || k == "default" => {
                        out.insert(k.into(), v.clone());
                    }
                    (_, v) => {
                        out.insert(k.clone(), v2_schema(v));
                    }
                }
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(v2_schema).collect()),
        other => other.clone(),
    }
}

/// The Swagger 2.0 document: every served schema under `definitions`, and
/// per kind a PATCH operation with the kind's group-version-kind and a
/// `fieldValidation` query parameter, from which kubectl ≤1.31 learns that
/// the server validates fields (so it sends `fieldValidation=Strict`) and
/// `kubectl explain` finds the kind's schema.
fn v2_json() -> Value {
    let mut definitions = serde_json::Map::new();
    for doc in cached().1.values() {
        for (name, s) in doc["components"]["schemas"]
            .as_object()
            .into_iter()
            .flatten()
        {
            definitions
                .entry(name.clone())
                .or_insert_with(|| v2_schema(s));
        }
    }
    let mut paths = serde_json::Map::new();
    for t in Kinds::builtin().all() {
        let gv = gv_path(&t);
        let (item, mut params) = if t.namespaced {
            (
                format!("/{gv}/namespaces/{{namespace}}/{}/{{name}}", t.plural),
                vec![
                    json!({"name": "namespace", "in": "path", "required": true, "type": "string"}),
                ],
            )
        } else {
            (format!("/{gv}/{}/{{name}}", t.plural), vec![])
        };
        params.push(json!({"name": "name", "in": "path", "required": true, "type": "string"}));
        let query =
            |n: &str| json!({"name": n, "in": "query", "type": "string", "uniqueItems": true});
        paths.insert(
            item,
            json!({
                "parameters": params,
                "patch": {
                    "operationId": format!("patch{}", t.kind),
                    "consumes": ["application/json-patch+json", "application/merge-patch+json"],
                    "parameters": [query("dryRun"), query("fieldManager"), query("fieldValidation")],
                    "x-kubernetes-action": "patch",
                    "x-kubernetes-group-version-kind": {"group": t.group, "version": t.version, "kind": t.kind},
                },
            }),
        );
    }
    json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0"},
        "paths": paths,
        "definitions": definitions,
    })
}

/// `/openapi/v2`, as JSON or (`protobuf`) as the gnostic `openapi.v2.Document`
/// kubectl ≤1.31 asks for, with the Content-Type each is served with.
pub fn v2_document(protobuf: bool) -> (&'static str, &'static [u8]) {
    static DOCS: std::sync::OnceLock<(Vec<u8>, Vec<u8>)> = std::sync::OnceLock::new();
    let (json, pb) = DOCS.get_or_init(|| {
        let doc = v2_json();
        (doc.to_string().into_bytes(), crate::gnostic::encode(&doc))
    });
    if protobuf {
        // Go's mime parser refuses the `@` form kubectl puts in its Accept header.
        (
            "application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
            pb,
        )
    } else {
        ("application/json", json)
    }
}
