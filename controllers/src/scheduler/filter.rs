//! The filters that decide whether a pod fits a node, in kube-scheduler's
//! order and with its reasons (worded as its plugins word them, since the
//! FailedScheduling message is built from them): NodeUnschedulable,
//! TaintToleration (a node that is not Ready counts as tainted
//! `node.kubernetes.io/not-ready` or `unreachable`, as the node lifecycle
//! controller taints it), NodeAffinity (nodeSelector and required node
//! affinity), NodePorts, NodeResourcesFit, VolumeBinding (in
//! [`super::volumes`]), PodTopologySpread (in [`super::topology`]) and
//! InterPodAffinity (required terms, both ways).
//! Everything here is pure.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Namespace, Node, Pod, PodAffinityTerm, Taint, Toleration};

use super::cache::{HostPort, NodeInfo, PodInfo, required_affinity, required_anti_affinity};
use super::labels::{self, Labels};
use super::quantity::{PODS, Resources};

/// Why a node does not fit a pod.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reason {
    Unschedulable,
    UntoleratedTaint { key: String, value: String },
    NodeAffinity,
    Ports,
    Insufficient(String),
    TooManyPods,
    VolumeNodeAffinity,
    NoMatchingVolumes,
    SpreadMissingLabel,
    SpreadConstraints,
    PodAffinity,
    PodAntiAffinity,
    ExistingAntiAffinity,
}

impl Reason {
    /// The reason as kube-scheduler's plugins word it.
    pub fn message(&self) -> String {
        match self {
            Reason::Unschedulable => "node(s) were unschedulable".into(),
            Reason::UntoleratedTaint { key, value } => {
                format!("node(s) had untolerated taint {{{key}: {value}}}")
            }
            Reason::NodeAffinity => "node(s) didn't match Pod's node affinity/selector".into(),
            Reason::Ports => "node(s) didn't have free ports for the requested pod ports".into(),
            Reason::Insufficient(r) => format!("Insufficient {r}"),
            Reason::TooManyPods => "Too many pods".into(),
            Reason::VolumeNodeAffinity => "node(s) had volume node affinity conflict".into(),
            Reason::NoMatchingVolumes => {
                "node(s) didn't find available persistent volumes to bind".into()
            }
            Reason::SpreadMissingLabel => {
                "node(s) didn't match pod topology spread constraints (missing required label)"
                    .into()
            }
            Reason::SpreadConstraints => {
                "node(s) didn't match pod topology spread constraints".into()
            }
            Reason::PodAffinity => "node(s) didn't match pod affinity rules".into(),
            Reason::PodAntiAffinity => "node(s) didn't match pod anti-affinity rules".into(),
            Reason::ExistingAntiAffinity => {
                "node(s) didn't satisfy existing pods anti-affinity rules".into()
            }
        }
    }

    /// Whether evicting pods could make room (kube-scheduler's Unschedulable
    /// against UnschedulableAndUnresolvable), for the preemption part of
    /// the message.
    pub fn resolvable(&self) -> bool {
        matches!(
            self,
            Reason::Ports
                | Reason::Insufficient(_)
                | Reason::TooManyPods
                | Reason::SpreadConstraints
                | Reason::PodAntiAffinity
                | Reason::ExistingAntiAffinity
        )
    }
}

/// The node's Ready condition status ("True", "False", "Unknown"), if any.
fn ready_status(node: &Node) -> Option<&str> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.as_str())
}

/// Whether `t` tolerates a taint.
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = t.effect.as_deref().filter(|e| !e.is_empty())
        && effect != taint.effect
    {
        return false;
    }
    let key = t.key.as_deref().unwrap_or_default();
    match t.operator.as_deref().unwrap_or("Equal") {
        // An empty key with Exists tolerates every taint.
        "Exists" => key.is_empty() || key == taint.key,
        "Equal" => {
            key == taint.key
                && t.value.as_deref().unwrap_or_default()
                    == taint.value.as_deref().unwrap_or_default()
        }
        _ => false,
    }
}

fn tolerated(pod: &Pod, taint: &Taint) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.tolerations.as_ref())
        .is_some_and(|ts| ts.iter().any(|t| tolerates(t, taint)))
}

fn taint(key: &str, effect: &str) -> Taint {
    Taint {
        key: key.into(),
        effect: effect.into(),
        ..Default::default()
    }
}

/// The node's taints that keep pods off, with the condition taint a node
/// that is not Ready would carry when the lifecycle controller has not
/// added it yet.
fn effective_taints(node: &Node) -> Vec<Taint> {
    let mut taints: Vec<Taint> = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .collect();
    let condition = match ready_status(node) {
        Some("True") => None,
        Some("False") => Some("node.kubernetes.io/not-ready"),
        _ => Some("node.kubernetes.io/unreachable"),
    };
    if let Some(key) = condition
        && !taints.iter().any(|t| t.key == key)
    {
        taints.push(taint(key, "NoSchedule"));
    }
    taints
}

