//! The registry's verbs over in-memory storage, through [`Registry::serve`]
//! as the router calls it: status codes and `Status` reasons of each verb's
//! error paths, the guaranteed update under a racing write, finalizers, and
//! the status and scale subresources. No Raft, so each runs in milliseconds.

use std::sync::Arc;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use keel_store::StoreError;
use serde_json::{Value, json};

use super::Registry;
use super::storage::{Consistency, MAX_UPDATE_ATTEMPTS, MemoryStorage, Storage, StorageError};
use crate::error::ApiError;
use crate::http::auth::UserInfo;
use crate::kinds::Kinds;
use crate::request::{self, RequestTarget};

const CM: &str = "/api/v1/namespaces/default/configmaps";
const DEPLOY: &str = "/apis/apps/v1/namespaces/default/deployments";

/// A registry over memory, with the namespace `default`.
struct Api {
    storage: Arc<MemoryStorage>,
    registry: Registry,
}

/// An answer: its status code, body, and `Retry-After` header.
struct Answer {
    code: StatusCode,
    body: Value,
    retry_after: Option<String>,
}

impl Answer {
    fn reason(&self) -> &str {
        self.body["reason"].as_str().unwrap_or_default()
    }
}

impl Api {
    async fn new() -> Api {
        let storage = Arc::new(MemoryStorage::new());
        let registry = Registry::with_storage(storage.clone(), Kinds::builtin());
        let api = Api { storage, registry };
        let ns = api
            .call(
                Method::POST,
                "/api/v1/namespaces",
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}}),
            )
            .await;
        assert_eq!(ns.code, StatusCode::CREATED, "{}", ns.body);
        api
    }

    /// `method` on `path` (with its query) as the router serves it; a
    /// `Value::Null` body sends none.
    async fn call(&self, method: Method, path: &str, body: Value) -> Answer {
        self.call_as(&UserInfo::default(), method, path, body).await
    }

    /// [`Api::call`] as `user`.
    async fn call_as(&self, user: &UserInfo, method: Method, path: &str, body: Value) -> Answer {
        let resp = self.respond_as(user, method, path, body).await;
        let code = resp.status();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_string());
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .expect("a body");
        let body = serde_json::from_slice(&bytes).expect("a JSON body");
        Answer {
            code,
            body,
            retry_after,
        }
    }

    /// The response of [`Api::call`], its body unread (a watch streams).
    async fn respond(&self, method: Method, path: &str, body: Value) -> Response {
        self.respond_as(&UserInfo::default(), method, path, body)
            .await
    }

    /// [`Api::respond`] as `user`.
    async fn respond_as(
        &self,
        user: &UserInfo,
        method: Method,
        path: &str,
        body: Value,
    ) -> Response {
        let uri: Uri = path.parse().expect("a valid path");
        let segs = request::segments(uri.path());
        let (group, version, rest) = match segs.as_slice() {
            ["api", v, rest @ ..] => ("", *v, rest),
            ["apis", g, v, rest @ ..] => (*g, *v, rest),
            _ => panic!("not an API path: {path}"),
        };
        let body = match body {
            Value::Null => Bytes::new(),
            v => Bytes::from(v.to_string()),
        };
        let mut headers = HeaderMap::new();
        let content_type = if method == Method::PATCH {
            "application/merge-patch+json"
        } else {
            "application/json"
        };
        headers.insert("content-type", content_type.parse().unwrap());
        let q = request::query(&uri);
        let served = async {
            let t = RequestTarget::resolve(&self.registry.kinds, group, version, rest)?;
            let verb = t.verb(&method, &q)?;
            self.registry
                .serve(verb, &t, &q, &headers, body, user)
                .await
        }
        .await;
        served.unwrap_or_else(ApiError::into_response)
    }

    async fn get(&self, path: &str) -> Answer {
        self.call(Method::GET, path, Value::Null).await
    }

    /// Create a config map `name` with `data`; the stored object.
    async fn config_map(&self, name: &str, data: Value) -> Value {
        let a = self
            .call(
                Method::POST,
                CM,
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}),
            )
            .await;
        assert_eq!(a.code, StatusCode::CREATED, "{}", a.body);
        a.body
    }

    async fn deployment(&self, name: &str) -> Value {
        let a = self
            .call(
                Method::POST,
                DEPLOY,
                json!({
                    "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
                    "spec": {
                        "replicas": 1,
                        "selector": {"matchLabels": {"app": name}},
                        "template": {
                            "metadata": {"labels": {"app": name}},
                            "spec": {"containers": [{"name": "c", "image": "nginx"}]},
                        },
                    },
                }),
            )
            .await;
        assert_eq!(a.code, StatusCode::CREATED, "{}", a.body);
        a.body
    }
}

