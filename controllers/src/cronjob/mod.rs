//! The cronjob controller: starts a Job from each CronJob's template at the
//! times of its schedule (in its `timeZone`), as Kubernetes' CronJob
//! controller (v2) does. Each sync reads the CronJob and its Jobs fresh,
//! reconciles `status.active` with the Jobs that exist and run, deletes
//! finished Jobs beyond the history limits, then lets [`plan`] decide
//! about the most recent scheduled time and asks to be woken at the next.
//! Job names are deterministic (`<cronjob>-<minutes since the epoch>`), so a
//! member that takes over mid-sync finds the Job its predecessor created.

pub mod cron;
pub mod plan;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, PostParams, PropagationPolicy};
use kube::runtime::Controller;
use kube::runtime::controller::Action;
use kube::runtime::watcher;

use crate::Error;
use crate::context::Context;
use crate::events::Involved;
use crate::workload::{controlled_by, controller_ref, not_found};
use cron::Schedule;
use plan::{CronState, Decision, Finished, Policy};

/// The controller's name in metrics, events and `--controllers`.
pub const NAME: &str = "cronjob";

/// The annotation a CronJob's Job carries: its scheduled time.
pub const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";

/// Run until the future is dropped (leadership lost).
pub async fn run(ctx: Context) -> Result<(), Error> {
    let cronjobs = Api::<CronJob>::all(ctx.client.clone());
    let jobs = Api::<Job>::all(ctx.client.clone());
    let controller = Controller::new(cronjobs, watcher::Config::default())
        .owns(jobs, watcher::Config::default());
    crate::runner::run(controller, ctx, reconcile).await;
    Ok(())
}

/// The Job's finishing condition type (`Complete` or `Failed`), if finished.
pub fn finished(job: &Job) -> Option<&str> {
    job.status
        .as_ref()?
        .conditions
        .as_deref()?
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .map(|c| c.type_.as_str())
}

