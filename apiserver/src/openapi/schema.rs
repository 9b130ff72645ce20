//! A custom resource version's published schemas, built from its CRD's
//! `schema.openAPIV3Schema` as Kubernetes publishes them: only the keywords
//! of a structural schema, `x-kubernetes-int-or-string` unfolded into
//! `anyOf` (integer or string), `apiVersion`, `kind` and a `metadata`
//! reference to ObjectMeta at the root and in embedded resources, and the
//! kind's `x-kubernetes-group-version-kind`. For Swagger 2.0 ([`Spec::V2`])
//! the v3-only keywords are dropped as Kubernetes drops them, so that
//! kubectl ≤1.31, which refuses the whole document when one schema does not
//! parse, can read every definition.

use serde_json::{Map, Value, json};

pub const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
pub const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";

const API_VERSION_DOC: &str = "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources";
const KIND_DOC: &str = "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds";
const METADATA_DOC: &str = "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";
const LIST_METADATA_DOC: &str = "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds";

/// Which OpenAPI a schema is written for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spec {
    /// OpenAPI 3.0 (`/openapi/v3`): references under `#/components/schemas/`.
    V3,
    /// Swagger 2.0 (`/openapi/v2`): references under `#/definitions/`.
    V2,
}

/// Keywords whose values are data (or plain numbers and flags), kept as they are.
const LITERALS: &[&str] = &[
    "type",
    "format",
    "title",
    "description",
    "default",
    "nullable",
    "maximum",
    "exclusiveMaximum",
    "minimum",
    "exclusiveMinimum",
    "maxLength",
    "minLength",
    "pattern",
    "maxItems",
    "minItems",
    "uniqueItems",
    "multipleOf",
    "enum",
    "maxProperties",
    "minProperties",
    "required",
];

/// The types kubectl's OpenAPI readers know.
const TYPES: &[&str] = &["object", "array", "string", "number", "integer", "boolean"];

/// A reference to the named schema, with `description` beside it: in
/// OpenAPI 3.0 wrapped in `allOf` (a `$ref` has no siblings there).
pub fn reference(name: &str, description: &str, spec: Spec) -> Value {
    match spec {
        Spec::V3 => json!({
            "allOf": [{"$ref": format!("#/components/schemas/{name}")}],
            "description": description,
        }),
        Spec::V2 => json!({"$ref": format!("#/definitions/{name}"), "description": description}),
    }
}

fn flag(s: &Map<String, Value>, key: &str) -> bool {
    s.get(key) == Some(&Value::Bool(true))
}

/// The schema of a kind: `schema` (a version's `openAPIV3Schema`, `None`
/// when it has none or is not structural) as published, with the kind's
/// group-version-kind. As in Kubernetes, a schema without structure, or
/// one that keeps unknown fields at its root (`preserve_root`: also the
/// CRD's `spec.preserveUnknownFields`) in Swagger 2.0, is published as a
/// bare object: kubectl ≤1.31 would otherwise refuse every field it does
/// not list.
pub fn kind(schema: Option<&Value>, preserve_root: bool, spec: Spec, gvk: Value) -> Value {
    let bare = match schema {
        None => true,
        Some(s) => {
            spec == Spec::V2
                && (preserve_root
                    || s.as_object()
                        .is_some_and(|o| flag(o, "x-kubernetes-preserve-unknown-fields")))
        }
    };
    let mut out = match schema {
        Some(s) if !bare => {
            let mut s = unfold(&sanitize(s));
            if spec == Spec::V2 {
                s = to_v2(&s);
            }
            object_meta(&mut s, spec);
            type_meta(&mut s);
            embed(&mut s, spec);
            s
        }
        _ => json!({"type": "object"}),
    };
    out["x-kubernetes-group-version-kind"] = json!([gvk]);
    out
}

/// The schema of a kind's list (`listKind`), whose items are `kind_name`.
pub fn list(
    kind_name: &str,
    list_kind: &str,
    kind: &str,
    plural: &str,
    spec: Spec,
    gvk: Value,
) -> Value {
    let item = match spec {
        Spec::V3 => json!({"$ref": format!("#/components/schemas/{kind_name}")}),
        Spec::V2 => json!({"$ref": format!("#/definitions/{kind_name}")}),
    };
    let mut s = json!({
        "description": format!("{list_kind} is a list of {kind}"),
        "type": "object",
        "required": ["items"],
        "properties": {
            "items": {
                "type": "array",
                "items": item,
                "description": format!("List of {plural}. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md"),
            },
            "metadata": reference(LIST_META, LIST_METADATA_DOC, spec),
        },
        "x-kubernetes-group-version-kind": [gvk],
    });
    type_meta(&mut s);
    s
}

