//! Table tests of the pod planner: each case starts from a pod as stored,
//! applies the plans the node would write at the given times, and checks
//! what the pod looks like (or that nothing more is planned).

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde_json::json;

use super::*;

const AT: Placement<'static> = Placement {
    pod_ip: "10.0.3.7",
    host_ip: "172.16.0.13",
};

fn t(s: i64) -> Timestamp {
    Timestamp::UNIX_EPOCH + SignedDuration::from_secs(1_700_000_000 + s)
}

fn pod(annotations: serde_json::Value, restart: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": "p", "namespace": "default", "uid": "u-1",
                     "annotations": annotations},
        "spec": {"nodeName": "n", "restartPolicy": restart,
                 "containers": [{"name": "a", "image": "nginx"}, {"name": "b", "image": "busybox"}]},
        "status": {"phase": "Pending"}
    }))
    .unwrap()
}

/// Plan at `now` and write what was planned into the pod, as the API would.
fn step(p: &mut Pod, now: Timestamp) -> Plan {
    let plan = plan(p, AT, now);
    if let Some(Action::Status(st)) = &plan.action {
        p.status = Some((**st).clone());
    }
    plan
}

fn cond(p: &Pod, type_: &str) -> (String, Timestamp) {
    let c = p
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == type_))
        .unwrap_or_else(|| panic!("no {type_} condition"));
    (c.status.clone(), c.last_transition_time.as_ref().unwrap().0)
}

fn phase(p: &Pod) -> &str {
    p.status.as_ref().unwrap().phase.as_deref().unwrap()
}

fn container(p: &Pod, i: usize) -> &k8s_openapi::api::core::v1::ContainerStatus {
    &p.status
        .as_ref()
        .unwrap()
        .container_statuses
        .as_ref()
        .unwrap()[i]
}

#[test]
fn bound_pod_starts_running_and_ready_then_nothing_more() {
    let mut p = pod(json!({}), "Always");
    let first = step(&mut p, t(0));
    assert!(matches!(first.action, Some(Action::Status(_))));
    assert_eq!(first.wake, None);
    let st = p.status.clone().unwrap();
    assert_eq!(phase(&p), "Running");
    assert_eq!(st.pod_ip.as_deref(), Some("10.0.3.7"));
    assert_eq!(st.host_ip.as_deref(), Some("172.16.0.13"));
    assert_eq!(st.start_time.unwrap().0, t(0));
    assert_eq!(st.qos_class.as_deref(), Some("BestEffort"));
    assert_eq!(cond(&p, "Ready"), ("True".into(), t(0)));
    assert_eq!(cond(&p, "ContainersReady").0, "True");
    for i in 0..2 {
        let c = container(&p, i);
        assert!(c.ready && c.started == Some(true));
        assert!(c.state.as_ref().unwrap().running.is_some());
    }
    // Idempotent: planned again (a restart of the node, a resync) it is left alone.
    assert_eq!(step(&mut p, t(60)), Plan::default());
}

#[test]
fn deleting_pod_is_confirmed_with_its_uid() {
    let mut p = pod(json!({}), "Always");
    step(&mut p, t(0));
    p.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(t(5)));
    assert_eq!(
        plan(&p, AT, t(5)).action,
        Some(Action::ConfirmDelete { uid: "u-1".into() })
    );
}

#[test]
fn terminal_pods_are_left_alone() {
    for phase in ["Succeeded", "Failed"] {
        let mut p = pod(json!({}), "Never");
        p.status.as_mut().unwrap().phase = Some(phase.into());
        assert_eq!(plan(&p, AT, t(0)), Plan::default(), "{phase}");
    }
}

#[test]
fn ready_after_delays_readiness_and_keeps_other_transitions() {
    let mut p = pod(json!({ READY_AFTER: "5" }), "Always");
    let first = step(&mut p, t(0));
    assert_eq!(first.wake, Some(t(5)));
    assert_eq!(phase(&p), "Running");
    assert_eq!(cond(&p, "Ready").0, "False");
    let msg = p
        .status
        .as_ref()
        .unwrap()
        .conditions
        .as_ref()
        .unwrap()
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap()
        .message
        .clone();
    assert_eq!(
        msg.as_deref(),
        Some("containers with unready status: [a b]")
    );
    assert!(!container(&p, 0).ready);
    // Too early: nothing to write, wake at 5 still.
    assert_eq!(
        step(&mut p, t(3)),
        Plan {
            action: None,
            wake: Some(t(5))
        }
    );
    let later = step(&mut p, t(5));
    assert!(later.action.is_some());
    assert_eq!(cond(&p, "Ready"), ("True".into(), t(5)));
    assert_eq!(
        cond(&p, "PodScheduled"),
        ("True".into(), t(0)),
        "unchanged condition keeps its time"
    );
    assert_eq!(
        p.status.as_ref().unwrap().start_time.as_ref().unwrap().0,
        t(0)
    );
    assert_eq!(step(&mut p, t(9)), Plan::default());
}

