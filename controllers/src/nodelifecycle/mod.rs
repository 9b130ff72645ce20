//! The node lifecycle controller (kube-controller-manager's
//! `node-lifecycle-controller` with its taint eviction controller): it
//! watches Nodes, their Leases in `kube-node-lease` and Pods, and every
//! monitor period:
//!
//! - notes when each node last showed a heartbeat (a new Lease renewTime
//!   or a new Ready lastHeartbeatTime), timed by this controller's own
//!   clock as Kubernetes does, so that clock skew between nodes and the
//!   manager does not matter and a new leader starts every node afresh;
//! - marks a node whose heartbeats stopped for longer than
//!   `--node-monitor-grace-period` (40 s) Unknown ([`health::mark_unknown`]);
//! - keeps the condition taints ([`health::wanted_taints`]):
//!   `node.kubernetes.io/unreachable` or `not-ready` NoSchedule and
//!   NoExecute, removed when the node is Ready again; no NoExecute taints
//!   while every node is down (full disruption);
//! - marks the pods of a node that is not Ready not Ready (endpoints drop
//!   them);
//! - evicts the pods on NoExecute-tainted nodes that do not tolerate the
//!   taints, or once their `tolerationSeconds` ran out
//!   ([`eviction::decide`]): a `DisruptionTarget` condition, then a
//!   graceful delete, and a `TaintManagerEviction` event.
//!
//! Every step is computed from the observed state, so a pass after a lost
//! write, or by a new leader, does what is left and nothing twice.

pub mod eviction;
pub mod health;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod, PodCondition, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use tokio::task::JoinSet;

use crate::Error;
use crate::context::Context;
use crate::events::Involved;
use eviction::Eviction;

/// The controller's name in metrics, events and `--controllers`.
pub const NAME: &str = "nodelifecycle";

/// How long a node that never posted its status gets (Kubernetes'
/// `--node-startup-grace-period`).
const STARTUP_GRACE: Duration = Duration::from_secs(60);

/// How long an evicted pod is not evicted again while the watch catches up.
const EVICTED_MEMORY: Duration = Duration::from_secs(30);

/// Run until the future is dropped (leadership lost).
pub async fn run(ctx: Context) -> Result<(), Error> {
    let grace = ctx.settings.node_monitor_grace_period;
    // Kubernetes checks every 5 s against a 40 s grace; a shorter grace
    // (tests) is checked proportionally more often.
    let period = (grace / 8).clamp(Duration::from_millis(200), Duration::from_secs(5));
    let mut watches = JoinSet::new();
    let nodes = cache::<Node>(&mut watches, Api::all(ctx.client.clone()));
    let leases = cache::<Lease>(
        &mut watches,
        Api::namespaced(ctx.client.clone(), "kube-node-lease"),
    );
    let pods = cache::<Pod>(&mut watches, Api::all(ctx.client.clone()));
    for ready in [
        nodes.wait_until_ready().await.is_ok(),
        leases.wait_until_ready().await.is_ok(),
        pods.wait_until_ready().await.is_ok(),
    ] {
        if !ready {
            return Err(Error::Invalid(
                "a watch of the node lifecycle controller ended".into(),
            ));
        }
    }
    let mut monitor = Monitor {
        ctx,
        grace,
        probes: HashMap::new(),
        evicted: HashMap::new(),
    };
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let started = Instant::now();
        monitor.metrics_started();
        monitor.pass(&nodes, &leases, &pods).await;
        monitor.metrics_finished(started.elapsed());
    }
}

/// A cache of `api`'s objects, filled by a watch that runs in `watches`.
fn cache<K>(watches: &mut JoinSet<()>, api: Api<K>) -> Store<K>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher::watcher(api, watcher::Config::default()))
        .default_backoff();
    watches.spawn(stream.for_each(|_| futures::future::ready(())));
    reader
}

/// When a node last showed a heartbeat, on this controller's clock.
struct Probe {
    uid: String,
    at: Instant,
    heartbeat: Option<Timestamp>,
    renew: Option<Timestamp>,
}

struct Monitor {
    ctx: Context,
    grace: Duration,
    probes: HashMap<String, Probe>,
    /// Pods evicted lately (uid → when), not evicted again meanwhile.
    evicted: HashMap<String, Instant>,
}

impl Monitor {
    fn metrics_started(&self) {
        self.ctx.metrics.started(NAME);
    }

    fn metrics_finished(&self, took: Duration) {
        self.ctx.metrics.finished(NAME, took, true);
    }