/// The properties of `s` (an object schema), created when it has none.
fn properties(s: &mut Value) -> Option<&mut Map<String, Value>> {
    s.as_object_mut()?
        .entry("properties")
        .or_insert_with(|| json!({}))
        .as_object_mut()
}

/// `apiVersion` and `kind` as properties of `s`.
fn type_meta(s: &mut Value) {
    if let Some(props) = properties(s) {
        props.insert(
            "apiVersion".into(),
            json!({"type": "string", "description": API_VERSION_DOC}),
        );
        props.insert(
            "kind".into(),
            json!({"type": "string", "description": KIND_DOC}),
        );
    }
}

/// `metadata`, a reference to ObjectMeta, as a property of `s`.
fn object_meta(s: &mut Value, spec: Spec) {
    if let Some(props) = properties(s) {
        props.insert(
            "metadata".into(),
            reference(OBJECT_META, METADATA_DOC, spec),
        );
    }
}

/// Only the keywords of a structural schema, at every level: references,
/// `patternProperties`, `definitions`, `example` and the like are dropped
/// (a dangling `$ref` would break kubectl's reading of the document), and a
/// subschema that is not an object goes.
pub fn sanitize(s: &Value) -> Value {
    let Some(obj) = s.as_object() else {
        return json!({});
    };
    let mut out = Map::new();
    for (k, v) in obj {
        let kept = match (k.as_str(), v) {
            ("properties", Value::Object(props)) => Some(Value::Object(
                props
                    .iter()
                    .map(|(n, p)| (n.clone(), sanitize(p)))
                    .collect(),
            )),
            ("items" | "not", Value::Object(_)) => Some(sanitize(v)),
            ("additionalProperties", Value::Bool(_)) => Some(v.clone()),
            ("additionalProperties", Value::Object(_)) => Some(sanitize(v)),
            ("allOf" | "anyOf" | "oneOf", Value::Array(subs)) => {
                Some(Value::Array(subs.iter().map(sanitize).collect()))
            }
            (k, v) if LITERALS.contains(&k) || k.starts_with("x-kubernetes-") => Some(v.clone()),
            _ => None,
        };
        if let Some(v) = kept {
            out.insert(k.clone(), v);
        }
    }
    Value::Object(out)
}

/// Subschemas that describe values (not value validations): properties,
/// items and additionalProperties.
fn for_each_child(obj: &mut Map<String, Value>, mut f: impl FnMut(&mut Value)) {
    if let Some(Value::Object(props)) = obj.get_mut("properties") {
        props.values_mut().for_each(&mut f);
    }
    for k in ["items", "additionalProperties"] {
        if let Some(sub @ Value::Object(_)) = obj.get_mut(k) {
            f(sub);
        }
    }
}

fn int_or_string() -> Value {
    json!([{"type": "integer"}, {"type": "string"}])
}

/// `x-kubernetes-int-or-string` spelled out as `anyOf` integer or string
/// (Kubernetes' `Unfold`), unless the schema already says so.
pub fn unfold(s: &Value) -> Value {
    let mut s = s.clone();
    unfold_in(&mut s);
    s
}

fn unfold_in(s: &mut Value) {
    let Some(obj) = s.as_object_mut() else {
        return;
    };
    if flag(obj, "x-kubernetes-int-or-string") {
        let pattern = int_or_string();
        let spelled = obj.get("anyOf") == Some(&pattern)
            || obj
                .get("allOf")
                .and_then(|a| a.get(0))
                .and_then(|a| a.get("anyOf"))
                == Some(&pattern);
        if !spelled {
            if obj.contains_key("anyOf") {
                let mut all = vec![json!({"anyOf": pattern})];
                if let Some(Value::Array(rest)) = obj.remove("allOf") {
                    all.extend(rest);
                }
                obj.insert("allOf".into(), Value::Array(all));
            } else {
                obj.insert("anyOf".into(), pattern);
            }
        }
    }
    for_each_child(obj, unfold_in);
}

