//! The job controller: runs each Job's pods to completion as Kubernetes'
//! Job controller does. A sync reads the Job and its pods fresh (a quorum
//! list, so a pod created by the previous sync is always seen: no pod is
//! created twice, even after a fail-over), claims pods by selector,
//! counts finished pods through the `batch.kubernetes.io/job-tracking`
//! finalizer ([`tracking`]), decides with [`plan`] and writes the status
//! (counts, `ready`, `terminating`, conditions, start and completion
//! times) with the resourceVersion it read. Finished Jobs with
//! `ttlSecondsAfterFinished` are deleted when it expires (Kubernetes' TTL
//! controller, folded in here); [`orphans`] releases the finalizer of pods
//! whose Job is gone.

pub mod indexes;
pub mod orphans;
pub mod plan;
pub mod pods;
pub mod tracking;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus, UncountedTerminatedPods};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, DeleteParams, ListParams, PostParams, Preconditions, PropagationPolicy};
use kube::runtime::Controller;
use kube::runtime::controller::Action;
use kube::runtime::watcher;

use crate::Error;
use crate::context::Context;
use crate::events::Involved;
use crate::workload::{self, claim_pods, not_found};
use plan::{Ending, Failure, JobSpec, JobState, PlanPod};
use pods::{create_pods, delete_pod, remove_finalizer};
use tracking::{FINALIZER, PodState, TrackedPod, Uncounted};

/// The controller's name in metrics, events and `--controllers`.
pub const NAME: &str = "job";

/// The annotation and label with an Indexed Job pod's completion index.
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";

/// Run until the future is dropped (leadership lost).
pub async fn run(ctx: Context) -> Result<(), Error> {
    let jobs = Api::<Job>::all(ctx.client.clone());
    let pods = Api::<Pod>::all(ctx.client.clone());
    let controller =
        Controller::new(jobs, watcher::Config::default()).owns(pods, watcher::Config::default());
    let orphans = orphans::run(ctx.clone(), controller.store());
    let (_, released) = tokio::join!(crate::runner::run(controller, ctx, reconcile), orphans);
    released
}

/// The Job's finishing condition (`Complete` or `Failed`), if it finished.
pub fn finished(job: &Job) -> Option<&JobCondition> {
    condition(job.status.as_ref(), "Complete").or_else(|| condition(job.status.as_ref(), "Failed"))
}

/// The condition of `type_` that is true, if any.
fn condition<'a>(status: Option<&'a JobStatus>, type_: &str) -> Option<&'a JobCondition> {
    status?
        .conditions
        .as_deref()?
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
}

fn pod_state(pod: &Pod) -> PodState {
    match workload::phase(pod) {
        "Succeeded" => PodState::Succeeded,
        "Failed" => PodState::Failed,
        _ if pod.metadata.deletion_timestamp.is_some() => PodState::Terminating,
        _ => PodState::Active,
    }
}

fn pod_index(pod: &Pod) -> Option<i32> {
    pod.metadata
        .annotations
        .as_ref()?
        .get(COMPLETION_INDEX)?
        .parse()
        .ok()
}

fn has_finalizer(pod: &Pod) -> bool {
    pod.metadata
        .finalizers
        .as_deref()
        .unwrap_or_default()
        .iter()
        .any(|f| f == FINALIZER)
}

/// When a failed pod finished: its containers' last finish, else the
/// deletion time.
fn failed_at(pod: &Pod) -> Option<Timestamp> {
    let finished = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_deref())
        .unwrap_or_default()
        .iter()
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref())
        .map(|t| t.0)
        .max();
    finished.or_else(|| pod.metadata.deletion_timestamp.as_ref().map(|t| t.0))
}

