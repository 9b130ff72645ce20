//! Table tests of the single filters that the whole-decision tests in
//! `algorithm_tests.rs` do not pin down on their own.

use k8s_openapi::api::core::v1::{Taint, Toleration};
use serde_json::json;

use super::*;
use crate::scheduler::testutil::{node, pod};

fn toleration(key: &str, op: &str, value: &str, effect: &str) -> Toleration {
    Toleration {
        key: (!key.is_empty()).then(|| key.to_string()),
        operator: (!op.is_empty()).then(|| op.to_string()),
        value: (!value.is_empty()).then(|| value.to_string()),
        effect: (!effect.is_empty()).then(|| effect.to_string()),
        toleration_seconds: None,
    }
}

#[test]
fn tolerations_match_taints_as_kubernetes_does() {
    let t = Taint {
        key: "k".into(),
        value: Some("v".into()),
        effect: "NoSchedule".into(),
        time_added: None,
    };
    let cases = [
        (toleration("k", "Equal", "v", "NoSchedule"), true),
        (toleration("k", "", "v", ""), true),
        (toleration("k", "Equal", "w", "NoSchedule"), false),
        (toleration("k", "Exists", "", "NoSchedule"), true),
        (toleration("k", "Exists", "", "NoExecute"), false),
        (toleration("", "Exists", "", ""), true),
        (toleration("", "Exists", "", "NoExecute"), false),
        (toleration("other", "Exists", "", ""), false),
        (toleration("k", "Bogus", "v", ""), false),
    ];
    for (tol, want) in cases {
        assert_eq!(tolerates(&tol, &t), want, "{tol:?}");
    }
}

#[test]
fn a_not_ready_node_already_tainted_is_not_tainted_twice() {
    let n = node(
        "n1",
        "1",
        "1Gi",
        &[],
        json!({
            "spec": {"taints": [{"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}]},
            "status": {"conditions": [{"type": "Ready", "status": "False"}]},
        }),
    );
    // A pod tolerating the NoExecute taint (as every pod does for 300 s)
    // is still kept off by the NoSchedule one the controller adds.
    let tolerant = pod(
        "p",
        "",
        "",
        json!({"spec": {"tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}]}}),
    );
    assert_eq!(effective_taints(&n).len(), 1);
    assert_eq!(taints(&tolerant, &n), None);
    let mut missing = n.clone();
    missing.spec = None;
    assert_eq!(
        taints(&tolerant, &missing),
        Some(Reason::UntoleratedTaint {
            key: "node.kubernetes.io/not-ready".into(),
            value: String::new()
        })
    );
}
