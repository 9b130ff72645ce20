//! The Node object a node registers and the status it posts: capacity and
//! allocatable, the well-known labels, the four kubelet conditions and the
//! node's addresses, as the kubelet's `initialNode` and status setters
//! write them. Registration creates the Node, or adopts an existing one
//! of the same name (a restarted node), as the kubelet does.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus,
    NodeSystemInfo, Taint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::PostParams;

use crate::{Error, status_code};

/// The kubelet version hollow nodes report (`kubectl get nodes` VERSION).
pub const KUBELET_VERSION: &str = "v1.33.0-keel";

/// Everything that makes one node what it is.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub name: String,
    /// Capacity (and allocatable: no reservations), as quantities.
    pub cpu: String,
    pub memory: String,
    pub pods: String,
    pub ephemeral_storage: String,
    /// Labels beyond the well-known ones the node sets itself.
    pub labels: BTreeMap<String, String>,
    /// Taints registered with the node (the kubelet's `--register-with-taints`).
    pub taints: Vec<Taint>,
    /// The node's InternalIP (also the pods' hostIP).
    pub internal_ip: String,
    /// The /24 its pods' IPs come from (`spec.podCIDR`).
    pub pod_cidr: String,
}

impl NodeConfig {
    /// A node called `name` whose addresses come from `slot` (unique per
    /// node in a cluster of hollow nodes, below 2^16): InternalIP in
    /// 172.16.0.0/14, pods in 10.<slot>.0/24.
    pub fn new(name: String, slot: u32) -> NodeConfig {
        let slot = slot % 65_536;
        let ip = 0xAC10_0000u32 + slot * 4 + 1;
        NodeConfig {
            name,
            cpu: "4".into(),
            memory: "16Gi".into(),
            pods: "110".into(),
            ephemeral_storage: "100Gi".into(),
            labels: BTreeMap::new(),
            taints: Vec::new(),
            internal_ip: std::net::Ipv4Addr::from(ip).to_string(),
            pod_cidr: format!("10.{}.{}.0/24", slot >> 8, slot & 255),
        }
    }

    /// The labels the node carries: the well-known ones, then `labels`.
    pub fn all_labels(&self) -> BTreeMap<String, String> {
        let mut l = BTreeMap::new();
        l.insert("kubernetes.io/hostname".into(), self.name.clone());
        l.insert("kubernetes.io/os".into(), "linux".into());
        l.insert("kubernetes.io/arch".into(), "amd64".into());
        l.insert("beta.kubernetes.io/os".into(), "linux".into());
        l.insert("beta.kubernetes.io/arch".into(), "amd64".into());
        l.extend(self.labels.clone());
        l
    }

    /// The Node to create at registration, its status posted at `now`.
    pub fn node(&self, now: Timestamp) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                labels: Some(self.all_labels()),
                annotations: Some(BTreeMap::from([(
                    "volumes.kubernetes.io/controller-managed-attach-detach".to_string(),
                    "true".to_string(),
                )])),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                pod_cidr: Some(self.pod_cidr.clone()),
                pod_cidrs: Some(vec![self.pod_cidr.clone()]),
                taints: (!self.taints.is_empty()).then(|| self.taints.clone()),
                ..Default::default()
            }),
            status: Some(self.status(now, now)),
        }
    }

    /// The status the node posts at `now`, Ready since `ready_since`.
    pub fn status(&self, now: Timestamp, ready_since: Timestamp) -> NodeStatus {
        let capacity = BTreeMap::from([
            ("cpu".to_string(), Quantity(self.cpu.clone())),
            ("memory".to_string(), Quantity(self.memory.clone())),
            ("pods".to_string(), Quantity(self.pods.clone())),
            (
                "ephemeral-storage".to_string(),
                Quantity(self.ephemeral_storage.clone()),
            ),
        ]);
        NodeStatus {
            capacity: Some(capacity.clone()),
            allocatable: Some(capacity),
            conditions: Some(conditions(now, ready_since)),
            addresses: Some(vec![
                NodeAddress {
                    type_: "InternalIP".into(),
                    address: self.internal_ip.clone(),
                },
                NodeAddress {
                    type_: "Hostname".into(),
                    address: self.name.clone(),
                },
            ]),
            daemon_endpoints: Some(NodeDaemonEndpoints {
                kubelet_endpoint: Some(DaemonEndpoint { port: 10250 }),
            }),
            node_info: Some(self.system_info()),
            ..Default::default()
        }
    }

    fn system_info(&self) -> NodeSystemInfo {
        // Stable per node name, as a machine's IDs are stable per machine.
        let id = format!(
            "{:032x}",
            u128::from(fnv(&self.name)) * 0x9E37_79B9_7F4A_7C15
        );
        NodeSystemInfo {
            machine_id: id.clone(),
            system_uuid: id.clone(),
            boot_id: id,
            kernel_version: "6.1.0-hollow".into(),
            os_image: "Keel hollow node".into(),
            container_runtime_version: "hollow://0.1.0".into(),
            kubelet_version: KUBELET_VERSION.into(),
            kube_proxy_version: String::new(),
            operating_system: "linux".into(),
            architecture: "amd64".into(),
            ..Default::default()
        }
    }
}