/// NodeUnschedulable: `spec.unschedulable` keeps pods off unless they
/// tolerate `node.kubernetes.io/unschedulable:NoSchedule`.
pub fn unschedulable(pod: &Pod, node: &Node) -> Option<Reason> {
    let cordoned = node
        .spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false);
    (cordoned
        && !tolerated(
            pod,
            &taint("node.kubernetes.io/unschedulable", "NoSchedule"),
        ))
    .then_some(Reason::Unschedulable)
}

/// TaintToleration: the first NoSchedule or NoExecute taint not tolerated.
pub fn taints(pod: &Pod, node: &Node) -> Option<Reason> {
    effective_taints(node)
        .into_iter()
        .find(|t| !tolerated(pod, t))
        .map(|t| Reason::UntoleratedTaint {
            key: t.key,
            value: t.value.unwrap_or_default(),
        })
}

/// NodeAffinity: every nodeSelector label, and one term of the required
/// node affinity.
pub fn node_affinity(pod: &Pod, node: &Node) -> Option<Reason> {
    let spec = pod.spec.as_ref()?;
    let name = node.metadata.name.as_deref().unwrap_or_default();
    let empty = Labels::new();
    let node_labels = node.metadata.labels.as_ref().unwrap_or(&empty);
    let selector_ok = spec
        .node_selector
        .iter()
        .flatten()
        .all(|(k, v)| node_labels.get(k) == Some(v));
    let affinity_ok = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .is_none_or(|sel| labels::node_selector_matches(sel, name, node_labels));
    (!(selector_ok && affinity_ok)).then_some(Reason::NodeAffinity)
}

/// NodePorts: none of the pod's host ports taken on the node.
pub fn ports(wanted: &[HostPort], info: &NodeInfo) -> Option<Reason> {
    wanted
        .iter()
        .any(|w| info.ports.iter().any(|p| p.conflicts(w)))
        .then_some(Reason::Ports)
}

/// NodeResourcesFit: every requested resource within what is left; all
/// shortfalls reported, pods first, then in resource name order.
pub fn resources(requests: &Resources, info: &NodeInfo, allocatable: &Resources) -> Vec<Reason> {
    let mut out = Vec::new();
    let used = |r: &str| info.requested.get(r).copied().unwrap_or(0);
    let free = |r: &str| allocatable.get(r).copied().unwrap_or(0) - used(r);
    if free(PODS) < requests.get(PODS).copied().unwrap_or(0) {
        out.push(Reason::TooManyPods);
    }
    for (r, want) in requests {
        if r != PODS && *want > 0 && free(r) < *want {
            out.push(Reason::Insufficient(r.clone()));
        }
    }
    out
}

/// The namespaces a pod affinity term selects pods in: its list and its
/// namespace selector, or the pod's own namespace when it gives neither.
pub struct TermScope {
    term: PodAffinityTerm,
    namespaces: BTreeSet<String>,
    all_namespaces: bool,
}

impl TermScope {
    pub fn new(term: &PodAffinityTerm, pod_ns: &str, namespaces: &[&Namespace]) -> TermScope {
        let mut set: BTreeSet<String> = term.namespaces.iter().flatten().cloned().collect();
        let mut all = false;
        match &term.namespace_selector {
            Some(sel)
                if sel.match_labels.iter().flatten().next().is_none()
                    && sel.match_expressions.iter().flatten().next().is_none() =>
            {
                all = true
            }
            Some(sel) => {
                let empty = Labels::new();
                for ns in namespaces {
                    if labels::selector_matches(sel, ns.metadata.labels.as_ref().unwrap_or(&empty))
                    {
                        set.extend(ns.metadata.name.clone());
                    }
                }
            }
            None if set.is_empty() => {
                set.insert(pod_ns.to_string());
            }
            None => {}
        }
        TermScope {
            term: term.clone(),
            namespaces: set,
            all_namespaces: all,
        }
    }

    /// Whether a pod (namespace, labels) is one the term selects. A term
    /// without a label selector selects nothing.
    pub fn selects(&self, ns: &str, pod_labels: &Labels) -> bool {
        (self.all_namespaces || self.namespaces.contains(ns))
            && self
                .term
                .label_selector
                .as_ref()
                .is_some_and(|s| labels::selector_matches(s, pod_labels))
    }

    pub fn topology_key(&self) -> &str {
        &self.term.topology_key
    }
}

/// InterPodAffinity, precomputed once per pod over the pods already placed
/// (kube-scheduler's PreFilter): the topology domains each term needs or
/// forbids.
#[derive(Default)]
pub struct PodAffinityState {
    /// Per required affinity term: (topology key, values where a selected pod runs).
    affinity: Vec<(String, BTreeSet<String>)>,
    /// Whether no pod anywhere matches the affinity terms and the pod
    /// matches them itself (the first pod of a group may go anywhere).
    affinity_self_match: bool,
    /// Per required anti-affinity term: (topology key, values to avoid).
    anti_affinity: Vec<(String, BTreeSet<String>)>,
    /// Domains (key, value) where a placed pod's anti-affinity rejects this pod.
    existing: BTreeSet<(String, String)>,
}

