//! The controllers' own roles: one `system:controller:<account>`
//! ClusterRole per controller Keel runs, bound to the ServiceAccount
//! `kube-system/<account>` whose tokens the controller manager requests
//! for each controller (kube-controller-manager's
//! `--use-service-account-credentials`). The accounts and rules follow
//! Kubernetes' bootstrap controller policy; where Kubernetes grants only
//! `update` Keel also grants `patch`, since controllers written on kube-rs
//! write status and metadata with patches. The scheduler's account is bound
//! to `system:kube-scheduler` and `system:volume-scheduler`.

use serde_json::Value;

use super::bootstrap::{binding_to_service_account, cluster_role, events, r};
use super::rule::Rule;

/// Where the controllers' ServiceAccounts live.
pub const NAMESPACE: &str = "kube-system";

const READ: &[&str] = &["get", "list", "watch"];
const WATCH: &[&str] = &["list", "watch"];
const UPDATE: &[&str] = &["update", "patch"];
const ALL: &[&str] = &[
    "get", "list", "watch", "create", "update", "patch", "delete",
];

/// Each controller account and its rules (besides events, which all get).
fn accounts() -> Vec<(&'static str, Vec<Rule>)> {
    let pods = |verbs: &[&str]| r(verbs, &[""], &["pods"]);
    vec![
        (
            "generic-garbage-collector",
            vec![r(
                &["get", "list", "watch", "patch", "update", "delete"],
                &["*"],
                &["*"],
            )],
        ),
        (
            "namespace-controller",
            vec![
                r(&["get", "list", "watch", "delete"], &[""], &["namespaces"]),
                r(UPDATE, &[""], &["namespaces/finalize", "namespaces/status"]),
                r(
                    &["get", "list", "watch", "delete", "deletecollection"],
                    &["*"],
                    &["*"],
                ),
            ],
        ),
        (
            "persistent-volume-binder",
            vec![
                r(ALL, &[""], &["persistentvolumes"]),
                r(UPDATE, &[""], &["persistentvolumes/status"]),
                r(
                    &["get", "list", "watch", "update", "patch"],
                    &[""],
                    &["persistentvolumeclaims"],
                ),
                r(UPDATE, &[""], &["persistentvolumeclaims/status"]),
                pods(&["get", "list", "watch", "create", "delete"]),
                r(READ, &["storage.k8s.io"], &["storageclasses"]),
                r(WATCH, &[""], &["nodes"]),
            ],
        ),
        (
            "replicaset-controller",
            vec![
                r(
                    &["get", "list", "watch", "update", "patch"],
                    &["apps"],
                    &["replicasets"],
                ),
                r(
                    UPDATE,
                    &["apps"],
                    &["replicasets/status", "replicasets/finalizers"],
                ),
                pods(&["get", "list", "watch", "create", "delete", "patch"]),
            ],
        ),
        (
            "deployment-controller",
            vec![
                r(
                    &["get", "list", "watch", "update", "patch"],
                    &["apps"],
                    &["deployments"],
                ),
                r(
                    UPDATE,
                    &["apps"],
                    &["deployments/status", "deployments/finalizers"],
                ),
                r(ALL, &["apps"], &["replicasets"]),
                pods(&["get", "list", "watch", "update", "patch"]),
            ],
        ),
        (
            "statefulset-controller",
            vec![
                r(
                    &["get", "list", "watch", "update", "patch"],
                    &["apps"],
                    &["statefulsets"],
                ),
                r(
                    UPDATE,
                    &["apps"],
                    &["statefulsets/status", "statefulsets/finalizers"],
                ),
                pods(ALL),
                r(UPDATE, &[""], &["pods/finalizers"]),
                r(ALL, &["apps"], &["controllerrevisions"]),
                r(ALL, &[""], &["persistentvolumeclaims"]),
            ],
        ),
        (
            "daemon-set-controller",
            vec![
                r(
                    &["get", "list", "watch", "update", "patch"],
                    &["apps"],
                    &["daemonsets"],
                ),
                r(
                    UPDATE,
                    &["apps"],
                    &["daemonsets/status", "daemonsets/finalizers"],
                ),
                r(READ, &[""], &["nodes"]),
                pods(&["get", "list", "watch", "create", "delete", "patch"]),
                r(&["create"], &[""], &["pods/binding"]),
                r(ALL, &["apps"], &["controllerrevisions"]),
            ],
        ),
        (
            "job-controller",
            vec![
                r(
                    &["get", "list", "watch", "update", "patch", "delete"],
                    &["batch"],
                    &["jobs"],
                ),
                r(UPDATE, &["batch"], &["jobs/status", "jobs/finalizers"]),
                pods(&[
                    "get", "list", "watch", "create", "delete", "patch", "update",
                ]),
            ],
        ),
        (
            "cronjob-controller",
            vec![
                r(
                    &["get", "list", "watch", "update", "patch"],
                    &["batch"],
                    &["cronjobs"],
                ),
                r(ALL, &["batch"], &["jobs"]),
                r(
                    UPDATE,
                    &["batch"],
                    &["cronjobs/status", "cronjobs/finalizers"],
                ),
                pods(&["list", "watch", "delete"]),
            ],
        ),
        (
            "endpoint-controller",
            vec![
                r(READ, &[""], &["services", "pods"]),
                r(ALL, &[""], &["endpoints"]),
                r(&["create"], &[""], &["endpoints/restricted"]),
            ],
        ),
        (
            "endpointslice-controller",
            vec![
                r(READ, &[""], &["services", "pods", "nodes"]),
                r(UPDATE, &[""], &["services/finalizers"]),
                r(ALL, &["discovery.k8s.io"], &["endpointslices"]),
            ],
        ),
        (
            "service-account-controller",
            vec![
                r(&["create"], &[""], &["serviceaccounts"]),
                r(READ, &[""], &["serviceaccounts", "namespaces"]),
            ],
        ),
        (
            "resourcequota-controller",
            vec![
                r(WATCH, &["*"], &["*"]),
                r(READ, &[""], &["resourcequotas"]),
                r(UPDATE, &[""], &["resourcequotas/status"]),
            ],
        ),
        (
            "disruption-controller",
            vec![
                r(
                    READ,
                    &["apps"],
                    &["deployments", "replicasets", "statefulsets"],
                ),
                r(READ, &[""], &["replicationcontrollers", "pods"]),
                r(READ, &["policy"], &["poddisruptionbudgets"]),
                r(UPDATE, &["policy"], &["poddisruptionbudgets/status"]),
                r(UPDATE, &[""], &["pods/status"]),
                r(&["get"], &["*"], &["*/scale"]),
            ],
        ),
        (
            "event-ttl-controller",
            vec![r(
                &["get", "list", "watch", "delete", "deletecollection"],
                &["", "events.k8s.io"],
                &["events"],
            )],
        ),
        (
            "node-controller",
            vec![
                r(
                    &["get", "list", "watch", "update", "delete", "patch"],
                    &[""],
                    &["nodes"],
                ),
                r(UPDATE, &[""], &["nodes/status", "pods/status"]),
                pods(&["get", "list", "watch", "delete"]),
                r(READ, &["coordination.k8s.io"], &["leases"]),
            ],
        ),
    ]
}

