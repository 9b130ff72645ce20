//! The StatefulSet planner: given the set's spec, its current and update
//! revisions and the pods observed, what to do next, as Kubernetes'
//! StatefulSet controller decides it (`updateStatefulSet`), and the status
//! that the observation supports. Pure: [`super::sync`] observes, calls
//! [`plan`] and carries the actions out in order, stopping at the first
//! failure; the next reconcile plans again from what it then observes.
//!
//! The order of work, each step only once the previous one let it through:
//! 1. replicas (ordinals `start .. start+replicas`), lowest first: a
//!    Failed or Succeeded pod is deleted (to be recreated), a missing one
//!    is created at its revision, a Pending one gets its missing claims, a
//!    wrong identity or claim ownership is fixed. With `OrderedReady` the
//!    plan stops at the first pod created, terminating, not Running and
//!    Ready, or not yet available (`minReadySeconds`); with `Parallel` it
//!    goes on.
//! 2. condemned pods (ordinals outside the range) get the claim owners the
//!    retention policy asks for, then are deleted highest ordinal first:
//!    one at a time, each once every other pod is healthy, with
//!    `OrderedReady`; all at once with `Parallel`.
//! 3. RollingUpdate: pods at ordinal >= `partition` not at the update
//!    revision are deleted, highest first, one at a time and only while
//!    all are available; or, when `maxUnavailable` is set, as many as keep
//!    the unavailable replicas within it. OnDelete deletes nothing: a pod
//!    the user deletes comes back at the update revision.
//!
//! A missing pod is created at the current revision when RollingUpdate's
//! partition keeps its ordinal back (ordinal < start + partition), at the
//! update revision otherwise.

/// How the set replaces pods whose revision is not the update revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Only pods the user deletes are replaced.
    OnDelete,
    /// `partition`: replicas below `start + partition` stay at the current
    /// revision (`None`: no rollingUpdate block; then replicas below
    /// `start + status.currentReplicas` do). `max_unavailable`: resolved
    /// against replicas, at least 1; `None` when unset, for Kubernetes'
    /// one-at-a-time update that waits for every pod.
    RollingUpdate {
        partition: Option<i32>,
        max_unavailable: Option<i32>,
    },
}

/// The part of the set the planner reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetView {
    pub replicas: i32,
    pub start: i32,
    /// `podManagementPolicy: Parallel`.
    pub parallel: bool,
    pub strategy: Strategy,
    /// The set has volumeClaimTemplates.
    pub has_claims: bool,
    /// The set is being deleted: only status is written.
    pub deleting: bool,
    pub current_revision: String,
    pub update_revision: String,
    /// `status.currentReplicas` as last written.
    pub status_current_replicas: i32,
}

/// One observed pod of the set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodView {
    pub ordinal: i32,
    /// Its `controller-revision-hash` label.
    pub revision: String,
    pub phase: super::pods::Phase,
    /// Running with a Ready condition True.
    pub ready: bool,
    /// Ready for `minReadySeconds`.
    pub available: bool,
    /// Has a deletionTimestamp.
    pub terminating: bool,
    /// Its identity labels and its claims' owners are as they should be.
    pub in_sync: bool,
}

impl PodView {
    fn healthy(&self) -> bool {
        self.ready && self.available && !self.terminating
    }
}

/// Which revision a created pod gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Current,
    Update,
}

/// Why a pod is deleted (the event and the log say it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// It ended (Failed or Succeeded): a new one replaces it.
    Ended,
    /// Its ordinal is out of range.
    ScaleDown,
    /// Its revision is not the update revision.
    Update,
}

/// One step of the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Create the pod of `ordinal` (its missing claims first).
    Create {
        ordinal: i32,
        target: Target,
    },
    /// Create the claims a Pending pod lacks.
    CreateClaims {
        ordinal: i32,
    },
    /// Fix the pod's identity labels and its claims' owners.
    Sync {
        ordinal: i32,
    },
    /// Set a condemned pod's claims' owners before it goes.
    SyncCondemnedClaims {
        ordinal: i32,
    },
    Delete {
        ordinal: i32,
        why: Why,
    },
}

/// Replica counts for the status, as `computeReplicaStatus` counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    pub replicas: i32,
    pub ready: i32,
    pub available: i32,
    pub current: i32,
    pub updated: i32,
}

/// What to do and the status that goes with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub actions: Vec<Action>,
    pub counts: Counts,
}

/// A replica slot after the actions planned so far.
#[derive(Clone)]
struct Slot {
    revision: String,
    unavailable: bool,
    terminating: bool,
}

/// The counts over `pods`.
pub fn count(pods: &[PodView], current: &str, update: &str) -> Counts {
    let mut c = Counts::default();
    for p in pods {
        c.replicas += 1;
        if p.ready {
            c.ready += 1;
            if p.available {
                c.available += 1;
            }
        }
        if !p.terminating {
            c.current += i32::from(p.revision == current);
            c.updated += i32::from(p.revision == update);
        }
    }
    c
}

/// The revision a missing replica at `ordinal` is created at.
pub fn target_for(set: &SetView, ordinal: i32) -> Target {
    match set.strategy {
        Strategy::RollingUpdate {
            partition: Some(p), ..
        } if ordinal < set.start.saturating_add(p) => Target::Current,
        Strategy::RollingUpdate {
            partition: None, ..
        } if ordinal < set.start.saturating_add(set.status_current_replicas) => Target::Current,
        _ => Target::Update,
    }
}

