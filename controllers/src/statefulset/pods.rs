//! What a StatefulSet's pods and claims look like, as pure functions of the
//! set: the stable name `<set>-<ordinal>` and the ordinal read back from a
//! name, the pod built from a template (identity labels, hostname and
//! subdomain, one volume per claim template), the claims
//! `<template>-<set>-<ordinal>` and the owner references the claim
//! retention policy asks for, and the readiness tests the planner uses.
//! [`super::sync`] sends what these build.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;

/// The pod's own name, so a headless service can address it.
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// The pod's ordinal (Kubernetes 1.28+).
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";
/// The ControllerRevision the pod was built from.
pub const REVISION_LABEL: &str = "controller-revision-hash";

/// The name of the set's pod at `ordinal`.
pub fn pod_name(set: &str, ordinal: i32) -> String {
    format!("{set}-{ordinal}")
}

/// The name of the claim of template `template` for the pod at `ordinal`.
pub fn claim_name(template: &str, set: &str, ordinal: i32) -> String {
    format!("{template}-{set}-{ordinal}")
}

/// The ordinal of `pod` if its name is the set's pod name for some
/// ordinal (`web-3`, not `web-03` nor `web-x`), as Kubernetes' `isMemberOf`.
pub fn ordinal_of(set: &str, pod: &str) -> Option<i32> {
    let digits = pod.strip_prefix(set)?.strip_prefix('-')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: i32 = digits.parse().ok()?;
    (pod_name(set, n) == pod).then_some(n)
}

/// The first ordinal (`spec.ordinals.start`, 0 when unset).
pub fn start_ordinal(set: &StatefulSet) -> i32 {
    set.spec
        .as_ref()
        .and_then(|s| s.ordinals.as_ref())
        .and_then(|o| o.start)
        .unwrap_or(0)
        .max(0)
}

/// Whether `labels` satisfy `selector` (matchLabels and matchExpressions
/// In, NotIn, Exists, DoesNotExist). An empty selector matches nothing here:
/// a workload's selector must select something, and the API refuses one
/// that does not.
pub fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let empty_labels = selector.match_labels.as_ref().is_none_or(|m| m.is_empty());
    let empty_exprs = selector
        .match_expressions
        .as_ref()
        .is_none_or(|e| e.is_empty());
    if empty_labels && empty_exprs {
        return false;
    }
    let labels_ok = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let exprs_ok = selector.match_expressions.iter().flatten().all(|e| {
        let values = e.values.as_deref().unwrap_or_default();
        let has = labels.get(&e.key);
        match e.operator.as_str() {
            "In" => has.is_some_and(|v| values.contains(v)),
            "NotIn" => has.is_none_or(|v| !values.contains(v)),
            "Exists" => has.is_some(),
            "DoesNotExist" => has.is_none(),
            _ => false,
        }
    });
    labels_ok && exprs_ok
}

