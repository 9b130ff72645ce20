//! What the workload controllers ask of pods and of the objects they own,
//! as Kubernetes' controller utilities answer it: whether a pod is active,
//! ready or available, who its controller is, whether a label selector
//! selects it, and in which order a replica set's pods are deleted.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::core::{Selector, SelectorExt};

/// The annotation that orders deletion when a replica set scales down.
pub const DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

/// Not finished and not being deleted: a pod that counts as a replica.
pub fn is_active(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    pod.metadata.deletion_timestamp.is_none() && !matches!(phase, Some("Succeeded" | "Failed"))
}

/// The pod's Ready condition, when it is True: since when.
pub fn ready_since(pod: &Pod) -> Option<Option<Timestamp>> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "True")
        .map(|c| c.last_transition_time.as_ref().map(|t| t.0))
}

pub fn is_ready(pod: &Pod) -> bool {
    ready_since(pod).is_some()
}

/// Ready for at least `min_ready` seconds at `now` (Kubernetes'
/// `IsPodAvailable`): a Ready pod without a transition time is available.
pub fn is_available(pod: &Pod, min_ready: i32, now: Timestamp) -> bool {
    match ready_since(pod) {
        None => false,
        Some(_) if min_ready <= 0 => true,
        Some(None) => true,
        Some(Some(since)) => since.as_second() + i64::from(min_ready) <= now.as_second(),
    }
}

/// Seconds until a Ready pod becomes available, if it is not yet.
pub fn seconds_to_available(pod: &Pod, min_ready: i32, now: Timestamp) -> Option<i64> {
    match ready_since(pod)? {
        Some(since) if min_ready > 0 => {
            let left = since.as_second() + i64::from(min_ready) - now.as_second();
            (left > 0).then_some(left)
        }
        _ => None,
    }
}

/// The owner reference that says who controls `meta`.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .as_ref()?
        .iter()
        .find(|r| r.controller == Some(true))
}

/// A controller reference to an owner, as every workload controller writes it.
pub fn controller_ref(api_version: &str, kind: &str, owner: &ObjectMeta) -> OwnerReference {
    OwnerReference {
        api_version: api_version.to_string(),
        kind: kind.to_string(),
        name: owner.name.clone().unwrap_or_default(),
        uid: owner.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Whether `selector` selects `labels`. An empty (or unparsable) selector
/// selects nothing, as the workload controllers treat it.
pub fn selects(selector: &LabelSelector, labels: Option<&BTreeMap<String, String>>) -> bool {
    let empty = selector.match_labels.as_ref().is_none_or(|m| m.is_empty())
        && selector
            .match_expressions
            .as_ref()
            .is_none_or(|e| e.is_empty());
    if empty {
        return false;
    }
    let Ok(sel) = Selector::try_from(selector.clone()) else {
        return false;
    };
    let none = BTreeMap::new();
    sel.matches(labels.unwrap_or(&none))
}

/// A pod made from `template` for controller `owner` (named `<owner>-` plus
/// a suffix the API server picks), as Kubernetes' `GetPodFromTemplate`.
pub fn pod_from_template(
    template: &PodTemplateSpec,
    namespace: &str,
    owner: OwnerReference,
) -> Pod {
    let tmeta = template.metadata.clone().unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", owner.name)),
            namespace: Some(namespace.to_string()),
            labels: tmeta.labels,
            annotations: tmeta.annotations,
            finalizers: tmeta.finalizers,
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

/// Whether `labels` carry every label of the template (`fullyLabeledReplicas`).
pub fn fully_labeled(pod: &Pod, template: &PodTemplateSpec) -> bool {
    let want = template.metadata.as_ref().and_then(|m| m.labels.as_ref());
    let have = pod.metadata.labels.as_ref();
    want.is_none_or(|w| {
        w.iter()
            .all(|(k, v)| have.and_then(|h| h.get(k)) == Some(v))
    })
}

fn phase_rank(pod: &Pod) -> u8 {
    match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Pending") | None => 0,
        Some("Unknown") => 1,
        Some("Running") => 2,
        _ => 3,
    }
}

fn deletion_cost(pod: &Pod) -> i64 {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DELETION_COST))
        .and_then(|v| v.parse::<i32>().ok())
        .map_or(0, i64::from)
}

