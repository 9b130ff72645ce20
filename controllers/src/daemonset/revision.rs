//! A DaemonSet's ControllerRevisions, as Kubernetes keeps them and as
//! `kubectl rollout history|undo daemonset` reads them: each revision
//! holds a strategic merge patch that restores its pod template
//! (`{"spec":{"template":{..., "$patch":"replace"}}}`), is named
//! `<daemonset>-<hash>`, carries the hash in `controller-revision-hash`
//! (the label its pods get too) and a revision number; the current
//! template's revision is renumbered to the newest when a rollback
//! returns to it, and old revisions no pod uses are removed beyond
//! `revisionHistoryLimit`.

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use serde_json::{Value, json};

use crate::workload::controller_ref;

/// The label with a revision's hash, on the revision and on its pods.
pub const HASH_LABEL: &str = "controller-revision-hash";

/// The revision data for `ds`'s current template: the patch that restores it.
pub fn data(ds: &DaemonSet) -> Value {
    let mut template = ds
        .spec
        .as_ref()
        .map(|s| serde_json::to_value(&s.template).unwrap_or(Value::Null))
        .unwrap_or(Value::Null);
    if let Some(t) = template.as_object_mut() {
        t.insert("$patch".into(), json!("replace"));
    }
    json!({"spec": {"template": template}})
}

/// A revision's hash: FNV-1a (32 bits) of its data, and of the collision
/// count when there is one, written in decimal with each digit mapped to
/// a letter or digit that cannot spell words (Kubernetes' `SafeEncodeString`).
pub fn hash(data: &Value, collision_count: Option<i32>) -> String {
    let mut h: u32 = 0x811c_9dc5;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            h ^= u32::from(*b);
            h = h.wrapping_mul(0x0100_0193);
        }
    };
    feed(data.to_string().as_bytes());
    if let Some(c) = collision_count {
        feed(&(c as u32).to_le_bytes());
    }
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    h.to_string()
        .bytes()
        .map(|b| ALPHANUMS[usize::from(b) % ALPHANUMS.len()] as char)
        .collect()
}

/// `<daemonset>-<hash>`, the prefix cut so the name stays within 253.
pub fn name(ds_name: &str, hash: &str) -> String {
    let mut prefix = ds_name.to_string();
    prefix.truncate(223);
    format!("{prefix}-{hash}")
}

/// A new revision object for `ds`.
pub fn new_revision(ds: &DaemonSet, data: Value, hash: &str, revision: i64) -> ControllerRevision {
    let mut labels = ds
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    labels.insert(HASH_LABEL.into(), hash.into());
    ControllerRevision {
        metadata: ObjectMeta {
            name: Some(name(ds.metadata.name.as_deref().unwrap_or_default(), hash)),
            namespace: ds.metadata.namespace.clone(),
            labels: Some(labels),
            owner_references: Some(vec![controller_ref(ds)]),
            ..Default::default()
        },
        data: Some(RawExtension(data)),
        revision,
    }
}

/// The revision's data, if it has any.
pub fn data_of(cr: &ControllerRevision) -> Option<&Value> {
    cr.data.as_ref().map(|d| &d.0)
}

/// What to do with the existing revisions (sorted by nothing in particular)
/// for the current data: which one is current (by name), whether its number
/// must move up to `renumber`, and which duplicates of it go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct History {
    pub current: Option<String>,
    pub renumber: Option<i64>,
    pub duplicates: Vec<String>,
    /// The number a new revision gets.
    pub next: i64,
}

pub fn history(revisions: &[ControllerRevision], current: &Value) -> History {
    let max = revisions.iter().map(|r| r.revision).max().unwrap_or(0);
    let mut same: Vec<&ControllerRevision> = revisions
        .iter()
        .filter(|r| data_of(r) == Some(current))
        .collect();
    same.sort_by_key(|r| std::cmp::Reverse(r.revision));
    let Some(cur) = same.first() else {
        return History {
            current: None,
            renumber: None,
            duplicates: Vec::new(),
            next: max + 1,
        };
    };
    History {
        current: cur.metadata.name.clone(),
        renumber: (cur.revision < max).then_some(max + 1),
        duplicates: same[1..]
            .iter()
            .filter_map(|r| r.metadata.name.clone())
            .collect(),
        next: max + 1,
    }
}

