//! A deployment's status as Kubernetes writes it and `kubectl rollout
//! status` reads it: the replica counts summed over its replica sets, the
//! `Available` condition (at least replicas - maxUnavailable available),
//! and the `Progressing` condition whose reasons tell a rollout's story:
//! NewReplicaSetCreated, FoundNewReplicaSet, ReplicaSetUpdated,
//! NewReplicaSetAvailable, ProgressDeadlineExceeded, DeploymentPaused and
//! DeploymentResumed. `ReplicaFailure` mirrors a replica set's.

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

pub const PROGRESSING: &str = "Progressing";
pub const AVAILABLE: &str = "Available";
pub const REPLICA_FAILURE: &str = "ReplicaFailure";
pub const NEW_RS_CREATED: &str = "NewReplicaSetCreated";
pub const FOUND_NEW_RS: &str = "FoundNewReplicaSet";
pub const RS_UPDATED: &str = "ReplicaSetUpdated";
pub const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
pub const TIMED_OUT: &str = "ProgressDeadlineExceeded";
pub const PAUSED: &str = "DeploymentPaused";
pub const RESUMED: &str = "DeploymentResumed";

/// A condition of `status` by type.
pub fn condition<'a>(status: &'a DeploymentStatus, type_: &str) -> Option<&'a DeploymentCondition> {
    status
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

/// A new condition at `now`.
pub fn new_condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    now: Timestamp,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// Set `c` in `status` as Kubernetes' `SetDeploymentCondition`: the same
/// status and reason changes nothing; the same status keeps its transition time.
pub fn set_condition(status: &mut DeploymentStatus, mut c: DeploymentCondition) {
    if let Some(old) = condition(status, &c.type_) {
        if old.status == c.status && old.reason == c.reason {
            return;
        }
        if old.status == c.status {
            c.last_transition_time = old.last_transition_time.clone();
        }
    }
    let conds = status.conditions.get_or_insert_with(Vec::new);
    conds.retain(|o| o.type_ != c.type_);
    conds.push(c);
}

pub fn remove_condition(status: &mut DeploymentStatus, type_: &str) {
    if let Some(c) = status.conditions.as_mut() {
        c.retain(|o| o.type_ != type_);
        if c.is_empty() {
            status.conditions = None;
        }
    }
}

fn n(v: Option<i32>) -> i32 {
    v.unwrap_or(0)
}

/// The counts of `d`'s status from its replica sets (Kubernetes'
/// `calculateStatus`), its conditions kept, Available set.
pub fn calculate(
    d: &Deployment,
    all: &[&ReplicaSet],
    new: Option<&ReplicaSet>,
    max_unavailable: i32,
    now: Timestamp,
) -> DeploymentStatus {
    let st = |rs: &ReplicaSet| rs.status.clone().unwrap_or_default();
    let spec_total: i32 = all
        .iter()
        .map(|r| r.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0))
        .sum();
    let available: i32 = all.iter().map(|r| n(st(r).available_replicas)).sum();
    let mut status = DeploymentStatus {
        observed_generation: d.metadata.generation,
        replicas: Some(all.iter().map(|r| st(r).replicas).sum()),
        updated_replicas: Some(new.map_or(0, |r| st(r).replicas)),
        ready_replicas: Some(all.iter().map(|r| n(st(r).ready_replicas)).sum()),
        available_replicas: Some(available),
        unavailable_replicas: Some((spec_total - available).max(0)),
        collision_count: d.status.as_ref().and_then(|s| s.collision_count),
        conditions: d.status.as_ref().and_then(|s| s.conditions.clone()),
        terminating_replicas: None,
    };
    let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    if available >= replicas - max_unavailable {
        set_condition(
            &mut status,
            new_condition(
                AVAILABLE,
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.".into(),
                now,
            ),
        );
    } else {
        set_condition(
            &mut status,
            new_condition(
                AVAILABLE,
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.".into(),
                now,
            ),
        );
    }
    status
}

/// Every replica updated, present and available, this generation observed.
pub fn complete(d: &Deployment, s: &DeploymentStatus) -> bool {
    let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    n(s.updated_replicas) == replicas
        && n(s.replicas) == replicas
        && n(s.available_replicas) == replicas
        && s.observed_generation >= d.metadata.generation
}

/// Whether `new` shows progress over `d`'s current status.
fn progressing(d: &Deployment, new: &DeploymentStatus) -> bool {
    let old = d.status.clone().unwrap_or_default();
    let old_old = n(old.replicas) - n(old.updated_replicas);
    let new_old = n(new.replicas) - n(new.updated_replicas);
    n(new.updated_replicas) > n(old.updated_replicas)
        || new_old < old_old
        || n(new.ready_replicas) > n(old.ready_replicas)
        || n(new.available_replicas) > n(old.available_replicas)
}

