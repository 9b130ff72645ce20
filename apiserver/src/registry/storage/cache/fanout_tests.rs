//! API watches fanned out from the watch cache, through
//! [`Registry::serve`] as the router calls it: the same events as a watch
//! of the storage itself (selectors moving objects in and out included),
//! many watchers served without one storage watch each, bookmarks.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::kinds::Kinds;
use crate::registry::Registry;
use crate::registry::storage::{MemoryStorage, Storage, StorageError};
use crate::request::{self, RequestTarget};

const PODS: &str = "/registry/core/pods/default/";
const WAIT: Duration = Duration::from_secs(10);

async fn get(registry: &Registry, path: &str) -> Response {
    let uri: Uri = path.parse().unwrap();
    let segs = request::segments(uri.path());
    let ["api", version, rest @ ..] = segs.as_slice() else {
        panic!("not a core path: {path}")
    };
    let q = request::query(&uri);
    let served = async {
        let t = RequestTarget::resolve(&registry.kinds, "", version, rest)?;
        let verb = t.verb(&Method::GET, &q)?;
        registry
            .serve(
                verb,
                &t,
                &q,
                &HeaderMap::new(),
                Bytes::new(),
                &crate::http::auth::UserInfo::default(),
            )
            .await
    }
    .await;
    served.unwrap_or_else(ApiError::into_response)
}

type Body = futures::stream::BoxStream<'static, Result<Bytes, axum::Error>>;

async fn watch(registry: &Registry, path: &str) -> Body {
    let resp = get(registry, path).await;
    assert_eq!(resp.status(), StatusCode::OK, "{path}");
    resp.into_body().into_data_stream().boxed()
}

/// Events of a watch until one names `last` (bookmarks left out).
async fn until(body: &mut Body, last: &str) -> Vec<Value> {
    let mut buf = Vec::new();
    let mut out = Vec::new();
    loop {
        while let Some(end) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=end).collect();
            let ev: Value = serde_json::from_slice(&line).expect("a JSON line");
            if ev["type"] == "BOOKMARK" {
                continue;
            }
            let done = ev["object"]["metadata"]["name"] == last;
            out.push(ev);
            if done {
                return out;
            }
        }
        let chunk = tokio::time::timeout(WAIT, body.next())
            .await
            .expect("an event in time")
            .expect("the watch is open")
            .expect("a chunk");
        buf.extend_from_slice(&chunk);
    }
}

fn put_pod(mem: &MemoryStorage, name: &str, node: &str, app: &str) -> u64 {
    let v = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": app}},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "i"}]},
    });
    mem.put(&format!("{PODS}{name}"), v.to_string())
}

async fn cached(mem: &Arc<MemoryStorage>) -> Registry {
    let registry = Registry::with_cache(mem.clone(), Kinds::builtin());
    let cache = registry.cache.clone().unwrap();
    assert!(cache.reached(mem.revision(), WAIT).await, "the cache fills");
    registry
}

#[tokio::test]
async fn watches_from_the_cache_send_what_the_storage_watch_sends() {
    let mem = Arc::new(MemoryStorage::new());
    put_pod(&mem, "seed", "n1", "web");
    let with_cache = cached(&mem).await;
    let without = Registry::with_storage(mem.clone(), Kinds::builtin());
    let rv = mem.revision();
    let queries = [
        format!("resourceVersion={rv}"),
        format!("resourceVersion={rv}&fieldSelector=spec.nodeName%3Dn1"),
        format!("resourceVersion={rv}&labelSelector=app%3Dweb"),
        format!("resourceVersion={rv}&fieldSelector=spec.nodeName!%3Dn2&labelSelector=app"),
    ];
    let mut pairs = Vec::new();
    for q in &queries {
        let path = format!("/api/v1/namespaces/default/pods?watch=true&{q}");
        pairs.push((
            q,
            watch(&with_cache, &path).await,
            watch(&without, &path).await,
        ));
    }
    // Pods enter and leave each selection: onto n1 and off it, relabelled,
    // deleted, and one that is not a JSON object at all.
    for i in 0..20 {
        let node = ["n1", "n2"][i % 2];
        let app = ["web", "db", "web"][i % 3];
        put_pod(&mem, &format!("p{}", i % 4), node, app);
        if i % 7 == 6 {
            mem.remove(&format!("{PODS}p{}", i % 4));
        }
    }
    mem.put(&format!("{PODS}broken"), "5");
    put_pod(&mem, "last", "n1", "web");
    for (q, mut cache_body, mut store_body) in pairs {
        let from_cache = until(&mut cache_body, "last").await;
        let from_store = until(&mut store_body, "last").await;
        assert!(from_store.len() > 3, "{q}: {from_store:?}");
        assert_eq!(from_cache, from_store, "{q}");
    }
}

