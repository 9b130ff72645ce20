//! Protobuf bodies built with the same messages decode to the JSON a client
//! would have sent; bad envelopes are 400s and unknown kinds 415s.

use std::collections::BTreeMap;

use prost::Message;
use serde_json::json;

use axum::response::IntoResponse;

use super::wire;
use super::*;
use crate::kinds::Kinds;

fn target(group: &str, plural: &str) -> RequestTarget {
    let kinds = Kinds::builtin();
    RequestTarget::resolve(&kinds, group, "v1", &[plural]).unwrap()
}

fn envelope(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    wire::Unknown {
        type_meta: Some(wire::TypeMeta {
            api_version: Some(api_version.into()),
            kind: Some(kind.into()),
        }),
        raw: Some(raw),
        content_encoding: None,
        content_type: None,
    }
    .encode(&mut out)
    .unwrap();
    out
}

fn meta(name: &str) -> Option<wire::ObjectMeta> {
    Some(wire::ObjectMeta {
        name: Some(name.into()),
        labels: BTreeMap::from([("app".into(), "web".into())]),
        ..Default::default()
    })
}

#[test]
fn a_secret_decodes_with_base64_data() {
    let raw = wire::Secret {
        metadata: meta("s1"),
        data: BTreeMap::from([("password".into(), b"hunter2".to_vec())]),
        r#type: Some("Opaque".into()),
        ..Default::default()
    }
    .encode_to_vec();
    let v = decode(&target("", "secrets"), &envelope("v1", "Secret", raw)).unwrap();
    assert_eq!(
        v,
        json!({"apiVersion": "v1", "kind": "Secret",
               "metadata": {"name": "s1", "labels": {"app": "web"}},
               "data": {"password": "aHVudGVyMg=="}, "type": "Opaque"})
    );
}

#[test]
fn configmaps_namespaces_and_service_accounts_decode() {
    let raw = wire::ConfigMap {
        metadata: meta("c"),
        data: BTreeMap::from([("k".into(), "v".into())]),
        ..Default::default()
    }
    .encode_to_vec();
    let v = decode(&target("", "configmaps"), &envelope("v1", "ConfigMap", raw)).unwrap();
    assert_eq!(v["data"], json!({"k": "v"}));
    assert!(v.get("binaryData").is_none());

    let raw = wire::Namespace {
        metadata: meta("ns"),
        spec: None,
    }
    .encode_to_vec();
    let v = decode(&target("", "namespaces"), &envelope("v1", "Namespace", raw)).unwrap();
    assert_eq!(v["metadata"]["name"], "ns");

    let raw = wire::ServiceAccount {
        metadata: meta("robot"),
        image_pull_secrets: vec![wire::LocalObjectReference {
            name: Some("reg".into()),
        }],
        automount_service_account_token: Some(false),
        ..Default::default()
    }
    .encode_to_vec();
    let v = decode(
        &target("", "serviceaccounts"),
        &envelope("v1", "ServiceAccount", raw),
    )
    .unwrap();
    assert_eq!(v["imagePullSecrets"], json!([{"name": "reg"}]));
    assert_eq!(v["automountServiceAccountToken"], false);
}

#[test]
fn roles_and_bindings_decode() {
    let raw = wire::Role {
        metadata: meta("reader"),
        rules: vec![wire::PolicyRule {
            verbs: vec!["get".into(), "list".into()],
            api_groups: vec!["".into()],
            resources: vec!["pods".into()],
            ..Default::default()
        }],
        aggregation_rule: None,
    }
    .encode_to_vec();
    let rbac = "rbac.authorization.k8s.io";
    let v = decode(
        &target(rbac, "clusterroles"),
        &envelope("rbac.authorization.k8s.io/v1", "ClusterRole", raw),
    )
    .unwrap();
    assert_eq!(
        v["rules"],
        json!([{"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]}])
    );
    let raw = wire::RoleBinding {
        metadata: meta("b"),
        subjects: vec![wire::Subject {
            kind: Some("User".into()),
            api_group: Some(rbac.into()),
            name: Some("alice".into()),
            namespace: None,
        }],
        role_ref: Some(wire::RoleRef {
            api_group: Some(rbac.into()),
            kind: Some("ClusterRole".into()),
            name: Some("reader".into()),
        }),
    }
    .encode_to_vec();
    let v = decode(
        &target(rbac, "clusterrolebindings"),
        &envelope("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", raw),
    )
    .unwrap();
    assert_eq!(
        v["subjects"],
        json!([{"kind": "User", "apiGroup": rbac, "name": "alice"}])
    );
    assert_eq!(v["roleRef"]["name"], "reader");
}

#[test]
fn bad_bodies_are_refused_with_the_reason() {
    let t = target("", "secrets");
    let status = |e: ApiError| e.into_response().status().as_u16();
    assert_eq!(
        status(decode(&t, b"{\"kind\":\"Secret\"}").unwrap_err()),
        400
    );
    assert_eq!(status(decode(&t, b"k8s\0\xff\xff\xff").unwrap_err()), 400);
    // A body of another kind than the URL names.
    let raw = wire::ConfigMap::default().encode_to_vec();
    assert_eq!(
        status(decode(&t, &envelope("v1", "ConfigMap", raw)).unwrap_err()),
        400
    );
    // A Secret whose raw bytes are not a Secret.
    assert_eq!(
        status(decode(&t, &envelope("v1", "Secret", vec![0x0a, 0xff, 0xff])).unwrap_err()),
        400
    );
    // A kind without a decoder is a 415 that says to send JSON.
    let pods = target("", "pods");
    let e = decode(&pods, &envelope("v1", "Pod", vec![])).unwrap_err();
    assert_eq!(status(e), 415);
}
