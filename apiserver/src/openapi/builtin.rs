//! The documents of the built-in kinds. Their schemas come from the
//! Kubernetes types (`k8s-openapi`'s JSON schemas, generated for OpenAPI 3.0
//! by `schemars`), so `kubectl explain` works; each document also has, per
//! kind, a PATCH operation that accepts `fieldValidation`, which tells
//! kubectl (≥1.27) that the server validates fields itself, so it sends
//! `fieldValidation=Strict` instead of fetching the v2 protobuf schema.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use serde_json::{Value, json};

use super::v2;
use crate::kinds::{Kinds, ResourceType};

pub(super) fn gv_path(t: &ResourceType) -> String {
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

/// The built-in kinds' documents, by group-version path (`api/v1`,
/// `apis/apps/v1`). They never change while the server runs: built once.
pub(super) fn documents() -> &'static BTreeMap<String, Value> {
    static DOCS: OnceLock<BTreeMap<String, Value>> = OnceLock::new();
    DOCS.get_or_init(|| {
        let types = Kinds::builtin().all();
        let mut docs = BTreeMap::new();
        for t in &types {
            let p = gv_path(t);
            if !docs.contains_key(&p)
                && let Some(d) = build_document(&types, &p)
            {
                docs.insert(p, d);
            }
        }
        docs
    })
}

/// The Swagger 2.0 document of the built-in kinds: every schema of
/// [`documents`] under `definitions`, and per kind the PATCH operation
/// kubectl ≤1.31 reads ([`super::v2::patch_path`]).
pub(super) fn swagger() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut definitions = serde_json::Map::new();
        for doc in documents().values() {
            for (name, s) in doc["components"]["schemas"]
                .as_object()
                .into_iter()
                .flatten()
            {
                definitions
                    .entry(name.clone())
                    .or_insert_with(|| v2::schema(s));
            }
        }
        let paths = Kinds::builtin()
            .all()
            .iter()
            .map(|t| {
                v2::patch_path(&v2::Served {
                    group: &t.group,
                    version: &t.version,
                    kind: &t.kind,
                    plural: &t.plural,
                    namespaced: t.namespaced,
                })
            })
            .collect();
        v2::document(definitions, paths)
    })
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