#[tokio::test]
async fn many_watchers_share_the_cache_and_each_gets_every_event() {
    let mem = Arc::new(MemoryStorage::new());
    put_pod(&mem, "seed", "n1", "web");
    let registry = cached(&mem).await;
    let rv = mem.revision();
    // The storage would refuse the next call: no watch may reach it.
    mem.fail_next(StorageError::Unavailable("not asked".into()));
    let path = format!(
        "/api/v1/namespaces/default/pods?watch=true&resourceVersion={rv}&allowWatchBookmarks=true"
    );
    let mut bodies = Vec::new();
    for _ in 0..50 {
        bodies.push(watch(&registry, &path).await);
    }
    for i in 0..300 {
        put_pod(&mem, &format!("p{i:03}"), "n1", "web");
    }
    put_pod(&mem, "last", "n1", "web");
    for body in &mut bodies {
        let got = until(body, "last").await;
        let names: Vec<&str> = got
            .iter()
            .map(|e| e["object"]["metadata"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(names.len(), 301);
        assert_eq!(names[0], "p000");
        assert_eq!(names[299], "p299");
        assert!(got.iter().all(|e| e["type"] == "ADDED"));
    }
    // Every watcher is served by now, none by a storage watch of its own.
    assert!(mem.linearize().await.is_err(), "a watch asked the storage");
    let cache = registry.cache.clone().unwrap();
    assert!(
        cache
            .render_metrics()
            .contains("keel_watch_cache_watchers{resource=\"/registry/core/pods/\"} 50")
    );
    // An idle resource's watchers get bookmarks at the newest revision.
    mem.progress();
    let mut buf = Vec::new();
    let bookmark = loop {
        let chunk = tokio::time::timeout(WAIT, bodies[0].next())
            .await
            .expect("a bookmark in time")
            .unwrap()
            .unwrap();
        buf.extend_from_slice(&chunk);
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some(line) = text.lines().find(|l| l.contains("BOOKMARK")) {
            break serde_json::from_str::<Value>(line).unwrap();
        }
    };
    assert_eq!(
        bookmark["object"]["metadata"]["resourceVersion"],
        mem.revision().to_string()
    );
}

#[tokio::test]
async fn lists_through_the_registry_use_the_node_index() {
    let mem = Arc::new(MemoryStorage::new());
    for i in 0..30 {
        put_pod(&mem, &format!("p{i:02}"), &format!("n{}", i % 3), "web");
    }
    let registry = cached(&mem).await;
    let list = |path: String| {
        let registry = &registry;
        async move {
            let resp = get(registry, &path).await;
            assert_eq!(resp.status(), StatusCode::OK);
            let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
                .await
                .unwrap();
            serde_json::from_slice::<Value>(&body).unwrap()
        }
    };
    // Served from memory: the storage would refuse.
    mem.fail_next(StorageError::Unavailable("not asked".into()));
    let got = list("/api/v1/pods?resourceVersion=0&fieldSelector=spec.nodeName%3Dn1".into()).await;
    assert!(mem.linearize().await.is_err(), "the list read the storage");
    let names: Vec<&str> = got["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap())
        .collect();
    let want: Vec<String> = (0..30)
        .filter(|i| i % 3 == 1)
        .map(|i| format!("p{i:02}"))
        .collect();
    assert_eq!(names, want);
    assert_eq!(
        got["metadata"]["resourceVersion"],
        mem.revision().to_string()
    );
    // A consistent list of one namespace, with a label selector too.
    let got = list(
        "/api/v1/namespaces/default/pods?labelSelector=app%3Dweb&fieldSelector=spec.nodeName%3Dn2"
            .into(),
    )
    .await;
    assert_eq!(got["items"].as_array().unwrap().len(), 10);
}

#[tokio::test]
async fn lists_streamed_from_the_cache_are_the_storage_lists_byte_for_byte() {
    let mem = Arc::new(MemoryStorage::new());
    for i in 0..300 {
        let app = ["web", "db"][i % 2];
        put_pod(&mem, &format!("p{i:03}"), &format!("n{}", i % 7), app);
    }
    mem.put(&format!("{PODS}broken"), "5");
    mem.put(
        "/registry/core/pods/other/o1",
        json!({"metadata": {"name": "o1", "namespace": "other"}, "spec": {"nodeName": "n1"}})
            .to_string(),
    );
    let with_cache = cached(&mem).await;
    let without = Registry::with_storage(mem.clone(), Kinds::builtin());
    for path in [
        "/api/v1/pods",
        "/api/v1/pods?resourceVersion=0",
        "/api/v1/namespaces/default/pods",
        "/api/v1/pods?labelSelector=app%3Dweb",
        "/api/v1/pods?fieldSelector=spec.nodeName%3Dn1",
        "/api/v1/pods?fieldSelector=metadata.namespace%3Dother",
        "/api/v1/namespaces/default/pods?limit=1000&fieldSelector=spec.nodeName%3Dn3",
        "/api/v1/pods?limit=10",
    ] {
        let read = |r: Response| async move {
            let code = r.status();
            let warnings: Vec<String> = r
                .headers()
                .get_all("warning")
                .iter()
                .map(|v| v.to_str().unwrap().to_string())
                .collect();
            let body = axum::body::to_bytes(r.into_body(), usize::MAX)
                .await
                .unwrap();
            (code, warnings, body)
        };
        let from_cache = read(get(&with_cache, path).await).await;
        let from_store = read(get(&without, path).await).await;
        assert_eq!(from_cache.0, StatusCode::OK, "{path}");
        assert_eq!(from_cache.1, from_store.1, "{path}: warnings");
        assert_eq!(
            String::from_utf8_lossy(&from_cache.2),
            String::from_utf8_lossy(&from_store.2),
            "{path}"
        );
    }
}
