//! Deletion through [`Registry::serve`] over in-memory storage, as the
//! router calls it: DeleteOptions from the body or the query, each
//! propagation policy, preconditions, dry run, the generation bump, graceful
//! pods, the ObjectMeta rules while terminating, and the namespace
//! lifecycle (Terminating, `/finalize`, 403 on create).

use std::sync::Arc;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::http::auth::UserInfo;
use crate::kinds::Kinds;
use crate::meta;
use crate::registry::Registry;
use crate::registry::storage::MemoryStorage;
use crate::request::{self, RequestTarget};

const CM: &str = "/api/v1/namespaces/default/configmaps";
const PODS: &str = "/api/v1/namespaces/default/pods";
const NS: &str = "/api/v1/namespaces";

struct Api {
    registry: Registry,
}

struct Answer {
    code: StatusCode,
    body: Value,
}

impl Api {
    async fn new() -> Api {
        let registry = Registry::with_storage(Arc::new(MemoryStorage::new()), Kinds::builtin());
        let api = Api { registry };
        api.created(
            NS,
            json!({"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": "default"}}),
        )
        .await;
        api
    }

    /// `method` on `path` with `body` (raw bytes; empty for none).
    async fn raw(&self, method: Method, path: &str, body: &str) -> Answer {
        let uri: Uri = path.parse().unwrap();
        let segs = request::segments(uri.path());
        let (group, version, rest) = match segs.as_slice() {
            ["api", v, rest @ ..] => ("", *v, rest),
            ["apis", g, v, rest @ ..] => (*g, *v, rest),
            _ => panic!("not an API path: {path}"),
        };
        let mut headers = HeaderMap::new();
        let ct = if method == Method::PATCH {
            "application/merge-patch+json"
        } else {
            "application/json"
        };
        headers.insert("content-type", ct.parse().unwrap());
        let q = request::query(&uri);
        let body = Bytes::from(body.to_string());
        let resp = async {
            let t = RequestTarget::resolve(&self.registry.kinds, group, version, rest)?;
            let verb = t.verb(&method, &q)?;
            self.registry
                .serve(verb, &t, &q, &headers, body, &UserInfo::default())
                .await
        }
        .await
        .unwrap_or_else(axum::response::IntoResponse::into_response);
        let code = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        Answer {
            code,
            body: serde_json::from_slice(&bytes).unwrap(),
        }
    }

    async fn call(&self, method: Method, path: &str, body: Value) -> Answer {
        let body = if body.is_null() {
            String::new()
        } else {
            body.to_string()
        };
        self.raw(method, path, &body).await
    }

    async fn created(&self, path: &str, obj: Value) -> Value {
        let a = self.call(Method::POST, path, obj).await;
        assert_eq!(a.code, StatusCode::CREATED, "{}", a.body);
        a.body
    }

    async fn get(&self, path: &str) -> Answer {
        self.call(Method::GET, path, Value::Null).await
    }

    async fn delete(&self, path: &str, opts: Value) -> Answer {
        self.call(Method::DELETE, path, opts).await
    }

    /// A config map `name` with `finalizers`.
    async fn cm(&self, name: &str, finalizers: &[&str]) -> Value {
        self.created(
            CM,
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": name, "finalizers": finalizers}, "data": {"k": "v"}}),
        )
        .await
    }

    /// A pod `name`, on `node` when given, with `grace` as its
    /// terminationGracePeriodSeconds when given.
    async fn pod(&self, name: &str, node: Option<&str>, grace: Option<i64>) -> Value {
        let mut spec = json!({"containers": [{"name": "c", "image": "nginx"}]});
        if let Some(n) = node {
            spec["nodeName"] = json!(n);
        }
        if let Some(g) = grace {
            spec["terminationGracePeriodSeconds"] = json!(g);
        }
        self.created(
            PODS,
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}),
        )
        .await
    }
}

