//! Services' cluster IPs and node ports through the registry's verbs over
//! memory: allocation, refusals worded as Kubernetes words them, release
//! on delete and on a failed write, races between creates, and updates.

use std::sync::Arc;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use serde_json::{Value, json};

use super::range::{Cidr, ServiceNetwork};
use super::{IP_PREFIX, NODE_PORT_PREFIX};
use crate::error::ApiError;
use crate::http::auth::UserInfo;
use crate::kinds::Kinds;
use crate::registry::Registry;
use crate::registry::storage::{MemoryStorage, RangeRequest};
use crate::request::{self, RequestTarget};

const SVC: &str = "/api/v1/namespaces/default/services";

async fn api(net: Option<ServiceNetwork>) -> Arc<Registry> {
    let storage = Arc::new(MemoryStorage::new());
    let registry = Arc::new(Registry::with_storage(storage, Kinds::builtin()));
    if let Some(net) = net {
        assert!(registry.set_service_network(net));
    }
    let (code, body) = call(
        &registry,
        Method::POST,
        "/api/v1/namespaces",
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}}),
    )
    .await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    registry
}

async fn call(r: &Registry, method: Method, path: &str, body: Value) -> (StatusCode, Value) {
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
    let body = match body {
        Value::Null => Bytes::new(),
        v => Bytes::from(v.to_string()),
    };
    let resp = async {
        let t = RequestTarget::resolve(&r.kinds, group, version, rest)?;
        let verb = t.verb(&method, &q)?;
        r.serve(verb, &t, &q, &headers, body, &UserInfo::default())
            .await
    }
    .await
    .unwrap_or_else(ApiError::into_response);
    let code = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (code, serde_json::from_slice(&bytes).unwrap())
}

fn service(name: &str, spec: Value) -> Value {
    let mut spec = spec;
    if spec.get("ports").is_none() {
        spec["ports"] = json!([{"port": 80}]);
    }
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec})
}

async fn create(r: &Registry, name: &str, spec: Value) -> (StatusCode, Value) {
    call(r, Method::POST, SVC, service(name, spec)).await
}

async fn keys(r: &Registry, prefix: &str) -> Vec<String> {
    let resp = r.storage.list(RangeRequest::prefix(prefix)).await.unwrap();
    resp.kvs
        .iter()
        .map(|kv| kv.key.trim_start_matches(prefix).to_string())
        .collect()
}

#[tokio::test]
async fn services_get_a_cluster_ip_from_the_range_and_give_it_back() {
    let r = api(None).await;
    let (code, svc) = create(&r, "web", json!({"selector": {"app": "web"}})).await;
    assert_eq!(code, StatusCode::CREATED, "{svc}");
    let ip = svc["spec"]["clusterIP"].as_str().unwrap().to_string();
    let cidr = Cidr::parse("10.96.0.0/12").unwrap();
    let index = cidr
        .index(ip.parse().unwrap())
        .expect("in the default range");
    assert!(
        index >= cidr.lower_band(),
        "dynamic from the upper band: {ip}"
    );
    assert_eq!(svc["spec"]["clusterIPs"], json!([ip]));
    assert_eq!(svc["spec"]["ipFamilies"], json!(["IPv4"]));
    assert_eq!(svc["spec"]["ipFamilyPolicy"], "SingleStack");
    assert_eq!(svc["spec"]["internalTrafficPolicy"], "Cluster");
    // The IPAddress object names its Service.
    let (code, addr) = call(
        &r,
        Method::GET,
        &format!("/apis/networking.k8s.io/v1/ipaddresses/{ip}"),
        Value::Null,
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{addr}");
    assert_eq!(
        addr["spec"]["parentRef"],
        json!({"group": "", "resource": "services", "namespace": "default", "name": "web"})
    );
    // Asked for by number: taken is a 422 worded as Kubernetes words it.
    let (code, refused) = create(&r, "copy", json!({"clusterIP": ip})).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert_eq!(
        refused["details"]["causes"][0]["message"],
        format!(
            "Invalid value: []string{{\"{ip}\"}}: failed to allocate IP {ip}: provided IP is already allocated"
        )
    );
    // Outside the range.
    let (code, outside) = create(&r, "far", json!({"clusterIP": "10.0.0.1"})).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        outside["message"]
            .as_str()
            .unwrap()
            .contains("the provided IP (10.0.0.1) is not in the valid range. The range of valid IPs is 10.96.0.0/12"),
        "{outside}"
    );
    // Deleted: the address is free for the next Service that asks.
    let (code, _) = call(&r, Method::DELETE, &format!("{SVC}/web"), Value::Null).await;
    assert_eq!(code, StatusCode::OK);
    assert!(keys(&r, IP_PREFIX).await.is_empty());
    let (code, again) = create(&r, "copy", json!({"clusterIP": ip})).await;
    assert_eq!(code, StatusCode::CREATED, "{again}");
    assert_eq!(again["spec"]["clusterIP"], ip.as_str());
}

