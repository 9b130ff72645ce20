//! The watch cache's state: per resource (`/registry/<group>/<plural>/`),
//! the current objects ordered by key, the node index, a ring of the most
//! recent events (where watches start) and the broadcast that fans every
//! new event out to that resource's watchers. One writer (the reflector)
//! changes it; readers copy out `Arc`s under the lock and work outside it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use keel_store::{Event, KeyValue};
use tokio::sync::broadcast;

use super::event::CachedEvent;
use super::index::{self, FieldIndex};

/// Events kept per resource for watches that start at a past revision: at
/// 1,000 writes/s, four seconds. Older starts go to the store.
pub const RING: usize = 4096;

/// Messages a watcher may fall behind its resource's newest before it is
/// cut off (its watch ends; the client watches again from its last
/// revision). Sized so a thousand watchers of one resource on two cores
/// never get there at a thousand writes a second.
pub const FANOUT_BUFFER: usize = 8192;

/// The prefix every cached key has; the reflector watches it as one.
pub const ROOT: &str = "/registry/";

/// An object as the cache holds it.
pub struct Object {
    pub kv: KeyValue,
    /// `spec.nodeName` as a selector reads it, for resources with a node index.
    node: Option<String>,
    /// Whether the API can serve it (a JSON object with an object
    /// `metadata`), known before a streamed LIST starts.
    decodes: bool,
}

impl Object {
    pub fn decodes(&self) -> bool {
        self.decodes
    }
}

/// What a resource's watchers receive.
#[derive(Clone)]
pub enum Msg {
    Event(Arc<CachedEvent>),
    /// Everything up to this revision has been sent (a bookmark).
    Progress(u64),
    /// The cache re-listed: the sequence is broken, every watch ends.
    Reset,
}

/// The resource prefix of a key (`/registry/core/pods/` for
/// `/registry/core/pods/default/web`), `None` for a key of another shape.
pub fn resource_of(key: &str) -> Option<&str> {
    let rest = key.strip_prefix(ROOT)?;
    let group = rest.find('/')?;
    let plural = rest[group + 1..].find('/')?;
    (group > 0 && plural > 0).then(|| &key[..ROOT.len() + group + 1 + plural + 1])
}

/// The resource a LIST or watch prefix reads, if it reads a whole resource
/// or one namespace of it.
pub fn scope_of(prefix: &str) -> Option<&str> {
    let resource = resource_of(prefix)?;
    let rest = &prefix[resource.len()..];
    let whole_namespace = rest
        .strip_suffix('/')
        .is_some_and(|ns| !ns.is_empty() && !ns.contains('/'));
    (rest.is_empty() || whole_namespace).then_some(resource)
}

pub struct Resource {
    objects: BTreeMap<Arc<str>, Arc<Object>>,
    nodes: Option<FieldIndex>,
    ring: VecDeque<Arc<CachedEvent>>,
    /// Every event of this resource after this revision is in `ring`.
    ring_start: u64,
    /// Made when the first watcher comes (its buffer is not free).
    tx: Option<broadcast::Sender<Msg>>,
    /// Whether an event was sent since the last bookmark tick.
    active: bool,
}

impl Resource {
    fn new(resource: &str, ring_start: u64) -> Resource {
        Resource {
            objects: BTreeMap::new(),
            nodes: index::has_node_index(resource).then(FieldIndex::default),
            ring: VecDeque::new(),
            ring_start,
            tx: None,
            active: false,
        }
    }

    fn put(&mut self, kv: KeyValue) {
        let key: Arc<str> = kv.key.as_str().into();
        self.remove(&key);
        let node = self.nodes.as_mut().map(|idx| {
            let node = index::node_name(&kv.value);
            idx.insert(&node, &key);
            node
        });
        let decodes = crate::registry::servable::servable(&kv.value);
        self.objects
            .insert(key, Arc::new(Object { kv, node, decodes }));
    }

    fn remove(&mut self, key: &str) {
        if let Some(old) = self.objects.remove(key)
            && let (Some(idx), Some(node)) = (self.nodes.as_mut(), old.node.as_deref())
        {
            idx.remove(node, key);
        }
    }

    fn apply(&mut self, event: Arc<Event>) {
        match &event.value {
            Some(kv) => self.put(kv.clone()),
            None => self.remove(&event.key),
        }
        let cached = Arc::new(CachedEvent::new(event));
        self.ring.push_back(cached.clone());
        while self.ring.len() > RING {
            if let Some(gone) = self.ring.pop_front() {
                self.ring_start = self.ring_start.max(gone.revision());
            }
        }
        if let Some(tx) = &self.tx {
            // No receiver is not an error: nobody watches now.
            let _ = tx.send(Msg::Event(cached));
        }
        self.active = true;
    }

    /// The object at `key`, if cached.
    pub fn get(&self, key: &str) -> Option<Arc<Object>> {
        self.objects.get(key).cloned()
    }

    /// The objects under `prefix` that can have `spec.nodeName` = `node`
    /// (every object under it when `node` is `None` or not indexed), in key order.
    pub fn select(&self, prefix: &str, node: Option<&str>) -> Vec<Arc<Object>> {
        match (node, &self.nodes) {
            (Some(node), Some(idx)) => idx
                .get(node)
                .filter(|k| k.starts_with(prefix))
                .filter_map(|k| self.objects.get(&**k).cloned())
                .collect(),
            _ => self
                .objects
                .range::<str, _>((
                    std::ops::Bound::Included(prefix),
                    std::ops::Bound::Unbounded,
                ))
                .take_while(|(k, _)| k.starts_with(prefix))
                .map(|(_, o)| o.clone())
                .collect(),
        }
    }