/// The set's controller reference (controller, blocks owner deletion).
pub fn controller_ref(set: &StatefulSet) -> OwnerReference {
    OwnerReference {
        api_version: "apps/v1".into(),
        kind: "StatefulSet".into(),
        name: set.metadata.name.clone().unwrap_or_default(),
        uid: set.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The controller reference among `refs`, if any.
pub fn controller_of(refs: Option<&Vec<OwnerReference>>) -> Option<&OwnerReference> {
    refs?.iter().find(|r| r.controller == Some(true))
}

/// The pod of `set` at `ordinal`, built from `set`'s template (which the
/// caller has already set to the revision wanted) and labelled with
/// `revision`.
pub fn new_pod(set: &StatefulSet, ordinal: i32, revision: &str) -> Pod {
    let set_name = set.metadata.name.clone().unwrap_or_default();
    let spec = set.spec.clone().unwrap_or_default();
    let template = spec.template;
    let tmeta = template.metadata.unwrap_or_default();
    let name = pod_name(&set_name, ordinal);
    let mut labels = tmeta.labels.unwrap_or_default();
    labels.insert(POD_NAME_LABEL.into(), name.clone());
    labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
    labels.insert(REVISION_LABEL.into(), revision.into());
    let mut pod_spec = template.spec.unwrap_or_default();
    pod_spec.hostname = Some(name.clone());
    pod_spec.subdomain = spec.service_name.filter(|s| !s.is_empty());
    let claims = spec.volume_claim_templates.unwrap_or_default();
    let mut volumes: Vec<Volume> = claims
        .iter()
        .map(|c| {
            let tname = c.metadata.name.clone().unwrap_or_default();
            Volume {
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: claim_name(&tname, &set_name, ordinal),
                    read_only: None,
                }),
                name: tname,
                ..Default::default()
            }
        })
        .collect();
    // A template volume named like a claim template is replaced by the claim.
    volumes.extend(
        pod_spec
            .volumes
            .take()
            .unwrap_or_default()
            .into_iter()
            .filter(|v| {
                !claims
                    .iter()
                    .any(|c| c.metadata.name.as_ref() == Some(&v.name))
            }),
    );
    pod_spec.volumes = (!volumes.is_empty()).then_some(volumes);
    Pod {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: set.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: tmeta.annotations,
            finalizers: tmeta.finalizers,
            owner_references: Some(vec![controller_ref(set)]),
            ..Default::default()
        },
        spec: Some(pod_spec),
        status: None,
    }
}

/// The identity labels `pod` lacks or has wrong (pod name, pod index), as
/// a map to merge into its labels; empty when they match.
pub fn identity_fix(pod: &Pod, ordinal: i32) -> BTreeMap<String, String> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    let mut fix = BTreeMap::new();
    if labels.get(POD_NAME_LABEL) != Some(&name) {
        fix.insert(POD_NAME_LABEL.to_string(), name);
    }
    if labels.get(POD_INDEX_LABEL) != Some(&ordinal.to_string()) {
        fix.insert(POD_INDEX_LABEL.to_string(), ordinal.to_string());
    }
    fix
}

/// The revision label of `pod` ("" without one).
pub fn pod_revision(pod: &Pod) -> &str {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(REVISION_LABEL))
        .map(String::as_str)
        .unwrap_or("")
}

/// A pod's lifecycle as the planner needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Pending,
    Running,
    Succeeded,
    Failed,
    Unknown,
}

/// `pod`'s phase (Pending when the API has not set one yet).
pub fn phase(pod: &Pod) -> Phase {
    match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Running") => Phase::Running,
        Some("Succeeded") => Phase::Succeeded,
        Some("Failed") => Phase::Failed,
        Some("Unknown") => Phase::Unknown,
        _ => Phase::Pending,
    }
}

/// When `pod` became Ready, if it is Running and its Ready condition is
/// True (a True condition without a transition time counts as ready since
/// forever).
pub fn ready_since(pod: &Pod) -> Option<Option<Timestamp>> {
    if phase(pod) != Phase::Running {
        return None;
    }
    let cond = pod
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "True")?;
    Some(cond.last_transition_time.as_ref().map(|t| t.0))
}

/// Whether a pod ready since `since` is available at `now` with
/// `min_ready_seconds`, and if not yet, in how many seconds it will be.
pub fn availability(
    since: Option<Option<Timestamp>>,
    min_ready_seconds: i64,
    now: Timestamp,
) -> (bool, Option<i64>) {
    match since {
        None => (false, None),
        Some(_) if min_ready_seconds <= 0 => (true, None),
        Some(None) => (true, None),
        Some(Some(t)) => {
            let ready_for = now.as_second() - t.as_second();
            if ready_for >= min_ready_seconds {
                (true, None)
            } else {
                (false, Some(min_ready_seconds - ready_for))
            }
        }
    }
}

/// The set's `persistentVolumeClaimRetentionPolicy`: whether claims go
/// with the set (`whenDeleted: Delete`) and with a scaled-down pod
/// (`whenScaled: Delete`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Retention {
    pub delete_with_set: bool,
    pub delete_when_scaled: bool,
}

