//! The scheduler's view of the cluster, kept from its watches as
//! kube-scheduler's cache is: per node what its pods request (pods count
//! included), the host ports they hold and which pods run there; pods it
//! bound but has not yet seen bound in its watch are *assumed* on their node
//! so that the next pod does not get the same room. An assumed pod is
//! confirmed by the watch, forgotten when its binding fails, and expires
//! if the watch never shows it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod, PodAffinityTerm};

use super::labels::Labels;
use super::quantity::{self, Resources};

/// A pod's namespace and name.
pub type PodKey = (String, String);

/// How long an assumed pod counts on its node without the watch confirming it.
pub const ASSUME_TTL: Duration = Duration::from_secs(120);

/// A port a pod takes on its node's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    pub ip: String,
    pub protocol: String,
    pub port: i32,
}

impl HostPort {
    /// Whether two pods asking for these ports could not share a node: same
    /// protocol and port, and an address in common (0.0.0.0 is every address).
    pub fn conflicts(&self, other: &HostPort) -> bool {
        self.protocol == other.protocol
            && self.port == other.port
            && (self.ip == other.ip || self.ip == "0.0.0.0" || other.ip == "0.0.0.0")
    }

    /// The host ports the pod's containers ask for.
    pub fn of(pod: &Pod) -> Vec<HostPort> {
        let Some(spec) = &pod.spec else {
            return Vec::new();
        };
        spec.containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .flat_map(|c| c.ports.iter().flatten())
            .filter_map(|p| {
                let port = p.host_port.filter(|h| *h > 0)?;
                Some(HostPort {
                    ip: p
                        .host_ip
                        .clone()
                        .filter(|ip| !ip.is_empty())
                        .unwrap_or_else(|| "0.0.0.0".into()),
                    protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                    port,
                })
            })
            .collect()
    }
}

/// What the scheduler remembers of a pod bound (or assumed) to a node.
#[derive(Debug, Clone)]
pub struct PodInfo {
    pub namespace: String,
    pub name: String,
    pub node: String,
    pub labels: Labels,
    pub requests: Resources,
    /// CPU and memory with the scoring defaults for containers without requests.
    pub non_zero: (i128, i128),
    pub ports: Vec<HostPort>,
    /// Its required pod anti-affinity terms, which later pods must respect.
    pub anti_affinity: Vec<PodAffinityTerm>,
}

impl PodInfo {
    pub fn of(pod: &Pod, node: &str) -> PodInfo {
        let spec = pod.spec.clone().unwrap_or_default();
        PodInfo {
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            node: node.to_string(),
            labels: pod.metadata.labels.clone().unwrap_or_default(),
            requests: quantity::pod_requests(&spec),
            non_zero: quantity::non_zero_requests(&spec),
            ports: HostPort::of(pod),
            anti_affinity: required_anti_affinity(pod),
        }
    }

    pub fn key(&self) -> PodKey {
        (self.namespace.clone(), self.name.clone())
    }
}

/// The pod's requiredDuringSchedulingIgnoredDuringExecution anti-affinity terms.
pub fn required_anti_affinity(pod: &Pod) -> Vec<PodAffinityTerm> {
    pod.spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.pod_anti_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .clone()
        })
        .unwrap_or_default()
}

/// The pod's requiredDuringSchedulingIgnoredDuringExecution affinity terms.
pub fn required_affinity(pod: &Pod) -> Vec<PodAffinityTerm> {
    pod.spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.pod_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .clone()
        })
        .unwrap_or_default()
}

/// A node and what its pods take.
#[derive(Debug, Clone, Default)]
pub struct NodeInfo {
    /// `None` while pods name a node the watch has not shown (or deleted).
    pub node: Option<Arc<Node>>,
    /// The node's allocatable, parsed once per node update.
    pub allocatable: Resources,
    pub requested: Resources,
    pub non_zero: (i128, i128),
    pub pods: BTreeSet<PodKey>,
    pub ports: Vec<HostPort>,
}

impl NodeInfo {
    fn add(&mut self, p: &PodInfo) {
        quantity::add(&mut self.requested, &p.requests);
        self.non_zero.0 += p.non_zero.0;
        self.non_zero.1 += p.non_zero.1;
        self.pods.insert(p.key());
        self.ports.extend(p.ports.iter().cloned());
    }

    fn remove(&mut self, p: &PodInfo) {
        quantity::sub(&mut self.requested, &p.requests);
        self.non_zero.0 -= p.non_zero.0;
        self.non_zero.1 -= p.non_zero.1;
        self.pods.remove(&p.key());
        for port in &p.ports {
            if let Some(i) = self.ports.iter().position(|q| q == port) {
                self.ports.swap_remove(i);
            }
        }
    }

