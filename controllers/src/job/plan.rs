//! What a Job does next, as a pure function of its spec, its counts (after
//! [`super::tracking`]) and its pods, following Kubernetes' Job controller
//! (1.33): the failure and success criteria (`backoffLimit`,
//! `activeDeadlineSeconds`, `completions`), which first add the interim
//! `FailureTarget`/`SuccessCriteriaMet` condition and delete the active
//! pods, and add `Failed`/`Complete` once no pod runs or terminates;
//! suspension; and otherwise how many pods to create (which indexes, for
//! Indexed Jobs) or delete to keep `parallelism` pods running, with the
//! pod-failure backoff before replacements.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::tracking::PodState;

/// The first delay before a failed pod is replaced; it doubles with each
/// failure up to [`MAX_BACKOFF`].
pub const BASE_BACKOFF: Duration = Duration::from_secs(10);
pub const MAX_BACKOFF: Duration = Duration::from_secs(600);

/// The spec fields that decide.
#[derive(Debug, Clone)]
pub struct JobSpec {
    pub completions: Option<i32>,
    pub parallelism: i32,
    pub backoff_limit: i32,
    pub indexed: bool,
    pub suspend: bool,
    pub active_deadline_seconds: Option<i64>,
}

/// A pod as planning sees it.
#[derive(Debug, Clone)]
pub struct PlanPod {
    pub name: String,
    pub state: PodState,
    pub index: Option<i32>,
    /// For the order in which surplus pods go (Kubernetes' `ActivePods`):
    /// unscheduled, then pending, then not ready, then the newest first.
    pub scheduled: bool,
    pub running: bool,
    pub ready: bool,
    pub created: Option<Timestamp>,
}

/// Why a Job fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    BackoffLimitExceeded,
    DeadlineExceeded,
}

impl Failure {
    pub fn reason(self) -> &'static str {
        match self {
            Failure::BackoffLimitExceeded => "BackoffLimitExceeded",
            Failure::DeadlineExceeded => "DeadlineExceeded",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Failure::BackoffLimitExceeded => "Job has reached the specified backoff limit",
            Failure::DeadlineExceeded => "Job was active longer than specified deadline",
        }
    }
}

/// The message of `SuccessCriteriaMet` and `Complete` (reason `CompletionsReached`).
pub const COMPLETIONS_REACHED: &str = "Reached expected number of succeeded pods";

/// Everything planning reads.
#[derive(Debug, Clone)]
pub struct JobState {
    pub spec: JobSpec,
    pub succeeded: i32,
    pub failed: i32,
    pub completed_indexes: BTreeSet<i32>,
    /// Finished pods recorded but not yet counted (finalizers in flight).
    pub uncounted: usize,
    pub start_time: Option<Timestamp>,
    /// An interim condition already written.
    pub failure_target: Option<Failure>,
    pub success_criteria_met: bool,
    /// `Suspended=True` is written.
    pub suspended_condition: bool,
    /// When the most recent failed pod finished, for the replacement backoff.
    pub last_failure: Option<Timestamp>,
    pub now: Timestamp,
}

/// What to do about the Job's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Still running.
    None,
    /// Add `FailureTarget` now (and delete the active pods).
    FailureTarget(Failure),
    /// Add `SuccessCriteriaMet` now (and delete the active pods).
    SuccessCriteriaMet,
    /// Add `Failed` (every pod is finished and counted).
    Failed(Failure),
    /// Add `Complete`.
    Complete,
}

/// The plan for one sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub ending: Ending,
    /// Set `startTime` to now.
    pub start: bool,
    /// `Some(true)`: add `Suspended=True`; `Some(false)`: flip it to False.
    pub suspend: Option<bool>,
    /// Pods to create: an index each for Indexed Jobs, else `None`s.
    pub create: Vec<Option<i32>>,
    /// Active pods to delete, by name.
    pub delete: Vec<String>,
    /// Look again after this long (the backoff or the deadline).
    pub requeue: Option<Duration>,
}

