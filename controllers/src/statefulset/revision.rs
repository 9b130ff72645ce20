//! ControllerRevisions of a StatefulSet, as pure functions: the data a
//! revision records (a strategic merge patch that puts the pod template
//! back: `{"spec":{"template":{…,"$patch":"replace"}}}`, which is what
//! `kubectl rollout undo` sends and `kubectl rollout history` applies),
//! its name `<set>-<hash>` (the hash covers the data and the set's
//! collisionCount), which existing revision a template matches, the next
//! revision number, and which revisions the history limit lets go.

use std::collections::{BTreeMap, HashSet};

use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use serde_json::{Value, json};

use super::pods::controller_ref;

/// Names are at most 253 characters; the hash and its dash need 30.
const MAX_PREFIX: usize = 223;
/// No vowels, so a hash never spells a word (as Kubernetes' names avoid).
const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// What a revision of `set` records: its pod template as a patch.
pub fn template_data(set: &StatefulSet) -> Value {
    let template = set
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let mut t = serde_json::to_value(template).unwrap_or_else(|_| json!({}));
    if let Value::Object(m) = &mut t {
        m.insert("$patch".into(), Value::String("replace".into()));
    }
    json!({"spec": {"template": t}})
}

/// FNV-1a (32 bits) of `data`'s JSON and the collision count, written in
/// [`ALPHABET`].
pub fn hash(data: &Value, collision_count: i32) -> String {
    let mut h: u32 = 0x811c_9dc5;
    let bytes = serde_json::to_vec(data).unwrap_or_default();
    for b in bytes
        .iter()
        .chain(collision_count.to_string().as_bytes().iter())
    {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    let mut out = Vec::new();
    let mut n = h;
    loop {
        out.push(ALPHABET[(n % ALPHABET.len() as u32) as usize]);
        n /= ALPHABET.len() as u32;
        if n == 0 {
            break;
        }
    }
    // At least 7 characters, so names look alike.
    while out.len() < 7 {
        out.push(ALPHABET[0]);
    }
    String::from_utf8(out).unwrap_or_default()
}

/// The name of the revision of `set` with `hash`.
pub fn revision_name(set: &str, hash: &str) -> String {
    let prefix: String = set.chars().take(MAX_PREFIX).collect();
    format!("{prefix}-{hash}")
}

/// A new revision of `set` numbered `number` with the set's current
/// template: labelled like the template, annotated like the set (so
/// `kubectl rollout history` shows a change-cause), owned by the set.
pub fn new_revision(set: &StatefulSet, number: i64, collision_count: i32) -> ControllerRevision {
    let data = template_data(set);
    let name = revision_name(
        set.metadata.name.as_deref().unwrap_or_default(),
        &hash(&data, collision_count),
    );
    let labels = set
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.labels.clone());
    let annotations: Option<BTreeMap<String, String>> =
        set.metadata.annotations.as_ref().map(|a| {
            a.iter()
                .filter(|(k, _)| k.as_str() != "kubectl.kubernetes.io/last-applied-configuration")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        });
    ControllerRevision {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: set.metadata.namespace.clone(),
            labels,
            annotations: annotations.filter(|a| !a.is_empty()),
            owner_references: Some(vec![controller_ref(set)]),
            ..Default::default()
        },
        data: Some(RawExtension(data)),
        revision: number,
    }
}

/// Whether `rev` records `data`.
pub fn records(rev: &ControllerRevision, data: &Value) -> bool {
    rev.data.as_ref().is_some_and(|d| &d.0 == data)
}