fn restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map_or(0, |c| c.iter().map(|c| c.restart_count).max().unwrap_or(0))
}

/// The order in which to delete `pods` (the first goes first), as
/// Kubernetes' `ActivePodsWithRanks`: unscheduled before scheduled,
/// Pending before Unknown before Running, not ready before ready, lower
/// `pod-deletion-cost` first, pods doubled up on a node before lone ones,
/// ready for less time before more, more restarts before fewer, newer
/// before older.
pub fn deletion_order(pods: &[&Pod]) -> Vec<usize> {
    let mut per_node: HashMap<&str, usize> = HashMap::new();
    for p in pods {
        if let Some(n) = p.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
            *per_node.entry(n).or_default() += 1;
        }
    }
    fn node(p: &Pod) -> Option<&str> {
        p.spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .filter(|n| !n.is_empty())
    }
    let rank = |p: &Pod| node(p).map_or(0, |n| per_node.get(n).copied().unwrap_or(0));
    let mut idx: Vec<usize> = (0..pods.len()).collect();
    idx.sort_by(|&a, &b| {
        let (a, b) = (pods[a], pods[b]);
        node(a)
            .is_some()
            .cmp(&node(b).is_some())
            .then_with(|| phase_rank(a).cmp(&phase_rank(b)))
            .then_with(|| is_ready(a).cmp(&is_ready(b)))
            .then_with(|| deletion_cost(a).cmp(&deletion_cost(b)))
            .then_with(|| rank(b).cmp(&rank(a)))
            .then_with(
                || match (ready_since(a).flatten(), ready_since(b).flatten()) {
                    // Ready more recently goes first.
                    (Some(x), Some(y)) => y.cmp(&x),
                    _ => Ordering::Equal,
                },
            )
            .then_with(|| restarts(b).cmp(&restarts(a)))
            .then_with(|| {
                let ca = a.metadata.creation_timestamp.as_ref().map(|t| t.0);
                let cb = b.metadata.creation_timestamp.as_ref().map(|t| t.0);
                match (ca, cb) {
                    (None, Some(_)) => Ordering::Less,
                    (Some(_), None) => Ordering::Greater,
                    (x, y) => y.cmp(&x),
                }
            })
    });
    idx
}

