//! A PodDisruptionBudget's numbers, as Kubernetes' disruption controller
//! computes them: pure functions, table-tested.
//!
//! - `minAvailable` as a number: desired healthy is that number, expected
//!   pods are the pods the selector matches.
//! - `minAvailable` as a percentage, or `maxUnavailable`: expected pods are
//!   the replicas the pods' controllers want (the caller finds them), and
//!   the percentage is of that, rounded up.
//! - healthy pods are the matched pods that are Ready and not being deleted;
//!   disruptions allowed are healthy minus desired, never below 0.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// What the budget asks for.
#[derive(Clone, Debug, PartialEq)]
pub enum Budget {
    MinAvailable(IntOrString),
    MaxUnavailable(IntOrString),
    /// Neither set: Kubernetes then expects no pods and desires none
    /// healthy, so every healthy pod may be disrupted.
    Empty,
}

/// The counts the status reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub expected: i32,
    pub desired_healthy: i32,
    pub current_healthy: i32,
    pub disruptions_allowed: i32,
}

/// Whether the budget needs the controllers' replica counts to know the
/// expected pods (a percentage, or `maxUnavailable`).
pub fn needs_scale(b: &Budget) -> bool {
    match b {
        Budget::MinAvailable(IntOrString::Int(_)) | Budget::Empty => false,
        Budget::MinAvailable(IntOrString::String(_)) | Budget::MaxUnavailable(_) => true,
    }
}

/// `v` of `total`: a number as is, a percentage rounded up.
pub fn scaled(v: &IntOrString, total: i32) -> Result<i32, String> {
    match v {
        IntOrString::Int(n) => Ok(*n),
        IntOrString::String(s) => {
            let pct: i64 = s
                .strip_suffix('%')
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| format!("invalid value for IntOrString: invalid value {s:?}"))?;
            Ok(((pct * i64::from(total) + 99) / 100) as i32)
        }
    }
}

/// The counts for `budget` given the matched pods' count, how many of them
/// are healthy, and (when [`needs_scale`]) the replicas their controllers want.
pub fn counts(
    budget: &Budget,
    pods: i32,
    healthy: i32,
    scale: Option<i32>,
) -> Result<Counts, String> {
    let (expected, desired) = match budget {
        Budget::MinAvailable(IntOrString::Int(n)) => (pods, *n),
        Budget::Empty => (0, 0),
        Budget::MinAvailable(v) => {
            let e = scale.ok_or("the expected pod count is unknown")?;
            (e, scaled(v, e)?)
        }
        Budget::MaxUnavailable(v) => {
            let e = scale.ok_or("the expected pod count is unknown")?;
            (e, (e - scaled(v, e)?).max(0))
        }
    };
    Ok(Counts {
        expected,
        desired_healthy: desired,
        current_healthy: healthy,
        disruptions_allowed: (healthy - desired).max(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> IntOrString {
        IntOrString::String(v.into())
    }

    #[test]
    fn budgets_count_as_kubernetes_counts_them() {
        // (budget, pods, healthy, scale) → (expected, desired, healthy, allowed)
        let cases = [
            (
                Budget::MinAvailable(IntOrString::Int(2)),
                3,
                3,
                None,
                (3, 2, 3, 1),
            ),
            (
                Budget::MinAvailable(IntOrString::Int(2)),
                3,
                1,
                None,
                (3, 2, 1, 0),
            ),
            (Budget::MinAvailable(s("50%")), 3, 3, Some(3), (3, 2, 3, 1)),
            (
                Budget::MaxUnavailable(IntOrString::Int(1)),
                3,
                3,
                Some(3),
                (3, 2, 3, 1),
            ),
            (
                Budget::MaxUnavailable(s("34%")),
                3,
                2,
                Some(3),
                (3, 1, 2, 1),
            ),
            (
                Budget::MaxUnavailable(IntOrString::Int(5)),
                3,
                3,
                Some(3),
                (3, 0, 3, 3),
            ),
            (Budget::Empty, 2, 2, None, (0, 0, 2, 2)),
        ];
        for (b, pods, healthy, scale, want) in cases {
            let c = counts(&b, pods, healthy, scale).unwrap();
            assert_eq!(
                (
                    c.expected,
                    c.desired_healthy,
                    c.current_healthy,
                    c.disruptions_allowed
                ),
                want,
                "{b:?}"
            );
        }
        assert!(counts(&Budget::MaxUnavailable(IntOrString::Int(1)), 1, 1, None).is_err());
        assert!(scaled(&s("half"), 4).is_err());
        assert!(needs_scale(&Budget::MinAvailable(s("10%"))));
        assert!(!needs_scale(&Budget::MinAvailable(IntOrString::Int(1))));
    }
}