impl Retention {
    pub fn of(set: &StatefulSet) -> Retention {
        let p = set
            .spec
            .as_ref()
            .and_then(|s| s.persistent_volume_claim_retention_policy.as_ref());
        let delete = |v: Option<&String>| v.is_some_and(|v| v == "Delete");
        Retention {
            delete_with_set: delete(p.and_then(|p| p.when_deleted.as_ref())),
            delete_when_scaled: delete(p.and_then(|p| p.when_scaled.as_ref())),
        }
    }
}

/// The claims of the pod at `ordinal` as the set's templates describe
/// them, not yet owned by anything: labels are the template's plus the
/// set selector's matchLabels.
pub fn new_claims(set: &StatefulSet, ordinal: i32) -> Vec<PersistentVolumeClaim> {
    let set_name = set.metadata.name.clone().unwrap_or_default();
    let spec = set.spec.clone().unwrap_or_default();
    let selector = spec.selector.match_labels.unwrap_or_default();
    spec.volume_claim_templates
        .unwrap_or_default()
        .into_iter()
        .map(|t| {
            let tname = t.metadata.name.clone().unwrap_or_default();
            let mut labels = t.metadata.labels.clone().unwrap_or_default();
            labels.extend(selector.clone());
            PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some(claim_name(&tname, &set_name, ordinal)),
                    namespace: set.metadata.namespace.clone(),
                    labels: Some(labels),
                    annotations: t.metadata.annotations.clone(),
                    ..Default::default()
                },
                spec: t.spec,
                status: None,
            }
        })
        .collect()
}