/// The Swagger 2.0 form of a sanitized, unfolded schema, as Kubernetes
/// converts it (`ToStructuralOpenAPIV2`) with its defaults pruned: no value
/// junctors (`allOf`, `anyOf`, `oneOf`, `not`); a nullable value, or one
/// that keeps unknown fields, loses its properties and items (and its type
/// where kubectl would then refuse it); nullable fields are not required;
/// an array without items, or a type kubectl does not know, loses its type.
pub fn to_v2(s: &Value) -> Value {
    let Some(obj) = s.as_object() else {
        return s.clone();
    };
    let mut o = obj.clone();
    for k in ["allOf", "anyOf", "oneOf", "not", "default"] {
        o.remove(k);
    }
    let nullable =
        |v: Option<&Value>| v.and_then(|v| v.get("nullable")) == Some(&Value::Bool(true));
    let nullable_fields: Vec<String> = match o.get("properties") {
        Some(Value::Object(props)) => props
            .iter()
            .filter(|(_, p)| nullable(Some(p)))
            .map(|(n, _)| n.clone())
            .collect(),
        _ => vec![],
    };
    if nullable(o.get("additionalProperties")) {
        o.remove("required");
    }
    if let Some(Value::Array(req)) = o.get_mut("required") {
        req.retain(|r| {
            !r.as_str()
                .is_some_and(|r| nullable_fields.iter().any(|n| n == r))
        });
        if req.is_empty() {
            o.remove("required");
        }
    }
    if o.remove("nullable") == Some(Value::Bool(true)) {
        for k in ["type", "items", "properties"] {
            o.remove(k);
        }
    }
    if flag(&o, "x-kubernetes-preserve-unknown-fields") {
        o.remove("items");
        o.remove("properties");
        if o.get("type").and_then(Value::as_str) == Some("object") {
            o.remove("type");
        }
    }
    if flag(&o, "x-kubernetes-int-or-string") {
        o.remove("type");
    }
    let known_type = match o.get("type") {
        Some(Value::String(t)) => TYPES.contains(&t.as_str()),
        _ => false,
    };
    let itemless_array = o.get("type").and_then(Value::as_str) == Some("array")
        && !o.get("items").is_some_and(Value::is_object);
    if !known_type || itemless_array {
        o.remove("type");
    }
    for_each_child(&mut o, |c| *c = to_v2(c));
    Value::Object(o)
}

