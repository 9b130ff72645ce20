//! One scheduling decision, pure: the pod's volumes and pod affinity are
//! worked out once (PreFilter), nodes are filtered from a rotating start
//! until kube-scheduler's share of feasible nodes is found
//! (percentageOfNodesToScore, adaptive), the feasible ones are scored
//! (resources, preferred node affinity, PreferNoSchedule taints) and the
//! best taken (ties to the first found). A pod that fits nowhere gets
//! a [`Failure`] whose message is the FailedScheduling message as
//! kube-scheduler words it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Namespace, Pod};

use super::cache::{Cache, HostPort};
use super::filter::{self, PodAffinityState, Reason};
use super::quantity;
use super::score;
use super::topology::SpreadState;
use super::volumes::{self, Reservation, VolumeLister};

/// Where the pod goes and the volumes its waiting claims take there.
#[derive(Debug)]
pub struct Decision {
    pub node: String,
    pub reservation: Reservation,
    /// Nodes filtered and, of them, those that fit.
    pub evaluated: usize,
    pub feasible: usize,
}

/// Why a pod was not scheduled.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// The cluster has no node.
    NoNodes,
    /// Something about the pod rules out every node (a missing claim).
    PreFilter { nodes: usize, message: String },
    /// No node passed the filters: each node's reasons.
    Fit {
        nodes: usize,
        reasons: BTreeMap<String, Vec<Reason>>,
    },
}

/// "count reason" strings sorted as strings and joined, as kube-scheduler
/// builds its histograms.
fn histogram(reasons: impl Iterator<Item = String>) -> String {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for r in reasons {
        *counts.entry(r).or_default() += 1;
    }
    let mut parts: Vec<String> = counts.iter().map(|(r, n)| format!("{n} {r}")).collect();
    parts.sort();
    parts.join(", ")
}

const NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";
const NO_VICTIMS: &str = "No preemption victims found for incoming pod";

impl Failure {
    /// The FailedScheduling message (and the PodScheduled condition's).
    pub fn message(&self) -> String {
        match self {
            Failure::NoNodes => "no nodes available to schedule pods".into(),
            Failure::PreFilter { nodes, message } => format!(
                "0/{nodes} nodes are available: {message}. preemption: 0/{nodes} nodes are available: {nodes} {NO_VICTIMS}.."
            ),
            Failure::Fit { nodes, reasons } => {
                let fit = histogram(reasons.values().flatten().map(Reason::message));
                // No lower-priority pods are evicted for a pod: a node that
                // only lacks room has no victims, the others cannot be helped.
                let preemption = histogram(reasons.values().map(|rs| {
                    if rs.iter().all(Reason::resolvable) {
                        NO_VICTIMS.to_string()
                    } else {
                        NOT_HELPFUL.to_string()
                    }
                }));
                format!(
                    "0/{nodes} nodes are available: {fit}. preemption: 0/{nodes} nodes are available: {preemption}.."
                )
            }
        }
    }
}

/// How many feasible nodes to find before scoring, of `n`:
/// kube-scheduler's adaptive percentageOfNodesToScore (50% less 1% per
/// 125 nodes, at least 5%, and never fewer than 100 nodes).
pub fn feasible_to_find(n: usize) -> usize {
    const MIN: usize = 100;
    if n < MIN {
        return n;
    }
    let pct = 50usize.saturating_sub(n / 125).max(5);
    (n * pct / 100).max(MIN)
}

/// Decide where `pod` goes. `start` is where the node scan begins and
/// moves past the nodes this scan evaluated, so that work spreads.
pub fn schedule(
    pod: &Pod,
    cache: &Cache,
    lister: &dyn VolumeLister,
    namespaces: &[&Namespace],
    start: &mut usize,
) -> Result<Decision, Failure> {
    let nodes: Vec<_> = cache.nodes().collect();
    let n = nodes.len();
    if n == 0 {
        return Err(Failure::NoNodes);
    }
    let vols = volumes::prefilter(pod, lister)
        .map_err(|message| Failure::PreFilter { nodes: n, message })?;
    let node_labels = |name: &str| {
        cache
            .node(name)
            .and_then(|i| i.node.as_deref())
            .map(filter::node_labels)
    };
    let affinity = PodAffinityState::new(
        pod,
        cache.pods(),
        cache.pods_with_anti_affinity(),
        &node_labels,
        namespaces,
    );
    let spread = SpreadState::new(pod, &nodes, &|k| cache.pod(k));
    let spec = pod.spec.clone().unwrap_or_default();
    let requests = quantity::pod_requests(&spec);
    let non_zero = quantity::non_zero_requests(&spec);
    let ports = HostPort::of(pod);
    let want = feasible_to_find(n);
    let mut feasible = Vec::new();
    let mut reasons = BTreeMap::new();
    let mut evaluated = 0;
    for i in 0..n {
        if feasible.len() >= want {
            break;
        }
        evaluated += 1;
        let info = nodes[(*start + i) % n];
        let Some(node) = info.node.as_deref() else {
            continue;
        };
        let name = node.metadata.name.clone().unwrap_or_default();
        let mut failed = filter::node_filters(pod, &requests, &ports, info);
        let mut reservation = Vec::new();
        if failed.is_empty() && !vols.is_empty() {
            match volumes::filter(&vols, node) {
                Ok(r) => reservation = r,
                Err(r) => failed.push(r),
            }
        }
        if failed.is_empty()
            && let Some(r) = spread
                .filter(filter::node_labels(node))
                .or_else(|| affinity.filter(filter::node_labels(node)))
        {
            failed.push(r);
        }
        if failed.is_empty() {
            feasible.push((info, name, reservation));
        } else {
            reasons.insert(name, failed);
        }
    }
    *start = (*start + evaluated) % n;
    if feasible.is_empty() {
        return Err(Failure::Fit { nodes: n, reasons });
    }
    let count = feasible.len();
    // Preferences are raw per node, then normalized over the feasible
    // nodes as kube-scheduler normalizes them.
    let prefs: Vec<(i64, i64)> = feasible
        .iter()
        .map(|(info, _, _)| {
            info.node.as_deref().map_or((0, 0), |n| {
                (
                    score::preferred_node_affinity(pod, n),
                    score::intolerable_prefer_no_schedule(pod, n),
                )
            })
        })
        .collect();
    let max_affinity = prefs.iter().map(|p| p.0).max().unwrap_or(0);
    let max_taints = prefs.iter().map(|p| p.1).max().unwrap_or(0);
    let mut best: Option<(i64, String, Reservation)> = None;
    for ((info, name, reservation), (affinity, taints)) in feasible.into_iter().zip(prefs) {
        let s = score::score(info, non_zero, &info.allocatable)
            + score::NODE_AFFINITY_WEIGHT * score::normalize(affinity, max_affinity, false)
            + score::TAINT_TOLERATION_WEIGHT * score::normalize(taints, max_taints, true);
        if best.as_ref().is_none_or(|(b, _, _)| s > *b) {
            best = Some((s, name, reservation));
        }
    }
    let (_, node, reservation) = best.expect("feasible is not empty");
    Ok(Decision {
        node,
        reservation,
        evaluated,
        feasible: count,
    })
}

#[cfg(test)]
#[path = "algorithm_tests.rs"]
mod tests;