impl PodAffinityState {
    pub fn new<'a>(
        pod: &Pod,
        placed: impl Iterator<Item = &'a PodInfo>,
        with_anti_affinity: impl Iterator<Item = &'a PodInfo>,
        node_labels: &dyn Fn(&str) -> Option<&'a Labels>,
        namespaces: &[&Namespace],
    ) -> PodAffinityState {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let empty = Labels::new();
        let own_labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
        let affinity: Vec<TermScope> = required_affinity(pod)
            .iter()
            .map(|t| TermScope::new(t, &ns, namespaces))
            .collect();
        let anti: Vec<TermScope> = required_anti_affinity(pod)
            .iter()
            .map(|t| TermScope::new(t, &ns, namespaces))
            .collect();
        let mut state = PodAffinityState {
            affinity: affinity
                .iter()
                .map(|t| (t.topology_key().to_string(), BTreeSet::new()))
                .collect(),
            anti_affinity: anti
                .iter()
                .map(|t| (t.topology_key().to_string(), BTreeSet::new()))
                .collect(),
            ..Default::default()
        };
        if !affinity.is_empty() || !anti.is_empty() {
            for p in placed {
                let Some(nl) = node_labels(&p.node) else {
                    continue;
                };
                for (i, t) in affinity.iter().enumerate() {
                    if t.selects(&p.namespace, &p.labels)
                        && let Some(v) = nl.get(t.topology_key())
                    {
                        state.affinity[i].1.insert(v.clone());
                    }
                }
                for (i, t) in anti.iter().enumerate() {
                    if t.selects(&p.namespace, &p.labels)
                        && let Some(v) = nl.get(t.topology_key())
                    {
                        state.anti_affinity[i].1.insert(v.clone());
                    }
                }
            }
        }
        state.affinity_self_match = !affinity.is_empty()
            && state.affinity.iter().all(|(_, vals)| vals.is_empty())
            && affinity.iter().all(|t| t.selects(&ns, own_labels));
        for p in with_anti_affinity {
            let Some(nl) = node_labels(&p.node) else {
                continue;
            };
            for term in &p.anti_affinity {
                let scope = TermScope::new(term, &p.namespace, namespaces);
                if scope.selects(&ns, own_labels)
                    && let Some(v) = nl.get(scope.topology_key())
                {
                    state
                        .existing
                        .insert((scope.topology_key().to_string(), v.clone()));
                }
            }
        }
        state
    }

    /// The InterPodAffinity filter for a node with `node_labels`.
    pub fn filter(&self, node_labels: &Labels) -> Option<Reason> {
        if self
            .existing
            .iter()
            .any(|(k, v)| node_labels.get(k) == Some(v))
        {
            return Some(Reason::ExistingAntiAffinity);
        }
        // The node needs every affinity term's topology label; the first
        // pod of a group that selects itself may then go anywhere.
        let has_keys = self
            .affinity
            .iter()
            .all(|(k, _)| node_labels.contains_key(k));
        let in_domains = self
            .affinity
            .iter()
            .all(|(key, vals)| node_labels.get(key).is_some_and(|v| vals.contains(v)));
        if !has_keys || !(in_domains || self.affinity_self_match) {
            return Some(Reason::PodAffinity);
        }
        if self
            .anti_affinity
            .iter()
            .any(|(key, vals)| node_labels.get(key).is_some_and(|v| vals.contains(v)))
        {
            return Some(Reason::PodAntiAffinity);
        }
        None
    }
}

/// The node's labels (an empty map when it has none).
pub fn node_labels(node: &Node) -> &Labels {
    static EMPTY: std::sync::OnceLock<Labels> = std::sync::OnceLock::new();
    node.metadata
        .labels
        .as_ref()
        .unwrap_or_else(|| EMPTY.get_or_init(BTreeMap::new))
}

/// Every filter but the volume and pod affinity ones, in kube-scheduler's
/// order: the first that fails gives the reasons.
pub fn node_filters(
    pod: &Pod,
    requests: &Resources,
    wanted_ports: &[HostPort],
    info: &NodeInfo,
) -> Vec<Reason> {
    let Some(node) = info.node.as_deref() else {
        return vec![Reason::NodeAffinity];
    };
    if let Some(r) = unschedulable(pod, node)
        .or_else(|| taints(pod, node))
        .or_else(|| node_affinity(pod, node))
        .or_else(|| ports(wanted_ports, info))
    {
        return vec![r];
    }
    resources(requests, info, &info.allocatable)
}

#[cfg(test)]
#[path = "filter_tests.rs"]
mod tests;