    /// The events under `prefix` after `after` held in the ring, and a
    /// receiver of every later one; `None` when the ring no longer reaches
    /// back to `after`.
    pub fn subscribe(
        &mut self,
        prefix: &str,
        after: u64,
    ) -> Option<(VecDeque<Arc<CachedEvent>>, broadcast::Receiver<Msg>)> {
        if after < self.ring_start {
            return None;
        }
        let from = self.ring.partition_point(|e| e.revision() <= after);
        let backlog = self
            .ring
            .range(from..)
            .filter(|e| e.key().starts_with(prefix))
            .cloned()
            .collect();
        let rx = self
            .tx
            .get_or_insert_with(|| broadcast::channel(FANOUT_BUFFER).0)
            .subscribe();
        Some((backlog, rx))
    }

    pub fn len(&self) -> usize {
        self.objects.len()
    }

    pub fn watchers(&self) -> usize {
        self.tx.as_ref().map_or(0, |tx| tx.receiver_count())
    }

    pub fn ring_len(&self) -> usize {
        self.ring.len()
    }

    fn end_watches(&mut self) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Msg::Reset);
        }
    }
}

/// Every cached resource, and how far the cache has followed the store.
#[derive(Default)]
pub struct State {
    /// Every change up to this revision is applied.
    pub revision: u64,
    /// The revision of the last full list (every event after it was seen).
    pub list_revision: u64,
    /// Whether a first list has completed; until then everything is read
    /// from the store.
    pub synced: bool,
    /// Times the cache listed everything again (a compacted resume).
    pub relists: u64,
    pub resources: HashMap<String, Resource>,
}

impl State {
    /// The resources of a list read at `revision`, built without the lock
    /// (indexing 150,000 pods takes a while) for [`State::replace`].
    pub fn build(revision: u64, kvs: Vec<KeyValue>) -> HashMap<String, Resource> {
        let mut resources = HashMap::new();
        for kv in kvs {
            if let Some(res) = resource_of(&kv.key) {
                resources
                    .entry(res.to_string())
                    .or_insert_with(|| Resource::new(res, revision))
                    .put(kv);
            }
        }
        resources
    }

    /// Replace everything with `resources`, [built](State::build) from a
    /// list read at `revision`. Every open watch ends: the events between
    /// its position and `revision` are unknown.
    pub fn replace(&mut self, revision: u64, resources: HashMap<String, Resource>) {
        for r in self.resources.values_mut() {
            r.end_watches();
        }
        self.resources = resources;
        self.list_revision = revision;
        self.relists += u64::from(self.synced);
        self.revision = revision;
        self.synced = true;
    }

    /// Apply the events of one revision.
    pub fn apply(&mut self, revision: u64, events: &[Arc<Event>]) {
        let start = self.list_revision;
        for e in events {
            if let Some(res) = resource_of(&e.key) {
                self.resources
                    .entry(res.to_string())
                    .or_insert_with(|| Resource::new(res, start))
                    .apply(e.clone());
            }
        }
        self.revision = self.revision.max(revision);
    }

    /// The resource `name`, made empty if nothing of it was seen yet.
    pub fn resource(&mut self, name: &str) -> &mut Resource {
        let start = self.list_revision;
        self.resources
            .entry(name.to_string())
            .or_insert_with(|| Resource::new(name, start))
    }

    /// Everything up to `revision` has been seen (a store progress
    /// notification): bookmarks for every resource's watchers.
    pub fn progress(&mut self, revision: u64) {
        self.revision = self.revision.max(revision);
        for r in self.resources.values_mut() {
            if let Some(tx) = &r.tx {
                let _ = tx.send(Msg::Progress(self.revision));
            }
        }
    }

    /// A bookmark for the watchers of every resource that had no event
    /// since the last tick (the store's own progress notifications stop
    /// while anything at all is written).
    pub fn tick(&mut self) {
        for r in self.resources.values_mut() {
            if !std::mem::take(&mut r.active)
                && let Some(tx) = &r.tx
            {
                let _ = tx.send(Msg::Progress(self.revision));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_prefixes_map_to_their_resource() {
        assert_eq!(
            resource_of("/registry/core/pods/default/web"),
            Some("/registry/core/pods/")
        );
        assert_eq!(
            resource_of("/registry/core/namespaces/default"),
            Some("/registry/core/namespaces/")
        );
        assert_eq!(resource_of("/registry/core/pods"), None);
        assert_eq!(resource_of("/registry//pods/x"), None);
        assert_eq!(resource_of("/other/core/pods/x"), None);
        assert_eq!(
            scope_of("/registry/core/pods/"),
            Some("/registry/core/pods/")
        );
        assert_eq!(
            scope_of("/registry/core/pods/kube-system/"),
            Some("/registry/core/pods/")
        );
        assert_eq!(scope_of("/registry/core/pods/kube-system/web"), None);
        assert_eq!(scope_of("/registry/core/pods/a/b/"), None);
        assert_eq!(scope_of("/registry/"), None);
    }
}