/// Revisions in history order (number, then name).
pub fn sort(revisions: &mut [ControllerRevision]) {
    revisions.sort_by(|a, b| {
        a.revision
            .cmp(&b.revision)
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
}

/// The number a new (or rolled-back-to) revision gets: one past the highest.
pub fn next_number(sorted: &[ControllerRevision]) -> i64 {
    sorted.last().map_or(1, |r| r.revision.saturating_add(1))
}

/// What the set's template is, measured against its (sorted) history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// The latest revision records it: nothing changes.
    Latest(usize),
    /// An older revision records it (a rollback): that one is renumbered
    /// to the next number.
    Older(usize),
    /// No revision records it: a new one is made.
    New,
}

/// Which of `sorted` records `data` (the latest such, as Kubernetes picks).
pub fn find(sorted: &[ControllerRevision], data: &Value) -> Found {
    match sorted.iter().rposition(|r| records(r, data)) {
        Some(i) if i + 1 == sorted.len() => Found::Latest(i),
        Some(i) => Found::Older(i),
        None => Found::New,
    }
}

/// The revisions to delete so that at most `limit` revisions not `live`
/// (the current and update revisions, and any a pod runs) remain: the
/// oldest first. A negative limit keeps everything.
pub fn to_truncate(
    sorted: &[ControllerRevision],
    live: &HashSet<String>,
    limit: i32,
) -> Vec<String> {
    let history: Vec<&String> = sorted
        .iter()
        .filter_map(|r| r.metadata.name.as_ref())
        .filter(|n| !live.contains(*n))
        .collect();
    if limit < 0 || history.len() <= limit as usize {
        return Vec::new();
    }
    history[..history.len() - limit as usize]
        .iter()
        .map(|n| n.to_string())
        .collect()
}

/// `set` with the pod template `rev` records (the set as it was at that
/// revision, for building pods that stay at it).
pub fn apply(set: &StatefulSet, rev: &ControllerRevision) -> StatefulSet {
    let mut out = set.clone();
    let template = rev
        .data
        .as_ref()
        .and_then(|d| d.0.pointer("/spec/template"))
        .cloned()
        .map(|mut t| {
            if let Value::Object(m) = &mut t {
                m.remove("$patch");
            }
            t
        })
        .and_then(|t| serde_json::from_value::<PodTemplateSpec>(t).ok());
    if let (Some(spec), Some(t)) = (out.spec.as_mut(), template) {
        spec.template = t;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(image: &str) -> StatefulSet {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "ns", "uid": "u1",
                         "annotations": {"kubernetes.io/change-cause": "because",
                                         "kubectl.kubernetes.io/last-applied-configuration": "{}"}},
            "spec": {
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "c", "image": image}]}
                }
            }
        }))
        .unwrap()
    }

    fn rev(set_: &StatefulSet, n: i64) -> ControllerRevision {
        new_revision(set_, n, 0)
    }

    #[test]
    fn data_is_a_replacing_template_patch() {
        let d = template_data(&set("nginx:1"));
        assert_eq!(d["spec"]["template"]["$patch"], "replace");
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0]["image"],
            "nginx:1"
        );
        assert_eq!(d.as_object().unwrap().len(), 1);
    }

    #[test]
    fn names_depend_on_template_and_collision_count_only() {
        let a = rev(&set("nginx:1"), 1);
        let b = rev(&set("nginx:1"), 7);
        let c = rev(&set("nginx:2"), 1);
        let name = |r: &ControllerRevision| r.metadata.name.clone().unwrap();
        assert_eq!(name(&a), name(&b));
        assert_ne!(name(&a), name(&c));
        assert!(name(&a).starts_with("web-"), "{}", name(&a));
        let h = &name(&a)["web-".len()..];
        assert!(
            h.len() >= 7 && h.bytes().all(|b| ALPHABET.contains(&b)),
            "{h}"
        );
        let d = template_data(&set("nginx:1"));
        assert_ne!(hash(&d, 0), hash(&d, 1));
        assert_eq!(revision_name(&"x".repeat(300), "h").len(), MAX_PREFIX + 2);
    }

    #[test]
    fn a_revision_is_labelled_annotated_and_owned() {
        let r = rev(&set("nginx:1"), 3);
        assert_eq!(r.revision, 3);
        assert_eq!(r.metadata.labels.as_ref().unwrap()["app"], "web");
        let ann = r.metadata.annotations.as_ref().unwrap();
        assert_eq!(ann["kubernetes.io/change-cause"], "because");
        assert!(!ann.contains_key("kubectl.kubernetes.io/last-applied-configuration"));
        let owner = &r.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!((owner.uid.as_str(), owner.controller), ("u1", Some(true)));
    }

    #[test]
    fn finding_the_template_in_history() {
        let h = vec![rev(&set("v1"), 1), rev(&set("v2"), 2), rev(&set("v3"), 3)];
        assert_eq!(find(&h, &template_data(&set("v3"))), Found::Latest(2));
        assert_eq!(find(&h, &template_data(&set("v1"))), Found::Older(0));
        assert_eq!(find(&h, &template_data(&set("v4"))), Found::New);
        assert_eq!(find(&[], &template_data(&set("v4"))), Found::New);
        assert_eq!(next_number(&h), 4);
        assert_eq!(next_number(&[]), 1);
    }

    #[test]
    fn sorting_is_by_number() {
        let mut h = vec![rev(&set("v3"), 3), rev(&set("v1"), 1), rev(&set("v2"), 2)];
        sort(&mut h);
        let numbers: Vec<i64> = h.iter().map(|r| r.revision).collect();
        assert_eq!(numbers, [1, 2, 3]);
    }

    #[test]
    fn truncation_keeps_live_and_the_newest_history() {
        let h: Vec<ControllerRevision> = (1..=5).map(|i| rev(&set(&format!("v{i}")), i)).collect();
        let name = |i: usize| h[i].metadata.name.clone().unwrap();
        let live: HashSet<String> = [name(4), name(0)].into();
        // History (not live): revisions 2, 3, 4.
        assert_eq!(to_truncate(&h, &live, 1), vec![name(1), name(2)]);
        assert_eq!(to_truncate(&h, &live, 3), Vec::<String>::new());
        assert_eq!(to_truncate(&h, &live, 0), vec![name(1), name(2), name(3)]);
        assert_eq!(to_truncate(&h, &live, -1), Vec::<String>::new());
    }

    #[test]
    fn applying_a_revision_restores_its_template() {
        let old = rev(&set("v1"), 1);
        let back = apply(&set("v2"), &old);
        let image = back.spec.unwrap().template.spec.unwrap().containers[0]
            .image
            .clone();
        assert_eq!(image.as_deref(), Some("v1"));
    }
}
