//! Value validation: each row a schema for `spec` fields, a `spec`, and
//! the causes Kubernetes gives (`field: message`).

use serde_json::{Value, json};

use super::{assert_lines, lines, structural};

fn spec_schema(props: Value) -> Value {
    json!({"type": "object", "properties": {"spec": {"type": "object", "properties": props}}})
}

#[test]
fn values_are_validated_as_kubernetes_words_it() {
    let int_or_string = json!({"p": {"x-kubernetes-int-or-string": true}});
    let rows: Vec<(&str, Value, Value, Vec<&str>)> = vec![
        (
            "a string for an integer",
            json!({"r": {"type": "integer"}}),
            json!({"r": "two"}),
            vec![
                "spec.r: Invalid value: \"string\": spec.r in body must be of type integer: \"string\"",
            ],
        ),
        (
            "a whole float for an integer",
            json!({"r": {"type": "integer"}}),
            json!({"r": 2.0}),
            vec![],
        ),
        (
            "an integer for a number",
            json!({"n": {"type": "number"}}),
            json!({"n": 3}),
            vec![],
        ),
        (
            "null where null is not allowed",
            json!({"s": {"type": "string"}}),
            json!({"s": null}),
            vec![
                "spec.s: Invalid value: \"null\": spec.s in body must be of type string: \"null\"",
            ],
        ),
        (
            "null where it is",
            json!({"s": {"type": "string", "nullable": true}}),
            json!({"s": null}),
            vec![],
        ),
        (
            "above maximum",
            json!({"r": {"type": "integer", "maximum": 10}}),
            json!({"r": 20}),
            vec!["spec.r: Invalid value: 20: spec.r in body should be less than or equal to 10"],
        ),
        (
            "at an exclusive minimum",
            json!({"n": {"type": "number", "minimum": 0, "exclusiveMinimum": true}}),
            json!({"n": 0}),
            vec!["spec.n: Invalid value: 0: spec.n in body should be greater than 0"],
        ),
        (
            "a float below a float minimum",
            json!({"n": {"type": "number", "minimum": 0.5}}),
            json!({"n": 0.25}),
            vec![
                "spec.n: Invalid value: 0.25: spec.n in body should be greater than or equal to 0.5",
            ],
        ),
        (
            "not a multiple",
            json!({"r": {"type": "integer", "multipleOf": 5}}),
            json!({"r": 7}),
            vec!["spec.r: Invalid value: 7: spec.r in body should be a multiple of 5"],
        ),
        (
            "out of int32",
            json!({"r": {"type": "integer", "format": "int32"}}),
            json!({"r": 3000000000_i64}),
            vec![
                "<nil>: Invalid value: \"\": Checked value must be of type integer with format int32 in spec.r",
            ],
        ),
        (
            "not one of the values",
            json!({"m": {"type": "string", "enum": ["a", "b"]}}),
            json!({"m": "c"}),
            vec!["spec.m: Unsupported value: \"c\": supported values: \"a\", \"b\""],
        ),
        (
            "a number not one of the values",
            json!({"m": {"type": "integer", "enum": [1, 2]}}),
            json!({"m": 3}),
            vec!["spec.m: Unsupported value: 3: supported values: \"1\", \"2\""],
        ),
        (
            "one of the values",
            json!({"m": {"type": "integer", "enum": [1, 2]}}),
            json!({"m": 2}),
            vec![],
        ),
        (
            "not matching the pattern",
            json!({"n": {"type": "string", "pattern": "^[a-z]+$"}}),
            json!({"n": "ABC"}),
            vec!["spec.n: Invalid value: \"ABC\": spec.n in body should match '^[a-z]+$'"],
        ),
        (
            "too long",
            json!({"n": {"type": "string", "maxLength": 3}}),
            json!({"n": "abcd"}),
            vec!["spec.n: Too long: may not be more than 3 bytes"],
        ),
        (
            "too short",
            json!({"n": {"type": "string", "minLength": 2}}),
            json!({"n": "a"}),
            vec!["spec.n: Invalid value: \"a\": spec.n in body should be at least 2 chars long"],
        ),
        (
            "too many items",
            json!({"l": {"type": "array", "items": {"type": "string"}, "maxItems": 1}}),
            json!({"l": ["a", "b"]}),
            vec!["spec.l: Too many: 2: must have at most 1 item"],
        ),
        (
            "too few items",
            json!({"l": {"type": "array", "items": {"type": "string"}, "minItems": 2}}),
            json!({"l": ["a"]}),
            vec!["spec.l: Invalid value: 1: spec.l in body should have at least 2 items"],
        ),
        (
            "an item of the wrong type",
            json!({"l": {"type": "array", "items": {"type": "string"}}}),
            json!({"l": ["a", 1]}),
            vec![
                "spec.l[1]: Invalid value: \"integer\": spec.l[1] in body must be of type string: \"integer\"",
            ],
        ),
        (
            "too many properties",
            json!({"m": {"type": "object", "additionalProperties": {"type": "string"}, "maxProperties": 1}}),
            json!({"m": {"a": "x", "b": "y"}}),
            vec!["spec.m: Too many: 2: must have at most 1 item"],
        ),
        (
            "a map value of the wrong type",
            json!({"m": {"type": "object", "additionalProperties": {"type": "integer"}}}),
            json!({"m": {"a": 1, "b": "x"}}),
            vec![
                "spec.m.b: Invalid value: \"string\": spec.m.b in body must be of type integer: \"string\"",
            ],
        ),
        (
            "a missing required field",
            json!({"o": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}}),
            json!({"o": {}}),
            vec!["spec.o.name: Required value"],
        ),
        (
            "a date-time that is not",
            json!({"t": {"type": "string", "format": "date-time"}}),
            json!({"t": "yesterday"}),
            vec![
                "spec.t: Invalid value: \"yesterday\": spec.t in body must be of type date-time: \"yesterday\"",
            ],
        ),
        (
            "a date-time",
            json!({"t": {"type": "string", "format": "date-time"}}),
            json!({"t": "2024-05-06T07:08:09Z"}),
            vec![],
        ),
        (
            "a format Kubernetes ignores",
            json!({"q": {"type": "string", "format": "quantity"}}),
            json!({"q": "1Gi"}),
            vec![],
        ),
        (
            "int-or-string given an integer",
            int_or_string.clone(),
            json!({"p": 80}),
            vec![],
        ),
        (
            "int-or-string given a string",
            int_or_string.clone(),
            json!({"p": "http"}),
            vec![],
        ),
        (
            "int-or-string given a boolean",
            int_or_string.clone(),
            json!({"p": true}),
            vec![
                "spec.p: Invalid value: \"boolean\": spec.p in body must be of type integer,string: \"boolean\"",
            ],
        ),
        (
            "an object matching none of oneOf",
            json!({"o": {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
                "oneOf": [{"required": ["a"]}, {"required": ["b"]}]}}),
            json!({"o": {}}),
            vec![
                "<nil>: Invalid value: \"\": \"spec.o\" must validate one and only one schema (oneOf). Found none valid",
                "spec.o.a: Required value",
            ],
        ),
        (
            "an object matching both of oneOf",
            json!({"o": {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
                "oneOf": [{"required": ["a"]}, {"required": ["b"]}]}}),
            json!({"o": {"a": "x", "b": "y"}}),
            vec![
                "<nil>: Invalid value: \"\": \"spec.o\" must validate one and only one schema (oneOf). Found 2 valid alternatives",
            ],
        ),
        (
            "an object matching none of anyOf",
            json!({"o": {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
                "anyOf": [{"required": ["a"]}, {"required": ["b"]}]}}),
            json!({"o": {}}),
            vec![
                "<nil>: Invalid value: \"\": \"spec.o\" must validate at least one schema (anyOf)",
                "spec.o.a: Required value",
            ],
        ),
        (
            "a value not",
            json!({"s": {"type": "string", "not": {"enum": ["x"]}}}),
            json!({"s": "x"}),
            vec!["<nil>: Invalid value: \"\": \"spec.s\" must not validate the schema (not)"],
        ),
        (
            "an embedded resource without apiVersion and kind, and a bad name",
            json!({"t": {"type": "object", "x-kubernetes-embedded-resource": true, "x-kubernetes-preserve-unknown-fields": true}}),
            json!({"t": {"metadata": {"name": "a/b"}}}),
            vec![
                "spec.t.apiVersion: Required value",
                "spec.t.kind: Required value",
                "spec.t.metadata.name: Invalid value: \"a/b\": may not contain '/'",
            ],
        ),
        (
            "an embedded resource with a bad kind",
            json!({"t": {"type": "object", "x-kubernetes-embedded-resource": true, "x-kubernetes-preserve-unknown-fields": true}}),
            json!({"t": {"apiVersion": "v1", "kind": "my_kind"}}),
            vec![
                "spec.t.kind: Invalid value: \"my_kind\": may have mixed case, but should otherwise match: a DNS-1035 label*",
            ],
        ),
        (
            "an embedded resource",
            json!({"t": {"type": "object", "x-kubernetes-embedded-resource": true, "x-kubernetes-preserve-unknown-fields": true}}),
            json!({"t": {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"labels": {"app": "web"}}}}),
            vec![],
        ),
        (
            "a set with a value twice",
            json!({"l": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}}}),
            json!({"l": ["a", "b", "a"]}),
            vec!["spec.l[2]: Duplicate value: \"a\""],
        ),
        (
            "a list map with a key twice",
            json!({"l": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                "items": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}, "v": {"type": "integer"}}}}}),
            json!({"l": [{"name": "a"}, {"name": "a", "v": 1}]}),
            vec!["spec.l[1]: Duplicate value: {\"name\":\"a\"}"],
        ),
        (
            "a list map with two keys, unique together",
            json!({"l": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["port", "protocol"],
                "items": {"type": "object", "required": ["port", "protocol"],
                    "properties": {"port": {"type": "integer"}, "protocol": {"type": "string"}}}}}),
            json!({"l": [{"port": 53, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}]}),
            vec![],
        ),
        (
            "an atomic list may repeat",
            json!({"l": {"type": "array", "items": {"type": "string"}}}),
            json!({"l": ["a", "a"]}),
            vec![],
        ),
    ];
    for (row, props, spec, want) in rows {
        let s = structural(&spec_schema(props));
        let got = lines(&s.validate(&json!({"spec": spec})));
        assert_lines(row, &got, &want);
    }
}

