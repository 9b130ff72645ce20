//! Which of its own Node's labels a node may set: a node that could set
//! any label could steer workloads that select nodes by label (dedicated
//! or privileged ones) onto itself. It may set what the kubelet itself
//! reports and anything outside the Kubernetes namespaces; never a
//! `node-restriction.kubernetes.io/` label, which exists for exactly that
//! selection.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

/// Labels a kubelet sets on its Node.
const KUBELET_LABELS: &[&str] = &[
    "kubernetes.io/hostname",
    "kubernetes.io/arch",
    "kubernetes.io/os",
    "beta.kubernetes.io/arch",
    "beta.kubernetes.io/os",
    "topology.kubernetes.io/region",
    "topology.kubernetes.io/zone",
    "failure-domain.beta.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/zone",
    "node.kubernetes.io/instance-type",
    "beta.kubernetes.io/instance-type",
];

/// Label namespaces (and their subdomains) a kubelet may use freely.
const KUBELET_NAMESPACES: &[&str] = &["kubelet.kubernetes.io", "node.kubernetes.io"];

const RESTRICTED_NAMESPACE: &str = "node-restriction.kubernetes.io";

/// The prefix of a label key before `/`; "" for none.
fn namespace(key: &str) -> &str {
    key.split_once('/').map_or("", |(ns, _)| ns)
}

/// `ns` is `domain` or one of its subdomains.
fn within(ns: &str, domain: &str) -> bool {
    ns == domain
        || ns
            .strip_suffix(domain)
            .is_some_and(|head| head.ends_with('.'))
}

fn is_kubernetes(ns: &str) -> bool {
    within(ns, "kubernetes.io") || within(ns, "k8s.io")
}

fn is_kubelet_label(key: &str) -> bool {
    KUBELET_LABELS.contains(&key) || KUBELET_NAMESPACES.iter().any(|d| within(namespace(key), d))
}

/// Whether a node may set or change the label `key` on itself.
pub fn allowed(key: &str) -> bool {
    let ns = namespace(key);
    // Kubernetes' own namespaces are closed except to kubelet labels.
    !within(ns, RESTRICTED_NAMESPACE) && (!is_kubernetes(ns) || is_kubelet_label(key))
}

/// The keys whose value differs between `new` and `old` (added, removed or
/// changed), sorted.
pub fn modified(
    new: Option<&Map<String, Value>>,
    old: Option<&Map<String, Value>>,
) -> BTreeSet<String> {
    let empty = Map::new();
    let (new, old) = (new.unwrap_or(&empty), old.unwrap_or(&empty));
    new.keys()
        .chain(old.keys())
        .filter(|k| new.get(*k) != old.get(*k))
        .cloned()
        .collect()
}

/// The labels of `new` (against `old`) a node may not set, sorted.
pub fn forbidden(
    new: Option<&Map<String, Value>>,
    old: Option<&Map<String, Value>>,
) -> Vec<String> {
    modified(new, old)
        .into_iter()
        .filter(|k| !allowed(k))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_sets_only_kubelet_and_foreign_labels() {
        for ok in [
            "kubernetes.io/hostname",
            "kubernetes.io/os",
            "topology.kubernetes.io/zone",
            "failure-domain.beta.kubernetes.io/region",
            "beta.kubernetes.io/instance-type",
            "node.kubernetes.io/instance-type",
            "node.kubernetes.io/anything",
            "kubelet.kubernetes.io/x",
            "sub.kubelet.kubernetes.io/x",
            "example.com/rack",
            "plain",
        ] {
            assert!(allowed(ok), "{ok}");
        }
        for refused in [
            "node-restriction.kubernetes.io/dedicated",
            "a.node-restriction.kubernetes.io/x",
            "node-role.kubernetes.io/control-plane",
            "kubernetes.io/role",
            "k8s.io/x",
            "foo.k8s.io/x",
            "topology.kubernetes.io/rack",
        ] {
            assert!(!allowed(refused), "{refused}");
        }
        // A domain that merely ends in the same letters is someone else's.
        assert!(allowed("notkubernetes.io/x"));
    }

    #[test]
    fn modified_labels_are_added_removed_or_changed_ones() {
        let m = |v: Value| v.as_object().cloned();
        let old = m(serde_json::json!({"a": "1", "b": "2", "c": "3"}));
        let new = m(serde_json::json!({"a": "1", "b": "x", "d": "4"}));
        let got: Vec<_> = modified(new.as_ref(), old.as_ref()).into_iter().collect();
        assert_eq!(got, ["b", "c", "d"]);
    }
}
