//! The default RBAC policy, created on first start when missing (never
//! overwritten): `cluster-admin`, the aggregated `admin`, `edit` and `view`
//! with their `system:aggregate-to-*` parts, and the `system:*` roles and
//! bindings that let every authenticated user discover the API and ask what
//! it may do. Names and intent follow Kubernetes' bootstrap policy; the
//! rules are a subset sized to the kinds Keel serves and their neighbours.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::MASTERS;
use super::rule::Rule;
use crate::error::ApiError;
use crate::http::auth::UserInfo;
use crate::registry::Registry;
use crate::request::RequestTarget;

const READ: &[&str] = &["get", "list", "watch"];
const WRITE: &[&str] = &["create", "delete", "deletecollection", "patch", "update"];
const READ_WRITE: &[&str] = &[
    "get",
    "list",
    "watch",
    "create",
    "delete",
    "deletecollection",
    "patch",
    "update",
];

pub(super) fn r(verbs: &[&str], groups: &[&str], resources: &[&str]) -> Rule {
    Rule::resource(verbs, groups, resources)
}

fn meta(name: &str, extra_labels: &[(&str, &str)]) -> Value {
    let mut labels = json!({"kubernetes.io/bootstrapping": "rbac-defaults"});
    for (k, v) in extra_labels {
        labels[*k] = json!(v);
    }
    json!({
        "name": name,
        "labels": labels,
        "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"},
    })
}

pub(super) fn cluster_role(name: &str, labels: &[(&str, &str)], rules: Vec<Rule>) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": meta(name, labels), "rules": rules,
    })
}

/// An aggregated role gathering the roles labelled `aggregate-to-{to}`.
fn aggregated(name: &str, labels: &[(&str, &str)], to: &str) -> Value {
    let mut v = cluster_role(name, labels, vec![]);
    v["aggregationRule"] = json!({"clusterRoleSelectors": [
        {"matchLabels": {format!("rbac.authorization.k8s.io/aggregate-to-{to}"): "true"}}
    ]});
    v
}

fn binding(role: &str, subjects: &[(&str, &str)]) -> Value {
    let subjects: Vec<Value> = subjects
        .iter()
        .map(|(kind, name)| json!({"kind": kind, "apiGroup": "rbac.authorization.k8s.io", "name": name}))
        .collect();
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": meta(role, &[]),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": subjects,
    })
}

/// A ClusterRoleBinding of `role` to the ServiceAccount `namespace/name`.
pub(super) fn binding_to_service_account(role: &str, namespace: &str, name: &str) -> Value {
    let mut b = binding(role, &[]);
    b["subjects"] = json!([{"kind": "ServiceAccount", "namespace": namespace, "name": name}]);
    b
}

pub(super) fn events() -> Rule {
    r(
        &["create", "update", "patch"],
        &["", "events.k8s.io"],
        &["events"],
    )
}