/// Plan the next steps for `set` given its `pods` (any order; each ordinal
/// at most once).
pub fn plan(set: &SetView, pods: &[PodView]) -> Plan {
    let mut counts = count(pods, &set.current_revision, &set.update_revision);
    let mut actions = Vec::new();
    if set.deleting {
        return Plan { actions, counts };
    }
    let monotonic = !set.parallel;
    let replicas = set.replicas.max(0);
    let end = set.start.saturating_add(replicas);
    let in_range = |o: i32| o >= set.start && o < end;
    let mut slots: Vec<Slot> = Vec::with_capacity(replicas as usize);
    let mut condemned: Vec<&PodView> = pods.iter().filter(|p| !in_range(p.ordinal)).collect();
    condemned.sort_by_key(|p| std::cmp::Reverse(p.ordinal));

    // 1. Replicas, lowest ordinal first.
    let mut stopped = false;
    for ordinal in set.start..end {
        let pod = pods.iter().find(|p| p.ordinal == ordinal);
        let Some(pod) = pod else {
            let target = target_for(set, ordinal);
            let revision = match target {
                Target::Current => set.current_revision.clone(),
                Target::Update => set.update_revision.clone(),
            };
            slots.push(Slot {
                revision,
                unavailable: true,
                terminating: false,
            });
            if !stopped {
                actions.push(Action::Create { ordinal, target });
                stopped = monotonic;
            }
            continue;
        };
        let ended = matches!(
            pod.phase,
            super::pods::Phase::Failed | super::pods::Phase::Succeeded
        );
        slots.push(Slot {
            revision: pod.revision.clone(),
            unavailable: !pod.healthy(),
            terminating: pod.terminating || ended,
        });
        if stopped {
            continue;
        }
        if ended {
            if !pod.terminating {
                actions.push(Action::Delete {
                    ordinal,
                    why: Why::Ended,
                });
            }
            stopped = monotonic;
            continue;
        }
        if pod.phase == super::pods::Phase::Pending && set.has_claims {
            actions.push(Action::CreateClaims { ordinal });
        }
        if monotonic && !pod.healthy() {
            stopped = true;
            continue;
        }
        if !pod.in_sync {
            actions.push(Action::Sync { ordinal });
        }
    }
    if stopped {
        return Plan { actions, counts };
    }

    // 2. Condemned pods: claim owners, then deletion, highest first.
    for pod in &condemned {
        if !pod.in_sync && !pod.terminating {
            actions.push(Action::SyncCondemnedClaims {
                ordinal: pod.ordinal,
            });
        }
    }
    // The first unhealthy pod, replicas first, then condemned from the lowest.
    let first_unhealthy: Option<i32> = (set.start..end)
        .zip(&slots)
        .find(|(_, s)| s.unavailable)
        .map(|(o, _)| o)
        .or_else(|| {
            condemned
                .iter()
                .rev()
                .find(|p| !p.healthy())
                .map(|p| p.ordinal)
        });
    for pod in &condemned {
        if pod.terminating {
            if monotonic {
                return Plan { actions, counts };
            }
            continue;
        }
        if monotonic && !pod.healthy() && first_unhealthy != Some(pod.ordinal) {
            return Plan { actions, counts };
        }
        actions.push(Action::Delete {
            ordinal: pod.ordinal,
            why: Why::ScaleDown,
        });
        if monotonic {
            return Plan { actions, counts };
        }
    }

    // 3. The update.
    let Strategy::RollingUpdate {
        partition,
        max_unavailable,
    } = set.strategy
    else {
        return Plan { actions, counts };
    };
    let update_min = partition.unwrap_or(0).max(0) as usize;
    let delete = |i: usize, actions: &mut Vec<Action>, counts: &mut Counts| {
        actions.push(Action::Delete {
            ordinal: set.start + i as i32,
            why: Why::Update,
        });
        if slots[i].revision == set.current_revision {
            counts.current -= 1;
        }
    };
    match max_unavailable {
        None => {
            for i in (update_min..slots.len()).rev() {
                let s = &slots[i];
                if s.revision != set.update_revision && !s.terminating {
                    delete(i, &mut actions, &mut counts);
                    break;
                }
                if s.unavailable {
                    break;
                }
            }
        }
        Some(max) => {
            let unavailable = slots.iter().filter(|s| s.unavailable).count() as i32;
            let mut budget = max.max(1) - unavailable;
            for i in (update_min..slots.len()).rev() {
                if budget <= 0 {
                    break;
                }
                let s = &slots[i];
                if s.revision != set.update_revision && !s.terminating {
                    delete(i, &mut actions, &mut counts);
                    budget -= 1;
                }
            }
        }
    }
    Plan { actions, counts }
}

/// A rolling update is complete when every replica is updated and ready:
/// the update revision becomes the current one (`completeRollingUpdate`).
/// Returns the status' current revision and current replicas.
pub fn complete_rolling_update(set: &SetView, counts: &Counts) -> (String, i32) {
    let rolling = matches!(set.strategy, Strategy::RollingUpdate { .. });
    if rolling && counts.updated == counts.replicas && counts.ready == counts.replicas {
        (set.update_revision.clone(), counts.updated)
    } else {
        (set.current_revision.clone(), counts.current)
    }
}

/// `maxUnavailable` resolved against `replicas`: an integer, or a
/// percentage rounded down; at least 1, as Kubernetes resolves it.
pub fn resolve_max_unavailable(v: &str, replicas: i32) -> Option<i32> {
    let n = if let Some(pct) = v.strip_suffix('%') {
        let pct: i64 = pct.trim().parse().ok()?;
        (pct * i64::from(replicas.max(0)) / 100) as i32
    } else {
        v.trim().parse().ok()?
    };
    Some(n.max(1))
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
