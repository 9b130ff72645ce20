//! Observing a StatefulSet's children through the API: its pods by
//! ordinal, with ControllerRef semantics (orphans whose name is
//! `<set>-<ordinal>` and that match the selector are adopted, once a fresh
//! read confirms the set is still there; pods it controls that stopped
//! matching are released), and the namespace's claims when the set has
//! claim templates. Read fresh on every reconcile, never from a cache.

use std::collections::HashMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;

use super::pods;
use crate::Error;
use crate::context::Context;

/// The set's observed children.
pub struct Observed {
    pub pods: Vec<(i32, Pod)>,
    pub claims: HashMap<String, PersistentVolumeClaim>,
}

/// The set's pods by ordinal, after adopting orphans and releasing pods
/// that stopped matching; and, when the set has claim templates, the
/// namespace's claims by name.
pub async fn observe(
    set: &StatefulSet,
    ctx: &Context,
    pods_api: &Api<Pod>,
    deleting: bool,
) -> Result<Observed, Error> {
    let name = set.metadata.name.clone().unwrap_or_default();
    let uid = set.metadata.uid.clone().unwrap_or_default();
    let spec = set.spec.clone().unwrap_or_default();
    let mut pods = Vec::new();
    let mut orphans = Vec::new();
    for pod in pods_api.list(&ListParams::default()).await?.items {
        let pod_name = pod.metadata.name.clone().unwrap_or_default();
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        let ordinal = pods::ordinal_of(&name, &pod_name);
        let member = ordinal.is_some() && pods::selector_matches(&spec.selector, &labels);
        match pods::controller_of(pod.metadata.owner_references.as_ref()) {
            Some(r) if r.uid == uid => match ordinal.filter(|_| member) {
                Some(o) => pods.push((o, pod)),
                None if !deleting => release(ctx, pods_api, &pod, &uid).await?,
                None => {}
            },
            Some(_) => {}
            None if member && !deleting && pod.metadata.deletion_timestamp.is_none() => {
                orphans.push(pod)
            }
            None => {}
        }
    }
    if !orphans.is_empty() && still_ours(set, ctx).await? {
        for pod in orphans {
            if let Some(adopted) = adopt(ctx, pods_api, pod, set).await? {
                let o = pods::ordinal_of(&name, adopted.metadata.name.as_deref().unwrap_or(""));
                if let Some(o) = o {
                    pods.push((o, adopted));
                }
            }
        }
    }
    pods.sort_by_key(|(o, _)| *o);
    let mut claims = HashMap::new();
    if spec
        .volume_claim_templates
        .as_ref()
        .is_some_and(|t| !t.is_empty())
    {
        let ns = set.metadata.namespace.clone().unwrap_or_default();
        let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
        for c in api.list(&ListParams::default()).await?.items {
            if let Some(n) = c.metadata.name.clone() {
                claims.insert(n, c);
            }
        }
    }
    Ok(Observed { pods, claims })
}

/// Whether the set read fresh from the API is still the one cached (not
/// deleted, not replaced by a namesake) before adopting anything for it.
pub async fn still_ours(set: &StatefulSet, ctx: &Context) -> Result<bool, Error> {
    let ns = set.metadata.namespace.clone().unwrap_or_default();
    let api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &ns);
    let fresh = api
        .get_opt(set.metadata.name.as_deref().unwrap_or_default())
        .await?;
    Ok(fresh.is_some_and(|f| {
        f.metadata.uid == set.metadata.uid && f.metadata.deletion_timestamp.is_none()
    }))
}

/// Make the set the controller of an orphan pod (at the resourceVersion
/// read, so a pod changed meanwhile is looked at again).
async fn adopt(
    ctx: &Context,
    api: &Api<Pod>,
    pod: Pod,
    set: &StatefulSet,
) -> Result<Option<Pod>, Error> {
    let mut refs = pod.metadata.owner_references.clone().unwrap_or_default();
    refs.push(pods::controller_ref(set));
    let patch = json!({"metadata": {
        "resourceVersion": pod.metadata.resource_version,
        "ownerReferences": refs,
    }});
    let name = pod.metadata.name.clone().unwrap_or_default();
    match api
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(p) => {
            ctx.metrics.patched(ctx.name);
            tracing::info!(pod = %name, "statefulset adopted an orphan pod");
            Ok(Some(p))
        }
        Err(e) if crate::status_code(&e) == Some(404) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Drop the set's controller reference from a pod it no longer selects.
async fn release(ctx: &Context, api: &Api<Pod>, pod: &Pod, uid: &str) -> Result<(), Error> {
    let refs: Vec<_> = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .filter(|r| r.uid != uid)
        .cloned()
        .collect();
    let patch = json!({"metadata": {
        "resourceVersion": pod.metadata.resource_version,
        "ownerReferences": refs,
    }});
    let name = pod.metadata.name.clone().unwrap_or_default();
    match api
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => {
            ctx.metrics.patched(ctx.name);
            Ok(())
        }
        Err(e) if matches!(crate::status_code(&e), Some(404) | Some(409)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
