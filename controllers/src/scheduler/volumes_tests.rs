//! Tests of the pod's claim list and of the reservation a node yields.

use serde_json::json;

use super::*;
use crate::scheduler::testutil::{Volumes, claim, class, local_volume, node, pod};

#[test]
fn claims_of_a_pod_include_ephemeral_volumes() {
    let p = pod(
        "web-0",
        "",
        "",
        json!({"spec": {"volumes": [
            {"name": "data", "persistentVolumeClaim": {"claimName": "data-web-0"}},
            {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {"accessModes": ["ReadWriteOnce"]}}}},
            {"name": "cfg", "configMap": {"name": "c"}},
        ]}}),
    );
    assert_eq!(claim_names(&p), ["data-web-0", "web-0-scratch"]);
}

#[test]
fn a_volume_meant_for_the_claim_is_taken_first() {
    let mut prebound = (*local_volume("prebound", "5Gi", "local", "n1")).clone();
    prebound.spec.as_mut().unwrap().claim_ref = Some(k8s_openapi::api::core::v1::ObjectReference {
        namespace: Some("ns".into()),
        name: Some("data".into()),
        ..Default::default()
    });
    let vols = Volumes {
        claims: vec![claim("data", "1Gi", "local", None)],
        volumes: vec![
            local_volume("free", "1Gi", "local", "n1"),
            Arc::new(prebound),
        ],
        classes: vec![class("local", "WaitForFirstConsumer")],
        ..Default::default()
    };
    let p = pod(
        "p",
        "",
        "",
        json!({"spec": {"volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]}}),
    );
    let pv = prefilter(&p, &vols).unwrap_or_else(|e| panic!("{e}"));
    let n1 = node("n1", "1", "1Gi", &[], json!({}));
    let r = filter(&pv, &n1).unwrap();
    assert_eq!(r[0].1, "prebound");
    // The same volume reserved (not yet seen) for this claim counts as meant for it.
    let vols = Volumes {
        reserved: [("free".to_string(), ("ns".to_string(), "data".to_string()))].into(),
        volumes: vec![local_volume("free", "1Gi", "local", "n1")],
        ..vols
    };
    let pv = prefilter(&p, &vols).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(filter(&pv, &n1).unwrap()[0].1, "free");
    assert_eq!(
        filter(&pv, &node("n2", "1", "1Gi", &[], json!({}))).unwrap_err(),
        Reason::NoMatchingVolumes
    );
}
