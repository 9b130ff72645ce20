//! The example server's one resource, `flunders.wardle.example.com/v1alpha1`
//! (namespaced, kind `Flunder`), kept in memory: discovery, list, get,
//! create, delete and watch (a watch from a resourceVersion replays what
//! came after it; from none or `0` it starts with every object as `ADDED`).
//! A created Flunder records who created it, as the front proxy named the
//! user, in its annotations.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::broadcast;

use super::RemoteUser;

pub const GROUP: &str = "wardle.example.com";
pub const VERSION: &str = "v1alpha1";
/// The annotation holding the creator's user name.
pub const CREATED_BY: &str = "wardle.example.com/created-by";
/// The annotation holding the creator's groups, comma-separated.
pub const CREATED_BY_GROUPS: &str = "wardle.example.com/created-by-groups";

/// One change: its revision, type and object.
#[derive(Clone, Debug)]
struct Change {
    revision: u64,
    kind: &'static str,
    object: Value,
}

#[derive(Default)]
struct Objects {
    revision: u64,
    by_key: BTreeMap<(String, String), Value>,
    history: Vec<Change>,
}

/// The Flunders and the watchers' channel.
#[derive(Clone)]
pub struct Store {
    objects: Arc<Mutex<Objects>>,
    changes: broadcast::Sender<Change>,
}

impl Default for Store {
    fn default() -> Store {
        Store {
            objects: Arc::default(),
            changes: broadcast::channel(1024).0,
        }
    }
}

fn status(code: StatusCode, reason: &str, message: String) -> Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "reason": reason, "message": message, "code": code.as_u16()});
    (code, axum::Json(body)).into_response()
}

fn not_found(name: &str) -> Response {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("flunders.{GROUP} {name:?} not found"),
    )
}

/// `GET /apis/wardle.example.com/v1alpha1`.
pub async fn resource_list() -> Response {
    axum::Json(json!({
        "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": format!("{GROUP}/{VERSION}"),
        "resources": [{"name": "flunders", "singularName": "flunder", "namespaced": true,
            "kind": "Flunder", "verbs": ["create", "delete", "get", "list", "watch"],
            "shortNames": ["fl"]}],
    }))
    .into_response()
}

/// `GET …/flunders` (every namespace).
pub async fn list_all(
    State(s): State<Store>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    s.list_or_watch(None, &q)
}

/// `GET …/namespaces/{ns}/flunders`.
pub async fn list(
    State(s): State<Store>,
    Path(ns): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    s.list_or_watch(Some(ns), &q)
}

/// `POST …/namespaces/{ns}/flunders`.
pub async fn create(
    State(s): State<Store>,
    Path(ns): Path<String>,
    Extension(user): Extension<RemoteUser>,
    body: Bytes,
) -> Response {
    let Ok(mut obj) = serde_json::from_slice::<Value>(&body) else {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "the body is not JSON".into(),
        );
    };
    if obj["kind"] != "Flunder" {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "expected a Flunder".into(),
        );
    }
    let Some(name) = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .map(str::to_string)
    else {
        return status(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            "metadata.name: Required value".into(),
        );
    };
    let mut objects = s.objects.lock().unwrap();
    let key = (ns.clone(), name.clone());
    if objects.by_key.contains_key(&key) {
        return status(
            StatusCode::CONFLICT,
            "AlreadyExists",
            format!("flunders.{GROUP} {name:?} already exists"),
        );
    }
    objects.revision += 1;
    let rv = objects.revision;
    let meta = &mut obj["metadata"];
    meta["namespace"] = json!(ns);
    meta["uid"] = json!(format!("00000000-0000-4000-8000-{rv:012}"));
    meta["resourceVersion"] = json!(rv.to_string());
    meta["creationTimestamp"] = json!(keel_apiserver::meta::rfc3339(
        keel_apiserver::meta::now_secs()
    ));
    if !meta["annotations"].is_object() {
        meta["annotations"] = json!({});
    }
    meta["annotations"][CREATED_BY] = json!(user.name);
    meta["annotations"][CREATED_BY_GROUPS] = json!(user.groups.join(","));
    objects.by_key.insert(key, obj.clone());
    s.record(&mut objects, "ADDED", obj.clone());
    (StatusCode::CREATED, axum::Json(obj)).into_response()
}

/// `GET …/namespaces/{ns}/flunders/{name}`.
pub async fn get(State(s): State<Store>, Path((ns, name)): Path<(String, String)>) -> Response {
    match s.objects.lock().unwrap().by_key.get(&(ns, name.clone())) {
        Some(o) => axum::Json(o.clone()).into_response(),
        None => not_found(&name),
    }
}

/// `DELETE …/namespaces/{ns}/flunders/{name}`.
pub async fn delete(State(s): State<Store>, Path((ns, name)): Path<(String, String)>) -> Response {
    let mut objects = s.objects.lock().unwrap();
    let Some(mut obj) = objects.by_key.remove(&(ns, name.clone())) else {
        return not_found(&name);
    };
    objects.revision += 1;
    obj["metadata"]["resourceVersion"] = json!(objects.revision.to_string());
    s.record(&mut objects, "DELETED", obj.clone());
    axum::Json(obj).into_response()
}

impl Store {
    fn record(&self, objects: &mut Objects, kind: &'static str, object: Value) {
        let change = Change {
            revision: objects.revision,
            kind,
            object,
        };
        objects.history.push(change.clone());
        // No receiver: nobody watches.
        let _ = self.changes.send(change);
    }

    fn list_or_watch(&self, ns: Option<String>, q: &BTreeMap<String, String>) -> Response {
        let in_ns = move |o: &Value| {
            ns.as_deref()
                .is_none_or(|n| o.pointer("/metadata/namespace").and_then(Value::as_str) == Some(n))
        };
        let objects = self.objects.lock().unwrap();
        if !q.get("watch").is_some_and(|w| w == "true" || w == "1") {
            let items: Vec<Value> = objects
                .by_key
                .values()
                .filter(|o| in_ns(o))
                .cloned()
                .collect();
            return axum::Json(json!({
                "kind": "FlunderList", "apiVersion": format!("{GROUP}/{VERSION}"),
                "metadata": {"resourceVersion": objects.revision.to_string()}, "items": items,
            }))
            .into_response();
        }
        let from: u64 = q
            .get("resourceVersion")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let first: Vec<Change> = if from == 0 {
            objects
                .by_key
                .values()
                .map(|o| Change {
                    revision: objects.revision,
                    kind: "ADDED",
                    object: o.clone(),
                })
                .collect()
        } else {
            objects
                .history
                .iter()
                .filter(|c| c.revision > from)
                .cloned()
                .collect()
        };
        // Subscribed under the lock: no change falls between the replay
        // and the live events.
        let rx = self.changes.subscribe();
        drop(objects);
        let line = |c: &Change| {
            let mut l = json!({"type": c.kind, "object": c.object}).to_string();
            l.push('\n');
            Ok::<_, std::convert::Infallible>(Bytes::from(l))
        };
        let replay: Vec<_> = first
            .iter()
            .filter(|c| in_ns(&c.object))
            .map(line)
            .collect();
        let in_ns = std::sync::Arc::new(in_ns);
        let live = futures::stream::unfold(rx, move |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(c) => return Some((c, rx)),
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
        let live = futures::StreamExt::filter_map(live, move |c| {
            let in_ns = in_ns.clone();
            async move { in_ns(&c.object).then(|| line(&c)) }
        });
        let stream = futures::StreamExt::chain(futures::stream::iter(replay), live);
        (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            Body::from_stream(stream),
        )
            .into_response()
    }
}
