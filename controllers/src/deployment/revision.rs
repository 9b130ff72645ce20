//! A deployment's replica sets as revisions: the `pod-template-hash`
//! that names them (`<deployment>-<hash>`) and labels their pods, the
//! `deployment.kubernetes.io/revision` annotation that numbers them (what
//! `kubectl rollout history|undo` read), the deployment annotations copied
//! onto them (`kubernetes.io/change-cause` among them), and which old ones
//! `revisionHistoryLimit` lets go.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PodTemplateSpec;

/// The label (on the replica set, its selector, template and pods) that
/// tells one revision's pods from another's.
pub const HASH_LABEL: &str = "pod-template-hash";
pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
pub const DESIRED: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX: &str = "deployment.kubernetes.io/max-replicas";
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
const ROLLBACK_TO: &str = "deprecated.deployment.rollback.to";

/// The alphabet Kubernetes encodes hashes in (no vowels, no look-alikes).
const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// FNV-1a, 32 bits.
fn fnv32a(bytes: &[u8], mut h: u32) -> u32 {
    for b in bytes {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// The hash of `template` (and of `collision_count`, which changes it when
/// a replica set of that name exists with another template), encoded as
/// Kubernetes encodes it: the decimal digits of a 32-bit FNV-1a hash mapped
/// onto [`ALPHANUMS`]. The hashed bytes are the template's JSON, so the
/// value differs from kube-controller-manager's (which hashes Go's printing
/// of the struct), the form does not.
pub fn template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let json = serde_json::to_vec(&canonical(template)).unwrap_or_default();
    let mut h = fnv32a(&json, 0x811c_9dc5);
    if let Some(c) = collision_count {
        h = fnv32a(&(c as u32).to_le_bytes(), h);
    }
    h.to_string()
        .bytes()
        .map(|d| ALPHANUMS[usize::from(d) % ALPHANUMS.len()] as char)
        .collect()
}

/// A template as JSON without empty objects, empty lists and nulls: Go
/// clients send `resources: {}` where others send nothing, and
/// Kubernetes' semantic equality does not tell the two apart.
fn canonical(t: &PodTemplateSpec) -> serde_json::Value {
    fn prune(v: serde_json::Value) -> Option<serde_json::Value> {
        use serde_json::Value;
        match v {
            Value::Null => None,
            Value::Object(m) => {
                let m: serde_json::Map<String, Value> = m
                    .into_iter()
                    .filter_map(|(k, v)| prune(v).map(|v| (k, v)))
                    .collect();
                (!m.is_empty()).then_some(Value::Object(m))
            }
            Value::Array(a) => {
                let a: Vec<Value> = a
                    .into_iter()
                    .map(|v| prune(v).unwrap_or(Value::Object(Default::default())))
                    .collect();
                (!a.is_empty()).then_some(Value::Array(a))
            }
            v => Some(v),
        }
    }
    prune(serde_json::to_value(t).unwrap_or_default()).unwrap_or_default()
}

/// Whether two templates are the same but for the hash label.
pub fn equal_ignoring_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    let strip = |t: &PodTemplateSpec| {
        let mut t = t.clone();
        if let Some(l) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
            l.remove(HASH_LABEL);
        }
        canonical(&t)
    };
    strip(a) == strip(b)
}