/// The owner references a claim should carry under `policy`: the set's
/// when claims go with the set, the pod's when the pod is condemned
/// (ordinal out of range) and claims go with a scale-down. Other owners
/// the claim has are kept; references to this set or this pod that the
/// policy does not ask for are dropped. `None` when `current` is right.
pub fn claim_owners(
    current: &[OwnerReference],
    policy: Retention,
    set: &StatefulSet,
    pod: Option<&Pod>,
    condemned: bool,
) -> Option<Vec<OwnerReference>> {
    let set_uid = set.metadata.uid.clone().unwrap_or_default();
    let pod_uid = pod.and_then(|p| p.metadata.uid.clone());
    let mut want: Vec<OwnerReference> = current
        .iter()
        .filter(|r| r.uid != set_uid && Some(&r.uid) != pod_uid.as_ref())
        .cloned()
        .collect();
    if policy.delete_with_set {
        want.push(controller_ref(set));
    }
    if let (true, true, Some(pod)) = (policy.delete_when_scaled, condemned, pod) {
        want.push(OwnerReference {
            api_version: "v1".into(),
            kind: "Pod".into(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            controller: None,
            block_owner_deletion: None,
        });
    }
    let same = want.len() == current.len() && want.iter().all(|w| current.contains(w));
    (!same).then_some(want)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{
        StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
    };
    use k8s_openapi::api::core::v1::{PodCondition, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelectorRequirement, Time};
    use serde_json::json;

    fn set() -> StatefulSet {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "ns", "uid": "set-uid"},
            "spec": {
                "serviceName": "nginx",
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}, "annotations": {"a": "b"}},
                    "spec": {
                        "containers": [{"name": "c", "image": "nginx"}],
                        "volumes": [{"name": "www", "emptyDir": {}}, {"name": "cfg", "emptyDir": {}}]
                    }
                },
                "volumeClaimTemplates": [{
                    "metadata": {"name": "www", "labels": {"tier": "disk"}},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
                }]
            }
        }))
        .unwrap()
    }

    #[test]
    fn ordinals_are_read_only_from_canonical_names() {
        let cases = [
            ("web-0", Some(0)),
            ("web-12", Some(12)),
            ("web-03", None),
            ("web-", None),
            ("web-x", None),
            ("web", None),
            ("webx-1", None),
            ("web-1-2", None),
            ("web-99999999999", None),
        ];
        for (name, want) in cases {
            assert_eq!(ordinal_of("web", name), want, "{name}");
        }
        assert_eq!(ordinal_of("web-1", "web-1-2"), Some(2));
    }

    #[test]
    fn selectors_match_labels_and_expressions() {
        let labels: BTreeMap<String, String> = [
            ("app".to_string(), "web".to_string()),
            ("tier".to_string(), "a".to_string()),
        ]
        .into();
        let req = |key: &str, op: &str, values: &[&str]| LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: Some(values.iter().map(|v| v.to_string()).collect()),
        };
        let by_labels = |k: &str, v: &str| LabelSelector {
            match_labels: Some([(k.to_string(), v.to_string())].into()),
            match_expressions: None,
        };
        let by_expr = |r| LabelSelector {
            match_labels: None,
            match_expressions: Some(vec![r]),
        };
        let cases = [
            (by_labels("app", "web"), true),
            (by_labels("app", "db"), false),
            (by_expr(req("tier", "In", &["a", "b"])), true),
            (by_expr(req("tier", "NotIn", &["a"])), false),
            (by_expr(req("zone", "NotIn", &["a"])), true),
            (by_expr(req("tier", "Exists", &[])), true),
            (by_expr(req("tier", "DoesNotExist", &[])), false),
            (by_expr(req("tier", "Bogus", &[])), false),
            (LabelSelector::default(), false),
        ];
        for (i, (sel, want)) in cases.into_iter().enumerate() {
            assert_eq!(selector_matches(&sel, &labels), want, "case {i}: {sel:?}");
        }
    }

    #[test]
    fn a_new_pod_has_its_identity_claims_and_controller() {
        let pod = new_pod(&set(), 2, "web-abc");
        let meta = &pod.metadata;
        assert_eq!(meta.name.as_deref(), Some("web-2"));
        assert_eq!(meta.namespace.as_deref(), Some("ns"));
        let labels = meta.labels.as_ref().unwrap();
        assert_eq!(labels["app"], "web");
        assert_eq!(labels[POD_NAME_LABEL], "web-2");
        assert_eq!(labels[POD_INDEX_LABEL], "2");
        assert_eq!(labels[REVISION_LABEL], "web-abc");
        assert_eq!(meta.annotations.as_ref().unwrap()["a"], "b");
        let owner = &meta.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (
                owner.kind.as_str(),
                owner.uid.as_str(),
                owner.controller,
                owner.block_owner_deletion
            ),
            ("StatefulSet", "set-uid", Some(true), Some(true))
        );
        let spec = pod.spec.unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("web-2"));
        assert_eq!(spec.subdomain.as_deref(), Some("nginx"));
        let volumes = spec.volumes.unwrap();
        let names: Vec<_> = volumes.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(
            names,
            ["www", "cfg"],
            "the claim replaces the template's volume www"
        );
        assert_eq!(
            volumes[0]
                .persistent_volume_claim
                .as_ref()
                .unwrap()
                .claim_name,
            "www-web-2"
        );
        assert!(identity_fix(&new_pod(&set(), 2, "r"), 2).is_empty());
    }

    #[test]
    fn identity_fix_names_the_wrong_labels() {
        let mut pod = new_pod(&set(), 1, "r");
        pod.metadata
            .labels
            .as_mut()
            .unwrap()
            .remove(POD_INDEX_LABEL);
        pod.metadata
            .labels
            .as_mut()
            .unwrap()
            .insert(POD_NAME_LABEL.into(), "other".into());
        let fix = identity_fix(&pod, 1);
        assert_eq!(fix.get(POD_NAME_LABEL).map(String::as_str), Some("web-1"));
        assert_eq!(fix.get(POD_INDEX_LABEL).map(String::as_str), Some("1"));
    }

    #[test]
    fn claims_carry_template_and_selector_labels() {
        let claims = new_claims(&set(), 4);
        assert_eq!(claims.len(), 1);
        let c = &claims[0];
        assert_eq!(c.metadata.name.as_deref(), Some("www-web-4"));
        let labels = c.metadata.labels.as_ref().unwrap();
        assert_eq!(
            (labels["tier"].as_str(), labels["app"].as_str()),
            ("disk", "web")
        );
        assert!(c.metadata.owner_references.is_none());
    }

    fn with_policy(deleted: &str, scaled: &str) -> StatefulSet {
        let mut s = set();
        let spec: &mut StatefulSetSpec = s.spec.as_mut().unwrap();
        spec.persistent_volume_claim_retention_policy =
            Some(StatefulSetPersistentVolumeClaimRetentionPolicy {
                when_deleted: Some(deleted.into()),
                when_scaled: Some(scaled.into()),
            });
        s
    }

    /// (set with its policy, condemned, owners now, owners wanted or None when right)
    type OwnerCase = (
        StatefulSet,
        bool,
        Vec<OwnerReference>,
        Option<Vec<&'static str>>,
    );

    #[test]
    fn claim_owners_follow_the_retention_policy() {
        let mut pod = new_pod(&set(), 3, "r");
        pod.metadata.uid = Some("pod-uid".into());
        let other = OwnerReference {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            name: "keep".into(),
            uid: "other".into(),
            ..Default::default()
        };
        let uids = |v: Option<Vec<OwnerReference>>| {
            v.map(|v| v.into_iter().map(|r| r.uid).collect::<Vec<_>>())
        };
        // (policy, condemned, current owners, wanted owners or None when right)
        let cases: Vec<OwnerCase> = vec![
            (with_policy("Retain", "Retain"), false, vec![], None),
            (
                with_policy("Retain", "Retain"),
                true,
                vec![other.clone()],
                None,
            ),
            (
                with_policy("Delete", "Retain"),
                false,
                vec![],
                Some(vec!["set-uid"]),
            ),
            (
                with_policy("Delete", "Retain"),
                false,
                vec![controller_ref(&set())],
                None,
            ),
            (with_policy("Retain", "Delete"), false, vec![], None),
            (
                with_policy("Retain", "Delete"),
                true,
                vec![other.clone()],
                Some(vec!["other", "pod-uid"]),
            ),
            (
                with_policy("Delete", "Delete"),
                true,
                vec![],
                Some(vec!["set-uid", "pod-uid"]),
            ),
            // Retain again after Delete: the set's reference goes.
            (
                with_policy("Retain", "Retain"),
                false,
                vec![controller_ref(&set()), other.clone()],
                Some(vec!["other"]),
            ),
        ];
        for (i, (s, condemned, current, want)) in cases.into_iter().enumerate() {
            let got = claim_owners(&current, Retention::of(&s), &s, Some(&pod), condemned);
            assert_eq!(
                uids(got),
                want.map(|w| w.into_iter().map(String::from).collect()),
                "case {i}"
            );
        }
    }

    #[test]
    fn readiness_and_availability() {
        let now = Timestamp::from_second(1000).unwrap();
        let pod = |phase: &str, ready: &str, at: i64| Pod {
            status: Some(PodStatus {
                phase: Some(phase.into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: ready.into(),
                    last_transition_time: Some(Time(Timestamp::from_second(at).unwrap())),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            spec: Some(PodSpec::default()),
            ..Default::default()
        };
        assert_eq!(ready_since(&pod("Pending", "True", 1)), None);
        assert_eq!(ready_since(&pod("Running", "False", 1)), None);
        let since = ready_since(&pod("Running", "True", 990));
        assert!(since.is_some());
        assert_eq!(availability(since, 0, now), (true, None));
        assert_eq!(availability(since, 10, now), (true, None));
        assert_eq!(availability(since, 15, now), (false, Some(5)));
        assert_eq!(availability(None, 0, now), (false, None));
    }
}
