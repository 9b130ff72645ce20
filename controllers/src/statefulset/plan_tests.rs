//! Table tests of the planner: each case is a set, the pods observed and
//! the actions Kubernetes' StatefulSet controller would take.

use super::*;
use crate::statefulset::pods::Phase;

/// A pod at `ordinal`, revision "a" or "b" (`web-a`/`web-b`), in `state`:
/// ready, running (not ready), pending, failed, succeeded, terminating
/// (ready, being deleted), warming (ready, not yet minReadySeconds).
fn p(ordinal: i32, rev: &str, state: &str) -> PodView {
    let (phase, ready, available, terminating) = match state {
        "ready" => (Phase::Running, true, true, false),
        "running" => (Phase::Running, false, false, false),
        "pending" => (Phase::Pending, false, false, false),
        "failed" => (Phase::Failed, false, false, false),
        "succeeded" => (Phase::Succeeded, false, false, false),
        "terminating" => (Phase::Running, true, true, true),
        "warming" => (Phase::Running, true, false, false),
        other => panic!("no state {other}"),
    };
    PodView {
        ordinal,
        revision: format!("web-{rev}"),
        phase,
        ready,
        available,
        terminating,
        in_sync: true,
    }
}

fn set(replicas: i32) -> SetView {
    SetView {
        replicas,
        start: 0,
        parallel: false,
        strategy: Strategy::RollingUpdate {
            partition: Some(0),
            max_unavailable: None,
        },
        has_claims: false,
        deleting: false,
        current_revision: "web-a".into(),
        update_revision: "web-a".into(),
        status_current_replicas: 0,
    }
}

/// A set rolling from revision a to b.
fn rolling(replicas: i32) -> SetView {
    SetView {
        update_revision: "web-b".into(),
        ..set(replicas)
    }
}

fn with(mut s: SetView, f: impl FnOnce(&mut SetView)) -> SetView {
    f(&mut s);
    s
}

fn partition(s: SetView, p: i32, max: Option<i32>) -> SetView {
    with(s, |s| {
        s.strategy = Strategy::RollingUpdate {
            partition: Some(p),
            max_unavailable: max,
        }
    })
}

use Action::*;
use Target::{Current, Update as Upd};
use Why::*;