async fn reconcile(cj: Arc<CronJob>, ctx: Context) -> Result<Action, Error> {
    let ns = cj.metadata.namespace.clone().unwrap_or_default();
    let name = cj.metadata.name.clone().unwrap_or_default();
    let cronjobs = Api::<CronJob>::namespaced(ctx.client.clone(), &ns);
    // The cache may lag our own status writes; decide on the stored object.
    let Some(mut cj) = cronjobs.get_opt(&name).await? else {
        return Ok(Action::await_change());
    };
    if cj.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let uid = cj.metadata.uid.clone().unwrap_or_default();
    let jobs_api = Api::<Job>::namespaced(ctx.client.clone(), &ns);
    let jobs: Vec<Job> = jobs_api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|j| controlled_by(&j.metadata, &uid))
        .collect();
    let involved = Involved::of(&cj);
    let before = cj.status.clone();
    let status = cj.status.get_or_insert_with(Default::default);

    // status.active: drop finished and vanished jobs; note successes.
    let mut active = status.active.take().unwrap_or_default();
    for job in &jobs {
        let job_uid = job.metadata.uid.as_deref().unwrap_or_default();
        let job_name = job.metadata.name.as_deref().unwrap_or_default();
        let listed = active.iter().any(|r| r.uid.as_deref() == Some(job_uid));
        match finished(job) {
            None if !listed => {
                ctx.recorder
                    .publish(
                        &involved,
                        "Warning",
                        "UnexpectedJob",
                        &format!(
                            "Saw a job that the controller did not create or forgot: {job_name}"
                        ),
                    )
                    .await;
            }
            None => {}
            Some(condition) => {
                if listed {
                    active.retain(|r| r.uid.as_deref() != Some(job_uid));
                    ctx.recorder
                        .publish(
                            &involved,
                            "Normal",
                            "SawCompletedJob",
                            &format!("Saw completed job: {job_name}, condition: {condition}"),
                        )
                        .await;
                }
                if let Some(done) = job.status.as_ref().and_then(|s| s.completion_time.as_ref())
                    && status
                        .last_successful_time
                        .as_ref()
                        .is_none_or(|t| t.0 < done.0)
                {
                    status.last_successful_time = Some(done.clone());
                }
            }
        }
    }
    let mut missing = Vec::new();
    for r in &active {
        if jobs.iter().any(|j| j.metadata.uid == r.uid) {
            continue;
        }
        // Not in our list: ask the API before deciding it is gone.
        let job_name = r.name.clone().unwrap_or_default();
        match jobs_api.get_opt(&job_name).await? {
            Some(j) if j.metadata.uid == r.uid => {}
            _ => missing.push(job_name),
        }
    }
    for job_name in &missing {
        active.retain(|r| r.name.as_ref() != Some(job_name));
        ctx.recorder
            .publish(
                &involved,
                "Normal",
                "MissingJob",
                &format!("Active job went missing: {job_name}"),
            )
            .await;
    }
    status.active = (!active.is_empty()).then_some(active);

    cleanup_history(&ctx, &cj, &jobs, &jobs_api, &involved).await;

    let spec = cj.spec.clone().unwrap_or_default();
    if spec.suspend == Some(true) {
        write_status(&cronjobs, &mut cj, before).await?;
        return Ok(Action::await_change());
    }
    let tz = match cron::time_zone(spec.time_zone.as_deref()) {
        Ok(tz) => tz,
        Err(e) => {
            let tz = spec.time_zone.as_deref().unwrap_or_default();
            ctx.recorder
                .publish(
                    &involved,
                    "Warning",
                    "UnknownTimeZone",
                    &format!("invalid timeZone: {tz:?}: {e}"),
                )
                .await;
            write_status(&cronjobs, &mut cj, before).await?;
            return Ok(Action::await_change());
        }
    };
    let schedule = match Schedule::parse(&spec.schedule) {
        Ok(s) => s,
        Err(e) => {
            ctx.recorder
                .publish(
                    &involved,
                    "Warning",
                    "UnparseableSchedule",
                    &format!("unparseable schedule: {:?} : {e}", spec.schedule),
                )
                .await;
            write_status(&cronjobs, &mut cj, before).await?;
            return Ok(Action::await_change());
        }
    };
    let status = cj.status.get_or_insert_with(Default::default);
    let now = Timestamp::now();
    let state = CronState {
        name: &name,
        now,
        created: cj
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0)
            .unwrap_or(now),
        last_schedule: status.last_schedule_time.as_ref().map(|t| t.0),
        starting_deadline_seconds: spec.starting_deadline_seconds,
        policy: Policy::parse(spec.concurrency_policy.as_deref()),
        active: status
            .active
            .as_deref()
            .unwrap_or_default()
            .iter()
            .filter_map(|r| r.name.clone())
            .collect(),
    };
    let p = plan::plan(&state, &schedule, &tz);
    if let Some(n) = p.too_many_missed {
        ctx.recorder
            .publish(
                &involved,
                "Warning",
                "TooManyMissedTimes",
                &format!("too many missed start times: {n}. Set or decrease .spec.startingDeadlineSeconds or check clock skew"),
            )
            .await;
    }
    match p.decision {
        Decision::Wait | Decision::AlreadyStarted { .. } => {}
        Decision::Missed { scheduled } => {
            ctx.recorder
                .publish(
                    &involved,
                    "Warning",
                    "MissSchedule",
                    &format!("Missed scheduled time to start a job: {scheduled}"),
                )
                .await;
        }
        Decision::Forbidden { .. } => {
            ctx.recorder
                .publish(
                    &involved,
                    "Normal",
                    "JobAlreadyActive",
                    "Not starting job because prior execution is running and concurrency policy is Forbid",
                )
                .await;
        }
        Decision::Start {
            scheduled,
            job,
            replace,
        } => {
            for old in &replace {
                delete_job(&ctx, &jobs_api, old, &involved).await?;
                if let Some(a) = status.active.as_mut() {
                    a.retain(|r| r.name.as_ref() != Some(old));
                }
            }
            let created = start_job(&ctx, &cj, &jobs_api, &job, scheduled, &tz, &involved).await?;
            let status = cj.status.get_or_insert_with(Default::default);
            if let Some(created) = created {
                let r = ObjectReference {
                    api_version: Some("batch/v1".into()),
                    kind: Some("Job".into()),
                    name: created.metadata.name.clone(),
                    namespace: created.metadata.namespace.clone(),
                    uid: created.metadata.uid.clone(),
                    resource_version: created.metadata.resource_version.clone(),
                    ..Default::default()
                };
                let active = status.active.get_or_insert_with(Vec::new);
                if !active.iter().any(|a| a.uid == r.uid) {
                    active.push(r);
                }
            }
            status.last_schedule_time = Some(Time(scheduled));
        }
    }
    write_status(&cronjobs, &mut cj, before).await?;
    // Wake at the next scheduled time (a little after, so it has passed).
    Ok(match p.next {
        Some(next) => {
            let wait = next.duration_since(now).unsigned_abs();
            Action::requeue(wait + Duration::from_millis(100))
        }
        None => Action::await_change(),
    })
}

