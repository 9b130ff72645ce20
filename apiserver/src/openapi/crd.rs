//! The OpenAPI parts of one stored CustomResourceDefinition: for each
//! served version, the kind's and its list kind's schemas ([`super::schema`])
//! and the paths of the resource and its subresources, both for the v3
//! document of the version's group-version and for `/openapi/v2`. Only an
//! `Established` CRD is published, as Kubernetes does.

use std::sync::OnceLock;

use k8s_openapi::api::autoscaling::v1::Scale;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{DeleteOptions, ListMeta, ObjectMeta, Status};
use serde_json::{Map, Value, json};

use super::schema::{self, Spec};
use super::v2;

/// One served version of a custom resource, as the documents publish it.
#[derive(Debug, Default)]
pub struct CrVersion {
    /// `apis/<group>/<version>`: the v3 document it belongs in.
    pub gv_path: String,
    /// Its kind and list kind, and the schemas they and the paths refer to.
    pub v3_schemas: Map<String, Value>,
    pub v3_paths: Map<String, Value>,
    /// The same for Swagger 2.0.
    pub v2_definitions: Map<String, Value>,
    pub v2_paths: Map<String, Value>,
}

/// Whether the CRD's status has condition `Established` with status `True`.
pub fn established(crd: &Value) -> bool {
    crd.pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Established" && c["status"] == "True")
}

/// The name of a custom kind's schema: the group reversed, then version and
/// kind (`stable.example.com`, `v1`, `CronTab`: `com.example.stable.v1.CronTab`).
pub fn schema_name(group: &str, version: &str, kind: &str) -> String {
    let reversed: Vec<&str> = group.split('.').rev().collect();
    format!("{}.{version}.{kind}", reversed.join("."))
}

/// ObjectMeta, ListMeta, Status, DeleteOptions and autoscaling/v1 Scale
/// with everything they refer to (OpenAPI 3.0, from the Kubernetes types):
/// what every custom resource's document refers to.
fn shared() -> &'static Map<String, Value> {
    static SHARED: OnceLock<Map<String, Value>> = OnceLock::new();
    SHARED.get_or_init(|| {
        let mut g = schemars::generate::SchemaSettings::openapi3().into_generator();
        g.subschema_for::<ObjectMeta>();
        g.subschema_for::<ListMeta>();
        g.subschema_for::<Status>();
        g.subschema_for::<DeleteOptions>();
        g.subschema_for::<Scale>();
        g.take_definitions(true).into_iter().collect()
    })
}

const STATUS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
const SCALE: &str = "io.k8s.api.autoscaling.v1.Scale";