/// Old revisions to delete: beyond `limit`, oldest first, never one whose
/// hash a live pod still carries, never the current one.
pub fn to_prune(
    revisions: &[ControllerRevision],
    current: &str,
    live_hashes: &[String],
    limit: i32,
) -> Vec<String> {
    let mut old: Vec<&ControllerRevision> = revisions
        .iter()
        .filter(|r| r.metadata.name.as_deref() != Some(current))
        .filter(|r| {
            let h = r.metadata.labels.as_ref().and_then(|l| l.get(HASH_LABEL));
            !h.is_some_and(|h| live_hashes.contains(h))
        })
        .collect();
    let keep = usize::try_from(limit.max(0)).unwrap_or(0);
    if old.len() <= keep {
        return Vec::new();
    }
    old.sort_by_key(|r| r.revision);
    let excess = old.len() - keep;
    old.into_iter()
        .take(excess)
        .filter_map(|r| r.metadata.name.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cr(name: &str, data: Value, revision: i64, hash: &str) -> ControllerRevision {
        ControllerRevision {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some([(HASH_LABEL.to_string(), hash.to_string())].into()),
                ..Default::default()
            },
            data: Some(RawExtension(data)),
            revision,
        }
    }

    #[test]
    fn revision_data_is_the_patch_kubectl_undo_applies() {
        let ds: DaemonSet = serde_json::from_value(json!({
            "metadata": {"name": "agent"},
            "spec": {"selector": {"matchLabels": {"app": "a"}},
                "template": {"metadata": {"labels": {"app": "a"}},
                    "spec": {"containers": [{"name": "c", "image": "agent:1"}]}}}
        }))
        .expect("daemonset");
        let d = data(&ds);
        assert_eq!(d["spec"]["template"]["$patch"], "replace");
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0]["image"],
            "agent:1"
        );
        assert_eq!(d.as_object().map(|o| o.len()), Some(1));
        let h = hash(&d, None);
        assert!(!h.is_empty() && h.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)));
        assert_eq!(h, hash(&d, None), "stable");
        assert_ne!(h, hash(&d, Some(1)), "a collision count changes it");
        assert_eq!(name("agent", &h), format!("agent-{h}"));
        let r = new_revision(&ds, d.clone(), &h, 3);
        assert_eq!(r.revision, 3);
        assert_eq!(r.metadata.labels.as_ref().unwrap()[HASH_LABEL], h);
        assert_eq!(r.metadata.labels.as_ref().unwrap()["app"], "a");
    }

    #[test]
    fn the_current_template_reuses_its_revision_renumbered_after_a_rollback() {
        let v1 = json!({"spec": {"template": {"v": 1}}});
        let v2 = json!({"spec": {"template": {"v": 2}}});
        let revs = [
            cr("ds-a", v1.clone(), 1, "a"),
            cr("ds-b", v2.clone(), 2, "b"),
        ];
        // Rolled back to v1: revision 1 becomes 3.
        assert_eq!(
            history(&revs, &v1),
            History {
                current: Some("ds-a".into()),
                renumber: Some(3),
                duplicates: vec![],
                next: 3
            }
        );
        assert_eq!(history(&revs, &v2).renumber, None);
        let v3 = json!({"spec": {"template": {"v": 3}}});
        assert_eq!(history(&revs, &v3).current, None);
        assert_eq!(history(&revs, &v3).next, 3);
        let dup = [
            cr("ds-a", v1.clone(), 1, "a"),
            cr("ds-c", v1.clone(), 4, "c"),
        ];
        let h = history(&dup, &v1);
        assert_eq!(
            (h.current.as_deref(), h.duplicates.as_slice()),
            (Some("ds-c"), &["ds-a".to_string()][..])
        );
    }

    #[test]
    fn old_revisions_beyond_the_limit_go_unless_pods_use_them() {
        let v = |n: i64| json!({"n": n});
        let revs: Vec<ControllerRevision> = (1..=5)
            .map(|i| cr(&format!("ds-{i}"), v(i), i, &format!("h{i}")))
            .collect();
        assert_eq!(to_prune(&revs, "ds-5", &[], 2), ["ds-1", "ds-2"]);
        assert_eq!(to_prune(&revs, "ds-5", &["h1".into()], 2), ["ds-2"]);
        assert!(to_prune(&revs, "ds-5", &[], 10).is_empty());
        assert_eq!(
            to_prune(&revs, "ds-3", &[], 0),
            ["ds-1", "ds-2", "ds-4", "ds-5"]
        );
    }
}
