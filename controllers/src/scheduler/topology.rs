//! PodTopologySpread's filter, as kube-scheduler's plugin: for each of the
//! pod's `topologySpreadConstraints` with `whenUnsatisfiable:
//! DoNotSchedule`, pods matching the constraint's selector (plus
//! `matchLabelKeys`) in the pod's namespace are counted per domain (value
//! of the topology key) over the nodes that carry every constraint's key
//! and satisfy the pod's node selector and required node affinity
//! (`nodeAffinityPolicy: Honor`, the default; taints are ignored, as
//! `nodeTaintsPolicy: Ignore`). A node fits when placing the pod there
//! keeps its domain within `maxSkew` of the least-populated domain
//! (counted as 0 while there are fewer domains than `minDomains`).
//! Computed once per pod (PreFilter), checked per node.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, TopologySpreadConstraint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

use super::cache::{NodeInfo, PodInfo};
use super::filter::{self, Reason};
use super::labels::{self, Labels};

/// One hard constraint, with its counts.
struct Constraint {
    key: String,
    max_skew: i64,
    min_domains: usize,
    selector: LabelSelector,
    /// Matching pods per domain value; every eligible domain is present.
    counts: BTreeMap<String, i64>,
    /// Whether the pod itself matches the selector (it adds one where it goes).
    self_match: i64,
}

/// The pod's hard spread constraints, counted over the cluster.
#[derive(Default)]
pub struct SpreadState {
    constraints: Vec<Constraint>,
}

/// The constraint's selector with `matchLabelKeys` turned into `In`
/// requirements on the pod's own values.
fn selector_of(c: &TopologySpreadConstraint, pod_labels: &Labels) -> LabelSelector {
    let mut sel = c.label_selector.clone().unwrap_or_default();
    for key in c.match_label_keys.iter().flatten() {
        if let Some(v) = pod_labels.get(key) {
            sel.match_expressions
                .get_or_insert_with(Vec::new)
                .push(LabelSelectorRequirement {
                    key: key.clone(),
                    operator: "In".into(),
                    values: Some(vec![v.clone()]),
                });
        }
    }
    sel
}

