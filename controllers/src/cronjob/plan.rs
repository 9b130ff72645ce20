//! What a CronJob should do now, as pure functions of its spec, its status
//! and its jobs: whether a scheduled time is due (Kubernetes'
//! `mostRecentScheduleTime` with the starting deadline), what the
//! concurrency policy makes of it, the job's deterministic name, and which
//! finished jobs the history limits remove.

use k8s_openapi::jiff::tz::TimeZone;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::cron::{self, MISSED_CAP, Schedule};

/// `spec.concurrencyPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    Allow,
    Forbid,
    Replace,
}

impl Policy {
    pub fn parse(s: Option<&str>) -> Policy {
        match s {
            Some("Forbid") => Policy::Forbid,
            Some("Replace") => Policy::Replace,
            _ => Policy::Allow,
        }
    }
}

/// What the controller sees of a CronJob when it decides.
#[derive(Debug, Clone)]
pub struct CronState<'a> {
    pub name: &'a str,
    pub now: Timestamp,
    pub created: Timestamp,
    pub last_schedule: Option<Timestamp>,
    pub starting_deadline_seconds: Option<i64>,
    pub policy: Policy,
    /// Names of the jobs in `status.active` that still run.
    pub active: Vec<String>,
}

/// The decision about the most recent scheduled time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// No scheduled time has passed since the last one handled.
    Wait,
    /// The job of this time exists or was already started.
    AlreadyStarted { scheduled: Timestamp },
    /// The time passed longer ago than the starting deadline allows
    /// (event `MissSchedule`).
    Missed { scheduled: Timestamp },
    /// Forbid and a job still runs (event `JobAlreadyActive`).
    Forbidden { scheduled: Timestamp },
    /// Start the job `job` for `scheduled`, first deleting `replace` (the
    /// running jobs, under Replace).
    Start {
        scheduled: Timestamp,
        job: String,
        replace: Vec<String>,
    },
}

/// The decision, how many start times were missed when more than
/// [`MISSED_CAP`] (event `TooManyMissedTimes`), and when to look again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub decision: Decision,
    pub too_many_missed: Option<u32>,
    pub next: Option<Timestamp>,
}

/// The job's name for a scheduled time: `<cronjob>-<minutes since the epoch>`,
/// the same on every member, so a second try finds the first's job.
pub fn job_name(cronjob: &str, scheduled: Timestamp) -> String {
    format!("{cronjob}-{}", scheduled.as_second().div_euclid(60))
}

/// Decide what a CronJob does at `state.now`.
pub fn plan(state: &CronState, schedule: &Schedule, tz: &TimeZone) -> Plan {
    let now = state.now;
    let next = schedule.next_after(now, tz);
    let mut earliest = state.last_schedule.unwrap_or(state.created);
    if let Some(deadline) = state.starting_deadline_seconds
        && let Ok(floor) = now.checked_sub(SignedDuration::from_secs(deadline))
        && floor > earliest
    {
        earliest = floor;
    }
    let (recent, missed) = if earliest > now {
        (None, 0)
    } else {
        cron::most_recent(schedule, tz, earliest, now)
    };
    let too_many_missed = (missed > MISSED_CAP).then_some(missed);
    let decision = match recent {
        None => Decision::Wait,
        Some(scheduled) => decide(state, scheduled),
    };
    Plan {
        decision,
        too_many_missed,
        next,
    }
}

fn decide(state: &CronState, scheduled: Timestamp) -> Decision {
    let job = job_name(state.name, scheduled);
    if state.active.contains(&job) || state.last_schedule == Some(scheduled) {
        return Decision::AlreadyStarted { scheduled };
    }
    if let Some(deadline) = state.starting_deadline_seconds
        && scheduled
            .checked_add(SignedDuration::from_secs(deadline))
            .is_ok_and(|t| t < state.now)
    {
        return Decision::Missed { scheduled };
    }
    match state.policy {
        Policy::Forbid if !state.active.is_empty() => Decision::Forbidden { scheduled },
        Policy::Replace => Decision::Start {
            scheduled,
            job,
            replace: state.active.clone(),
        },
        _ => Decision::Start {
            scheduled,
            job,
            replace: Vec::new(),
        },
    }
}

/// A finished job of a CronJob, for the history limits.
#[derive(Debug, Clone)]
pub struct Finished {
    pub name: String,
    pub succeeded: bool,
    pub start: Option<Timestamp>,
}

