//! Field management through the registry as the router calls it, over
//! memory: managedFields of create, update, patch and status writes;
//! server-side apply's ownership, conflicts, removal, and its merge of
//! atomic and granular maps and lists. Plus the schema walk on its own.

use std::sync::Arc;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use serde_json::{Value, json};

use super::fieldset::FieldSet;
use super::typed;
use crate::error::ApiError;
use crate::http::auth::UserInfo;
use crate::kinds::Kinds;
use crate::registry::Registry;
use crate::registry::storage::MemoryStorage;
use crate::request::{self, RequestTarget};

const APPLY: &str = "application/apply-patch+yaml";
const MERGE: &str = "application/merge-patch+json";
const JSON: &str = "application/json";
const DEPLOY: &str = "/apis/apps/v1/namespaces/default/deployments";
const CM: &str = "/api/v1/namespaces/default/configmaps";

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
        let ns = api
            .call(
                Method::POST,
                "/api/v1/namespaces",
                JSON,
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}}),
            )
            .await;
        assert_eq!(ns.code, StatusCode::CREATED, "{}", ns.body);
        api
    }

    async fn call(&self, method: Method, path: &str, ct: &str, body: Value) -> Answer {
        let body = match body {
            Value::Null => Bytes::new(),
            v => Bytes::from(v.to_string()),
        };
        self.send(method, path, ct, body).await
    }

    async fn send(&self, method: Method, path: &str, ct: &str, body: Bytes) -> Answer {
        let uri: Uri = path.parse().unwrap();
        let segs = request::segments(uri.path());
        let (group, version, rest) = match segs.as_slice() {
            ["api", v, rest @ ..] => ("", *v, rest),
            ["apis", g, v, rest @ ..] => (*g, *v, rest),
            _ => panic!("not an API path: {path}"),
        };
        let mut headers = HeaderMap::new();
        headers.insert("content-type", ct.parse().unwrap());
        headers.insert("user-agent", "unit-test/v1.0 (linux)".parse().unwrap());
        let q = request::query(&uri);
        let resp = async {
            let t = RequestTarget::resolve(&self.registry.kinds, group, version, rest)?;
            let verb = t.verb(&method, &q)?;
            self.registry
                .serve(verb, &t, &q, &headers, body, &UserInfo::default())
                .await
        }
        .await
        .unwrap_or_else(ApiError::into_response);
        let code = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        Answer {
            code,
            body: serde_json::from_slice(&bytes).unwrap(),
        }
    }

    async fn apply(&self, path: &str, manager: &str, extra: &str, body: Value) -> Answer {
        let sep = if path.contains('?') { '&' } else { '?' };
        let url = format!("{path}{sep}fieldManager={manager}{extra}");
        self.call(Method::PATCH, &url, APPLY, body).await
    }

    async fn get(&self, path: &str) -> Value {
        let a = self.call(Method::GET, path, JSON, Value::Null).await;
        assert_eq!(a.code, StatusCode::OK, "{}", a.body);
        a.body
    }
}

/// The set of `manager`'s entry (with `operation`) in `obj`.
fn owned(obj: &Value, manager: &str, operation: &str) -> Option<FieldSet> {
    obj["metadata"]["managedFields"]
        .as_array()?
        .iter()
        .find(|e| e["manager"] == manager && e["operation"] == operation)
        .map(|e| FieldSet::from_fields_v1(&e["fieldsV1"]).unwrap())
}

fn p(s: &[&str]) -> Vec<String> {
    s.iter().map(|x| x.to_string()).collect()
}

fn deployment(replicas: i64, labels: Value, containers: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": containers},
            },
        },
    })
}

const NGINX: &str = "k:{\"name\":\"nginx\"}";