/// The properties of an embedded resource (`x-kubernetes-embedded-resource`):
/// `apiVersion`, `kind` (both required) and `metadata`, at every level, as
/// Kubernetes adds them; not in Swagger 2.0 where unknown fields are kept,
/// since kubectl would then refuse the fields it is not told about.
fn embed(s: &mut Value, spec: Spec) {
    let Some(obj) = s.as_object_mut() else {
        return;
    };
    for_each_child(obj, |c| embed(c, spec));
    if spec == Spec::V2 && flag(obj, "x-kubernetes-preserve-unknown-fields") {
        return;
    }
    if !flag(obj, "x-kubernetes-embedded-resource") {
        return;
    }
    type_meta(s);
    object_meta(s, spec);
    let Some(obj) = s.as_object_mut() else {
        return;
    };
    let required = obj
        .entry("required")
        .or_insert_with(|| json!([]))
        .as_array_mut();
    if let Some(req) = required {
        for f in ["kind", "apiVersion"] {
            if !req.iter().any(|r| r == f) {
                req.push(json!(f));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gvk() -> Value {
        json!({"group": "example.com", "version": "v1", "kind": "Widget"})
    }

    fn widget() -> Value {
        json!({
            "type": "object",
            "description": "A widget.",
            "properties": {
                "metadata": {"type": "object"},
                "spec": {
                    "type": "object",
                    "description": "What the widget should be.",
                    "required": ["size", "note"],
                    "example": {"size": 1},
                    "properties": {
                        "size": {"type": "integer", "minimum": 1, "default": 3, "description": "How big."},
                        "note": {"type": "string", "nullable": true},
                        "port": {"x-kubernetes-int-or-string": true},
                        "tags": {"type": "array", "items": {"type": "string"}},
                        "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true,
                                  "properties": {"a": {"type": "string"}}},
                        "template": {"type": "object", "x-kubernetes-embedded-resource": true,
                                     "x-kubernetes-preserve-unknown-fields": true},
                        "choice": {"type": "string", "anyOf": [{"enum": ["a"]}, {"enum": ["b"]}]},
                        "ref": {"$ref": "#/definitions/Nowhere"},
                    },
                },
            },
        })
    }

    #[test]
    fn v3_schemas_keep_structure_and_add_type_meta() {
        let s = kind(Some(&widget()), false, Spec::V3, gvk());
        assert_eq!(s["x-kubernetes-group-version-kind"], json!([gvk()]));
        assert_eq!(s["description"], "A widget.");
        assert_eq!(
            s["properties"]["metadata"]["allOf"][0]["$ref"],
            format!("#/components/schemas/{OBJECT_META}")
        );
        assert_eq!(s["properties"]["kind"]["type"], "string");
        let spec = &s["properties"]["spec"];
        assert_eq!(spec["properties"]["size"]["default"], 3);
        assert_eq!(spec["properties"]["note"]["nullable"], true);
        assert_eq!(spec["properties"]["port"]["anyOf"], int_or_string());
        assert_eq!(spec["properties"]["choice"]["anyOf"][1]["enum"][0], "b");
        // What structural schemas cannot say is not published.
        assert!(spec.get("example").is_none());
        assert_eq!(spec["properties"]["ref"], json!({}));
        // An embedded resource is an object with type and object meta.
        let template = &spec["properties"]["template"];
        assert_eq!(
            template["properties"]["metadata"]["allOf"][0]["$ref"],
            format!("#/components/schemas/{OBJECT_META}")
        );
        assert_eq!(template["required"], json!(["kind", "apiVersion"]));
    }

    #[test]
    fn v2_schemas_drop_what_swagger_and_kubectl_cannot_read() {
        let s = kind(Some(&widget()), false, Spec::V2, gvk());
        assert_eq!(
            s["properties"]["metadata"]["$ref"],
            format!("#/definitions/{OBJECT_META}")
        );
        let spec = &s["properties"]["spec"];
        let size = &spec["properties"]["size"];
        assert_eq!(
            (size.get("default"), size["minimum"].clone()),
            (None, json!(1)),
            "{size}"
        );
        // Nullable: untyped, and no longer required.
        assert_eq!(spec["properties"]["note"], json!({}));
        assert_eq!(spec["required"], json!(["size"]));
        // int-or-string is untyped and without its anyOf.
        assert_eq!(
            spec["properties"]["port"],
            json!({"x-kubernetes-int-or-string": true})
        );
        assert!(spec["properties"]["choice"].get("anyOf").is_none());
        assert_eq!(spec["properties"]["tags"]["items"]["type"], "string");
        // Unknown fields kept: no properties, and no object type.
        assert_eq!(
            spec["properties"]["extra"],
            json!({"x-kubernetes-preserve-unknown-fields": true})
        );
        // ... and no embedded metadata either.
        assert!(spec["properties"]["template"].get("properties").is_none());
    }

    #[test]
    fn v2_conversion_drops_itemless_arrays_and_unknown_types() {
        let s = to_v2(&json!({"type": "object", "properties": {
            "a": {"type": "array", "nullable": true, "items": {"type": "string"}},
            "b": {"type": "array", "x-kubernetes-preserve-unknown-fields": true, "items": {"type": "string"}},
            "c": {"type": "null"},
            "d": {"type": "object", "additionalProperties": {"type": "string", "nullable": true}, "required": ["x"]},
        }}));
        assert_eq!(s["properties"]["a"], json!({}));
        assert_eq!(
            s["properties"]["b"],
            json!({"x-kubernetes-preserve-unknown-fields": true})
        );
        assert_eq!(s["properties"]["c"], json!({}));
        assert_eq!(
            s["properties"]["d"],
            json!({"type": "object", "additionalProperties": {}})
        );
    }

    #[test]
    fn unknown_fields_at_the_root_publish_a_bare_object_in_v2() {
        let s = json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true,
                       "properties": {"spec": {"type": "object"}}});
        let v2 = kind(Some(&s), false, Spec::V2, gvk());
        assert_eq!(
            v2,
            json!({"type": "object", "x-kubernetes-group-version-kind": [gvk()]})
        );
        let v3 = kind(Some(&s), false, Spec::V3, gvk());
        assert!(v3["properties"]["spec"].is_object());
        let from_crd = kind(Some(&widget()), true, Spec::V2, gvk());
        assert!(from_crd.get("properties").is_none());
        assert_eq!(
            kind(None, false, Spec::V3, gvk()),
            json!({"type": "object", "x-kubernetes-group-version-kind": [gvk()]})
        );
    }

    #[test]
    fn int_or_string_is_unfolded_once() {
        let spelled = json!({"x-kubernetes-int-or-string": true, "anyOf": int_or_string()});
        assert_eq!(unfold(&spelled), spelled);
        let other = json!({"x-kubernetes-int-or-string": true, "anyOf": [{"maximum": 3}]});
        let u = unfold(&other);
        assert_eq!(u["allOf"], json!([{"anyOf": int_or_string()}]));
        assert_eq!(u["anyOf"], json!([{"maximum": 3}]));
    }

    #[test]
    fn lists_refer_to_their_items() {
        let l = list(
            "com.example.v1.Widget",
            "WidgetList",
            "Widget",
            "widgets",
            Spec::V2,
            gvk(),
        );
        assert_eq!(
            l["properties"]["items"]["items"]["$ref"],
            "#/definitions/com.example.v1.Widget"
        );
        assert_eq!(
            l["properties"]["metadata"]["$ref"],
            format!("#/definitions/{LIST_META}")
        );
        assert_eq!(l["required"], json!(["items"]));
    }
}
