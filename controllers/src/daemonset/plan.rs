//! What a DaemonSet does next, as pure functions of its nodes (with their
//! [`super::nodes::Fit`]) and its pods, following Kubernetes' DaemonSet
//! controller: one pod on every node that should run one (failed pods
//! replaced, extras and pods on nodes that should not keep one removed),
//! then the rolling update (`maxUnavailable` old pods down at a time, or
//! with `maxSurge` a new pod started beside each old one, which goes when
//! the new one is available); and the status counts.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::jiff::Timestamp;

/// A node and whether the DaemonSet belongs there.
#[derive(Debug, Clone)]
pub struct NodeFit {
    pub name: String,
    pub should_run: bool,
    pub should_continue: bool,
}

/// A daemon pod as planning sees it (pods being deleted are left out).
#[derive(Debug, Clone)]
pub struct DaemonPod {
    pub name: String,
    pub node: String,
    /// Its `controller-revision-hash` is the current revision's.
    pub updated: bool,
    pub failed: bool,
    pub ready: bool,
    pub available: bool,
    pub created: Option<Timestamp>,
}

/// `spec.updateStrategy`, with the percentages already resolved against
/// the desired number of pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    OnDelete,
    RollingUpdate {
        max_unavailable: usize,
        max_surge: usize,
    },
}

/// Pods to create (on these nodes) and delete (by name).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub create: Vec<String>,
    pub delete: Vec<String>,
    /// Failed pods among `delete` (event `FailedDaemonPod`): (pod, node).
    pub failed: Vec<(String, String)>,
}

/// Resolve an int-or-percent against `total` (percentages round up, as
/// Kubernetes does for both fields); `None` when the text is not one.
pub fn scaled(value: Option<&str>, int: Option<i32>, total: usize) -> Option<usize> {
    if let Some(i) = int {
        return Some(i.max(0) as usize);
    }
    let v = value?;
    let pct: usize = v.strip_suffix('%')?.parse().ok()?;
    Some((pct * total).div_ceil(100))
}

/// Oldest first; a running (ready) pod before a not ready one of the same age.
fn by_age(a: &&DaemonPod, b: &&DaemonPod) -> std::cmp::Ordering {
    a.created
        .cmp(&b.created)
        .then(b.ready.cmp(&a.ready))
        .then(a.name.cmp(&b.name))
}

/// Decide one sync.
pub fn plan(nodes: &[NodeFit], pods: &[DaemonPod], strategy: Strategy) -> Plan {
    let mut plan = Plan::default();
    let mut by_node: BTreeMap<&str, Vec<&DaemonPod>> = BTreeMap::new();
    for p in pods {
        by_node.entry(p.node.as_str()).or_default().push(p);
    }
    let surge = matches!(strategy, Strategy::RollingUpdate { max_surge, .. } if max_surge > 0);
    let known: BTreeSet<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
    // Pods whose node is gone.
    for (node, ps) in &by_node {
        if !known.contains(node) {
            plan.delete.extend(ps.iter().map(|p| p.name.clone()));
        }
    }
    // What remains on each node after the manage step, for the update.
    let mut remaining: BTreeMap<&str, Vec<&DaemonPod>> = BTreeMap::new();
    for n in nodes {
        let ps = by_node.get(n.name.as_str()).cloned().unwrap_or_default();
        if n.should_run {
            if ps.is_empty() {
                plan.create.push(n.name.clone());
                continue;
            }
            let (failed, mut running): (Vec<&DaemonPod>, Vec<&DaemonPod>) =
                ps.into_iter().partition(|p| p.failed);
            for p in failed {
                plan.delete.push(p.name.clone());
                plan.failed.push((p.name.clone(), n.name.clone()));
            }
            running.sort_by(by_age);
            if !surge {
                // One pod per node: the oldest stays.
                for extra in running.iter().skip(1) {
                    plan.delete.push(extra.name.clone());
                }
                running.truncate(1);
            } else if running.len() > 1 {
                // At most the oldest new and the oldest old pod; the old one
                // only while it is ready and the new one is not yet.
                let oldest_new = running.iter().find(|p| p.updated).copied();
                let oldest_old = running.iter().find(|p| !p.updated).copied();
                let mut keep: Vec<&DaemonPod> = Vec::new();
                for p in &running {
                    let is_kept = oldest_new.is_some_and(|k| k.name == p.name)
                        || oldest_old.is_some_and(|k| k.name == p.name);
                    if is_kept {
                        keep.push(p);
                    } else {
                        plan.delete.push(p.name.clone());
                    }
                }
                if let (Some(new), Some(old)) = (oldest_new, oldest_old)
                    && (!old.ready || new.ready)
                {
                    plan.delete.push(old.name.clone());
                    keep.retain(|p| p.name != old.name);
                }
                running = keep;
            }
            if !running.is_empty() {
                remaining.insert(n.name.as_str(), running);
            }
        } else if !n.should_continue {
            plan.delete.extend(ps.iter().map(|p| p.name.clone()));
        }
    }
    if let Strategy::RollingUpdate {
        max_unavailable,
        max_surge,
    } = strategy
    {
        if surge {
            surge_update(&remaining, max_surge, &mut plan);
        } else {
            unavailable_update(&remaining, max_unavailable, &mut plan);
        }
    }
    plan
}