#[test]
fn applied_set_of_a_deployment_owns_leaves_items_and_map_entries() {
    let s = typed::root("apps", "v1", "Deployment");
    let d = deployment(
        2,
        json!({"app": "web"}),
        json!([{"name": "nginx", "image": "nginx:1", "args": ["-a"], "ports": [{"containerPort": 80}]}]),
    );
    let set = typed::applied_set(&s, &d);
    let c = ["f:spec", "f:template", "f:spec", "f:containers", NGINX];
    assert!(set.has(&p(&["f:spec", "f:replicas"])));
    // LabelSelector is an atomic map: owned whole.
    assert!(set.has(&p(&["f:spec", "f:selector"])));
    assert!(
        set.get(&p(&["f:spec", "f:selector", "f:matchLabels"]))
            .is_none()
    );
    // A granular map's entries are members; the map is not.
    assert!(set.has(&p(&["f:metadata", "f:labels", "f:app"])));
    assert!(!set.has(&p(&["f:metadata", "f:labels"])));
    // Associative list items by key, with the key fields; atomic lists whole.
    assert!(set.has(&p(&c)));
    let under = |rest: &[&str]| [p(&c), p(rest)].concat();
    assert!(set.has(&under(&["f:image"])));
    assert!(set.has(&under(&["f:args"])));
    assert!(set.get(&under(&["f:args", "i:0"])).is_none());
    // A port without protocol names the same item as the defaulted one.
    assert!(set.has(&under(&[
        "f:ports",
        "k:{\"containerPort\":80,\"protocol\":\"TCP\"}"
    ])));
    // Identity fields are not in it once stripped; a round trip keeps it.
    assert_eq!(FieldSet::from_fields_v1(&set.to_fields_v1()).unwrap(), set);
}

#[test]
fn a_custom_resource_is_schemaless_granular_maps_atomic_lists() {
    let s = typed::root("example.com", "v1", "Widget");
    let obj = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"size": 1, "list": [1, 2]}});
    let set = typed::applied_set(&s, &obj);
    // Top-level fields are struct fields; below them, every key is a member.
    assert!(!set.has(&p(&["f:spec"])));
    assert!(set.has(&p(&["f:spec", "f:size"])));
    assert!(set.has(&p(&["f:spec", "f:list"])));
    assert!(set.get(&p(&["f:spec", "f:list", "i:0"])).is_none());
    // metadata still reads as ObjectMeta.
    assert!(!set.has(&p(&["f:metadata"])));
    assert!(set.has(&p(&["f:metadata", "f:labels", "f:a"])));
}

#[tokio::test]
async fn every_write_records_its_manager_and_a_no_op_keeps_them() {
    let api = Api::new().await;
    let created = api
        .call(
            Method::POST,
            &format!("{CM}?fieldManager=creator"),
            JSON,
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": {"a": "1"}}, "data": {"k": "v"}}),
        )
        .await;
    assert_eq!(created.code, StatusCode::CREATED, "{}", created.body);
    let mf = &created.body["metadata"]["managedFields"][0];
    assert_eq!(mf["manager"], "creator");
    assert_eq!(mf["operation"], "Update");
    assert_eq!(mf["apiVersion"], "v1");
    assert_eq!(mf["fieldsType"], "FieldsV1");
    assert!(mf["time"].is_string());
    assert_eq!(
        mf["fieldsV1"],
        json!({"f:data": {".": {}, "f:k": {}}, "f:metadata": {"f:labels": {".": {}, "f:a": {}}}})
    );
    // Without fieldManager, the User-Agent up to '/' names the manager;
    // the patcher takes the field it changed from the creator.
    let patched = api
        .call(
            Method::PATCH,
            &format!("{CM}/c"),
            MERGE,
            json!({"data": {"k": "w"}}),
        )
        .await;
    assert_eq!(patched.code, StatusCode::OK, "{}", patched.body);
    let obj = &patched.body;
    assert!(
        owned(obj, "unit-test", "Update")
            .unwrap()
            .has(&p(&["f:data", "f:k"]))
    );
    assert!(
        !owned(obj, "creator", "Update")
            .unwrap()
            .has(&p(&["f:data", "f:k"]))
    );
    assert!(
        owned(obj, "creator", "Update")
            .unwrap()
            .has(&p(&["f:metadata", "f:labels", "f:a"]))
    );
    // The same patch again changes nothing: same resourceVersion, same
    // managedFields (no new time).
    let again = api
        .call(
            Method::PATCH,
            &format!("{CM}/c"),
            MERGE,
            json!({"data": {"k": "w"}}),
        )
        .await;
    assert_eq!(
        again.body["metadata"]["resourceVersion"],
        obj["metadata"]["resourceVersion"]
    );
    assert_eq!(
        again.body["metadata"]["managedFields"],
        obj["metadata"]["managedFields"]
    );
    // A removed field leaves every set.
    let removed = api
        .call(
            Method::PATCH,
            &format!("{CM}/c"),
            MERGE,
            json!({"metadata": {"labels": null}}),
        )
        .await;
    assert!(
        owned(&removed.body, "creator", "Update")
            .unwrap()
            .get(&p(&["f:metadata"]))
            .is_none(),
        "{}",
        removed.body
    );
}