/// Each served version of an established `crd`; nothing for one that is
/// not established or lacks its names.
pub fn versions(crd: &Value) -> Vec<CrVersion> {
    if !established(crd) {
        return vec![];
    }
    let spec = &crd["spec"];
    let text = |p: &str| spec.pointer(p).and_then(Value::as_str).unwrap_or("");
    let (group, kind, plural) = (text("/group"), text("/names/kind"), text("/names/plural"));
    if group.is_empty() || kind.is_empty() || plural.is_empty() {
        return vec![];
    }
    let list_kind = match text("/names/listKind") {
        "" => format!("{kind}List"),
        l => l.to_string(),
    };
    let namespaced = text("/scope") != "Cluster";
    let preserve = spec["preserveUnknownFields"] == json!(true);
    spec["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["served"] == json!(true))
        .filter_map(|v| {
            let version = v["name"].as_str().filter(|n| !n.is_empty())?;
            let served = v2::Served {
                group,
                version,
                kind,
                plural,
                namespaced,
            };
            Some(version_parts(&served, &list_kind, v, preserve))
        })
        .collect()
}

fn version_parts(t: &v2::Served<'_>, list_kind: &str, v: &Value, preserve: bool) -> CrVersion {
    // A schema that is not structural is published as a bare object.
    let schema = v
        .pointer("/schema/openAPIV3Schema")
        .filter(|s| crate::structural::Structural::new(s, "openAPIV3Schema").is_ok());
    let kind_name = schema_name(t.group, t.version, t.kind);
    let list_name = schema_name(t.group, t.version, list_kind);
    let list_gvk = json!({"group": t.group, "version": t.version, "kind": list_kind});
    let mut out = CrVersion {
        gv_path: t.gv_path(),
        ..CrVersion::default()
    };
    for (name, s) in shared() {
        out.v3_schemas.insert(name.clone(), s.clone());
        out.v2_definitions.insert(name.clone(), v2::schema(s));
    }
    for spec in [Spec::V3, Spec::V2] {
        let kind_schema = schema::kind(schema, preserve, spec, t.gvk());
        let list_schema = schema::list(
            &kind_name,
            list_kind,
            t.kind,
            t.plural,
            spec,
            list_gvk.clone(),
        );
        let defs = match spec {
            Spec::V3 => &mut out.v3_schemas,
            Spec::V2 => &mut out.v2_definitions,
        };
        defs.insert(kind_name.clone(), kind_schema);
        defs.insert(list_name.clone(), list_schema);
    }
    let subresources = &v["subresources"];
    out.v3_paths = v3_paths(
        t,
        &kind_name,
        &list_name,
        subresources.get("status").is_some_and(Value::is_object),
        subresources.get("scale").is_some_and(Value::is_object),
    );
    let (path, item) = v2::patch_path(t);
    out.v2_paths.insert(path, item);
    out
}

/// The OpenAPI 3.0 paths of a custom resource: its collection (and, when
/// namespaced, the list across namespaces), its objects, and the status and
/// scale subresources it has. Every operation names the kind; writes take
/// `fieldValidation`, which is how kubectl learns that the server validates
/// fields.
fn v3_paths(
    t: &v2::Served<'_>,
    kind: &str,
    list: &str,
    status: bool,
    scale: bool,
) -> Map<String, Value> {
    let schema_ref = |n: &str| json!({"$ref": format!("#/components/schemas/{n}")});
    let scope = if t.namespaced { "Namespaced" } else { "" };
    let op = |verb: &str, action: &str, sub: &str, response: &str, query: &[&str]| {
        let params: Vec<Value> = query
            .iter()
            .map(|n| json!({"name": n, "in": "query", "schema": {"type": "string", "uniqueItems": true}}))
            .collect();
        let sub_title = sub
            .get(..1)
            .map(|f| format!("{}{}", f.to_uppercase(), &sub[1..]))
            .unwrap_or_default();
        let mut o = json!({
            "operationId": format!("{verb}{scope}{}{sub_title}", t.kind),
            "x-kubernetes-action": action,
            "x-kubernetes-group-version-kind": t.gvk(),
            "parameters": params,
            "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": schema_ref(response)}}}},
        });
        let body = match action {
            "patch" => Some(json!({
                "application/json-patch+json": {"schema": {"type": "object"}},
                "application/merge-patch+json": {"schema": {"type": "object"}},
                "application/apply-patch+yaml": {"schema": {"type": "object"}},
            })),
            "put" | "post" => Some(json!({"application/json": {"schema": schema_ref(response)}})),
            _ => None,
        };
        if let Some(content) = body {
            o["requestBody"] = json!({"content": content});
        }
        o
    };
    let path_param =
        |n: &str| json!({"name": n, "in": "path", "required": true, "schema": {"type": "string"}});
    let mut scoped = vec![];
    if t.namespaced {
        scoped.push(path_param("namespace"));
    }
    let mut named = scoped.clone();
    named.push(path_param("name"));
    let list_query: &[&str] = &[
        "labelSelector",
        "fieldSelector",
        "limit",
        "continue",
        "resourceVersion",
        "watch",
    ];
    let write_query: &[&str] = &["dryRun", "fieldManager", "fieldValidation"];
    let patch_query: &[&str] = &["dryRun", "fieldManager", "fieldValidation", "force"];
    let delete_query: &[&str] = &["dryRun", "gracePeriodSeconds", "propagationPolicy"];
    let collection = t.collection();
    let mut paths = Map::new();
    if t.namespaced {
        let mut across = op("list", "list", "", list, list_query);
        across["operationId"] = json!(format!("list{}ForAllNamespaces", t.kind));
        paths.insert(
            format!("/{}/{}", t.gv_path(), t.plural),
            json!({"get": across}),
        );
    }
    paths.insert(
        collection.clone(),
        json!({
            "parameters": scoped,
            "get": op("list", "list", "", list, list_query),
            "post": op("create", "post", "", kind, write_query),
            "delete": op("deletecollection", "deletecollection", "", STATUS, delete_query),
        }),
    );
    paths.insert(
        format!("{collection}/{{name}}"),
        json!({
            "parameters": named,
            "get": op("read", "get", "", kind, &[]),
            "put": op("replace", "put", "", kind, write_query),
            "patch": op("patch", "patch", "", kind, patch_query),
            "delete": op("delete", "delete", "", STATUS, delete_query),
        }),
    );
    for (sub, present, response) in [("status", status, kind), ("scale", scale, SCALE)] {
        if present {
            paths.insert(
                format!("{collection}/{{name}}/{sub}"),
                json!({
                    "parameters": named,
                    "get": op("read", "get", sub, response, &[]),
                    "put": op("replace", "put", sub, response, write_query),
                    "patch": op("patch", "patch", sub, response, patch_query),
                }),
            );
        }
    }
    paths
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd() -> Value {
        json!({
            "metadata": {"name": "widgets.example.com"},
            "spec": {
                "group": "example.com", "scope": "Namespaced",
                "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
                "versions": [
                    {"name": "v1", "served": true, "storage": true,
                     "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas"}},
                     "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                        "spec": {"type": "object", "description": "The wanted widget.",
                                 "properties": {"replicas": {"type": "integer"}}}}}}},
                    {"name": "v1beta1", "served": false, "storage": false,
                     "schema": {"openAPIV3Schema": {"type": "object"}}},
                ],
            },
            "status": {"conditions": [{"type": "Established", "status": "True"}]},
        })
    }

    /// Every `$ref` in `v` names a schema of `schemas`.
    fn dangling(v: &Value, prefix: &str, schemas: &Map<String, Value>) -> Vec<String> {
        let mut out = vec![];
        match v {
            Value::Object(o) => {
                for (k, x) in o {
                    match (k.as_str(), x) {
                        ("$ref", Value::String(r)) => {
                            let name = r.strip_prefix(prefix).unwrap_or(r);
                            if !schemas.contains_key(name) {
                                out.push(r.clone());
                            }
                        }
                        _ => out.extend(dangling(x, prefix, schemas)),
                    }
                }
            }
            Value::Array(a) => a
                .iter()
                .for_each(|x| out.extend(dangling(x, prefix, schemas))),
            _ => {}
        }
        out
    }

    #[test]
    fn served_versions_of_established_crds_are_published() {
        let vs = versions(&crd());
        assert_eq!(vs.len(), 1, "v1beta1 is not served");
        let v = &vs[0];
        assert_eq!(v.gv_path, "apis/example.com/v1");
        let kind = &v.v3_schemas["com.example.v1.Widget"];
        assert_eq!(
            kind["x-kubernetes-group-version-kind"],
            json!([{"group": "example.com", "version": "v1", "kind": "Widget"}])
        );
        assert_eq!(
            kind["properties"]["spec"]["description"],
            "The wanted widget."
        );
        assert_eq!(
            v.v3_schemas["com.example.v1.WidgetList"]["x-kubernetes-group-version-kind"][0]["kind"],
            "WidgetList"
        );
        for name in [schema::OBJECT_META, schema::LIST_META, STATUS, SCALE] {
            assert!(v.v3_schemas.contains_key(name), "{name}");
            assert!(v.v2_definitions.contains_key(name), "{name}");
        }
        let item = "/apis/example.com/v1/namespaces/{namespace}/widgets/{name}";
        let patch = &v.v3_paths[item]["patch"];
        assert!(
            patch["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "fieldValidation" && p["in"] == "query")
        );
        assert_eq!(patch["x-kubernetes-group-version-kind"]["kind"], "Widget");
        assert_eq!(
            v.v3_paths[&format!("{item}/scale")]["get"]["responses"]["200"]["content"]["application/json"]
                ["schema"]["$ref"],
            format!("#/components/schemas/{SCALE}")
        );
        assert!(v.v3_paths.contains_key(&format!("{item}/status")));
        assert_eq!(
            v.v3_paths["/apis/example.com/v1/widgets"]["get"]["operationId"],
            "listWidgetForAllNamespaces"
        );
        assert!(v.v2_paths.contains_key(item));
        let v3 = json!({"paths": v.v3_paths, "components": {"schemas": v.v3_schemas}});
        assert_eq!(
            dangling(&v3, "#/components/schemas/", &v.v3_schemas),
            Vec::<String>::new()
        );
        let v2 = json!({"paths": v.v2_paths, "definitions": v.v2_definitions});
        assert_eq!(
            dangling(&v2, "#/definitions/", &v.v2_definitions),
            Vec::<String>::new()
        );
    }

    #[test]
    fn crds_not_established_are_not_published() {
        let mut c = crd();
        c["status"]["conditions"][0]["status"] = json!("False");
        assert!(versions(&c).is_empty());
        c["status"] = json!({});
        assert!(versions(&c).is_empty());
    }

    #[test]
    fn schema_names_reverse_the_group() {
        assert_eq!(
            schema_name("stable.example.com", "v1", "CronTab"),
            "com.example.stable.v1.CronTab"
        );
    }
}
