//! Taint-based eviction as pure functions, as Kubernetes' taint eviction
//! controller decides it: a pod on a node with NoExecute taints is
//! evicted at once when some such taint is not tolerated, after the
//! smallest `tolerationSeconds` of the tolerations that matched (counted
//! from the taint's `timeAdded`) when all are, and never when no matching
//! toleration has a time limit.

use k8s_openapi::api::core::v1::{Pod, Taint, Toleration};
use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// Whether `tol` tolerates `taint` (v1 `Toleration.ToleratesTaint`): the
/// effect matches (empty: every effect), the key matches (empty with
/// `Exists`: every key), and `Exists`, or `Equal` (the default) with the
/// same value.
pub fn tolerates(tol: &Toleration, taint: &Taint) -> bool {
    let effect = tol.effect.as_deref().unwrap_or("");
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = tol.key.as_deref().unwrap_or("");
    let op = tol.operator.as_deref().unwrap_or("Equal");
    if key.is_empty() {
        return op == "Exists";
    }
    if key != taint.key {
        return false;
    }
    match op {
        "Exists" => true,
        "Equal" => tol.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        _ => false,
    }
}

/// What becomes of a pod on a tainted node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Eviction {
    /// It stays (no NoExecute taint, or tolerated without a time limit).
    Stays,
    /// Evict it now.
    Now,
    /// Evict it at this time unless the taints go first.
    At(Timestamp),
}

/// Decide for `pod` on a node with `taints` at `now`.
pub fn decide(pod: &Pod, taints: &[Taint], now: Timestamp) -> Eviction {
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or(&[]);
    let mut deadline: Option<Timestamp> = None;
    for taint in taints.iter().filter(|t| t.effect == "NoExecute") {
        let matching: Vec<&Toleration> =
            tolerations.iter().filter(|t| tolerates(t, taint)).collect();
        if matching.is_empty() {
            return Eviction::Now;
        }
        let added = taint.time_added.as_ref().map_or(now, |t| t.0);
        for tol in matching {
            if let Some(secs) = tol.toleration_seconds {
                let at = added + SignedDuration::from_secs(secs.max(0));
                deadline = Some(deadline.map_or(at, |d| d.min(at)));
            }
        }
    }
    match deadline {
        None => Eviction::Stays,
        Some(at) if at <= now => Eviction::Now,
        Some(at) => Eviction::At(at),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn t(s: i64) -> Timestamp {
        Timestamp::UNIX_EPOCH + SignedDuration::from_secs(1_700_000_000 + s)
    }

    fn taint(key: &str, effect: &str) -> Taint {
        serde_json::from_value(
            json!({"key": key, "effect": effect, "timeAdded": "2023-11-14T22:13:20Z"}),
        )
        .unwrap()
    }

    fn pod(tolerations: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "a"}], "tolerations": tolerations}
        }))
        .unwrap()
    }

    #[test]
    fn toleration_matching() {
        let tol = |v: serde_json::Value| -> Toleration { serde_json::from_value(v).unwrap() };
        let mut valued = taint("k", "NoExecute");
        valued.value = Some("v".into());
        let cases = [
            (json!({"key": "k", "operator": "Exists"}), true),
            (json!({"key": "k", "value": "v"}), true),
            (json!({"key": "k", "value": "w"}), false),
            (
                json!({"key": "k", "operator": "Exists", "effect": "NoSchedule"}),
                false,
            ),
            (json!({"operator": "Exists"}), true),
            (json!({"operator": "Equal"}), false),
            (json!({"key": "other", "operator": "Exists"}), false),
        ];
        for (t, want) in cases {
            assert_eq!(tolerates(&tol(t.clone()), &valued), want, "{t}");
        }
    }

    #[test]
    fn eviction_times() {
        let unreachable = [taint("node.kubernetes.io/unreachable", "NoExecute")];
        let cases = [
            // No toleration: now.
            (json!([]), Eviction::Now),
            // Kubernetes' defaults: 300 s from the taint.
            (
                json!([{"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                        "effect": "NoExecute", "tolerationSeconds": 300}]),
                Eviction::At(t(300)),
            ),
            // Two matching: the smaller wins.
            (
                json!([{"operator": "Exists", "tolerationSeconds": 600},
                       {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "tolerationSeconds": 5}]),
                Eviction::At(t(5)),
            ),
            // Forever.
            (json!([{"operator": "Exists"}]), Eviction::Stays),
            // Only a NoSchedule toleration: now.
            (
                json!([{"operator": "Exists", "effect": "NoSchedule"}]),
                Eviction::Now,
            ),
        ];
        for (tols, want) in cases {
            assert_eq!(
                decide(&pod(tols.clone()), &unreachable, t(1)),
                want,
                "{tols}"
            );
        }
        // Past the deadline: now.
        let p = pod(json!([{"operator": "Exists", "tolerationSeconds": 5}]));
        assert_eq!(decide(&p, &unreachable, t(5)), Eviction::Now);
        // NoSchedule taints never evict.
        assert_eq!(
            decide(&pod(json!([])), &[taint("x", "NoSchedule")], t(1)),
            Eviction::Stays
        );
    }
}
