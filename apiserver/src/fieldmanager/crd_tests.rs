//! Server-side apply of a custom resource with a structural schema: its
//! list types (set, atomic, map with keys and key defaults) and map types
//! (granular, atomic) decide what each applier owns and how appliers'
//! values merge, as in Kubernetes; embedded resources' metadata is
//! ObjectMeta.

use std::sync::Arc;

use serde_json::{Value, json};

use super::apply::{self, Applier};
use super::typed;
use crate::error::ApiError;
use crate::kinds::{NoRules, ResourceType};
use crate::request::RequestTarget;
use crate::structural::Structural;

fn schema() -> Value {
    json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
        "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
        "args": {"type": "array", "items": {"type": "string"}},
        "ports": {"type": "array", "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["name", "protocol"],
            "items": {"type": "object", "required": ["name"], "properties": {
                "name": {"type": "string"},
                "protocol": {"type": "string", "default": "TCP"},
                "port": {"type": "integer"}}}},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "selector": {"type": "object", "x-kubernetes-map-type": "atomic",
            "additionalProperties": {"type": "string"}},
        "template": {"type": "object", "x-kubernetes-embedded-resource": true,
            "x-kubernetes-preserve-unknown-fields": true}
    }}}})
}

fn target() -> RequestTarget {
    let s = Structural::new(&schema(), "spec.versions[0].schema.openAPIV3Schema").unwrap();
    let rt = ResourceType {
        group: "example.com".into(),
        version: "v1".into(),
        kind: "Widget".into(),
        plural: "widgets".into(),
        singular: "widget".into(),
        namespaced: true,
        short_names: vec![],
        categories: vec![],
        subresources: vec![],
        strategy: Arc::new(NoRules),
        typed: None,
        create_only: false,
        conversion: None,
        structural: Some(Arc::new(s)),
        custom: None,
    };
    RequestTarget {
        rt: Arc::new(rt),
        namespace: Some("default".into()),
        name: Some("w".into()),
        subresource: None,
    }
}

fn widget(spec: Value) -> Value {
    json!({"apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "w", "namespace": "default"}, "spec": spec})
}

fn p(s: &[&str]) -> Vec<String> {
    s.iter().map(|x| x.to_string()).collect()
}

#[test]
fn the_schema_says_what_an_applier_owns() {
    let t = target();
    let s = super::schema_of(&t);
    let set = typed::applied_set(
        &s,
        &widget(json!({
            "tags": ["a"],
            "args": ["-v"],
            "ports": [{"name": "http", "port": 80}],
            "labels": {"app": "web"},
            "selector": {"app": "web"},
            "template": {"metadata": {"labels": {"tier": "front"}},
                "spec": {"containers": [{"name": "c"}]}},
        })),
    );
    // A set owns its values; an atomic list is one leaf.
    assert!(set.has(&p(&["f:spec", "f:tags", "v:\"a\""])));
    assert!(set.has(&p(&["f:spec", "f:args"])));
    assert!(set.get(&p(&["f:spec", "f:args", "i:0"])).is_none());
    // A list map's item is named by its keys, a missing key by its default.
    let http = "k:{\"name\":\"http\",\"protocol\":\"TCP\"}";
    assert!(set.has(&p(&["f:spec", "f:ports", http])));
    assert!(set.has(&p(&["f:spec", "f:ports", http, "f:port"])));
    // A granular map owns its entries; an atomic one is one leaf.
    assert!(set.has(&p(&["f:spec", "f:labels", "f:app"])));
    assert!(!set.has(&p(&["f:spec", "f:labels"])));
    assert!(set.has(&p(&["f:spec", "f:selector"])));
    assert!(set.get(&p(&["f:spec", "f:selector", "f:app"])).is_none());
    // An embedded resource's metadata is ObjectMeta; unknown fields kept
    // under it are schemaless (objects granular, lists atomic).
    let tpl = ["f:spec", "f:template"];
    assert!(set.has(&[p(&tpl), p(&["f:metadata", "f:labels", "f:tier"])].concat()));
    assert!(set.has(&[p(&tpl), p(&["f:spec", "f:containers"])].concat()));
    assert!(!set.has(&[p(&tpl), p(&["f:spec"])].concat()));
}

fn applier<'a>(t: &'a RequestTarget, manager: &'a str, force: bool) -> Applier<'a> {
    Applier {
        target: t,
        manager,
        subresource: "",
        force,
        now: "2026-01-01T00:00:00Z",
    }
}

#[test]
fn appliers_merge_by_list_and_map_type() {
    let t = target();
    let alice = widget(json!({
        "tags": ["a"],
        "args": ["-a"],
        "ports": [{"name": "http", "port": 80}],
        "labels": {"a": "1"},
        "selector": {"x": "1"},
    }));
    let bob = widget(json!({
        "tags": ["b"],
        "args": ["-b"],
        "ports": [{"name": "dns", "protocol": "UDP", "port": 53}],
        "labels": {"b": "2"},
        "selector": {"y": "2"},
    }));
    let live = apply::apply(&applier(&t, "alice", false), None, &alice).unwrap();

    // Replacing an atomic list or map another manager owns is a conflict;
    // adding to a set, a list map or a granular map is not.
    match apply::apply(&applier(&t, "bob", false), Some(&live), &bob) {
        Err(ApiError::ApplyConflict { causes, .. }) => {
            let mut fields: Vec<&str> = causes.iter().map(|c| c.field.as_str()).collect();
            fields.sort();
            assert_eq!(fields, [".spec.args", ".spec.selector"]);
        }
        other => panic!("want a conflict, got {other:?}"),
    }

    let merged = apply::apply(&applier(&t, "bob", true), Some(&live), &bob).unwrap();
    let spec = &merged["spec"];
    assert_eq!(spec["tags"], json!(["a", "b"]));
    assert_eq!(spec["args"], json!(["-b"]));
    assert_eq!(
        spec["ports"],
        json!([{"name": "http", "port": 80}, {"name": "dns", "protocol": "UDP", "port": 53}])
    );
    assert_eq!(spec["labels"], json!({"a": "1", "b": "2"}));
    assert_eq!(spec["selector"], json!({"y": "2"}));

    // Alice applying again without her port removes only what she owned.
    let alice_again = widget(json!({"tags": ["a"], "labels": {"a": "1"}}));
    let after = apply::apply(&applier(&t, "alice", false), Some(&merged), &alice_again).unwrap();
    assert_eq!(
        after["spec"]["ports"],
        json!([{"name": "dns", "protocol": "UDP", "port": 53}])
    );
    assert_eq!(after["spec"]["tags"], json!(["a", "b"]));
}

#[test]
fn an_applied_item_without_a_defaulted_key_is_the_live_item() {
    let t = target();
    let live = apply::apply(
        &applier(&t, "alice", false),
        None,
        &widget(json!({"ports": [{"name": "http", "protocol": "TCP", "port": 80}]})),
    )
    .unwrap();
    // Bob's item names the same port: one item, Bob's port, Alice's protocol.
    let merged = apply::apply(
        &applier(&t, "bob", true),
        Some(&live),
        &widget(json!({"ports": [{"name": "http", "port": 8080}]})),
    )
    .unwrap();
    assert_eq!(
        merged["spec"]["ports"],
        json!([{"name": "http", "protocol": "TCP", "port": 8080}])
    );
}