/// The kubelet's four node conditions for a healthy node, heartbeat `now`.
pub fn conditions(now: Timestamp, since: Timestamp) -> Vec<NodeCondition> {
    let c = |type_: &str, status: &str, reason: &str, message: &str| NodeCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_heartbeat_time: Some(Time(now)),
        last_transition_time: Some(Time(since)),
    };
    vec![
        c(
            "MemoryPressure",
            "False",
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available",
        ),
        c(
            "DiskPressure",
            "False",
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure",
        ),
        c(
            "PIDPressure",
            "False",
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available",
        ),
        c(
            "Ready",
            "True",
            "KubeletReady",
            "kubelet is posting ready status",
        ),
    ]
}

/// Whether `node` shows the Ready condition this node posts (status True
/// from the kubelet): when it does not (the node lifecycle controller
/// marked it Unknown), the node posts its status at once.
pub fn posted_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True" && c.reason.as_deref() == Some("KubeletReady"))
}

/// Register `cfg`: create the Node, or take over an existing Node of that
/// name (its spec, with taints and unschedulable set by others, stays; the
/// status is posted by the heartbeat right after). Returns the node's uid.
pub async fn register(api: &Api<Node>, cfg: &NodeConfig) -> Result<String, Error> {
    match api
        .create(&PostParams::default(), &cfg.node(Timestamp::now()))
        .await
    {
        Ok(n) => Ok(n.metadata.uid.unwrap_or_default()),
        Err(e) if status_code(&e) == Some(409) => {
            let n = api.get(&cfg.name).await?;
            tracing::info!(node = %cfg.name, "node already registered; taking it over");
            Ok(n.metadata.uid.unwrap_or_default())
        }
        Err(e) => Err(e.into()),
    }
}

/// FNV-1a of `s`: a stable spread of names over address slots.
pub fn fnv(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_come_from_the_slot() {
        let a = NodeConfig::new("n-0".into(), 0);
        assert_eq!(a.internal_ip, "172.16.0.1");
        assert_eq!(a.pod_cidr, "10.0.0.0/24");
        let b = NodeConfig::new("n-1".into(), 257);
        assert_eq!(b.internal_ip, "172.16.4.5");
        assert_eq!(b.pod_cidr, "10.1.1.0/24");
    }

    #[test]
    fn registered_node_is_ready_with_well_known_labels() {
        let mut cfg = NodeConfig::new("n-3".into(), 3);
        cfg.labels.insert("zone".into(), "a".into());
        let node = cfg.node(Timestamp::UNIX_EPOCH);
        let labels = node.metadata.labels.clone().unwrap();
        assert_eq!(labels["kubernetes.io/hostname"], "n-3");
        assert_eq!(labels["kubernetes.io/os"], "linux");
        assert_eq!(labels["zone"], "a");
        assert!(posted_ready(&node));
        let status = node.status.unwrap();
        assert_eq!(status.allocatable.unwrap()["pods"].0, "110");
        let conds = status.conditions.unwrap();
        assert_eq!(
            conds.iter().map(|c| c.type_.as_str()).collect::<Vec<_>>(),
            ["MemoryPressure", "DiskPressure", "PIDPressure", "Ready"]
        );
    }

    #[test]
    fn unknown_ready_is_not_as_posted() {
        let mut node = NodeConfig::new("n".into(), 1).node(Timestamp::UNIX_EPOCH);
        let conds = node.status.as_mut().unwrap().conditions.as_mut().unwrap();
        conds[3].status = "Unknown".into();
        conds[3].reason = Some("NodeStatusUnknown".into());
        assert!(!posted_ready(&node));
    }
}
