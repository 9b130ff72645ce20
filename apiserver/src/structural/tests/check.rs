//! The structural check of CRD schemas: what Kubernetes refuses, with its
//! field paths and messages.

use serde_json::{Value, json};

use super::{AT, assert_lines, lines};
use crate::structural::Structural;

fn obj(props: Value) -> Value {
    json!({"type": "object", "properties": props})
}

#[test]
fn schemas_are_refused_with_kubernetes_causes() {
    let rows: Vec<(&str, Value, Vec<&str>)> = vec![
        (
            "a typed schema",
            obj(json!({"spec": obj(json!({"replicas": {"type": "integer", "minimum": 0}}))})),
            vec![],
        ),
        (
            "a field without type",
            obj(json!({"spec": {"properties": {"a": {"type": "string"}}}})),
            vec![
                "@.properties[spec].type: Required value: must not be empty for specified object fields",
            ],
        ),
        (
            "a root without type",
            json!({"properties": {"a": {"type": "string"}}}),
            vec!["@.type: Required value: must not be empty at the root"],
        ),
        (
            "list items without type",
            obj(json!({"l": {"type": "array", "items": {}}})),
            vec![
                "@.properties[l].items.type: Required value: must not be empty for specified array items",
            ],
        ),
        (
            "a list without items",
            obj(json!({"l": {"type": "array"}})),
            vec!["@.properties[l].items: Required value: must be specified"],
        ),
        (
            "unknown fields kept need no type",
            obj(json!({"x": {"x-kubernetes-preserve-unknown-fields": true}})),
            vec![],
        ),
        (
            "int-or-string with its anyOf",
            obj(json!({"port": {"x-kubernetes-int-or-string": true,
                "anyOf": [{"type": "integer"}, {"type": "string"}]}})),
            vec![],
        ),
        (
            "a type inside anyOf",
            obj(json!({"a": {"type": "string", "anyOf": [{"type": "string", "maxLength": 3}]}})),
            vec!["@.properties[a].anyOf[0].type: Forbidden: must be empty to be structural"],
        ),
        (
            "a description inside anyOf",
            obj(json!({"a": {"type": "string", "anyOf": [{"description": "x", "maxLength": 2}]}})),
            vec!["@.properties[a].anyOf[0].description: Forbidden: must be empty to be structural"],
        ),
        (
            "allOf naming a field the schema does not specify",
            json!({"type": "object", "properties": {"a": {"type": "string"}},
                "allOf": [{"properties": {"b": {"maxLength": 3}}}]}),
            vec![
                "@.properties[b]: Required value: because it is defined in @.allOf[0].properties[b]",
            ],
        ),
        (
            "rules inside allOf",
            obj(
                json!({"a": {"type": "string", "allOf": [{"x-kubernetes-validations": [{"rule": "self.size() > 1"}]}]}}),
            ),
            vec![
                "@.properties[a].allOf[0].x-kubernetes-validations: Forbidden: must be empty to be structural",
            ],
        ),
        (
            "metadata restricting labels",
            obj(json!({"metadata": obj(json!({"labels": {"type": "object"}}))})),
            vec![
                "@.properties[metadata]: Forbidden: must not specify anything other than name and generateName, but metadata is implicitly specified",
            ],
        ),
        (
            "metadata restricting the name",
            obj(json!({"metadata": obj(json!({"name": {"type": "string", "maxLength": 10}}))})),
            vec![],
        ),
        (
            "a default in top-level metadata",
            obj(json!({"metadata": {"type": "object", "default": {"name": "x"}}})),
            vec![
                "@.properties[metadata].default: Forbidden: must not be set in top-level metadata",
            ],
        ),
        (
            "$ref",
            obj(json!({"a": {"$ref": "#/definitions/x"}})),
            vec!["@.properties[a].$ref: Forbidden: $ref is not supported"],
        ),
        (
            "$schema, reported when nothing else is wrong",
            json!({"type": "object", "$schema": "http://json-schema.org/draft-04/schema#"}),
            vec!["@: Invalid value: \"\": OpenAPIV3Schema 'schema' is not supported"],
        ),
        (
            "additionalProperties with properties",
            obj(
                json!({"m": {"type": "object", "properties": {"a": {"type": "string"}},
                "additionalProperties": {"type": "string"}}}),
            ),
            vec![
                "@.properties[m].additionalProperties: Forbidden: additionalProperties and properties are mutual exclusive",
            ],
        ),
        (
            "additionalProperties at the root",
            json!({"type": "object", "additionalProperties": {"type": "string"}}),
            vec!["@.additionalProperties: Forbidden: must not be used at the root"],
        ),
        (
            "uniqueItems",
            obj(json!({"l": {"type": "array", "items": {"type": "string"}, "uniqueItems": true}})),
            vec![
                "@.properties[l].uniqueItems: Forbidden: uniqueItems cannot be set to true since the runtime complexity becomes quadratic",
            ],
        ),
        (
            "items as a list of schemas",
            obj(json!({"l": {"type": "array", "items": [{"type": "string"}]}})),
            vec![
                "@.properties[l].items: Forbidden: items must be a schema object and not an array",
            ],
        ),
        (
            "a root that is not an object",
            json!({"type": "string"}),
            vec!["@.type: Invalid value: \"string\": must be object at the root"],
        ),
        (
            "a nullable root",
            json!({"type": "object", "nullable": true}),
            vec!["@.nullable: Forbidden: nullable cannot be true at the root"],
        ),
        (
            "an unknown type",
            obj(json!({"a": {"type": "str"}})),
            vec![
                "@.properties[a].type: Unsupported value: \"str\": supported values: \"array\", \"boolean\", \"integer\", \"number\", \"object\", \"string\"",
            ],
        ),
        (
            "a keyword of the wrong JSON type",
            obj(json!({"a": {"type": 5}})),
            vec!["@.properties[a].type: Invalid value: 5: must be a string"],
        ),
        (
            "x-kubernetes-preserve-unknown-fields: false",
            obj(json!({"a": {"type": "object", "x-kubernetes-preserve-unknown-fields": false}})),
            vec![
                "@.properties[a].x-kubernetes-preserve-unknown-fields: Invalid value: false: must be true or undefined",
            ],
        ),
        (
            "a pattern that does not compile",
            obj(json!({"a": {"type": "string", "pattern": "(a"}})),
            vec![
                "@.properties[a].pattern: Invalid value: \"(a\": must be a valid regular expression, but isn't: *",
            ],
        ),
        (
            "a list map without keys",
            obj(
                json!({"l": {"type": "array", "x-kubernetes-list-type": "map",
                "items": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}}}),
            ),
            vec![
                "@.properties[l].x-kubernetes-list-map-keys: Required value: must not be empty if x-kubernetes-list-type is map",
            ],
        ),
        (
            "a list map key neither required nor defaulted",
            obj(
                json!({"l": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                "items": {"type": "object", "properties": {"name": {"type": "string"}}}}}),
            ),
            vec![
                "@.properties[l].items.properties[name].default: Required value: this property is in x-kubernetes-list-map-keys, so it must have a default or be a required property",
            ],
        ),
        (
            "a list map key that is not an item field",
            obj(
                json!({"l": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["id"],
                "items": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}}}),
            ),
            vec![
                "@.properties[l].x-kubernetes-list-map-keys: Invalid value: [\"id\"]: entries must all be names of item properties",
            ],
        ),
        (
            "list map keys on a set",
            obj(
                json!({"l": {"type": "array", "x-kubernetes-list-type": "set", "x-kubernetes-list-map-keys": ["a"],
                "items": {"type": "string"}}}),
            ),
            vec![
                "@.properties[l].x-kubernetes-list-type: Invalid value: \"set\": must be map if x-kubernetes-list-map-keys is non-empty",
            ],
        ),
        (
            "a set of granular objects",
            obj(
                json!({"l": {"type": "array", "x-kubernetes-list-type": "set",
                "items": {"type": "object", "properties": {"a": {"type": "string"}}}}}),
            ),
            vec![
                "@.properties[l].items.x-kubernetes-map-type: Invalid value: null: must be atomic as item of a list with x-kubernetes-list-type=set",
            ],
        ),
        (
            "an unknown list type",
            obj(
                json!({"l": {"type": "array", "x-kubernetes-list-type": "bag", "items": {"type": "string"}}}),
            ),
            vec![
                "@.properties[l].x-kubernetes-list-type: Unsupported value: \"bag\": supported values: \"atomic\", \"set\", \"map\"",
            ],
        ),
        (
            "a map type on a string",
            obj(json!({"a": {"type": "string", "x-kubernetes-map-type": "atomic"}})),
            vec![
                "@.properties[a].type: Invalid value: \"string\": must be object if x-kubernetes-map-type is specified",
            ],
        ),
        (
            "a default of the wrong type",
            obj(json!({"a": {"type": "integer", "default": "x"}})),
            vec![
                "@.properties[a].default: Invalid value: \"string\":  in body must be of type integer: \"string\"",
            ],
        ),
        (
            "a default out of bounds",
            obj(
                json!({"a": {"type": "object", "properties": {"n": {"type": "integer", "maximum": 3}}, "default": {"n": 5}}}),
            ),
            vec![
                "@.properties[a].default.n: Invalid value: 5: n in body should be less than or equal to 3",
            ],
        ),
        (
            "a default with unknown fields",
            obj(
                json!({"o": {"type": "object", "properties": {"a": {"type": "string"}}, "default": {"a": "x", "b": "y"}}}),
            ),
            vec![
                "@.properties[o].default: Invalid value: {\"a\":\"x\",\"b\":\"y\"}: must not have unknown fields",
            ],
        ),
        (
            "an embedded resource without properties",
            obj(json!({"t": {"type": "object", "x-kubernetes-embedded-resource": true}})),
            vec![
                "@.properties[t].properties: Required value: must not be empty if x-kubernetes-embedded-resource is true without x-kubernetes-preserve-unknown-fields",
            ],
        ),
        (
            "an embedded resource with a numeric kind",
            obj(
                json!({"t": {"type": "object", "x-kubernetes-embedded-resource": true,
                "properties": {"kind": {"type": "integer"}}}}),
            ),
            vec![
                "@.properties[t].properties[kind].type: Invalid value: \"integer\": must be string",
            ],
        ),
        (
            "int-or-string that also keeps unknown fields",
            obj(
                json!({"p": {"x-kubernetes-int-or-string": true, "x-kubernetes-preserve-unknown-fields": true}}),
            ),
            vec![
                "@.properties[p].x-kubernetes-preserve-unknown-fields: Invalid value: true: must be false if x-kubernetes-int-or-string is true",
            ],
        ),
        (
            "oldSelf under the items of a set",
            obj(
                json!({"l": {"type": "array", "x-kubernetes-list-type": "set",
                "items": {"type": "string", "x-kubernetes-validations": [{"rule": "self == oldSelf"}]}}}),
            ),
            vec![
                "@.properties[l].items.x-kubernetes-validations[0].rule: Invalid value: \"self == oldSelf\": oldSelf cannot be used on the uncorrelatable portion of the schema within @.properties[l]",
            ],
        ),
        (
            "oldSelf under a list map",
            obj(
                json!({"l": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["k"],
                "items": {"type": "object", "required": ["k"], "properties": {"k": {"type": "string"}},
                    "x-kubernetes-validations": [{"rule": "self.k == oldSelf.k"}]}}}),
            ),
            vec![],
        ),
    ];
    for (row, schema, want) in rows {
        let got = match Structural::new(&schema, AT) {
            Ok(_) => vec![],
            Err(c) => lines(&c),
        };
        assert_lines(row, &got, &want);
    }
}

#[test]
fn structural_errors_name_the_reason_kubernetes_gives() {
    let schema = obj(json!({"spec": {"properties": {"a": {"type": "string"}}}}));
    let causes = Structural::new(&schema, AT).unwrap_err();
    assert_eq!(causes.len(), 1);
    assert_eq!(causes[0].reason, "FieldValueRequired");
    assert_eq!(
        causes[0].field,
        format!("{AT}.properties[spec].type"),
        "paths are under the CRD's own"
    );
}

#[test]
fn schemas_nested_too_deep_are_refused_not_walked() {
    let mut schema = json!({"type": "string"});
    for _ in 0..150 {
        schema = obj(json!({"a": schema}));
    }
    let causes = Structural::new(&schema, AT).unwrap_err();
    assert!(
        causes[0].message.contains("must not be nested more than"),
        "{causes:?}"
    );
}
