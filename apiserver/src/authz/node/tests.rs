//! The node graph as pods are bound, moved and deleted; the Node
//! authorizer's decisions; NodeRestriction's refusals and their wording;
//! and the graph following a storage's watch.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::graph::{Graph, Source};
use super::refs::RefKind;
use super::{NodeAuthorizer, NodeRestriction};
use crate::admission::{Admit, Attributes as Write, Operation};
use crate::authz::{Attributes, Authorizer, Decision};
use crate::error::ApiError;
use crate::http::auth::UserInfo;
use crate::kinds::{Kinds, Subresource};
use crate::registry::storage::{MemoryStorage, Storage};
use crate::request::RequestTarget;

fn pod(name: &str, node: &str, secret: &str) -> Value {
    json!({
        "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}")},
        "spec": {
            "nodeName": node,
            "serviceAccountName": "runner",
            "containers": [{"env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k"}}}]}],
            "volumes": [
                {"name": "s", "secret": {"secretName": secret}},
                {"name": "d", "persistentVolumeClaim": {"claimName": "data"}}
            ]
        }
    })
}

const POD: &str = "/registry/core/pods/ns/";

#[test]
fn the_graph_follows_pods_as_they_are_bound_moved_and_deleted() {
    let g = Graph::default();
    let has = |node: &str| g.references(node, RefKind::Secret, "ns", "s1");
    // Unscheduled: nobody.
    g.apply(Source::Pods, &format!("{POD}p"), Some(&pod("p", "", "s1")));
    assert!(!has("a") && !has("b"));
    // Bound to a.
    g.apply(Source::Pods, &format!("{POD}p"), Some(&pod("p", "a", "s1")));
    assert!(has("a") && !has("b"));
    assert!(g.references("a", RefKind::ConfigMap, "ns", "cm"));
    assert!(g.references("a", RefKind::ServiceAccount, "ns", "runner"));
    assert!(
        !g.references("a", RefKind::Secret, "other", "s1"),
        "another namespace"
    );
    // A second pod on a with the same secret: deleting one keeps the edge.
    g.apply(Source::Pods, &format!("{POD}q"), Some(&pod("q", "a", "s1")));
    g.apply(Source::Pods, &format!("{POD}q"), None);
    assert!(has("a"));
    // Moved to b (deleted and recreated elsewhere, or rebound).
    g.apply(Source::Pods, &format!("{POD}p"), Some(&pod("p", "b", "s1")));
    assert!(!has("a") && has("b"));
    // Its secret changed: the old one is no longer reachable.
    g.apply(Source::Pods, &format!("{POD}p"), Some(&pod("p", "b", "s2")));
    assert!(!has("b") && g.references("b", RefKind::Secret, "ns", "s2"));
    // Deleted.
    g.apply(Source::Pods, &format!("{POD}p"), None);
    assert!(!g.references("b", RefKind::Secret, "ns", "s2"));
    assert!(!g.references("b", RefKind::PersistentVolumeClaim, "ns", "data"));
    assert_eq!(g.pod("ns", "p"), None);
}

#[test]
fn a_volume_is_reachable_through_a_bound_claim_of_a_pod_on_the_node() {
    let g = Graph::default();
    let claim = "/registry/core/persistentvolumeclaims/ns/data";
    g.apply(Source::Pods, &format!("{POD}p"), Some(&pod("p", "a", "s1")));
    assert!(!g.volume_on("a", "pv1"), "claim not bound yet");
    g.apply(
        Source::Claims,
        claim,
        Some(&json!({"spec": {"volumeName": "pv1"}})),
    );
    assert!(g.volume_on("a", "pv1") && !g.volume_on("b", "pv1"));
    g.apply(
        Source::Claims,
        claim,
        Some(&json!({"spec": {"volumeName": "pv2"}})),
    );
    assert!(!g.volume_on("a", "pv1") && g.volume_on("a", "pv2"));
    g.apply(Source::Pods, &format!("{POD}p"), None);
    assert!(!g.volume_on("a", "pv2"));
}