#[test]
fn causes_carry_kubernetes_reasons() {
    let s = structural(&spec_schema(json!({
        "r": {"type": "integer", "maximum": 3},
        "t": {"type": "integer"},
        "m": {"type": "string", "enum": ["a"]},
        "l": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
    })));
    let causes = s.validate(&json!({"spec": {"r": 4, "t": "x", "m": "b", "l": ["a", "a"]}}));
    let reason = |f: &str| causes.iter().find(|c| c.field == f).map(|c| c.reason);
    assert_eq!(reason("spec.r"), Some("FieldValueInvalid"));
    assert_eq!(reason("spec.t"), Some("FieldValueTypeInvalid"));
    assert_eq!(reason("spec.m"), Some("FieldValueNotSupported"));
    assert_eq!(reason("spec.l[1]"), Some("FieldValueDuplicate"));
}

#[test]
fn rules_are_not_run_on_an_object_that_fails_its_schema() {
    let blocked = "<nil>: Invalid value: null: some validation rules were not checked because the object was invalid; correct the existing errors to complete validation";
    let with_rules = json!({"type": "object", "properties": {"spec": {"type": "object",
        "required": ["a"], "properties": {"a": {"type": "string"}},
        "x-kubernetes-validations": [{"rule": "self.a != 'x'"}]}}});
    let s = structural(&with_rules);
    let got = lines(&s.validate(&json!({"spec": {}})));
    assert_lines("rules blocked", &got, &["spec.a: Required value", blocked]);
    // Without rules there is nothing to say about them.
    let mut without = with_rules.clone();
    without["properties"]["spec"]
        .as_object_mut()
        .unwrap()
        .remove("x-kubernetes-validations");
    let got = lines(&structural(&without).validate(&json!({"spec": {}})));
    assert_lines("no rules", &got, &["spec.a: Required value"]);
}

#[test]
fn top_level_metadata_is_left_to_the_registry() {
    let s = structural(&spec_schema(json!({})));
    let causes = s.validate(&json!({"apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "Not A Name"}, "spec": {}}));
    assert!(causes.is_empty(), "{causes:?}");
}
