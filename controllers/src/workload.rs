//! What the workload controllers (job, daemonset) share about the pods
//! they own: ControllerRef semantics (the owner reference they stamp on
//! what they create, adoption of matching orphans and release of owned
//! objects that stopped matching, as Kubernetes' `ControllerRefManager`),
//! and pod state as Kubernetes reads it (terminal, ready, available).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Resource;
use kube::api::{Api, Patch, PatchParams};
use kube::core::{Selector, SelectorExt};
use serde_json::json;

use crate::Error;

/// The owner reference a controller puts on what it creates.
pub fn controller_ref<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    let meta = owner.meta();
    OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The controlling owner of an object, if it has one.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|r| r.controller == Some(true))
}

/// Whether `meta` is controlled by the object with `uid`.
pub fn controlled_by(meta: &ObjectMeta, uid: &str) -> bool {
    controller_of(meta).is_some_and(|r| r.uid == uid)
}

/// A workload's selector; an unparseable one is an invalid object (the API
/// validates selectors, so this is not expected).
pub fn selector(sel: Option<&LabelSelector>) -> Result<Selector, Error> {
    let sel = sel.cloned().unwrap_or_default();
    Selector::try_from(sel).map_err(|e| Error::Invalid(format!("selector: {e}")))
}

fn labels(meta: &ObjectMeta) -> BTreeMap<String, String> {
    meta.labels.clone().unwrap_or_default()
}

/// The pods `owner` controls after adoption and release, as Kubernetes'
/// ControllerRefManager claims them: its own pods that still match the
/// selector, plus orphans that match (adopted with a patch that fails if
/// the pod changed meanwhile). Its pods that no longer match are released.
/// Nothing is adopted while the owner is being deleted.
pub async fn claim_pods<K: Resource<DynamicType = ()>>(
    api: &Api<Pod>,
    owner: &K,
    selector: &Selector,
    pods: Vec<Pod>,
) -> Result<Vec<Pod>, Error> {
    let uid = owner.meta().uid.clone().unwrap_or_default();
    let owner_deleting = owner.meta().deletion_timestamp.is_some();
    let mut claimed = Vec::new();
    for pod in pods {
        let matches = selector.matches(&labels(&pod.metadata));
        let name = pod.metadata.name.clone().unwrap_or_default();
        match controller_of(&pod.metadata) {
            Some(r) if r.uid == uid => {
                if matches || owner_deleting {
                    claimed.push(pod);
                } else {
                    release(api, &pod, &uid).await?;
                    tracing::info!(pod = %name, "released a pod that no longer matches the selector");
                }
            }
            Some(_) => {}
            None if matches && !owner_deleting && pod.metadata.deletion_timestamp.is_none() => {
                match adopt(api, owner, &pod).await {
                    Ok(p) => claimed.push(p),
                    // Changed or gone since listed: the next sync sees it.
                    Err(Error::Kube(kube::Error::Api(s))) if s.code == 404 || s.code == 409 => {}
                    Err(e) => return Err(e),
                }
            }
            None => {}
        }
    }
    Ok(claimed)
}

async fn adopt<K: Resource<DynamicType = ()>>(
    api: &Api<Pod>,
    owner: &K,
    pod: &Pod,
) -> Result<Pod, Error> {
    let mut refs = pod.metadata.owner_references.clone().unwrap_or_default();
    refs.push(controller_ref(owner));
    let patch = json!({"metadata": {
        "ownerReferences": refs,
        "uid": pod.metadata.uid,
        "resourceVersion": pod.metadata.resource_version,
    }});
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    Ok(api
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?)
}

