//! Discovery, built from the served kinds at each request (so a custom
//! resource is listed as soon as it is added to the kind table): `/api`
//! (APIVersions), `/apis` (APIGroupList), `/apis/{group}` (APIGroup), the
//! resource list of a group version, and aggregated discovery
//! (`apidiscovery.k8s.io/v2`). A group's versions are listed most preferred
//! first, in Kubernetes' version order ([`version_order`]).

use std::cmp::Ordering;
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
    let groups = versions_by_group(kinds, core);
    let types = kinds.all();
    for (group, group_versions) in groups {
        // Most preferred first: aggregated discovery has no preferredVersion.
        let versions: Vec<Value> = group_versions
            .iter()
            .map(|version| {
                let resources: Vec<Value> = types
                    .iter()
                    .filter(|r| r.group == group && r.version == *version)
                    .map(|r| aggregated_resource(r))
                    .collect();
                json!({"version": version, "freshness": "Current", "resources": resources})
            })
            .collect();
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
    if r.has(Subresource::Eviction) {
        subs.push(json!({"subresource": "eviction", "responseKind": {"group": "policy", "version": "v1", "kind": "Eviction"}, "verbs": ["create"]}));
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

/// Kubernetes' order of versions, most preferred first: GA before beta
/// before alpha, then the higher major version, then the higher minor one
/// (`v2`, `v1`, `v2beta1`, `v1beta2`, `v1alpha1`); versions not in that
/// form come last, alphabetically.
pub fn version_order(a: &str, b: &str) -> Ordering {
    match (kube_version(a), kube_version(b)) {
        (Some(x), Some(y)) => y.cmp(&x),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => a.cmp(b),
    }
}

/// `v<major>[(alpha|beta)<minor>]` as (stability, major, minor), where a
/// greater tuple is preferred.
fn kube_version(v: &str) -> Option<(u8, u64, u64)> {
    let rest = v.strip_prefix('v')?;
    let digits = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let major: u64 = rest[..digits].parse().ok()?;
    let (stability, minor) = match &rest[digits..] {
        "" => return Some((2, major, 0)),
        s if s.starts_with("beta") => (1, &s[4..]),
        s if s.starts_with("alpha") => (0, &s[5..]),
        _ => return None,
    };
    if minor.is_empty() || !minor.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((stability, major, minor.parse().ok()?))
}

/// The named groups in the order kinds were added, each with its versions
/// most preferred first.
fn groups(kinds: &Kinds) -> Vec<(String, Vec<String>)> {
    versions_by_group(kinds, false)
}

/// The core group (`core`) or the named groups, in the order kinds were
/// added, each with its versions most preferred first.
fn versions_by_group(kinds: &Kinds, core: bool) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for t in kinds.all().iter().filter(|t| t.group.is_empty() == core) {
        match out.iter_mut().find(|(g, _)| *g == t.group) {
            Some((_, vs)) if !vs.contains(&t.version) => vs.push(t.version.clone()),
            Some(_) => {}
            None => out.push((t.group.clone(), vec![t.version.clone()])),
        }
    }
    for (_, vs) in &mut out {
        vs.sort_by(|a, b| version_order(a, b));
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
        .chain(types.iter().filter(|t| t.has(Subresource::Eviction)).map(|t| {
            json!({"name": format!("{}/eviction", t.plural), "singularName": "", "namespaced": t.namespaced, "group": "policy", "version": "v1", "kind": "Eviction", "verbs": ["create"]})
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::Subresource;
    use k8s_openapi::api::core::v1::ConfigMap;

    #[test]
    fn versions_sort_as_kubernetes_prefers_them() {
        let mut vs = [
            "v1alpha1",
            "v1",
            "foo1",
            "v2beta1",
            "v2",
            "v1beta2",
            "foo10",
            "v10",
            "v11beta2",
            "v12alpha1",
            "v1beta",
        ];
        vs.sort_by(|a, b| version_order(a, b));
        assert_eq!(
            vs,
            [
                "v10",
                "v2",
                "v1",
                "v11beta2",
                "v2beta1",
                "v1beta2",
                "v12alpha1",
                "v1alpha1",
                "foo1",
                "foo10",
                "v1beta",
            ]
        );
    }

    /// A custom kind as the CRD controller adds it: names, scope and
    /// subresources from the CRD, no Kubernetes type.
    fn widget(version: &str) -> ResourceType {
        let mut t = ResourceType::of::<ConfigMap>()
            .short_names(&["wd"])
            .categories(&["all", "toys"])
            .subresources(&[Subresource::Status, Subresource::Scale]);
        t.group = "example.com".into();
        t.version = version.into();
        t.kind = "Widget".into();
        t.plural = "widgets".into();
        t.singular = "widget".into();
        t.typed = None;
        t
    }

    #[test]
    fn custom_kinds_are_discovered_with_their_names_and_preferred_version() {
        let kinds = Kinds::builtin();
        kinds.add(widget("v1beta1")).unwrap();
        kinds.add(widget("v1")).unwrap();
        let g = group(&kinds, "example.com").unwrap();
        assert_eq!(g["preferredVersion"]["version"], "v1");
        assert_eq!(g["versions"][1]["groupVersion"], "example.com/v1beta1");
        let listed = group_list(&kinds);
        let last = listed["groups"].as_array().unwrap().last().unwrap();
        assert_eq!(last["name"], "example.com");
        // HorizontalPodAutoscalers: autoscaling/v2 before v1, as in Kubernetes.
        assert_eq!(
            group(&kinds, "autoscaling").unwrap()["preferredVersion"]["version"],
            "v2"
        );

        let list = resource_list(&kinds, "example.com", "v1").unwrap();
        let r = &list["resources"];
        assert_eq!(r[0]["name"], "widgets");
        assert_eq!(r[0]["singularName"], "widget");
        assert_eq!(r[0]["shortNames"], json!(["wd"]));
        assert_eq!(r[0]["categories"], json!(["all", "toys"]));
        assert_eq!(r[0]["verbs"].as_array().unwrap().len(), 8);
        assert_eq!(r[1]["name"], "widgets/status");
        assert_eq!(r[1]["kind"], "Widget");
        assert_eq!(r[2]["name"], "widgets/scale");
        assert_eq!(
            (r[2]["group"].clone(), r[2]["kind"].clone()),
            (json!("autoscaling"), json!("Scale"))
        );
    }

    #[tokio::test]
    async fn aggregated_discovery_lists_custom_kinds_preferred_version_first() {
        let kinds = Kinds::builtin();
        kinds.add(widget("v1alpha1")).unwrap();
        kinds.add(widget("v1")).unwrap();
        let r = aggregated(&kinds, false);
        let body = axum::body::to_bytes(r.into_body(), usize::MAX)
            .await
            .unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        let g = v["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["metadata"]["name"] == "example.com")
            .expect("the group is listed");
        assert_eq!(g["versions"][0]["version"], "v1");
        assert_eq!(g["versions"][1]["version"], "v1alpha1");
        let w = &g["versions"][0]["resources"][0];
        assert_eq!(w["resource"], "widgets");
        assert_eq!(w["singularResource"], "widget");
        assert_eq!(w["shortNames"], json!(["wd"]));
        assert_eq!(w["categories"], json!(["all", "toys"]));
        assert_eq!(w["scope"], "Namespaced");
        let subs: Vec<&Value> = w["subresources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| &s["subresource"])
            .collect();
        assert_eq!(subs, [&json!("status"), &json!("scale")]);
        // Removed with its CRD.
        assert!(kinds.remove("example.com", "v1", "widgets"));
        assert!(kinds.remove("example.com", "v1alpha1", "widgets"));
        assert!(group(&kinds, "example.com").is_err());
    }

    /// `kubectl get all` lists the kinds in category `all`: Kubernetes'
    /// set, less ReplicationControllers, which Keel does not serve.
    #[test]
    fn built_in_kinds_in_category_all_are_kubernetes_ones() {
        let mut all: Vec<String> = Kinds::builtin()
            .all()
            .iter()
            .filter(|t| t.categories.iter().any(|c| c == "all"))
            .map(|t| format!("{}/{}", t.group, t.plural))
            .collect();
        all.sort();
        all.dedup();
        assert_eq!(
            all,
            [
                "/pods",
                "/services",
                "apps/daemonsets",
                "apps/deployments",
                "apps/replicasets",
                "apps/statefulsets",
                "autoscaling/horizontalpodautoscalers",
                "batch/cronjobs",
                "batch/jobs",
            ]
        );
    }
}
