//! The PV binder's decisions, pure: given a claim (or a volume) and what
//! the watches show, the one next write that moves it toward its bound
//! state, as Kubernetes' PV controller takes them in turn (volume claimRef,
//! volume phase, claim volumeName with its annotations, claim phase), so
//! that a binding interrupted at any step is finished by the next pass
//! whichever member runs it. Released volumes are kept (Retain) or
//! deleted (Delete).

use std::sync::Arc;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;

use super::matching::{self, is_for_claim};

/// The claim annotation saying the binding is complete.
pub const BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
/// The annotation saying a controller (not the user) chose the binding.
pub const BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";

/// The next write for a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimStep {
    /// Nothing to do now.
    Nothing,
    /// Point the volume's claimRef at the claim (with its uid).
    ClaimVolume { volume: String, by_controller: bool },
    /// Set the volume's phase to Bound.
    VolumeBound { volume: String },
    /// Set the claim's volumeName and binding annotations.
    BindClaim { volume: String, by_controller: bool },
    /// Set the claim's phase (Bound, with the volume's capacity and access
    /// modes, or Lost).
    ClaimPhase {
        phase: &'static str,
        volume: Option<String>,
    },
    /// Unbound, waiting for a pod to be scheduled (WaitForFirstConsumer).
    WaitForConsumer,
    /// Unbound, and no volume fits.
    NoVolume,
}

/// The next write for a volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeStep {
    Nothing,
    /// Set the volume's phase (Available, Released).
    Phase(&'static str),
    /// Drop a claimRef that a controller set for a claim bound elsewhere.
    Unclaim,
    /// Reclaim policy Delete: the released volume goes.
    Delete,
}

fn volume_phase(pv: &PersistentVolume) -> Option<&str> {
    pv.status.as_ref().and_then(|s| s.phase.as_deref())
}

fn claim_phase(claim: &PersistentVolumeClaim) -> Option<&str> {
    claim.status.as_ref().and_then(|s| s.phase.as_deref())
}

fn annotation<'a>(
    meta: &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    key: &str,
) -> Option<&'a str> {
    meta.annotations.as_ref()?.get(key).map(String::as_str)
}

/// The claim's next step given every volume and the claim's class.
pub fn claim(
    claim: &PersistentVolumeClaim,
    volumes: &[Arc<PersistentVolume>],
    class: Option<&StorageClass>,
) -> ClaimStep {
    if claim.metadata.deletion_timestamp.is_some() {
        return ClaimStep::Nothing;
    }
    let name = |pv: &PersistentVolume| pv.metadata.name.clone().unwrap_or_default();
    let bound_to = claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .filter(|v| !v.is_empty());
    let Some(volume) = bound_to else {
        // Unbound: a volume meant for it (prebound, or reserved by the
        // scheduler) wins; else Immediate claims take the best fit.
        if let Some(pv) = volumes.iter().find(|pv| is_for_claim(pv, claim)) {
            let has_uid = pv
                .spec
                .as_ref()
                .and_then(|s| s.claim_ref.as_ref())
                .and_then(|r| r.uid.as_deref())
                .is_some_and(|u| !u.is_empty());
            if !has_uid {
                return ClaimStep::ClaimVolume {
                    volume: name(pv),
                    by_controller: annotation(&pv.metadata, BOUND_BY_CONTROLLER) == Some("yes"),
                };
            }
            if volume_phase(pv) != Some("Bound") {
                return ClaimStep::VolumeBound { volume: name(pv) };
            }
            return ClaimStep::BindClaim {
                volume: name(pv),
                by_controller: true,
            };
        }
        if matching::waits_for_consumer(class) {
            return ClaimStep::WaitForConsumer;
        }
        return match matching::find(claim, volumes.iter(), None, &|_| false) {
            Some(pv) => ClaimStep::ClaimVolume {
                volume: name(&pv),
                by_controller: true,
            },
            None => ClaimStep::NoVolume,
        };
    };
    let was_bound = claim_phase(claim) == Some("Bound");
    let Some(pv) = volumes
        .iter()
        .find(|pv| pv.metadata.name.as_deref() == Some(volume.as_str()))
    else {
        return if was_bound {
            ClaimStep::ClaimPhase {
                phase: "Lost",
                volume: None,
            }
        } else {
            ClaimStep::Nothing
        };
    };
    let claim_ref = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
    match claim_ref {
        // The user bound the claim to a free volume: take it.
        None => ClaimStep::ClaimVolume {
            volume,
            by_controller: true,
        },
        Some(r) if is_for_claim(pv, claim) => {
            if r.uid.as_deref().is_none_or(str::is_empty) {
                ClaimStep::ClaimVolume {
                    volume,
                    by_controller: annotation(&pv.metadata, BOUND_BY_CONTROLLER) == Some("yes"),
                }
            } else if volume_phase(pv) != Some("Bound") {
                ClaimStep::VolumeBound { volume }
            } else if annotation(&claim.metadata, BIND_COMPLETED) != Some("yes") {
                ClaimStep::BindClaim {
                    volume,
                    by_controller: annotation(&claim.metadata, BOUND_BY_CONTROLLER) == Some("yes"),
                }
            } else if !was_bound {
                ClaimStep::ClaimPhase {
                    phase: "Bound",
                    volume: Some(volume),
                }
            } else {
                ClaimStep::Nothing
            }
        }
        // The volume belongs to another claim.
        Some(_) if was_bound => ClaimStep::ClaimPhase {
            phase: "Lost",
            volume: None,
        },
        Some(_) => ClaimStep::Nothing,
    }
}

/// The volume's next step given the claim its claimRef names (if it exists).
pub fn volume(pv: &PersistentVolume, claim: Option<&PersistentVolumeClaim>) -> VolumeStep {
    if pv.metadata.deletion_timestamp.is_some() {
        return VolumeStep::Nothing;
    }
    let phase = volume_phase(pv);
    let set = |p: &'static str| {
        if phase == Some(p) {
            VolumeStep::Nothing
        } else {
            VolumeStep::Phase(p)
        }
    };
    let Some(r) = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
        return set("Available");
    };
    let uid = r.uid.as_deref().filter(|u| !u.is_empty());
    let claim = claim.filter(|c| uid.is_none_or(|u| c.metadata.uid.as_deref() == Some(u)));
    match claim {
        // Meant for a claim not yet created: still Available to it.
        None if uid.is_none() => set("Available"),
        // Its claim is gone: released, then reclaimed.
        None => {
            if phase != Some("Released") && phase != Some("Failed") {
                return VolumeStep::Phase("Released");
            }
            let policy = pv
                .spec
                .as_ref()
                .and_then(|s| s.persistent_volume_reclaim_policy.as_deref());
            if phase == Some("Released") && policy == Some("Delete") {
                VolumeStep::Delete
            } else {
                VolumeStep::Nothing
            }
        }
        Some(c) => {
            let bound_to = c.spec.as_ref().and_then(|s| s.volume_name.as_deref());
            match bound_to {
                Some(v) if Some(v) == pv.metadata.name.as_deref() => set("Bound"),
                // Bound to another volume: a controller's reservation is dropped.
                Some(v) if !v.is_empty() => {
                    if annotation(&pv.metadata, BOUND_BY_CONTROLLER) == Some("yes") {
                        VolumeStep::Unclaim
                    } else {
                        VolumeStep::Nothing
                    }
                }
                // The claim's side of the binding is still to come.
                _ => VolumeStep::Nothing,
            }
        }
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