async fn release(api: &Api<Pod>, pod: &Pod, uid: &str) -> Result<(), Error> {
    let refs: Vec<&OwnerReference> = pod
        .metadata
        .owner_references
        .as_deref()
        .unwrap_or_default()
        .iter()
        .filter(|r| r.uid != uid)
        .collect();
    let patch = json!({"metadata": {
        "ownerReferences": refs,
        "uid": pod.metadata.uid,
        "resourceVersion": pod.metadata.resource_version,
    }});
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    match api
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The pod's phase, `Pending` when it has none yet.
pub fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

/// Succeeded or Failed: its containers will not run again.
pub fn is_terminal(pod: &Pod) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

/// The time the pod's `Ready` condition turned true, when it is true.
pub fn ready_since(pod: &Pod) -> Option<Option<Timestamp>> {
    let cond = pod
        .status
        .as_ref()?
        .conditions
        .as_deref()?
        .iter()
        .find(|c| c.type_ == "Ready")?;
    (cond.status == "True").then(|| cond.last_transition_time.as_ref().map(|t| t.0))
}

/// Ready, and not being deleted.
pub fn is_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none() && ready_since(pod).is_some()
}

/// Ready for at least `min_ready_seconds` at `now` (Kubernetes'
/// `IsPodAvailable`).
pub fn is_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    if pod.metadata.deletion_timestamp.is_some() {
        return false;
    }
    match ready_since(pod) {
        None => false,
        Some(_) if min_ready_seconds <= 0 => true,
        Some(None) => false,
        Some(Some(since)) => since
            .checked_add(SignedDuration::from_secs(min_ready_seconds.into()))
            .is_ok_and(|t| t <= now),
    }
}

/// When a pod that is ready now becomes available, if later than `now`.
pub fn available_at(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> Option<Timestamp> {
    let since = ready_since(pod)??;
    let at = since
        .checked_add(SignedDuration::from_secs(min_ready_seconds.into()))
        .ok()?;
    (at > now).then_some(at)
}

/// The pod's creation time, for ordering.
pub fn created(meta: &ObjectMeta) -> Option<Timestamp> {
    meta.creation_timestamp.as_ref().map(|t| t.0)
}

/// Whether an API error is a 404 (the object is gone).
pub fn not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// Whether an API error is a 409 (already exists or changed meanwhile).
pub fn conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

/// The most pods one sync creates, as Kubernetes' controllers cap a burst.
pub const MAX_BATCH: usize = 500;

/// Create `pods` (at most [`MAX_BATCH`]) in slow-start batches (1, 2, 4,
/// ...), recording `SuccessfulCreate` / `FailedCreate` events on
/// `involved`, and stop after the first batch with an error, as Kubernetes
/// does so that a broken template does not flood the API. Returns how many
/// were created.
pub async fn create_in_batches(
    ctx: &crate::context::Context,
    api: &Api<Pod>,
    mut pods: Vec<Pod>,
    involved: &crate::events::Involved,
) -> Result<usize, Error> {
    pods.truncate(MAX_BATCH);
    let params = kube::api::PostParams::default();
    let mut created = 0;
    let mut batch = 1;
    let mut rest = &pods[..];
    while !rest.is_empty() {
        let (now, later) = rest.split_at(batch.min(rest.len()));
        let results =
            futures::future::join_all(now.iter().map(|pod| api.create(&params, pod))).await;
        let mut failed = None;
        for r in results {
            match r {
                Ok(pod) => {
                    created += 1;
                    ctx.metrics.created(ctx.name);
                    let name = pod.metadata.name.unwrap_or_default();
                    ctx.recorder
                        .publish(
                            involved,
                            "Normal",
                            "SuccessfulCreate",
                            &format!("Created pod: {name}"),
                        )
                        .await;
                }
                Err(e) => {
                    ctx.recorder
                        .publish(
                            involved,
                            "Warning",
                            "FailedCreate",
                            &format!("Error creating: {e}"),
                        )
                        .await;
                    failed = Some(e);
                }
            }
        }
        if let Some(e) = failed {
            return Err(e.into());
        }
        rest = later;
        batch *= 2;
    }
    Ok(created)
}
