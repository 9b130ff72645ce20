//! The served documents over in-memory storage: CRDs written straight into
//! the store appear in (and leave) the v3 index, their documents and the v2
//! document at the next request, with the hashes and ETags kubectl's cache
//! relies on.

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};

use super::*;
use crate::kinds::Kinds;
use crate::registry::storage::MemoryStorage;

const KEY: &str = "/registry/apiextensions.k8s.io/customresourcedefinitions/widgets.example.com";

fn registry() -> (Arc<MemoryStorage>, Registry) {
    let storage = Arc::new(MemoryStorage::new());
    let registry = Registry::with_storage(storage.clone(), Kinds::builtin());
    (storage, registry)
}

fn widget_crd(description: &str, established: bool) -> Vec<u8> {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
            "versions": [
                {"name": "v1", "served": true, "storage": true,
                 "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "description": description,
                             "properties": {"size": {"type": "integer", "description": "How big."}}}}}}},
                {"name": "v1alpha1", "served": true, "storage": false,
                 "schema": {"openAPIV3Schema": {"type": "object"}}},
            ],
        },
        "status": {"conditions": [{"type": "Established", "status": if established { "True" } else { "False" }}]},
    })
    .to_string()
    .into_bytes()
}

async fn body(r: Response) -> Vec<u8> {
    axum::body::to_bytes(r.into_body(), usize::MAX)
        .await
        .expect("a body")
        .to_vec()
}

async fn index(registry: &Registry) -> Value {
    let r = v3_index(registry, &HeaderMap::new()).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    serde_json::from_slice(&body(r).await).unwrap()
}

/// The `?hash=` of a document in the index, if it is listed.
fn hash_of(index: &Value, gv: &str) -> Option<String> {
    let url = index["paths"][gv]["serverRelativeURL"].as_str()?;
    Some(url.split_once("?hash=")?.1.to_string())
}

async fn document(registry: &Registry, gv: &str) -> Value {
    let r = v3_document(registry, gv, None, &HeaderMap::new())
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    serde_json::from_slice(&body(r).await).unwrap()
}

#[tokio::test]
async fn established_crds_are_published_and_follow_changes() {
    let (storage, registry) = registry();
    let before = index(&registry).await;
    assert!(hash_of(&before, "api/v1").is_some());
    assert!(hash_of(&before, "apis/example.com/v1").is_none());

    // Not established yet: not published.
    storage.put(KEY, widget_crd("The wanted widget.", false));
    assert!(hash_of(&index(&registry).await, "apis/example.com/v1").is_none());

    storage.put(KEY, widget_crd("The wanted widget.", true));
    let idx = index(&registry).await;
    let first = hash_of(&idx, "apis/example.com/v1").expect("v1 is listed");
    assert!(hash_of(&idx, "apis/example.com/v1alpha1").is_some());
    assert_eq!(
        hash_of(&idx, "api/v1"),
        hash_of(&before, "api/v1"),
        "built-in documents do not change"
    );
    let doc = document(&registry, "apis/example.com/v1").await;
    let widget = &doc["components"]["schemas"]["com.example.v1.Widget"];
    assert_eq!(
        widget["properties"]["spec"]["description"],
        "The wanted widget."
    );
    assert_eq!(
        widget["x-kubernetes-group-version-kind"][0]["kind"],
        "Widget"
    );
    assert!(doc["components"]["schemas"][schema::OBJECT_META].is_object());

    // A changed schema is served at the next request, under a new hash.
    storage.put(KEY, widget_crd("The widget as wanted now.", true));
    let second = hash_of(&index(&registry).await, "apis/example.com/v1").unwrap();
    assert_ne!(first, second);
    let doc = document(&registry, "apis/example.com/v1").await;
    assert_eq!(
        doc["components"]["schemas"]["com.example.v1.Widget"]["properties"]["spec"]["description"],
        "The widget as wanted now."
    );
    // An index held from before the change is redirected to the new URL.
    let stale = v3_document(
        &registry,
        "apis/example.com/v1",
        Some(first.as_str()),
        &HeaderMap::new(),
    )
    .await
    .unwrap();
    assert_eq!(stale.status(), StatusCode::MOVED_PERMANENTLY);
    assert_eq!(
        stale.headers()[header::LOCATION],
        format!("/openapi/v3/apis/example.com/v1?hash={second}").as_str()
    );
    let current = v3_document(
        &registry,
        "apis/example.com/v1",
        Some(second.as_str()),
        &HeaderMap::new(),
    )
    .await
    .unwrap();
    assert_eq!(current.status(), StatusCode::OK);
    assert!(
        current.headers()[header::CACHE_CONTROL]
            .to_str()
            .unwrap()
            .contains("immutable")
    );

    // The CRD's versions are in /openapi/v2 as well.
    let v2 = v2_document(&registry, &HeaderMap::new()).await.unwrap();
    let v2: Value = serde_json::from_slice(&body(v2).await).unwrap();
    assert_eq!(
        v2["definitions"]["com.example.v1.Widget"]["properties"]["spec"]["properties"]["size"]["description"],
        "How big."
    );
    assert!(v2["definitions"]["com.example.v1alpha1.WidgetList"].is_object());
    assert!(
        v2["paths"]["/apis/example.com/v1/namespaces/{namespace}/widgets/{name}"]["patch"]
            .is_object()
    );

    // Gone with the CRD.
    storage.remove(KEY);
    assert!(hash_of(&index(&registry).await, "apis/example.com/v1").is_none());
    let gone = v3_document(&registry, "apis/example.com/v1", None, &HeaderMap::new()).await;
    assert!(matches!(gone, Err(ApiError::NoRoute)));
    let v2 = v2_document(&registry, &HeaderMap::new()).await.unwrap();
    let v2: Value = serde_json::from_slice(&body(v2).await).unwrap();
    assert!(v2["definitions"].get("com.example.v1.Widget").is_none());
}

#[tokio::test]
async fn etags_answer_not_modified() {
    let (_storage, registry) = registry();
    let r = v3_index(&registry, &HeaderMap::new()).await.unwrap();
    let etag = r.headers()[header::ETAG].clone();
    assert!(etag.to_str().unwrap().starts_with('"'));
    let mut headers = HeaderMap::new();
    headers.insert(header::IF_NONE_MATCH, etag);
    let again = v3_index(&registry, &headers).await.unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert!(body(again).await.is_empty());
    headers.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"other\""));
    assert_eq!(
        v3_index(&registry, &headers).await.unwrap().status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn v2_is_protobuf_when_asked_for() {
    let (storage, registry) = registry();
    storage.put(KEY, widget_crd("The wanted widget.", true));
    let mut headers = HeaderMap::new();
    headers.insert(
        header::ACCEPT,
        HeaderValue::from_static("application/com.github.proto-openapi.spec.v2@v1.0+protobuf"),
    );
    let r = v2_document(&registry, &headers).await.unwrap();
    assert_eq!(
        r.headers()[header::CONTENT_TYPE],
        "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
    );
    let pb = body(r).await;
    // The definition's name is in the encoded document.
    let name = b"com.example.v1.Widget";
    assert!(pb.windows(name.len()).any(|w| w == name));
}