#[tokio::test]
async fn a_status_write_is_recorded_with_its_subresource() {
    let api = Api::new().await;
    let d = deployment(
        1,
        json!({"app": "web"}),
        json!([{"name": "nginx", "image": "nginx"}]),
    );
    let c = api.call(Method::POST, DEPLOY, JSON, d).await;
    assert_eq!(c.code, StatusCode::CREATED, "{}", c.body);
    let mut obj = c.body.clone();
    obj["status"] = json!({"observedGeneration": 1});
    let s = api
        .call(
            Method::PUT,
            &format!("{DEPLOY}/web/status?fieldManager=ctl"),
            JSON,
            obj,
        )
        .await;
    assert_eq!(s.code, StatusCode::OK, "{}", s.body);
    let e = s.body["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["manager"] == "ctl")
        .cloned()
        .unwrap();
    assert_eq!(e["subresource"], "status");
    assert_eq!(e["apiVersion"], "apps/v1");
    assert_eq!(
        e["fieldsV1"],
        json!({"f:status": {"f:observedGeneration": {}}})
    );
}

#[tokio::test]
async fn client_set_managed_fields_are_kept_and_a_list_of_one_empty_entry_clears_them() {
    let api = Api::new().await;
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "v"}});
    api.call(Method::POST, &format!("{CM}?fieldManager=old"), JSON, cm)
        .await;
    let moved = json!([{"manager": "new", "operation": "Apply", "apiVersion": "v1", "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {"f:k": {}}}}]);
    let r = api
        .call(
            Method::PATCH,
            &format!("{CM}/c"),
            MERGE,
            json!({"metadata": {"managedFields": moved}}),
        )
        .await;
    assert_eq!(r.code, StatusCode::OK, "{}", r.body);
    let mf = r.body["metadata"]["managedFields"].as_array().unwrap();
    assert_eq!(mf.len(), 1, "{}", r.body);
    assert_eq!(mf[0]["manager"], "new");
    // An empty list is ignored (clients unaware of the field do not wipe it).
    let r = api
        .call(
            Method::PATCH,
            &format!("{CM}/c"),
            MERGE,
            json!({"metadata": {"managedFields": []}}),
        )
        .await;
    assert_eq!(
        r.body["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let r = api
        .call(
            Method::PATCH,
            &format!("{CM}/c"),
            MERGE,
            json!({"metadata": {"managedFields": [{}]}}),
        )
        .await;
    assert!(
        r.body["metadata"].get("managedFields").is_none(),
        "{}",
        r.body
    );
}

#[tokio::test]
async fn apply_creates_then_updates_and_an_identical_apply_is_a_no_op() {
    let api = Api::new().await;
    let d = deployment(
        2,
        json!({"app": "web"}),
        json!([{"name": "nginx", "image": "nginx:1"}]),
    );
    let c = api
        .apply(&format!("{DEPLOY}/web"), "mgr", "", d.clone())
        .await;
    assert_eq!(c.code, StatusCode::CREATED, "{}", c.body);
    let set = owned(&c.body, "mgr", "Apply").unwrap();
    assert!(set.has(&p(&["f:spec", "f:replicas"])));
    // Defaults are nobody's.
    assert!(!set.has(&p(&["f:spec", "f:revisionHistoryLimit"])));
    let again = api
        .apply(&format!("{DEPLOY}/web"), "mgr", "", d.clone())
        .await;
    assert_eq!(again.code, StatusCode::OK, "{}", again.body);
    assert_eq!(
        again.body["metadata"]["resourceVersion"],
        c.body["metadata"]["resourceVersion"]
    );
    assert_eq!(
        again.body["metadata"]["managedFields"],
        c.body["metadata"]["managedFields"]
    );
    // YAML is accepted as well as JSON.
    let yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: y\ndata:\n  k: v\n";
    let r = api
        .send(
            Method::PATCH,
            &format!("{CM}/y?fieldManager=mgr"),
            APPLY,
            Bytes::from(yaml),
        )
        .await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.body);
    assert_eq!(api.get(&format!("{CM}/y")).await["data"]["k"], "v");
}

#[tokio::test]
async fn apply_conflicts_with_another_manager_unless_forced() {
    let api = Api::new().await;
    let url = format!("{DEPLOY}/web");
    let d = deployment(
        2,
        json!({"app": "web"}),
        json!([{"name": "nginx", "image": "nginx:1"}]),
    );
    assert_eq!(
        api.apply(&url, "mgr", "", d.clone()).await.code,
        StatusCode::CREATED
    );
    let s = api
        .call(
            Method::PATCH,
            &format!("{url}?fieldManager=scaler"),
            MERGE,
            json!({"spec": {"replicas": 5}}),
        )
        .await;
    assert_eq!(s.code, StatusCode::OK);
    // The applier no longer owns replicas: applying another value conflicts.
    let d3 = deployment(
        3,
        json!({"app": "web"}),
        json!([{"name": "nginx", "image": "nginx:1"}]),
    );
    let c = api.apply(&url, "mgr", "", d3.clone()).await;
    assert_eq!(c.code, StatusCode::CONFLICT, "{}", c.body);
    assert_eq!(c.body["reason"], "Conflict");
    assert_eq!(
        c.body["details"]["causes"],
        json!([{"reason": "FieldManagerConflict", "field": ".spec.replicas", "message": "conflict with \"scaler\" using apps/v1"}])
    );
    assert_eq!(
        c.body["message"],
        "Apply failed with 1 conflict: conflict with \"scaler\" using apps/v1: .spec.replicas"
    );
    assert_eq!(api.get(&url).await["spec"]["replicas"], 5);
    // Applying the value the other manager set is no conflict: shared.
    let d5 = deployment(
        5,
        json!({"app": "web"}),
        json!([{"name": "nginx", "image": "nginx:1"}]),
    );
    let shared = api.apply(&url, "mgr", "", d5).await;
    assert_eq!(shared.code, StatusCode::OK, "{}", shared.body);
    assert!(
        owned(&shared.body, "scaler", "Update")
            .unwrap()
            .has(&p(&["f:spec", "f:replicas"]))
    );
    assert!(
        owned(&shared.body, "mgr", "Apply")
            .unwrap()
            .has(&p(&["f:spec", "f:replicas"]))
    );
    // force takes it.
    let forced = api.apply(&url, "mgr", "&force=true", d3).await;
    assert_eq!(forced.code, StatusCode::OK, "{}", forced.body);
    assert_eq!(forced.body["spec"]["replicas"], 3);
    assert!(owned(&forced.body, "scaler", "Update").is_none());
    // Two conflicts: listed per manager.
    let other = deployment(
        7,
        json!({"app": "web"}),
        json!([{"name": "nginx", "image": "nginx:2"}]),
    );
    let c = api.apply(&url, "second", "", other).await;
    assert_eq!(c.code, StatusCode::CONFLICT);
    assert_eq!(c.body["details"]["causes"].as_array().unwrap().len(), 2);
    let m = c.body["message"].as_str().unwrap();
    assert!(
        m.starts_with("Apply failed with 2 conflicts: conflicts with \"mgr\":\n- "),
        "{m}"
    );
}

#[tokio::test]
async fn fields_an_applier_stops_applying_are_removed_unless_someone_else_owns_them() {
    let api = Api::new().await;
    let url = format!("{CM}/c");
    let cm = |data: Value, labels: Value| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": labels}, "data": data});
    let a = api
        .apply(
            &url,
            "a",
            "",
            cm(json!({"k1": "1", "k2": "2", "k3": "3"}), json!({"x": "1"})),
        )
        .await;
    assert_eq!(a.code, StatusCode::CREATED, "{}", a.body);
    // Another applier also owns k3 (same value: shared).
    let b = api
        .apply(&url, "b", "", cm(json!({"k3": "3"}), json!({})))
        .await;
    assert_eq!(b.code, StatusCode::OK, "{}", b.body);
    let a2 = api
        .apply(&url, "a", "", cm(json!({"k1": "1"}), json!({})))
        .await;
    assert_eq!(a2.code, StatusCode::OK, "{}", a2.body);
    let live = api.get(&url).await;
    assert_eq!(live["data"], json!({"k1": "1", "k3": "3"}));
    assert!(
        live["metadata"]
            .get("labels")
            .is_none_or(|l| l.get("x").is_none()),
        "{live}"
    );
    // Dry run: the answer shows the change, nothing is stored.
    let dry = api
        .apply(
            &url,
            "a",
            "&dryRun=All",
            cm(json!({"k1": "changed"}), json!({})),
        )
        .await;
    assert_eq!(dry.code, StatusCode::OK, "{}", dry.body);
    assert_eq!(dry.body["data"]["k1"], "changed");
    assert_eq!(api.get(&url).await["data"]["k1"], "1");
    // A dry run that would create answers 201 and creates nothing.
    let dry = api
        .apply(&format!("{CM}/new"), "a", "&dryRun=All", {
            let mut c = cm(json!({"k": "v"}), json!({}));
            c["metadata"]["name"] = json!("new");
            c
        })
        .await;
    assert_eq!(dry.code, StatusCode::CREATED, "{}", dry.body);
    let missing = api
        .call(Method::GET, &format!("{CM}/new"), JSON, Value::Null)
        .await;
    assert_eq!(missing.code, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn granular_maps_and_lists_merge_across_appliers_atomic_ones_are_replaced() {
    let api = Api::new().await;
    let url = format!("{DEPLOY}/web");
    let mut one = deployment(
        1,
        json!({"a": "1"}),
        json!([{"name": "nginx", "image": "nginx:1", "args": ["x", "y"]}]),
    );
    one["spec"]["template"]["spec"]["nodeSelector"] = json!({"a": "1", "b": "2"});
    assert_eq!(
        api.apply(&url, "one", "", one).await.code,
        StatusCode::CREATED
    );
    // A second applier adds a label, a container, and owns nothing of the first's.
    let mut two = deployment(
        1,
        json!({"b": "2"}),
        json!([{"name": "side", "image": "busybox"}]),
    );
    two["spec"].as_object_mut().unwrap().remove("replicas");
    two["spec"].as_object_mut().unwrap().remove("selector");
    let r = api.apply(&url, "two", "", two).await;
    assert_eq!(r.code, StatusCode::OK, "{}", r.body);
    let live = api.get(&url).await;
    assert_eq!(live["metadata"]["labels"], json!({"a": "1", "b": "2"}));
    let names: Vec<&str> = live["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["nginx", "side"]);
    // Atomic: args and the selector are replaced whole, and a different
    // value from another manager is a conflict on the whole field.
    let mut three = deployment(1, json!({}), json!([{"name": "nginx", "args": ["z"]}]));
    three["spec"]["template"]["spec"]["nodeSelector"] = json!({"c": "3"});
    let c = api.apply(&url, "three", "", three.clone()).await;
    assert_eq!(c.code, StatusCode::CONFLICT, "{}", c.body);
    let fields: Vec<&str> = c.body["details"]["causes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["field"].as_str().unwrap())
        .collect();
    assert!(
        fields.contains(&".spec.template.spec.containers[name=\"nginx\"].args"),
        "{fields:?}"
    );
    assert!(
        fields.contains(&".spec.template.spec.nodeSelector"),
        "{fields:?}"
    );
    let f = api.apply(&url, "three", "&force=true", three).await;
    assert_eq!(f.code, StatusCode::OK, "{}", f.body);
    let c0 = &f.body["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c0["args"], json!(["z"]));
    assert_eq!(c0["image"], "nginx:1");
    assert_eq!(
        f.body["spec"]["template"]["spec"]["nodeSelector"],
        json!({"c": "3"})
    );
    // The granular labels of the first two appliers are still merged.
    assert_eq!(f.body["metadata"]["labels"], json!({"a": "1", "b": "2"}));
}

#[tokio::test]
async fn bad_apply_requests_are_refused_as_kubernetes_refuses_them() {
    let api = Api::new().await;
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}});
    let r = api
        .call(Method::PATCH, &format!("{CM}/c"), APPLY, cm.clone())
        .await;
    assert_eq!(r.code, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert!(
        r.body["message"]
            .as_str()
            .unwrap()
            .contains("fieldManager: Required value: is required for apply patch")
    );
    let mut with_mf = cm.clone();
    with_mf["metadata"]["managedFields"] = json!([]);
    let r = api.apply(&format!("{CM}/c"), "m", "", with_mf).await;
    assert_eq!(r.code, StatusCode::BAD_REQUEST, "{}", r.body);
    let mut wrong = cm.clone();
    wrong["kind"] = json!("Secret");
    assert_eq!(
        api.apply(&format!("{CM}/c"), "m", "", wrong).await.code,
        StatusCode::BAD_REQUEST
    );
    let r = api
        .send(
            Method::PATCH,
            &format!("{CM}/c?fieldManager=m"),
            APPLY,
            Bytes::from("{not yaml: ["),
        )
        .await;
    assert_eq!(r.code, StatusCode::BAD_REQUEST, "{}", r.body);
}
