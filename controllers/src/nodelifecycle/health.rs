//! A node's health as the node lifecycle controller judges it, as pure
//! functions: the conditions of a node whose heartbeats stopped (every
//! kubelet condition Unknown, reason NodeStatusUnknown, "Kubelet stopped
//! posting node status."), and the taints its conditions call for
//! (Kubernetes' TaintNodesByCondition NoSchedule taints and the NoExecute
//! taints of taint-based eviction).

use k8s_openapi::api::core::v1::{Node, NodeCondition, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
const MEMORY_PRESSURE: &str = "node.kubernetes.io/memory-pressure";
const DISK_PRESSURE: &str = "node.kubernetes.io/disk-pressure";
const PID_PRESSURE: &str = "node.kubernetes.io/pid-pressure";
const NETWORK_UNAVAILABLE: &str = "node.kubernetes.io/network-unavailable";

/// The conditions the kubelet posts, which go Unknown when it stops.
const KUBELET_CONDITIONS: [&str; 4] = ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

/// Every taint this controller manages, by key and effect.
const MANAGED: [(&str, &str); 8] = [
    (NOT_READY, "NoSchedule"),
    (UNREACHABLE, "NoSchedule"),
    (NOT_READY, "NoExecute"),
    (UNREACHABLE, "NoExecute"),
    (MEMORY_PRESSURE, "NoSchedule"),
    (DISK_PRESSURE, "NoSchedule"),
    (PID_PRESSURE, "NoSchedule"),
    (NETWORK_UNAVAILABLE, "NoSchedule"),
];

fn conditions(node: &Node) -> &[NodeCondition] {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or(&[])
}

fn condition<'a>(node: &'a Node, type_: &str) -> Option<&'a NodeCondition> {
    conditions(node).iter().find(|c| c.type_ == type_)
}

/// The Ready condition's status (`True`, `False`, `Unknown`), if posted.
pub fn ready(node: &Node) -> Option<&str> {
    condition(node, "Ready").map(|c| c.status.as_str())
}

/// The Ready condition's heartbeat, what the kubelet changes on each post.
pub fn heartbeat(node: &Node) -> Option<Timestamp> {
    condition(node, "Ready")
        .and_then(|c| c.last_heartbeat_time.as_ref())
        .map(|t| t.0)
}

/// The conditions of a node whose kubelet stopped posting: each kubelet
/// condition not already Unknown becomes Unknown now (its heartbeat
/// kept), a missing one is added as never posted. None when nothing changes.
pub fn mark_unknown(node: &Node, now: Timestamp) -> Option<Vec<NodeCondition>> {
    let mut out = conditions(node).to_vec();
    let mut changed = false;
    for type_ in KUBELET_CONDITIONS {
        match out.iter_mut().find(|c| c.type_ == type_) {
            Some(c) if c.status == "Unknown" => {}
            Some(c) => {
                c.status = "Unknown".into();
                c.reason = Some("NodeStatusUnknown".into());
                c.message = Some("Kubelet stopped posting node status.".into());
                c.last_transition_time = Some(Time(now));
                changed = true;
            }
            None => {
                out.push(NodeCondition {
                    type_: type_.into(),
                    status: "Unknown".into(),
                    reason: Some("NodeStatusNeverUpdated".into()),
                    message: Some("Kubelet never posted node status.".into()),
                    last_heartbeat_time: None,
                    last_transition_time: Some(Time(now)),
                });
                changed = true;
            }
        }
    }
    changed.then_some(out)
}

/// The managed taints `node` should carry: NoSchedule for each adverse
/// condition and for a cordoned node (`unschedulable`, added by the
/// scheduler's side in Kubernetes, here too), and NoExecute for a Ready
/// condition False (not-ready) or Unknown (unreachable) unless
/// `no_execute` is off (every node is down: Kubernetes' full disruption,
/// where evicting would only make it worse).
pub fn wanted_taints(node: &Node, no_execute: bool) -> Vec<(&'static str, &'static str)> {
    let mut want = Vec::new();
    let is = |type_: &str, status: &str| condition(node, type_).is_some_and(|c| c.status == status);
    match ready(node) {
        Some("False") => {
            want.push((NOT_READY, "NoSchedule"));
            if no_execute {
                want.push((NOT_READY, "NoExecute"));
            }
        }
        Some("Unknown") => {
            want.push((UNREACHABLE, "NoSchedule"));
            if no_execute {
                want.push((UNREACHABLE, "NoExecute"));
            }
        }
        _ => {}
    }
    for (type_, key) in [
        ("MemoryPressure", MEMORY_PRESSURE),
        ("DiskPressure", DISK_PRESSURE),
        ("PIDPressure", PID_PRESSURE),
        ("NetworkUnavailable", NETWORK_UNAVAILABLE),
    ] {
        if is(type_, "True") {
            want.push((key, "NoSchedule"));
        }
    }
    if node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
        want.push((UNSCHEDULABLE, "NoSchedule"));
    }
    want
}