/// The new and the old pod on a node after the manage step.
fn split<'a>(ps: &[&'a DaemonPod]) -> (Option<&'a DaemonPod>, Option<&'a DaemonPod>) {
    (
        ps.iter().find(|p| p.updated).copied(),
        ps.iter().find(|p| !p.updated).copied(),
    )
}

/// Without surge: delete old pods (a new one is created on the emptied node
/// next sync) while fewer than `max_unavailable` nodes are unavailable; an
/// old pod that is unavailable anyway is replaced at once.
fn unavailable_update(
    remaining: &BTreeMap<&str, Vec<&DaemonPod>>,
    max_unavailable: usize,
    plan: &mut Plan,
) {
    let max_unavailable = max_unavailable.max(1);
    // Nodes whose pod is being created count as unavailable.
    let mut unavailable = plan.create.len();
    let mut replace = Vec::new();
    let mut candidates = Vec::new();
    for ps in remaining.values() {
        match split(ps) {
            (Some(new), None) => {
                if !new.available {
                    unavailable += 1;
                }
            }
            (Some(_), Some(_)) | (None, None) => unavailable += 1,
            (None, Some(old)) => {
                if !old.available {
                    replace.push(old.name.clone());
                } else {
                    candidates.push(old.name.clone());
                }
            }
        }
    }
    let room = max_unavailable
        .saturating_sub(unavailable)
        .min(candidates.len());
    plan.delete.extend(replace);
    plan.delete.extend(candidates.into_iter().take(room));
}

/// With surge: start a new pod beside an old one on up to `max_surge`
/// nodes at a time (at once where the old pod is unavailable), and delete
/// the old pod where the new one is available.
fn surge_update(remaining: &BTreeMap<&str, Vec<&DaemonPod>>, max_surge: usize, plan: &mut Plan) {
    let mut surging = 0;
    let mut allowed = Vec::new();
    let mut candidates = Vec::new();
    for (node, ps) in remaining {
        match split(ps) {
            (_, None) => {}
            (None, Some(old)) => {
                if old.available {
                    candidates.push(node.to_string());
                } else {
                    allowed.push(node.to_string());
                }
            }
            (Some(new), Some(old)) => {
                if new.available {
                    if !plan.delete.contains(&old.name) {
                        plan.delete.push(old.name.clone());
                    }
                } else {
                    surging += 1;
                }
            }
        }
    }
    let room = max_surge.saturating_sub(surging).min(candidates.len());
    plan.create.extend(allowed);
    plan.create.extend(candidates.into_iter().take(room));
}

/// `status` counts, as Kubernetes' `updateDaemonSetStatus` computes them
/// from the oldest pod on each node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub desired: i32,
    pub current: i32,
    pub misscheduled: i32,
    pub ready: i32,
    pub available: i32,
    pub updated: i32,
}

