//! Scores of the nodes that fit, as kube-scheduler's default score
//! plugins compute them, each 0 to 100 and summed with the default
//! profile's weights: NodeResourcesFit with the LeastAllocated strategy
//! (weight 1: favour the node with the most CPU and memory left),
//! NodeResourcesBalancedAllocation (weight 1: favour the node whose CPU and
//! memory use stay in proportion), NodeAffinity (weight 2: the weights of
//! the preferred terms a node matches, normalized to the best node) and
//! TaintToleration (weight 3: fewer untolerated PreferNoSchedule taints,
//! normalized). Requests are counted with the scoring defaults for
//! containers without requests.

use k8s_openapi::api::core::v1::{Node, Pod};

use super::cache::NodeInfo;
use super::filter::{self, tolerates};
use super::labels;
use super::quantity::Resources;

/// The default profile's weights of the preference plugins.
pub const NODE_AFFINITY_WEIGHT: i64 = 2;
pub const TAINT_TOLERATION_WEIGHT: i64 = 3;

/// The sum of the weights of the pod's preferred node affinity terms that
/// `node` matches.
pub fn preferred_node_affinity(pod: &Pod, node: &Node) -> i64 {
    let name = node.metadata.name.as_deref().unwrap_or_default();
    let node_labels = filter::node_labels(node);
    pod.spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .into_iter()
        .flatten()
        .filter(|t| t.weight != 0 && labels::term_matches(&t.preference, name, node_labels))
        .map(|t| i64::from(t.weight))
        .sum()
}

/// How many PreferNoSchedule taints of `node` the pod does not tolerate.
pub fn intolerable_prefer_no_schedule(pod: &Pod, node: &Node) -> i64 {
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or_default();
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default()
        .iter()
        .filter(|t| t.effect == "PreferNoSchedule")
        .filter(|t| !tolerations.iter().any(|tol| tolerates(tol, t)))
        .count() as i64
}

/// kube-scheduler's DefaultNormalizeScore: `raw` scaled so that the
/// highest of the nodes is 100 (`reverse`: so that the lowest is 100).
pub fn normalize(raw: i64, max: i64, reverse: bool) -> i64 {
    if max == 0 {
        return if reverse { MAX_SCORE } else { 0 };
    }
    let s = raw * MAX_SCORE / max;
    if reverse { MAX_SCORE - s } else { s }
}

/// The highest score a plugin gives.
pub const MAX_SCORE: i64 = 100;

/// (requested with the pod, allocatable) for CPU and memory.
fn usage(info: &NodeInfo, pod: (i128, i128), allocatable: &Resources) -> [(i128, i128); 2] {
    let get = |r: &str| allocatable.get(r).copied().unwrap_or(0);
    [
        (info.non_zero.0 + pod.0, get("cpu")),
        (info.non_zero.1 + pod.1, get("memory")),
    ]
}

/// LeastAllocated: the mean over CPU and memory of the share left free.
pub fn least_allocated(info: &NodeInfo, pod: (i128, i128), allocatable: &Resources) -> i64 {
    let u = usage(info, pod, allocatable);
    let per = |(req, alloc): (i128, i128)| -> i128 {
        if alloc <= 0 || req > alloc {
            0
        } else {
            (alloc - req) * MAX_SCORE as i128 / alloc
        }
    };
    ((per(u[0]) + per(u[1])) / 2) as i64
}

/// BalancedAllocation: 100 × (1 − the standard deviation of the CPU and
/// memory fractions), each fraction capped at 1.
pub fn balanced_allocation(info: &NodeInfo, pod: (i128, i128), allocatable: &Resources) -> i64 {
    let u = usage(info, pod, allocatable);
    let frac = |(req, alloc): (i128, i128)| -> f64 {
        if alloc <= 0 {
            1.0
        } else {
            (req as f64 / alloc as f64).min(1.0)
        }
    };
    // With two resources the standard deviation is half their difference.
    let std = (frac(u[0]) - frac(u[1])).abs() / 2.0;
    ((1.0 - std) * MAX_SCORE as f64) as i64
}

/// The node's total score for a pod with `pod` (non-zero CPU, memory).
pub fn score(info: &NodeInfo, pod: (i128, i128), allocatable: &Resources) -> i64 {
    least_allocated(info, pod, allocatable) + balanced_allocation(info, pod, allocatable)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::quantity::ONE;

    fn node(cpu_used: i128, mem_used: i128) -> NodeInfo {
        NodeInfo {
            non_zero: (cpu_used, mem_used),
            ..Default::default()
        }
    }

    fn alloc(cpu: i128, mem: i128) -> Resources {
        [("cpu".to_string(), cpu), ("memory".to_string(), mem)].into()
    }

    #[test]
    fn preferences_are_normalized_to_the_best_node() {
        assert_eq!(normalize(50, 100, false), 50);
        assert_eq!(normalize(0, 0, false), 0);
        assert_eq!(normalize(1, 2, true), 50);
        assert_eq!(normalize(0, 0, true), MAX_SCORE);
        assert_eq!(normalize(2, 2, true), 0);
    }

    #[test]
    fn scores_as_kube_scheduler() {
        let gi = 1024 * 1024 * 1024 * ONE;
        let a = alloc(4000, 16 * gi);
        // Cases from the plugins' definitions: (used, pod) → (least, balanced).
        let cases = [
            ((0, 0), (0, 0), 100, 100),
            ((0, 0), (2000, 8 * gi), 50, 100),
            ((2000, 0), (0, 0), 75, 75),
            ((3000, 12 * gi), (1000, 4 * gi), 0, 100),
            ((4000, 0), (1000, 0), 50, 50),
        ];
        for (used, pod, least, balanced) in cases {
            let n = node(used.0, used.1);
            assert_eq!(least_allocated(&n, pod, &a), least, "{used:?} {pod:?}");
            assert_eq!(
                balanced_allocation(&n, pod, &a),
                balanced,
                "{used:?} {pod:?}"
            );
        }
        // A node with more room left wins.
        assert!(score(&node(0, 0), (500, gi), &a) > score(&node(1000, gi), (500, gi), &a));
        // At equal free CPU, the node kept in balance wins.
        let lopsided = node(2000, 0);
        let even = node(2000, 8 * gi);
        assert!(
            balanced_allocation(&even, (0, 0), &a) > balanced_allocation(&lopsided, (0, 0), &a)
        );
    }
}
