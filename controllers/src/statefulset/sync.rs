//! One reconcile of a StatefulSet against the API: observe (the set's pods
//! and revisions, adopting orphans that match its selector and releasing
//! pods that no longer do, as ControllerRef semantics ask), settle the
//! current and update revisions (creating or renumbering a
//! ControllerRevision), ask [`super::plan`] what to do, do it in order
//! until a call fails, write the status, and trim the history. Every
//! object it creates has a deterministic name, so a create that a previous
//! leader already made answers AlreadyExists and changes nothing.

use std::collections::HashSet;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::Action as Requeue;
use serde_json::json;

use super::history::{Revisions, settle};
use super::observe::{Observed, observe};
use super::plan::{self, Action, PodView, SetView, Strategy, Target, Why};
use super::pods::{self, Retention};
use super::revision;
use crate::Error;
use crate::context::Context;
use crate::events::Involved;

/// How often a quiet set is looked at again.
const RESYNC: Duration = Duration::from_secs(300);

/// Reconcile `set`; says when to look again.
pub async fn reconcile(set: &StatefulSet, ctx: &Context) -> Result<Requeue, Error> {
    let ns = set.metadata.namespace.clone().unwrap_or_default();
    let name = set.metadata.name.clone().unwrap_or_default();
    let Some(spec) = set.spec.clone() else {
        return Ok(Requeue::await_change());
    };
    let deleting = set.metadata.deletion_timestamp.is_some();
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let revs_api: Api<ControllerRevision> = Api::namespaced(ctx.client.clone(), &ns);
    let sets_api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &ns);

    let observed = observe(set, ctx, &pods_api, deleting).await?;
    let Revisions {
        mut history,
        current,
        update,
        collision_count,
    } = settle(set, ctx, &revs_api, &sets_api).await?;

    let replicas = spec.replicas.unwrap_or(1);
    let strategy = match spec.update_strategy.as_ref() {
        Some(s) if s.type_.as_deref() == Some("OnDelete") => Strategy::OnDelete,
        s => {
            let ru = s.and_then(|s| s.rolling_update.as_ref());
            Strategy::RollingUpdate {
                partition: ru.map(|r| r.partition.unwrap_or(0)),
                max_unavailable: ru.and_then(|r| r.max_unavailable.as_ref()).and_then(|m| {
                    let v = match m {
                        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(i) => {
                            i.to_string()
                        }
                        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(s) => {
                            s.clone()
                        }
                    };
                    plan::resolve_max_unavailable(&v, replicas)
                }),
            }
        }
    };
    let view = SetView {
        replicas,
        start: pods::start_ordinal(set),
        parallel: spec.pod_management_policy.as_deref() == Some("Parallel"),
        strategy,
        has_claims: spec
            .volume_claim_templates
            .as_ref()
            .is_some_and(|t| !t.is_empty()),
        deleting,
        current_revision: current.metadata.name.clone().unwrap_or_default(),
        update_revision: update.metadata.name.clone().unwrap_or_default(),
        status_current_replicas: set
            .status
            .as_ref()
            .and_then(|s| s.current_replicas)
            .unwrap_or(0),
    };

    let min_ready = i64::from(spec.min_ready_seconds.unwrap_or(0));
    let now = Timestamp::now();
    let policy = Retention::of(set);
    let end = view.start.saturating_add(replicas.max(0));
    let mut wake: Option<i64> = None;
    let views: Vec<PodView> = observed
        .pods
        .iter()
        .map(|(ordinal, pod)| {
            let since = pods::ready_since(pod);
            let (available, in_secs) = pods::availability(since, min_ready, now);
            if let Some(s) = in_secs {
                wake = Some(wake.map_or(s, |w| w.min(s)));
            }
            let condemned = *ordinal < view.start || *ordinal >= end;
            let claims_ok =
                claim_fixes(set, &observed, pod, *ordinal, policy, condemned).is_empty();
            PodView {
                ordinal: *ordinal,
                revision: pods::pod_revision(pod).to_string(),
                phase: pods::phase(pod),
                ready: since.is_some(),
                available,
                terminating: pod.metadata.deletion_timestamp.is_some(),
                in_sync: claims_ok && (condemned || pods::identity_fix(pod, *ordinal).is_empty()),
            }
        })
        .collect();

    let planned = plan::plan(&view, &views);
    let mut failure = None;
    for action in &planned.actions {
        let done = act(
            *action, set, ctx, &pods_api, &observed, &current, policy, end, &view,
        )
        .await;
        if let Err(e) = done {
            failure = Some(e);
            break;
        }
    }

    let (current_revision, current_replicas) =
        plan::complete_rolling_update(&view, &planned.counts);
    let status = StatefulSetStatus {
        observed_generation: set.metadata.generation,
        replicas: planned.counts.replicas,
        ready_replicas: Some(planned.counts.ready),
        available_replicas: Some(planned.counts.available),
        current_replicas: Some(current_replicas),
        updated_replicas: Some(planned.counts.updated),
        current_revision: Some(current_revision.clone()),
        update_revision: Some(view.update_revision.clone()),
        collision_count: Some(collision_count),
        conditions: set.status.as_ref().and_then(|s| s.conditions.clone()),
    };
    if set.status.as_ref() != Some(&status) {
        let patch = json!({
            "metadata": {"resourceVersion": set.metadata.resource_version},
            "status": status,
        });
        sets_api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }

    // The history limit: revisions no pod runs and that are neither
    // current nor update go, oldest first.
    let mut live: HashSet<String> = observed
        .pods
        .iter()
        .map(|(_, p)| pods::pod_revision(p).to_string())
        .collect();
    live.insert(current_revision);
    live.insert(view.update_revision.clone());
    revision::sort(&mut history);
    let limit = spec.revision_history_limit.unwrap_or(10);
    for old in revision::to_truncate(&history, &live, limit) {
        match revs_api.delete(&old, &DeleteParams::default()).await {
            Ok(_) => ctx.metrics.deleted(ctx.name),
            Err(e) if crate::status_code(&e) == Some(404) => {}
            Err(e) => return Err(e.into()),
        }
    }

    if let Some(e) = failure {
        return Err(e);
    }
    Ok(match wake {
        Some(s) => Requeue::requeue(Duration::from_secs(s.max(1) as u64)),
        None => Requeue::requeue(RESYNC),
    })
}