/// The node's taints with the managed ones made to match `want`: taints
/// not managed here stay as they are, a kept taint keeps its timeAdded,
/// an added one is stamped `now`. None when nothing changes.
pub fn reconcile_taints(node: &Node, want: &[(&str, &str)], now: Timestamp) -> Option<Vec<Taint>> {
    let current = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let managed = |t: &Taint| {
        MANAGED.contains(&(t.key.as_str(), t.effect.as_str()))
            || (t.key == UNSCHEDULABLE && t.effect == "NoSchedule")
    };
    let wanted = |t: &Taint| want.contains(&(t.key.as_str(), t.effect.as_str()));
    let mut out: Vec<Taint> = current
        .iter()
        .filter(|t| !managed(t) || wanted(t))
        .cloned()
        .collect();
    for (key, effect) in want {
        if !out.iter().any(|t| t.key == *key && t.effect == *effect) {
            out.push(Taint {
                key: (*key).into(),
                effect: (*effect).into(),
                value: None,
                time_added: Some(Time(now)),
            });
        }
    }
    (out != current).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::SignedDuration;
    use serde_json::json;

    fn t(s: i64) -> Timestamp {
        Timestamp::UNIX_EPOCH + SignedDuration::from_secs(1_700_000_000 + s)
    }

    fn node(ready: &str, taints: serde_json::Value) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": "n"},
            "spec": {"taints": taints},
            "status": {"conditions": [
                {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory"},
                {"type": "Ready", "status": ready, "reason": "KubeletReady",
                 "lastHeartbeatTime": "2023-11-14T22:13:20Z"},
            ]}
        }))
        .unwrap()
    }

    #[test]
    fn stopped_kubelet_turns_every_condition_unknown_once() {
        let n = node("True", json!([]));
        let conds = mark_unknown(&n, t(50)).unwrap();
        let by = |ty: &str| conds.iter().find(|c| c.type_ == ty).unwrap().clone();
        let ready = by("Ready");
        assert_eq!(ready.status, "Unknown");
        assert_eq!(ready.reason.as_deref(), Some("NodeStatusUnknown"));
        assert_eq!(
            ready.message.as_deref(),
            Some("Kubelet stopped posting node status.")
        );
        assert_eq!(ready.last_transition_time.unwrap().0, t(50));
        assert!(
            ready.last_heartbeat_time.is_some(),
            "the last heartbeat stays"
        );
        assert_eq!(by("MemoryPressure").status, "Unknown");
        // Never posted: added as such.
        assert_eq!(
            by("PIDPressure").reason.as_deref(),
            Some("NodeStatusNeverUpdated")
        );
        let mut again = n.clone();
        again.status.as_mut().unwrap().conditions = Some(conds);
        assert_eq!(mark_unknown(&again, t(60)), None, "already Unknown");
    }

    #[test]
    fn taints_follow_the_ready_condition() {
        // (Ready status, NoExecute allowed, wanted taints)
        type Case<'a> = (&'a str, bool, &'a [(&'a str, &'a str)]);
        let cases: &[Case] = &[
            ("True", true, &[]),
            (
                "False",
                true,
                &[(NOT_READY, "NoSchedule"), (NOT_READY, "NoExecute")],
            ),
            (
                "Unknown",
                true,
                &[(UNREACHABLE, "NoSchedule"), (UNREACHABLE, "NoExecute")],
            ),
            ("Unknown", false, &[(UNREACHABLE, "NoSchedule")]),
        ];
        for (ready, no_execute, want) in cases {
            assert_eq!(
                wanted_taints(&node(ready, json!([])), *no_execute),
                want.to_vec(),
                "{ready} {no_execute}"
            );
        }
    }

    #[test]
    fn reconciling_taints_keeps_foreign_ones_and_times() {
        let n = node(
            "Unknown",
            json!([
                {"key": "dedicated", "value": "db", "effect": "NoSchedule"},
                {"key": NOT_READY, "effect": "NoExecute", "timeAdded": "2023-11-14T22:13:20Z"},
                {"key": UNREACHABLE, "effect": "NoSchedule", "timeAdded": "2023-11-14T22:13:20Z"},
            ]),
        );
        let want = wanted_taints(&n, true);
        let out = reconcile_taints(&n, &want, t(99)).unwrap();
        let keys: Vec<(&str, &str)> = out
            .iter()
            .map(|t| (t.key.as_str(), t.effect.as_str()))
            .collect();
        assert_eq!(
            keys,
            [
                ("dedicated", "NoSchedule"),
                (UNREACHABLE, "NoSchedule"),
                (UNREACHABLE, "NoExecute")
            ]
        );
        assert_eq!(
            out[1].time_added.as_ref().unwrap().0,
            t(0),
            "kept taint keeps its time"
        );
        assert_eq!(out[2].time_added.as_ref().unwrap().0, t(99));
        let mut tainted = n.clone();
        tainted.spec.as_mut().unwrap().taints = Some(out);
        assert_eq!(reconcile_taints(&tainted, &want, t(100)), None);
        // Back to Ready: the managed taints go, the foreign one stays.
        let healed = {
            let mut h = tainted.clone();
            h.status.as_mut().unwrap().conditions.as_mut().unwrap()[1].status = "True".into();
            h
        };
        let out = reconcile_taints(&healed, &wanted_taints(&healed, true), t(101)).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].key, "dedicated");
    }
}