/// Create the Job for `scheduled`. An existing Job of that name that this
/// CronJob controls is the same start (made by an earlier try or by a
/// member that lost the lease): it is returned, not made twice.
async fn start_job(
    ctx: &Context,
    cj: &CronJob,
    jobs_api: &Api<Job>,
    name: &str,
    scheduled: Timestamp,
    tz: &k8s_openapi::jiff::tz::TimeZone,
    involved: &Involved,
) -> Result<Option<Job>, Error> {
    let template = cj
        .spec
        .as_ref()
        .map(|s| s.job_template.clone())
        .unwrap_or_default();
    let tmeta = template.metadata.unwrap_or_default();
    let mut annotations = tmeta.annotations.unwrap_or_default();
    let zoned = scheduled.to_zoned(tz.clone());
    annotations.insert(
        SCHEDULED_TIMESTAMP.into(),
        zoned
            .strftime("%Y-%m-%dT%H:%M:%S%:z")
            .to_string()
            .replace("+00:00", "Z"),
    );
    let job = Job {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: cj.metadata.namespace.clone(),
            labels: tmeta.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![controller_ref(cj)]),
            ..Default::default()
        },
        spec: template.spec,
        status: None,
    };
    match jobs_api.create(&PostParams::default(), &job).await {
        Ok(created) => {
            ctx.metrics.created(ctx.name);
            ctx.recorder
                .publish(
                    involved,
                    "Normal",
                    "SuccessfulCreate",
                    &format!("Created job {name}"),
                )
                .await;
            Ok(Some(created))
        }
        Err(kube::Error::Api(s)) if s.code == 409 => {
            let existing = jobs_api.get_opt(name).await?;
            let uid = cj.metadata.uid.as_deref().unwrap_or_default();
            match existing {
                Some(j) if controlled_by(&j.metadata, uid) => Ok(if finished(&j).is_none() {
                    Some(j)
                } else {
                    None
                }),
                _ => {
                    ctx.recorder
                        .publish(
                            involved,
                            "Warning",
                            "FailedCreate",
                            &format!("Error creating job: jobs.batch {name:?} already exists"),
                        )
                        .await;
                    Err(Error::Invalid(format!("job {name} exists and is not ours")))
                }
            }
        }
        Err(e) => {
            ctx.recorder
                .publish(
                    involved,
                    "Warning",
                    "FailedCreate",
                    &format!("Error creating job: {e}"),
                )
                .await;
            Err(e.into())
        }
    }
}

/// Delete a job and its pods (background propagation, as Kubernetes).
async fn delete_job(
    ctx: &Context,
    jobs_api: &Api<Job>,
    name: &str,
    involved: &Involved,
) -> Result<(), Error> {
    let dp = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..Default::default()
    };
    match jobs_api.delete(name, &dp).await {
        Ok(_) => {
            ctx.metrics.deleted(ctx.name);
            ctx.recorder
                .publish(
                    involved,
                    "Normal",
                    "SuccessfulDelete",
                    &format!("Deleted job {name}"),
                )
                .await;
            Ok(())
        }
        Err(e) if not_found(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Delete finished jobs beyond `successfulJobsHistoryLimit` and
/// `failedJobsHistoryLimit`. Failures are retried at the next sync.
async fn cleanup_history(
    ctx: &Context,
    cj: &CronJob,
    jobs: &[Job],
    jobs_api: &Api<Job>,
    involved: &Involved,
) {
    let spec = cj.spec.clone().unwrap_or_default();
    let finished: Vec<Finished> = jobs
        .iter()
        .filter(|j| j.metadata.deletion_timestamp.is_none())
        .filter_map(|j| {
            finished(j).map(|c| Finished {
                name: j.metadata.name.clone().unwrap_or_default(),
                succeeded: c == "Complete",
                start: j
                    .status
                    .as_ref()
                    .and_then(|s| s.start_time.as_ref())
                    .map(|t| t.0),
            })
        })
        .collect();
    for name in plan::history_to_delete(
        &finished,
        spec.successful_jobs_history_limit,
        spec.failed_jobs_history_limit,
    ) {
        if let Err(e) = delete_job(ctx, jobs_api, &name, involved).await {
            tracing::debug!(job = %name, error = %e, "history cleanup failed");
        }
    }
}

/// Write the status if it changed, with the resourceVersion read (a
/// conflict retries the whole sync on fresh state).
async fn write_status(
    api: &Api<CronJob>,
    cj: &mut CronJob,
    before: Option<k8s_openapi::api::batch::v1::CronJobStatus>,
) -> Result<(), Error> {
    if cj.status == before {
        return Ok(());
    }
    let name = cj.metadata.name.clone().unwrap_or_default();
    *cj = api
        .replace_status(&name, &PostParams::default(), cj)
        .await?;
    Ok(())
}
