//! The scheduler (kube-scheduler's default profile, `default-scheduler`):
//! it watches pods, nodes, volumes, claims, storage classes and namespaces,
//! keeps a [`cache::Cache`] of what each node has given away, and takes
//! pending pods whose `schedulerName` is `default-scheduler` (or unset)
//! one at a time from a queue. Each decision ([`algorithm`]) is made
//! under the cache's lock and *assumed* at once; the binding ([`bind`]:
//! reserve WaitForFirstConsumer volumes, wait for their claims to bind,
//! POST `pods/binding`) runs in its own task so that the next pod need not
//! wait. A pod that fits nowhere gets PodScheduled=False (Unschedulable)
//! and a FailedScheduling event, and waits until a node, a pod that held
//! room, a volume, a claim or a class changes (or a minute passes), then
//! tries again after its backoff (1 s doubling to 10 s), as
//! kube-scheduler's unschedulable queue does.
//!
//! Layout: [`quantity`] (requests and allocatable), [`labels`] (selector
//! matching), [`filter`] (the node filters and their reasons), [`volumes`]
//! (volume topology), [`topology`] (pod topology spread), [`score`] (the scores), [`algorithm`] (one
//! decision), [`cache`] (the cluster view), [`bind`] (the writes).

pub mod algorithm;
mod bind;
pub mod cache;
pub mod filter;
pub mod labels;
pub mod quantity;
pub mod score;
#[cfg(test)]
pub(crate) mod testutil;
pub mod topology;
pub mod volumes;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::Resource;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, Event};
use tokio::sync::{Notify, Semaphore};

use crate::Error;
use crate::context::Context;
use crate::events::Recorder;
use crate::persistentvolume::matching::ClaimKey;
use crate::queue::Queue;
use cache::{Cache, PodInfo, PodKey};

/// The controller's name in metrics, events and `--controllers`.
pub const NAME: &str = "scheduler";
/// The `spec.schedulerName` this scheduler serves (and its events' source).
pub const SCHEDULER_NAME: &str = "default-scheduler";

/// Backoff of a pod that failed: 1 s, doubling, at most 10 s.
const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How long an unschedulable pod waits for a cluster change before it is
/// tried again anyway.
const UNSCHEDULABLE_FLUSH: Duration = Duration::from_secs(60);
/// How long a volume reserved for a claim stays reserved without the
/// volume watch showing it.
const RESERVATION_TTL: Duration = Duration::from_secs(120);
/// Bindings (and failure reports) in flight at once.
const BIND_SLOTS: usize = 64;

/// The pod's key.
pub fn key_of(pod: &Pod) -> PodKey {
    (
        pod.metadata.namespace.clone().unwrap_or_default(),
        pod.metadata.name.clone().unwrap_or_default(),
    )
}

/// The backoff before the `n`th retry (1-based).
fn backoff(n: u32) -> Duration {
    INITIAL_BACKOFF
        .saturating_mul(1u32 << n.saturating_sub(1).min(8))
        .min(MAX_BACKOFF)
}

/// Whether this scheduler should place the pod: no node yet, ours by
/// name, not being deleted, not finished, not gated.
pub fn responsible(pod: &Pod) -> bool {
    let Some(spec) = &pod.spec else {
        return false;
    };
    spec.node_name.as_deref().is_none_or(str::is_empty)
        && spec
            .scheduler_name
            .as_deref()
            .is_none_or(|n| n.is_empty() || n == SCHEDULER_NAME)
        && spec.scheduling_gates.as_ref().is_none_or(Vec::is_empty)
        && pod.metadata.deletion_timestamp.is_none()
        && !terminal(pod)
}

fn terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// The parts of a pending pod a decision reads; an update that changes
/// none of them (our own condition write) does not call for a new try.
fn decision_inputs(pod: &Pod) -> serde_json::Value {
    serde_json::json!([pod.metadata.labels, pod.spec])
}

/// The watched stores the volume check reads.
#[derive(Clone)]
struct Stores {
    claims: Store<PersistentVolumeClaim>,
    volumes: Store<PersistentVolume>,
    classes: Store<StorageClass>,
    namespaces: Store<Namespace>,
}