#[test]
fn planner_table() {
    let parallel = |s| with(s, |s: &mut SetView| s.parallel = true);
    let on_delete = |s| with(s, |s: &mut SetView| s.strategy = Strategy::OnDelete);
    let cases: Vec<(&str, SetView, Vec<PodView>, Vec<Action>)> = vec![
        (
            "ordered: creates only the first missing ordinal",
            set(3),
            vec![],
            vec![Create {
                ordinal: 0,
                target: Upd,
            }],
        ),
        (
            "ordered: waits for a pod that is not ready",
            set(3),
            vec![p(0, "a", "running")],
            vec![],
        ),
        (
            "ordered: waits for minReadySeconds",
            set(3),
            vec![p(0, "a", "warming")],
            vec![],
        ),
        (
            "ordered: the next ordinal once its predecessors are ready",
            set(3),
            vec![p(0, "a", "ready"), p(1, "a", "ready")],
            vec![Create {
                ordinal: 2,
                target: Upd,
            }],
        ),
        (
            "ordered: a gap is filled before anything else",
            set(3),
            vec![p(0, "a", "ready"), p(2, "a", "ready")],
            vec![Create {
                ordinal: 1,
                target: Upd,
            }],
        ),
        (
            "ordered: waits for a terminating pod",
            set(2),
            vec![p(0, "a", "terminating"), p(1, "a", "ready")],
            vec![],
        ),
        (
            "parallel: creates every missing ordinal at once",
            parallel(set(3)),
            vec![p(1, "a", "pending")],
            vec![
                Create {
                    ordinal: 0,
                    target: Upd,
                },
                Create {
                    ordinal: 2,
                    target: Upd,
                },
            ],
        ),
        (
            "a failed pod is deleted to be recreated; ordered stops there",
            set(3),
            vec![p(0, "a", "failed"), p(1, "a", "ready")],
            vec![Delete {
                ordinal: 0,
                why: Ended,
            }],
        ),
        (
            "a succeeded pod is deleted too; parallel goes on",
            parallel(set(3)),
            vec![p(0, "a", "succeeded"), p(1, "a", "ready")],
            vec![
                Delete {
                    ordinal: 0,
                    why: Ended,
                },
                Create {
                    ordinal: 2,
                    target: Upd,
                },
            ],
        ),
        (
            "a pending pod gets its missing claims",
            with(set(2), |s| s.has_claims = true),
            vec![p(0, "a", "pending")],
            vec![CreateClaims { ordinal: 0 }],
        ),
        (
            "a healthy pod out of sync is fixed",
            set(1),
            vec![PodView {
                in_sync: false,
                ..p(0, "a", "ready")
            }],
            vec![Sync { ordinal: 0 }],
        ),
        (
            "ordered scale down: highest first, one at a time",
            set(1),
            vec![p(0, "a", "ready"), p(1, "a", "ready"), p(2, "a", "ready")],
            vec![Delete {
                ordinal: 2,
                why: ScaleDown,
            }],
        ),
        (
            "ordered scale down waits for the one terminating",
            set(1),
            vec![
                p(0, "a", "ready"),
                p(1, "a", "ready"),
                p(2, "a", "terminating"),
            ],
            vec![],
        ),
        (
            "ordered scale down: an unhealthy condemned pod may go if it is the first unhealthy",
            set(1),
            vec![p(0, "a", "ready"), p(1, "a", "ready"), p(2, "a", "running")],
            vec![Delete {
                ordinal: 2,
                why: ScaleDown,
            }],
        ),
        (
            "ordered scale down: a healthy condemned pod goes even when a lower one is not",
            set(1),
            vec![p(0, "a", "ready"), p(1, "a", "running"), p(2, "a", "ready")],
            vec![Delete {
                ordinal: 2,
                why: ScaleDown,
            }],
        ),
        (
            "ordered scale down waits when an unhealthy condemned pod is not the first unhealthy",
            set(1),
            vec![
                p(0, "a", "ready"),
                p(1, "a", "running"),
                p(2, "a", "running"),
            ],
            vec![],
        ),
        (
            "parallel scale down: all condemned at once",
            parallel(set(1)),
            vec![p(0, "a", "ready"), p(1, "a", "running"), p(2, "a", "ready")],
            vec![
                Delete {
                    ordinal: 2,
                    why: ScaleDown,
                },
                Delete {
                    ordinal: 1,
                    why: ScaleDown,
                },
            ],
        ),
        (
            "condemned claims are given their owners before deletion",
            set(1),
            vec![
                p(0, "a", "ready"),
                PodView {
                    in_sync: false,
                    ..p(1, "a", "ready")
                },
            ],
            vec![
                SyncCondemnedClaims { ordinal: 1 },
                Delete {
                    ordinal: 1,
                    why: ScaleDown,
                },
            ],
        ),
        (
            "scale down comes before the update",
            rolling(1),
            vec![p(0, "a", "ready"), p(1, "a", "ready")],
            vec![Delete {
                ordinal: 1,
                why: ScaleDown,
            }],
        ),
        (
            "rolling update: the highest ordinal not updated goes first",
            rolling(3),
            vec![p(0, "a", "ready"), p(1, "a", "ready"), p(2, "a", "ready")],
            vec![Delete {
                ordinal: 2,
                why: Update,
            }],
        ),
        (
            "rolling update: the recreated pod at the update revision",
            rolling(3),
            vec![p(0, "a", "ready"), p(1, "a", "ready")],
            vec![Create {
                ordinal: 2,
                target: Upd,
            }],
        ),
        (
            "rolling update: the next one once the updated pod is ready",
            rolling(3),
            vec![p(0, "a", "ready"), p(1, "a", "ready"), p(2, "b", "ready")],
            vec![Delete {
                ordinal: 1,
                why: Update,
            }],
        ),
        (
            "rolling update, parallel: waits while an updated pod is not ready",
            parallel(rolling(3)),
            vec![p(0, "a", "ready"), p(1, "a", "ready"), p(2, "b", "running")],
            vec![],
        ),
        (
            "rolling update, parallel: a terminating pod is waited for",
            parallel(rolling(3)),
            vec![
                p(0, "a", "ready"),
                p(1, "a", "ready"),
                p(2, "a", "terminating"),
            ],
            vec![],
        ),
        (
            "partition 2: ordinals below it are left alone",
            partition(rolling(4), 2, None),
            vec![
                p(0, "a", "ready"),
                p(1, "a", "ready"),
                p(2, "b", "ready"),
                p(3, "b", "ready"),
            ],
            vec![],
        ),
        (
            "partition 2: a missing ordinal below it comes back at the current revision",
            partition(rolling(4), 2, None),
            vec![p(0, "a", "ready"), p(2, "b", "ready"), p(3, "b", "ready")],
            vec![Create {
                ordinal: 1,
                target: Current,
            }],
        ),
        (
            "partition beyond replicas updates nothing",
            partition(rolling(2), 5, None),
            vec![p(0, "a", "ready"), p(1, "a", "ready")],
            vec![],
        ),
        (
            "maxUnavailable 2: two at once, highest first",
            partition(rolling(4), 0, Some(2)),
            vec![
                p(0, "a", "ready"),
                p(1, "a", "ready"),
                p(2, "a", "ready"),
                p(3, "a", "ready"),
            ],
            vec![
                Delete {
                    ordinal: 3,
                    why: Update,
                },
                Delete {
                    ordinal: 2,
                    why: Update,
                },
            ],
        ),
        (
            "maxUnavailable 2 with one down: one more",
            parallel(partition(rolling(4), 0, Some(2))),
            vec![
                p(0, "a", "ready"),
                p(1, "a", "ready"),
                p(2, "a", "ready"),
                p(3, "b", "running"),
            ],
            vec![Delete {
                ordinal: 2,
                why: Update,
            }],
        ),
        (
            "maxUnavailable 2 with two down: none",
            parallel(partition(rolling(4), 0, Some(2))),
            vec![
                p(0, "a", "ready"),
                p(1, "a", "ready"),
                p(2, "b", "pending"),
                p(3, "b", "running"),
            ],
            vec![],
        ),
        (
            "maxUnavailable with partition: only ordinals at or above it",
            partition(rolling(4), 3, Some(3)),
            vec![
                p(0, "a", "ready"),
                p(1, "a", "ready"),
                p(2, "a", "ready"),
                p(3, "a", "ready"),
            ],
            vec![Delete {
                ordinal: 3,
                why: Update,
            }],
        ),
        (
            "OnDelete: nothing is deleted for the update",
            on_delete(rolling(2)),
            vec![p(0, "a", "ready"), p(1, "a", "ready")],
            vec![],
        ),
        (
            "OnDelete: a deleted pod comes back at the update revision",
            on_delete(rolling(2)),
            vec![p(0, "a", "ready")],
            vec![Create {
                ordinal: 1,
                target: Upd,
            }],
        ),
        (
            "start ordinal 5: pods 5..8",
            with(set(3), |s| s.start = 5),
            vec![p(0, "a", "ready"), p(5, "a", "ready")],
            vec![Create {
                ordinal: 6,
                target: Upd,
            }],
        ),
        (
            "start ordinal 5: pods below it are condemned once the range is ready",
            with(set(1), |s| s.start = 5),
            vec![p(0, "a", "ready"), p(5, "a", "ready")],
            vec![Delete {
                ordinal: 0,
                why: ScaleDown,
            }],
        ),
        (
            "a set being deleted: nothing",
            with(set(3), |s| s.deleting = true),
            vec![],
            vec![],
        ),
        (
            "replicas 0: everything condemned, ordered",
            set(0),
            vec![p(0, "a", "ready"), p(1, "a", "ready")],
            vec![Delete {
                ordinal: 1,
                why: ScaleDown,
            }],
        ),
    ];
    for (name, set, pods, want) in cases {
        let got = plan(&set, &pods);
        assert_eq!(got.actions, want, "{name}");
    }
}

