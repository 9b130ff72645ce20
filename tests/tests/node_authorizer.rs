//! The Node authorizer matrix against a `keel server` process: the admin
//! client (group system:masters) acts as kubelets by impersonation
//! (`system:node:<name>` in `system:nodes`). A node reads the Secret,
//! ConfigMap and claim of its own pod and nothing else, gains them when a
//! pod is bound to it and loses them when the pod moves or goes; it writes
//! only its own Node (within the allowed labels), Lease and pods' status,
//! and gets tokens only for its own pods.

use std::time::Duration;

use keel_tests::server::KeelServer;
use keel_tests::wait_until;
use serde_json::{Value, json};

/// How long the graph may take to follow a change.
const FOLLOW: Duration = Duration::from_secs(20);

/// A single-member `keel server` in a temp directory, killed on drop.
struct Server {
    keel: KeelServer,
}

struct Reply {
    code: u16,
    body: Value,
}

impl Server {
    fn start() -> Server {
        let s = Server {
            keel: KeelServer::start(&[]),
        };
        wait_until("the server to be ready", Duration::from_secs(60), || {
            (s.admin("GET", "/api/v1/namespaces/default", None).code == 200).then_some(())
        });
        s
    }

    /// One request with the admin certificate, as `node` when given;
    /// `body` as JSON (a merge patch for PATCH).
    fn request(&self, node: Option<&str>, method: &str, path: &str, body: Option<&Value>) -> Reply {
        let mut c = self
            .keel
            .curl(&["--max-time", "30", "-w", "\n%{http_code}", "-X", method]);
        if let Some(node) = node {
            c.args(["-H", &format!("Impersonate-User: system:node:{node}")])
                .args(["-H", "Impersonate-Group: system:nodes"]);
        }
        if let Some(body) = body {
            let ct = if method == "PATCH" {
                "application/merge-patch+json"
            } else {
                "application/json"
            };
            c.args(["-H", &format!("Content-Type: {ct}"), "--data-binary"])
                .arg(body.to_string());
        }
        c.arg(format!("{}{path}", self.keel.url()));
        let out = c.output().expect("curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", ""));
        Reply {
            code: code.trim().parse().unwrap_or(0),
            body: serde_json::from_str(body).unwrap_or(Value::Null),
        }
    }

    fn admin(&self, method: &str, path: &str, body: Option<&Value>) -> Reply {
        self.request(None, method, path, body)
    }

    fn create(&self, path: &str, obj: Value) -> Value {
        let r = self.admin("POST", path, Some(&obj));
        assert_eq!(r.code, 201, "create {path}: {}", r.body);
        r.body
    }

    /// Wait until `node`'s GET of `path` answers `code`.
    fn wait_get(&self, node: &str, path: &str, code: u16) {
        wait_until(&format!("node {node} GET {path} -> {code}"), FOLLOW, || {
            (self.request(Some(node), "GET", path, None).code == code).then_some(())
        });
    }
}

const NS: &str = "/api/v1/namespaces/default";

/// A pod on `node` that uses the Secret, ConfigMap and claim named `refs`.
fn pod(name: &str, node: &str, refs: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "nodeName": node,
            "serviceAccountName": format!("sa-{refs}"),
            "containers": [{
                "name": "c", "image": "busybox",
                "env": [{"name": "K", "valueFrom": {"configMapKeyRef": {"name": format!("cm-{refs}"), "key": "k"}}}]
            }],
            "volumes": [
                {"name": "s", "secret": {"secretName": format!("secret-{refs}")}},
                {"name": "d", "persistentVolumeClaim": {"claimName": format!("claim-{refs}")}}
            ]
        }
    })
}

fn objects_of(refs: &str) -> [String; 3] {
    [
        format!("{NS}/secrets/secret-{refs}"),
        format!("{NS}/configmaps/cm-{refs}"),
        format!("{NS}/persistentvolumeclaims/claim-{refs}"),
    ]
}

/// A TokenRequest for `account`, bound to the pod `bound` (name, uid).
fn token_request(bound: Option<(&str, &str)>) -> Value {
    let mut r =
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}});
    if let Some((name, uid)) = bound {
        r["spec"]["boundObjectRef"] =
            json!({"apiVersion": "v1", "kind": "Pod", "name": name, "uid": uid});
    }
    r
}

fn assert_forbidden(r: &Reply, what: &str) -> String {
    assert_eq!(r.code, 403, "{what}: {}", r.body);
    assert_eq!(r.body["kind"], "Status", "{what}: {}", r.body);
    assert_eq!(r.body["reason"], "Forbidden", "{what}: {}", r.body);
    r.body["message"].as_str().unwrap_or_default().to_string()
}

