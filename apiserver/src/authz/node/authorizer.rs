//! The Node authorizer (kube-apiserver's `--authorization-mode=Node`): a
//! node may read a Secret, ConfigMap, claim or volume, and create a token
//! for a ServiceAccount, only when a pod bound to it references that object
//! (the graph); its own Lease and CSINode by name; and what the static node
//! rules grant. Everything else, and every user who is not a node, gets no
//! opinion, so RBAC after it still decides.

use std::sync::Arc;

use super::graph::Graph;
use super::node_name;
use super::refs::RefKind;
use super::rules;
use crate::authz::{Attributes, Authorizer, Decision};

/// Where nodes keep their heartbeat Leases.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

pub struct NodeAuthorizer {
    graph: Arc<Graph>,
}

impl NodeAuthorizer {
    pub fn new(graph: Arc<Graph>) -> NodeAuthorizer {
        NodeAuthorizer { graph }
    }

    /// get, list or watch of one named object the node's pods reference
    /// (a list or watch names one only through `metadata.name`).
    fn read_referenced(&self, node: &str, kind: RefKind, a: &Attributes) -> Decision {
        let read = matches!(a.verb.as_str(), "get" | "list" | "watch");
        if !read || !a.subresource.is_empty() || a.namespace.is_empty() {
            return Decision::NoOpinion;
        }
        self.referenced(node, kind, a)
    }

    /// A get of one object the node's pods reference.
    fn get_referenced(&self, node: &str, kind: RefKind, a: &Attributes) -> Decision {
        if a.verb != "get" || !a.subresource.is_empty() {
            return Decision::NoOpinion;
        }
        self.referenced(node, kind, a)
    }

    fn referenced(&self, node: &str, kind: RefKind, a: &Attributes) -> Decision {
        if !a.name.is_empty() && self.graph.references(node, kind, &a.namespace, &a.name) {
            Decision::Allow
        } else {
            Decision::NoOpinion
        }
    }

    fn volume(&self, node: &str, a: &Attributes) -> Decision {
        if a.verb == "get"
            && a.subresource.is_empty()
            && !a.name.is_empty()
            && self.graph.volume_on(node, &a.name)
        {
            Decision::Allow
        } else {
            Decision::NoOpinion
        }
    }

    /// The claim's status, which a node updates when it expands a volume.
    fn claim_status(&self, node: &str, a: &Attributes) -> Decision {
        if matches!(a.verb.as_str(), "get" | "update" | "patch") {
            self.referenced(node, RefKind::PersistentVolumeClaim, a)
        } else {
            Decision::NoOpinion
        }
    }

    fn token(&self, node: &str, a: &Attributes) -> Decision {
        if a.verb != "create" || a.subresource != "token" {
            return Decision::NoOpinion;
        }
        self.referenced(node, RefKind::ServiceAccount, a)
    }
}

/// Its own object by name, of a kind a node creates for itself: the name of
/// a create is not known here (NodeRestriction checks it).
fn own_object(node: &str, a: &Attributes) -> Decision {
    let verbs = matches!(
        a.verb.as_str(),
        "get" | "create" | "update" | "patch" | "delete"
    );
    if verbs && a.subresource.is_empty() && (a.verb == "create" || a.name == node) {
        Decision::Allow
    } else {
        Decision::NoOpinion
    }
}

impl Authorizer for NodeAuthorizer {
    fn authorize(&self, a: &Attributes) -> Decision {
        let Some(node) = node_name(&a.user).filter(|n| !n.is_empty()) else {
            return Decision::NoOpinion;
        };
        if !a.resource_request {
            return Decision::NoOpinion;
        }
        match (a.api_group.as_str(), a.resource.as_str()) {
            ("", "secrets") => self.read_referenced(node, RefKind::Secret, a),
            ("", "configmaps") => self.read_referenced(node, RefKind::ConfigMap, a),
            ("", "persistentvolumeclaims") if a.subresource == "status" => {
                self.claim_status(node, a)
            }
            ("", "persistentvolumeclaims") => {
                self.get_referenced(node, RefKind::PersistentVolumeClaim, a)
            }
            ("", "persistentvolumes") => self.volume(node, a),
            ("", "serviceaccounts") => self.token(node, a),
            ("coordination.k8s.io", "leases") if a.namespace == NODE_LEASE_NAMESPACE => {
                own_object(node, a)
            }
            ("coordination.k8s.io", "leases") => Decision::NoOpinion,
            ("storage.k8s.io", "csinodes") => own_object(node, a),
            _ if rules::allows(a) => Decision::Allow,
            _ => Decision::NoOpinion,
        }
    }
}