/// Decide one sync of a Job that has not finished.
pub fn plan(job: &JobState, pods: &[PlanPod]) -> Plan {
    let spec = &job.spec;
    let active: Vec<&PlanPod> = pods
        .iter()
        .filter(|p| p.state == PodState::Active)
        .collect();
    let terminating = pods
        .iter()
        .filter(|p| p.state == PodState::Terminating)
        .count();
    let mut plan = Plan {
        ending: Ending::None,
        start: false,
        suspend: None,
        create: Vec::new(),
        delete: Vec::new(),
        requeue: None,
    };
    let settled = active.is_empty() && terminating == 0 && job.uncounted == 0;
    let all_active = || active.iter().map(|p| p.name.clone()).collect::<Vec<_>>();

    // An end already decided: clear the pods, then write the final condition.
    if let Some(f) = job.failure_target {
        plan.delete = all_active();
        if settled {
            plan.ending = Ending::Failed(f);
        }
        return plan;
    }
    if job.success_criteria_met {
        plan.delete = all_active();
        if settled {
            plan.ending = Ending::Complete;
        }
        return plan;
    }

    if spec.suspend {
        plan.delete = all_active();
        if !job.suspended_condition {
            plan.suspend = Some(true);
        }
        return plan;
    }
    if job.suspended_condition {
        plan.suspend = Some(false);
    }
    // A resumed Job starts its clock again, as Kubernetes does.
    let start = match job.start_time {
        Some(t) if !job.suspended_condition => t,
        _ => {
            plan.start = true;
            job.now
        }
    };

    let succeeded = if spec.indexed {
        job.completed_indexes.len() as i32
    } else {
        job.succeeded
    };
    let success = match spec.completions {
        Some(c) => succeeded >= c,
        // A work queue: done once one pod succeeded and none still runs.
        None => succeeded > 0 && active.is_empty() && terminating == 0,
    };
    if success {
        plan.ending = if active.is_empty() && terminating == 0 && job.uncounted == 0 {
            Ending::Complete
        } else {
            plan.delete = all_active();
            Ending::SuccessCriteriaMet
        };
        return plan;
    }
    if job.failed > spec.backoff_limit {
        plan.ending = Ending::FailureTarget(Failure::BackoffLimitExceeded);
        plan.delete = all_active();
        return plan;
    }
    if let Some(deadline) = spec.active_deadline_seconds {
        let end = start
            .checked_add(SignedDuration::from_secs(deadline))
            .unwrap_or(Timestamp::MAX);
        if job.now >= end {
            plan.ending = Ending::FailureTarget(Failure::DeadlineExceeded);
            plan.delete = all_active();
            return plan;
        }
        plan.requeue = Some(end.duration_since(job.now).unsigned_abs());
    }

    manage(job, &active, succeeded, &mut plan);
    plan
}

/// Create or delete pods so that the wanted number run.
fn manage(job: &JobState, active: &[&PlanPod], succeeded: i32, plan: &mut Plan) {
    let spec = &job.spec;
    let parallelism = spec.parallelism.max(0);
    let mut keep: Vec<&PlanPod> = Vec::new();
    if spec.indexed {
        let completions = spec.completions.unwrap_or(0);
        // Pods of an invalid or completed index, and duplicates of an index, go.
        let mut seen = BTreeSet::new();
        let mut ordered: Vec<&PlanPod> = active.to_vec();
        ordered.sort_by(|a, b| surplus_order(b, a));
        for p in ordered {
            match p.index {
                Some(i)
                    if (0..completions).contains(&i)
                        && !job.completed_indexes.contains(&i)
                        && seen.insert(i) =>
                {
                    keep.push(p)
                }
                _ => plan.delete.push(p.name.clone()),
            }
        }
    } else {
        keep = active.to_vec();
    }
    let want = match spec.completions {
        Some(c) => (c - succeeded).clamp(0, parallelism),
        // Once one pod of a work queue succeeded, no new pods start.
        None if succeeded > 0 => keep.len() as i32,
        None => parallelism,
    } as usize;
    if keep.len() > want {
        keep.sort_by(|a, b| surplus_order(a, b));
        let excess = keep.len() - want;
        plan.delete
            .extend(keep.iter().take(excess).map(|p| p.name.clone()));
        return;
    }
    let missing = want - keep.len();
    if missing == 0 {
        return;
    }
    if let Some(wait) = backoff_left(job) {
        plan.requeue = Some(plan.requeue.map_or(wait, |r| r.min(wait)));
        return;
    }
    if spec.indexed {
        let running: BTreeSet<i32> = keep.iter().filter_map(|p| p.index).collect();
        let completions = spec.completions.unwrap_or(0);
        plan.create = (0..completions)
            .filter(|i| !job.completed_indexes.contains(i) && !running.contains(i))
            .take(missing)
            .map(Some)
            .collect();
    } else {
        plan.create = vec![None; missing];
    }
}

/// How much of the replacement backoff is left: 10 s after the first
/// failure, doubling per failure, at most ten minutes, counted from the
/// last failure.
fn backoff_left(job: &JobState) -> Option<Duration> {
    let last = job.last_failure?;
    if job.failed == 0 {
        return None;
    }
    let doublings = (job.failed - 1).clamp(0, 16) as u32;
    let delay = BASE_BACKOFF.saturating_mul(1 << doublings).min(MAX_BACKOFF);
    let until = last
        .checked_add(SignedDuration::try_from(delay).unwrap_or(SignedDuration::MAX))
        .unwrap_or(Timestamp::MAX);
    (until > job.now).then(|| until.duration_since(job.now).unsigned_abs())
}

