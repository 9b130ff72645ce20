//! The deployment controller's arithmetic, pure: how big each replica set
//! should be, given the deployment and what its replica sets report. It
//! follows Kubernetes' `rolling.go`, `sync.go` (proportional scaling) and
//! `deployment/util`: maxSurge rounds up, maxUnavailable rounds down and
//! both zero means one unavailable; the new replica set grows only while
//! the total stays within replicas + maxSurge; old ones shrink first where
//! pods are unhealthy, then only while availability stays at least
//! replicas - maxUnavailable; a resize mid-rollout is spread over the
//! replica sets in proportion to their sizes.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// What the planner needs of one replica set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rs {
    pub name: String,
    /// `spec.replicas`.
    pub replicas: i32,
    /// `status.availableReplicas`.
    pub available: i32,
    /// Creation time (seconds), for oldest/newest order; ties go by name.
    pub created: i64,
    /// The `deployment.kubernetes.io/desired-replicas` annotation.
    pub desired: Option<i32>,
    /// The `deployment.kubernetes.io/max-replicas` annotation.
    pub max: Option<i32>,
}

/// The deployment's numbers, its fenceposts resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub replicas: i32,
    pub max_surge: i32,
    pub max_unavailable: i32,
}

/// An int, or a percentage of `total` rounded up or down (Kubernetes'
/// `GetScaledValueFromIntOrPercent`).
pub fn scaled(v: &IntOrString, total: i32, round_up: bool) -> Result<i32, String> {
    match v {
        IntOrString::Int(i) => Ok(*i),
        IntOrString::String(s) => {
            let pct: i64 = s
                .strip_suffix('%')
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| format!("invalid value for IntOrString: invalid value {s:?}"))?;
            let prod = pct * i64::from(total);
            let v = if round_up {
                (prod + 99).div_euclid(100)
            } else {
                prod.div_euclid(100)
            };
            Ok(v.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32)
        }
    }
}

/// maxSurge (rounded up) and maxUnavailable (rounded down) of `desired`;
/// both zero would stall a rollout, so then one pod may be unavailable.
pub fn fenceposts(
    surge: &IntOrString,
    unavailable: &IntOrString,
    desired: i32,
) -> Result<(i32, i32), String> {
    let s = scaled(surge, desired, true)?;
    let u = scaled(unavailable, desired, false)?;
    Ok(if s == 0 && u == 0 { (0, 1) } else { (s, u) })
}

fn oldest_first(rs: &[Rs]) -> Vec<Rs> {
    let mut v = rs.to_vec();
    v.sort_by(|a, b| a.created.cmp(&b.created).then_with(|| a.name.cmp(&b.name)));
    v
}

/// The size the new replica set grows to now in a rolling update
/// (Kubernetes' `NewRSNewReplicas`).
pub fn new_rs_replicas(t: &Target, all: &[Rs], new: &Rs) -> i32 {
    let current: i32 = all.iter().map(|r| r.replicas).sum();
    let max_total = t.replicas + t.max_surge;
    if current >= max_total {
        return new.replicas;
    }
    let up = (max_total - current).min(t.replicas - new.replicas).max(0);
    new.replicas + up
}

/// The old replica sets' new sizes in a rolling update, oldest scaled down
/// first: unhealthy pods go first (they cost no availability), then
/// available ones while at least replicas - maxUnavailable stay available.
/// Only the replica sets whose size changes are listed.
pub fn scale_down_old(t: &Target, old: &[Rs], new: &Rs) -> Vec<(String, i32)> {
    let old_pods: i32 = old.iter().map(|r| r.replicas).sum();
    if old_pods == 0 {
        return vec![];
    }
    let all_pods = old_pods + new.replicas;
    let min_available = t.replicas - t.max_unavailable;
    let new_unavailable = (new.replicas - new.available).max(0);
    let max_cleanup = all_pods - min_available - new_unavailable;
    if max_cleanup <= 0 {
        return vec![];
    }
    let before: Vec<(String, i32)> = old.iter().map(|r| (r.name.clone(), r.replicas)).collect();
    let mut old = oldest_first(old);
    let mut cleaned = 0;
    for rs in old.iter_mut() {
        if cleaned >= max_cleanup {
            break;
        }
        let unhealthy = rs.replicas - rs.available;
        if rs.replicas == 0 || unhealthy <= 0 {
            continue;
        }
        let down = (max_cleanup - cleaned).min(unhealthy);
        rs.replicas -= down;
        cleaned += down;
    }
    let available: i32 = old.iter().map(|r| r.available).sum::<i32>() + new.available;
    if available > min_available {
        let total = available - min_available;
        let mut down_so_far = 0;
        for rs in old.iter_mut() {
            if down_so_far >= total {
                break;
            }
            if rs.replicas == 0 {
                continue;
            }
            let down = rs.replicas.min(total - down_so_far);
            rs.replicas -= down;
            down_so_far += down;
        }
    }
    old.into_iter()
        .filter(|r| {
            before
                .iter()
                .any(|(n, was)| *n == r.name && *was != r.replicas)
        })
        .map(|r| (r.name, r.replicas))
        .collect()
}