/// The default ClusterRoles.
pub fn cluster_roles() -> Vec<Value> {
    let to = |l: &'static str| {
        (
            "rbac.authorization.k8s.io/aggregate-to-".to_string() + l,
            "true",
        )
    };
    let (admin, edit, view) = (to("admin"), to("edit"), to("view"));
    vec![
        cluster_role(
            "cluster-admin",
            &[],
            vec![r(&["*"], &["*"], &["*"]), Rule::urls(&["*"], &["*"])],
        ),
        aggregated("admin", &[], "admin"),
        aggregated("edit", &[(&admin.0, admin.1)], "edit"),
        aggregated("view", &[(&edit.0, edit.1)], "view"),
        cluster_role(
            "system:aggregate-to-admin",
            &[(&admin.0, admin.1)],
            vec![
                r(
                    &["create"],
                    &["authorization.k8s.io"],
                    &["localsubjectaccessreviews"],
                ),
                r(
                    READ_WRITE,
                    &["rbac.authorization.k8s.io"],
                    &["roles", "rolebindings"],
                ),
            ],
        ),
        cluster_role(
            "system:aggregate-to-edit",
            &[(&edit.0, edit.1)],
            vec![
                r(
                    READ,
                    &[""],
                    &[
                        "pods/attach",
                        "pods/proxy",
                        "pods/exec",
                        "pods/portforward",
                        "secrets",
                        "services/proxy",
                    ],
                ),
                r(&["impersonate"], &[""], &["serviceaccounts"]),
                r(
                    WRITE,
                    &[""],
                    &[
                        "pods",
                        "pods/attach",
                        "pods/proxy",
                        "pods/exec",
                        "pods/portforward",
                    ],
                ),
                r(&["create"], &[""], &["pods/eviction"]),
                r(
                    WRITE,
                    &[""],
                    &[
                        "replicationcontrollers",
                        "replicationcontrollers/scale",
                        "serviceaccounts",
                        "services",
                        "services/proxy",
                        "persistentvolumeclaims",
                        "configmaps",
                        "secrets",
                        "events",
                    ],
                ),
                r(&["create"], &[""], &["serviceaccounts/token"]),
                r(
                    WRITE,
                    &["apps"],
                    &[
                        "statefulsets",
                        "statefulsets/scale",
                        "daemonsets",
                        "deployments",
                        "deployments/scale",
                        "deployments/rollback",
                        "replicasets",
                        "replicasets/scale",
                    ],
                ),
                r(WRITE, &["autoscaling"], &["horizontalpodautoscalers"]),
                r(WRITE, &["batch"], &["jobs", "cronjobs"]),
                r(WRITE, &["policy"], &["poddisruptionbudgets"]),
                r(
                    WRITE,
                    &["networking.k8s.io"],
                    &["networkpolicies", "ingresses"],
                ),
                r(READ_WRITE, &["coordination.k8s.io"], &["leases"]),
            ],
        ),
        cluster_role(
            "system:aggregate-to-view",
            &[(&view.0, view.1)],
            vec![
                r(
                    READ,
                    &[""],
                    &[
                        "pods",
                        "replicationcontrollers",
                        "replicationcontrollers/scale",
                        "serviceaccounts",
                        "services",
                        "services/status",
                        "endpoints",
                        "persistentvolumeclaims",
                        "persistentvolumeclaims/status",
                        "configmaps",
                    ],
                ),
                r(
                    READ,
                    &[""],
                    &[
                        "limitranges",
                        "resourcequotas",
                        "bindings",
                        "events",
                        "pods/status",
                        "resourcequotas/status",
                        "namespaces/status",
                        "replicationcontrollers/status",
                        "pods/log",
                    ],
                ),
                r(READ, &[""], &["namespaces"]),
                r(READ, &["discovery.k8s.io"], &["endpointslices"]),
                r(
                    READ,
                    &["apps"],
                    &[
                        "controllerrevisions",
                        "statefulsets",
                        "statefulsets/status",
                        "statefulsets/scale",
                        "daemonsets",
                        "daemonsets/status",
                        "deployments",
                        "deployments/status",
                        "deployments/scale",
                        "replicasets",
                        "replicasets/status",
                        "replicasets/scale",
                    ],
                ),
                r(
                    READ,
                    &["autoscaling"],
                    &[
                        "horizontalpodautoscalers",
                        "horizontalpodautoscalers/status",
                    ],
                ),
                r(
                    READ,
                    &["batch"],
                    &["jobs", "cronjobs", "cronjobs/status", "jobs/status"],
                ),
                r(
                    READ,
                    &["policy"],
                    &["poddisruptionbudgets", "poddisruptionbudgets/status"],
                ),
                r(
                    READ,
                    &["networking.k8s.io"],
                    &["networkpolicies", "ingresses", "ingresses/status"],
                ),
            ],
        ),
        cluster_role(
            "system:basic-user",
            &[],
            vec![
                r(
                    &["create"],
                    &["authorization.k8s.io"],
                    &["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                ),
                r(
                    &["create"],
                    &["authentication.k8s.io"],
                    &["selfsubjectreviews"],
                ),
            ],
        ),
        cluster_role(
            "system:discovery",
            &[],
            vec![Rule::urls(
                &["get"],
                &[
                    "/api",
                    "/api/*",
                    "/apis",
                    "/apis/*",
                    "/healthz",
                    "/livez",
                    "/openapi",
                    "/openapi/*",
                    "/readyz",
                    "/version",
                    "/version/",
                ],
            )],
        ),
        cluster_role(
            "system:public-info-viewer",
            &[],
            vec![Rule::urls(
                &["get"],
                &["/healthz", "/livez", "/readyz", "/version", "/version/"],
            )],
        ),
        cluster_role(
            "system:monitoring",
            &[],
            vec![Rule::urls(
                &["get"],
                &[
                    "/metrics",
                    "/metrics/slis",
                    "/livez",
                    "/readyz",
                    "/healthz",
                    "/livez/*",
                    "/readyz/*",
                    "/healthz/*",
                ],
            )],
        ),
        cluster_role(
            "system:auth-delegator",
            &[],
            vec![
                r(&["create"], &["authentication.k8s.io"], &["tokenreviews"]),
                r(
                    &["create"],
                    &["authorization.k8s.io"],
                    &["subjectaccessreviews"],
                ),
            ],
        ),
        cluster_role(
            "system:node-proxier",
            &[],
            vec![
                events(),
                r(&["list", "watch"], &[""], &["services", "endpoints"]),
                r(
                    &["list", "watch"],
                    &["discovery.k8s.io"],
                    &["endpointslices"],
                ),
                r(READ, &[""], &["nodes"]),
            ],
        ),
        cluster_role(
            "system:kube-scheduler",
            &[],
            vec![
                events(),
                r(&["create"], &["coordination.k8s.io"], &["leases"]),
                r(&["get", "update"], &["coordination.k8s.io"], &["leases"])
                    .names(&["kube-scheduler"]),
                r(READ, &[""], &["nodes"]),
                r(&["get", "list", "watch", "delete"], &[""], &["pods"]),
                r(&["create"], &[""], &["pods/binding", "bindings"]),
                r(&["patch", "update"], &[""], &["pods/status"]),
                r(READ, &[""], &["services", "replicationcontrollers"]),
                r(READ, &["apps"], &["replicasets", "statefulsets"]),
                r(READ, &["policy"], &["poddisruptionbudgets"]),
                r(
                    READ,
                    &[""],
                    &["persistentvolumeclaims", "persistentvolumes"],
                ),
                r(&["create"], &["authentication.k8s.io"], &["tokenreviews"]),
                r(
                    &["create"],
                    &["authorization.k8s.io"],
                    &["subjectaccessreviews"],
                ),
                r(
                    READ,
                    &["storage.k8s.io"],
                    &["csinodes", "csidrivers", "csistoragecapacities"],
                ),
                r(READ, &[""], &["namespaces"]),
            ],
        ),
        cluster_role(
            "system:kube-controller-manager",
            &[],
            vec![
                events(),
                r(&["create"], &["coordination.k8s.io"], &["leases"]),
                // Keel's manager holds the lease `keel-controller-manager`.
                r(&["get", "update"], &["coordination.k8s.io"], &["leases"])
                    .names(&["kube-controller-manager", "keel-controller-manager"]),
                r(&["create"], &[""], &["secrets", "serviceaccounts"]),
                r(&["delete"], &[""], &["secrets"]),
                r(
                    &["get"],
                    &[""],
                    &["configmaps", "namespaces", "secrets", "serviceaccounts"],
                ),
                r(&["update"], &[""], &["secrets", "serviceaccounts"]),
                r(&["create"], &["authentication.k8s.io"], &["tokenreviews"]),
                r(
                    &["create"],
                    &["authorization.k8s.io"],
                    &["subjectaccessreviews"],
                ),
                r(&["list", "watch"], &["*"], &["*"]),
                r(&["create"], &[""], &["serviceaccounts/token"]),
            ],
        ),
    ]
}

/// The default ClusterRoleBindings.
pub fn cluster_role_bindings() -> Vec<Value> {
    vec![
        binding("cluster-admin", &[("Group", MASTERS)]),
        binding("system:basic-user", &[("Group", "system:authenticated")]),
        binding("system:discovery", &[("Group", "system:authenticated")]),
        binding(
            "system:public-info-viewer",
            &[
                ("Group", "system:authenticated"),
                ("Group", "system:unauthenticated"),
            ],
        ),
        binding("system:monitoring", &[("Group", "system:monitoring")]),
        binding("system:node-proxier", &[("User", "system:kube-proxy")]),
        binding(
            "system:kube-scheduler",
            &[("User", "system:kube-scheduler")],
        ),
        binding(
            "system:kube-controller-manager",
            &[("User", "system:kube-controller-manager")],
        ),
    ]
}

/// Create every default object that is missing, once a leader exists; an
/// existing one is left as it is (an operator may have changed it).
pub async fn run(registry: Arc<Registry>) {
    let apiserver = UserInfo {
        name: "system:apiserver".into(),
        groups: vec![MASTERS.into()],
        ..UserInfo::default()
    };
    let objects = [
        ("clusterroles", cluster_roles()),
        ("clusterrolebindings", cluster_role_bindings()),
        ("clusterroles", super::controllers::cluster_roles()),
        (
            "clusterrolebindings",
            super::controllers::cluster_role_bindings(),
        ),
    ];
    for (plural, list) in objects {
        let Some(rt) = registry
            .kinds
            .find("rbac.authorization.k8s.io", "v1", plural)
        else {
            continue;
        };
        let target = RequestTarget {
            rt,
            namespace: None,
            name: None,
            subresource: None,
        };
        for obj in list {
            loop {
                match registry
                    .create_object(&target, obj.clone(), false, &apiserver)
                    .await
                {
                    Ok(_) | Err(ApiError::AlreadyExists { .. }) => break,
                    Err(ApiError::Unavailable(_) | ApiError::StoreTimeout(_)) => {
                        tokio::time::sleep(Duration::from_millis(200)).await
                    }
                    Err(e) => {
                        tracing::warn!(name = %obj["metadata"]["name"], error = %e, "cannot create a default RBAC object");
                        break;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::Kinds;

    #[test]
    fn the_default_policy_is_valid_and_labelled() {
        let kinds = Kinds::builtin();
        for (plural, objs) in [
            ("clusterroles", cluster_roles()),
            ("clusterrolebindings", cluster_role_bindings()),
            ("clusterroles", super::super::controllers::cluster_roles()),
            (
                "clusterrolebindings",
                super::super::controllers::cluster_role_bindings(),
            ),
        ] {
            let rt = kinds
                .find("rbac.authorization.k8s.io", "v1", plural)
                .unwrap();
            for o in objs {
                let causes = rt.strategy.validate(&o);
                assert!(causes.is_empty(), "{}: {causes:?}", o["metadata"]["name"]);
                assert_eq!(
                    o["metadata"]["labels"]["kubernetes.io/bootstrapping"],
                    "rbac-defaults"
                );
            }
        }
    }
}
