//! The garbage collector's picture of the cluster: every object it watches,
//! keyed by uid, with its ownerReferences and an index from an owner's uid
//! to its dependents. Updating the graph says which objects to look at
//! again; [`decide`] is the rule that turns the owners' states into what to
//! do with a dependent. Pure data, no I/O: what the tests below exercise.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use kube::api::PropagationPolicy;
use serde_json::Value;

use crate::discovery::ResourceInfo;

/// The finalizer that holds an owner until its blocking dependents are gone.
pub const FOREGROUND: &str = "foregroundDeletion";
/// The finalizer that holds an owner until its dependents no longer point at it.
pub const ORPHAN: &str = "orphan";

/// One entry of `metadata.ownerReferences`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerRef {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub uid: String,
    pub block_owner_deletion: bool,
}

impl OwnerRef {
    /// The references of a JSON object (`metadata.ownerReferences`); an
    /// entry without a uid cannot name an owner and is skipped.
    pub fn all_of(obj: &Value) -> Vec<OwnerRef> {
        let Some(refs) = obj
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
        else {
            return Vec::new();
        };
        refs.iter()
            .filter_map(|r| {
                let s = |k: &str| {
                    r.get(k)
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string()
                };
                let uid = s("uid");
                (!uid.is_empty()).then(|| OwnerRef {
                    api_version: s("apiVersion"),
                    kind: s("kind"),
                    name: s("name"),
                    uid,
                    block_owner_deletion: r.get("blockOwnerDeletion").and_then(Value::as_bool)
                        == Some(true),
                })
            })
            .collect()
    }
}

/// What the collector keeps of one object.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub uid: String,
    pub namespace: Option<String>,
    pub name: String,
    pub resource: Arc<ResourceInfo>,
    pub owners: Vec<OwnerRef>,
    /// `metadata.deletionTimestamp` is set.
    pub deleting: bool,
    pub finalizers: Vec<String>,
}

impl Node {
    /// The node of a JSON object of `resource`; `None` without a uid or name.
    pub fn of(obj: &Value, resource: Arc<ResourceInfo>) -> Option<Node> {
        let m = obj.get("metadata")?;
        let s = |k: &str| {
            m.get(k)
                .and_then(Value::as_str)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        Some(Node {
            uid: s("uid")?,
            name: s("name")?,
            namespace: s("namespace"),
            owners: OwnerRef::all_of(obj),
            deleting: s("deletionTimestamp").is_some(),
            finalizers: crate::raw::finalizers(obj),
            resource,
        })
    }

    pub fn has_finalizer(&self, f: &str) -> bool {
        self.finalizers.iter().any(|x| x == f)
    }

    /// Deleted in the foreground: waiting for its dependents to go.
    pub fn deleting_dependents(&self) -> bool {
        self.deleting && self.has_finalizer(FOREGROUND)
    }

    /// Deleted with the orphan policy: waiting for its dependents to be released.
    pub fn orphaning(&self) -> bool {
        self.deleting && self.has_finalizer(ORPHAN)
    }

    /// Whether the collector has work for this node on its own account.
    fn needs_attention(&self) -> bool {
        !self.owners.is_empty() || self.deleting_dependents() || self.orphaning()
    }
}

/// Objects by uid, and dependents by owner uid.
#[derive(Debug, Default)]
pub struct Graph {
    nodes: HashMap<String, Node>,
    dependents: HashMap<String, BTreeSet<String>>,
}

impl Graph {
    pub fn get(&self, uid: &str) -> Option<&Node> {
        self.nodes.get(uid)
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Record an added or changed object; returns the uids to look at.
    pub fn upsert(&mut self, node: Node) -> Vec<String> {
        let uid = node.uid.clone();
        let old = self.nodes.insert(uid.clone(), node.clone());
        let mut out = Vec::new();
        let changed = match &old {
            None => true,
            Some(o) => {
                o.owners != node.owners
                    || o.deleting != node.deleting
                    || o.finalizers != node.finalizers
            }
        };
        if !changed {
            return out;
        }
        if let Some(o) = &old {
            for r in &o.owners {
                if let Some(d) = self.dependents.get_mut(&r.uid) {
                    d.remove(&uid);
                    if d.is_empty() {
                        self.dependents.remove(&r.uid);
                    }
                }
            }
        }
        for r in &node.owners {
            self.dependents
                .entry(r.uid.clone())
                .or_default()
                .insert(uid.clone());
        }
        if node.needs_attention() {
            out.push(uid.clone());
        }
        // An owner just entering foreground deletion: its dependents go first.
        let was_waiting = old.as_ref().is_some_and(Node::deleting_dependents);
        if node.deleting_dependents() && !was_waiting {
            out.extend(self.dependents.get(&uid).into_iter().flatten().cloned());
        }
        // An owner waiting on its dependents sees a change of theirs.
        self.push_waiting_owners(old.iter().chain([&node]), &mut out);
        out.sort();
        out.dedup();
        out
    }

    /// Forget a deleted object; returns the uids to look at: its
    /// dependents (their owner is gone) and owners waiting on it.
    pub fn remove(&mut self, uid: &str) -> Vec<String> {
        let mut out: Vec<String> = self
            .dependents
            .get(uid)
            .into_iter()
            .flatten()
            .cloned()
            .collect();
        if let Some(node) = self.nodes.remove(uid) {
            for r in &node.owners {
                if let Some(d) = self.dependents.get_mut(&r.uid) {
                    d.remove(uid);
                    if d.is_empty() {
                        self.dependents.remove(&r.uid);
                    }
                }
            }
            self.push_waiting_owners([&node], &mut out);
        }
        out.sort();
        out.dedup();
        out
    }

    fn push_waiting_owners<'a>(
        &self,
        nodes: impl IntoIterator<Item = &'a Node>,
        out: &mut Vec<String>,
    ) {
        for n in nodes {
            for r in &n.owners {
                if self
                    .nodes
                    .get(&r.uid)
                    .is_some_and(Node::deleting_dependents)
                {
                    out.push(r.uid.clone());
                }
            }
        }
    }

