//! Expectations, as Kubernetes' controllers keep them: after a controller
//! creates or deletes pods, its pod cache is behind its own writes until
//! the watch delivers them, and a sync from that cache would create (or
//! delete) the same pods again. So each owner remembers the pods it
//! created (by name) and deleted (by uid), and does not manage its replicas
//! again until the cache has seen every one, or the expectations are
//! older than [`TTL`] (a watch event lost to a re-list).
//!
//! Expectations live in the leader's memory only: a new leader starts
//! from a fresh list, which already holds every pod the old one made.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::{ObjectRef, Store};

/// How long unmet expectations hold an owner back (as Kubernetes' 5 minutes).
pub const TTL: Duration = Duration::from_secs(300);

#[derive(Debug)]
struct Pending {
    /// Names of pods created and not yet seen in the cache.
    creates: HashSet<String>,
    /// Uids of pods deleted and still in the cache without a deletionTimestamp.
    deletes: HashSet<String>,
    since: Instant,
}

/// The pods each owner (by uid) waits to see created or deleted.
#[derive(Debug, Default)]
pub struct Expectations {
    owners: Mutex<HashMap<String, Pending>>,
}

impl Expectations {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, Pending>) -> T) -> T {
        let mut m = self.owners.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut m)
    }

    fn entry<'a>(m: &'a mut HashMap<String, Pending>, owner: &str) -> &'a mut Pending {
        m.entry(owner.to_string()).or_insert_with(|| Pending {
            creates: HashSet::new(),
            deletes: HashSet::new(),
            since: Instant::now(),
        })
    }

    /// `owner` created the pod called `name`.
    pub fn created(&self, owner: &str, name: String) {
        self.with(|m| {
            let p = Self::entry(m, owner);
            p.creates.insert(name);
            p.since = Instant::now();
        })
    }

    /// `owner` deleted the pod with `uid`.
    pub fn deleted(&self, owner: &str, uid: String) {
        self.with(|m| {
            let p = Self::entry(m, owner);
            p.deletes.insert(uid);
            p.since = Instant::now();
        })
    }

    /// The watch delivered `pod` (`gone`: its deletion): it meets the
    /// expectations of its controller.
    pub fn observe(&self, pod: &Pod, gone: bool) {
        let Some(owner) = super::pods::controller_of(&pod.metadata).map(|r| r.uid.clone()) else {
            return;
        };
        self.with(|m| {
            if let Some(p) = m.get_mut(&owner) {
                if let Some(name) = &pod.metadata.name {
                    p.creates.remove(name);
                }
                if (gone || pod.metadata.deletion_timestamp.is_some())
                    && let Some(uid) = &pod.metadata.uid
                {
                    p.deletes.remove(uid);
                }
                if p.creates.is_empty() && p.deletes.is_empty() {
                    m.remove(&owner);
                }
            }
        })
    }

    /// Whether `owner` may manage its replicas from `cache` now: nothing
    /// it wrote is missing from the cache, or it waited [`TTL`].
    /// `owned` are the pods the cache holds for `owner`.
    pub fn satisfied(
        &self,
        owner: &str,
        namespace: &str,
        cache: &Store<Pod>,
        owned: &[Arc<Pod>],
    ) -> bool {
        self.with(|m| {
            let Some(p) = m.get_mut(owner) else {
                return true;
            };
            p.creates
                .retain(|name| cache.get(&ObjectRef::new(name).within(namespace)).is_none());
            p.deletes.retain(|uid| {
                owned.iter().any(|pod| {
                    pod.metadata.uid.as_deref() == Some(uid)
                        && pod.metadata.deletion_timestamp.is_none()
                })
            });
            let done = (p.creates.is_empty() && p.deletes.is_empty()) || p.since.elapsed() > TTL;
            if done {
                m.remove(owner);
            }
            done
        })
    }

    /// Forget `owner` (deleted).
    pub fn forget(&self, owner: &str) {
        self.with(|m| m.remove(owner));
    }
}