/// Everything the scheduler's tasks share.
struct State {
    cache: Cache,
    /// Pods waiting for a node, as last seen.
    pending: HashMap<PodKey, Arc<Pod>>,
    /// Pods that fit nowhere, waiting for a change in the cluster.
    unschedulable: HashSet<PodKey>,
    /// Failed tries per pod, for the backoff.
    attempts: HashMap<PodKey, u32>,
    /// Volumes this scheduler reserved for claims, until the watch shows it.
    reserved: HashMap<String, (ClaimKey, Instant)>,
    next_start: usize,
    /// Keys seen since the pod (node) watch began a re-list.
    pod_relist: Option<HashSet<PodKey>>,
    node_relist: Option<BTreeSet<String>>,
    pods_synced: bool,
    nodes_synced: bool,
}

pub(crate) struct Scheduler {
    ctx: Context,
    state: Mutex<State>,
    queue: Queue<PodKey>,
    stores: Stores,
    synced: Notify,
    slots: Arc<Semaphore>,
}

impl Scheduler {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queue the pod, after its backoff if it failed before.
    fn enqueue(&self, st: &State, key: PodKey) {
        match st.attempts.get(&key).copied().unwrap_or(0) {
            0 => self.queue.add(key),
            n => self.queue.add_after(key, backoff(n)),
        }
        self.depth(st);
    }

    /// The queue depth metric: pods waiting for a node (queued, backing
    /// off or unschedulable), as kube-scheduler's pending_pods.
    fn depth(&self, st: &State) {
        self.ctx.metrics.queue_depth(NAME, st.pending.len());
    }

    /// Something changed that may let unschedulable pods fit: try them again.
    fn move_unschedulable(&self, st: &mut State) {
        let keys: Vec<PodKey> = st.unschedulable.drain().collect();
        for k in keys {
            self.enqueue(st, k);
        }
    }