#[test]
fn no_rolling_update_block_keeps_current_replicas_back() {
    let s = with(rolling(3), |s| {
        s.strategy = Strategy::RollingUpdate {
            partition: None,
            max_unavailable: None,
        };
        s.status_current_replicas = 2;
    });
    assert_eq!(target_for(&s, 1), Target::Current);
    assert_eq!(target_for(&s, 2), Target::Update);
}

#[test]
fn counts_and_completion() {
    let s = rolling(3);
    let pods = vec![
        p(0, "a", "ready"),
        p(1, "b", "warming"),
        p(2, "b", "terminating"),
        p(3, "b", "pending"),
    ];
    let c = count(&pods, "web-a", "web-b");
    assert_eq!(
        c,
        Counts {
            replicas: 4,
            ready: 3,
            available: 2,
            current: 1,
            updated: 2
        }
    );
    // Deleting a current pod for the update takes it off currentReplicas.
    let got = plan(
        &s,
        &[p(0, "a", "ready"), p(1, "a", "ready"), p(2, "a", "ready")],
    );
    assert_eq!(got.counts.current, 2);
    assert_eq!(
        complete_rolling_update(&s, &got.counts),
        ("web-a".to_string(), 2)
    );
    let done = count(&[p(0, "b", "ready"), p(1, "b", "ready")], "web-a", "web-b");
    assert_eq!(complete_rolling_update(&s, &done), ("web-b".to_string(), 2));
    let on_delete = with(s.clone(), |s| s.strategy = Strategy::OnDelete);
    assert_eq!(
        complete_rolling_update(&on_delete, &done),
        ("web-a".to_string(), 0)
    );
}

#[test]
fn max_unavailable_resolution() {
    let cases = [
        ("1", 10, Some(1)),
        ("3", 10, Some(3)),
        ("0", 10, Some(1)),
        ("50%", 5, Some(2)),
        ("10%", 5, Some(1)),
        ("100%", 4, Some(4)),
        ("x", 4, None),
        ("x%", 4, None),
    ];
    for (v, replicas, want) in cases {
        assert_eq!(
            resolve_max_unavailable(v, replicas),
            want,
            "{v} of {replicas}"
        );
    }
}
