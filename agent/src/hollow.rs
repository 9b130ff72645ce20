//! The hollow runtime, like Kubemark's hollow kubelet: many simulated nodes
//! in one process, each registered as a real Node with a Lease and status
//! heartbeats ([`crate::heartbeat`]), whose bound pods are "run" by the pod
//! planner alone ([`crate::pods`]): no containers, only the statuses a
//! kubelet would write.
//!
//! Pods reach the nodes through one watch of all pods filtered here by node
//! name ([`PodWatch::Shared`], the default: one stream for thousands of
//! nodes), or one watch per node with `fieldSelector=spec.nodeName=<node>`
//! as each kubelet has ([`PodWatch::PerNode`]). One loop owns every pod's
//! state; the writes run as tasks, at most one in flight per pod and
//! `concurrency` in all, and a pod that changed while its write was in
//! flight is planned again when the write ends.
//!
//! Every request a node makes goes through that node's client
//! ([`crate::identity`]): by default it acts as the node's kubelet,
//! `system:node:<name>`, so the Node authorizer and NodeRestriction judge
//! it as they judge a kubelet. The shared pod watch and the node watch,
//! which serve every node of the process, act as the first node.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, stream::BoxStream};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, PostParams, Preconditions};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio::task::JoinSet;

use crate::heartbeat::{Heartbeat, Intervals};
use crate::identity::Identity;
use crate::node::{self, NodeConfig};
use crate::pods::{self, Action, plan::Placement};
use crate::{Error, status_code};

/// How the hollow nodes learn about their pods.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PodWatch {
    /// One watch of every pod, filtered by node name here.
    Shared,
    /// One watch per node with a `spec.nodeName` field selector.
    PerNode,
}

/// What `keel hollow-nodes` runs.
#[derive(Clone, Debug)]
pub struct HollowConfig {
    /// Nodes are named `<prefix>-<i>`.
    pub prefix: String,
    pub count: usize,
    /// Capacity, labels and taints of every node (its name is replaced).
    pub template: NodeConfig,
    pub intervals: Intervals,
    pub pod_watch: PodWatch,
    /// API writes for pods in flight at once.
    pub concurrency: usize,
    /// Whom each node's requests act as.
    pub identity: Identity,
}

impl HollowConfig {
    /// The nodes' own configurations: names, and address slots spread by
    /// the prefix so that two processes with different prefixes rarely
    /// share a pod CIDR.
    pub fn nodes(&self) -> Vec<NodeConfig> {
        let base = node::fnv(&self.prefix) as u32;
        (0..self.count)
            .map(|i| {
                let name = format!("{}-{i}", self.prefix);
                let slot = base.wrapping_add(i as u32) % 65_536;
                let fresh = NodeConfig::new(name.clone(), slot);
                NodeConfig {
                    name,
                    internal_ip: fresh.internal_ip,
                    pod_cidr: fresh.pod_cidr,
                    ..self.template.clone()
                }
            })
            .collect()
    }
}

/// Run the hollow nodes until `shutdown` resolves: register every node
/// (retrying while the API is unreachable), then beat and run their pods.
pub async fn run(
    client: Client,
    cfg: HollowConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), Error> {
    if cfg.count == 0 {
        return Err(Error::Config("--count must be at least 1".into()));
    }
    tokio::pin!(shutdown);
    let nodes: Vec<Arc<NodeConfig>> = cfg.nodes().into_iter().map(Arc::new).collect();
    let clients: HashMap<String, Client> = nodes
        .iter()
        .map(|n| Ok((n.name.clone(), cfg.identity.client(&client, &n.name)?)))
        .collect::<Result<_, Error>>()?;
    // The watches that serve every node act as the first one.
    let first = clients[&nodes[0].name].clone();
    let registered = tokio::select! {
        r = register_all(&clients, &nodes) => r,
        _ = &mut shutdown => return Ok(()),
    };
    tracing::info!(count = nodes.len(), prefix = %cfg.prefix, "hollow nodes registered");

    let mut tasks = JoinSet::new();
    let mut lost: HashMap<String, Arc<Notify>> = HashMap::new();
    for (i, (n, uid)) in nodes.iter().zip(registered).enumerate() {
        let notify = Arc::new(Notify::new());
        lost.insert(n.name.clone(), notify.clone());
        // Spread the beats over one interval so many nodes do not beat at once.
        let delay = cfg.intervals.lease.mul_f64(i as f64 / nodes.len() as f64);
        let hb = Heartbeat::new(clients[&n.name].clone(), n.clone(), uid, cfg.intervals);
        tasks.spawn(hb.run(notify, delay));
    }
    tasks.spawn(watch_nodes(first.clone(), lost));
    let events = pod_events(&first, &clients, &nodes, cfg.pod_watch);
    let runtime = Runtime::new(clients, &nodes, cfg.concurrency);
    tasks.spawn(runtime.run(events));
    tokio::select! {
        _ = &mut shutdown => {}
        Some(r) = tasks.join_next() => {
            if let Err(e) = r {
                tracing::error!(error = %e, "a hollow node task ended");
            }
        }
    }
    tasks.shutdown().await;
    Ok(())
}

