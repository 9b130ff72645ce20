//! Releases the tracking finalizer of pods no live Job will count, as
//! Kubernetes' Job controller does for orphan pods: a pod whose Job was
//! deleted in the background (by `kubectl delete job`, a CronJob's Replace
//! or history limit) or orphaned would otherwise stay Terminating forever.
//! A pod keeps the finalizer while a Job with its owner's uid exists and
//! has not finished, or when its controller is not a Job. Only pods with
//! the `batch.kubernetes.io/controller-uid` label (every pod of a Job
//! whose selector the API generated) are watched.

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};

use super::pods::remove_finalizer;
use super::tracking::FINALIZER;
use crate::Error;
use crate::context::Context;
use crate::workload::controller_of;

/// The label the API puts on every pod template of a Job (see the module doc).
const CONTROLLER_UID: &str = "batch.kubernetes.io/controller-uid";

/// Watch job pods until the future is dropped; `jobs` is the Job
/// controller's cache, asked first so live Jobs cost no API call.
pub async fn run(ctx: Context, jobs: Store<Job>) -> Result<(), Error> {
    let pods = Api::<Pod>::all(ctx.client.clone());
    let config = watcher::Config::default().labels(CONTROLLER_UID);
    let mut events = watcher(pods, config)
        .default_backoff()
        .touched_objects()
        .boxed();
    while let Some(event) = events.next().await {
        let pod = match event {
            Ok(p) => p,
            Err(e) => {
                tracing::debug!(error = %e, "job pod watch");
                continue;
            }
        };
        let held = pod
            .metadata
            .finalizers
            .as_deref()
            .unwrap_or_default()
            .iter()
            .any(|f| f == FINALIZER);
        if !held {
            continue;
        }
        match owner_state(&ctx, &jobs, &pod).await {
            Ok(Owner::Counts) => {}
            Ok(Owner::None) => {
                let ns = pod.metadata.namespace.clone().unwrap_or_default();
                let api = Api::<Pod>::namespaced(ctx.client.clone(), &ns);
                if let Err(e) = remove_finalizer(&ctx, &api, &pod).await {
                    tracing::debug!(error = %e, "orphan job pod: finalizer not removed");
                }
            }
            Err(e) => tracing::debug!(error = %e, "orphan job pod: owner not read"),
        }
    }
    Ok(())
}

enum Owner {
    /// A running Job (or a controller that is not a Job) will deal with it.
    Counts,
    /// Nothing will count the pod.
    None,
}

async fn owner_state(ctx: &Context, jobs: &Store<Job>, pod: &Pod) -> Result<Owner, Error> {
    let Some(owner) = controller_of(&pod.metadata) else {
        return Ok(Owner::None);
    };
    if owner.kind != "Job" || owner.api_version != "batch/v1" {
        return Ok(Owner::Counts);
    }
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let live = |job: &Job| {
        job.metadata.uid.as_deref() == Some(owner.uid.as_str()) && super::finished(job).is_none()
    };
    if let Some(job) = jobs.get(&ObjectRef::new(&owner.name).within(&ns))
        && live(&job)
    {
        return Ok(Owner::Counts);
    }
    // The cache may lag a Job just created: ask the API before acting.
    let job = Api::<Job>::namespaced(ctx.client.clone(), &ns)
        .get_opt(&owner.name)
        .await?;
    Ok(match job {
        Some(j) if live(&j) => Owner::Counts,
        _ => Owner::None,
    })
}