    fn on_pod(&self, st: &mut State, pod: Pod) {
        let key = key_of(&pod);
        if let Some(seen) = st.pod_relist.as_mut() {
            seen.insert(key.clone());
        }
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty());
        if terminal(&pod) {
            st.pending.remove(&key);
            self.depth(st);
            st.unschedulable.remove(&key);
            st.attempts.remove(&key);
            if st.cache.remove_pod(&key) {
                self.move_unschedulable(st);
            }
        } else if let Some(node) = node {
            st.pending.remove(&key);
            self.depth(st);
            st.unschedulable.remove(&key);
            st.attempts.remove(&key);
            let new = !st.cache.has_pod(&key);
            st.cache.add_pod(PodInfo::of(&pod, &node));
            // A pod placed by someone else may satisfy a waiting pod's affinity.
            if new && !st.unschedulable.is_empty() {
                self.move_unschedulable(st);
            }
        } else if responsible(&pod) {
            let changed = st
                .pending
                .get(&key)
                .is_none_or(|old| decision_inputs(old) != decision_inputs(&pod));
            st.pending.insert(key.clone(), Arc::new(pod));
            if changed && !st.cache.is_assumed(&key) {
                st.unschedulable.remove(&key);
                self.enqueue(st, key);
            }
        } else {
            st.pending.remove(&key);
            st.unschedulable.remove(&key);
        }
    }

    fn on_pod_deleted(&self, st: &mut State, key: &PodKey) {
        st.pending.remove(key);
        self.depth(st);
        st.unschedulable.remove(key);
        st.attempts.remove(key);
        if st.cache.remove_pod(key) {
            self.move_unschedulable(st);
        }
    }

    async fn watch_pods(self: Arc<Self>) {
        let api: Api<Pod> = Api::all(self.ctx.client.clone());
        let stream = watcher::watcher(api, watcher::Config::default()).default_backoff();
        futures::pin_mut!(stream);
        while let Some(ev) = stream.next().await {
            let mut st = self.state();
            match ev {
                Ok(Event::Init) => st.pod_relist = Some(HashSet::new()),
                Ok(Event::InitApply(p) | Event::Apply(p)) => self.on_pod(&mut st, p),
                Ok(Event::Delete(p)) => self.on_pod_deleted(&mut st, &key_of(&p)),
                Ok(Event::InitDone) => {
                    if let Some(seen) = st.pod_relist.take() {
                        let gone: Vec<PodKey> = st
                            .cache
                            .pod_keys()
                            .into_iter()
                            .chain(st.pending.keys().cloned())
                            .filter(|k| !seen.contains(k) && !st.cache.is_assumed(k))
                            .collect();
                        for k in gone {
                            self.on_pod_deleted(&mut st, &k);
                        }
                    }
                    st.pods_synced = true;
                    self.synced.notify_waiters();
                }
                Err(e) => tracing::debug!(error = %e, "scheduler: pod watch failed, retrying"),
            }
        }
    }

    async fn watch_nodes(self: Arc<Self>) {
        let api: Api<Node> = Api::all(self.ctx.client.clone());
        let stream = watcher::watcher(api, watcher::Config::default()).default_backoff();
        futures::pin_mut!(stream);
        while let Some(ev) = stream.next().await {
            let mut st = self.state();
            match ev {
                Ok(Event::Init) => st.node_relist = Some(BTreeSet::new()),
                Ok(Event::InitApply(n) | Event::Apply(n)) => {
                    if let Some(seen) = st.node_relist.as_mut() {
                        seen.extend(n.metadata.name.clone());
                    }
                    if st.cache.set_node(n) {
                        self.move_unschedulable(&mut st);
                    }
                }
                Ok(Event::Delete(n)) => st
                    .cache
                    .remove_node(n.metadata.name.as_deref().unwrap_or_default()),
                Ok(Event::InitDone) => {
                    if let Some(seen) = st.node_relist.take() {
                        st.cache.retain_nodes(&seen);
                    }
                    st.nodes_synced = true;
                    self.move_unschedulable(&mut st);
                    self.synced.notify_waiters();
                }
                Err(e) => tracing::debug!(error = %e, "scheduler: node watch failed, retrying"),
            }
        }
    }

    /// Keep a store of `K` and retry unschedulable pods when one changes.
    async fn watch_store<K>(
        self: Arc<Self>,
        writer: reflector::store::Writer<K>,
        on_apply: fn(&Scheduler, &mut State, &K),
    ) where
        K: Resource<DynamicType = ()>
            + Clone
            + std::fmt::Debug
            + serde::de::DeserializeOwned
            + Send
            + Sync
            + 'static,
    {
        let api: Api<K> = Api::all(self.ctx.client.clone());
        let stream = reflector::reflector(
            writer,
            watcher::watcher(api, watcher::Config::default()).default_backoff(),
        );
        let stream = touched(stream);
        futures::pin_mut!(stream);
        while let Some(obj) = stream.next().await {
            let mut st = self.state();
            if let Some(obj) = obj {
                on_apply(&self, &mut st, &obj);
            }
            self.move_unschedulable(&mut st);
        }
    }

    /// Wait until the pod and node watches and every store have listed.
    async fn wait_synced(&self) {
        loop {
            let notified = self.synced.notified();
            {
                let st = self.state();
                if st.pods_synced && st.nodes_synced {
                    break;
                }
            }
            notified.await;
        }
        let s = &self.stores;
        let _ = s.claims.wait_until_ready().await;
        let _ = s.volumes.wait_until_ready().await;
        let _ = s.classes.wait_until_ready().await;
        let _ = s.namespaces.wait_until_ready().await;
    }

    /// Try unschedulable pods again now and then, and drop stale assumptions.
    async fn housekeeping(self: Arc<Self>) {
        loop {
            tokio::time::sleep(UNSCHEDULABLE_FLUSH).await;
            let mut st = self.state();
            let now = Instant::now();
            st.cache.expire(now);
            st.reserved.retain(|_, (_, until)| *until > now);
            self.move_unschedulable(&mut st);
        }
    }

    /// Take pods from the queue and decide, one at a time.
    async fn schedule_loop(self: Arc<Self>) {
        self.wait_synced().await;
        tracing::info!("scheduler: caches synced, scheduling");
        loop {
            let key = self.queue.next().await;
            let Ok(permit) = self.slots.clone().acquire_owned().await else {
                return;
            };
            self.schedule_one(key, permit);
        }
    }

    fn schedule_one(self: &Arc<Self>, key: PodKey, permit: tokio::sync::OwnedSemaphorePermit) {
        let started = Instant::now();
        let mut st = self.state();
        let Some(pod) = st.pending.get(&key).cloned() else {
            return;
        };
        if st.cache.has_pod(&key) {
            return;
        }
        self.ctx.metrics.started(NAME);
        let now = Instant::now();
        st.cache.expire(now);
        st.reserved.retain(|_, (_, until)| *until > now);
        let namespaces = self.stores.namespaces.state();
        let ns_refs: Vec<&Namespace> = namespaces.iter().map(|n| n.as_ref()).collect();
        let lister = Lister {
            stores: &self.stores,
            reserved: &st.reserved,
        };
        let mut start = st.next_start;
        let outcome = algorithm::schedule(&pod, &st.cache, &lister, &ns_refs, &mut start);
        st.next_start = start;
        match outcome {
            Ok(decision) => {
                st.cache.assume(PodInfo::of(&pod, &decision.node), now);
                for (claim, pv) in &decision.reservation {
                    let ck = (
                        claim.metadata.namespace.clone().unwrap_or_default(),
                        claim.metadata.name.clone().unwrap_or_default(),
                    );
                    st.reserved.insert(pv.clone(), (ck, now + RESERVATION_TTL));
                }
                drop(st);
                self.ctx.metrics.finished(NAME, started.elapsed(), true);
                tracing::debug!(
                    namespace = %key.0, pod = %key.1, node = %decision.node,
                    evaluated = decision.evaluated, feasible = decision.feasible,
                    "scheduled"
                );
                tokio::spawn(bind::bind(self.clone(), pod, decision, permit));
            }
            Err(failure) => {
                st.unschedulable.insert(key.clone());
                *st.attempts.entry(key).or_default() += 1;
                drop(st);
                self.ctx.metrics.finished(NAME, started.elapsed(), false);
                tokio::spawn(bind::report_unschedulable(
                    self.clone(),
                    pod,
                    failure.message(),
                    permit,
                ));
            }
        }
    }

    /// The binding failed: forget the assumption and try again after the backoff.
    fn binding_failed(&self, pod: &Pod, reservation: &volumes::Reservation) {
        let key = key_of(pod);
        let mut st = self.state();
        st.cache.forget(&key);
        for (_, pv) in reservation {
            st.reserved.remove(pv);
        }
        *st.attempts.entry(key.clone()).or_default() += 1;
        if st.pending.contains_key(&key) {
            self.enqueue(&st, key);
        }
    }

    fn bound(&self, pod: &Pod) {
        self.state().attempts.remove(&key_of(pod));
    }
}

