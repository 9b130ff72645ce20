//! The node graph: which node each pod is bound to, what each bound pod
//! references, and which PersistentVolume each claim is bound to, kept in
//! memory from the watch stream ([`super::feed`]). The Node authorizer asks
//! it whether a path node → pod → object exists; nothing here reads the
//! store.

use std::collections::{HashMap, HashSet};
use std::sync::RwLock;

use serde_json::Value;

use super::MIRROR_ANNOTATION;
use super::refs::{PodRefs, RefKind, ServiceAccount, pod_refs};

/// A namespaced object: (namespace, name).
type Key = (String, String);

/// One pod, as the graph keeps it.
#[derive(Clone, Debug, Default)]
struct Pod {
    uid: String,
    /// `spec.nodeName`; "" while unscheduled.
    node: String,
    refs: PodRefs,
}

#[derive(Default)]
struct State {
    pods: HashMap<Key, Pod>,
    /// For each referenced object (kind, namespace, name): the nodes with a
    /// bound pod that references it, and how many such pods each has.
    edges: HashMap<(RefKind, String, String), HashMap<String, u32>>,
    /// Claim → the PersistentVolume it is bound to (`spec.volumeName`).
    claims: HashMap<Key, String>,
    /// PersistentVolume → the claims bound to it.
    volumes: HashMap<String, HashSet<Key>>,
    /// Node name → uid.
    nodes: HashMap<String, String>,
}

/// What the graph follows, each from its own watch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Pods,
    Claims,
    Nodes,
}

impl Source {
    pub const ALL: [Source; 3] = [Source::Pods, Source::Claims, Source::Nodes];

    /// The store key prefix of the resource.
    pub fn prefix(self) -> &'static str {
        match self {
            Source::Pods => "/registry/core/pods/",
            Source::Claims => "/registry/core/persistentvolumeclaims/",
            Source::Nodes => "/registry/core/nodes/",
        }
    }
}

/// The graph; share it as an `Arc`.
#[derive(Default)]
pub struct Graph {
    state: RwLock<State>,
}

/// A pod as admission needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodInfo {
    pub uid: String,
    pub node: String,
}

impl Graph {
    /// Apply one object of `source` stored at `key` (`None`: deleted).
    pub fn apply(&self, source: Source, key: &str, obj: Option<&Value>) {
        let Some(id) = key.strip_prefix(source.prefix()) else {
            return;
        };
        let mut s = self.state.write().unwrap();
        s.apply(source, id, obj);
    }

    /// Replace everything of `source` with `objects` (key, object), as one
    /// change: after a list that starts the watch over.
    pub fn replace(&self, source: Source, objects: &[(String, Value)]) {
        let mut s = self.state.write().unwrap();
        let ids: Vec<String> = match source {
            Source::Pods => s.pods.keys().map(|(n, p)| format!("{n}/{p}")).collect(),
            Source::Claims => s.claims.keys().map(|(n, c)| format!("{n}/{c}")).collect(),
            Source::Nodes => s.nodes.keys().cloned().collect(),
        };
        for id in ids {
            s.apply(source, &id, None);
        }
        for (key, obj) in objects {
            if let Some(id) = key.strip_prefix(source.prefix()) {
                s.apply(source, id, Some(obj));
            }
        }
    }

    /// Whether a pod bound to `node` references the `kind` object
    /// `namespace`/`name`.
    pub fn references(&self, node: &str, kind: RefKind, namespace: &str, name: &str) -> bool {
        let s = self.state.read().unwrap();
        s.edges
            .get(&(kind, namespace.to_string(), name.to_string()))
            .is_some_and(|nodes| nodes.contains_key(node))
    }

    /// Whether a pod bound to `node` references a claim bound to the
    /// PersistentVolume `pv`.
    pub fn volume_on(&self, node: &str, pv: &str) -> bool {
        let s = self.state.read().unwrap();
        s.volumes.get(pv).is_some_and(|claims| {
            claims.iter().any(|(ns, claim)| {
                s.edges
                    .get(&(RefKind::PersistentVolumeClaim, ns.clone(), claim.clone()))
                    .is_some_and(|nodes| nodes.contains_key(node))
            })
        })
    }

