//! Swagger 2.0 (`/openapi/v2`), the form kubectl ≤1.31 reads for `explain`
//! and client-side validation: schemas carried over from the OpenAPI 3.0
//! documents, and per kind one PATCH operation whose group-version-kind
//! and `fieldValidation` parameter tell kubectl that the server validates
//! fields (so it sends `fieldValidation=Strict`).

use serde_json::{Map, Value, json};

/// Where a kind is served, as the paths of a document name it.
pub struct Served<'a> {
    pub group: &'a str,
    pub version: &'a str,
    pub kind: &'a str,
    pub plural: &'a str,
    pub namespaced: bool,
}

impl Served<'_> {
    /// `api/v1` or `apis/<group>/<version>`: the document's path.
    pub fn gv_path(&self) -> String {
        if self.group.is_empty() {
            format!("api/{}", self.version)
        } else {
            format!("apis/{}/{}", self.group, self.version)
        }
    }

    /// The collection's path (in a namespace when the kind is namespaced).
    pub fn collection(&self) -> String {
        if self.namespaced {
            format!(
                "/{}/namespaces/{{namespace}}/{}",
                self.gv_path(),
                self.plural
            )
        } else {
            format!("/{}/{}", self.gv_path(), self.plural)
        }
    }

    /// `{"group", "version", "kind"}`, the value of
    /// `x-kubernetes-group-version-kind` on an operation.
    pub fn gvk(&self) -> Value {
        json!({"group": self.group, "version": self.version, "kind": self.kind})
    }
}

/// A Swagger 2.0 schema from an OpenAPI 3.0 one of a Kubernetes type:
/// references point at `#/definitions/`, and a reference wrapped in `allOf`
/// to carry a description becomes a plain `$ref` (v2 readers ignore `allOf`).
pub fn schema(s: &Value) -> Value {
    match s {
        Value::Object(obj) => {
            let mut out = Map::new();
            for (k, v) in obj {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => {
                        out.insert(k.clone(), json!(definition_ref(r)));
                    }
                    ("allOf", Value::Array(subs))
                        if subs.len() == 1 && subs[0].get("$ref").is_some() =>
                    {
                        out.insert("$ref".into(), schema(&subs[0])["$ref"].clone());
                    }
                    ("nullable", _) => {}
                    // Property names are not keywords (LimitRangeItem has `default`).
                    ("properties", Value::Object(props)) => {
                        let props = props.iter().map(|(n, p)| (n.clone(), schema(p)));
                        out.insert(k.clone(), Value::Object(props.collect()));
                    }
                    // Extensions and literal values are data, not schemas.
                    (k, v) if k.starts_with("x-") || k == "enum" || k == "default" => {
                        out.insert(k.into(), v.clone());
                    }
                    (_, v) => {
                        out.insert(k.clone(), schema(v));
                    }
                }
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(schema).collect()),
        other => other.clone(),
    }
}

/// A `#/components/schemas/` reference as Swagger 2.0 writes it.
pub fn definition_ref(r: &str) -> String {
    r.replace("#/components/schemas/", "#/definitions/")
}

/// The path item of one kind's object, with the PATCH operation kubectl
/// looks for: the kind's group-version-kind and a `fieldValidation` query
/// parameter.
pub fn patch_path(t: &Served<'_>) -> (String, Value) {
    let mut params = vec![];
    if t.namespaced {
        params.push(json!({"name": "namespace", "in": "path", "required": true, "type": "string"}));
    }
    params.push(json!({"name": "name", "in": "path", "required": true, "type": "string"}));
    let query = |n: &str| json!({"name": n, "in": "query", "type": "string", "uniqueItems": true});
    (
        format!("{}/{{name}}", t.collection()),
        json!({
            "parameters": params,
            "patch": {
                "operationId": format!("patch{}", t.kind),
                "consumes": ["application/json-patch+json", "application/merge-patch+json", "application/apply-patch+yaml"],
                "parameters": [query("dryRun"), query("fieldManager"), query("fieldValidation")],
                "x-kubernetes-action": "patch",
                "x-kubernetes-group-version-kind": t.gvk(),
            },
        }),
    )
}

/// The Swagger 2.0 document of `definitions` and `paths`.
pub fn document(definitions: Map<String, Value>, paths: Map<String, Value>) -> Value {
    json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0"},
        "paths": paths,
        "definitions": definitions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v3_references_become_definitions() {
        let v3 = json!({"type": "object", "nullable": true, "properties": {
            "metadata": {"allOf": [{"$ref": "#/components/schemas/M"}], "description": "d"},
            "default": {"type": "string", "default": "x"},
        }});
        assert_eq!(
            schema(&v3),
            json!({"type": "object", "properties": {
                "metadata": {"$ref": "#/definitions/M", "description": "d"},
                "default": {"type": "string", "default": "x"},
            }})
        );
    }

    #[test]
    fn patch_paths_name_the_kind_and_field_validation() {
        let t = Served {
            group: "example.com",
            version: "v1",
            kind: "Widget",
            plural: "widgets",
            namespaced: true,
        };
        let (path, item) = patch_path(&t);
        assert_eq!(
            path,
            "/apis/example.com/v1/namespaces/{namespace}/widgets/{name}"
        );
        assert_eq!(
            item["patch"]["x-kubernetes-group-version-kind"]["kind"],
            "Widget"
        );
        assert!(
            item["patch"]["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "fieldValidation")
        );
    }
}