fn rv(obj: &Value) -> &str {
    obj.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .expect("a resourceVersion")
}

#[tokio::test]
async fn get_of_a_missing_object_is_404_naming_it() {
    let api = Api::new().await;
    let a = api.get(&format!("{CM}/nope")).await;
    assert_eq!(a.code, StatusCode::NOT_FOUND);
    assert_eq!(a.reason(), "NotFound");
    assert_eq!(a.body["message"], "configmaps \"nope\" not found");
    assert_eq!(
        a.body["details"],
        json!({"name": "nope", "group": "", "kind": "configmaps"})
    );
}

#[tokio::test]
async fn get_checks_a_too_new_resource_version_before_the_404() {
    let api = Api::new().await;
    let a = api.get(&format!("{CM}/nope?resourceVersion=9999")).await;
    assert_eq!(a.code, StatusCode::GATEWAY_TIMEOUT, "{}", a.body);
    assert_eq!(a.reason(), "Timeout");
}

#[tokio::test]
async fn list_of_an_empty_namespace_is_an_empty_list() {
    let api = Api::new().await;
    let a = api.get("/api/v1/namespaces/empty/configmaps").await;
    assert_eq!(a.code, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["kind"], "ConfigMapList");
    assert_eq!(a.body["items"], json!([]));
    assert_eq!(
        a.body["metadata"]["resourceVersion"],
        api.storage.revision().to_string()
    );
}

#[tokio::test]
async fn create_is_201_and_a_taken_name_409_already_exists() {
    let api = Api::new().await;
    let created = api.config_map("a", json!({"k": "v"})).await;
    assert_eq!(rv(&created), api.storage.revision().to_string());
    assert!(created.pointer("/metadata/uid").is_some());
    let again = api
        .call(
            Method::POST,
            CM,
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}}),
        )
        .await;
    assert_eq!(again.code, StatusCode::CONFLICT);
    assert_eq!(again.reason(), "AlreadyExists");
    assert_eq!(again.body["message"], "configmaps \"a\" already exists");
    // A dry run answers as the write would.
    let dry = api
        .call(
            Method::POST,
            &format!("{CM}?dryRun=All"),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}}),
        )
        .await;
    assert_eq!(
        (dry.code, dry.reason()),
        (StatusCode::CONFLICT, "AlreadyExists")
    );
}

#[tokio::test]
async fn create_in_a_missing_namespace_is_404_for_the_namespace() {
    let api = Api::new().await;
    let a = api
        .call(
            Method::POST,
            "/api/v1/namespaces/elsewhere/configmaps",
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}}),
        )
        .await;
    assert_eq!(a.code, StatusCode::NOT_FOUND);
    assert_eq!(a.body["message"], "namespaces \"elsewhere\" not found");
}

#[tokio::test]
async fn update_with_a_stale_resource_version_is_409_conflict() {
    let api = Api::new().await;
    let mut obj = api.config_map("a", json!({"k": "1"})).await;
    obj["data"]["k"] = json!("2");
    let first = api.call(Method::PUT, &format!("{CM}/a"), obj.clone()).await;
    assert_eq!(first.code, StatusCode::OK, "{}", first.body);
    assert_eq!(rv(&first.body), api.storage.revision().to_string());
    assert_ne!(rv(&first.body), rv(&obj));
    // The same resourceVersion again: someone (the first PUT) wrote since.
    obj["data"]["k"] = json!("3");
    let stale = api.call(Method::PUT, &format!("{CM}/a"), obj).await;
    assert_eq!(stale.code, StatusCode::CONFLICT);
    assert_eq!(stale.reason(), "Conflict");
    assert_eq!(
        stale.body["message"],
        "Operation cannot be fulfilled on configmaps \"a\": the object has been modified; please apply your changes to the latest version and try again"
    );
    assert_eq!(api.get(&format!("{CM}/a")).await.body["data"]["k"], "2");
}

