//! The pod cache indexed by controller, as client-go's informer indexers
//! are used: a sync looks only at the pods its replica set controls and
//! at the orphans of its namespace, not at every pod of the cluster (a
//! cluster of 150,000 pods would make each sync a scan of all of them).
//! The index follows the same watch events as the cache, and a re-list
//! rebuilds it aside and swaps it in when the list is complete, as the
//! cache itself does.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher::Event;

/// Which bucket a pod is in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    /// Controlled by the object with this uid.
    Owner(String),
    /// No controller: a candidate for adoption in this namespace.
    Orphan(String),
}

#[derive(Debug, Default)]
struct Buckets {
    key: HashMap<ObjectRef<Pod>, Key>,
    members: HashMap<Key, HashSet<ObjectRef<Pod>>>,
}

impl Buckets {
    fn put(&mut self, pod: &Pod) {
        let r = ObjectRef::from_obj(pod);
        let key = match super::pods::controller_of(&pod.metadata) {
            Some(c) => Key::Owner(c.uid.clone()),
            None => Key::Orphan(pod.metadata.namespace.clone().unwrap_or_default()),
        };
        if self.key.get(&r) == Some(&key) {
            return;
        }
        self.remove(&r);
        self.members
            .entry(key.clone())
            .or_default()
            .insert(r.clone());
        self.key.insert(r, key);
    }

    fn remove(&mut self, r: &ObjectRef<Pod>) {
        if let Some(old) = self.key.remove(r)
            && let Some(set) = self.members.get_mut(&old)
        {
            set.remove(r);
            if set.is_empty() {
                self.members.remove(&old);
            }
        }
    }

    fn list(&self, key: &Key) -> Vec<ObjectRef<Pod>> {
        self.members
            .get(key)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// Pods by controller uid, and orphans by namespace.
#[derive(Debug, Default)]
pub struct OwnerIndex {
    live: Mutex<Buckets>,
    /// Being rebuilt from a re-list, swapped in at its end.
    building: Mutex<Option<Buckets>>,
}

impl OwnerIndex {
    /// Follow one watch event (after the cache applied it).
    pub fn apply(&self, ev: &Event<Pod>) {
        match ev {
            Event::Apply(p) => self.with_live(|b| b.put(p)),
            Event::Delete(p) => self.with_live(|b| b.remove(&ObjectRef::from_obj(p))),
            Event::Init => *self.building_guard() = Some(Buckets::default()),
            Event::InitApply(p) => {
                if let Some(b) = self.building_guard().as_mut() {
                    b.put(p);
                }
            }
            Event::InitDone => {
                if let Some(b) = self.building_guard().take() {
                    self.with_live(|live| *live = b);
                }
            }
        }
    }

    fn with_live<T>(&self, f: impl FnOnce(&mut Buckets) -> T) -> T {
        let mut g = self.live.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut g)
    }

    fn building_guard(&self) -> std::sync::MutexGuard<'_, Option<Buckets>> {
        self.building.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The pods the object with `uid` controls.
    pub fn owned(&self, uid: &str) -> Vec<ObjectRef<Pod>> {
        self.with_live(|b| b.list(&Key::Owner(uid.to_string())))
    }

    /// The pods of `namespace` that no controller controls.
    pub fn orphans(&self, namespace: &str) -> Vec<ObjectRef<Pod>> {
        self.with_live(|b| b.list(&Key::Orphan(namespace.to_string())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

    fn pod(name: &str, owner: Option<&str>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                owner_references: owner.map(|u| {
                    vec![OwnerReference {
                        uid: u.into(),
                        controller: Some(true),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn names(refs: Vec<ObjectRef<Pod>>) -> Vec<String> {
        let mut v: Vec<String> = refs.into_iter().map(|r| r.name).collect();
        v.sort();
        v
    }

    #[test]
    fn follows_adoption_release_deletion_and_relists() {
        let idx = OwnerIndex::default();
        idx.apply(&Event::Apply(pod("a", Some("rs1"))));
        idx.apply(&Event::Apply(pod("b", None)));
        assert_eq!(names(idx.owned("rs1")), ["a"]);
        assert_eq!(names(idx.orphans("ns")), ["b"]);
        // Adopted, released.
        idx.apply(&Event::Apply(pod("b", Some("rs1"))));
        idx.apply(&Event::Apply(pod("a", None)));
        assert_eq!(names(idx.owned("rs1")), ["b"]);
        assert_eq!(names(idx.orphans("ns")), ["a"]);
        idx.apply(&Event::Delete(pod("b", Some("rs1"))));
        assert!(idx.owned("rs1").is_empty());
        // A re-list replaces everything once complete.
        idx.apply(&Event::Init);
        idx.apply(&Event::InitApply(pod("c", Some("rs2"))));
        assert_eq!(
            names(idx.orphans("ns")),
            ["a"],
            "the old view until the list is in"
        );
        idx.apply(&Event::InitDone);
        assert!(idx.orphans("ns").is_empty());
        assert_eq!(names(idx.owned("rs2")), ["c"]);
    }
}
