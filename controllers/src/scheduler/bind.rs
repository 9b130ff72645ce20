//! The scheduler's writes, each in its own task: binding a pod (after
//! reserving the volumes of its WaitForFirstConsumer claims — the volume's
//! claimRef set, the claim annotated with the selected node — and waiting
//! for the PV binder to bind those claims, as kube-scheduler's PreBind
//! waits), and reporting a pod that fits nowhere (PodScheduled=False,
//! reason Unschedulable, and a FailedScheduling event).

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ObjectReference, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::sync::OwnedSemaphorePermit;

use super::algorithm::Decision;
use super::{Scheduler, key_of};
use crate::events::Involved;
use crate::{Error, status_code};

/// The annotation naming the node a claim's volume is chosen on.
pub const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
/// The annotation a controller-made binding carries.
pub const BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";
/// How long a binding waits for the PV binder to bind its claims.
const CLAIMS_BOUND_TIMEOUT: Duration = Duration::from_secs(120);
const CLAIMS_POLL: Duration = Duration::from_millis(200);

/// Bind `pod` as `decision` says; on failure the scheduler forgets the
/// assumption and tries again after the pod's backoff.
pub(super) async fn bind(
    s: Arc<Scheduler>,
    pod: Arc<Pod>,
    decision: Decision,
    _permit: OwnedSemaphorePermit,
) {
    let (ns, name) = key_of(&pod);
    match bind_pod(&s, &pod, &decision).await {
        Ok(()) => {
            s.bound(&pod);
            s.ctx.metrics.created(super::NAME);
            s.ctx
                .recorder
                .publish(
                    &Involved::of(pod.as_ref()),
                    "Normal",
                    "Scheduled",
                    &format!("Successfully assigned {ns}/{name} to {}", decision.node),
                )
                .await;
        }
        Err(e) => {
            let gone = matches!(&e, Error::Kube(k) if status_code(k) == Some(404));
            let taken = matches!(&e, Error::Kube(k) if status_code(k) == Some(409));
            tracing::info!(namespace = %ns, pod = %name, node = %decision.node, error = %e, "binding failed");
            s.binding_failed(&pod, &decision.reservation);
            if !gone && !taken {
                s.ctx
                    .recorder
                    .publish(
                        &Involved::of(pod.as_ref()),
                        "Warning",
                        "FailedScheduling",
                        &format!("Binding rejected: {e}"),
                    )
                    .await;
            }
        }
    }
}

async fn bind_pod(s: &Scheduler, pod: &Pod, d: &Decision) -> Result<(), Error> {
    let client = &s.ctx.client;
    for (claim, pv) in &d.reservation {
        reserve(s, claim, pv, &d.node).await?;
    }
    if !d.reservation.is_empty() {
        wait_claims_bound(s, d).await?;
    }
    let (ns, name) = key_of(pod);
    let binding = json!({
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": name, "namespace": ns, "uid": pod.metadata.uid},
        "target": {"apiVersion": "v1", "kind": "Node", "name": d.node},
    });
    Api::<Pod>::namespaced(client.clone(), &ns)
        .create_subresource::<_, serde_json::Value>(
            "binding",
            &name,
            &PostParams::default(),
            &binding,
        )
        .await?;
    Ok(())
}

