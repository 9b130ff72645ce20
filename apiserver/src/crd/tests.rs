//! Custom resources across members and restarts, in process: three
//! registries (each with its own kind table and CRD controller, as three
//! API servers) over one store serve a CRD once it is established; a
//! fourth started later (a restart) serves it from its first list; a
//! deleted CRD's objects go first, and then every member stops serving it.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, header};
use serde_json::{Value, json};

use crate::kinds::Kinds;
use crate::registry::Registry;
use crate::registry::storage::{Consistency, MemoryStorage, RangeRequest, Storage};
use crate::request::{Query, RequestTarget, Verb};

fn member(storage: &Arc<dyn Storage>) -> Arc<Registry> {
    let r = Arc::new(Registry::with_storage(storage.clone(), Kinds::builtin()));
    super::start(&r);
    r
}

/// Poll `cond` until it holds, for at most ten seconds.
async fn eventually(what: &str, mut cond: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn target(
    r: &Registry,
    group: &str,
    version: &str,
    plural: &str,
    ns: Option<&str>,
    name: Option<&str>,
) -> RequestTarget {
    RequestTarget {
        rt: r.kinds.find(group, version, plural).expect("served"),
        namespace: ns.map(str::to_string),
        name: name.map(str::to_string),
        subresource: None,
    }
}

async fn call(r: &Registry, verb: Verb, t: &RequestTarget, ct: &str, body: Value) -> (u16, Value) {
    let mut h = HeaderMap::new();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
    let body = if body.is_null() {
        Bytes::new()
    } else {
        Bytes::from(body.to_string())
    };
    match r
        .serve(
            verb,
            t,
            &Query::new(),
            &h,
            body,
            &super::controller::apiserver(),
        )
        .await
    {
        Ok(resp) => {
            let code = resp.status().as_u16();
            let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
                .await
                .unwrap();
            (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
        }
        Err(e) => (e.status()["code"].as_u64().unwrap_or(0) as u16, e.status()),
    }
}

fn crd() -> Value {
    json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "kind": "Widget"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}})
}