/// The only active replica set, or the newest when none is active
/// (Kubernetes' `FindActiveOrLatest`); `None` when several are active.
pub fn active_or_latest<'a>(new: Option<&'a Rs>, old: &'a [Rs]) -> Option<&'a Rs> {
    let mut active: Vec<&Rs> = new
        .into_iter()
        .chain(old.iter())
        .filter(|r| r.replicas > 0)
        .collect();
    match active.len() {
        0 => new.or_else(|| {
            old.iter()
                .max_by(|a, b| a.created.cmp(&b.created).then_with(|| a.name.cmp(&b.name)))
        }),
        1 => active.pop(),
        _ => None,
    }
}

/// Whether the deployment was resized since its replica sets last heard
/// of it (an active one's desired-replicas annotation differs).
pub fn is_scaling_event(replicas: i32, new: Option<&Rs>, old: &[Rs]) -> bool {
    new.into_iter()
        .chain(old.iter())
        .filter(|r| r.replicas > 0)
        .any(|r| r.desired.is_some_and(|d| d != replicas))
}

/// The new replica set has every replica, available, and knows the size.
pub fn is_saturated(replicas: i32, new: Option<&Rs>) -> bool {
    new.is_some_and(|n| {
        n.replicas == replicas && n.desired == Some(replicas) && n.available == replicas
    })
}

/// Sizes after a resize (Kubernetes' `scale`): the one active (or newest)
/// replica set takes the new size; a saturated new one leaves the old ones
/// at zero; otherwise, rolling, the difference to replicas + maxSurge is
/// spread in proportion to each active replica set's share of the size it
/// was made for (max-replicas, or `status_replicas`), leftovers to the
/// largest. Returns every replica set the resize concerns with its size
/// (its replica annotations are to be brought up to date too).
pub fn proportional(
    t: &Target,
    new: Option<&Rs>,
    old: &[Rs],
    status_replicas: i32,
    rolling: bool,
) -> Vec<(String, i32)> {
    if let Some(rs) = active_or_latest(new, old) {
        return vec![(rs.name.clone(), t.replicas)];
    }
    if is_saturated(t.replicas, new) {
        return old
            .iter()
            .filter(|r| r.replicas > 0)
            .map(|r| (r.name.clone(), 0))
            .collect();
    }
    if !rolling {
        return vec![];
    }
    let mut all: Vec<Rs> = new
        .into_iter()
        .chain(old.iter())
        .filter(|r| r.replicas > 0)
        .cloned()
        .collect();
    let allowed = if t.replicas > 0 {
        t.replicas + t.max_surge
    } else {
        0
    };
    let current: i32 = all.iter().map(|r| r.replicas).sum();
    let to_add = allowed - current;
    // Larger first; ties: newer first when growing, older first when shrinking.
    all.sort_by(|a, b| {
        b.replicas.cmp(&a.replicas).then_with(|| {
            let age = a.created.cmp(&b.created).then_with(|| a.name.cmp(&b.name));
            if to_add > 0 { age.reverse() } else { age }
        })
    });
    let mut sizes: Vec<(String, i32)> = Vec::with_capacity(all.len());
    let mut added = 0;
    for rs in &all {
        let p = if to_add != 0 {
            proportion(rs, t, to_add, added, status_replicas)
        } else {
            0
        };
        sizes.push((rs.name.clone(), rs.replicas + p));
        added += p;
    }
    if to_add != 0
        && let Some(first) = sizes.first_mut()
    {
        first.1 = (first.1 + to_add - added).max(0);
    }
    sizes
}