/// Only the objects applied or deleted (as `None` for a deletion), from a
/// reflector's event stream.
fn touched<K>(
    stream: impl Stream<Item = Result<Event<K>, watcher::Error>>,
) -> impl Stream<Item = Option<K>> {
    stream.filter_map(|ev| async move {
        match ev {
            Ok(Event::Apply(o) | Event::InitApply(o)) => Some(Some(o)),
            Ok(Event::Delete(_)) => Some(None),
            Ok(_) => None,
            Err(e) => {
                tracing::debug!(error = %e, "scheduler: watch failed, retrying");
                None
            }
        }
    })
}

/// A volume's reservation is over once the watch shows its claimRef.
fn volume_seen(_: &Scheduler, st: &mut State, pv: &PersistentVolume) {
    if pv
        .spec
        .as_ref()
        .and_then(|s| s.claim_ref.as_ref())
        .is_some()
        && let Some(name) = &pv.metadata.name
    {
        st.reserved.remove(name);
    }
}

fn nothing<K>(_: &Scheduler, _: &mut State, _: &K) {}

/// The volume check's view: the stores and this scheduler's reservations.
struct Lister<'a> {
    stores: &'a Stores,
    reserved: &'a HashMap<String, (ClaimKey, Instant)>,
}

impl volumes::VolumeLister for Lister<'_> {
    fn claim(&self, namespace: &str, name: &str) -> Option<Arc<PersistentVolumeClaim>> {
        self.stores
            .claims
            .get(&ObjectRef::new(name).within(namespace))
    }
    fn volume(&self, name: &str) -> Option<Arc<PersistentVolume>> {
        self.stores.volumes.get(&ObjectRef::new(name))
    }
    fn class(&self, name: &str) -> Option<Arc<StorageClass>> {
        self.stores.classes.get(&ObjectRef::new(name))
    }
    fn volumes(&self) -> Vec<Arc<PersistentVolume>> {
        self.stores.volumes.state()
    }
    fn reserved_for(&self, volume: &str) -> Option<ClaimKey> {
        self.reserved.get(volume).map(|(k, _)| k.clone())
    }
}