/// The claims of the pod at `ordinal` whose owners the policy wants
/// changed, with the owners wanted.
fn claim_fixes(
    set: &StatefulSet,
    observed: &Observed,
    pod: &Pod,
    ordinal: i32,
    policy: Retention,
    condemned: bool,
) -> Vec<(
    String,
    Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>,
)> {
    let mut out = Vec::new();
    for want in pods::new_claims(set, ordinal) {
        let n = want.metadata.name.clone().unwrap_or_default();
        let Some(claim) = observed.claims.get(&n) else {
            continue;
        };
        let current = claim.metadata.owner_references.clone().unwrap_or_default();
        if let Some(owners) = pods::claim_owners(&current, policy, set, Some(pod), condemned) {
            out.push((n, owners));
        }
    }
    out
}

/// Carry out one planned action.
#[allow(clippy::too_many_arguments)]
async fn act(
    action: Action,
    set: &StatefulSet,
    ctx: &Context,
    pods_api: &Api<Pod>,
    observed: &Observed,
    current: &ControllerRevision,
    policy: Retention,
    end: i32,
    view: &SetView,
) -> Result<(), Error> {
    let set_name = set.metadata.name.clone().unwrap_or_default();
    let involved = Involved::of(set);
    let pod_at = |o: i32| observed.pods.iter().find(|(p, _)| *p == o).map(|(_, p)| p);
    match action {
        Action::Create { ordinal, target } => {
            let (from, rev) = match target {
                Target::Current => (revision::apply(set, current), &view.current_revision),
                Target::Update => (set.clone(), &view.update_revision),
            };
            let pod = pods::new_pod(&from, ordinal, rev);
            let pod_name = pods::pod_name(&set_name, ordinal);
            create_claims(set, ctx, observed, &pod_name, ordinal, policy).await?;
            match pods_api.create(&PostParams::default(), &pod).await {
                Ok(_) => {
                    ctx.metrics.created(ctx.name);
                    ctx.recorder
                        .publish(
                            &involved,
                            "Normal",
                            "SuccessfulCreate",
                            &format!("create Pod {pod_name} in StatefulSet {set_name} successful"),
                        )
                        .await;
                }
                // Made already (by a reconcile whose answer was lost, or a
                // previous leader): the next observation shows it.
                Err(e) if crate::status_code(&e) == Some(409) => {}
                Err(e) => {
                    ctx.recorder
                        .publish(
                            &involved,
                            "Warning",
                            "FailedCreate",
                            &format!(
                                "create Pod {pod_name} in StatefulSet {set_name} failed error: {e}"
                            ),
                        )
                        .await;
                    return Err(e.into());
                }
            }
        }
        Action::CreateClaims { ordinal } => {
            let pod_name = pods::pod_name(&set_name, ordinal);
            create_claims(set, ctx, observed, &pod_name, ordinal, policy).await?;
        }
        Action::Sync { ordinal } | Action::SyncCondemnedClaims { ordinal } => {
            let Some(pod) = pod_at(ordinal) else {
                return Ok(());
            };
            let condemned = ordinal < view.start || ordinal >= end;
            let fix = pods::identity_fix(pod, ordinal);
            let pod_name = pod.metadata.name.clone().unwrap_or_default();
            if !fix.is_empty() && !condemned {
                let patch = json!({"metadata": {
                    "resourceVersion": pod.metadata.resource_version,
                    "labels": fix,
                }});
                pods_api
                    .patch(&pod_name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
                ctx.metrics.patched(ctx.name);
            }
            let ns = set.metadata.namespace.clone().unwrap_or_default();
            let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
            for (claim, owners) in claim_fixes(set, observed, pod, ordinal, policy, condemned) {
                let rv = observed
                    .claims
                    .get(&claim)
                    .and_then(|c| c.metadata.resource_version.clone());
                let patch = json!({"metadata": {"resourceVersion": rv, "ownerReferences": owners}});
                match claims
                    .patch(&claim, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    Ok(_) => ctx.metrics.patched(ctx.name),
                    Err(e) if crate::status_code(&e) == Some(404) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Action::Delete { ordinal, why } => {
            let Some(pod) = pod_at(ordinal) else {
                return Ok(());
            };
            let pod_name = pod.metadata.name.clone().unwrap_or_default();
            tracing::info!(statefulset = %set_name, pod = %pod_name, ?why, "deleting pod");
            let dp = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: pod.metadata.uid.clone(),
                    resource_version: None,
                }),
                ..Default::default()
            };
            match pods_api.delete(&pod_name, &dp).await {
                Ok(_) => {
                    ctx.metrics.deleted(ctx.name);
                    ctx.recorder
                        .publish(
                            &involved,
                            "Normal",
                            "SuccessfulDelete",
                            &format!("delete Pod {pod_name} in StatefulSet {set_name} successful"),
                        )
                        .await;
                }
                // Gone already, or replaced by a namesake: nothing to do.
                Err(e) if matches!(crate::status_code(&e), Some(404) | Some(409)) => {}
                Err(e) => {
                    ctx.recorder
                        .publish(
                            &involved,
                            "Warning",
                            "FailedDelete",
                            &format!(
                                "delete Pod {pod_name} in StatefulSet {set_name} failed error: {e}"
                            ),
                        )
                        .await;
                    return Err(e.into());
                }
            }
            if why == Why::Ended {
                tracing::info!(statefulset = %set_name, pod = %pod_name, "recreating ended pod");
            }
        }
    }
    Ok(())
}

/// Create the claims the pod at `ordinal` lacks, owned as the policy says
/// (by the set when claims go with it; a pod owner comes only on scale-down).
async fn create_claims(
    set: &StatefulSet,
    ctx: &Context,
    observed: &Observed,
    pod_name: &str,
    ordinal: i32,
    policy: Retention,
) -> Result<(), Error> {
    let ns = set.metadata.namespace.clone().unwrap_or_default();
    let set_name = set.metadata.name.clone().unwrap_or_default();
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
    let involved = Involved::of(set);
    for mut claim in pods::new_claims(set, ordinal) {
        let n = claim.metadata.name.clone().unwrap_or_default();
        if let Some(existing) = observed.claims.get(&n) {
            if existing.metadata.deletion_timestamp.is_some() {
                // A claim on its way out: the pod waits for it to go, so it
                // does not start on a volume about to vanish.
                return Err(Error::Invalid(format!(
                    "claim {n} of pod {pod_name} is being deleted"
                )));
            }
            continue;
        }
        if let Some(owners) = pods::claim_owners(&[], policy, set, None, false) {
            claim.metadata.owner_references = Some(owners);
        }
        match api.create(&PostParams::default(), &claim).await {
            Ok(_) => {
                ctx.metrics.created(ctx.name);
                ctx.recorder
                    .publish(
                        &involved,
                        "Normal",
                        "SuccessfulCreate",
                        &format!(
                            "create Claim {n} Pod {pod_name} in StatefulSet {set_name} success"
                        ),
                    )
                    .await;
            }
            Err(e) if crate::status_code(&e) == Some(409) => {}
            Err(e) => {
                ctx.recorder
                    .publish(
                        &involved,
                        "Warning",
                        "FailedCreate",
                        &format!(
                            "create Claim {n} for Pod {pod_name} in StatefulSet {set_name} failed error: {e}"
                        ),
                    )
                    .await;
                return Err(e.into());
            }
        }
    }
    Ok(())
}
