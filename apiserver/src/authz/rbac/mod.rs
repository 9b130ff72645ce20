//! RBAC (`--authorization-mode=RBAC`): Roles, ClusterRoles and their
//! bindings decide what a user may do, from an in-memory [`index`] fed by
//! the watch stream ([`sync`]), never by a store read per request. A rule
//! ([`rule`]) names verbs, API groups, resources (`*`, `pods/status`,
//! `*/scale`), object names and non-resource URLs; aggregated ClusterRoles
//! gather other roles' rules ([`aggregate`]); the default roles and bindings
//! are created on first start ([`bootstrap`]); granting more than one holds
//! is refused at admission ([`escalation`]); access reviews answer
//! `kubectl auth can-i` ([`review`]). The `system:masters` group bypasses
//! all of it ([`PrivilegedGroup`]), as kube-apiserver's first authorizer.

pub mod aggregate;
pub mod bootstrap;
pub mod controllers;
pub mod escalation;
pub mod index;
pub mod review;
pub mod rule;
pub mod sync;

use std::sync::Arc;

use super::{Attributes, Authorizer, Decision};
use crate::registry::Registry;
pub use escalation::Escalation;
pub use index::Index;
pub use rule::Rule;

/// The group whose members may do anything, whatever RBAC says.
pub const MASTERS: &str = "system:masters";

/// Allows every request of a `system:masters` member; no opinion otherwise.
pub struct PrivilegedGroup;

impl Authorizer for PrivilegedGroup {
    fn authorize(&self, a: &Attributes) -> Decision {
        if a.user.groups.iter().any(|g| g == MASTERS) {
            Decision::Allow
        } else {
            Decision::NoOpinion
        }
    }
}

/// The RBAC authorizer over its index.
pub struct Rbac {
    index: Arc<Index>,
}

impl Rbac {
    /// RBAC over an index someone else feeds (tests).
    pub fn new(index: Arc<Index>) -> Rbac {
        Rbac { index }
    }

    /// RBAC for `registry`: the index fed from its storage, the aggregation
    /// controller and the bootstrap of the default policy, each a task.
    pub fn start(registry: &Arc<Registry>) -> Arc<Rbac> {
        let index = Arc::new(Index::default());
        sync::spawn(registry.storage.clone(), index.clone());
        tokio::spawn(aggregate::run(registry.clone(), index.clone()));
        tokio::spawn(bootstrap::run(registry.clone()));
        Arc::new(Rbac { index })
    }

    pub fn index(&self) -> &Arc<Index> {
        &self.index
    }
}

impl Authorizer for Rbac {
    fn authorize(&self, a: &Attributes) -> Decision {
        let namespace = if a.resource_request { &a.namespace } else { "" };
        if self.index.visit(&a.user, namespace, |r| r.allows(a)) {
            Decision::Allow
        } else {
            Decision::NoOpinion
        }
    }
}