#[tokio::test]
async fn update_of_a_missing_object_is_404() {
    let api = Api::new().await;
    let a = api
        .call(
            Method::PUT,
            &format!("{CM}/gone"),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "gone"}}),
        )
        .await;
    assert_eq!((a.code, a.reason()), (StatusCode::NOT_FOUND, "NotFound"));
    assert_eq!(a.body["message"], "configmaps \"gone\" not found");
}

#[tokio::test]
async fn a_patch_raced_by_another_write_is_reapplied_to_the_new_object() {
    let api = Api::new().await;
    api.config_map("a", json!({"k": "1"})).await;
    let cm = api.registry.kinds.find("", "v1", "configmaps").unwrap();
    let key = cm.key(Some("default"), "a");
    let (stored, _) = api
        .storage
        .get(&key, Consistency::Linearizable)
        .await
        .expect("stored under the kind's key");
    let mut other: Value = serde_json::from_slice(&stored.value).unwrap();
    other["data"]["other"] = json!("x");
    let before = api.storage.revision();
    api.storage.before_next_write(move |m| {
        m.put(&key, other.to_string());
    });
    let a = api
        .call(
            Method::PATCH,
            &format!("{CM}/a"),
            json!({"data": {"k": "2"}}),
        )
        .await;
    assert_eq!(a.code, StatusCode::OK, "{}", a.body);
    // The racing write landed, then the patch on top of it.
    assert_eq!(api.storage.revision(), before + 2);
    assert_eq!(a.body["data"], json!({"k": "2", "other": "x"}));
    assert_eq!(rv(&a.body), (before + 2).to_string());
    let now = api.get(&format!("{CM}/a")).await;
    assert_eq!(now.body["data"], json!({"k": "2", "other": "x"}));
}

/// Writes `value` at `key` before each of the next `left` conditional
/// writes (and this one): another client that always gets there first.
fn race(m: &MemoryStorage, key: String, value: Vec<u8>, left: usize) {
    m.put(&key, value.clone());
    if left > 1 {
        m.before_next_write(move |m| race(m, key, value, left - 1));
    }
}

#[tokio::test]
async fn an_update_that_loses_every_race_is_409_conflict() {
    let api = Api::new().await;
    api.config_map("a", json!({"k": "1"})).await;
    let key = api
        .registry
        .kinds
        .find("", "v1", "configmaps")
        .unwrap()
        .key(Some("default"), "a");
    let (stored, _) = api.storage.get(&key, Consistency::Local).await.unwrap();
    let before = api.storage.revision();
    api.storage
        .before_next_write(move |m| race(m, key, stored.value, MAX_UPDATE_ATTEMPTS));
    let a = api
        .call(
            Method::PATCH,
            &format!("{CM}/a"),
            json!({"data": {"k": "2"}}),
        )
        .await;
    assert_eq!((a.code, a.reason()), (StatusCode::CONFLICT, "Conflict"));
    assert_eq!(
        a.body["message"],
        "Operation cannot be fulfilled on configmaps \"a\": the object has been modified; please apply your changes to the latest version and try again"
    );
    assert_eq!(
        api.storage.revision(),
        before + MAX_UPDATE_ATTEMPTS as u64,
        "only the other client's writes landed"
    );
}

#[tokio::test]
async fn delete_with_a_mismatched_uid_precondition_is_409() {
    let api = Api::new().await;
    let obj = api.config_map("a", json!({})).await;
    let uid = obj["metadata"]["uid"].as_str().unwrap();
    let a = api
        .call(
            Method::DELETE,
            &format!("{CM}/a"),
            json!({"preconditions": {"uid": "not-it"}}),
        )
        .await;
    assert_eq!((a.code, a.reason()), (StatusCode::CONFLICT, "Conflict"));
    assert_eq!(
        a.body["message"],
        format!(
            "Operation cannot be fulfilled on ConfigMap \"a\": the UID in the precondition (not-it) does not match the UID in record ({uid}). The object might have been deleted and then recreated"
        )
    );
    assert_eq!(api.get(&format!("{CM}/a")).await.code, StatusCode::OK);
}

