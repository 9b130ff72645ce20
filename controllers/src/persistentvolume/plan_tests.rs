//! The binder's steps, table-tested, and whole bindings walked step by
//! step against an in-memory cluster until nothing is left to do.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{ObjectReference, PersistentVolume, PersistentVolumeClaim};
use serde_json::json;

use super::*;
use crate::scheduler::testutil::{claim as pvc, class, local_volume};

fn with_ref(pv: &PersistentVolume, claim: &str, uid: Option<&str>) -> PersistentVolume {
    let mut pv = pv.clone();
    pv.spec.as_mut().unwrap().claim_ref = Some(ObjectReference {
        namespace: Some("ns".into()),
        name: Some(claim.into()),
        uid: uid.map(str::to_string),
        ..Default::default()
    });
    pv
}

fn phase(pv: &PersistentVolume, p: &str) -> PersistentVolume {
    let mut pv = pv.clone();
    pv.status.as_mut().unwrap().phase = Some(p.into());
    pv
}

/// Apply one step to the in-memory claim and volumes, as the controller's
/// writes would.
fn apply(step: &ClaimStep, c: &mut PersistentVolumeClaim, vols: &mut [Arc<PersistentVolume>]) {
    let find = |vols: &mut [Arc<PersistentVolume>], name: &str| {
        vols.iter()
            .position(|v| v.metadata.name.as_deref() == Some(name))
            .unwrap()
    };
    match step {
        ClaimStep::ClaimVolume { volume, .. } => {
            let i = find(vols, volume);
            vols[i] = Arc::new(with_ref(
                &vols[i],
                c.metadata.name.as_deref().unwrap(),
                c.metadata.uid.as_deref(),
            ));
        }
        ClaimStep::VolumeBound { volume } => {
            let i = find(vols, volume);
            vols[i] = Arc::new(phase(&vols[i], "Bound"));
        }
        ClaimStep::BindClaim { volume, .. } => {
            c.spec.as_mut().unwrap().volume_name = Some(volume.clone());
            c.metadata
                .annotations
                .get_or_insert_with(Default::default)
                .insert(BIND_COMPLETED.into(), "yes".into());
        }
        ClaimStep::ClaimPhase { phase, .. } => {
            c.status.get_or_insert_with(Default::default).phase = Some(phase.to_string());
        }
        _ => {}
    }
}

/// Run the claim's steps until nothing is left; the steps taken.
fn walk(
    c: &mut PersistentVolumeClaim,
    vols: &mut [Arc<PersistentVolume>],
    class: Option<&k8s_openapi::api::storage::v1::StorageClass>,
) -> Vec<ClaimStep> {
    let mut steps = Vec::new();
    for _ in 0..10 {
        let s = claim(c, vols, class);
        if matches!(
            s,
            ClaimStep::Nothing | ClaimStep::WaitForConsumer | ClaimStep::NoVolume
        ) {
            steps.push(s);
            return steps;
        }
        apply(&s, c, vols);
        steps.push(s);
    }
    panic!("no fixed point: {steps:?}");
}

#[test]
fn an_immediate_claim_binds_the_smallest_fit_in_kubernetes_order() {
    let mut c = pvc("data", "2Gi", "", None);
    let mut vols = vec![
        Arc::new(phase(&local_volume("big", "10Gi", "", "n1"), "Available")),
        Arc::new(phase(&local_volume("fit", "3Gi", "", "n2"), "Available")),
        Arc::new(phase(&local_volume("small", "1Gi", "", "n1"), "Available")),
    ];
    let steps = walk(&mut c, &mut vols, None);
    assert_eq!(
        steps,
        [
            ClaimStep::ClaimVolume {
                volume: "fit".into(),
                by_controller: true
            },
            ClaimStep::VolumeBound {
                volume: "fit".into()
            },
            ClaimStep::BindClaim {
                volume: "fit".into(),
                by_controller: true
            },
            ClaimStep::ClaimPhase {
                phase: "Bound",
                volume: Some("fit".into())
            },
            ClaimStep::Nothing,
        ]
    );
}