    /// Note new heartbeats; true when `node`'s stopped longer than its grace.
    fn stale(&mut self, node: &Node, renew: Option<Timestamp>, now: Instant) -> bool {
        let name = node.metadata.name.clone().unwrap_or_default();
        let uid = node.metadata.uid.clone().unwrap_or_default();
        let heartbeat = health::heartbeat(node);
        let probe = self.probes.entry(name).or_insert_with(|| Probe {
            uid: uid.clone(),
            at: now,
            heartbeat,
            renew,
        });
        if probe.uid != uid || probe.heartbeat != heartbeat || probe.renew != renew {
            *probe = Probe {
                uid,
                at: now,
                heartbeat,
                renew,
            };
        }
        let grace = if health::ready(node).is_none() {
            STARTUP_GRACE.max(self.grace)
        } else {
            self.grace
        };
        now.duration_since(probe.at) > grace
    }

    async fn pass(&mut self, nodes: &Store<Node>, leases: &Store<Lease>, pods: &Store<Pod>) {
        let (clock, now) = (Instant::now(), Timestamp::now());
        let renewals: HashMap<String, Timestamp> = leases
            .state()
            .iter()
            .filter_map(|l| {
                let renew = l.spec.as_ref()?.renew_time.as_ref()?.0;
                Some((l.metadata.name.clone()?, renew))
            })
            .collect();
        let mut nodes: Vec<Arc<Node>> = nodes.state();
        nodes.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        let present: HashSet<String> = nodes
            .iter()
            .filter_map(|n| n.metadata.name.clone())
            .collect();
        self.probes.retain(|name, _| present.contains(name));

        let stale: Vec<bool> = nodes
            .iter()
            .map(|n| {
                let renew = n
                    .metadata
                    .name
                    .as_ref()
                    .and_then(|m| renewals.get(m))
                    .copied();
                self.stale(n, renew, clock)
            })
            .collect();
        // Full disruption: no node is Ready (after this pass's marks).
        let all_down = !nodes.is_empty()
            && nodes
                .iter()
                .zip(&stale)
                .all(|(n, s)| *s || health::ready(n) != Some("True"));

        let mut no_execute: BTreeMap<String, Vec<Taint>> = BTreeMap::new();
        let mut not_ready: HashSet<String> = HashSet::new();
        for (node, stale) in nodes.iter().zip(stale) {
            let Some(node) = self.update_node(node, stale, all_down, now).await else {
                continue;
            };
            let name = node.metadata.name.clone().unwrap_or_default();
            if health::ready(&node) != Some("True") {
                not_ready.insert(name.clone());
            }
            let taints: Vec<Taint> = node
                .spec
                .as_ref()
                .and_then(|s| s.taints.clone())
                .unwrap_or_default()
                .into_iter()
                .filter(|t| t.effect == "NoExecute")
                .collect();
            if !taints.is_empty() {
                no_execute.insert(name, taints);
            }
        }
        self.pods(pods, &no_execute, &not_ready, now).await;
    }