/// The progress deadline in seconds, if the deployment has one.
pub fn deadline(d: &Deployment) -> Option<i64> {
    d.spec
        .as_ref()
        .and_then(|s| s.progress_deadline_seconds)
        .filter(|s| *s != i32::MAX)
        .map(i64::from)
}

/// The Progressing condition after a sync (Kubernetes' `syncRolloutStatus`),
/// for the new replica set `new_rs`; also how long until the deadline
/// passes, when the rollout is still under way.
pub fn rollout(
    d: &Deployment,
    mut status: DeploymentStatus,
    new_rs: Option<&str>,
    now: Timestamp,
) -> (DeploymentStatus, Option<i64>) {
    let Some(deadline) = deadline(d) else {
        remove_condition(&mut status, PROGRESSING);
        return (status, None);
    };
    let current = condition(&status, PROGRESSING).cloned();
    let timed_out_already = current.as_ref().and_then(|c| c.reason.as_deref()) == Some(TIMED_OUT);
    let rs_name = new_rs.unwrap_or_default();
    if !timed_out_already {
        if complete(d, &status) {
            set_condition(
                &mut status,
                new_condition(
                    PROGRESSING,
                    "True",
                    NEW_RS_AVAILABLE,
                    format!("ReplicaSet \"{rs_name}\" has successfully progressed."),
                    now,
                ),
            );
        } else if progressing(d, &status) {
            let mut c = new_condition(
                PROGRESSING,
                "True",
                RS_UPDATED,
                format!("ReplicaSet \"{rs_name}\" is progressing."),
                now,
            );
            // Progress is news even with the same reason: refresh the update time.
            if let Some(old) = current.as_ref().filter(|o| o.status == "True") {
                c.last_transition_time = old.last_transition_time.clone();
            }
            remove_condition(&mut status, PROGRESSING);
            set_condition(&mut status, c);
        } else if timed_out(d, &status, now) {
            set_condition(
                &mut status,
                new_condition(
                    PROGRESSING,
                    "False",
                    TIMED_OUT,
                    format!("ReplicaSet \"{rs_name}\" has timed out progressing."),
                    now,
                ),
            );
        }
    }
    let left = match condition(&status, PROGRESSING) {
        Some(c) if !complete(d, &status) && c.reason.as_deref() != Some(TIMED_OUT) => c
            .last_update_time
            .as_ref()
            .map(|t| t.0.as_second() + deadline - now.as_second()),
        _ => None,
    };
    (status, left)
}

/// Whether the Progressing condition has not been updated for the deadline.
fn timed_out(d: &Deployment, status: &DeploymentStatus, now: Timestamp) -> bool {
    let Some(deadline) = deadline(d) else {
        return false;
    };
    let Some(c) = condition(status, PROGRESSING) else {
        return false;
    };
    match c.reason.as_deref() {
        Some(NEW_RS_AVAILABLE) => false,
        Some(TIMED_OUT) => true,
        _ => c
            .last_update_time
            .as_ref()
            .is_some_and(|t| t.0.as_second() + deadline < now.as_second()),
    }
}

/// Progressing=Unknown DeploymentPaused when paused, DeploymentResumed
/// when resumed (Kubernetes' `checkPausedConditions`).
pub fn paused(d: &Deployment, status: &mut DeploymentStatus, now: Timestamp) {
    if deadline(d).is_none() {
        return;
    }
    let reason = condition(status, PROGRESSING).and_then(|c| c.reason.clone());
    if reason.as_deref() == Some(TIMED_OUT) {
        return;
    }
    let is_paused = d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
    let paused_cond = reason.as_deref() == Some(PAUSED);
    if is_paused && !paused_cond {
        set_condition(
            status,
            new_condition(
                PROGRESSING,
                "Unknown",
                PAUSED,
                "Deployment is paused".into(),
                now,
            ),
        );
    } else if !is_paused && paused_cond {
        set_condition(
            status,
            new_condition(
                PROGRESSING,
                "Unknown",
                RESUMED,
                "Deployment is resumed".into(),
                now,
            ),
        );
    }
}