    /// The uids of every node of `resource` (for a relist: those not listed again are gone).
    pub fn uids_of(&self, resource: &ResourceInfo) -> Vec<String> {
        self.nodes
            .values()
            .filter(|n| {
                n.resource.ar.group == resource.ar.group
                    && n.resource.ar.plural == resource.ar.plural
            })
            .map(|n| n.uid.clone())
            .collect()
    }

    /// The objects whose ownerReferences name `owner`.
    pub fn dependents_of(&self, owner: &str) -> Vec<&Node> {
        self.dependents
            .get(owner)
            .into_iter()
            .flatten()
            .filter_map(|d| self.nodes.get(d))
            .collect()
    }

    /// Dependents that hold `owner`'s foreground deletion: their reference
    /// to it has `blockOwnerDeletion: true`.
    pub fn blocking_dependents(&self, owner: &str) -> Vec<&Node> {
        self.dependents_of(owner)
            .into_iter()
            .filter(|d| {
                d.owners
                    .iter()
                    .any(|r| r.uid == owner && r.block_owner_deletion)
            })
            .collect()
    }

    /// Whether `uid` has dependents.
    pub fn has_dependents(&self, uid: &str) -> bool {
        !self.dependents_of(uid).is_empty()
    }
}

/// What an owner reference resolved to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerState {
    /// The owner exists (same uid) and is not deleting its dependents.
    Live,
    /// The owner exists and is in foreground deletion.
    WaitingForDependents,
    /// No object of that name and uid exists where the reference points.
    Absent,
    /// The reference cannot be resolved (unknown kind, or a namespaced
    /// owner of a cluster-scoped object): it keeps the dependent, as in
    /// Kubernetes, where such a dependent is never collected for it.
    Unresolvable,
}

/// What to do with a dependent.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Keep,
    /// Some owner is alive: drop the references (by uid) to absent owners
    /// and to owners deleting their dependents.
    RemoveRefs(Vec<String>),
    /// No owner is alive: delete the dependent with this policy.
    Delete(PropagationPolicy),
}

/// Kubernetes' rule for a dependent with `refs` whose owners are in
/// `states` (same order). `has_dependents`: the dependent owns objects
/// itself; `finalizers`: its own.
pub fn decide(
    refs: &[OwnerRef],
    states: &[OwnerState],
    has_dependents: bool,
    finalizers: &[String],
) -> Decision {
    if refs.is_empty() {
        return Decision::Keep;
    }
    let mut solid = false;
    let mut waiting = false;
    let mut drop = Vec::new();
    for (r, s) in refs.iter().zip(states) {
        match s {
            OwnerState::Live | OwnerState::Unresolvable => solid = true,
            OwnerState::Absent => drop.push(r.uid.clone()),
            OwnerState::WaitingForDependents => {
                waiting = true;
                drop.push(r.uid.clone());
            }
        }
    }
    if solid {
        return if drop.is_empty() {
            Decision::Keep
        } else {
            Decision::RemoveRefs(drop)
        };
    }
    let has = |f: &str| finalizers.iter().any(|x| x == f);
    // An owner deleting in the foreground waits for this dependent, so the
    // dependent's own dependents must go before it does.
    if waiting && has_dependents {
        Decision::Delete(PropagationPolicy::Foreground)
    } else if has(ORPHAN) {
        Decision::Delete(PropagationPolicy::Orphan)
    } else if has(FOREGROUND) {
        Decision::Delete(PropagationPolicy::Foreground)
    } else {
        Decision::Delete(PropagationPolicy::Background)
    }
}

#[cfg(test)]
mod tests;