#[test]
fn a_wait_for_first_consumer_claim_binds_what_the_scheduler_reserved() {
    let wffc = class("local", "WaitForFirstConsumer");
    let mut c = pvc("data", "1Gi", "local", None);
    let mut vols = vec![local_volume("on-n1", "1Gi", "local", "n1")];
    assert_eq!(claim(&c, &vols, Some(&wffc)), ClaimStep::WaitForConsumer);
    // The scheduler's reservation: claimRef with the claim's uid.
    vols[0] = Arc::new(with_ref(&vols[0], "data", Some("uid-data")));
    let steps = walk(&mut c, &mut vols, Some(&wffc));
    assert_eq!(
        steps[0],
        ClaimStep::VolumeBound {
            volume: "on-n1".into()
        }
    );
    assert_eq!(
        steps[1],
        ClaimStep::BindClaim {
            volume: "on-n1".into(),
            by_controller: true
        }
    );
    assert_eq!(
        c.spec.as_ref().unwrap().volume_name.as_deref(),
        Some("on-n1")
    );
    assert_eq!(c.status.as_ref().unwrap().phase.as_deref(), Some("Bound"));
}

#[test]
fn claims_without_a_volume_or_bound_to_a_missing_one() {
    let c = pvc("data", "5Gi", "", None);
    let vols = vec![local_volume("small", "1Gi", "", "n1")];
    assert_eq!(claim(&c, &vols, None), ClaimStep::NoVolume);
    let mut bound = pvc("data", "1Gi", "", Some("gone"));
    assert_eq!(claim(&bound, &vols, None), ClaimStep::Nothing);
    bound.status = Some(serde_json::from_value(json!({"phase": "Bound"})).unwrap());
    assert_eq!(
        claim(&bound, &vols, None),
        ClaimStep::ClaimPhase {
            phase: "Lost",
            volume: None
        }
    );
    // A claim the user bound to a free volume takes it.
    let mut user = pvc("data", "1Gi", "", Some("small"));
    let mut vols = vols;
    let steps = walk(&mut user, &mut vols, None);
    assert_eq!(
        steps[0],
        ClaimStep::ClaimVolume {
            volume: "small".into(),
            by_controller: true
        }
    );
    assert_eq!(
        user.status.as_ref().unwrap().phase.as_deref(),
        Some("Bound")
    );
}

#[test]
fn volume_phases_and_reclaim() {
    let pv = local_volume("v", "1Gi", "", "n1");
    let c = pvc("data", "1Gi", "", Some("v"));
    let mut other_uid = c.clone();
    other_uid.metadata.uid = Some("uid-new".into());
    let mut retain = with_ref(&pv, "data", Some("uid-data"));
    retain
        .spec
        .as_mut()
        .unwrap()
        .persistent_volume_reclaim_policy = Some("Retain".into());
    let mut delete = retain.clone();
    delete
        .spec
        .as_mut()
        .unwrap()
        .persistent_volume_reclaim_policy = Some("Delete".into());
    let elsewhere = pvc("data", "1Gi", "", Some("other"));
    let mut reserved = with_ref(&pv, "data", Some("uid-data"));
    reserved
        .metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(BOUND_BY_CONTROLLER.into(), "yes".into());
    let cases: Vec<(
        &str,
        PersistentVolume,
        Option<&PersistentVolumeClaim>,
        VolumeStep,
    )> = vec![
        (
            "free and Pending",
            phase(&pv, "Pending"),
            None,
            VolumeStep::Phase("Available"),
        ),
        (
            "free and Available",
            (*pv).clone(),
            None,
            VolumeStep::Nothing,
        ),
        (
            "prebound to a claim to come",
            with_ref(&pv, "data", None),
            None,
            VolumeStep::Nothing,
        ),
        (
            "claim bound to it",
            with_ref(&pv, "data", Some("uid-data")),
            Some(&c),
            VolumeStep::Phase("Bound"),
        ),
        (
            "claim gone",
            phase(&retain, "Bound"),
            None,
            VolumeStep::Phase("Released"),
        ),
        (
            "claim replaced by a namesake",
            phase(&retain, "Bound"),
            Some(&other_uid),
            VolumeStep::Phase("Released"),
        ),
        (
            "released, Retain",
            phase(&retain, "Released"),
            None,
            VolumeStep::Nothing,
        ),
        (
            "released, Delete",
            phase(&delete, "Released"),
            None,
            VolumeStep::Delete,
        ),
        (
            "reserved for a claim bound elsewhere",
            reserved,
            Some(&elsewhere),
            VolumeStep::Unclaim,
        ),
        (
            "user-prebound to a claim bound elsewhere",
            with_ref(&pv, "data", Some("uid-data")),
            Some(&elsewhere),
            VolumeStep::Nothing,
        ),
    ];
    for (name, pv, claim, want) in cases {
        assert_eq!(volume(&pv, claim), want, "case: {name}");
    }
}
