//! Pruning: each row a schema, an object, the object pruned and the paths
//! Kubernetes reports as unknown fields.

use serde_json::{Value, json};

use super::structural;

fn obj(props: Value) -> Value {
    json!({"type": "object", "properties": props})
}

fn meta() -> Value {
    json!({"name": "x", "namespace": "default", "labels": {"a": "1"}})
}

#[test]
fn unknown_fields_are_pruned_and_reported() {
    let rows: Vec<(&str, Value, Value, Value, Vec<&str>)> = vec![
        (
            "fields the schema does not know",
            obj(json!({"spec": obj(json!({"a": {"type": "string"}}))})),
            json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": meta(),
                "spec": {"a": "1", "b": "2"}, "extra": 1}),
            json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": meta(),
                "spec": {"a": "1"}}),
            vec!["extra", "spec.b"],
        ),
        (
            "unknown metadata fields",
            obj(json!({})),
            json!({"metadata": {"name": "x", "foo": 1}}),
            json!({"metadata": {"name": "x"}}),
            vec!["metadata.foo"],
        ),
        (
            "x-kubernetes-preserve-unknown-fields keeps unknown fields, not unknown ones below known fields",
            obj(
                json!({"spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true,
                "properties": {"a": obj(json!({"x": {"type": "integer"}}))}}}),
            ),
            json!({"spec": {"a": {"x": 1, "y": 2}, "other": {"deep": 1}}}),
            json!({"spec": {"a": {"x": 1}, "other": {"deep": 1}}}),
            vec!["spec.a.y"],
        ),
        (
            "list items by index",
            obj(json!({"l": {"type": "array", "items": obj(json!({"n": {"type": "string"}}))}})),
            json!({"l": [{"n": "a"}, {"n": "b", "z": 1}]}),
            json!({"l": [{"n": "a"}, {"n": "b"}]}),
            vec!["l[1].z"],
        ),
        (
            "map values by key",
            obj(
                json!({"m": {"type": "object", "additionalProperties": obj(json!({"a": {"type": "string"}}))}}),
            ),
            json!({"m": {"k": {"a": "x", "b": "y"}}}),
            json!({"m": {"k": {"a": "x"}}}),
            vec!["m.k.b"],
        ),
        (
            "additionalProperties: true keeps keys, not what is below them",
            obj(json!({"m": {"type": "object", "additionalProperties": true}})),
            json!({"m": {"s": "v", "o": {"x": 1}}}),
            json!({"m": {"s": "v", "o": {}}}),
            vec!["m.o.x"],
        ),
        (
            "an embedded resource keeps apiVersion, kind and ObjectMeta",
            obj(
                json!({"t": {"type": "object", "x-kubernetes-embedded-resource": true,
                "properties": {"spec": obj(json!({"a": {"type": "string"}}))}}}),
            ),
            json!({"t": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "bogus": 1},
                "spec": {"a": "x", "b": "y"}, "status": {}}}),
            json!({"t": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                "spec": {"a": "x"}}}),
            vec!["t.metadata.bogus", "t.spec.b", "t.status"],
        ),
        (
            "nulls of fields that may not be null and have no default",
            obj(json!({"spec": obj(json!({
                "a": {"type": "string"},
                "n": {"type": "string", "nullable": true},
                "d": {"type": "string", "default": "x"}}))})),
            json!({"spec": {"a": null, "n": null, "d": null}}),
            json!({"spec": {"n": null, "d": null}}),
            vec![],
        ),
    ];
    for (row, schema, mut input, want, paths) in rows {
        let s = structural(&schema);
        let got = s.prune(&mut input);
        assert_eq!(input, want, "{row}");
        assert_eq!(got, paths, "{row}: paths");
    }
}

#[test]
fn pruning_then_defaulting_gives_what_a_write_stores() {
    let s = structural(&obj(json!({"spec": obj(json!({
        "mode": {"type": "string", "default": "auto"},
        "size": {"type": "integer"}}))})));
    let mut o = json!({"spec": {"mode": null, "size": 1, "junk": true}});
    assert_eq!(s.prune(&mut o), vec!["spec.junk"]);
    s.default(&mut o);
    assert_eq!(o, json!({"spec": {"mode": "auto", "size": 1}}));
}