async fn reconcile(job: Arc<Job>, ctx: Context) -> Result<Action, Error> {
    let ns = job.metadata.namespace.clone().unwrap_or_default();
    let name = job.metadata.name.clone().unwrap_or_default();
    let jobs = Api::<Job>::namespaced(ctx.client.clone(), &ns);
    let Some(mut job) = jobs.get_opt(&name).await? else {
        return Ok(Action::await_change());
    };
    let spec = job.spec.clone().unwrap_or_default();
    let pods_api = Api::<Pod>::namespaced(ctx.client.clone(), &ns);
    let selector = workload::selector(spec.selector.as_ref())?;
    if selector.selects_all() {
        // The API gives every Job a selector; one that selects everything
        // would claim every pod in the namespace.
        tracing::warn!(job = %name, "job has an empty selector; not syncing");
        return Ok(Action::await_change());
    }
    let listed = pods_api
        .list(&ListParams::default().labels_from(&selector))
        .await?
        .items;
    let pods = claim_pods(&pods_api, &job, &selector, listed).await?;
    let involved = Involved::of(&job);
    let now = Timestamp::now();

    let finished = condition(job.status.as_ref(), "Complete")
        .or_else(|| condition(job.status.as_ref(), "Failed"))
        .cloned();
    if job.metadata.deletion_timestamp.is_some() || finished.is_some() {
        // Everything is counted: let the pods go.
        for pod in pods.iter().filter(|p| has_finalizer(p)) {
            remove_finalizer(&ctx, &pods_api, pod).await?;
        }
        return match finished {
            Some(c) if job.metadata.deletion_timestamp.is_none() => {
                expire(&ctx, &jobs, &job, &c, now).await
            }
            _ => Ok(Action::await_change()),
        };
    }

    let completions = spec.completions;
    let indexed = spec.completion_mode.as_deref() == Some("Indexed");
    let before = job.status.clone();
    let status = job.status.get_or_insert_with(Default::default);
    let uncounted = status
        .uncounted_terminated_pods
        .as_ref()
        .map(|u| Uncounted {
            succeeded: u.succeeded.iter().flatten().cloned().collect(),
            failed: u.failed.iter().flatten().cloned().collect(),
        })
        .unwrap_or_default();
    let completed = indexes::parse(
        status.completed_indexes.as_deref(),
        completions.unwrap_or(0),
    );
    let mut tracked: Vec<TrackedPod> = pods
        .iter()
        .map(|p| TrackedPod {
            uid: p.metadata.uid.clone().unwrap_or_default(),
            state: pod_state(p),
            index: pod_index(p),
            has_finalizer: has_finalizer(p),
        })
        .collect();

    // Steps 1 and 2 of finalizer tracking: record, then release.
    let t = tracking::track(
        &uncounted,
        &completed,
        indexed.then(|| completions.unwrap_or(0)),
        &tracked,
    );
    if t.uncounted != uncounted || t.completed_indexes != completed {
        set_uncounted(status, &t.uncounted);
        if indexed {
            status.completed_indexes = Some(indexes::format(&t.completed_indexes));
        }
        job = jobs
            .replace_status(&name, &PostParams::default(), &job)
            .await?;
    }
    for uid in &t.remove_finalizer {
        if let Some(pod) = pods.iter().find(|p| p.metadata.uid.as_ref() == Some(uid)) {
            remove_finalizer(&ctx, &pods_api, pod).await?;
        }
        for tp in tracked.iter_mut().filter(|tp| &tp.uid == uid) {
            tp.has_finalizer = false;
        }
    }
    // Step 3: counted for good.
    let (ok, failed_now, rest) = tracking::flush(&t.uncounted, &tracked);
    let status = job.status.get_or_insert_with(Default::default);
    status.succeeded = Some(status.succeeded.unwrap_or(0) + ok);
    status.failed = Some(status.failed.unwrap_or(0) + failed_now);
    set_uncounted(status, &rest);

    let last_failure = pods
        .iter()
        .filter(|p| matches!(pod_state(p), PodState::Failed | PodState::Terminating))
        .filter_map(failed_at)
        .max();
    let failure_target = condition(Some(status), "FailureTarget").map(|c| {
        if c.reason.as_deref() == Some("DeadlineExceeded") {
            Failure::DeadlineExceeded
        } else {
            Failure::BackoffLimitExceeded
        }
    });
    let state = JobState {
        spec: JobSpec {
            completions,
            parallelism: spec.parallelism.unwrap_or(1),
            backoff_limit: spec.backoff_limit.unwrap_or(6),
            indexed,
            suspend: spec.suspend == Some(true),
            active_deadline_seconds: spec.active_deadline_seconds,
        },
        succeeded: status.succeeded.unwrap_or(0),
        failed: status.failed.unwrap_or(0),
        completed_indexes: t.completed_indexes.clone(),
        uncounted: rest.succeeded.len() + rest.failed.len(),
        start_time: status.start_time.as_ref().map(|t| t.0),
        failure_target,
        success_criteria_met: condition(Some(status), "SuccessCriteriaMet").is_some(),
        suspended_condition: condition(Some(status), "Suspended").is_some(),
        last_failure,
        now,
    };
    let plan_pods: Vec<PlanPod> = pods
        .iter()
        .map(|p| PlanPod {
            name: p.metadata.name.clone().unwrap_or_default(),
            state: pod_state(p),
            index: pod_index(p),
            scheduled: p.spec.as_ref().is_some_and(|s| s.node_name.is_some()),
            running: workload::phase(p) == "Running",
            ready: workload::is_ready(p),
            created: workload::created(&p.metadata),
        })
        .collect();
    let plan = plan::plan(&state, &plan_pods);

    // Act: deletions first (they free parallelism), then creations.
    let mut deleted = 0;
    for pod_name in &plan.delete {
        let uid = pods
            .iter()
            .find(|p| p.metadata.name.as_ref() == Some(pod_name))
            .and_then(|p| p.metadata.uid.clone());
        if delete_pod(&ctx, &pods_api, pod_name, uid, &involved).await? {
            deleted += 1;
        }
    }
    let created = create_pods(&ctx, &pods_api, &job, &plan.create, &involved).await?;

    let status = job.status.get_or_insert_with(Default::default);
    let active = plan_pods
        .iter()
        .filter(|p| p.state == PodState::Active)
        .count()
        + created;
    let active = active.saturating_sub(deleted);
    status.active = Some(active as i32);
    status.ready = Some(
        plan_pods
            .iter()
            .filter(|p| p.state == PodState::Active && p.ready && !plan.delete.contains(&p.name))
            .count() as i32,
    );
    status.terminating = Some(
        (plan_pods
            .iter()
            .filter(|p| p.state == PodState::Terminating)
            .count()
            + deleted) as i32,
    );
    if indexed {
        status.completed_indexes = Some(indexes::format(&t.completed_indexes));
        status.succeeded = Some(t.completed_indexes.len() as i32);
    }
    let now_t = Time(now);
    if plan.start {
        status.start_time = Some(now_t.clone());
    }
    let mut events: Vec<(&str, &str, String)> = Vec::new();
    match plan.suspend {
        Some(true) => {
            set_condition(
                status,
                "Suspended",
                "True",
                "JobSuspended",
                "Job suspended",
                now,
            );
            events.push(("Normal", "Suspended", "Job suspended".into()));
        }
        Some(false) => {
            set_condition(
                status,
                "Suspended",
                "False",
                "JobResumed",
                "Job resumed",
                now,
            );
            events.push(("Normal", "Resumed", "Job resumed".into()));
        }
        None => {}
    }
    match plan.ending {
        Ending::None => {}
        Ending::FailureTarget(f) => {
            set_condition(
                status,
                "FailureTarget",
                "True",
                f.reason(),
                f.message(),
                now,
            );
            events.push(("Warning", f.reason(), f.message().into()));
        }
        Ending::SuccessCriteriaMet => {
            set_condition(
                status,
                "SuccessCriteriaMet",
                "True",
                "CompletionsReached",
                plan::COMPLETIONS_REACHED,
                now,
            );
        }
        Ending::Failed(f) => {
            if condition(Some(status), "FailureTarget").is_none() {
                set_condition(
                    status,
                    "FailureTarget",
                    "True",
                    f.reason(),
                    f.message(),
                    now,
                );
            }
            set_condition(status, "Failed", "True", f.reason(), f.message(), now);
        }
        Ending::Complete => {
            if condition(Some(status), "SuccessCriteriaMet").is_none() {
                set_condition(
                    status,
                    "SuccessCriteriaMet",
                    "True",
                    "CompletionsReached",
                    plan::COMPLETIONS_REACHED,
                    now,
                );
            }
            set_condition(
                status,
                "Complete",
                "True",
                "CompletionsReached",
                plan::COMPLETIONS_REACHED,
                now,
            );
            status.completion_time = Some(now_t);
            events.push(("Normal", "Completed", "Job completed".into()));
        }
    }
    if job.status != before {
        job = jobs
            .replace_status(&name, &PostParams::default(), &job)
            .await?;
    }
    for (type_, reason, message) in events {
        ctx.recorder
            .publish(&involved, type_, reason, &message)
            .await;
    }
    if let Some(c) = condition(job.status.as_ref(), "Complete")
        .or_else(|| condition(job.status.as_ref(), "Failed"))
        .cloned()
    {
        return expire(&ctx, &jobs, &job, &c, now).await;
    }
    Ok(match plan.requeue {
        Some(d) => Action::requeue(d + Duration::from_millis(100)),
        None => Action::await_change(),
    })
}