/// Set the volume's claimRef to the claim (guarded by the volume's
/// resourceVersion) and annotate the claim with the node.
async fn reserve(
    s: &Scheduler,
    claim: &PersistentVolumeClaim,
    pv_name: &str,
    node: &str,
) -> Result<(), Error> {
    let client = &s.ctx.client;
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let mut pv = pvs.get(pv_name).await?;
    let spec = pv.spec.get_or_insert_with(Default::default);
    match &spec.claim_ref {
        Some(r)
            if r.namespace == claim.metadata.namespace
                && r.name == claim.metadata.name
                && r.uid
                    .as_deref()
                    .is_none_or(|u| Some(u) == claim.metadata.uid.as_deref()) => {}
        Some(_) => {
            return Err(Error::Invalid(format!(
                "persistentvolume {pv_name} was taken by another claim"
            )));
        }
        None => {
            spec.claim_ref = Some(ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("PersistentVolumeClaim".into()),
                namespace: claim.metadata.namespace.clone(),
                name: claim.metadata.name.clone(),
                uid: claim.metadata.uid.clone(),
                resource_version: claim.metadata.resource_version.clone(),
                ..Default::default()
            });
            pv.metadata
                .annotations
                .get_or_insert_with(Default::default)
                .insert(BOUND_BY_CONTROLLER.into(), "yes".into());
            // A replace carries the resourceVersion read: a concurrent
            // change makes it fail (409) instead of being overwritten.
            pvs.replace(pv_name, &PostParams::default(), &pv).await?;
            s.ctx.metrics.patched(super::NAME);
        }
    }
    let ns = claim.metadata.namespace.clone().unwrap_or_default();
    let claim_name = claim.metadata.name.clone().unwrap_or_default();
    let already = claim
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(SELECTED_NODE))
        .is_some_and(|n| n == node);
    if !already {
        Api::<PersistentVolumeClaim>::namespaced(client.clone(), &ns)
            .patch(
                &claim_name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {SELECTED_NODE: node}}})),
            )
            .await?;
        s.ctx.metrics.patched(super::NAME);
    }
    Ok(())
}

/// Wait until the PV binder has bound every reserved claim to its volume.
async fn wait_claims_bound(s: &Scheduler, d: &Decision) -> Result<(), Error> {
    let deadline = Instant::now() + CLAIMS_BOUND_TIMEOUT;
    loop {
        let mut all = true;
        for (claim, pv) in &d.reservation {
            let api: Api<PersistentVolumeClaim> = Api::namespaced(
                s.ctx.client.clone(),
                claim.metadata.namespace.as_deref().unwrap_or_default(),
            );
            let now = api
                .get(claim.metadata.name.as_deref().unwrap_or_default())
                .await?;
            match now.spec.as_ref().and_then(|s| s.volume_name.as_deref()) {
                Some(v) if v == pv => {}
                Some(v) if !v.is_empty() => {
                    return Err(Error::Invalid(format!(
                        "claim bound to volume {v}, not the reserved {pv}"
                    )));
                }
                _ => all = false,
            }
        }
        if all {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Error::Invalid(
                "timed out waiting for the condition: claims not bound".into(),
            ));
        }
        tokio::time::sleep(CLAIMS_POLL).await;
    }
}

/// Mark the pod unschedulable (once per distinct message) and record
/// the FailedScheduling event.
pub(super) async fn report_unschedulable(
    s: Arc<Scheduler>,
    pod: Arc<Pod>,
    message: String,
    _permit: OwnedSemaphorePermit,
) {
    let (ns, name) = key_of(&pod);
    tracing::debug!(namespace = %ns, pod = %name, %message, "unschedulable");
    // Placed since (assumed or bound) or gone: this report is stale, and
    // writing it could undo the binding's PodScheduled=True.
    {
        let key = (ns.clone(), name.clone());
        let st = s.state();
        if st.cache.has_pod(&key) || !st.pending.contains_key(&key) {
            return;
        }
    }
    let current = pod
        .status
        .as_ref()
        .and_then(|st| st.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled"));
    let same = current.is_some_and(|c| {
        c.status == "False"
            && c.reason.as_deref() == Some("Unschedulable")
            && c.message.as_deref() == Some(message.as_str())
    });
    if !same {
        // The transition time moves only when the status does.
        let since = current
            .filter(|c| c.status == "False")
            .and_then(|c| c.last_transition_time.clone())
            .map(|t| t.0)
            .unwrap_or_else(Timestamp::now);
        let patch = json!({"status": {"conditions": [{
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": message,
            "lastProbeTime": null,
            "lastTransitionTime": Time(since),
        }]}});
        let r = Api::<Pod>::namespaced(s.ctx.client.clone(), &ns)
            .patch_status(&name, &PatchParams::default(), &Patch::Strategic(patch))
            .await;
        match r {
            Ok(_) => s.ctx.metrics.patched(super::NAME),
            Err(e) => {
                tracing::debug!(namespace = %ns, pod = %name, error = %e, "could not set PodScheduled")
            }
        }
    }
    s.ctx
        .recorder
        .publish(
            &Involved::of(pod.as_ref()),
            "Warning",
            "FailedScheduling",
            &message,
        )
        .await;
}