/// Register every node, a few at a time, each retried with backoff until
/// the API takes it. Returns the nodes' uids in order.
async fn register_all(clients: &HashMap<String, Client>, nodes: &[Arc<NodeConfig>]) -> Vec<String> {
    futures::stream::iter(nodes.iter().cloned())
        .map(|n| {
            let api: Api<Node> = Api::all(clients[&n.name].clone());
            async move {
                let mut backoff = Duration::from_millis(200);
                loop {
                    match node::register(&api, &n).await {
                        Ok(uid) => return uid,
                        Err(e) => {
                            tracing::warn!(node = %n.name, error = %e, "registering the node failed; retrying");
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(Duration::from_secs(10));
                        }
                    }
                }
            }
        })
        .buffered(32)
        .collect()
        .await
}

/// Watch the Nodes and tell a node's heartbeat when the API shows a Ready
/// condition that node did not post.
async fn watch_nodes(client: Client, lost: HashMap<String, Arc<Notify>>) {
    let api: Api<Node> = Api::all(client);
    let mut events = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(ev) = events.next().await {
        let node = match ev {
            Ok(Event::Apply(n) | Event::InitApply(n)) => n,
            Ok(_) => continue,
            Err(e) => {
                tracing::debug!(error = %e, "node watch");
                continue;
            }
        };
        let Some(notify) = node.metadata.name.as_deref().and_then(|n| lost.get(n)) else {
            continue;
        };
        if !node::posted_ready(&node) {
            notify.notify_one();
        }
    }
}

/// A pod watch event, tagged with the node whose watch it came from (None:
/// the shared watch).
type Tagged = (Option<String>, Result<Event<Pod>, watcher::Error>);

fn pod_events(
    first: &Client,
    clients: &HashMap<String, Client>,
    nodes: &[Arc<NodeConfig>],
    mode: PodWatch,
) -> BoxStream<'static, Tagged> {
    match mode {
        PodWatch::Shared => watcher::watcher(Api::all(first.clone()), watcher::Config::default())
            .default_backoff()
            .map(|e| (None, e))
            .boxed(),
        PodWatch::PerNode => futures::stream::select_all(nodes.iter().map(|n| {
            let name = n.name.clone();
            let config = watcher::Config::default().fields(&format!("spec.nodeName={name}"));
            let api: Api<Pod> = Api::all(clients[&name].clone());
            watcher::watcher(api, config)
                .default_backoff()
                .map(move |e| (Some(name.clone()), e))
                .boxed()
        }))
        .boxed(),
    }
}

/// One node's share of the runtime: its host IP and its pods' IPs.
struct NodeRuntime {
    host_ip: String,
    /// The first three octets of the node's /24.
    net: String,
    used: BTreeSet<u8>,
}

impl NodeRuntime {
    fn allocate(&mut self) -> Option<String> {
        let host = (2..=254u8).find(|h| !self.used.contains(h))?;
        self.used.insert(host);
        Some(format!("{}.{host}", self.net))
    }

    /// Keep `ip` (from a pod's stored status) taken, if it is this node's.
    fn reserve(&mut self, ip: &str) -> bool {
        match ip.strip_prefix(&self.net).and_then(|h| h.strip_prefix('.')) {
            Some(h) => h.parse().is_ok_and(|h: u8| {
                self.used.insert(h);
                true
            }),
            None => false,
        }
    }

    fn release(&mut self, ip: &str) {
        if let Some(h) = ip
            .strip_prefix(&self.net)
            .and_then(|h| h.strip_prefix('.'))
            .and_then(|h| h.parse::<u8>().ok())
        {
            self.used.remove(&h);
        }
    }
}

/// What the write tasks and timers tell the loop.
enum Msg {
    /// The write for this pod ended: the pod as written (a status), or
    /// whether to try again later.
    Done {
        uid: String,
        written: Option<Box<Pod>>,
        retry: bool,
    },
    /// A planned wake-up for this pod.
    Wake { uid: String },
}