#[tokio::test]
async fn delete_of_a_missing_object_is_404() {
    let api = Api::new().await;
    let a = api
        .call(Method::DELETE, &format!("{CM}/gone"), Value::Null)
        .await;
    assert_eq!((a.code, a.reason()), (StatusCode::NOT_FOUND, "NotFound"));
    // And a deleted one is gone.
    api.config_map("b", json!({})).await;
    let deleted = api
        .call(Method::DELETE, &format!("{CM}/b"), Value::Null)
        .await;
    assert_eq!(deleted.code, StatusCode::OK, "{}", deleted.body);
    assert_eq!(
        api.get(&format!("{CM}/b")).await.code,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn delete_with_finalizers_marks_the_object_until_the_last_one_goes() {
    let api = Api::new().await;
    let a = api
        .call(
            Method::POST,
            CM,
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "f", "finalizers": ["example.com/keep"]}}),
        )
        .await;
    assert_eq!(a.code, StatusCode::CREATED, "{}", a.body);
    let marked = api
        .call(Method::DELETE, &format!("{CM}/f"), Value::Null)
        .await;
    assert_eq!(marked.code, StatusCode::OK, "{}", marked.body);
    assert!(marked.body["metadata"]["deletionTimestamp"].is_string());
    let kept = api.get(&format!("{CM}/f")).await;
    assert_eq!(kept.code, StatusCode::OK);
    assert_eq!(
        kept.body["metadata"]["deletionTimestamp"],
        marked.body["metadata"]["deletionTimestamp"]
    );
    assert_eq!(rv(&kept.body), rv(&marked.body));
    // Removing the last finalizer deletes it.
    let done = api
        .call(
            Method::PATCH,
            &format!("{CM}/f"),
            json!({"metadata": {"finalizers": null}}),
        )
        .await;
    assert_eq!(done.code, StatusCode::OK, "{}", done.body);
    assert_eq!(
        api.get(&format!("{CM}/f")).await.code,
        StatusCode::NOT_FOUND
    );
}

/// Every write's event names the user who asked for it, with the user's
/// groups, whichever path wrote: a create, a patch (the guaranteed update),
/// a delete that only marks the object (finalizers), and the patch that
/// removes the last finalizer and so deletes it.
#[tokio::test]
async fn every_write_names_the_requesting_user_in_its_event() {
    let api = Api::new().await;
    let user = |name: &str, groups: &[&str]| UserInfo {
        name: name.into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        ..UserInfo::default()
    };
    let alice = user("alice", &["dev", "system:authenticated"]);
    let bob = user("bob", &["ops", "system:authenticated"]);
    let before = api.storage.revision();
    let path = format!("{CM}/h");
    let steps = [
        (
            &alice,
            Method::POST,
            CM,
            json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "h", "finalizers": ["example.com/keep"]}}),
            StatusCode::CREATED,
        ),
        (
            &bob,
            Method::PATCH,
            path.as_str(),
            json!({"data": {"a": "2"}}),
            StatusCode::OK,
        ),
        (
            &alice,
            Method::DELETE,
            path.as_str(),
            Value::Null,
            StatusCode::OK,
        ),
        (
            &bob,
            Method::PATCH,
            path.as_str(),
            json!({"metadata": {"finalizers": null}}),
            StatusCode::OK,
        ),
    ];
    for (who, method, path, body, code) in steps {
        let a = api.call_as(who, method.clone(), path, body).await;
        assert_eq!(a.code, code, "{method} {path} as {}: {}", who.name, a.body);
    }
    let events: Vec<_> = api
        .storage
        .events()
        .iter()
        .filter(|e| e.revision > before)
        .map(|e| (e.kind, e.actor.as_deref().cloned()))
        .collect();
    let (a, b) = (Some(alice.actor()), Some(bob.actor()));
    use keel_store::EventKind::{Added, Deleted, Modified};
    assert_eq!(
        events,
        [
            (Added, a.clone()),
            (Modified, b.clone()),
            (Modified, a),
            (Deleted, b)
        ]
    );
    assert_eq!(
        alice.actor(),
        keel_store::Actor::new("alice", ["dev", "system:authenticated"])
    );
}