/// The account the scheduler runs as, bound to Kubernetes' scheduler roles.
pub const SCHEDULER_ACCOUNT: &str = "kube-scheduler";

/// `system:volume-scheduler`: what the scheduler's volume binding writes.
pub fn volume_scheduler_role() -> Value {
    cluster_role(
        "system:volume-scheduler",
        &[],
        vec![
            r(
                &["get", "list", "watch", "patch", "update"],
                &[""],
                &["persistentvolumes"],
            ),
            r(READ, &["storage.k8s.io"], &["storageclasses"]),
            r(
                &["get", "list", "watch", "patch", "update"],
                &[""],
                &["persistentvolumeclaims"],
            ),
        ],
    )
}

/// The controllers' ClusterRoles.
pub fn cluster_roles() -> Vec<Value> {
    let mut roles: Vec<Value> = accounts()
        .into_iter()
        .map(|(account, mut rules)| {
            rules.push(events());
            cluster_role(&format!("system:controller:{account}"), &[], rules)
        })
        .collect();
    roles.push(volume_scheduler_role());
    roles
}

/// Each controller role bound to its account, and the scheduler's account
/// to the scheduler roles.
pub fn cluster_role_bindings() -> Vec<Value> {
    let mut bindings: Vec<Value> = accounts()
        .into_iter()
        .map(|(account, _)| {
            binding_to_service_account(&format!("system:controller:{account}"), NAMESPACE, account)
        })
        .collect();
    for role in ["system:kube-scheduler", "system:volume-scheduler"] {
        let mut b = binding_to_service_account(role, NAMESPACE, SCHEDULER_ACCOUNT);
        // `system:kube-scheduler` is already bound to the user of that
        // name: this binding has a name of its own.
        b["metadata"]["name"] = format!("{role}:{SCHEDULER_ACCOUNT}-account").into();
        bindings.push(b);
    }
    bindings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_controller_role_is_bound_to_its_account_and_may_write_events() {
        let roles = cluster_roles();
        let bindings = cluster_role_bindings();
        for (account, _) in accounts() {
            let name = format!("system:controller:{account}");
            let role = roles
                .iter()
                .find(|r| r["metadata"]["name"] == name.as_str());
            let role = role.unwrap_or_else(|| panic!("no role {name}"));
            let rules = super::super::rule::rules_of(role);
            assert!(
                rules
                    .iter()
                    .any(|r| r.resources.contains(&"events".to_string())
                        && r.verbs.contains(&"create".to_string())),
                "{name} cannot record events"
            );
            let b = bindings
                .iter()
                .find(|b| b["roleRef"]["name"] == name.as_str())
                .unwrap_or_else(|| panic!("{name} is not bound"));
            assert_eq!(b["subjects"][0]["kind"], "ServiceAccount");
            assert_eq!(b["subjects"][0]["namespace"], NAMESPACE);
            assert_eq!(b["subjects"][0]["name"], account);
        }
        let names: Vec<&str> = bindings
            .iter()
            .filter_map(|b| b["metadata"]["name"].as_str())
            .collect();
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(
            unique.len(),
            names.len(),
            "binding names collide: {names:?}"
        );
    }
}