/// Every pod bound to these nodes, and the writes in flight.
struct Runtime {
    /// Each node's client.
    clients: HashMap<String, Client>,
    nodes: HashMap<String, NodeRuntime>,
    /// The latest observed (or written) pod, by uid.
    pods: HashMap<String, Pod>,
    /// The IP each pod got, by uid.
    ips: HashMap<String, String>,
    in_flight: HashSet<String>,
    /// Pods that changed while their write was in flight.
    dirty: HashSet<String>,
    /// The earliest wake-up pending per pod.
    wakes: HashMap<String, Timestamp>,
    /// Pods seen since a watch (re)listed, by watch.
    relisting: HashMap<Option<String>, HashSet<String>>,
    writes: Arc<Semaphore>,
    tx: mpsc::UnboundedSender<Msg>,
    rx: mpsc::UnboundedReceiver<Msg>,
}

impl Runtime {
    fn new(
        clients: HashMap<String, Client>,
        nodes: &[Arc<NodeConfig>],
        concurrency: usize,
    ) -> Runtime {
        let (tx, rx) = mpsc::unbounded_channel();
        Runtime {
            clients,
            nodes: nodes
                .iter()
                .map(|n| {
                    let net = n
                        .pod_cidr
                        .rsplit_once('.')
                        .map_or("10.0.0", |(a, _)| a)
                        .to_string();
                    (
                        n.name.clone(),
                        NodeRuntime {
                            host_ip: n.internal_ip.clone(),
                            net,
                            used: BTreeSet::new(),
                        },
                    )
                })
                .collect(),
            pods: HashMap::new(),
            ips: HashMap::new(),
            in_flight: HashSet::new(),
            dirty: HashSet::new(),
            wakes: HashMap::new(),
            relisting: HashMap::new(),
            writes: Arc::new(Semaphore::new(concurrency.max(1))),
            tx,
            rx,
        }
    }

    async fn run(mut self, mut events: BoxStream<'static, Tagged>) {
        loop {
            tokio::select! {
                ev = events.next() => match ev {
                    Some((watch, Ok(ev))) => self.on_event(watch, ev),
                    Some((_, Err(e))) => tracing::debug!(error = %e, "pod watch"),
                    None => return,
                },
                Some(msg) = self.rx.recv() => self.on_msg(msg),
            }
        }
    }

    fn on_event(&mut self, watch: Option<String>, ev: Event<Pod>) {
        match ev {
            Event::Init => {
                self.relisting.insert(watch, HashSet::new());
            }
            Event::InitApply(pod) => {
                if let Some(uid) = pod.metadata.uid.clone() {
                    self.relisting.entry(watch).or_default().insert(uid);
                }
                self.apply(pod);
            }
            Event::InitDone => {
                // Pods not listed again were deleted while the watch was down.
                let seen = self.relisting.remove(&watch).unwrap_or_default();
                let gone: Vec<String> = self
                    .pods
                    .iter()
                    .filter(|(uid, p)| {
                        !seen.contains(*uid)
                            && (watch.is_none()
                                || p.spec.as_ref().and_then(|s| s.node_name.as_ref())
                                    == watch.as_ref())
                    })
                    .map(|(uid, _)| uid.clone())
                    .collect();
                gone.iter().for_each(|uid| self.forget(uid));
            }
            Event::Apply(pod) => self.apply(pod),
            Event::Delete(pod) => {
                if let Some(uid) = pod.metadata.uid.as_deref() {
                    self.forget(uid);
                }
            }
        }
    }

    fn node_of(pod: &Pod) -> Option<&str> {
        pod.spec.as_ref().and_then(|s| s.node_name.as_deref())
    }

    fn apply(&mut self, pod: Pod) {
        let (Some(uid), Some(node)) = (pod.metadata.uid.clone(), Self::node_of(&pod)) else {
            return;
        };
        let Some(rt) = self.nodes.get_mut(node) else {
            return;
        };
        let terminal = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .is_some_and(|p| p == "Succeeded" || p == "Failed");
        if terminal {
            if let Some(ip) = self.ips.remove(&uid) {
                rt.release(&ip);
            }
        } else if !self.ips.contains_key(&uid) {
            let host_network = pod
                .spec
                .as_ref()
                .and_then(|s| s.host_network)
                .unwrap_or(false);
            let stored = pod.status.as_ref().and_then(|s| s.pod_ip.clone());
            let ip = if host_network {
                Some(rt.host_ip.clone())
            } else {
                match stored {
                    Some(ip) if rt.reserve(&ip) => Some(ip),
                    _ => rt.allocate(),
                }
            };
            match ip {
                Some(ip) => {
                    self.ips.insert(uid.clone(), ip);
                }
                None => tracing::warn!(node, "no pod IP left on the node"),
            }
        }
        self.pods.insert(uid.clone(), pod);
        self.reconcile(&uid);
    }

