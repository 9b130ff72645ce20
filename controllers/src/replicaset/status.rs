//! A replica set's status from the pods it controls, as Kubernetes'
//! `calculateStatus` writes it: replicas, fullyLabeledReplicas,
//! readyReplicas, availableReplicas (ready for minReadySeconds),
//! observedGeneration, and the ReplicaFailure condition while creating or
//! deleting pods fails.

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::pods;

/// Why managing the replicas failed: `FailedCreate` or `FailedDelete`, and the error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub reason: &'static str,
    pub message: String,
}

/// The status `rs` should have with `owned` (its active pods) at `now`,
/// after managing its replicas failed with `failure` (or did not).
pub fn calculate(
    rs: &ReplicaSet,
    owned: &[&Pod],
    failure: Option<&Failure>,
    now: Timestamp,
) -> ReplicaSetStatus {
    let spec = rs.spec.as_ref();
    let min_ready = spec.and_then(|s| s.min_ready_seconds).unwrap_or(0);
    let template = spec.and_then(|s| s.template.clone()).unwrap_or_default();
    let count = |f: &dyn Fn(&Pod) -> bool| owned.iter().filter(|p| f(p)).count() as i32;
    let old = rs.status.clone().unwrap_or_default();
    let mut conditions: Vec<ReplicaSetCondition> = old
        .conditions
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c.type_ != "ReplicaFailure")
        .collect();
    let had = old
        .conditions
        .as_ref()
        .and_then(|c| c.iter().find(|c| c.type_ == "ReplicaFailure"));
    match (failure, had) {
        // A failure already reported keeps its condition (and its time).
        (Some(_), Some(c)) => conditions.push(c.clone()),
        (Some(f), None) => conditions.push(ReplicaSetCondition {
            type_: "ReplicaFailure".into(),
            status: "True".into(),
            reason: Some(f.reason.into()),
            message: Some(f.message.clone()),
            last_transition_time: Some(Time(now)),
        }),
        (None, _) => {}
    }
    ReplicaSetStatus {
        replicas: owned.len() as i32,
        fully_labeled_replicas: Some(count(&|p| pods::fully_labeled(p, &template))),
        ready_replicas: Some(count(&pods::is_ready)),
        available_replicas: Some(count(&|p| pods::is_available(p, min_ready, now))),
        observed_generation: rs.metadata.generation,
        conditions: (!conditions.is_empty()).then_some(conditions),
        terminating_replicas: old.terminating_replicas,
    }
}

/// Whether two statuses say the same (Kubernetes skips equal writes).
pub fn same(a: &ReplicaSetStatus, b: &ReplicaSetStatus) -> bool {
    let n = |v: Option<i32>| v.unwrap_or(0);
    a.replicas == b.replicas
        && n(a.fully_labeled_replicas) == n(b.fully_labeled_replicas)
        && n(a.ready_replicas) == n(b.ready_replicas)
        && n(a.available_replicas) == n(b.available_replicas)
        && a.observed_generation == b.observed_generation
        && a.conditions.clone().unwrap_or_default() == b.conditions.clone().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::ReplicaSetSpec;
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus, PodTemplateSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn rs(min_ready: i32) -> ReplicaSet {
        ReplicaSet {
            metadata: ObjectMeta {
                name: Some("web-1".into()),
                generation: Some(4),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(3),
                min_ready_seconds: Some(min_ready),
                template: Some(PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(
                            [("app".into(), "web".into()), ("v".into(), "1".into())].into(),
                        ),
                        ..Default::default()
                    }),
                    spec: None,
                }),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn pod(labels: &[(&str, &str)], ready_at: Option<i64>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            },
            spec: None,
            status: Some(PodStatus {
                phase: Some("Running".into()),
                conditions: ready_at.map(|t| {
                    vec![PodCondition {
                        type_: "Ready".into(),
                        status: "True".into(),
                        last_transition_time: Some(Time(Timestamp::from_second(t).unwrap())),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn counts_replicas_as_kubernetes_does() {
        let full = [("app", "web"), ("v", "1")];
        let pods = [
            pod(&full, Some(100)),
            pod(&full, Some(195)),
            pod(&[("app", "web")], None),
        ];
        let refs: Vec<&Pod> = pods.iter().collect();
        let s = calculate(&rs(10), &refs, None, Timestamp::from_second(200).unwrap());
        assert_eq!(s.replicas, 3);
        assert_eq!(s.fully_labeled_replicas, Some(2));
        assert_eq!(s.ready_replicas, Some(2));
        assert_eq!(
            s.available_replicas,
            Some(1),
            "one ready for < minReadySeconds"
        );
        assert_eq!(s.observed_generation, Some(4));
        assert!(s.conditions.is_none());
    }

    #[test]
    fn replica_failure_is_set_kept_and_cleared() {
        let now = Timestamp::from_second(200).unwrap();
        let f = Failure {
            reason: "FailedCreate",
            message: "pods \"web-1-x\" is forbidden: exceeded quota".into(),
        };
        let mut set = rs(0);
        let s = calculate(&set, &[], Some(&f), now);
        let c = &s.conditions.as_ref().unwrap()[0];
        assert_eq!(
            (c.type_.as_str(), c.status.as_str(), c.reason.as_deref()),
            ("ReplicaFailure", "True", Some("FailedCreate"))
        );
        set.status = Some(s.clone());
        let later = calculate(&set, &[], Some(&f), Timestamp::from_second(300).unwrap());
        assert!(same(&s, &later), "the condition keeps its first time");
        let cleared = calculate(&set, &[], None, now);
        assert!(cleared.conditions.is_none());
    }
}