fn set_uncounted(status: &mut JobStatus, u: &Uncounted) {
    status.uncounted_terminated_pods = Some(UncountedTerminatedPods {
        succeeded: Some(u.succeeded.iter().cloned().collect()),
        failed: Some(u.failed.iter().cloned().collect()),
    });
}

/// Set condition `type_` (a new transition time only when its status changes).
fn set_condition(
    status: &mut JobStatus,
    type_: &str,
    value: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) {
    let conds = status.conditions.get_or_insert_with(Vec::new);
    let new = JobCondition {
        type_: type_.into(),
        status: value.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    };
    match conds.iter_mut().find(|c| c.type_ == type_) {
        Some(c) if c.status == value => {
            c.reason = new.reason;
            c.message = new.message;
            c.last_probe_time = new.last_probe_time;
        }
        Some(c) => *c = new,
        None => conds.push(new),
    }
}

/// Delete a finished Job once its `ttlSecondsAfterFinished` has passed,
/// or say when to look again.
async fn expire(
    ctx: &Context,
    jobs: &Api<Job>,
    job: &Job,
    finished: &JobCondition,
    now: Timestamp,
) -> Result<Action, Error> {
    let Some(ttl) = job.spec.as_ref().and_then(|s| s.ttl_seconds_after_finished) else {
        return Ok(Action::await_change());
    };
    let at = job
        .status
        .as_ref()
        .and_then(|s| s.completion_time.as_ref())
        .or(finished.last_transition_time.as_ref())
        .map(|t| t.0)
        .unwrap_or(now);
    let expires = at
        .checked_add(SignedDuration::from_secs(ttl.into()))
        .unwrap_or(Timestamp::MAX);
    if expires > now {
        let wait = expires.duration_since(now).unsigned_abs();
        return Ok(Action::requeue(wait + Duration::from_millis(100)));
    }
    let name = job.metadata.name.clone().unwrap_or_default();
    let dp = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Foreground),
        preconditions: Some(Preconditions {
            uid: job.metadata.uid.clone(),
            resource_version: None,
        }),
        ..Default::default()
    };
    match jobs.delete(&name, &dp).await {
        Ok(_) => {
            ctx.metrics.deleted(ctx.name);
            tracing::info!(job = %name, "deleted a finished job after its ttlSecondsAfterFinished");
        }
        Err(e) if not_found(&e) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(Action::await_change())
}