#[tokio::test]
async fn a_status_write_changes_only_the_status() {
    let api = Api::new().await;
    let mut d = api.deployment("web").await;
    d["spec"]["replicas"] = json!(5);
    d["status"] = json!({"replicas": 3});
    let a = api
        .call(Method::PUT, &format!("{DEPLOY}/web/status"), d)
        .await;
    assert_eq!(a.code, StatusCode::OK, "{}", a.body);
    let now = api.get(&format!("{DEPLOY}/web")).await.body;
    assert_eq!(now["spec"]["replicas"], 1);
    assert_eq!(now["status"]["replicas"], 3);
    assert_eq!(now["metadata"]["generation"], 1);
}

#[tokio::test]
async fn scale_reads_and_writes_the_replicas_of_a_deployment() {
    let api = Api::new().await;
    api.deployment("web").await;
    let scale = api.get(&format!("{DEPLOY}/web/scale")).await;
    assert_eq!(scale.code, StatusCode::OK, "{}", scale.body);
    assert_eq!(scale.body["kind"], "Scale");
    assert_eq!(scale.body["spec"]["replicas"], 1);
    assert_eq!(scale.body["status"]["selector"], "app=web");
    let put = api
        .call(
            Method::PUT,
            &format!("{DEPLOY}/web/scale"),
            json!({"apiVersion": "autoscaling/v1", "kind": "Scale",
                   "metadata": {"name": "web", "namespace": "default"},
                   "spec": {"replicas": 4}}),
        )
        .await;
    assert_eq!(put.code, StatusCode::OK, "{}", put.body);
    assert_eq!(put.body["spec"]["replicas"], 4);
    assert_eq!(rv(&put.body), api.storage.revision().to_string());
    let d = api.get(&format!("{DEPLOY}/web")).await.body;
    assert_eq!(d["spec"]["replicas"], 4);
    assert_eq!(d["metadata"]["generation"], 2);
}

/// A storage that cannot answer now is a 503 the client retries, with the
/// very `Status` the store's own error gave before the storage seam.
#[tokio::test]
async fn an_unavailable_storage_is_503_as_the_store_error_was() {
    let api = Api::new().await;
    api.config_map("a", json!({})).await;
    let cause = || StoreError::NoLeader("no leader elected".into());
    let before = ApiError::from(cause()).status();
    let requests = [
        (Method::GET, format!("{CM}/a"), Value::Null),
        (Method::GET, CM.to_string(), Value::Null),
        (
            Method::POST,
            CM.to_string(),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b"}}),
        ),
        (
            Method::PATCH,
            format!("{CM}/a"),
            json!({"data": {"k": "v"}}),
        ),
        (Method::DELETE, format!("{CM}/a"), Value::Null),
    ];
    for (method, path, body) in requests {
        api.storage.fail_next(StorageError::from(cause()));
        let a = api.call(method.clone(), &path, body).await;
        assert_eq!(a.code, StatusCode::SERVICE_UNAVAILABLE, "{method} {path}");
        assert_eq!(a.body, before, "{method} {path}");
        assert_eq!(a.retry_after.as_deref(), Some("1"), "{method} {path}");
    }
    // Nothing was written, and the next call goes through.
    assert_eq!(api.get(&format!("{CM}/a")).await.code, StatusCode::OK);
    assert_eq!(
        api.get(&format!("{CM}/b")).await.code,
        StatusCode::NOT_FOUND
    );
}

/// The next line of a watch, within 5 seconds.
async fn next_event(
    body: &mut (impl futures::Stream<Item = Result<Bytes, axum::Error>> + Unpin),
    buf: &mut Vec<u8>,
) -> Value {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        if let Some(end) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=end).collect();
            return serde_json::from_slice(&line).expect("a JSON line");
        }
        let chunk = tokio::time::timeout_at(deadline, body.next())
            .await
            .expect("a watch event within 5 s")
            .expect("the watch is open")
            .expect("a chunk");
        buf.extend_from_slice(&chunk);
    }
}