    fn forget(&mut self, uid: &str) {
        if let Some(pod) = self.pods.remove(uid)
            && let Some(ip) = self.ips.remove(uid)
            && let Some(rt) = Self::node_of(&pod).and_then(|n| self.nodes.get_mut(n))
            && ip != rt.host_ip
        {
            rt.release(&ip);
        }
        self.dirty.remove(uid);
        self.wakes.remove(uid);
    }

    fn on_msg(&mut self, msg: Msg) {
        match msg {
            Msg::Done {
                uid,
                written,
                retry,
            } => {
                self.in_flight.remove(&uid);
                if let Some(p) = written
                    && self.pods.contains_key(&uid)
                {
                    self.pods.insert(uid.clone(), *p);
                }
                if retry {
                    self.wake_at(&uid, Timestamp::now() + Duration::from_secs(1));
                } else if self.dirty.remove(&uid) {
                    self.reconcile(&uid);
                }
            }
            Msg::Wake { uid } => {
                // Planning again sets the next wake-up, if any.
                self.wakes.remove(&uid);
                self.reconcile(&uid);
            }
        }
    }

    fn wake_at(&mut self, uid: &str, at: Timestamp) {
        if self.wakes.get(uid).is_some_and(|t| *t <= at) {
            return;
        }
        self.wakes.insert(uid.to_string(), at);
        let tx = self.tx.clone();
        let uid = uid.to_string();
        let delay = Duration::try_from(at.duration_since(Timestamp::now())).unwrap_or_default();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = tx.send(Msg::Wake { uid });
        });
    }

    fn reconcile(&mut self, uid: &str) {
        if self.in_flight.contains(uid) {
            self.dirty.insert(uid.to_string());
            return;
        }
        let Some(pod) = self.pods.get(uid).cloned() else {
            return;
        };
        let Some((rt, client)) = Self::node_of(&pod)
            .and_then(|n| Some((self.nodes.get(n)?, self.clients.get(n)?.clone())))
        else {
            return;
        };
        let pod_ip = self.ips.get(uid).map_or("", String::as_str);
        let plan = pods::plan(
            &pod,
            Placement {
                pod_ip,
                host_ip: &rt.host_ip,
            },
            Timestamp::now(),
        );
        if let Some(at) = plan.wake {
            self.wake_at(uid, at);
        }
        let Some(action) = plan.action else {
            return;
        };
        self.in_flight.insert(uid.to_string());
        let api: Api<Pod> = Api::namespaced(
            client,
            pod.metadata.namespace.as_deref().unwrap_or("default"),
        );
        let name = pod.metadata.name.clone().unwrap_or_default();
        let mut next = pod;
        let (tx, writes, uid) = (self.tx.clone(), self.writes.clone(), uid.to_string());
        tokio::spawn(async move {
            let _permit = writes.acquire_owned().await;
            let (written, retry) = match action {
                Action::Status(st) => {
                    next.status = Some(*st);
                    match api
                        .replace_status(&name, &PostParams::default(), &next)
                        .await
                    {
                        Ok(p) => (Some(Box::new(p)), false),
                        // Stale or gone: the watch brings the pod as it is now.
                        Err(e) if matches!(status_code(&e), Some(404 | 409)) => (None, false),
                        Err(e) => {
                            tracing::warn!(pod = %name, error = %e, "writing pod status failed");
                            (None, true)
                        }
                    }
                }
                Action::ConfirmDelete { uid: pod_uid } => {
                    let dp = DeleteParams {
                        grace_period_seconds: Some(0),
                        preconditions: Some(Preconditions {
                            uid: Some(pod_uid),
                            resource_version: None,
                        }),
                        ..Default::default()
                    };
                    match api.delete(&name, &dp).await {
                        Ok(_) => (None, false),
                        Err(e) if matches!(status_code(&e), Some(404 | 409)) => (None, false),
                        Err(e) => {
                            tracing::warn!(pod = %name, error = %e, "confirming pod deletion failed");
                            (None, true)
                        }
                    }
                }
            };
            let _ = tx.send(Msg::Done {
                uid,
                written,
                retry,
            });
        });
    }
}