/// Run until the future is dropped (leadership lost).
pub async fn run(mut ctx: Context) -> Result<(), Error> {
    // Events come from "default-scheduler", as kubectl describe shows them.
    ctx.recorder = Recorder::new(ctx.client.clone(), SCHEDULER_NAME, ctx.identity.clone());
    let (claims, claims_w) = reflector::store();
    let (volumes, volumes_w) = reflector::store();
    let (classes, classes_w) = reflector::store();
    let (namespaces, namespaces_w) = reflector::store();
    let s = Arc::new(Scheduler {
        ctx,
        state: Mutex::new(State {
            cache: Cache::default(),
            pending: HashMap::new(),
            unschedulable: HashSet::new(),
            attempts: HashMap::new(),
            reserved: HashMap::new(),
            next_start: 0,
            pod_relist: None,
            node_relist: None,
            pods_synced: false,
            nodes_synced: false,
        }),
        queue: Queue::default(),
        stores: Stores {
            claims,
            volumes,
            classes,
            namespaces,
        },
        synced: Notify::new(),
        slots: Arc::new(Semaphore::new(BIND_SLOTS)),
    });
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(s.clone().watch_pods());
    tasks.spawn(s.clone().watch_nodes());
    tasks.spawn(
        s.clone()
            .watch_store(claims_w, nothing::<PersistentVolumeClaim>),
    );
    tasks.spawn(s.clone().watch_store(volumes_w, volume_seen));
    tasks.spawn(s.clone().watch_store(classes_w, nothing::<StorageClass>));
    tasks.spawn(s.clone().watch_store(namespaces_w, nothing::<Namespace>));
    tasks.spawn(s.clone().housekeeping());
    tasks.spawn(s.clone().schedule_loop());
    // Every task runs forever; one ending means something broke: restart all.
    tasks.join_next().await;
    Err(Error::Invalid("scheduler task ended".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_one_second_to_ten() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(4), Duration::from_secs(8));
        assert_eq!(backoff(5), MAX_BACKOFF);
        assert_eq!(backoff(100), MAX_BACKOFF);
    }

    #[test]
    fn only_pending_pods_of_this_scheduler_are_taken() {
        let pod = |node: Option<&str>, sched: Option<&str>, phase: Option<&str>| {
            serde_json::from_value::<Pod>(serde_json::json!({
                "metadata": {"name": "p", "namespace": "ns"},
                "spec": {"containers": [{"name": "c"}], "nodeName": node, "schedulerName": sched},
                "status": {"phase": phase},
            }))
            .unwrap()
        };
        assert!(responsible(&pod(None, None, None)));
        assert!(responsible(&pod(
            None,
            Some("default-scheduler"),
            Some("Pending")
        )));
        assert!(!responsible(&pod(Some("n1"), None, None)));
        assert!(!responsible(&pod(None, Some("other"), None)));
        assert!(!responsible(&pod(None, None, Some("Failed"))));
        let mut gated = pod(None, None, None);
        gated.spec.as_mut().unwrap().scheduling_gates =
            Some(vec![k8s_openapi::api::core::v1::PodSchedulingGate {
                name: "g".into(),
            }]);
        assert!(!responsible(&gated));
    }
}