#[test]
fn a_relist_replaces_what_the_graph_had() {
    let g = Graph::default();
    g.apply(
        Source::Pods,
        &format!("{POD}gone"),
        Some(&pod("gone", "a", "old")),
    );
    g.replace(Source::Pods, &[(format!("{POD}p"), pod("p", "a", "new"))]);
    assert!(!g.references("a", RefKind::Secret, "ns", "old"));
    assert!(g.references("a", RefKind::Secret, "ns", "new"));
}

#[test]
fn a_mirror_pod_without_a_service_account_reaches_no_default_token() {
    let g = Graph::default();
    let mut mirror = json!({
        "metadata": {"name": "m", "annotations": {"kubernetes.io/config.mirror": "x"}},
        "spec": {"nodeName": "a"}
    });
    g.apply(Source::Pods, &format!("{POD}m"), Some(&mirror));
    assert!(!g.references("a", RefKind::ServiceAccount, "ns", "default"));
    mirror["metadata"]["annotations"] = json!({});
    g.apply(Source::Pods, &format!("{POD}m"), Some(&mirror));
    assert!(g.references("a", RefKind::ServiceAccount, "ns", "default"));
}

fn node_user(name: &str) -> UserInfo {
    UserInfo {
        name: format!("system:node:{name}"),
        groups: vec!["system:nodes".into(), "system:authenticated".into()],
        ..UserInfo::default()
    }
}

fn ask(
    user: &UserInfo,
    verb: &str,
    group: &str,
    resource: &str,
    ns: &str,
    name: &str,
) -> Attributes {
    let (resource, sub) = resource.split_once('/').unwrap_or((resource, ""));
    Attributes {
        user: user.clone(),
        verb: verb.into(),
        resource_request: true,
        api_group: group.into(),
        api_version: "v1".into(),
        resource: resource.into(),
        subresource: sub.into(),
        namespace: ns.into(),
        name: name.into(),
        path: String::new(),
    }
}

#[test]
fn the_node_authorizer_allows_a_node_only_what_its_pods_reference() {
    let g = Arc::new(Graph::default());
    g.apply(Source::Pods, &format!("{POD}p"), Some(&pod("p", "a", "s1")));
    g.apply(
        Source::Claims,
        "/registry/core/persistentvolumeclaims/ns/data",
        Some(&json!({"spec": {"volumeName": "pv1"}})),
    );
    let z = NodeAuthorizer::new(g);
    let (a, b) = (node_user("a"), node_user("b"));
    let allow = |u: &UserInfo, verb, group, res, ns, name| {
        z.authorize(&ask(u, verb, group, res, ns, name)) == Decision::Allow
    };
    assert!(allow(&a, "get", "", "secrets", "ns", "s1"));
    assert!(
        allow(&a, "watch", "", "secrets", "ns", "s1"),
        "a watch of one name"
    );
    assert!(allow(&a, "get", "", "configmaps", "ns", "cm"));
    assert!(allow(&a, "get", "", "persistentvolumeclaims", "ns", "data"));
    assert!(allow(&a, "get", "", "persistentvolumes", "", "pv1"));
    assert!(allow(
        &a,
        "create",
        "",
        "serviceaccounts/token",
        "ns",
        "runner"
    ));
    assert!(
        !allow(&b, "get", "", "secrets", "ns", "s1"),
        "another node's pod"
    );
    assert!(!allow(&a, "get", "", "secrets", "ns", "unreferenced"));
    assert!(
        !allow(&a, "list", "", "secrets", "ns", ""),
        "a list of secrets"
    );
    assert!(!allow(&a, "list", "", "secrets", "", ""));
    assert!(
        !allow(&a, "update", "", "secrets", "ns", "s1"),
        "only reads"
    );
    assert!(!allow(
        &a,
        "delete",
        "",
        "persistentvolumeclaims",
        "ns",
        "data"
    ));
    assert!(!allow(&a, "get", "", "serviceaccounts", "ns", "runner"));
    // Not nodes: the group and the name prefix are both needed.
    let mut not_in_group = node_user("a");
    not_in_group.groups.clear();
    assert_eq!(
        z.authorize(&ask(&not_in_group, "get", "", "secrets", "ns", "s1")),
        Decision::NoOpinion
    );
    let mut not_named = node_user("a");
    not_named.name = "alice".into();
    assert_eq!(
        z.authorize(&ask(&not_named, "get", "", "nodes", "", "a")),
        Decision::NoOpinion
    );
    // Leases: its own, in kube-node-lease.
    let lease =
        |u: &UserInfo, verb, ns, name| allow(u, verb, "coordination.k8s.io", "leases", ns, name);
    assert!(
        lease(&a, "update", "kube-node-lease", "a") && lease(&a, "create", "kube-node-lease", "")
    );
    assert!(!lease(&a, "update", "kube-node-lease", "b") && !lease(&a, "get", "default", "a"));
    assert!(!lease(&a, "list", "kube-node-lease", ""));
    // The static rules.
    assert!(
        allow(&a, "update", "", "nodes/status", "", "b"),
        "NodeRestriction narrows it"
    );
    assert!(allow(&a, "list", "", "pods", "", ""));
    assert!(allow(&a, "patch", "", "pods/status", "ns", "p"));
    assert!(allow(&a, "create", "", "events", "ns", ""));
    assert!(!allow(&a, "update", "", "pods", "ns", "p"));
    assert!(!allow(&a, "delete", "", "nodes", "", "a"));
    assert!(!allow(
        &a,
        "create",
        "rbac.authorization.k8s.io",
        "clusterrolebindings",
        "",
        ""
    ));
}