    /// The node with pods of its own, for tests and planning.
    pub fn with_pods(node: Node, pods: &[PodInfo]) -> NodeInfo {
        let mut n = NodeInfo {
            allocatable: quantity::allocatable(&node),
            node: Some(Arc::new(node)),
            ..Default::default()
        };
        for p in pods {
            n.add(p);
        }
        n
    }
}

/// Nodes and the pods bound or assumed on them.
#[derive(Debug, Default)]
pub struct Cache {
    nodes: BTreeMap<String, NodeInfo>,
    pods: HashMap<PodKey, PodInfo>,
    /// Pods bound by this scheduler that the watch has not confirmed, and
    /// when they stop counting.
    assumed: HashMap<PodKey, Instant>,
    /// Pods with required anti-affinity terms: every candidate pod is
    /// checked against them.
    with_anti_affinity: BTreeSet<PodKey>,
}

/// The parts of a node that scheduling decisions read; a heartbeat that
/// changes none of them does not make unschedulable pods worth a new try.
fn scheduling_view(n: &Node) -> serde_json::Value {
    let ready = n
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.status.clone());
    serde_json::json!([
        n.metadata.labels,
        n.spec.as_ref().map(|s| (&s.taints, s.unschedulable)),
        n.status.as_ref().map(|s| (&s.allocatable, &s.capacity)),
        ready
    ])
}

impl Cache {
    /// Record `node`; true when it is new or changed in a way that matters.
    pub fn set_node(&mut self, node: Node) -> bool {
        let name = node.metadata.name.clone().unwrap_or_default();
        let info = self.nodes.entry(name).or_default();
        let changed = info
            .node
            .as_ref()
            .is_none_or(|old| scheduling_view(old) != scheduling_view(&node));
        info.allocatable = quantity::allocatable(&node);
        info.node = Some(Arc::new(node));
        changed
    }

    pub fn remove_node(&mut self, name: &str) {
        if let Some(info) = self.nodes.get_mut(name) {
            info.node = None;
            if info.pods.is_empty() {
                self.nodes.remove(name);
            }
        }
    }

    /// Keep only the nodes in `names` (after a re-list).
    pub fn retain_nodes(&mut self, names: &BTreeSet<String>) {
        let gone: Vec<String> = self
            .nodes
            .keys()
            .filter(|n| !names.contains(*n))
            .cloned()
            .collect();
        for n in gone {
            self.remove_node(&n);
        }
    }

    /// Record a pod bound to a node (seen in the watch): it replaces what
    /// was known of it, assumed or not.
    pub fn add_pod(&mut self, info: PodInfo) {
        let key = info.key();
        self.remove_pod(&key);
        self.insert(info);
    }

    fn insert(&mut self, info: PodInfo) {
        let key = info.key();
        self.nodes.entry(info.node.clone()).or_default().add(&info);
        if !info.anti_affinity.is_empty() {
            self.with_anti_affinity.insert(key.clone());
        }
        self.pods.insert(key, info);
    }

    /// Forget a pod (deleted, finished, or its assumption failed); true
    /// when it held room on a node.
    pub fn remove_pod(&mut self, key: &PodKey) -> bool {
        self.assumed.remove(key);
        self.with_anti_affinity.remove(key);
        let Some(info) = self.pods.remove(key) else {
            return false;
        };
        if let Some(n) = self.nodes.get_mut(&info.node) {
            n.remove(&info);
            if n.node.is_none() && n.pods.is_empty() {
                self.nodes.remove(&info.node);
            }
        }
        true
    }

    /// Count `info` on its node until the watch confirms it or `now + ttl`.
    pub fn assume(&mut self, info: PodInfo, now: Instant) {
        let key = info.key();
        self.remove_pod(&key);
        self.insert(info);
        self.assumed.insert(key, now + ASSUME_TTL);
    }

    /// Undo [`Cache::assume`] (the binding failed).
    pub fn forget(&mut self, key: &PodKey) {
        if self.assumed.contains_key(key) {
            self.remove_pod(key);
        }
    }

    pub fn is_assumed(&self, key: &PodKey) -> bool {
        self.assumed.contains_key(key)
    }

    /// Whether the pod counts on a node (bound or assumed).
    pub fn has_pod(&self, key: &PodKey) -> bool {
        self.pods.contains_key(key)
    }

    /// Drop assumptions the watch never confirmed; true if any was dropped.
    pub fn expire(&mut self, now: Instant) -> bool {
        let stale: Vec<PodKey> = self
            .assumed
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for k in &stale {
            tracing::warn!(namespace = %k.0, pod = %k.1, "assumed pod expired: its binding was never seen");
            self.remove_pod(k);
        }
        !stale.is_empty()
    }