/// How many of `to_add` (of which `added` are already given out) go to `rs`.
fn proportion(rs: &Rs, t: &Target, to_add: i32, added: i32, status_replicas: i32) -> i32 {
    if rs.replicas == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let fraction = if t.replicas == 0 {
        -rs.replicas
    } else {
        let made_for = rs.max.unwrap_or(status_replicas);
        if made_for <= 0 {
            0
        } else {
            let size =
                f64::from(rs.replicas) * f64::from(t.replicas + t.max_surge) / f64::from(made_for);
            size.round() as i32 - rs.replicas
        }
    };
    let allowed = to_add - added;
    if to_add > 0 {
        fraction.min(allowed)
    } else {
        fraction.max(allowed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rs(name: &str, replicas: i32, available: i32, created: i64) -> Rs {
        Rs {
            name: name.into(),
            replicas,
            available,
            created,
            desired: None,
            max: None,
        }
    }

    fn t(replicas: i32, max_surge: i32, max_unavailable: i32) -> Target {
        Target {
            replicas,
            max_surge,
            max_unavailable,
        }
    }

    #[test]
    fn fenceposts_round_surge_up_and_unavailable_down() {
        let pct = |s: &str| IntOrString::String(s.into());
        let cases = [
            (pct("25%"), pct("25%"), 10, (3, 2)),
            (pct("25%"), pct("25%"), 1, (1, 0)),
            (IntOrString::Int(0), IntOrString::Int(0), 5, (0, 1)),
            (pct("0%"), pct("0%"), 3, (0, 1)),
            (IntOrString::Int(2), pct("50%"), 3, (2, 1)),
            (pct("100%"), IntOrString::Int(0), 4, (4, 0)),
        ];
        for (s, u, n, want) in cases {
            assert_eq!(fenceposts(&s, &u, n).unwrap(), want, "{s:?} {u:?} of {n}");
        }
        assert!(fenceposts(&pct("x"), &pct("1%"), 3).is_err());
    }

    #[test]
    fn the_new_replica_set_grows_within_max_surge() {
        // (target, sizes of the old replica sets, the new one's size) -> new size
        let cases = [
            (t(3, 1, 0), vec![3], 0, 1),
            (t(3, 1, 0), vec![3], 1, 1),
            (t(3, 1, 0), vec![2], 1, 2),
            (t(10, 3, 2), vec![10], 0, 3),
            (t(3, 0, 1), vec![3], 0, 0),
            (t(3, 0, 1), vec![2], 0, 1),
            (t(5, 10, 0), vec![5], 0, 5),
        ];
        for (tgt, sizes, new_size, want) in cases {
            let all: Vec<Rs> = sizes
                .iter()
                .enumerate()
                .map(|(i, s)| rs(&format!("old{i}"), *s, *s, i as i64))
                .chain([rs("new", new_size, 0, 99)])
                .collect();
            let new = all.last().unwrap().clone();
            assert_eq!(
                new_rs_replicas(&tgt, &all, &new),
                want,
                "{tgt:?} {sizes:?} +{new_size}"
            );
        }
    }

    #[test]
    fn old_replica_sets_shrink_only_within_max_unavailable() {
        struct Case {
            what: &'static str,
            target: Target,
            old: Vec<Rs>,
            new: Rs,
            want: Vec<(&'static str, i32)>,
        }
        let cases = vec![
            Case {
                what: "surge only: nothing goes before a new pod is available",
                target: t(3, 1, 0),
                old: vec![rs("a", 3, 3, 1)],
                new: rs("new", 1, 0, 9),
                want: vec![],
            },
            Case {
                what: "surge only: one new available lets one old go",
                target: t(3, 1, 0),
                old: vec![rs("a", 3, 3, 1)],
                new: rs("new", 1, 1, 9),
                want: vec![("a", 2)],
            },
            Case {
                what: "maxUnavailable 1: one old goes at once",
                target: t(3, 0, 1),
                old: vec![rs("a", 3, 3, 1)],
                new: rs("new", 0, 0, 9),
                want: vec![("a", 2)],
            },
            Case {
                what: "unhealthy pods of the oldest go first, then available ones",
                target: t(4, 0, 1),
                old: vec![rs("a", 2, 0, 1), rs("b", 2, 2, 2)],
                new: rs("new", 0, 0, 9),
                // max cleanup = 4 - 3 - 0 = 1: one unhealthy of a; then
                // available 2 < min 3: nothing more.
                want: vec![("a", 1)],
            },
            Case {
                what: "oldest first when several are old",
                target: t(4, 1, 2),
                old: vec![rs("b", 2, 2, 2), rs("a", 2, 2, 1)],
                new: rs("new", 1, 1, 9),
                // available 5, min 2: 3 may go, a first.
                want: vec![("a", 0), ("b", 1)],
            },
        ];
        for c in cases {
            let mut got = scale_down_old(&c.target, &c.old, &c.new);
            got.sort();
            let mut want: Vec<(String, i32)> = c
                .want
                .into_iter()
                .map(|(n, s)| (n.to_string(), s))
                .collect();
            want.sort();
            assert_eq!(got, want, "{}", c.what);
        }
    }

    /// A rolling update simulated step by step, pods becoming available at
    /// once: it finishes, and at no point has more than replicas +
    /// maxSurge pods or fewer than replicas - maxUnavailable available.
    #[test]
    fn rolling_updates_keep_their_bounds_until_done() {
        for replicas in [1, 2, 3, 5, 10, 13] {
            for (surge, unavail) in [(0, 1), (1, 0), (1, 1), (2, 3), (3, 0), (0, 3), (10, 10)] {
                let (surge, unavail) = (surge.min(replicas * 2), unavail.min(replicas));
                if surge == 0 && unavail == 0 {
                    continue;
                }
                let tgt = t(replicas, surge, unavail);
                let mut old = vec![rs("old", replicas, replicas, 1)];
                let mut new = rs("new", 0, 0, 2);
                let mut steps = 0;
                loop {
                    steps += 1;
                    assert!(steps < 100, "{tgt:?} does not finish");
                    let all: Vec<Rs> = old.iter().cloned().chain([new.clone()]).collect();
                    new.replicas = new_rs_replicas(&tgt, &all, &new);
                    let total: i32 = old.iter().map(|r| r.replicas).sum::<i32>() + new.replicas;
                    assert!(total <= replicas + surge, "{tgt:?}: {total} pods");
                    for (name, size) in scale_down_old(&tgt, &old, &new) {
                        let r = old.iter_mut().find(|r| r.name == name).unwrap();
                        assert!(size < r.replicas && size >= 0);
                        r.replicas = size;
                        // Pods of the old set go at once.
                        r.available = r.available.min(size);
                    }
                    let available: i32 =
                        old.iter().map(|r| r.available).sum::<i32>() + new.available;
                    assert!(
                        available >= replicas - unavail,
                        "{tgt:?}: {available} available"
                    );
                    // New pods become available.
                    new.available = new.replicas;
                    if new.replicas == replicas && old.iter().all(|r| r.replicas == 0) {
                        break;
                    }
                }
            }
        }
    }

    #[test]
    fn resizes_go_to_the_one_active_or_spread_in_proportion() {
        // One active replica set takes the whole size.
        let old = [rs("a", 0, 0, 1)];
        let new = rs("new", 3, 3, 2);
        assert_eq!(
            proportional(&t(5, 1, 1), Some(&new), &old, 3, true),
            [("new".to_string(), 5)]
        );
        // None active: the newest old one when there is no new one.
        let old = [rs("a", 0, 0, 1), rs("b", 0, 0, 2)];
        assert_eq!(
            proportional(&t(2, 0, 1), None, &old, 0, true),
            [("b".to_string(), 2)]
        );
        // Kubernetes' example: 10 -> 15 mid-rollout with 8 old and 5 new
        // (maxSurge 3, made for 13): 15 + 3 - 13 = 5 to add, in proportion.
        let mut a = rs("old", 8, 8, 1);
        a.max = Some(13);
        let mut n = rs("new", 5, 0, 2);
        n.max = Some(13);
        let got = proportional(&t(15, 3, 2), Some(&n), &[a], 13, true);
        let total: i32 = got.iter().map(|(_, s)| s).sum();
        assert_eq!(total, 18);
        let size = |name: &str| got.iter().find(|(n, _)| n == name).unwrap().1;
        // 8 * 18 / 13 = 11.08 -> 11; 5 * 18 / 13 = 6.9 -> 7.
        assert_eq!((size("old"), size("new")), (11, 7));
        // Shrinking to zero empties every replica set.
        let mut a = rs("old", 2, 2, 1);
        a.max = Some(4);
        let mut n = rs("new", 2, 0, 2);
        n.max = Some(4);
        let got = proportional(&t(0, 0, 0), Some(&n), &[a], 4, true);
        assert!(got.iter().all(|(_, s)| *s == 0), "{got:?}");
    }

    #[test]
    fn a_saturated_new_replica_set_empties_the_old_ones() {
        let mut n = rs("new", 3, 3, 2);
        n.desired = Some(3);
        let old = [rs("a", 1, 1, 1), rs("b", 1, 0, 0)];
        let mut got = proportional(&t(3, 1, 0), Some(&n), &old, 5, true);
        got.sort();
        assert_eq!(got, [("a".to_string(), 0), ("b".to_string(), 0)]);
    }

    #[test]
    fn scaling_events_are_seen_in_active_replica_sets_annotations() {
        let mut a = rs("a", 2, 2, 1);
        a.desired = Some(2);
        assert!(!is_scaling_event(2, None, std::slice::from_ref(&a)));
        assert!(is_scaling_event(4, None, std::slice::from_ref(&a)));
        a.replicas = 0;
        assert!(!is_scaling_event(4, None, &[a]));
    }
}