fn target(plural: &str, group: &str, ns: Option<&str>, sub: Option<Subresource>) -> RequestTarget {
    RequestTarget {
        rt: Kinds::builtin()
            .find(group, "v1", plural)
            .expect("a built-in kind"),
        namespace: ns.map(str::to_string),
        name: None,
        subresource: sub,
    }
}

/// The message of a refusal, which must be a 403.
fn refusal(r: Result<(), ApiError>) -> String {
    match r {
        Err(e @ ApiError::Forbidden { .. }) => e.to_string(),
        other => panic!("expected a 403, got {other:?}"),
    }
}

struct Case<'a> {
    user: &'a UserInfo,
    op: Operation,
    t: &'a RequestTarget,
    name: &'a str,
    new: Option<&'a Value>,
    old: Option<&'a Value>,
}

impl Case<'_> {
    fn run(&self, plugin: &NodeRestriction) -> Result<(), ApiError> {
        plugin.admit(&Write {
            user: self.user,
            operation: self.op,
            target: self.t,
            name: self.name,
            object: self.new,
            old: self.old,
        })
    }
}

#[test]
fn node_restriction_limits_pod_writes_to_the_nodes_own_pods() {
    let plugin = NodeRestriction::new(Arc::new(Graph::default()));
    let a = node_user("a");
    let pods = target("pods", "", Some("ns"), None);
    let status = target("pods", "", Some("ns"), Some(Subresource::Status));
    let on_b = pod("x", "b", "s1");
    let on_a = pod("x", "a", "s1");
    let case = |op, t, new, old| Case {
        user: &a,
        op,
        t,
        name: "x",
        new,
        old,
    };

    let msg = refusal(case(Operation::Update, &status, Some(&on_b), Some(&on_b)).run(&plugin));
    assert_eq!(
        msg,
        r#"pods "x" is forbidden: node "a" can only update pod status for pods with spec.nodeName set to itself"#
    );
    assert!(
        case(Operation::Update, &status, Some(&on_a), Some(&on_a))
            .run(&plugin)
            .is_ok()
    );
    let mut relabelled = on_a.clone();
    relabelled["metadata"]["labels"] = json!({"app": "x"});
    let msg =
        refusal(case(Operation::Update, &status, Some(&relabelled), Some(&on_a)).run(&plugin));
    assert!(
        msg.ends_with(r#"node "a" cannot update labels through pod status"#),
        "{msg}"
    );

    let msg = refusal(case(Operation::Delete, &pods, None, Some(&on_b)).run(&plugin));
    assert!(
        msg.ends_with(r#"node "a" can only delete pods with spec.nodeName set to itself"#),
        "{msg}"
    );
    assert!(
        case(Operation::Delete, &pods, None, Some(&on_a))
            .run(&plugin)
            .is_ok()
    );
    let msg = refusal(case(Operation::Update, &pods, Some(&on_a), Some(&on_a)).run(&plugin));
    assert!(
        msg.ends_with(
            r#"unexpected operation "UPDATE", node "a" can only create and delete mirror pods"#
        ),
        "{msg}"
    );

    // Creates: mirror pods of its own that reference nothing.
    let msg = refusal(case(Operation::Create, &pods, Some(&on_a), None).run(&plugin));
    assert!(
        msg.contains(r#"pod does not have "kubernetes.io/config.mirror" annotation"#),
        "{msg}"
    );
    let mirror = |node: &str, spec: Value| {
        let mut p = json!({"metadata": {"name": "x", "annotations": {"kubernetes.io/config.mirror": "h"}}, "spec": spec});
        p["spec"]["nodeName"] = json!(node);
        p
    };
    let plain = mirror("a", json!({"containers": [{"name": "c"}]}));
    assert!(
        case(Operation::Create, &pods, Some(&plain), None)
            .run(&plugin)
            .is_ok()
    );
    for (p, why) in [
        (
            mirror("b", json!({})),
            r#"node "a" can only create pods with spec.nodeName set to itself"#,
        ),
        (
            mirror("a", json!({"serviceAccountName": "sa"})),
            r#"node "a" can not create pods that reference a service account"#,
        ),
        (
            mirror(
                "a",
                json!({"volumes": [{"name": "t", "projected": {"sources": [{"serviceAccountToken": {"path": "t"}}]}}]}),
            ),
            r#"node "a" can not create pods that reference a service account"#,
        ),
        (
            mirror("a", json!({"imagePullSecrets": [{"name": "s"}]})),
            r#"node "a" can not create pods that reference secrets"#,
        ),
        (
            mirror(
                "a",
                json!({"containers": [{"envFrom": [{"configMapRef": {"name": "c"}}]}]}),
            ),
            r#"node "a" can not create pods that reference configmaps"#,
        ),
        (
            mirror(
                "a",
                json!({"volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "c"}}]}),
            ),
            r#"node "a" can not create pods that reference persistentvolumeclaims"#,
        ),
    ] {
        let create = Case {
            user: &a,
            op: Operation::Create,
            t: &pods,
            name: "x",
            new: Some(&p),
            old: None,
        };
        assert_eq!(
            refusal(create.run(&plugin)),
            format!(r#"pods "x" is forbidden: {why}"#)
        );
    }

    // Anyone else is not this plugin's concern.
    let admin = UserInfo {
        name: "admin".into(),
        groups: vec!["system:masters".into()],
        ..UserInfo::default()
    };
    let other = Case {
        user: &admin,
        op: Operation::Update,
        t: &status,
        name: "x",
        new: Some(&on_b),
        old: Some(&on_b),
    };
    assert!(other.run(&plugin).is_ok());
}

#[test]
fn node_restriction_limits_a_node_to_its_own_node_object_and_labels() {
    let plugin = NodeRestriction::new(Arc::new(Graph::default()));
    let a = node_user("a");
    let nodes = target("nodes", "", None, None);
    let status = target("nodes", "", None, Some(Subresource::Status));
    let node = |labels: Value| json!({"metadata": {"name": "a", "labels": labels}, "spec": {}});
    let old = node(json!({"kubernetes.io/hostname": "a"}));
    let write = |op, t, name, new: &Value, old: Option<&Value>| {
        Case {
            user: &a,
            op,
            t,
            name,
            new: Some(new),
            old,
        }
        .run(&plugin)
    };

    let msg = refusal(write(Operation::Update, &status, "b", &old, Some(&old)));
    assert_eq!(
        msg,
        r#"nodes "b" is forbidden: node "a" is not allowed to modify node "b""#
    );
    assert!(write(Operation::Update, &status, "a", &old, Some(&old)).is_ok());

    let fine = node(
        json!({"kubernetes.io/hostname": "a", "node.kubernetes.io/exclude-from-external-load-balancers": "", "example.com/rack": "r1"}),
    );
    assert!(write(Operation::Update, &nodes, "a", &fine, Some(&old)).is_ok());
    let restricted = node(
        json!({"kubernetes.io/hostname": "a", "node-restriction.kubernetes.io/dedicated": "db"}),
    );
    let msg = refusal(write(
        Operation::Update,
        &nodes,
        "a",
        &restricted,
        Some(&old),
    ));
    assert_eq!(
        msg,
        r#"nodes "a" is forbidden: is not allowed to modify labels: node-restriction.kubernetes.io/dedicated"#
    );
    let msg = refusal(write(Operation::Create, &nodes, "a", &restricted, None));
    assert!(msg.ends_with(r#"node "a" is not allowed to set the following labels: node-restriction.kubernetes.io/dedicated"#), "{msg}");
    // A label it may not set, already there, may stay while others change.
    assert!(
        write(
            Operation::Update,
            &nodes,
            "a",
            &restricted,
            Some(&restricted)
        )
        .is_ok()
    );

    let mut tainted = old.clone();
    tainted["spec"]["taints"] = json!([{"key": "k", "effect": "NoSchedule"}]);
    let msg = refusal(write(Operation::Update, &nodes, "a", &old, Some(&tainted)));
    assert!(
        msg.ends_with(r#"node "a" is not allowed to modify taints"#),
        "{msg}"
    );
}

#[test]
fn node_restriction_limits_leases_and_tokens_to_the_node() {
    let g = Arc::new(Graph::default());
    g.apply(Source::Pods, &format!("{POD}p"), Some(&pod("p", "a", "s1")));
    g.apply(Source::Pods, &format!("{POD}q"), Some(&pod("q", "b", "s1")));
    let plugin = NodeRestriction::new(g);
    let a = node_user("a");
    let lease = json!({"metadata": {"name": "a"}});
    let in_ns = |ns| target("leases", "coordination.k8s.io", Some(ns), None);
    let write = |t: &RequestTarget, name, obj: &Value| {
        Case {
            user: &a,
            op: Operation::Create,
            t,
            name,
            new: Some(obj),
            old: None,
        }
        .run(&plugin)
    };
    assert!(write(&in_ns("kube-node-lease"), "a", &lease).is_ok());
    let msg = refusal(write(&in_ns("kube-node-lease"), "b", &lease));
    assert!(
        msg.ends_with("can only access node lease with the same name as the requesting node"),
        "{msg}"
    );
    let msg = refusal(write(&in_ns("default"), "a", &lease));
    assert!(
        msg.ends_with(r#"can only access leases in the "kube-node-lease" system namespace"#),
        "{msg}"
    );

    let token = target("serviceaccounts", "", Some("ns"), Some(Subresource::Token));
    let request = |pod: &str| json!({"spec": {"boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": pod, "uid": format!("uid-{pod}")}}});
    assert!(write(&token, "runner", &request("p")).is_ok());
    let msg = refusal(write(&token, "runner", &request("q")));
    assert!(
        msg.ends_with("node requested token bound to a pod scheduled on a different node"),
        "{msg}"
    );
    let msg = refusal(write(&token, "runner", &json!({"spec": {}})));
    assert!(
        msg.ends_with("node requested token not bound to a pod"),
        "{msg}"
    );
}

#[tokio::test]
async fn the_graph_follows_the_watch_of_its_storage() {
    let storage = Arc::new(MemoryStorage::new());
    let key = format!("{POD}p");
    storage.put(&key, serde_json::to_vec(&pod("p", "a", "s1")).unwrap());
    let graph = super::start(storage.clone() as Arc<dyn Storage>);
    let reaches = |node: &str| graph.references(node, RefKind::Secret, "ns", "s1");
    let deadline = Duration::from_secs(10);
    until(deadline, || reaches("a")).await;
    storage.put(&key, serde_json::to_vec(&pod("p", "b", "s1")).unwrap());
    until(deadline, || reaches("b") && !reaches("a")).await;
    storage.remove(&key);
    until(deadline, || !reaches("b")).await;
}

/// Poll `cond` until it holds; panics after `deadline`.
async fn until(deadline: Duration, cond: impl Fn() -> bool) {
    let start = tokio::time::Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < deadline,
            "condition not reached within {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
