//! The graph's bookkeeping and the collector's decision rule.

use super::*;
use serde_json::json;

fn cm() -> Arc<ResourceInfo> {
    Arc::new(ResourceInfo {
        ar: kube::core::ApiResource {
            group: String::new(),
            version: "v1".into(),
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            plural: "configmaps".into(),
        },
        namespaced: true,
        verbs: vec!["list".into(), "watch".into(), "delete".into()],
    })
}

fn obj(uid: &str, owners: &[(&str, bool)], deleting: bool, finalizers: &[&str]) -> Node {
    let refs: Vec<Value> = owners
        .iter()
        .map(|(o, block)| json!({"apiVersion": "v1", "kind": "ConfigMap", "name": o, "uid": o, "blockOwnerDeletion": block}))
        .collect();
    let mut v = json!({"metadata": {"uid": uid, "name": uid, "namespace": "ns", "ownerReferences": refs, "finalizers": finalizers}});
    if deleting {
        v["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    }
    Node::of(&v, cm()).unwrap()
}

fn refs(owners: &[&str]) -> Vec<OwnerRef> {
    owners
        .iter()
        .map(|o| OwnerRef {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            name: o.to_string(),
            uid: o.to_string(),
            block_owner_deletion: false,
        })
        .collect()
}

#[test]
fn parses_owner_references_and_skips_those_without_uid() {
    let v = json!({"metadata": {"uid": "d", "name": "d", "ownerReferences": [
        {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "u1", "blockOwnerDeletion": true, "controller": true},
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "x"}]}});
    let n = Node::of(&v, cm()).unwrap();
    assert_eq!(n.owners.len(), 1);
    assert_eq!(n.owners[0].kind, "ReplicaSet");
    assert!(n.owners[0].block_owner_deletion);
    assert_eq!(n.namespace, None);
    assert!(Node::of(&json!({"metadata": {"name": "x"}}), cm()).is_none());
}

#[test]
fn indexes_dependents_and_follows_owner_changes() {
    let mut g = Graph::default();
    assert_eq!(
        g.upsert(obj("owner", &[], false, &[])),
        Vec::<String>::new()
    );
    assert_eq!(
        g.upsert(obj("dep", &[("owner", true)], false, &[])),
        ["dep"]
    );
    assert_eq!(g.dependents_of("owner").len(), 1);
    // The same object again is no news.
    assert!(
        g.upsert(obj("dep", &[("owner", true)], false, &[]))
            .is_empty()
    );
    // Re-pointed at another owner: gone from the first one's dependents.
    assert_eq!(
        g.upsert(obj("dep", &[("other", false)], false, &[])),
        ["dep"]
    );
    assert!(g.dependents_of("owner").is_empty());
    assert_eq!(g.dependents_of("other").len(), 1);
    assert!(g.blocking_dependents("other").is_empty());
}

#[test]
fn removing_an_owner_wakes_its_dependents() {
    let mut g = Graph::default();
    g.upsert(obj("owner", &[], false, &[]));
    g.upsert(obj("a", &[("owner", false)], false, &[]));
    g.upsert(obj("b", &[("owner", false), ("x", false)], false, &[]));
    assert_eq!(g.remove("owner"), ["a", "b"]);
    // Dependents still point at the gone owner (until the collector acts).
    assert_eq!(g.dependents_of("owner").len(), 2);
    assert_eq!(g.remove("a"), Vec::<String>::new());
    assert_eq!(g.dependents_of("owner").len(), 1);
}

#[test]
fn foreground_deletion_wakes_dependents_then_the_owner_as_blockers_go() {
    let mut g = Graph::default();
    g.upsert(obj("owner", &[], false, &[]));
    g.upsert(obj("blocker", &[("owner", true)], false, &[]));
    g.upsert(obj("loose", &[("owner", false)], false, &[]));
    let woken = g.upsert(obj("owner", &[], true, &[FOREGROUND]));
    assert_eq!(woken, ["blocker", "loose", "owner"]);
    assert!(g.get("owner").unwrap().deleting_dependents());
    assert_eq!(g.blocking_dependents("owner").len(), 1);
    // The non-blocking dependent going wakes the owner, which still waits.
    assert_eq!(g.remove("loose"), ["owner"]);
    assert_eq!(g.blocking_dependents("owner").len(), 1);
    // A blocker that is itself deleting still blocks.
    g.upsert(obj("blocker", &[("owner", true)], true, &[FOREGROUND]));
    assert_eq!(g.blocking_dependents("owner").len(), 1);
    assert_eq!(g.remove("blocker"), ["owner"]);
    assert!(g.blocking_dependents("owner").is_empty());
}

#[test]
fn an_orphaning_owner_needs_attention() {
    let mut g = Graph::default();
    g.upsert(obj("owner", &[], false, &[]));
    assert_eq!(g.upsert(obj("owner", &[], true, &[ORPHAN])), ["owner"]);
    assert!(g.get("owner").unwrap().orphaning());
    // Deleting with an unrelated finalizer is not the collector's business.
    g.upsert(obj("other", &[], false, &[]));
    assert!(
        g.upsert(obj("other", &[], true, &["example.com/x"]))
            .is_empty()
    );
}

#[test]
fn relist_finds_the_nodes_of_one_resource() {
    let mut g = Graph::default();
    g.upsert(obj("a", &[], false, &[]));
    let mut other = (*cm()).clone();
    other.ar.plural = "secrets".into();
    let mut s = obj("s", &[], false, &[]);
    s.resource = Arc::new(other);
    g.upsert(s);
    assert_eq!(g.uids_of(&cm()), ["a"]);
    assert_eq!(g.len(), 2);
}

#[test]
fn decides_as_kubernetes_does() {
    use OwnerState::*;
    let none: &[String] = &[];
    // All owners absent: collected in the background.
    assert_eq!(
        decide(&refs(&["a"]), &[Absent], false, none),
        Decision::Delete(PropagationPolicy::Background)
    );
    assert_eq!(
        decide(&refs(&["a", "b"]), &[Absent, Absent], true, none),
        Decision::Delete(PropagationPolicy::Background)
    );
    // One owner alive: only the dead reference goes.
    assert_eq!(
        decide(&refs(&["a", "b"]), &[Live, Absent], false, none),
        Decision::RemoveRefs(vec!["b".into()])
    );
    assert_eq!(
        decide(&refs(&["a", "b"]), &[Live, Live], false, none),
        Decision::Keep
    );
    // An unresolvable owner keeps the dependent.
    assert_eq!(
        decide(&refs(&["a", "b"]), &[Unresolvable, Absent], false, none),
        Decision::RemoveRefs(vec!["b".into()])
    );
    assert_eq!(
        decide(&refs(&["a"]), &[Unresolvable], false, none),
        Decision::Keep
    );
    // Owner in foreground deletion: a dependent with dependents of its own
    // goes in the foreground too, one without in the background.
    assert_eq!(
        decide(&refs(&["a"]), &[WaitingForDependents], true, none),
        Decision::Delete(PropagationPolicy::Foreground)
    );
    assert_eq!(
        decide(&refs(&["a"]), &[WaitingForDependents], false, none),
        Decision::Delete(PropagationPolicy::Background)
    );
    // A live owner besides a deleting one: the dependent stays, released from the deleting one.
    assert_eq!(
        decide(
            &refs(&["a", "b"]),
            &[WaitingForDependents, Live],
            false,
            none
        ),
        Decision::RemoveRefs(vec!["a".into()])
    );
    // The dependent's own finalizers choose its policy.
    assert_eq!(
        decide(&refs(&["a"]), &[Absent], false, &[ORPHAN.to_string()]),
        Decision::Delete(PropagationPolicy::Orphan)
    );
    assert_eq!(decide(&[], &[], false, none), Decision::Keep);
}
