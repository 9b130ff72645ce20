//! Defaulting: each row a schema, an object, and the object defaulted.

use serde_json::{Value, json};

use super::structural;

fn spec(props: Value) -> Value {
    json!({"type": "object", "properties": {"spec": {"type": "object", "properties": props}}})
}

#[test]
fn defaults_fill_missing_fields_as_kubernetes_does() {
    let replicas = spec(json!({"replicas": {"type": "integer", "default": 1}}));
    let rows: Vec<(&str, Value, Value, Value)> = vec![
        (
            "a missing field",
            replicas.clone(),
            json!({"spec": {}}),
            json!({"spec": {"replicas": 1}}),
        ),
        (
            "a set field is kept",
            replicas.clone(),
            json!({"spec": {"replicas": 3}}),
            json!({"spec": {"replicas": 3}}),
        ),
        (
            "no parent is made for a default",
            replicas.clone(),
            json!({}),
            json!({}),
        ),
        (
            "a null that may not be null",
            replicas.clone(),
            json!({"spec": {"replicas": null}}),
            json!({"spec": {"replicas": 1}}),
        ),
        (
            "a null that may be",
            spec(json!({"replicas": {"type": "integer", "nullable": true, "default": 1}})),
            json!({"spec": {"replicas": null}}),
            json!({"spec": {"replicas": null}}),
        ),
        (
            "a defaulted parent gets its fields' defaults",
            json!({"type": "object", "properties": {"spec": {"type": "object", "default": {},
                "properties": {"replicas": {"type": "integer", "default": 1}}}}}),
            json!({}),
            json!({"spec": {"replicas": 1}}),
        ),
        (
            "list items",
            spec(
                json!({"ports": {"type": "array", "items": {"type": "object",
                "properties": {"protocol": {"type": "string", "default": "TCP"}, "port": {"type": "integer"}}}}}),
            ),
            json!({"spec": {"ports": [{"port": 80}, {"port": 53, "protocol": "UDP"}]}}),
            json!({"spec": {"ports": [{"port": 80, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}]}}),
        ),
        (
            "null list items",
            spec(json!({"l": {"type": "array", "items": {"type": "string", "default": "x"}}})),
            json!({"spec": {"l": [null, "y"]}}),
            json!({"spec": {"l": ["x", "y"]}}),
        ),
        (
            "map values",
            spec(
                json!({"m": {"type": "object", "additionalProperties": {"type": "object",
                "properties": {"w": {"type": "integer", "default": 1}}}}}),
            ),
            json!({"spec": {"m": {"a": {}, "b": {"w": 2}}}}),
            json!({"spec": {"m": {"a": {"w": 1}, "b": {"w": 2}}}}),
        ),
        (
            "null map values",
            spec(
                json!({"m": {"type": "object", "additionalProperties": {"type": "string", "default": "d"}}}),
            ),
            json!({"spec": {"m": {"a": null}}}),
            json!({"spec": {"m": {"a": "d"}}}),
        ),
        (
            "a default is copied, not shared",
            spec(
                json!({"o": {"type": "object", "properties": {"k": {"type": "string"}}, "default": {"k": "v"}}}),
            ),
            json!({"spec": {}}),
            json!({"spec": {"o": {"k": "v"}}}),
        ),
    ];
    for (row, schema, mut obj, want) in rows {
        let s = structural(&schema);
        s.default(&mut obj);
        assert_eq!(obj, want, "{row}");
        // Defaulting twice changes nothing (it runs on reads and writes).
        s.default(&mut obj);
        assert_eq!(obj, want, "{row}: defaulting again");
    }
}