#[tokio::test]
async fn headless_and_external_name_services_take_no_address() {
    let r = api(None).await;
    let (code, headless) = create(&r, "db", json!({"clusterIP": "None", "ports": []})).await;
    assert_eq!(code, StatusCode::CREATED, "{headless}");
    assert_eq!(headless["spec"]["clusterIPs"], json!(["None"]));
    assert_eq!(headless["spec"]["ipFamilies"], json!(["IPv4"]));
    let (code, ext) = create(
        &r,
        "ext",
        json!({"type": "ExternalName", "externalName": "db.example.com"}),
    )
    .await;
    assert_eq!(code, StatusCode::CREATED, "{ext}");
    assert!(ext["spec"].get("clusterIP").is_none(), "{ext}");
    assert!(keys(&r, IP_PREFIX).await.is_empty());
    let (code, _) = create(&r, "np", json!({"type": "NodePort", "clusterIP": "None"})).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn node_ports_are_allocated_kept_and_released() {
    let net = ServiceNetwork {
        cidr: Cidr::parse("10.0.0.0/28").unwrap(),
        node_ports: 31000..=31009,
    };
    let r = api(Some(net)).await;
    let (code, svc) = create(
        &r,
        "web",
        json!({"type": "NodePort", "ports": [{"name": "a", "port": 80, "nodePort": 31005}, {"name": "b", "port": 443}]}),
    )
    .await;
    assert_eq!(code, StatusCode::CREATED, "{svc}");
    assert_eq!(svc["spec"]["ports"][0]["nodePort"], 31005);
    let other = svc["spec"]["ports"][1]["nodePort"].as_u64().unwrap();
    assert!((31000..=31009).contains(&other) && other != 31005);
    assert_eq!(svc["spec"]["externalTrafficPolicy"], "Cluster");
    let mut held = keys(&r, NODE_PORT_PREFIX).await;
    held.sort();
    let mut want = vec!["31005".to_string(), other.to_string()];
    want.sort();
    assert_eq!(held, want);
    // Taken, and out of the configured range.
    let (code, taken) = create(
        &r,
        "copy",
        json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 31005}]}),
    )
    .await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        taken["details"]["causes"][0]["field"],
        "spec.ports[0].nodePort"
    );
    assert_eq!(
        taken["details"]["causes"][0]["message"],
        "Invalid value: 31005: provided port is already allocated"
    );
    let (code, far) = create(
        &r,
        "far",
        json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30000}]}),
    )
    .await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        far["details"]["causes"][0]["message"],
        "Invalid value: 30000: provided port is not in the valid range. The range of valid ports is 31000-31009"
    );
    // The refused creates left nothing behind (their cluster IPs either).
    assert_eq!(keys(&r, NODE_PORT_PREFIX).await.len(), 2);
    assert_eq!(keys(&r, IP_PREFIX).await.len(), 1);
    // A PUT of a manifest without the allocated values keeps them.
    let mut put = service(
        "web",
        json!({"type": "NodePort", "ports": [{"name": "a", "port": 80}, {"name": "b", "port": 443}]}),
    );
    put["metadata"]["namespace"] = json!("default");
    let (code, kept) = call(&r, Method::PUT, &format!("{SVC}/web"), put).await;
    assert_eq!(code, StatusCode::OK, "{kept}");
    assert_eq!(kept["spec"]["clusterIP"], svc["spec"]["clusterIP"]);
    assert_eq!(kept["spec"]["ports"][0]["nodePort"], 31005);
    assert_eq!(kept["spec"]["ports"][1]["nodePort"], other);
    // Back to ClusterIP: the node ports are released.
    let (code, plain) = call(
        &r,
        Method::PATCH,
        &format!("{SVC}/web"),
        json!({"spec": {"type": "ClusterIP", "externalTrafficPolicy": null,
            "ports": [{"name": "a", "port": 80}, {"name": "b", "port": 443}]}}),
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{plain}");
    assert!(keys(&r, NODE_PORT_PREFIX).await.is_empty());
    // To NodePort again by a patch of the type alone: ports allocated.
    let (code, _) = call(
        &r,
        Method::PATCH,
        &format!("{SVC}/web"),
        json!({"spec": {"type": "NodePort"}}),
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    let (_, now) = call(&r, Method::GET, &format!("{SVC}/web"), Value::Null).await;
    let ports: Vec<u64> = (0..2)
        .map(|i| {
            now["spec"]["ports"][i]["nodePort"]
                .as_u64()
                .expect("a node port")
        })
        .collect();
    assert_eq!(keys(&r, NODE_PORT_PREFIX).await.len(), 2, "{ports:?}");
    // Deleted: everything goes.
    let (code, _) = call(&r, Method::DELETE, &format!("{SVC}/web"), Value::Null).await;
    assert_eq!(code, StatusCode::OK);
    assert!(keys(&r, NODE_PORT_PREFIX).await.is_empty());
    assert!(keys(&r, IP_PREFIX).await.is_empty());
}

#[tokio::test]
async fn concurrent_creates_never_share_an_address() {
    // 14 usable addresses, 14 Services created at once, then one more.
    let net = ServiceNetwork {
        cidr: Cidr::parse("10.0.0.0/28").unwrap(),
        node_ports: 30000..=32767,
    };
    let r = api(Some(net)).await;
    let names: Vec<String> = (0..14).map(|i| format!("s{i}")).collect();
    let creates = names.iter().map(|n| create(&r, n, json!({})));
    let mut ips = std::collections::BTreeSet::new();
    for (code, svc) in futures::future::join_all(creates).await {
        assert_eq!(code, StatusCode::CREATED, "{svc}");
        ips.insert(svc["spec"]["clusterIP"].as_str().unwrap().to_string());
    }
    assert_eq!(ips.len(), 14, "{ips:?}");
    let (code, full) = create(&r, "one-more", json!({})).await;
    assert_eq!(code, StatusCode::INTERNAL_SERVER_ERROR, "{full}");
    assert!(full["message"].as_str().unwrap().contains("range is full"));
}

#[tokio::test]
async fn a_failed_write_and_a_crash_leave_no_address_held() {
    let r = api(None).await;
    let (code, _) = create(&r, "web", json!({"clusterIP": "10.96.0.10"})).await;
    assert_eq!(code, StatusCode::CREATED);
    // The name is taken: the second Service's address is released.
    let (code, _) = create(&r, "web", json!({"clusterIP": "10.96.0.11"})).await;
    assert_eq!(code, StatusCode::CONFLICT);
    assert_eq!(keys(&r, IP_PREFIX).await, ["10.96.0.10"]);
    // A reservation whose Service never got written (a crash between the
    // two writes), old enough: the next asker takes it back.
    let orphan = json!({"apiVersion": "networking.k8s.io/v1", "kind": "IPAddress",
        "metadata": {"name": "10.96.0.12", "uid": "u1", "creationTimestamp": "2020-01-01T00:00:00Z"},
        "spec": {"parentRef": {"group": "", "resource": "services", "namespace": "default", "name": "gone"}}});
    let actor = UserInfo::default().actor();
    r.storage
        .create(
            &format!("{IP_PREFIX}10.96.0.12"),
            orphan.to_string().into_bytes(),
            Some("u1".into()),
            &actor,
        )
        .await
        .unwrap();
    let (code, svc) = create(&r, "new", json!({"clusterIP": "10.96.0.12"})).await;
    assert_eq!(code, StatusCode::CREATED, "{svc}");
    // One held by a live Service is not taken back.
    let (code, _) = create(&r, "other", json!({"clusterIP": "10.96.0.10"})).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn local_load_balancers_get_a_health_check_node_port() {
    let r = api(None).await;
    let (code, lb) = create(
        &r,
        "lb",
        json!({"type": "LoadBalancer", "externalTrafficPolicy": "Local"}),
    )
    .await;
    assert_eq!(code, StatusCode::CREATED, "{lb}");
    let hc = lb["spec"]["healthCheckNodePort"]
        .as_u64()
        .expect("a health check port");
    let np = lb["spec"]["ports"][0]["nodePort"].as_u64().unwrap();
    assert!(hc != np && (30000..=32767).contains(&hc));
    assert_eq!(keys(&r, NODE_PORT_PREFIX).await.len(), 2);
    let (code, bad) = create(&r, "plain", json!({"healthCheckNodePort": 30500})).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        bad["details"]["causes"][0]["field"],
        "spec.healthCheckNodePort"
    );
    let (code, _) = call(&r, Method::DELETE, &format!("{SVC}/lb"), Value::Null).await;
    assert_eq!(code, StatusCode::OK);
    assert!(keys(&r, NODE_PORT_PREFIX).await.is_empty());
}