fn finalizers(obj: &Value) -> Vec<&str> {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|f| f.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn ts(obj: &Value) -> i64 {
    obj.pointer("/metadata/deletionTimestamp")
        .and_then(Value::as_str)
        .and_then(meta::parse_rfc3339)
        .expect("a deletionTimestamp")
}

// ---- options ----

#[tokio::test]
async fn options_come_from_the_body_or_else_from_the_query() {
    let api = Api::new().await;
    api.cm("q", &["example.com/hold"]).await;
    // From the query.
    let a = api
        .delete(&format!("{CM}/q?propagationPolicy=Orphan"), Value::Null)
        .await;
    assert_eq!(a.code, StatusCode::OK, "{}", a.body);
    assert_eq!(finalizers(&a.body), ["example.com/hold", "orphan"]);
    // A body makes the query count for nothing (as kube-apiserver reads it).
    api.cm("b", &["example.com/hold"]).await;
    let a = api
        .delete(
            &format!("{CM}/b?propagationPolicy=Orphan"),
            json!({"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Foreground"}),
        )
        .await;
    assert_eq!(a.code, StatusCode::OK, "{}", a.body);
    assert_eq!(
        finalizers(&a.body),
        ["example.com/hold", "foregroundDeletion"]
    );
}

#[tokio::test]
async fn bad_options_are_400_or_422_as_kubernetes_words_them() {
    let api = Api::new().await;
    api.cm("a", &[]).await;
    let a = api
        .delete(
            &format!("{CM}/a"),
            json!({"orphanDependents": true, "propagationPolicy": "Foreground"}),
        )
        .await;
    assert_eq!(a.code, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.body);
    assert_eq!(a.body["reason"], "Invalid");
    assert_eq!(
        a.body["message"],
        "DeleteOptions.meta.k8s.io \"\" is invalid: propagationPolicy: Invalid value: \"Foreground\": orphanDependents and deletionPropagation cannot be both set"
    );
    assert_eq!(a.body["details"]["group"], "meta.k8s.io");
    assert_eq!(a.body["details"]["kind"], "DeleteOptions");
    let a = api
        .delete(&format!("{CM}/a?propagationPolicy=Sideways"), Value::Null)
        .await;
    assert_eq!(a.code, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.body);
    assert_eq!(
        a.body["details"]["causes"][0]["message"],
        "Unsupported value: \"Sideways\": supported values: \"Foreground\", \"Background\", \"Orphan\", \"nil\""
    );
    let a = api
        .delete(&format!("{CM}/a"), json!({"dryRun": ["Some"]}))
        .await;
    assert_eq!(a.code, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.body);
    for (path, body) in [
        (format!("{CM}/a?gracePeriodSeconds=soon"), ""),
        (format!("{CM}/a"), "{not json"),
        (format!("{CM}/a"), "[1]"),
        (format!("{CM}/a"), r#"{"gracePeriodSeconds": "30"}"#),
        (format!("{CM}/a"), r#"{"kind": "Pod"}"#),
    ] {
        let a = api.raw(Method::DELETE, &path, body).await;
        assert_eq!(a.code, StatusCode::BAD_REQUEST, "{path} {body}: {}", a.body);
    }
    // `null` is no options.
    api.cm("n", &[]).await;
    assert_eq!(
        api.raw(Method::DELETE, &format!("{CM}/n"), "null")
            .await
            .code,
        StatusCode::OK
    );
    // Nothing above deleted it.
    assert_eq!(api.get(&format!("{CM}/a")).await.code, StatusCode::OK);
}

// ---- propagation ----

#[tokio::test]
async fn background_removes_at_once_and_answers_a_status() {
    let api = Api::new().await;
    let cm = api.cm("a", &[]).await;
    let a = api
        .delete(
            &format!("{CM}/a"),
            json!({"propagationPolicy": "Background"}),
        )
        .await;
    assert_eq!(a.code, StatusCode::OK, "{}", a.body);
    assert_eq!(
        a.body,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
               "details": {"name": "a", "group": "", "kind": "configmaps", "uid": cm["metadata"]["uid"]}})
    );
    assert_eq!(
        api.get(&format!("{CM}/a")).await.code,
        StatusCode::NOT_FOUND
    );
    // No options at all: Background too.
    api.cm("b", &[]).await;
    assert_eq!(
        api.delete(&format!("{CM}/b"), Value::Null).await.code,
        StatusCode::OK
    );
    assert_eq!(
        api.get(&format!("{CM}/b")).await.code,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn foreground_and_orphan_mark_the_object_with_their_finalizer() {
    let api = Api::new().await;
    for (name, opts, want) in [
        (
            "fg",
            json!({"propagationPolicy": "Foreground"}),
            "foregroundDeletion",
        ),
        ("or", json!({"propagationPolicy": "Orphan"}), "orphan"),
        ("od", json!({"orphanDependents": true}), "orphan"),
    ] {
        let created = api.cm(name, &[]).await;
        let a = api.delete(&format!("{CM}/{name}"), opts).await;
        assert_eq!(a.code, StatusCode::OK, "{name}: {}", a.body);
        assert_eq!(finalizers(&a.body), [want], "{name}");
        assert_eq!(
            a.body["metadata"]["deletionGracePeriodSeconds"], 0,
            "{name}"
        );
        assert!((ts(&a.body) - meta::now_secs()).abs() <= 5, "{name}");
        assert_ne!(
            a.body["metadata"]["resourceVersion"],
            created["metadata"]["resourceVersion"]
        );
        let kept = api.get(&format!("{CM}/{name}")).await;
        assert_eq!(kept.body, a.body, "{name}: stored as answered");
    }
}

#[tokio::test]
async fn orphan_dependents_false_is_background_and_202_while_pending() {
    let api = Api::new().await;
    api.cm("held", &["example.com/hold"]).await;
    let a = api
        .delete(&format!("{CM}/held"), json!({"orphanDependents": false}))
        .await;
    assert_eq!(a.code, StatusCode::ACCEPTED, "{}", a.body);
    assert_eq!(finalizers(&a.body), ["example.com/hold"]);
    api.cm("free", &[]).await;
    let a = api
        .delete(&format!("{CM}/free"), json!({"orphanDependents": false}))
        .await;
    assert_eq!(a.code, StatusCode::OK, "removed at once: {}", a.body);
}

#[tokio::test]
async fn deleting_again_updates_the_gc_finalizers_as_kubernetes_does() {
    let api = Api::new().await;
    api.cm("a", &[]).await;
    let path = format!("{CM}/a");
    let fg = api
        .delete(&path, json!({"propagationPolicy": "Foreground"}))
        .await;
    // A later Orphan delete swaps the finalizer; the mark stays.
    let or = api
        .delete(&path, json!({"propagationPolicy": "Orphan"}))
        .await;
    assert_eq!(or.code, StatusCode::OK, "{}", or.body);
    assert_eq!(finalizers(&or.body), ["orphan"]);
    assert_eq!(
        or.body["metadata"]["deletionTimestamp"],
        fg.body["metadata"]["deletionTimestamp"]
    );
    // No policy: the finalizer present decides, nothing changes, same RV.
    let again = api.delete(&path, Value::Null).await;
    assert_eq!(again.code, StatusCode::OK);
    assert_eq!(again.body, or.body);
    // Background drops the orphan finalizer: nothing holds it, it goes.
    let bg = api
        .delete(&path, json!({"propagationPolicy": "Background"}))
        .await;
    assert_eq!(bg.code, StatusCode::OK, "{}", bg.body);
    assert_eq!(bg.body["kind"], "Status");
    assert_eq!(api.get(&path).await.code, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn preconditions_must_match() {
    let api = Api::new().await;
    let cm = api.cm("a", &[]).await;
    let path = format!("{CM}/a");
    let uid = cm["metadata"]["uid"].as_str().unwrap();
    let rv = cm["metadata"]["resourceVersion"].as_str().unwrap();
    let a = api
        .delete(&path, json!({"preconditions": {"uid": "other"}}))
        .await;
    assert_eq!(
        (a.code, a.body["reason"].as_str()),
        (StatusCode::CONFLICT, Some("Conflict"))
    );
    assert_eq!(
        a.body["message"],
        format!(
            "Operation cannot be fulfilled on ConfigMap \"a\": the UID in the precondition (other) does not match the UID in record ({uid}). The object might have been deleted and then recreated"
        )
    );
    let a = api
        .delete(&path, json!({"preconditions": {"resourceVersion": "1"}}))
        .await;
    assert_eq!(a.code, StatusCode::CONFLICT, "{}", a.body);
    assert_eq!(
        a.body["message"],
        format!(
            "Operation cannot be fulfilled on ConfigMap \"a\": the ResourceVersion in the precondition (1) does not match the ResourceVersion in record ({rv}). The object might have been modified"
        )
    );
    assert_eq!(api.get(&path).await.code, StatusCode::OK);
    let a = api
        .delete(
            &path,
            json!({"preconditions": {"uid": uid, "resourceVersion": rv}}),
        )
        .await;
    assert_eq!(a.code, StatusCode::OK, "{}", a.body);
    assert_eq!(api.get(&path).await.code, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn dry_run_answers_as_the_delete_would_and_writes_nothing() {
    let api = Api::new().await;
    let held = api.cm("held", &[]).await;
    let a = api
        .delete(
            &format!("{CM}/held"),
            json!({"dryRun": ["All"], "propagationPolicy": "Foreground"}),
        )
        .await;
    assert_eq!(a.code, StatusCode::OK, "{}", a.body);
    assert_eq!(finalizers(&a.body), ["foregroundDeletion"]);
    assert_eq!(api.get(&format!("{CM}/held")).await.body, held);
    let a = api
        .delete(&format!("{CM}/held?dryRun=All"), Value::Null)
        .await;
    assert_eq!(a.body["kind"], "Status", "{}", a.body);
    assert_eq!(api.get(&format!("{CM}/held")).await.body, held);
}

#[tokio::test]
async fn marking_bumps_the_generation_once() {
    let api = Api::new().await;
    let path = "/apis/apps/v1/namespaces/default/deployments";
    let d = api
        .created(
            path,
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
                   "metadata": {"name": "d", "finalizers": ["example.com/hold"]},
                   "spec": {"selector": {"matchLabels": {"a": "b"}},
                            "template": {"metadata": {"labels": {"a": "b"}},
                                         "spec": {"containers": [{"name": "c", "image": "i"}]}}}}),
        )
        .await;
    assert_eq!(d["metadata"]["generation"], 1);
    let a = api.delete(&format!("{path}/d"), Value::Null).await;
    assert_eq!(a.body["metadata"]["generation"], 2, "{}", a.body);
    let a = api
        .delete(
            &format!("{path}/d"),
            json!({"propagationPolicy": "Foreground"}),
        )
        .await;
    assert_eq!(a.body["metadata"]["generation"], 2, "{}", a.body);
}

// ---- ObjectMeta rules while terminating ----

#[tokio::test]
async fn while_terminating_finalizers_may_only_go_and_the_mark_stays() {
    let api = Api::new().await;
    api.cm("a", &["example.com/one", "example.com/two"]).await;
    let path = format!("{CM}/a");
    let marked = api.delete(&path, Value::Null).await.body;
    let put = |f: Value, extra: Value| {
        let mut o = marked.clone();
        o["metadata"]["finalizers"] = f;
        for (k, v) in extra.as_object().unwrap() {
            o["metadata"][k] = v.clone();
        }
        o
    };
    // Adding one is refused.
    let a = api
        .call(
            Method::PUT,
            &path,
            put(
                json!(["example.com/one", "example.com/two", "example.com/three"]),
                json!({}),
            ),
        )
        .await;
    assert_eq!(a.code, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.body);
    assert_eq!(
        a.body["details"]["causes"][0]["message"],
        "Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{\"example.com/three\"}"
    );
    // The mark cannot move (the stored one is kept, as BeforeUpdate does);
    // changing its grace is refused; leaving both out keeps them.
    let both = json!(["example.com/one", "example.com/two"]);
    let a = api
        .call(
            Method::PUT,
            &path,
            put(
                both.clone(),
                json!({"deletionTimestamp": "2000-01-01T00:00:00Z"}),
            ),
        )
        .await;
    assert_eq!(a.code, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body, marked, "a no-op");
    let a = api
        .call(
            Method::PUT,
            &path,
            put(both, json!({"deletionGracePeriodSeconds": 30})),
        )
        .await;
    assert_eq!(a.code, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.body);
    assert_eq!(
        a.body["details"]["causes"][0]["message"],
        "Invalid value: 30: field is immutable"
    );
    let mut without = put(json!(["example.com/one"]), json!({}));
    let m = without["metadata"].as_object_mut().unwrap();
    m.remove("deletionTimestamp");
    m.remove("deletionGracePeriodSeconds");
    let a = api.call(Method::PUT, &path, without).await;
    assert_eq!(a.code, StatusCode::OK, "{}", a.body);
    assert_eq!(
        a.body["metadata"]["deletionTimestamp"],
        marked["metadata"]["deletionTimestamp"]
    );
    assert_eq!(a.body["metadata"]["deletionGracePeriodSeconds"], 0);
    assert_eq!(finalizers(&a.body), ["example.com/one"]);
    // The last one going removes it.
    let a = api
        .call(
            Method::PATCH,
            &path,
            json!({"metadata": {"finalizers": null}}),
        )
        .await;
    assert_eq!(a.code, StatusCode::OK, "{}", a.body);
    assert_eq!(api.get(&path).await.code, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_live_object_cannot_be_marked_by_an_update_and_finalizers_are_checked() {
    let api = Api::new().await;
    let cm = api.cm("a", &[]).await;
    let mut o = cm.clone();
    o["metadata"]["deletionTimestamp"] = json!("2030-01-01T00:00:00Z");
    let a = api.call(Method::PUT, &format!("{CM}/a"), o).await;
    assert_eq!(a.code, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.body);
    assert_eq!(
        a.body["details"]["causes"][0]["field"],
        "metadata.deletionTimestamp"
    );
    for bad in [
        json!(["not a name!"]),
        json!(["orphan", "foregroundDeletion"]),
    ] {
        let a = api
            .call(Method::POST, CM, json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "f", "finalizers": bad}}))
            .await;
        assert_eq!(
            a.code,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{bad}: {}",
            a.body
        );
        assert_eq!(
            a.body["details"]["causes"][0]["field"],
            "metadata.finalizers"
        );
    }
}

// ---- pods ----

#[tokio::test]
async fn a_pod_no_node_runs_is_removed_at_once_and_returned() {
    let api = Api::new().await;
    api.pod("p", None, None).await;
    let a = api.delete(&format!("{PODS}/p"), Value::Null).await;
    assert_eq!(a.code, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["kind"], "Pod", "pods answer with the object");
    assert_eq!(a.body["metadata"]["deletionGracePeriodSeconds"], 0);
    assert_eq!(
        api.get(&format!("{PODS}/p")).await.code,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_pod_on_a_node_waits_for_its_grace_which_may_only_shorten() {
    let api = Api::new().await;
    let pod = api.pod("p", Some("n1"), None).await;
    let path = format!("{PODS}/p");
    let a = api.delete(&path, Value::Null).await;
    assert_eq!(a.code, StatusCode::OK, "{}", a.body);
    // The default terminationGracePeriodSeconds: 30.
    assert_eq!(a.body["metadata"]["deletionGracePeriodSeconds"], 30);
    let first = ts(&a.body);
    assert!((first - meta::now_secs() - 30).abs() <= 5);
    assert_eq!(
        a.body["metadata"]["generation"],
        pod["metadata"]["generation"].as_i64().unwrap() + 1
    );
    assert_eq!(
        api.get(&path).await.code,
        StatusCode::OK,
        "kept until its node confirms"
    );
    // Longer, or the same: nothing changes.
    for opts in [
        json!({"gracePeriodSeconds": 60}),
        json!({"gracePeriodSeconds": 30}),
        Value::Null,
    ] {
        let b = api.delete(&path, opts.clone()).await;
        assert_eq!(b.code, StatusCode::OK);
        assert_eq!(b.body, a.body, "{opts}");
    }
    // Shorter: the mark moves earlier by the difference.
    let c = api.delete(&path, json!({"gracePeriodSeconds": 10})).await;
    assert_eq!(c.body["metadata"]["deletionGracePeriodSeconds"], 10);
    assert_eq!(ts(&c.body), first - 20);
    // The node confirms: grace 0 removes it.
    let d = api
        .delete(&format!("{path}?gracePeriodSeconds=0"), Value::Null)
        .await;
    assert_eq!(d.code, StatusCode::OK, "{}", d.body);
    assert_eq!(d.body["metadata"]["deletionGracePeriodSeconds"], 0);
    assert_eq!(api.get(&path).await.code, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_pod_grace_comes_from_its_spec_and_a_finished_pod_has_none() {
    let api = Api::new().await;
    api.pod("g", Some("n1"), Some(5)).await;
    let a = api.delete(&format!("{PODS}/g"), Value::Null).await;
    assert_eq!(
        a.body["metadata"]["deletionGracePeriodSeconds"], 5,
        "{}",
        a.body
    );
    // Forced: grace 0 removes a bound pod at once.
    api.pod("f", Some("n1"), None).await;
    let a = api
        .delete(
            &format!("{PODS}/f"),
            json!({"gracePeriodSeconds": 0, "propagationPolicy": "Background"}),
        )
        .await;
    assert_eq!(a.code, StatusCode::OK);
    assert_eq!(
        api.get(&format!("{PODS}/f")).await.code,
        StatusCode::NOT_FOUND
    );
    // Succeeded: removed at once whatever the grace asked.
    api.pod("done", Some("n1"), None).await;
    let s = api
        .call(
            Method::PATCH,
            &format!("{PODS}/done/status"),
            json!({"status": {"phase": "Succeeded"}}),
        )
        .await;
    assert_eq!(s.code, StatusCode::OK, "{}", s.body);
    api.delete(&format!("{PODS}/done"), json!({"gracePeriodSeconds": 100}))
        .await;
    assert_eq!(
        api.get(&format!("{PODS}/done")).await.code,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_pod_in_its_grace_period_stays_when_its_finalizers_go() {
    let api = Api::new().await;
    api.created(
        PODS,
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": "p", "finalizers": ["example.com/hold"]},
               "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i"}]}}),
    )
    .await;
    let path = format!("{PODS}/p");
    api.delete(&path, Value::Null).await;
    let a = api
        .call(
            Method::PATCH,
            &path,
            json!({"metadata": {"finalizers": null}}),
        )
        .await;
    assert_eq!(a.code, StatusCode::OK, "{}", a.body);
    assert_eq!(
        api.get(&path).await.code,
        StatusCode::OK,
        "its node has not confirmed"
    );
    api.delete(&path, json!({"gracePeriodSeconds": 0})).await;
    assert_eq!(api.get(&path).await.code, StatusCode::NOT_FOUND);
}

// ---- namespaces ----

#[tokio::test]
async fn a_namespace_is_created_active_with_the_kubernetes_finalizer() {
    let api = Api::new().await;
    let ns = api
        .created(NS, json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "t"},
                           "spec": {"finalizers": ["example.com/x"]}, "status": {"phase": "Terminating"}}))
        .await;
    assert_eq!(
        ns["spec"]["finalizers"],
        json!(["example.com/x", "kubernetes"])
    );
    assert_eq!(ns["status"], json!({"phase": "Active"}));
    // The main resource never changes spec.finalizers.
    let mut changed = ns.clone();
    changed["spec"]["finalizers"] = json!([]);
    changed["metadata"]["labels"] = json!({"a": "b"});
    let a = api.call(Method::PUT, &format!("{NS}/t"), changed).await;
    assert_eq!(a.code, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["spec"]["finalizers"], ns["spec"]["finalizers"]);
    assert_eq!(a.body["metadata"]["labels"]["a"], "b");
    let a = api
        .call(Method::POST, NS, json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "u"}, "spec": {"finalizers": ["bogus"]}}))
        .await;
    assert_eq!(a.code, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.body);
}