    /// Keys of every pod held (for a re-list to drop the ones gone).
    pub fn pod_keys(&self) -> Vec<PodKey> {
        self.pods.keys().cloned().collect()
    }

    /// Nodes the watch has shown, in name order.
    pub fn nodes(&self) -> impl Iterator<Item = &NodeInfo> {
        self.nodes.values().filter(|n| n.node.is_some())
    }

    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.nodes.get(name)
    }

    pub fn node_count(&self) -> usize {
        self.nodes().count()
    }

    /// The pod of `key`, if it is on a node.
    pub fn pod(&self, key: &PodKey) -> Option<&PodInfo> {
        self.pods.get(key)
    }

    /// Every pod on a node.
    pub fn pods(&self) -> impl Iterator<Item = &PodInfo> {
        self.pods.values()
    }

    /// Pods whose required anti-affinity a new pod must respect.
    pub fn pods_with_anti_affinity(&self) -> impl Iterator<Item = &PodInfo> {
        self.with_anti_affinity
            .iter()
            .filter_map(|k| self.pods.get(k))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, ContainerPort, PodSpec, ResourceRequirements};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod(name: &str, cpu: &str, host_port: Option<i32>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    resources: Some(ResourceRequirements {
                        requests: Some([("cpu".to_string(), Quantity(cpu.into()))].into()),
                        ..Default::default()
                    }),
                    ports: host_port.map(|p| {
                        vec![ContainerPort {
                            container_port: 80,
                            host_port: Some(p),
                            ..Default::default()
                        }]
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn node(name: &str) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn assumed_pods_count_until_confirmed_forgotten_or_expired() {
        let mut c = Cache::default();
        assert!(c.set_node(node("n1")));
        assert!(!c.set_node(node("n1")), "an unchanged node is no news");
        let now = Instant::now();
        c.assume(PodInfo::of(&pod("a", "500m", Some(8080)), "n1"), now);
        let n1 = c.node("n1").unwrap();
        assert_eq!(n1.requested["cpu"], 500);
        assert_eq!(n1.requested["pods"], 1000);
        assert_eq!(n1.ports.len(), 1);
        // The watch confirms it: no longer assumed, still counted once.
        c.add_pod(PodInfo::of(&pod("a", "500m", Some(8080)), "n1"));
        assert!(!c.is_assumed(&("ns".into(), "a".into())));
        assert_eq!(c.node("n1").unwrap().requested["cpu"], 500);
        // A failed binding is forgotten; a confirmed pod is not.
        c.assume(PodInfo::of(&pod("b", "1", None), "n1"), now);
        c.forget(&("ns".into(), "a".into()));
        assert_eq!(c.node("n1").unwrap().requested["cpu"], 1500);
        c.forget(&("ns".into(), "b".into()));
        assert_eq!(c.node("n1").unwrap().requested["cpu"], 500);
        // An assumption never confirmed expires.
        c.assume(PodInfo::of(&pod("c", "1", None), "n1"), now);
        assert!(!c.expire(now));
        assert!(c.expire(now + ASSUME_TTL));
        assert_eq!(c.node("n1").unwrap().requested["cpu"], 500);
        // Deleting the pod frees its room and port.
        assert!(c.remove_pod(&("ns".into(), "a".into())));
        let n1 = c.node("n1").unwrap();
        assert_eq!(n1.requested["cpu"], 0);
        assert!(n1.ports.is_empty() && n1.pods.is_empty());
    }

    #[test]
    fn pods_on_unknown_nodes_wait_for_the_node() {
        let mut c = Cache::default();
        c.add_pod(PodInfo::of(&pod("a", "1", None), "later"));
        assert_eq!(c.node_count(), 0);
        c.set_node(node("later"));
        assert_eq!(c.nodes().next().unwrap().requested["cpu"], 1000);
        c.remove_node("later");
        assert_eq!(c.node_count(), 0);
        c.remove_pod(&("ns".into(), "a".into()));
        assert!(c.node("later").is_none());
    }

    #[test]
    fn host_ports_conflict_on_a_shared_address() {
        let p = |ip: &str, proto: &str, port| HostPort {
            ip: ip.into(),
            protocol: proto.into(),
            port,
        };
        assert!(p("0.0.0.0", "TCP", 80).conflicts(&p("10.0.0.1", "TCP", 80)));
        assert!(p("10.0.0.1", "TCP", 80).conflicts(&p("10.0.0.1", "TCP", 80)));
        assert!(!p("10.0.0.1", "TCP", 80).conflicts(&p("10.0.0.2", "TCP", 80)));
        assert!(!p("0.0.0.0", "TCP", 80).conflicts(&p("0.0.0.0", "UDP", 80)));
        assert!(!p("0.0.0.0", "TCP", 80).conflicts(&p("0.0.0.0", "TCP", 81)));
    }
}