    /// The pod `namespace`/`name`, if the graph has seen it.
    pub fn pod(&self, namespace: &str, name: &str) -> Option<PodInfo> {
        let s = self.state.read().unwrap();
        s.pods
            .get(&(namespace.to_string(), name.to_string()))
            .map(|p| PodInfo {
                uid: p.uid.clone(),
                node: p.node.clone(),
            })
    }

    /// The uid of the Node `name`, if the graph has seen it.
    pub fn node_uid(&self, name: &str) -> Option<String> {
        self.state.read().unwrap().nodes.get(name).cloned()
    }
}

/// A pod without a ServiceAccount name runs as "default" once admitted,
/// except a mirror pod, which runs as none: counting "default" for it would
/// let a node reach a namespace's token by creating a mirror pod there.
fn service_account(pod: &Value) -> ServiceAccount {
    let mirror = pod
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .is_some_and(|a| a.contains_key(MIRROR_ANNOTATION));
    if mirror {
        ServiceAccount::Named
    } else {
        ServiceAccount::Defaulted
    }
}

fn split(id: &str) -> Option<Key> {
    let (ns, name) = id.split_once('/')?;
    Some((ns.to_string(), name.to_string()))
}

fn text(v: &Value, pointer: &str) -> String {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

impl State {
    fn apply(&mut self, source: Source, id: &str, obj: Option<&Value>) {
        match source {
            Source::Nodes => {
                match obj {
                    Some(o) => self.nodes.insert(id.to_string(), text(o, "/metadata/uid")),
                    None => self.nodes.remove(id),
                };
            }
            Source::Pods => {
                let Some(key) = split(id) else { return };
                if let Some(old) = self.pods.remove(&key) {
                    self.unlink(&key.0, &old);
                }
                if let Some(o) = obj {
                    let pod = Pod {
                        uid: text(o, "/metadata/uid"),
                        node: text(o, "/spec/nodeName"),
                        refs: pod_refs(o, service_account(o)),
                    };
                    self.link(&key.0, &pod);
                    self.pods.insert(key, pod);
                }
            }
            Source::Claims => {
                let Some(key) = split(id) else { return };
                if let Some(pv) = self.claims.remove(&key)
                    && let Some(claims) = self.volumes.get_mut(&pv)
                {
                    claims.remove(&key);
                    if claims.is_empty() {
                        self.volumes.remove(&pv);
                    }
                }
                let pv = obj.map(|o| text(o, "/spec/volumeName"));
                if let Some(pv) = pv.filter(|pv| !pv.is_empty()) {
                    self.volumes
                        .entry(pv.clone())
                        .or_default()
                        .insert(key.clone());
                    self.claims.insert(key, pv);
                }
            }
        }
    }

    /// Add the edges of a pod; an unscheduled pod has none.
    fn link(&mut self, namespace: &str, pod: &Pod) {
        if pod.node.is_empty() {
            return;
        }
        for (kind, name) in &pod.refs.0 {
            *self
                .edges
                .entry((*kind, namespace.to_string(), name.clone()))
                .or_default()
                .entry(pod.node.clone())
                .or_default() += 1;
        }
    }

    fn unlink(&mut self, namespace: &str, pod: &Pod) {
        if pod.node.is_empty() {
            return;
        }
        for (kind, name) in &pod.refs.0 {
            let edge = (*kind, namespace.to_string(), name.clone());
            let Some(nodes) = self.edges.get_mut(&edge) else {
                continue;
            };
            if let Some(n) = nodes.get_mut(&pod.node) {
                *n -= 1;
                if *n == 0 {
                    nodes.remove(&pod.node);
                }
            }
            if nodes.is_empty() {
                self.edges.remove(&edge);
            }
        }
    }
}