impl SpreadState {
    pub fn new<'a>(
        pod: &Pod,
        nodes: &[&NodeInfo],
        pod_of: &dyn Fn(&(String, String)) -> Option<&'a PodInfo>,
    ) -> SpreadState {
        let hard: Vec<&TopologySpreadConstraint> = pod
            .spec
            .as_ref()
            .and_then(|s| s.topology_spread_constraints.as_ref())
            .into_iter()
            .flatten()
            .filter(|c| c.when_unsatisfiable == "DoNotSchedule")
            .collect();
        if hard.is_empty() {
            return SpreadState::default();
        }
        let empty = Labels::new();
        let own = pod.metadata.labels.as_ref().unwrap_or(&empty);
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let mut constraints: Vec<Constraint> = hard
            .iter()
            .map(|c| {
                let selector = selector_of(c, own);
                Constraint {
                    key: c.topology_key.clone(),
                    max_skew: i64::from(c.max_skew.max(1)),
                    min_domains: c.min_domains.unwrap_or(1).max(1) as usize,
                    self_match: i64::from(labels::selector_matches(&selector, own)),
                    selector,
                    counts: BTreeMap::new(),
                }
            })
            .collect();
        for info in nodes {
            let Some(node) = info.node.as_deref() else {
                continue;
            };
            let nl = filter::node_labels(node);
            let honors =
                |c: &TopologySpreadConstraint| c.node_affinity_policy.as_deref() != Some("Ignore");
            let eligible_for_affinity = filter::node_affinity(pod, node).is_none();
            if !constraints.iter().all(|c| nl.contains_key(&c.key)) {
                continue;
            }
            for (c, spec) in constraints.iter_mut().zip(&hard) {
                if honors(spec) && !eligible_for_affinity {
                    continue;
                }
                let value = nl[&c.key].clone();
                let n = info
                    .pods
                    .iter()
                    .filter_map(pod_of)
                    .filter(|p| {
                        p.namespace == ns && labels::selector_matches(&c.selector, &p.labels)
                    })
                    .count() as i64;
                *c.counts.entry(value).or_default() += n;
            }
        }
        SpreadState { constraints }
    }

    /// The filter for a node with `node_labels`.
    pub fn filter(&self, node_labels: &Labels) -> Option<Reason> {
        for c in &self.constraints {
            let Some(value) = node_labels.get(&c.key) else {
                return Some(Reason::SpreadMissingLabel);
            };
            let min = if c.counts.len() < c.min_domains {
                0
            } else {
                c.counts.values().copied().min().unwrap_or(0)
            };
            let here = c.counts.get(value).copied().unwrap_or(0);
            if here + c.self_match - min > c.max_skew {
                return Some(Reason::SpreadConstraints);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use serde_json::json;

    use crate::scheduler::algorithm::schedule;
    use crate::scheduler::cache::{Cache, PodInfo};
    use crate::scheduler::testutil::{Volumes, node, pod};

    fn spread(key: &str, skew: i32, extra: serde_json::Value) -> serde_json::Value {
        let mut c = json!({"maxSkew": skew, "topologyKey": key, "whenUnsatisfiable": "DoNotSchedule",
                           "labelSelector": {"matchLabels": {"app": "web"}}});
        crate::scheduler::testutil::merge(&mut c, extra);
        json!({"metadata": {"labels": {"app": "web"}}, "spec": {"topologySpreadConstraints": [c]}})
    }

    fn decide(c: &Cache, p: &k8s_openapi::api::core::v1::Pod) -> Result<String, String> {
        schedule(p, c, &Volumes::default(), &[], &mut 0)
            .map(|d| d.node)
            .map_err(|f| f.message())
    }

    #[test]
    fn pods_spread_within_max_skew() {
        let mut c = Cache::default();
        c.set_node(node("a1", "4", "8Gi", &[("zone", "a")], json!({})));
        c.set_node(node("a2", "4", "8Gi", &[("zone", "a")], json!({})));
        c.set_node(node("b1", "1", "1Gi", &[("zone", "b")], json!({})));
        c.set_node(node("nozone", "8", "8Gi", &[], json!({})));
        // Two web pods in zone a: with skew 1 the next must go to zone b,
        // although b1 is the smallest node.
        for (name, n) in [("w1", "a1"), ("w2", "a2")] {
            c.assume(
                PodInfo::of(&pod(name, "", "", spread("zone", 1, json!({}))), n),
                Instant::now(),
            );
        }
        let p = pod("w3", "", "", spread("zone", 1, json!({})));
        assert_eq!(decide(&c, &p), Ok("b1".into()));
        // Skew 3 allows zone a again (the roomier nodes win).
        let p = pod("w3", "", "", spread("zone", 3, json!({})));
        assert_ne!(decide(&c, &p), Ok("b1".into()));
        // Zone b cordoned: nothing fits with skew 1.
        c.set_node(node(
            "b1",
            "1",
            "1Gi",
            &[("zone", "b")],
            json!({"spec": {"unschedulable": true}}),
        ));
        let p = pod("w3", "", "", spread("zone", 1, json!({})));
        assert_eq!(
            decide(&c, &p),
            Err("0/4 nodes are available: 1 node(s) didn't match pod topology spread constraints (missing required label), \
                 1 node(s) were unschedulable, 2 node(s) didn't match pod topology spread constraints. \
                 preemption: 0/4 nodes are available: 2 No preemption victims found for incoming pod, \
                 2 Preemption is not helpful for scheduling.."
                .into())
        );
        // Pods of another app do not count.
        let other = pod(
            "o",
            "",
            "",
            json!({"metadata": {"labels": {"app": "db"}}, "spec": {"topologySpreadConstraints": [
                {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": "db"}}}
            ]}}),
        );
        assert!(decide(&c, &other).is_ok());
    }

    #[test]
    fn min_domains_counts_missing_domains_as_empty() {
        let mut c = Cache::default();
        c.set_node(node("a1", "4", "8Gi", &[("zone", "a")], json!({})));
        c.set_node(node("a2", "4", "8Gi", &[("zone", "a")], json!({})));
        c.assume(
            PodInfo::of(&pod("w1", "", "", spread("zone", 1, json!({}))), "a1"),
            Instant::now(),
        );
        // One domain only: its own minimum lets a second pod in zone a.
        assert!(decide(&c, &pod("w2", "", "", spread("zone", 1, json!({})))).is_ok());
        // minDomains 2: the missing zone counts as 0, so zone a is full.
        let p = pod("w2", "", "", spread("zone", 1, json!({"minDomains": 2})));
        assert!(
            decide(&c, &p)
                .unwrap_err()
                .contains("2 node(s) didn't match pod topology spread constraints")
        );
    }
}