#[tokio::test]
async fn a_watch_sends_the_current_state_then_changes() {
    let api = Api::new().await;
    api.config_map("a", json!({})).await;
    let resp = api
        .respond(Method::GET, &format!("{CM}?watch=true"), Value::Null)
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body().into_data_stream();
    let mut buf = Vec::new();
    let first = next_event(&mut body, &mut buf).await;
    assert_eq!(first["type"], "ADDED");
    assert_eq!(first["object"]["metadata"]["name"], "a");
    let b = api.config_map("b", json!({})).await;
    let second = next_event(&mut body, &mut buf).await;
    assert_eq!(second["type"], "ADDED");
    assert_eq!(second["object"]["metadata"]["name"], "b");
    assert_eq!(rv(&second["object"]), rv(&b));
    api.call(Method::DELETE, &format!("{CM}/a"), Value::Null)
        .await;
    let third = next_event(&mut body, &mut buf).await;
    assert_eq!(third["type"], "DELETED");
    assert_eq!(third["object"]["metadata"]["name"], "a");
}

/// A kind served in two versions from one store: each verb answers in the
/// version asked, field selectors use its field names, and a watch of one
/// version sees writes made through the other, converted.
#[tokio::test]
async fn two_versions_share_one_store() {
    const V1: &str = "/apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers";
    const V2: &str = "/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers";
    const EV: &str = "/apis/events.k8s.io/v1/namespaces/default/events";
    let api = Api::new().await;
    let resp = api
        .respond(Method::GET, &format!("{V2}?watch=true"), Value::Null)
        .await;
    let mut body = resp.into_body().into_data_stream();
    let mut buf = Vec::new();
    let created = api
        .call(Method::POST, V1, json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web"}, "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"},
            "maxReplicas": 3, "targetCPUUtilizationPercentage": 50}}))
        .await;
    assert_eq!(created.code, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.body["apiVersion"], "autoscaling/v1");
    let seen = next_event(&mut body, &mut buf).await;
    assert_eq!(seen["type"], "ADDED");
    assert_eq!(seen["object"]["apiVersion"], "autoscaling/v2");
    assert_eq!(
        seen["object"]["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
        50
    );
    assert_eq!(rv(&seen["object"]), rv(&created.body));
    // An update through v2 is read through v1.
    let mut v2 = api
        .call(Method::GET, &format!("{V2}/web"), Value::Null)
        .await
        .body;
    v2["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] = json!(70);
    let put = api.call(Method::PUT, &format!("{V2}/web"), v2).await;
    assert_eq!(put.code, StatusCode::OK, "{}", put.body);
    let v1 = api
        .call(Method::GET, &format!("{V1}/web"), Value::Null)
        .await
        .body;
    assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 70);
    assert_eq!(rv(&v1), rv(&put.body));
    let list = api.call(Method::GET, V1, Value::Null).await.body;
    assert_eq!(list["kind"], "HorizontalPodAutoscalerList");
    assert_eq!(list["items"][0]["apiVersion"], "autoscaling/v1");
    assert_eq!(next_event(&mut body, &mut buf).await["type"], "MODIFIED");

    // Events: written as v1, selected by events.k8s.io's field names.
    let ev = api
        .call(Method::POST, "/api/v1/namespaces/default/events", json!({"apiVersion": "v1", "kind": "Event",
            "metadata": {"name": "e"}, "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default"},
            "reason": "Started", "message": "ok"}))
        .await;
    assert_eq!(ev.code, StatusCode::CREATED, "{}", ev.body);
    let hit = api
        .call(
            Method::GET,
            &format!("{EV}?fieldSelector=regarding.name%3Dp"),
            Value::Null,
        )
        .await
        .body;
    assert_eq!(hit["items"][0]["note"], "ok");
    let miss = api
        .call(
            Method::GET,
            &format!("{EV}?fieldSelector=regarding.name%3Dq"),
            Value::Null,
        )
        .await
        .body;
    assert_eq!(miss["items"], json!([]));
    let deleted = api
        .call(Method::DELETE, &format!("{EV}/e"), Value::Null)
        .await;
    // Events are not among the kinds whose DELETE returns the object.
    assert_eq!(deleted.code, StatusCode::OK, "{}", deleted.body);
    assert_eq!(deleted.body["kind"], "Status", "{}", deleted.body);
    assert_eq!(deleted.body["details"]["name"], "e", "{}", deleted.body);
    assert_eq!(
        deleted.body["details"]["group"], "events.k8s.io",
        "{}",
        deleted.body
    );
    let gone = api
        .call(
            Method::GET,
            "/api/v1/namespaces/default/events/e",
            Value::Null,
        )
        .await;
    assert_eq!(gone.code, StatusCode::NOT_FOUND);
}