/// The sizes of the create batches for `n` pods: 1, 2, 4, ... (slow start),
/// so a template the API refuses fails once, not `n` times.
pub fn slow_start_batches(n: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let (mut left, mut size) = (n, 1usize);
    while left > 0 {
        let b = size.min(left);
        out.push(b);
        left -= b;
        size = size.saturating_mul(2);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelectorRequirement, Time};

    fn pod(
        name: &str,
        node: Option<&str>,
        phase: &str,
        ready_at: Option<i64>,
        created: i64,
    ) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                creation_timestamp: Some(Time(Timestamp::from_second(created).unwrap())),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: node.map(str::to_string),
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                conditions: ready_at.map(|t| {
                    vec![PodCondition {
                        type_: "Ready".into(),
                        status: "True".into(),
                        last_transition_time: Some(Time(Timestamp::from_second(t).unwrap())),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
        }
    }

    fn names(pods: &[&Pod]) -> Vec<String> {
        deletion_order(pods)
            .into_iter()
            .map(|i| pods[i].metadata.name.clone().unwrap())
            .collect()
    }

    #[test]
    fn pods_are_deleted_unscheduled_then_pending_then_not_ready_then_newest() {
        let cases: &[(&str, Vec<Pod>, &[&str])] = &[
            (
                "unscheduled before scheduled",
                vec![
                    pod("on-node", Some("n1"), "Pending", None, 10),
                    pod("nowhere", None, "Pending", None, 5),
                ],
                &["nowhere", "on-node"],
            ),
            (
                "pending before running",
                vec![
                    pod("running", Some("n1"), "Running", Some(20), 10),
                    pod("pending", Some("n2"), "Pending", None, 5),
                ],
                &["pending", "running"],
            ),
            (
                "not ready before ready",
                vec![
                    pod("ready", Some("n1"), "Running", Some(20), 10),
                    pod("unready", Some("n2"), "Running", None, 5),
                ],
                &["unready", "ready"],
            ),
            (
                "doubled up on a node before alone",
                vec![
                    pod("alone", Some("n1"), "Running", Some(20), 10),
                    pod("pair-a", Some("n2"), "Running", Some(20), 10),
                    pod("pair-b", Some("n2"), "Running", Some(20), 10),
                ],
                &["pair-a", "pair-b", "alone"],
            ),
            (
                "ready for less time first, then newest",
                vec![
                    pod("old-ready", Some("n1"), "Running", Some(20), 1),
                    pod("new-ready", Some("n2"), "Running", Some(50), 2),
                    pod("same-older", Some("n3"), "Running", Some(50), 1),
                ],
                &["new-ready", "same-older", "old-ready"],
            ),
        ];
        for (what, pods, want) in cases {
            let refs: Vec<&Pod> = pods.iter().collect();
            assert_eq!(names(&refs), *want, "{what}");
        }
    }

    #[test]
    fn deletion_cost_orders_pods_of_the_same_state() {
        let mut cheap = pod("cheap", Some("n1"), "Running", Some(20), 1);
        let mut dear = pod("dear", Some("n2"), "Running", Some(20), 2);
        cheap.metadata.annotations = Some([(DELETION_COST.into(), "-5".into())].into());
        dear.metadata.annotations = Some([(DELETION_COST.into(), "100".into())].into());
        assert_eq!(names(&[&dear, &cheap]), ["cheap", "dear"]);
    }

    #[test]
    fn availability_waits_min_ready_seconds() {
        let p = pod("p", Some("n"), "Running", Some(100), 1);
        let at = |s| Timestamp::from_second(s).unwrap();
        assert!(is_available(&p, 0, at(100)));
        assert!(!is_available(&p, 10, at(105)));
        assert_eq!(seconds_to_available(&p, 10, at(105)), Some(5));
        assert!(is_available(&p, 10, at(110)));
        let unready = pod("u", Some("n"), "Running", None, 1);
        assert!(!is_available(&unready, 0, at(100)));
    }

    #[test]
    fn selectors_select_as_kubernetes_and_empty_selects_nothing() {
        let labels: BTreeMap<String, String> =
            [("app".into(), "web".into()), ("tier".into(), "fe".into())].into();
        let by_label = LabelSelector {
            match_labels: Some([("app".into(), "web".into())].into()),
            ..Default::default()
        };
        assert!(selects(&by_label, Some(&labels)));
        assert!(!selects(&by_label, None));
        let expr = LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: "NotIn".into(),
                values: Some(vec!["fe".into()]),
            }]),
            ..Default::default()
        };
        assert!(!selects(&expr, Some(&labels)));
        assert!(!selects(&LabelSelector::default(), Some(&labels)));
    }

    #[test]
    fn creations_start_slow() {
        assert_eq!(slow_start_batches(0), Vec::<usize>::new());
        assert_eq!(slow_start_batches(1), [1]);
        assert_eq!(slow_start_batches(10), [1, 2, 4, 3]);
        assert_eq!(slow_start_batches(16), [1, 2, 4, 8, 1]);
    }

    #[test]
    fn finished_and_deleting_pods_are_not_replicas() {
        let mut done = pod("d", Some("n"), "Succeeded", None, 1);
        assert!(!is_active(&done));
        done.status.as_mut().unwrap().phase = Some("Running".into());
        assert!(is_active(&done));
        done.metadata.deletion_timestamp = Some(Time(Timestamp::from_second(5).unwrap()));
        assert!(!is_active(&done));
    }
}