#[test]
fn the_node_authorizer_matrix() {
    let s = Server::start();
    for refs in ["a", "b", "free"] {
        s.create(
            &format!("{NS}/secrets"),
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": format!("secret-{refs}")}, "data": {"k": "dg=="}}),
        );
        s.create(
            &format!("{NS}/configmaps"),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("cm-{refs}")}, "data": {"k": "v"}}),
        );
        s.create(
            &format!("{NS}/persistentvolumeclaims"),
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": format!("claim-{refs}")},
                   "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}),
        );
        s.create(
            &format!("{NS}/serviceaccounts"),
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": format!("sa-{refs}")}}),
        );
    }
    for node in ["a", "b"] {
        s.create(
            "/api/v1/nodes",
            json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": node, "labels": {"kubernetes.io/hostname": node}}}),
        );
    }
    let pod_a = s.create(&format!("{NS}/pods"), pod("pod-a", "a", "a"));
    let pod_a_uid = pod_a["metadata"]["uid"].as_str().unwrap().to_string();
    let pod_b = s.create(&format!("{NS}/pods"), pod("pod-b", "b", "b"));
    let pod_b_uid = pod_b["metadata"]["uid"].as_str().unwrap().to_string();

    // Its own pod's objects, once the graph has the pod.
    for path in objects_of("a") {
        s.wait_get("a", &path, 200);
    }
    s.wait_get("b", &objects_of("b")[0], 200);
    // Not node b's pod's, not unreferenced ones, and no list.
    for path in objects_of("b").iter().chain(&objects_of("free")) {
        assert_forbidden(&s.request(Some("a"), "GET", path, None), path);
    }
    let msg = assert_forbidden(
        &s.request(Some("a"), "GET", &format!("{NS}/secrets"), None),
        "list",
    );
    assert!(msg.starts_with("secrets is forbidden: "), "{msg}");
    assert_forbidden(
        &s.request(Some("a"), "GET", "/api/v1/secrets", None),
        "list all",
    );
    assert_forbidden(
        &s.request(Some("a"), "DELETE", &objects_of("a")[0], None),
        "delete its own pod's secret",
    );

    // Writes: not node b, not node b's pods or their status.
    let status = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}});
    let msg = assert_forbidden(
        &s.request(Some("a"), "PATCH", "/api/v1/nodes/b/status", Some(&status)),
        "node b's status",
    );
    assert_eq!(
        msg,
        r#"nodes "b" is forbidden: node "a" is not allowed to modify node "b""#
    );
    assert_forbidden(
        &s.request(
            Some("a"),
            "PATCH",
            "/api/v1/nodes/b",
            Some(&json!({"metadata": {"labels": {"x": "y"}}})),
        ),
        "node b's labels",
    );
    let pod_status = json!({"status": {"phase": "Running"}});
    let msg = assert_forbidden(
        &s.request(
            Some("a"),
            "PATCH",
            &format!("{NS}/pods/pod-b/status"),
            Some(&pod_status),
        ),
        "node b's pod status",
    );
    assert_eq!(
        msg,
        r#"pods "pod-b" is forbidden: node "a" can only update pod status for pods with spec.nodeName set to itself"#
    );
    let msg = assert_forbidden(
        &s.request(Some("a"), "DELETE", &format!("{NS}/pods/pod-b"), None),
        "node b's pod",
    );
    assert!(
        msg.ends_with(r#"node "a" can only delete pods with spec.nodeName set to itself"#),
        "{msg}"
    );
    assert_forbidden(
        &s.request(
            Some("a"),
            "POST",
            &format!("{NS}/pods"),
            Some(&pod("sneaky", "a", "b")),
        ),
        "a pod that is not a mirror pod",
    );
    let b = s.admin("GET", &format!("{NS}/pods/pod-b"), None).body;
    assert_ne!(
        b["status"]["phase"], "Running",
        "node b's pod was changed: {b}"
    );

    // Its own: the Node's status, its own pod's status, labels within the allowed prefixes.
    let r = s.request(Some("a"), "PATCH", "/api/v1/nodes/a/status", Some(&status));
    assert_eq!(r.code, 200, "own node status: {}", r.body);
    let r = s.request(
        Some("a"),
        "PATCH",
        &format!("{NS}/pods/pod-a/status"),
        Some(&pod_status),
    );
    assert_eq!(r.code, 200, "own pod status: {}", r.body);
    let allowed = json!({"metadata": {"labels": {"node.kubernetes.io/instance-type": "m1", "topology.kubernetes.io/zone": "z1", "example.com/rack": "r1"}}});
    let r = s.request(Some("a"), "PATCH", "/api/v1/nodes/a", Some(&allowed));
    assert_eq!(r.code, 200, "allowed labels: {}", r.body);
    assert_eq!(
        r.body["metadata"]["labels"]["topology.kubernetes.io/zone"],
        "z1"
    );
    let restricted =
        json!({"metadata": {"labels": {"node-restriction.kubernetes.io/dedicated": "db"}}});
    let msg = assert_forbidden(
        &s.request(Some("a"), "PATCH", "/api/v1/nodes/a", Some(&restricted)),
        "restricted label",
    );
    assert_eq!(
        msg,
        r#"nodes "a" is forbidden: is not allowed to modify labels: node-restriction.kubernetes.io/dedicated"#
    );
    let labels = &s.admin("GET", "/api/v1/nodes/a", None).body["metadata"]["labels"];
    assert_eq!(
        labels.get("node-restriction.kubernetes.io/dedicated"),
        None,
        "{labels}"
    );

    // Registration and heartbeats: its own Node and Lease only.
    let node = |name: &str| {
        json!({"apiVersion": "v1", "kind": "Node",
               "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"}}})
    };
    let r = s.request(Some("c"), "POST", "/api/v1/nodes", Some(&node("c")));
    assert_eq!(r.code, 201, "a node registering itself: {}", r.body);
    let msg = assert_forbidden(
        &s.request(Some("c"), "POST", "/api/v1/nodes", Some(&node("d"))),
        "a node registering another",
    );
    assert!(
        msg.ends_with(r#"node "c" is not allowed to modify node "d""#),
        "{msg}"
    );
    let leases = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases";
    let lease = |name: &str| {
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": name},
               "spec": {"holderIdentity": name, "leaseDurationSeconds": 40}})
    };
    let r = s.request(Some("a"), "POST", leases, Some(&lease("a")));
    assert_eq!(r.code, 201, "its own lease: {}", r.body);
    let renew = json!({"spec": {"leaseDurationSeconds": 41}});
    let r = s.request(Some("a"), "PATCH", &format!("{leases}/a"), Some(&renew));
    assert_eq!(r.code, 200, "renewing its own lease: {}", r.body);
    assert_forbidden(
        &s.request(Some("a"), "POST", leases, Some(&lease("b"))),
        "another node's lease",
    );
    assert_eq!(
        s.request(Some("b"), "POST", leases, Some(&lease("b"))).code,
        201
    );
    assert_forbidden(
        &s.request(Some("a"), "PATCH", &format!("{leases}/b"), Some(&renew)),
        "renewing another node's lease",
    );

    // Tokens: only for its pod's ServiceAccount, and bound to that pod.
    let token = |node, account: &str, bound| {
        let path = format!("{NS}/serviceaccounts/{account}/token");
        s.request(Some(node), "POST", &path, Some(&token_request(bound)))
    };
    let r = token("a", "sa-a", Some(("pod-a", pod_a_uid.as_str())));
    assert_eq!(r.code, 201, "a token for its own pod: {}", r.body);
    assert!(
        r.body["status"]["token"]
            .as_str()
            .is_some_and(|t| !t.is_empty()),
        "{}",
        r.body
    );
    let msg = assert_forbidden(&token("a", "sa-a", None), "a token bound to no pod");
    assert!(
        msg.ends_with("node requested token not bound to a pod"),
        "{msg}"
    );
    assert_forbidden(
        &token("a", "sa-b", Some(("pod-b", pod_b_uid.as_str()))),
        "node b's pod's account",
    );
    assert_forbidden(&token("a", "sa-free", None), "an account no pod uses");

    // Moved to node b (a pod's node cannot change, so: deleted and created
    // there): node a loses access and node b gains it.
    assert_eq!(
        // A pod on a node waits for it; grace 0 removes it now.
        s.admin(
            "DELETE",
            &format!("{NS}/pods/pod-a"),
            Some(&json!({"gracePeriodSeconds": 0}))
        )
        .code,
        200
    );
    s.create(&format!("{NS}/pods"), pod("pod-a", "b", "a"));
    for path in objects_of("a") {
        s.wait_get("a", &path, 403);
        s.wait_get("b", &path, 200);
    }
    assert_forbidden(
        &token("a", "sa-a", Some(("pod-a", pod_a_uid.as_str()))),
        "the moved pod's account",
    );
    // Deleted: node b loses it too, and keeps what its other pod uses.
    assert_eq!(
        // A pod on a node waits for it; grace 0 removes it now.
        s.admin(
            "DELETE",
            &format!("{NS}/pods/pod-a"),
            Some(&json!({"gracePeriodSeconds": 0}))
        )
        .code,
        200
    );
    for path in objects_of("a") {
        s.wait_get("b", &path, 403);
    }
    assert_eq!(
        s.request(Some("b"), "GET", &objects_of("b")[0], None).code,
        200
    );

    // Bound later, by the scheduler's binding: node a gains what it uses.
    s.create(&format!("{NS}/pods"), pod("pod-c", "", "free"));
    assert_forbidden(
        &s.request(Some("a"), "GET", &objects_of("free")[0], None),
        "an unscheduled pod's secret",
    );
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "pod-c"},
                         "target": {"apiVersion": "v1", "kind": "Node", "name": "a"}});
    s.create(&format!("{NS}/pods/pod-c/binding"), binding);
    for path in objects_of("free") {
        s.wait_get("a", &path, 200);
    }
}