/// The revision in `annotations` (0 when absent or not a number).
pub fn revision(annotations: Option<&BTreeMap<String, String>>) -> i64 {
    annotations
        .and_then(|a| a.get(REVISION))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The deployment annotations a replica set carries (all but the ones the
/// controller owns and last-applied-configuration).
pub fn copied(key: &str) -> bool {
    !matches!(
        key,
        LAST_APPLIED | REVISION | REVISION_HISTORY | DESIRED | MAX | ROLLBACK_TO
    )
}

/// The annotations of the new replica set of revision `rev` for a
/// deployment annotated `from`: the copied ones, the revision (never
/// lowered), and, when given, the replica annotations (desired, max).
/// `None` when `current` already has them all.
pub fn new_rs_annotations(
    current: Option<&BTreeMap<String, String>>,
    from: Option<&BTreeMap<String, String>>,
    rev: i64,
    replicas: Option<(i32, i32)>,
) -> Option<BTreeMap<String, String>> {
    let mut out = current.cloned().unwrap_or_default();
    for (k, v) in from.into_iter().flatten() {
        if copied(k) {
            out.insert(k.clone(), v.clone());
        }
    }
    if revision(current) < rev {
        out.insert(REVISION.into(), rev.to_string());
    }
    if let Some((desired, max)) = replicas {
        out.insert(DESIRED.into(), desired.to_string());
        out.insert(MAX.into(), max.to_string());
    }
    (Some(&out) != current).then_some(out)
}

/// What cleanup needs to know of an old replica set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Old {
    pub name: String,
    pub revision: i64,
    pub created: i64,
    /// Scaled to zero, its pods gone, its spec observed, not being deleted.
    pub idle: bool,
}

/// The old replica sets to delete so that at most `limit` remain, lowest
/// revisions first, only idle ones (Kubernetes' `cleanupDeployment`).
pub fn to_clean(old: &[Old], limit: i32) -> Vec<String> {
    let excess = old.len() as i64 - i64::from(limit.max(0));
    if excess <= 0 {
        return vec![];
    }
    let mut v: Vec<&Old> = old.iter().collect();
    v.sort_by(|a, b| {
        a.revision
            .cmp(&b.revision)
            .then_with(|| a.created.cmp(&b.created))
            .then_with(|| a.name.cmp(&b.name))
    });
    v.into_iter()
        .take(excess as usize)
        .filter(|o| o.idle)
        .map(|o| o.name.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn template(image: &str) -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some([("app".into(), "web".into())].into()),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    image: Some(image.into()),
                    ..Default::default()
                }],
                ..Default::default()
            }),
        }
    }

    #[test]
    fn hashes_are_stable_distinct_and_in_kubernetes_alphabet() {
        let a = template("nginx:1");
        let h = template_hash(&a, None);
        assert_eq!(h, template_hash(&a.clone(), None));
        assert!(!h.is_empty() && h.len() <= 10);
        assert!(h.bytes().all(|c| ALPHANUMS.contains(&c)), "{h}");
        assert_ne!(h, template_hash(&template("nginx:2"), None));
        assert_ne!(h, template_hash(&a, Some(1)));
        assert_ne!(template_hash(&a, Some(1)), template_hash(&a, Some(2)));
    }

    #[test]
    fn templates_compare_without_the_hash_label() {
        let a = template("nginx:1");
        let mut b = a.clone();
        b.metadata
            .as_mut()
            .unwrap()
            .labels
            .as_mut()
            .unwrap()
            .insert(HASH_LABEL.into(), "abc".into());
        assert!(equal_ignoring_hash(&a, &b));
        assert!(!equal_ignoring_hash(&a, &template("nginx:2")));
        // `resources: {}` (as Go clients send it) is no resources.
        let mut c = a.clone();
        c.spec.as_mut().unwrap().containers[0].resources = Some(Default::default());
        assert!(equal_ignoring_hash(&a, &c));
        assert_eq!(template_hash(&a, None), template_hash(&c, None));
    }

    #[test]
    fn new_replica_sets_get_copied_annotations_and_a_revision_never_lowered() {
        let from: BTreeMap<String, String> = [
            ("kubernetes.io/change-cause".into(), "set image".into()),
            (LAST_APPLIED.into(), "{}".into()),
            (REVISION.into(), "7".into()),
        ]
        .into();
        let got = new_rs_annotations(None, Some(&from), 3, Some((4, 5))).unwrap();
        assert_eq!(got["kubernetes.io/change-cause"], "set image");
        assert!(!got.contains_key(LAST_APPLIED));
        assert_eq!(
            (
                got[REVISION].as_str(),
                got[DESIRED].as_str(),
                got[MAX].as_str()
            ),
            ("3", "4", "5")
        );
        assert_eq!(new_rs_annotations(Some(&got), Some(&from), 3, None), None);
        assert_eq!(
            new_rs_annotations(Some(&got), Some(&from), 2, Some((4, 5))),
            None,
            "never lowered"
        );
        assert_eq!(
            new_rs_annotations(Some(&got), Some(&from), 4, None).unwrap()[REVISION],
            "4"
        );
    }

    #[test]
    fn history_keeps_the_limit_deleting_lowest_idle_revisions() {
        let old = |name: &str, revision, idle| Old {
            name: name.into(),
            revision,
            created: revision,
            idle,
        };
        let set = [
            old("r3", 3, true),
            old("r1", 1, true),
            old("r2", 2, false),
            old("r4", 4, true),
        ];
        assert_eq!(to_clean(&set, 2), ["r1"], "r2 still has pods");
        assert_eq!(to_clean(&set, 0), ["r1", "r3", "r4"]);
        assert!(to_clean(&set, 10).is_empty());
    }
}
