//! Discovery, built from the served kinds: `/api` (APIVersions), `/apis`
//! (APIGroupList), `/apis/{group}` (APIGroup), the resource list of a group
//! version, and aggregated discovery (`apidiscovery.k8s.io/v2`).

use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::kinds::{Kinds, ResourceType, Subresource};

/// Whether the client asks for aggregated discovery.
pub fn wants_aggregated(headers: &HeaderMap) -> bool {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // Only v2 exactly: kubectl 1.27 asks for v2beta1, whose shape differs.
    accept.split(',').any(|a| {
        let params: Vec<&str> = a.split(';').map(str::trim).collect();
        params.contains(&"g=apidiscovery.k8s.io")
            && params.contains(&"v=v2")
            && params.contains(&"as=APIGroupDiscoveryList")
    })
}

/// Aggregated discovery (`apidiscovery.k8s.io/v2`): every resource of the
/// core group (`/api`) or of the named groups (`/apis`) in one answer.
pub fn aggregated(kinds: &Kinds, core: bool) -> Response {
    let mut items = Vec::new();
    let groups: Vec<String> = if core {
        vec![String::new()]
    } else {
        groups(kinds).into_iter().map(|(g, _)| g).collect()
    };
    let types = kinds.all();
    for group in groups {
        let mut versions = Vec::new();
        let mut seen = Vec::new();
        for t in types.iter().filter(|t| t.group == group) {
            if seen.contains(&t.version) {
                continue;
            }
            seen.push(t.version.clone());
            let resources: Vec<Value> = types
                .iter()
                .filter(|r| r.group == group && r.version == t.version)
                .map(|r| aggregated_resource(r))
                .collect();
            versions.push(
                json!({"version": t.version, "freshness": "Current", "resources": resources}),
            );
        }
        items.push(json!({"metadata": {"name": group}, "versions": versions}));
    }
    let body = json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items});
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList",
        )],
        body.to_string(),
    )
        .into_response()
}

fn aggregated_resource(r: &ResourceType) -> Value {
    let kind = |k: &str| json!({"group": r.group, "version": r.version, "kind": k});
    let mut subs = Vec::new();
    if r.has(Subresource::Status) {
        subs.push(json!({"subresource": "status", "responseKind": kind(&r.kind), "verbs": ["get", "patch", "update"]}));
    }
    if r.has(Subresource::Scale) {
        subs.push(json!({"subresource": "scale", "responseKind": {"group": "autoscaling", "version": "v1", "kind": "Scale"}, "verbs": ["get", "patch", "update"]}));
    }
    if r.has(Subresource::Binding) {
        subs.push(json!({"subresource": "binding", "responseKind": {"group": "", "version": "v1", "kind": "Binding"}, "verbs": ["create"]}));
    }
    if r.has(Subresource::Token) {
        subs.push(json!({"subresource": "token", "responseKind": {"group": "authentication.k8s.io", "version": "v1", "kind": "TokenRequest"}, "verbs": ["create"]}));
    }
    if r.has(Subresource::Finalize) {
        subs.push(
            json!({"subresource": "finalize", "responseKind": kind(&r.kind), "verbs": ["update"]}),
        );
    }
    let mut v = json!({
        "resource": r.plural,
        "responseKind": kind(&r.kind),
        "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": r.singular,
        "verbs": r.verbs(),
        "subresources": subs,
    });
    if !r.short_names.is_empty() {
        v["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        v["categories"] = json!(r.categories);
    }
    v
}

/// `/api`: the versions of the core group.
pub fn api_versions() -> Value {
    json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}]})
}

/// The named groups with their versions, in the order kinds were added.
fn groups(kinds: &Kinds) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for t in kinds.all().iter().filter(|t| !t.group.is_empty()) {
        match out.iter_mut().find(|(g, _)| *g == t.group) {
            Some((_, vs)) if !vs.contains(&t.version) => vs.push(t.version.clone()),
            Some(_) => {}
            None => out.push((t.group.clone(), vec![t.version.clone()])),
        }
    }
    out
}

fn group_json(group: &str, versions: &[String]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    json!({"name": group, "versions": vs, "preferredVersion": vs[0]})
}

/// `/apis`.
pub fn group_list(kinds: &Kinds) -> Value {
    let groups: Vec<Value> = groups(kinds)
        .iter()
        .map(|(g, vs)| group_json(g, vs))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/{group}`.
pub fn group(kinds: &Kinds, group: &str) -> Result<Value, ApiError> {
    let groups = groups(kinds);
    let (g, vs) = groups
        .iter()
        .find(|(g, _)| *g == group)
        .ok_or(ApiError::NoRoute)?;
    let mut v = group_json(g, vs);
    v["kind"] = json!("APIGroup");
    v["apiVersion"] = json!("v1");
    Ok(v)
}

/// `/api/{version}` and `/apis/{group}/{version}`: the APIResourceList.
pub fn resource_list(kinds: &Kinds, group: &str, version: &str) -> Result<Value, ApiError> {
    let types: Vec<Arc<ResourceType>> = kinds
        .all()
        .into_iter()
        .filter(|t| t.group == group && t.version == version)
        .collect();
    if types.is_empty() {
        return Err(ApiError::NoRoute);
    }
    let resources: Vec<Value> = types
        .iter()
        .map(|t| {
            let mut r = json!({
                "name": t.plural, "singularName": t.singular, "namespaced": t.namespaced, "kind": t.kind,
                "verbs": t.verbs(),
            });
            if !t.short_names.is_empty() {
                r["shortNames"] = json!(t.short_names);
            }
            if !t.categories.is_empty() {
                r["categories"] = json!(t.categories);
            }
            r
        })
        .chain(types.iter().filter(|t| t.has(Subresource::Status)).map(|t| {
            json!({"name": format!("{}/status", t.plural), "singularName": "", "namespaced": t.namespaced, "kind": t.kind, "verbs": ["get", "patch", "update"]})
        }))
        .chain(types.iter().filter(|t| t.has(Subresource::Binding)).map(|t| {
            json!({"name": format!("{}/binding", t.plural), "singularName": "", "namespaced": true, "kind": "Binding", "verbs": ["create"]})
        }))
        .chain(types.iter().filter(|t| t.has(Subresource::Token)).map(|t| {
            json!({"name": format!("{}/token", t.plural), "singularName": "", "namespaced": t.namespaced, "group": "authentication.k8s.io", "version": "v1", "kind": "TokenRequest", "verbs": ["create"]})
        }))
        .chain(types.iter().filter(|t| t.has(Subresource::Finalize)).map(|t| {
            json!({"name": format!("{}/finalize", t.plural), "singularName": "", "namespaced": t.namespaced, "kind": t.kind, "verbs": ["update"]})
        }))
        .chain(types.iter().filter(|t| t.has(Subresource::Scale)).map(|t| {
            json!({"name": format!("{}/scale", t.plural), "singularName": "", "namespaced": t.namespaced, "group": "autoscaling", "version": "v1", "kind": "Scale", "verbs": ["get", "patch", "update"]})
        }))
        .collect();
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Ok(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    )
}