pub fn counts(nodes: &[NodeFit], pods: &[DaemonPod]) -> Counts {
    let mut c = Counts::default();
    for n in nodes {
        let mut ps: Vec<&DaemonPod> = pods.iter().filter(|p| p.node == n.name).collect();
        ps.sort_by(by_age);
        if n.should_run {
            c.desired += 1;
            let Some(p) = ps.first() else { continue };
            c.current += 1;
            if p.ready {
                c.ready += 1;
                if p.available {
                    c.available += 1;
                }
            }
            if p.updated {
                c.updated += 1;
            }
        } else if !ps.is_empty() {
            c.misscheduled += 1;
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    fn node(name: &str) -> NodeFit {
        NodeFit {
            name: name.into(),
            should_run: true,
            should_continue: true,
        }
    }

    fn pod(name: &str, node: &str, updated: bool, available: bool, age: u32) -> DaemonPod {
        DaemonPod {
            name: name.into(),
            node: node.into(),
            updated,
            failed: false,
            ready: available,
            available,
            created: Some(ts(&format!("2026-12-01T08:{:02}:00Z", 59 - age))),
        }
    }

    const ROLLING_1: Strategy = Strategy::RollingUpdate {
        max_unavailable: 1,
        max_surge: 0,
    };

    #[test]
    fn one_pod_per_eligible_node() {
        let mut off = node("c");
        off.should_run = false;
        off.should_continue = false;
        let mut cordoned = node("d");
        cordoned.should_run = false;
        let nodes = [node("a"), node("b"), off, cordoned];
        let mut failed = pod("b-1", "b", true, false, 3);
        failed.failed = true;
        let pods = [
            pod("a-old", "a", true, true, 5),
            pod("a-new", "a", true, true, 1),
            failed,
            pod("c-1", "c", true, true, 2),
            pod("d-1", "d", true, true, 2),
            pod("gone-1", "gone", true, true, 2),
        ];
        let p = plan(&nodes, &pods, ROLLING_1);
        assert!(p.create.is_empty(), "{p:?}");
        let mut deleted = p.delete.clone();
        deleted.sort();
        // The younger duplicate, the failed pod, the pod on a node it no
        // longer fits (not the cordoned one), the pod of a deleted node.
        assert_eq!(deleted, ["a-new", "b-1", "c-1", "gone-1"]);
        assert_eq!(p.failed, [("b-1".to_string(), "b".to_string())]);
        let p = plan(&nodes, &[], ROLLING_1);
        assert_eq!(p.create, ["a", "b"]);
    }

    #[test]
    fn rolling_update_takes_max_unavailable_nodes_down_at_a_time() {
        let nodes = [node("a"), node("b"), node("c"), node("d")];
        let all_old = [
            pod("a1", "a", false, true, 9),
            pod("b1", "b", false, true, 9),
            pod("c1", "c", false, true, 9),
            pod("d1", "d", false, true, 9),
        ];
        assert_eq!(plan(&nodes, &all_old, ROLLING_1).delete, ["a1"]);
        let two = Strategy::RollingUpdate {
            max_unavailable: 2,
            max_surge: 0,
        };
        assert_eq!(plan(&nodes, &all_old, two).delete, ["a1", "b1"]);
        // a is empty (being replaced): nothing more goes until it is back.
        let p = plan(&nodes, &all_old[1..], ROLLING_1);
        assert_eq!(
            (p.create.as_slice(), p.delete.len()),
            (&["a".to_string()][..], 0)
        );
        // a's new pod is not available yet: still waiting.
        let mut waiting = all_old.to_vec();
        waiting[0] = pod("a2", "a", true, false, 0);
        assert!(plan(&nodes, &waiting, ROLLING_1).delete.is_empty());
        // Available: the next old pod goes.
        waiting[0] = pod("a2", "a", true, true, 0);
        assert_eq!(plan(&nodes, &waiting, ROLLING_1).delete, ["b1"]);
        // An old pod that is unavailable anyway is replaced at once.
        waiting[0] = pod("a2", "a", true, false, 0);
        waiting[3] = pod("d1", "d", false, false, 9);
        assert_eq!(plan(&nodes, &waiting, ROLLING_1).delete, ["d1"]);
        // OnDelete never deletes for an update.
        assert!(plan(&nodes, &all_old, Strategy::OnDelete).delete.is_empty());
    }

    #[test]
    fn surge_starts_new_pods_beside_old_ones() {
        let nodes = [node("a"), node("b"), node("c")];
        let s1 = Strategy::RollingUpdate {
            max_unavailable: 0,
            max_surge: 1,
        };
        let old = [
            pod("a1", "a", false, true, 9),
            pod("b1", "b", false, true, 9),
            pod("c1", "c", false, false, 9),
        ];
        let p = plan(&nodes, &old, s1);
        // c's old pod is unavailable: replaced without counting; a surges.
        assert_eq!(p.create, ["c", "a"]);
        assert!(p.delete.is_empty());
        // a's new pod not available yet: no more surge; c's new one neither.
        let mut mid = old.to_vec();
        mid.push(pod("a2", "a", true, false, 0));
        let p = plan(&nodes, &mid, s1);
        assert_eq!(p.create, ["c"]);
        assert!(p.delete.is_empty());
        // Available: a's old pod goes and b surges.
        mid[3] = pod("a2", "a", true, true, 0);
        let p = plan(&nodes, &mid, s1);
        assert_eq!(p.delete, ["a1"]);
        assert_eq!(p.create, ["c", "b"]);
    }

    #[test]
    fn status_counts_read_the_oldest_pod_per_node() {
        let mut off = node("c");
        off.should_run = false;
        let nodes = [node("a"), node("b"), off, node("e")];
        let mut unready = pod("b1", "b", false, false, 3);
        unready.ready = true;
        let pods = [
            pod("a1", "a", true, true, 3),
            unready,
            pod("c1", "c", true, true, 3),
        ];
        assert_eq!(
            counts(&nodes, &pods),
            Counts {
                desired: 3,
                current: 2,
                misscheduled: 1,
                ready: 2,
                available: 1,
                updated: 1,
            }
        );
    }

    #[test]
    fn percentages_round_up() {
        assert_eq!(scaled(Some("25%"), None, 10), Some(3));
        assert_eq!(scaled(Some("10%"), None, 5), Some(1));
        assert_eq!(scaled(Some("0%"), None, 5), Some(0));
        assert_eq!(scaled(None, Some(2), 5), Some(2));
        assert_eq!(scaled(Some("x"), None, 5), None);
    }
}