#[tokio::test]
async fn a_deleted_namespace_terminates_until_finalized() {
    let api = Api::new().await;
    api.created(
        NS,
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "t"}}),
    )
    .await;
    let a = api
        .delete(
            &format!("{NS}/t"),
            json!({"propagationPolicy": "Background"}),
        )
        .await;
    assert_eq!(a.code, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["status"]["phase"], "Terminating");
    assert_eq!(a.body["spec"]["finalizers"], json!(["kubernetes"]));
    assert!(a.body["metadata"]["deletionTimestamp"].is_string());
    assert!(finalizers(&a.body).is_empty());
    // Again: returned as it is.
    let again = api.delete(&format!("{NS}/t"), Value::Null).await;
    assert_eq!((again.code, &again.body), (StatusCode::OK, &a.body));
    // Nothing new is created in it.
    let c = api
        .call(
            Method::POST,
            "/api/v1/namespaces/t/configmaps",
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}),
        )
        .await;
    assert_eq!(c.code, StatusCode::FORBIDDEN, "{}", c.body);
    assert_eq!(c.body["reason"], "Forbidden");
    assert_eq!(
        c.body["message"],
        "configmaps \"x\" is forbidden: unable to create new content in namespace t because it is being terminated"
    );
    assert_eq!(
        c.body["details"]["causes"],
        json!([{"reason": "NamespaceTerminating", "message": "namespace t is being terminated", "field": "metadata.namespace"}])
    );
    // Its status conditions can be written; its phase cannot go back.
    let s = api
        .call(Method::PATCH, &format!("{NS}/t/status"), json!({"status": {"conditions": [{"type": "NamespaceDeletionContentFailure", "status": "False", "reason": "ContentDeleted", "message": "All content successfully deleted"}]}}))
        .await;
    assert_eq!(s.code, StatusCode::OK, "{}", s.body);
    assert_eq!(s.body["status"]["phase"], "Terminating");
    assert_eq!(
        s.body["status"]["conditions"][0]["type"],
        "NamespaceDeletionContentFailure"
    );
    let s = api
        .call(
            Method::PATCH,
            &format!("{NS}/t/status"),
            json!({"status": {"phase": "Active"}}),
        )
        .await;
    assert_eq!(s.code, StatusCode::UNPROCESSABLE_ENTITY, "{}", s.body);
    // /finalize clears spec.finalizers: the namespace goes.
    let mut fin = api.get(&format!("{NS}/t")).await.body;
    fin["spec"]["finalizers"] = json!([]);
    let f = api
        .call(Method::PUT, &format!("{NS}/t/finalize"), fin)
        .await;
    assert_eq!(f.code, StatusCode::OK, "{}", f.body);
    assert_eq!(
        api.get(&format!("{NS}/t")).await.code,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_namespace_goes_only_when_both_finalizer_lists_are_empty() {
    let api = Api::new().await;
    api.created(
        NS,
        json!({"apiVersion": "v1", "kind": "Namespace",
                           "metadata": {"name": "t", "finalizers": ["example.com/hold"]}}),
    )
    .await;
    let a = api
        .delete(
            &format!("{NS}/t"),
            json!({"propagationPolicy": "Foreground"}),
        )
        .await;
    assert_eq!(
        finalizers(&a.body),
        ["example.com/hold", "foregroundDeletion"]
    );
    let mut fin = a.body.clone();
    fin["spec"]["finalizers"] = json!([]);
    fin["status"]["phase"] = json!("Active"); // /finalize keeps the status
    let f = api
        .call(Method::PUT, &format!("{NS}/t/finalize"), fin)
        .await;
    assert_eq!(f.code, StatusCode::OK, "{}", f.body);
    assert_eq!(f.body["status"]["phase"], "Terminating");
    assert_eq!(
        api.get(&format!("{NS}/t")).await.code,
        StatusCode::OK,
        "metadata finalizers hold it"
    );
    // GET and PATCH of /finalize are not served.
    assert_eq!(
        api.get(&format!("{NS}/t/finalize")).await.code,
        StatusCode::METHOD_NOT_ALLOWED
    );
    let p = api
        .call(
            Method::PATCH,
            &format!("{NS}/t"),
            json!({"metadata": {"finalizers": null}}),
        )
        .await;
    assert_eq!(p.code, StatusCode::OK, "{}", p.body);
    assert_eq!(
        api.get(&format!("{NS}/t")).await.code,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn the_system_namespaces_cannot_be_deleted_nor_namespaces_as_a_collection() {
    let api = Api::new().await;
    let a = api.delete(&format!("{NS}/default"), Value::Null).await;
    assert_eq!(a.code, StatusCode::FORBIDDEN, "{}", a.body);
    assert_eq!(
        a.body["message"],
        "namespaces \"default\" is forbidden: this namespace may not be deleted"
    );
    let a = api.delete(NS, Value::Null).await;
    assert_eq!(a.code, StatusCode::METHOD_NOT_ALLOWED, "{}", a.body);
    assert_eq!(
        api.get(&format!("{NS}/default")).await.body["status"]["phase"],
        "Active"
    );
}

#[tokio::test]
async fn a_collection_delete_applies_its_options_to_each_object() {
    let api = Api::new().await;
    api.cm("a", &[]).await;
    api.cm("b", &[]).await;
    let a = api.delete(CM, json!({"propagationPolicy": "Orphan"})).await;
    assert_eq!(a.code, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["items"].as_array().unwrap().len(), 2);
    for n in ["a", "b"] {
        assert_eq!(
            finalizers(&api.get(&format!("{CM}/{n}")).await.body),
            ["orphan"]
        );
    }
    let a = api
        .delete(&format!("{CM}?propagationPolicy=Background"), Value::Null)
        .await;
    assert_eq!(a.code, StatusCode::OK, "{}", a.body);
    assert_eq!(api.get(CM).await.body["items"], json!([]));
}

#[test]
fn a_namespace_terminating_error_is_the_kubernetes_status() {
    let e = ApiError::NamespaceTerminating {
        group: "apps".into(),
        resource: "deployments".into(),
        name: "d".into(),
        namespace: "t".into(),
    };
    let s = e.status();
    assert_eq!(s["code"], 403);
    assert_eq!(
        s["message"],
        "deployments.apps \"d\" is forbidden: unable to create new content in namespace t because it is being terminated"
    );
}