/// Whether two statuses differ in what Kubernetes would write.
pub fn same(a: &DeploymentStatus, b: &DeploymentStatus) -> bool {
    a == b
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{DeploymentSpec, ReplicaSetSpec, ReplicaSetStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn deploy(replicas: i32, generation: i64, status: Option<DeploymentStatus>) -> Deployment {
        Deployment {
            metadata: ObjectMeta {
                name: Some("web".into()),
                generation: Some(generation),
                ..Default::default()
            },
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                progress_deadline_seconds: Some(600),
                ..Default::default()
            }),
            status,
        }
    }

    fn rs(name: &str, spec: i32, actual: i32, ready: i32, available: i32) -> ReplicaSet {
        ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(spec),
                ..Default::default()
            }),
            status: Some(ReplicaSetStatus {
                replicas: actual,
                ready_replicas: Some(ready),
                available_replicas: Some(available),
                ..Default::default()
            }),
        }
    }

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    fn reason(s: &DeploymentStatus, t: &str) -> (String, String) {
        let c = condition(s, t).unwrap();
        (c.status.clone(), c.reason.clone().unwrap())
    }

    #[test]
    fn counts_sum_the_replica_sets_and_availability_is_judged() {
        let d = deploy(3, 2, None);
        let (old, new) = (rs("old", 1, 2, 2, 2), rs("new", 3, 3, 2, 1));
        let s = calculate(&d, &[&old, &new], Some(&new), 0, at(10));
        assert_eq!(
            (
                s.replicas,
                s.updated_replicas,
                s.ready_replicas,
                s.available_replicas,
                s.unavailable_replicas
            ),
            (Some(5), Some(3), Some(4), Some(3), Some(1))
        );
        assert_eq!(s.observed_generation, Some(2));
        assert_eq!(
            reason(&s, AVAILABLE),
            ("True".into(), "MinimumReplicasAvailable".into())
        );
        let (old, new) = (rs("old", 0, 0, 0, 0), rs("new", 3, 3, 1, 1));
        let s = calculate(&d, &[&old, &new], Some(&new), 1, at(10));
        assert_eq!(
            reason(&s, AVAILABLE),
            ("False".into(), "MinimumReplicasUnavailable".into())
        );
    }

    #[test]
    fn progressing_tells_the_rollout_story() {
        let new = rs("web-abc", 3, 3, 3, 3);
        let mut prior = DeploymentStatus::default();
        set_condition(
            &mut prior,
            new_condition(PROGRESSING, "True", NEW_RS_CREATED, "x".into(), at(0)),
        );
        // Done: NewReplicaSetAvailable, nothing to wait for.
        let d = deploy(3, 1, Some(prior.clone()));
        let s = calculate(&d, &[&new], Some(&new), 0, at(5));
        let (s, left) = rollout(&d, s, Some("web-abc"), at(5));
        assert_eq!(
            reason(&s, PROGRESSING),
            ("True".into(), NEW_RS_AVAILABLE.into())
        );
        assert_eq!(
            condition(&s, PROGRESSING).unwrap().message.as_deref(),
            Some("ReplicaSet \"web-abc\" has successfully progressed.")
        );
        assert_eq!(left, None);
        // Progress: ReplicaSetUpdated, the transition time kept.
        let half = rs("web-abc", 3, 2, 1, 1);
        let d = deploy(3, 1, Some(prior.clone()));
        let s = calculate(&d, &[&half], Some(&half), 0, at(5));
        let (s, left) = rollout(&d, s, Some("web-abc"), at(5));
        let c = condition(&s, PROGRESSING).unwrap();
        assert_eq!(c.reason.as_deref(), Some(RS_UPDATED));
        assert_eq!(c.last_transition_time, Some(Time(at(0))));
        assert_eq!(c.last_update_time, Some(Time(at(5))));
        assert_eq!(left, Some(600));
        // No progress past the deadline: ProgressDeadlineExceeded, and it stays.
        let d = deploy(3, 1, Some(s.clone()));
        let s2 = calculate(&d, &[&half], Some(&half), 0, at(700));
        let (s2, left) = rollout(&d, s2, Some("web-abc"), at(700));
        assert_eq!(reason(&s2, PROGRESSING), ("False".into(), TIMED_OUT.into()));
        assert_eq!(left, None);
        let d = deploy(3, 1, Some(s2.clone()));
        let s3 = calculate(&d, &[&new], Some(&new), 0, at(800));
        let (s3, _) = rollout(&d, s3, Some("web-abc"), at(800));
        assert_eq!(
            reason(&s3, PROGRESSING).1,
            TIMED_OUT,
            "a timed-out rollout stays timed out"
        );
    }

    #[test]
    fn pausing_and_resuming_are_conditions() {
        let mut d = deploy(3, 1, None);
        d.spec.as_mut().unwrap().paused = Some(true);
        let mut s = DeploymentStatus::default();
        paused(&d, &mut s, at(1));
        assert_eq!(reason(&s, PROGRESSING), ("Unknown".into(), PAUSED.into()));
        d.spec.as_mut().unwrap().paused = Some(false);
        paused(&d, &mut s, at(2));
        assert_eq!(reason(&s, PROGRESSING), ("Unknown".into(), RESUMED.into()));
    }
}