    /// Mark `node` Unknown if stale and make its taints match its
    /// conditions; the node as written, or None when a write failed (the
    /// next pass tries again).
    async fn update_node(
        &self,
        node: &Node,
        stale: bool,
        all_down: bool,
        now: Timestamp,
    ) -> Option<Node> {
        let api: Api<Node> = Api::all(self.ctx.client.clone());
        let name = node.metadata.name.clone()?;
        let mut node = node.clone();
        if stale && let Some(conds) = health::mark_unknown(&node, now) {
            node.status.get_or_insert_with(Default::default).conditions = Some(conds);
            node = match api
                .replace_status(&name, &PostParams::default(), &node)
                .await
            {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(node = %name, error = %e, "marking the node Unknown failed");
                    return None;
                }
            };
            self.ctx.metrics.patched(NAME);
            tracing::info!(node = %name, "node stopped posting status: Ready Unknown");
            self.ctx
                .recorder
                .publish(
                    &Involved::of(&node),
                    "Normal",
                    "NodeNotReady",
                    &format!("Node {name} status is now: NodeNotReady"),
                )
                .await;
        }
        let want = health::wanted_taints(&node, !all_down);
        if let Some(taints) = health::reconcile_taints(&node, &want, now) {
            node.spec.get_or_insert_with(Default::default).taints = Some(taints);
            node = match api.replace(&name, &PostParams::default(), &node).await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(node = %name, error = %e, "updating the node's taints failed");
                    return None;
                }
            };
            self.ctx.metrics.patched(NAME);
            tracing::info!(node = %name, taints = ?want, "node taints updated");
        }
        Some(node)
    }

    /// Evict what the NoExecute taints call for and mark pods of nodes that
    /// are not Ready not Ready.
    async fn pods(
        &mut self,
        pods: &Store<Pod>,
        no_execute: &BTreeMap<String, Vec<Taint>>,
        not_ready: &HashSet<String>,
        now: Timestamp,
    ) {
        self.evicted.retain(|_, at| at.elapsed() < EVICTED_MEMORY);
        let mut evict = Vec::new();
        let mut unready = Vec::new();
        let mut waiting = 0;
        for pod in pods.state() {
            let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) else {
                continue;
            };
            let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
            if pod.metadata.deletion_timestamp.is_some()
                || matches!(phase, Some("Succeeded" | "Failed"))
            {
                continue;
            }
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            if let Some(taints) = no_execute.get(node) {
                match eviction::decide(&pod, taints, now) {
                    Eviction::Now if !self.evicted.contains_key(&uid) => {
                        self.evicted.insert(uid, Instant::now());
                        evict.push(pod.clone());
                        continue;
                    }
                    Eviction::At(_) => waiting += 1,
                    _ => {}
                }
            }
            if not_ready.contains(node) && pod_ready(&pod) {
                unready.push(pod.clone());
            }
        }
        self.ctx.metrics.queue_depth(NAME, waiting);
        let this = &*self;
        futures::stream::iter(evict)
            .for_each_concurrent(16, |pod| async move { this.evict(&pod, now).await })
            .await;
        futures::stream::iter(unready)
            .for_each_concurrent(
                16,
                |pod| async move { this.mark_not_ready(&pod, now).await },
            )
            .await;
    }

    /// Evict `pod`: the DisruptionTarget condition, then a graceful delete
    /// of exactly this pod (its uid), then the event.
    async fn evict(&self, pod: &Pod, now: Timestamp) {
        let (Some(ns), Some(name)) = (
            pod.metadata.namespace.as_deref(),
            pod.metadata.name.as_deref(),
        ) else {
            return;
        };
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), ns);
        let mut marked = pod.clone();
        let status = marked.status.get_or_insert_with(Default::default);
        let conds = status.conditions.get_or_insert_with(Vec::new);
        if !conds
            .iter()
            .any(|c| c.type_ == "DisruptionTarget" && c.status == "True")
        {
            conds.retain(|c| c.type_ != "DisruptionTarget");
            conds.push(PodCondition {
                type_: "DisruptionTarget".into(),
                status: "True".into(),
                reason: Some("DeletionByTaintManager".into()),
                message: Some("Taint manager: deleting due to NoExecute taint".into()),
                last_transition_time: Some(Time(now)),
                ..Default::default()
            });
            // Best effort, as Kubernetes': the deletion is what matters.
            if let Err(e) = api
                .replace_status(name, &PostParams::default(), &marked)
                .await
            {
                tracing::debug!(pod = %name, error = %e, "adding the DisruptionTarget condition failed");
            }
        }
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                uid: pod.metadata.uid.clone(),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(name, &dp).await {
            Ok(_) => {
                self.ctx.metrics.deleted(NAME);
                tracing::info!(pod = %name, namespace = %ns, "evicted from a NoExecute-tainted node");
                self.ctx
                    .recorder
                    .publish(
                        &Involved::of(pod),
                        "Normal",
                        "TaintManagerEviction",
                        &format!("Marking for deletion Pod {ns}/{name}"),
                    )
                    .await;
            }
            Err(e) if matches!(crate::status_code(&e), Some(404 | 409)) => {}
            Err(e) => tracing::warn!(pod = %name, error = %e, "evicting the pod failed"),
        }
    }

    /// Set the Ready condition of a pod on a node that is not Ready False.
    async fn mark_not_ready(&self, pod: &Pod, now: Timestamp) {
        let (Some(ns), Some(name)) = (
            pod.metadata.namespace.as_deref(),
            pod.metadata.name.as_deref(),
        ) else {
            return;
        };
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), ns);
        let mut p = pod.clone();
        if let Some(c) = p
            .status
            .as_mut()
            .and_then(|s| s.conditions.as_mut())
            .and_then(|cs| cs.iter_mut().find(|c| c.type_ == "Ready"))
        {
            c.status = "False".into();
            c.last_transition_time = Some(Time(now));
        }
        match api.replace_status(name, &PostParams::default(), &p).await {
            Ok(_) => {
                self.ctx.metrics.patched(NAME);
                self.ctx
                    .recorder
                    .publish(
                        &Involved::of(pod),
                        "Warning",
                        "NodeNotReady",
                        "Node is not ready",
                    )
                    .await;
            }
            Err(e) if matches!(crate::status_code(&e), Some(404 | 409)) => {}
            Err(e) => tracing::warn!(pod = %name, error = %e, "marking the pod not Ready failed"),
        }
    }
}

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True")
}
