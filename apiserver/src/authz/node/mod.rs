//! The Node authorizer and NodeRestriction admission: a kubelet, known by
//! the user `system:node:<name>` in the group `system:nodes`, reaches only
//! what the pods bound to its node need, and changes only its own Node,
//! Lease, mirror pods and the status of its pods.
//!
//! - [`graph`]: node → pod → referenced object, kept from the watch stream.
//! - [`feed`]: the watches that keep the graph current.
//! - [`projection`]: what the graph reads of each object, decoded alone.
//! - [`refs`]: what a pod references.
//! - [`authorizer`]: the authorization decisions, first in the chain.
//! - [`rules`]: what every node may do whatever it runs.
//! - [`restriction`]: the NodeRestriction admission plugin.
//! - [`labels`]: which of its own labels a node may set.

pub mod authorizer;
pub mod feed;
pub mod graph;
pub mod labels;
pub mod projection;
pub mod refs;
pub mod restriction;
pub mod rules;
#[cfg(test)]
mod tests;

use std::sync::Arc;

pub use authorizer::NodeAuthorizer;
pub use graph::Graph;
pub use restriction::NodeRestriction;

use crate::http::auth::UserInfo;
use crate::registry::storage::Storage;

/// The group every node is in.
pub const NODES_GROUP: &str = "system:nodes";

/// The prefix of a node's user name.
pub const NODE_USER_PREFIX: &str = "system:node:";

/// The annotation that makes a pod a mirror of a kubelet's static pod.
pub const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// The node `user` is, if it is one: its name (possibly empty) when the
/// user is `system:node:<name>` in the group `system:nodes`.
pub fn node_name(user: &UserInfo) -> Option<&str> {
    if !user.groups.iter().any(|g| g == NODES_GROUP) {
        return None;
    }
    user.name.strip_prefix(NODE_USER_PREFIX)
}

/// A graph fed from `storage`'s watch stream for as long as it is held.
pub fn start(storage: Arc<dyn Storage>) -> Arc<Graph> {
    let graph = Arc::new(Graph::default());
    feed::spawn(&graph, storage);
    graph
}
