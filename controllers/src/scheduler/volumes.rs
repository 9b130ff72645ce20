//! VolumeBinding, as kube-scheduler's plugin: a pod's claims must exist;
//! a bound claim's volume must admit the node (local PV node affinity); an
//! unbound claim of a WaitForFirstConsumer class needs, on the node, an
//! Available matching volume (the claims of one pod take distinct
//! volumes); an unbound claim of an Immediate class makes the pod wait for
//! the PV binder. What is found for a node is the reservation the binder
//! task writes before binding the pod.

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;

use super::filter::Reason;
use crate::persistentvolume::matching::{self, ClaimKey};

/// What the volume check reads of the cluster.
pub trait VolumeLister {
    fn claim(&self, namespace: &str, name: &str) -> Option<Arc<PersistentVolumeClaim>>;
    fn volume(&self, name: &str) -> Option<Arc<PersistentVolume>>;
    fn class(&self, name: &str) -> Option<Arc<StorageClass>>;
    /// Every volume.
    fn volumes(&self) -> Vec<Arc<PersistentVolume>>;
    /// The claim this scheduler reserved the volume for, when the watch
    /// has not shown the reservation yet.
    fn reserved_for(&self, volume: &str) -> Option<ClaimKey>;
}

/// The claims a pod uses: its PVC volumes and its generic ephemeral
/// volumes (claim `<pod>-<volume>`).
pub fn claim_names(pod: &Pod) -> Vec<String> {
    let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
    pod.spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|v| {
            if let Some(c) = &v.persistent_volume_claim {
                Some(c.claim_name.clone())
            } else {
                v.ephemeral
                    .as_ref()
                    .map(|_| format!("{pod_name}-{}", v.name))
            }
        })
        .collect()
}

/// An unbound claim waiting for its first consumer, with the volumes that
/// could take it on some node (smallest first).
pub struct DelayedClaim {
    pub claim: Arc<PersistentVolumeClaim>,
    candidates: Vec<Arc<PersistentVolume>>,
}

/// The pod's claims, once they all exist.
#[derive(Default)]
pub struct PodVolumes {
    /// Volumes of bound claims.
    pub bound: Vec<Arc<PersistentVolume>>,
    /// Unbound claims of WaitForFirstConsumer classes.
    pub delayed: Vec<DelayedClaim>,
}

impl PodVolumes {
    pub fn is_empty(&self) -> bool {
        self.bound.is_empty() && self.delayed.is_empty()
    }
}

/// The volumes a node would give the pod's delayed claims: (claim, volume name).
pub type Reservation = Vec<(Arc<PersistentVolumeClaim>, String)>;

/// PreFilter: the pod's claims, or why no node can do (kube-scheduler's
/// wording; the pod waits for the claims to change).
pub fn prefilter(pod: &Pod, lister: &dyn VolumeLister) -> Result<PodVolumes, String> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    let mut out = PodVolumes::default();
    let mut immediate = false;
    for name in claim_names(pod) {
        let Some(claim) = lister.claim(ns, &name) else {
            return Err(format!("persistentvolumeclaim \"{name}\" not found"));
        };
        if claim.metadata.deletion_timestamp.is_some() {
            return Err(format!("persistentvolumeclaim \"{name}\" is being deleted"));
        }
        let bound_to = claim
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.clone())
            .filter(|v| !v.is_empty());
        if let Some(volume) = bound_to {
            let Some(pv) = lister.volume(&volume) else {
                return Err(format!("pvc {name} bound to non-existent pv {volume}"));
            };
            out.bound.push(pv);
            continue;
        }
        let class_name = matching::claim_class(&claim);
        let class = if class_name.is_empty() {
            None
        } else {
            match lister.class(&class_name) {
                Some(c) => Some(c),
                None => {
                    return Err(format!(
                        "storageclass.storage.k8s.io \"{class_name}\" not found"
                    ));
                }
            }
        };
        if !matching::waits_for_consumer(class.as_deref()) {
            immediate = true;
            continue;
        }
        let all = lister.volumes();
        let mut candidates: Vec<Arc<PersistentVolume>> = all
            .into_iter()
            .filter(|pv| {
                matching::is_for_claim(pv, &claim)
                    || reserved_key(lister, pv).as_ref() == Some(&key_of(&claim))
                    || (reserved_key(lister, pv).is_none() && matching::fits(pv, &claim))
            })
            .collect();
        candidates.sort_by_key(|pv| (matching::capacity(pv), pv.metadata.name.clone()));
        out.delayed.push(DelayedClaim { claim, candidates });
    }
    if immediate {
        return Err("pod has unbound immediate PersistentVolumeClaims".into());
    }
    Ok(out)
}

fn key_of(claim: &PersistentVolumeClaim) -> ClaimKey {
    (
        claim.metadata.namespace.clone().unwrap_or_default(),
        claim.metadata.name.clone().unwrap_or_default(),
    )
}

fn reserved_key(lister: &dyn VolumeLister, pv: &PersistentVolume) -> Option<ClaimKey> {
    lister.reserved_for(pv.metadata.name.as_deref().unwrap_or_default())
}

/// Filter: whether the node suits the pod's volumes, and which volumes its
/// delayed claims would take there.
pub fn filter(vols: &PodVolumes, node: &Node) -> Result<Reservation, Reason> {
    if vols.bound.iter().any(|pv| !matching::admits_node(pv, node)) {
        return Err(Reason::VolumeNodeAffinity);
    }
    let mut taken: BTreeSet<String> = BTreeSet::new();
    let mut out = Vec::new();
    for d in &vols.delayed {
        // Candidates are smallest first; one meant for the claim wins.
        let pick = d
            .candidates
            .iter()
            .filter(|pv| matching::admits_node(pv, node))
            .filter(|pv| !taken.contains(pv.metadata.name.as_deref().unwrap_or_default()))
            .min_by_key(|pv| !matching::is_for_claim(pv, &d.claim));
        let Some(pv) = pick else {
            return Err(Reason::NoMatchingVolumes);
        };
        let name = pv.metadata.name.clone().unwrap_or_default();
        taken.insert(name.clone());
        out.push((d.claim.clone(), name));
    }
    Ok(out)
}

#[cfg(test)]
#[path = "volumes_tests.rs"]
mod tests;