/// The finished jobs to delete so that at most `successful` succeeded and
/// `failed` failed ones remain, oldest first (by start time; jobs that never
/// started count as the newest, as Kubernetes orders them).
pub fn history_to_delete(
    jobs: &[Finished],
    successful: Option<i32>,
    failed: Option<i32>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (want_success, limit) in [(true, successful), (false, failed)] {
        let Some(limit) = limit else { continue };
        let mut these: Vec<&Finished> = jobs
            .iter()
            .filter(|j| j.succeeded == want_success)
            .collect();
        let keep = usize::try_from(limit.max(0)).unwrap_or(0);
        if these.len() <= keep {
            continue;
        }
        these.sort_by(|a, b| match (a.start, b.start) {
            (Some(x), Some(y)) => x.cmp(&y).then_with(|| a.name.cmp(&b.name)),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => a.name.cmp(&b.name),
        });
        let excess = these.len() - keep;
        out.extend(these.into_iter().take(excess).map(|j| j.name.clone()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    fn state(now: &str) -> CronState<'static> {
        CronState {
            name: "backup",
            now: ts(now),
            created: ts("2026-12-01T08:00:30Z"),
            last_schedule: None,
            starting_deadline_seconds: None,
            policy: Policy::Allow,
            active: Vec::new(),
        }
    }

    fn run(s: &CronState, spec: &str) -> Plan {
        plan(s, &Schedule::parse(spec).expect("parses"), &TimeZone::UTC)
    }

    #[test]
    fn job_names_are_minutes_since_the_epoch() {
        assert_eq!(
            job_name("backup", ts("2026-12-01T08:05:00Z")),
            "backup-29935205"
        );
        assert_eq!(job_name("x", ts("1970-01-01T00:01:00Z")), "x-1");
    }

    #[test]
    fn a_due_time_starts_its_job_once() {
        let s = state("2026-12-01T08:05:10Z");
        let p = run(&s, "*/5 * * * *");
        assert_eq!(
            p.decision,
            Decision::Start {
                scheduled: ts("2026-12-01T08:05:00Z"),
                job: "backup-29935205".into(),
                replace: vec![],
            }
        );
        assert_eq!(p.next, Some(ts("2026-12-01T08:10:00Z")));
        assert_eq!(p.too_many_missed, None);

        // Started: lastScheduleTime says so, or its job is active.
        let mut done = s.clone();
        done.last_schedule = Some(ts("2026-12-01T08:05:00Z"));
        assert_eq!(run(&done, "*/5 * * * *").decision, Decision::Wait);
        let mut listed = s.clone();
        listed.last_schedule = Some(ts("2026-12-01T08:00:00Z"));
        listed.active = vec!["backup-29935205".into()];
        assert_eq!(
            run(&listed, "*/5 * * * *").decision,
            Decision::AlreadyStarted {
                scheduled: ts("2026-12-01T08:05:00Z")
            }
        );

        // Nothing due before the first time after creation.
        let early = state("2026-12-01T08:04:59Z");
        assert_eq!(run(&early, "*/5 * * * *").decision, Decision::Wait);
    }

    #[test]
    fn concurrency_policies_decide_about_running_jobs() {
        let mut s = state("2026-12-01T08:10:01Z");
        s.last_schedule = Some(ts("2026-12-01T08:05:00Z"));
        s.active = vec!["backup-29935205".into()];
        let start = |replace: Vec<String>| Decision::Start {
            scheduled: ts("2026-12-01T08:10:00Z"),
            job: "backup-29935210".into(),
            replace,
        };
        assert_eq!(run(&s, "*/5 * * * *").decision, start(vec![]));
        s.policy = Policy::Forbid;
        assert_eq!(
            run(&s, "*/5 * * * *").decision,
            Decision::Forbidden {
                scheduled: ts("2026-12-01T08:10:00Z")
            }
        );
        s.policy = Policy::Replace;
        assert_eq!(
            run(&s, "*/5 * * * *").decision,
            start(vec!["backup-29935205".into()])
        );
        s.active.clear();
        s.policy = Policy::Forbid;
        assert_eq!(run(&s, "*/5 * * * *").decision, start(vec![]));
    }

    #[test]
    fn the_starting_deadline_skips_late_times_and_bounds_the_search() {
        let mut s = state("2026-12-01T08:07:00Z");
        s.starting_deadline_seconds = Some(60);
        // 08:05 is two minutes old: too late with a 60 s deadline. The
        // search starts at now - 60 s, so it is not even seen.
        assert_eq!(run(&s, "*/5 * * * *").decision, Decision::Wait);
        s.starting_deadline_seconds = Some(200);
        assert_eq!(
            run(&s, "*/5 * * * *").decision,
            Decision::Start {
                scheduled: ts("2026-12-01T08:05:00Z"),
                job: "backup-29935205".into(),
                replace: vec![],
            }
        );
        // Within the deadline it starts; at the deadline it is no longer seen.
        s.starting_deadline_seconds = Some(120);
        s.now = ts("2026-12-01T08:06:59Z");
        assert!(matches!(
            run(&s, "*/5 * * * *").decision,
            Decision::Start { .. }
        ));
        s.now = ts("2026-12-01T08:07:00Z");
        assert_eq!(run(&s, "*/5 * * * *").decision, Decision::Wait);
    }

    #[test]
    fn many_missed_times_are_reported_and_the_latest_started() {
        let mut s = state("2026-12-03T08:00:30Z");
        s.last_schedule = Some(ts("2026-12-01T08:00:00Z"));
        let p = run(&s, "* * * * *");
        assert!(p.too_many_missed.is_some_and(|n| n > 100), "{p:?}");
        assert!(matches!(
            p.decision,
            Decision::Start { scheduled, .. } if scheduled == ts("2026-12-03T08:00:00Z")
        ));
        // A deadline keeps the count low, as Kubernetes advises.
        s.starting_deadline_seconds = Some(300);
        assert_eq!(run(&s, "* * * * *").too_many_missed, None);
    }

    #[test]
    fn history_limits_delete_the_oldest_finished_jobs() {
        let job = |name: &str, ok: bool, start: Option<&str>| Finished {
            name: name.into(),
            succeeded: ok,
            start: start.map(ts),
        };
        let jobs = [
            job("b-3", true, Some("2026-12-01T08:03:00Z")),
            job("b-1", true, Some("2026-12-01T08:01:00Z")),
            job("b-2", true, Some("2026-12-01T08:02:00Z")),
            job("b-4", true, None),
            job("f-1", false, Some("2026-12-01T08:01:30Z")),
            job("f-2", false, Some("2026-12-01T08:02:30Z")),
        ];
        assert_eq!(
            history_to_delete(&jobs, Some(2), Some(1)),
            ["b-1", "b-2", "f-1"]
        );
        assert_eq!(
            history_to_delete(&jobs, Some(0), Some(0)),
            ["b-1", "b-2", "b-3", "b-4", "f-1", "f-2"]
        );
        assert!(history_to_delete(&jobs, Some(4), None).is_empty());
        assert!(history_to_delete(&jobs, None, Some(2)).is_empty());
    }
}