#[tokio::test]
async fn every_member_serves_established_crds_and_restarts_serve_them_too() {
    let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
    let members: Vec<Arc<Registry>> = (0..3).map(|_| member(&storage)).collect();
    let namespaces = target(&members[0], "", "v1", "namespaces", None, None);
    let (code, _) = call(
        &members[0],
        Verb::Create,
        &namespaces,
        "application/json",
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}}),
    )
    .await;
    assert_eq!(code, 201);
    let crds = target(
        &members[0],
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        None,
        None,
    );
    let (code, _) = call(&members[0], Verb::Create, &crds, "application/json", crd()).await;
    assert_eq!(code, 201);
    for m in &members {
        eventually("every member to serve widgets", async || {
            m.kinds.find("example.com", "v1", "widgets").is_some()
        })
        .await;
    }
    let named = |r: &Registry| RequestTarget {
        name: Some("widgets.example.com".into()),
        ..target(
            r,
            "apiextensions.k8s.io",
            "v1",
            "customresourcedefinitions",
            None,
            None,
        )
    };
    let (_, c) = call(&members[2], Verb::Get, &named(&members[2]), "", Value::Null).await;
    let established = c["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["type"] == "Established")
        .unwrap()
        .clone();
    assert_eq!(established["status"], "True", "{c}");
    assert_eq!(c["status"]["acceptedNames"]["kind"], "Widget");

    // Written on one member, read on another.
    let widgets = target(
        &members[1],
        "example.com",
        "v1",
        "widgets",
        Some("default"),
        None,
    );
    let (code, w) = call(&members[1], Verb::Create, &widgets, "application/json",
        json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w1"}, "spec": {"size": 2}})).await;
    assert_eq!(code, 201, "{w}");
    assert_eq!(w["metadata"]["generation"], 1);
    let one = target(
        &members[2],
        "example.com",
        "v1",
        "widgets",
        Some("default"),
        Some("w1"),
    );
    let (code, w) = call(&members[2], Verb::Get, &one, "", Value::Null).await;
    assert_eq!((code, &w["spec"]["size"]), (200, &json!(2)), "{w}");

    // A member started later (a restart) serves what is stored.
    let late = member(&storage);
    eventually("the restarted member to serve widgets", async || {
        late.kinds.find("example.com", "v1", "widgets").is_some()
    })
    .await;

    // Deleting the CRD: held by its finalizer while its objects go, then
    // gone, and no member serves it any more.
    let (code, c) = call(
        &members[0],
        Verb::Delete,
        &named(&members[0]),
        "application/json",
        Value::Null,
    )
    .await;
    assert_eq!(code, 200, "{c}");
    let key = members[0]
        .kinds
        .find("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        .unwrap()
        .key(None, "widgets.example.com");
    eventually("the CRD to go", async || {
        storage.get(&key, Consistency::Linearizable).await.is_err()
    })
    .await;
    let left = storage
        .list(RangeRequest::prefix("/registry/example.com/".to_string()))
        .await
        .unwrap();
    assert!(left.kvs.is_empty(), "objects left behind: {:?}", left.kvs);
    for m in members.iter().chain([&late]) {
        eventually("every member to stop serving widgets", async || {
            m.kinds.find("example.com", "v1", "widgets").is_none()
        })
        .await;
    }
}

/// The registry's hooks for custom resources, in process: a CRD with two
/// versions (one deprecated), the status and scale subresources, printer
/// columns and a selectable field.
#[tokio::test]
async fn subresources_selectors_versions_and_tables_of_a_custom_resource() {
    let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
    let r = member(&storage);
    let namespaces = target(&r, "", "v1", "namespaces", None, None);
    call(
        &r,
        Verb::Create,
        &namespaces,
        "application/json",
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}}),
    )
    .await;
    let mut c = crd();
    let schema = json!({"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}});
    c["spec"]["versions"] = json!([
        {"name": "v1", "served": true, "storage": true, "schema": schema,
         "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.size",
            "statusReplicasPath": ".status.size", "labelSelectorPath": ".status.selector"}},
         "selectableFields": [{"jsonPath": ".spec.color"}],
         "additionalPrinterColumns": [{"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
            {"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"}]},
        {"name": "v1beta1", "served": true, "storage": false, "schema": schema, "deprecated": true}]);
    let crds = target(
        &r,
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        None,
        None,
    );
    assert_eq!(
        call(&r, Verb::Create, &crds, "application/json", c).await.0,
        201
    );
    eventually("widgets served", async || {
        r.kinds.find("example.com", "v1beta1", "widgets").is_some()
    })
    .await;

    // Status is dropped on create and ignored by the main resource.
    let widgets = target(&r, "example.com", "v1", "widgets", Some("default"), None);
    let (code, w) = call(
        &r,
        Verb::Create,
        &widgets,
        "application/json",
        json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
               "spec": {"size": 1, "color": "red"}, "status": {"size": 7}}),
    )
    .await;
    assert_eq!(code, 201, "{w}");
    assert!(w.get("status").is_none(), "{w}");
    let one = |sub: Option<crate::kinds::Subresource>| RequestTarget {
        name: Some("w".into()),
        subresource: sub,
        ..target(&r, "example.com", "v1", "widgets", Some("default"), None)
    };
    let merge = "application/merge-patch+json";
    let (_, w) = call(&r, Verb::Patch, &one(Some(crate::kinds::Subresource::Status)), merge,
        json!({"status": {"size": 1, "selector": "app=w", "conditions": [{"type": "Ready", "status": "True"}]},
               "spec": {"color": "blue"}})).await;
    assert_eq!(
        (&w["status"]["size"], &w["spec"]["color"]),
        (&json!(1), &json!("red")),
        "{w}"
    );
    let (_, w) = call(
        &r,
        Verb::Patch,
        &one(None),
        merge,
        json!({"status": {"size": 9}}),
    )
    .await;
    assert_eq!(w["status"]["size"], 1, "{w}");
    assert_eq!(w["metadata"]["generation"], 1, "{w}");

    // Scale reads and writes the CRD's paths.
    let scale = one(Some(crate::kinds::Subresource::Scale));
    let (code, s) = call(
        &r,
        Verb::Patch,
        &scale,
        merge,
        json!({"spec": {"replicas": 4}}),
    )
    .await;
    assert_eq!(code, 200, "{s}");
    assert_eq!(s["spec"]["replicas"], 4);
    assert_eq!(s["status"], json!({"replicas": 1, "selector": "app=w"}));
    let (_, w) = call(&r, Verb::Get, &one(None), "", Value::Null).await;
    assert_eq!(
        (&w["spec"]["size"], &w["metadata"]["generation"]),
        (&json!(4), &json!(2)),
        "{w}"
    );

    // Field selectors: the selectable field, and no other.
    let mut q = Query::new();
    q.insert("fieldSelector".into(), "spec.color=red".into());
    let list = |q: Query| {
        let r = r.clone();
        let t = widgets.clone();
        async move {
            r.serve(
                Verb::List,
                &t,
                &q,
                &HeaderMap::new(),
                Bytes::new(),
                &super::controller::apiserver(),
            )
            .await
        }
    };
    let resp = list(q.clone()).await.unwrap();
    let body: Value = serde_json::from_slice(
        &axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(body["items"].as_array().unwrap().len(), 1, "{body}");
    q.insert("fieldSelector".into(), "spec.size=4".into());
    assert!(matches!(
        list(q).await,
        Err(crate::error::ApiError::BadRequest(_))
    ));

    // A Table with the printer columns.
    let mut h = HeaderMap::new();
    h.insert(
        header::ACCEPT,
        HeaderValue::from_static("application/json;as=Table;v=v1;g=meta.k8s.io"),
    );
    let resp = r
        .serve(
            Verb::Get,
            &one(None),
            &Query::new(),
            &h,
            Bytes::new(),
            &super::controller::apiserver(),
        )
        .await
        .unwrap();
    let table: Value = serde_json::from_slice(
        &axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap(),
    )
    .unwrap();
    let names: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Name", "Size", "Ready"], "{table}");
    assert_eq!(table["rows"][0]["cells"], json!(["w", 4, "True"]));

    // The deprecated version serves the same object, with a warning.
    let beta = RequestTarget {
        name: Some("w".into()),
        ..target(
            &r,
            "example.com",
            "v1beta1",
            "widgets",
            Some("default"),
            None,
        )
    };
    let resp = r
        .serve(
            Verb::Get,
            &beta,
            &Query::new(),
            &HeaderMap::new(),
            Bytes::new(),
            &super::controller::apiserver(),
        )
        .await
        .unwrap();
    let warning = resp
        .headers()
        .get("warning")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(
        warning,
        "299 - \"example.com/v1beta1 Widget is deprecated\""
    );
    let w: Value = serde_json::from_slice(
        &axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        (&w["apiVersion"], &w["spec"]["size"]),
        (&json!("example.com/v1beta1"), &json!(4))
    );
}