/// Which of two pods goes first when there are too many: unscheduled before
/// scheduled, pending before running, not ready before ready, newer before
/// older.
fn surplus_order(a: &PlanPod, b: &PlanPod) -> std::cmp::Ordering {
    a.scheduled
        .cmp(&b.scheduled)
        .then(a.running.cmp(&b.running))
        .then(a.ready.cmp(&b.ready))
        .then(b.created.cmp(&a.created))
        .then(b.name.cmp(&a.name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    const NOW: &str = "2026-12-01T09:00:00Z";

    fn job(completions: Option<i32>, parallelism: i32) -> JobState {
        JobState {
            spec: JobSpec {
                completions,
                parallelism,
                backoff_limit: 6,
                indexed: false,
                suspend: false,
                active_deadline_seconds: None,
            },
            succeeded: 0,
            failed: 0,
            completed_indexes: BTreeSet::new(),
            uncounted: 0,
            start_time: Some(ts("2026-12-01T08:59:00Z")),
            failure_target: None,
            success_criteria_met: false,
            suspended_condition: false,
            last_failure: None,
            now: ts(NOW),
        }
    }

    fn active(name: &str, index: Option<i32>, ready: bool, created: &str) -> PlanPod {
        PlanPod {
            name: name.into(),
            state: PodState::Active,
            index,
            scheduled: true,
            running: ready,
            ready,
            created: Some(ts(created)),
        }
    }

    #[test]
    fn parallelism_and_completions_bound_the_pods_created() {
        // (completions, parallelism, succeeded, active pods) -> pods created
        for (completions, parallelism, succeeded, running, want) in [
            (Some(1), 1, 0, 0, 1),
            (Some(5), 2, 0, 0, 2),
            (Some(5), 2, 0, 1, 1),
            (Some(5), 2, 4, 0, 1),
            (Some(5), 10, 2, 1, 2),
            (Some(3), 0, 0, 0, 0),
            (None, 3, 0, 1, 2),
            (None, 3, 1, 1, 0),
        ] {
            let mut j = job(completions, parallelism);
            j.succeeded = succeeded;
            let pods: Vec<PlanPod> = (0..running)
                .map(|i| active(&format!("p{i}"), None, true, "2026-12-01T08:59:10Z"))
                .collect();
            let p = plan(&j, &pods);
            assert_eq!(
                p.create.len(),
                want,
                "{completions:?} {parallelism} {succeeded} {running}"
            );
            assert!(p.delete.is_empty());
            assert_eq!(p.ending, Ending::None);
        }
    }

    #[test]
    fn surplus_pods_go_unready_and_newest_first() {
        let j = job(Some(10), 1);
        let pods = [
            active("old-ready", None, true, "2026-12-01T08:59:01Z"),
            active("new-ready", None, true, "2026-12-01T08:59:30Z"),
            active("old-unready", None, false, "2026-12-01T08:59:00Z"),
        ];
        let p = plan(&j, &pods);
        assert_eq!(p.delete, ["old-unready", "new-ready"]);
        assert!(p.create.is_empty());
    }

    #[test]
    fn indexed_jobs_create_the_lowest_missing_indexes_once() {
        let mut j = job(Some(5), 3);
        j.spec.indexed = true;
        j.completed_indexes = [0].into();
        let pods = [
            active("j-2-a", Some(2), true, "2026-12-01T08:59:01Z"),
            active("j-2-b", Some(2), false, "2026-12-01T08:59:02Z"),
            active("j-0-a", Some(0), true, "2026-12-01T08:59:03Z"),
            active("j-9-a", Some(9), true, "2026-12-01T08:59:04Z"),
        ];
        let p = plan(&j, &pods);
        let mut deleted = p.delete.clone();
        deleted.sort();
        // A second pod of index 2, a pod of the completed index 0, index 9 of 5.
        assert_eq!(deleted, ["j-0-a", "j-2-b", "j-9-a"]);
        assert_eq!(p.create, [Some(1), Some(3)]);
    }

    #[test]
    fn success_first_meets_the_criteria_then_completes() {
        let mut j = job(Some(2), 2);
        j.succeeded = 2;
        let straggler = [active("late", None, true, "2026-12-01T08:59:01Z")];
        let p = plan(&j, &straggler);
        assert_eq!(p.ending, Ending::SuccessCriteriaMet);
        assert_eq!(p.delete, ["late"]);
        // Written: now wait for the pod to terminate and be counted.
        j.success_criteria_met = true;
        let mut going = straggler[0].clone();
        going.state = PodState::Terminating;
        let p = plan(&j, &[going]);
        assert_eq!(p.ending, Ending::None);
        j.uncounted = 1;
        assert_eq!(plan(&j, &[]).ending, Ending::None);
        j.uncounted = 0;
        assert_eq!(plan(&j, &[]).ending, Ending::Complete);
        // Without stragglers it completes at once.
        let mut k = job(Some(2), 2);
        k.succeeded = 2;
        assert_eq!(plan(&k, &[]).ending, Ending::Complete);
        // A work queue completes when a pod succeeded and none runs.
        let mut q = job(None, 2);
        q.succeeded = 1;
        assert_eq!(plan(&q, &straggler).ending, Ending::None);
        assert_eq!(plan(&q, &[]).ending, Ending::Complete);
        // Indexed: every index completed.
        let mut ix = job(Some(3), 3);
        ix.spec.indexed = true;
        ix.completed_indexes = [0, 2].into();
        assert_eq!(plan(&ix, &[]).create, [Some(1)]);
        ix.completed_indexes.insert(1);
        assert_eq!(plan(&ix, &[]).ending, Ending::Complete);
    }

    #[test]
    fn failures_beyond_the_backoff_limit_fail_the_job() {
        let mut j = job(Some(3), 2);
        j.spec.backoff_limit = 1;
        j.failed = 1;
        j.last_failure = Some(ts("2026-12-01T08:59:55Z"));
        let pods = [active("a", None, true, "2026-12-01T08:59:01Z")];
        // One failure: within the limit; the replacement waits 10 s.
        let p = plan(&j, &pods);
        assert_eq!(p.ending, Ending::None);
        assert!(p.create.is_empty());
        assert_eq!(p.requeue, Some(Duration::from_secs(5)));
        j.now = ts("2026-12-01T09:00:05Z");
        assert_eq!(plan(&j, &pods).create, [None]);
        // Two: beyond it.
        j.failed = 2;
        let p = plan(&j, &pods);
        assert_eq!(
            p.ending,
            Ending::FailureTarget(Failure::BackoffLimitExceeded)
        );
        assert_eq!(p.delete, ["a"]);
        j.failure_target = Some(Failure::BackoffLimitExceeded);
        assert_eq!(plan(&j, &pods).ending, Ending::None);
        assert_eq!(
            plan(&j, &[]).ending,
            Ending::Failed(Failure::BackoffLimitExceeded)
        );
    }

    #[test]
    fn the_backoff_doubles_per_failure_up_to_ten_minutes() {
        let mut j = job(Some(100), 1);
        j.spec.backoff_limit = 100;
        j.last_failure = Some(ts(NOW));
        for (failed, secs) in [(1, 10), (2, 20), (3, 40), (6, 320), (7, 600), (40, 600)] {
            j.failed = failed;
            assert_eq!(
                plan(&j, &[]).requeue,
                Some(Duration::from_secs(secs)),
                "{failed}"
            );
        }
    }

    #[test]
    fn the_active_deadline_fails_the_job_and_is_waited_for() {
        let mut j = job(Some(1), 1);
        j.spec.active_deadline_seconds = Some(90);
        let pods = [active("a", None, true, "2026-12-01T08:59:01Z")];
        let p = plan(&j, &pods);
        assert_eq!(p.ending, Ending::None);
        assert_eq!(p.requeue, Some(Duration::from_secs(30)));
        j.now = ts("2026-12-01T09:00:30Z");
        let p = plan(&j, &pods);
        assert_eq!(p.ending, Ending::FailureTarget(Failure::DeadlineExceeded));
        assert_eq!(p.delete, ["a"]);
    }

    #[test]
    fn suspension_deletes_pods_and_resumption_restarts_the_clock() {
        let mut j = job(Some(2), 2);
        j.spec.suspend = true;
        let pods = [active("a", None, true, "2026-12-01T08:59:01Z")];
        let p = plan(&j, &pods);
        assert_eq!(p.suspend, Some(true));
        assert_eq!(p.delete, ["a"]);
        assert!(p.create.is_empty());
        j.suspended_condition = true;
        assert_eq!(plan(&j, &[]).suspend, None);
        j.spec.suspend = false;
        let p = plan(&j, &[]);
        assert_eq!(p.suspend, Some(false));
        assert!(p.start);
        assert_eq!(p.create.len(), 2);
        // A new Job gets its start time on the first sync.
        let mut n = job(Some(1), 1);
        n.start_time = None;
        assert!(plan(&n, &[]).start);
        assert!(!plan(&job(Some(1), 1), &[]).start);
    }
}