#[test]
fn exits_end_the_pod_as_its_restart_policy_says() {
    // (restart policy, exit code, phase after the exit, restarts)
    let cases = [
        ("Never", "0", "Succeeded", 0),
        ("Never", "3", "Failed", 0),
        ("OnFailure", "0", "Succeeded", 0),
        ("OnFailure", "1", "Running", 1),
        ("Always", "0", "Running", 1),
    ];
    for (policy, code, want_phase, want_restarts) in cases {
        let what = format!("{policy} exit {code}");
        let mut p = pod(json!({ EXIT_AFTER: "3", EXIT_CODE: code }), policy);
        assert_eq!(step(&mut p, t(0)).wake, Some(t(3)), "{what}");
        assert_eq!(
            step(&mut p, t(2)),
            Plan {
                action: None,
                wake: Some(t(3))
            },
            "{what}"
        );
        let exit = step(&mut p, t(3));
        assert!(exit.action.is_some(), "{what}");
        assert_eq!(phase(&p), want_phase, "{what}");
        let c = container(&p, 0);
        assert_eq!(c.restart_count, want_restarts, "{what}");
        let code: i32 = code.parse().unwrap();
        if want_phase == "Running" {
            // Restarted: running again since the exit, the exit kept as lastState.
            let last = c.last_state.as_ref().unwrap().terminated.as_ref().unwrap();
            assert_eq!(last.exit_code, code, "{what}");
            assert_eq!(
                c.state
                    .as_ref()
                    .unwrap()
                    .running
                    .as_ref()
                    .unwrap()
                    .started_at
                    .as_ref()
                    .unwrap()
                    .0,
                t(3)
            );
            assert_eq!(exit.wake, Some(t(6)), "{what}: exits again 3 s later");
        } else {
            let term = c.state.as_ref().unwrap().terminated.as_ref().unwrap();
            assert_eq!(term.exit_code, code, "{what}");
            assert_eq!(
                term.reason.as_deref(),
                Some(if code == 0 { "Completed" } else { "Error" })
            );
            assert_eq!(term.finished_at.as_ref().unwrap().0, t(3));
            assert!(!c.ready, "{what}");
            assert_eq!(cond(&p, "Ready").0, "False", "{what}");
            assert_eq!(exit.wake, None, "{what}");
            assert_eq!(step(&mut p, t(100)), Plan::default(), "{what}: terminal");
        }
    }
}

#[test]
fn active_deadline_fails_the_pod() {
    let mut p = pod(json!({}), "Never");
    p.spec.as_mut().unwrap().active_deadline_seconds = Some(10);
    assert_eq!(step(&mut p, t(0)).wake, Some(t(10)));
    assert!(step(&mut p, t(10)).action.is_some());
    let st = p.status.as_ref().unwrap();
    assert_eq!(st.phase.as_deref(), Some("Failed"));
    assert_eq!(st.reason.as_deref(), Some("DeadlineExceeded"));
}

#[test]
fn qos_class_follows_requests_and_limits() {
    let with = |resources: serde_json::Value| {
        let mut p = pod(json!({}), "Always");
        let mut spec = serde_json::to_value(p.spec.take().unwrap()).unwrap();
        spec["containers"] = json!([{"name": "a", "image": "x", "resources": resources}]);
        p.spec = Some(serde_json::from_value(spec).unwrap());
        step(&mut p, t(0));
        p.status.unwrap().qos_class.unwrap()
    };
    assert_eq!(with(json!({})), "BestEffort");
    assert_eq!(with(json!({"requests": {"cpu": "100m"}})), "Burstable");
    assert_eq!(
        with(json!({"limits": {"cpu": "1", "memory": "1Gi"}})),
        "Guaranteed"
    );
    assert_eq!(
        with(json!({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m"}})),
        "Burstable"
    );
}
