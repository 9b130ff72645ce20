//! The garbage collector, as Kubernetes' does it: it watches every resource
//! that discovery lists with list, watch and delete (custom resources too,
//! found again every [`REDISCOVER`]), keeps the ownership [`graph`], and for
//! each object that needs it:
//! - a dependent whose owners are all absent (checked by a live GET of each
//!   owner, by name and uid, in the dependent's namespace for a namespaced
//!   owner) is deleted, with a uid and resourceVersion precondition; one
//!   with a live owner only loses the references to absent owners;
//! - an owner in foreground deletion (`foregroundDeletion` finalizer) has
//!   its dependents deleted, and loses the finalizer once no dependent with
//!   `blockOwnerDeletion` remains;
//! - an owner deleted with the orphan policy (`orphan` finalizer) is removed
//!   from its dependents' ownerReferences, then loses the finalizer.
//!
//! It starts from fresh lists each time its member becomes leader, and acts
//! only once the lists are in, so a leader change neither misses an object
//! nor deletes one twice (a second delete fails its uid precondition).

pub mod graph;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::Client;
use kube::api::{Api, DynamicObject, PropagationPolicy};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use serde_json::Value;
use tokio::task::{AbortHandle, JoinSet};

use self::graph::{Decision, FOREGROUND, Graph, Node, ORPHAN, OwnerRef, OwnerState, decide};
use crate::Error;
use crate::discovery::{self, ResourceInfo, Resources};
use crate::events::{Involved, Recorder};
use crate::metrics::Metrics;
use crate::queue::Queue;
use crate::raw::{self, Deleted, Patched};

/// The controller's name in metrics and events.
pub const NAME: &str = "garbagecollector";
/// How often discovery runs again, to watch new resources (CRDs).
pub const REDISCOVER: Duration = Duration::from_secs(30);
/// How long to wait for the first lists before acting anyway.
const SYNC_TIMEOUT: Duration = Duration::from_secs(60);
/// How soon to look again at a dependent with an owner of unknown kind.
const UNRESOLVED_RETRY: Duration = Duration::from_secs(30);

/// Resources the collector does not track (as in Kubernetes: events are
/// many, short-lived and never owners).
fn ignored(info: &ResourceInfo) -> bool {
    info.ar.plural == "events" && (info.ar.group.is_empty() || info.ar.group == "events.k8s.io")
}

/// A running watch of one resource: its task, whether its first list is
/// in, and the resource.
type Monitor = (AbortHandle, Arc<AtomicBool>, Arc<ResourceInfo>);

struct Collector {
    client: Client,
    metrics: Arc<Metrics>,
    recorder: Recorder,
    graph: Mutex<Graph>,
    queue: Queue<String>,
    resources: Mutex<Arc<Resources>>,
    /// (dependent uid, owner uid) already reported as invalid.
    reported: Mutex<HashSet<(String, String)>>,
}

impl Collector {
    fn graph(&self) -> std::sync::MutexGuard<'_, Graph> {
        self.graph.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn resources(&self) -> Arc<Resources> {
        self.resources
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn enqueue(&self, uids: Vec<String>) {
        for u in uids {
            self.queue.add(u);
        }
        self.metrics.queue_depth(NAME, self.queue.len());
    }

    fn observe(&self, info: &Arc<ResourceInfo>, obj: &DynamicObject) -> Option<String> {
        let value = serde_json::to_value(obj).ok()?;
        let node = Node::of(&value, info.clone())?;
        let uid = node.uid.clone();
        let wake = self.graph().upsert(node);
        self.enqueue(wake);
        Some(uid)
    }

    fn forget(&self, uid: &str) {
        let wake = self.graph().remove(uid);
        self.enqueue(wake);
    }
}

/// Run the collector until the future is dropped (leadership lost).
pub async fn run(client: Client, metrics: Arc<Metrics>, identity: String) -> Result<(), Error> {
    let gc = Arc::new(Collector {
        recorder: Recorder::new(client.clone(), "garbage-collector-controller", identity),
        client,
        metrics,
        graph: Mutex::new(Graph::default()),
        queue: Queue::default(),
        resources: Mutex::new(Arc::new(Resources::default())),
        reported: Mutex::new(HashSet::new()),
    });
    // Every task of this run lives in `tasks`: dropping it (leadership
    // lost) aborts them all.
    let mut tasks = JoinSet::new();
    let mut monitors: HashMap<(String, String), Monitor> = HashMap::new();
    let mut started = false;
    let mut first = Instant::now();
    loop {
        match discovery::discover(&gc.client).await {
            Ok(found) => {
                let found = Arc::new(found);
                *gc.resources.lock().unwrap_or_else(|e| e.into_inner()) = found.clone();
                let wanted: HashMap<(String, String), Arc<ResourceInfo>> = found
                    .preferred
                    .iter()
                    .filter(|r| {
                        !ignored(r)
                            && r.supports("list")
                            && r.supports("watch")
                            && r.supports("delete")
                    })
                    .map(|r| ((r.ar.group.clone(), r.ar.plural.clone()), r.clone()))
                    .collect();
                // Resources no longer served: their objects are gone.
                // A failed group version keeps its monitors (a blip is not a deletion).
                let failed: HashSet<&str> = found
                    .failed
                    .iter()
                    .map(|(gv, _)| discovery::split_api_version(gv).0)
                    .collect();
                monitors.retain(|key, (handle, _, info)| {
                    if wanted.contains_key(key) || failed.contains(key.0.as_str()) {
                        return true;
                    }
                    handle.abort();
                    let uids = gc.graph().uids_of(info);
                    for u in uids {
                        gc.forget(&u);
                    }
                    false
                });
                for (key, info) in wanted {
                    if monitors.contains_key(&key) {
                        continue;
                    }
                    let synced = Arc::new(AtomicBool::new(false));
                    let handle = tasks.spawn(monitor(gc.clone(), info.clone(), synced.clone()));
                    monitors.insert(key, (handle, synced, info));
                }
            }
            Err(e) => tracing::warn!(error = %e, "garbage collector: discovery failed"),
        }
        if !started {
            // Act only on a complete picture: a foreground owner must not
            // lose its finalizer because its dependents are not listed yet.
            let deadline = first + SYNC_TIMEOUT;
            loop {
                let pending: Vec<String> = monitors
                    .values()
                    .filter(|(_, s, _)| !s.load(Ordering::Acquire))
                    .map(|(_, _, i)| i.group_resource())
                    .collect();
                if (pending.is_empty() && !monitors.is_empty()) || Instant::now() >= deadline {
                    if !pending.is_empty() {
                        tracing::warn!(
                            ?pending,
                            "garbage collector: starting before these resources listed"
                        );
                    }
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            if monitors.is_empty() {
                // Discovery has not worked yet: try again soon.
                first = Instant::now();
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            let objects = gc.graph().len();
            tracing::info!(
                resources = monitors.len(),
                objects,
                "garbage collector synced, collecting"
            );
            tasks.spawn(worker(gc.clone()));
            started = true;
        }
        tokio::time::sleep(REDISCOVER).await;
    }
}

/// Keep the graph up to date with one resource's watch.
async fn monitor(gc: Arc<Collector>, info: Arc<ResourceInfo>, synced: Arc<AtomicBool>) {
    let api: Api<DynamicObject> = Api::all_with(gc.client.clone(), &info.ar);
    let stream = watcher::watcher(api, watcher::Config::default()).default_backoff();
    futures::pin_mut!(stream);
    let mut listing: Option<HashSet<String>> = None;
    let mut last_warning: Option<Instant> = None;
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(Event::Init) => listing = Some(HashSet::new()),
            Ok(Event::InitApply(obj)) => {
                if let (Some(uid), Some(seen)) = (gc.observe(&info, &obj), listing.as_mut()) {
                    seen.insert(uid);
                }
            }
            Ok(Event::InitDone) => {
                // Anything not listed again was deleted while unwatched.
                let seen = listing.take().unwrap_or_default();
                let gone: Vec<String> = gc
                    .graph()
                    .uids_of(&info)
                    .into_iter()
                    .filter(|u| !seen.contains(u))
                    .collect();
                for u in gone {
                    gc.forget(&u);
                }
                synced.store(true, Ordering::Release);
            }
            Ok(Event::Apply(obj)) => {
                gc.observe(&info, &obj);
            }
            Ok(Event::Delete(obj)) => {
                if let Some(uid) = obj.metadata.uid.as_deref() {
                    gc.forget(uid);
                }
            }
            Err(e) => {
                if last_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                    tracing::warn!(resource = %info.group_resource(), error = %e, "garbage collector: watch failed, retrying");
                    last_warning = Some(Instant::now());
                }
            }
        }
    }
}

/// Process queued uids one at a time.
async fn worker(gc: Arc<Collector>) {
    loop {
        let uid = gc.queue.next().await;
        gc.metrics.queue_depth(NAME, gc.queue.len());
        let result = process(&gc, &uid).await;
        gc.metrics.reconciled(NAME, result.is_ok());
        match result {
            Ok(None) => gc.queue.forget(&uid),
            Ok(Some(after)) => {
                gc.queue.forget(&uid);
                gc.queue.add_after(uid, after);
            }
            Err(e) => {
                tracing::debug!(%uid, error = %e, "garbage collector: retrying");
                gc.queue.retry(uid);
            }
        }
    }
}

/// Look at one object; `Ok(Some(d))` asks to look again after `d`.
async fn process(gc: &Collector, uid: &str) -> Result<Option<Duration>, Error> {
    let Some(node) = gc.graph().get(uid).cloned() else {
        return Ok(None);
    };
    if node.deleting {
        if node.has_finalizer(ORPHAN) {
            orphan_dependents(gc, &node).await?;
            return Ok(None);
        }
        if node.has_finalizer(FOREGROUND) {
            delete_dependents(gc, &node).await?;
        }
        // Otherwise it is on its way out already.
        return Ok(None);
    }
    attempt_to_delete(gc, &node).await
}

/// Foreground deletion of `owner`: delete its dependents; once none that
/// blocks it is left, remove the finalizer (the API server then deletes it).
async fn delete_dependents(gc: &Collector, owner: &Node) -> Result<(), Error> {
    let (blocking, waiting): (usize, Vec<String>) = {
        let g = gc.graph();
        let blocking = g.blocking_dependents(&owner.uid).len();
        let waiting = g
            .dependents_of(&owner.uid)
            .into_iter()
            .filter(|d| !d.deleting)
            .map(|d| d.uid.clone())
            .collect();
        (blocking, waiting)
    };
    if blocking == 0 {
        if raw::remove_finalizer(
            &gc.client,
            &owner.resource,
            owner.namespace.as_deref(),
            &owner.name,
            &owner.uid,
            FOREGROUND,
        )
        .await?
        {
            gc.metrics.patched(NAME);
            tracing::info!(resource = %owner.resource.group_resource(), namespace = ?owner.namespace, name = %owner.name, "dependents gone: removed the foregroundDeletion finalizer");
        }
        return Ok(());
    }
    // The dependents' own processing sees this owner waiting and deletes
    // them; their removal queues this owner again.
    gc.enqueue(waiting);
    Ok(())
}

/// Orphan deletion of `owner`: remove its uid from every dependent's
/// ownerReferences, then the `orphan` finalizer.
async fn orphan_dependents(gc: &Collector, owner: &Node) -> Result<(), Error> {
    let dependents: Vec<Node> = gc
        .graph()
        .dependents_of(&owner.uid)
        .into_iter()
        .cloned()
        .collect();
    for d in dependents {
        let mut tries = 0;
        loop {
            tries += 1;
            let Some(obj) =
                raw::get(&gc.client, &d.resource, d.namespace.as_deref(), &d.name).await?
            else {
                break;
            };
            if obj.pointer("/metadata/uid").and_then(Value::as_str) != Some(d.uid.as_str()) {
                break;
            }
            let old = obj.pointer("/metadata/ownerReferences");
            let refs: Vec<Value> = old.and_then(Value::as_array).cloned().unwrap_or_default();
            let kept: Vec<Value> = refs
                .iter()
                .filter(|r| r.get("uid").and_then(Value::as_str) != Some(owner.uid.as_str()))
                .cloned()
                .collect();
            if kept.len() == refs.len() {
                break;
            }
            match raw::replace_metadata_list(
                &gc.client,
                &d.resource,
                d.namespace.as_deref(),
                &d.name,
                &d.uid,
                raw::ListChange {
                    field: "ownerReferences",
                    old,
                    new: kept,
                },
            )
            .await?
            {
                Patched::Done => {
                    gc.metrics.patched(NAME);
                    break;
                }
                Patched::Gone => break,
                Patched::Changed if tries < 5 => continue,
                Patched::Changed => {
                    return Err(Error::Invalid(format!(
                        "{} kept changing while being orphaned",
                        d.name
                    )));
                }
            }
        }
    }
    if raw::remove_finalizer(
        &gc.client,
        &owner.resource,
        owner.namespace.as_deref(),
        &owner.name,
        &owner.uid,
        ORPHAN,
    )
    .await?
    {
        gc.metrics.patched(NAME);
        tracing::info!(resource = %owner.resource.group_resource(), namespace = ?owner.namespace, name = %owner.name, "dependents orphaned: removed the orphan finalizer");
    }
    Ok(())
}

/// A dependent: delete it if all its owners are gone, or drop the
/// references to the gone ones if some owner lives.
async fn attempt_to_delete(gc: &Collector, node: &Node) -> Result<Option<Duration>, Error> {
    if node.owners.is_empty() {
        return Ok(None);
    }
    // Decide on the object as stored now, not as last watched.
    let Some(obj) = raw::get(
        &gc.client,
        &node.resource,
        node.namespace.as_deref(),
        &node.name,
    )
    .await?
    else {
        return Ok(None);
    };
    let m = &obj["metadata"];
    if m.get("uid").and_then(Value::as_str) != Some(node.uid.as_str())
        || m.get("deletionTimestamp").is_some()
    {
        return Ok(None);
    }
    let refs = OwnerRef::all_of(&obj);
    let mut states = Vec::with_capacity(refs.len());
    let mut again = None;
    for r in &refs {
        let s = owner_state(gc, node, r).await?;
        if s == Resolved::Unknown {
            again = Some(UNRESOLVED_RETRY);
        }
        states.push(s.state());
    }
    let has_dependents = gc.graph().has_dependents(&node.uid);
    let rv = m.get("resourceVersion").and_then(Value::as_str);
    match decide(&refs, &states, has_dependents, &raw::finalizers(&obj)) {
        Decision::Keep => Ok(again),
        Decision::RemoveRefs(uids) => {
            let old = obj.pointer("/metadata/ownerReferences");
            let kept: Vec<Value> = old
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(|r| {
                    !r.get("uid")
                        .and_then(Value::as_str)
                        .is_some_and(|u| uids.iter().any(|x| x == u))
                })
                .cloned()
                .collect();
            match raw::replace_metadata_list(
                &gc.client,
                &node.resource,
                node.namespace.as_deref(),
                &node.name,
                &node.uid,
                raw::ListChange {
                    field: "ownerReferences",
                    old,
                    new: kept,
                },
            )
            .await?
            {
                Patched::Done => {
                    gc.metrics.patched(NAME);
                    tracing::info!(resource = %node.resource.group_resource(), namespace = ?node.namespace, name = %node.name, removed = ?uids, "removed references to absent owners");
                    Ok(again)
                }
                Patched::Gone => Ok(None),
                Patched::Changed => Err(Error::Invalid(format!(
                    "{} changed while being patched",
                    node.name
                ))),
            }
        }
        Decision::Delete(policy) => {
            let policy_name = match policy {
                PropagationPolicy::Foreground => "Foreground",
                PropagationPolicy::Orphan => "Orphan",
                PropagationPolicy::Background => "Background",
            };
            match raw::delete(
                &gc.client,
                &node.resource,
                node.namespace.as_deref(),
                &node.name,
                &node.uid,
                rv,
                policy,
            )
            .await?
            {
                Deleted::Done => {
                    gc.metrics.deleted(NAME);
                    tracing::info!(resource = %node.resource.group_resource(), namespace = ?node.namespace, name = %node.name, policy = policy_name, "deleted: no owner left");
                    Ok(None)
                }
                Deleted::Gone => Ok(None),
                Deleted::Changed => Err(Error::Invalid(format!(
                    "{} changed before its deletion",
                    node.name
                ))),
            }
        }
    }
}

/// An owner reference resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resolved {
    State(OwnerState),
    /// A kind discovery does not know (yet): kept, looked at again later.
    Unknown,
}

impl Resolved {
    fn state(self) -> OwnerState {
        match self {
            Resolved::State(s) => s,
            Resolved::Unknown => OwnerState::Unresolvable,
        }
    }
}

/// Where `r` (a reference of `dependent`) points, checked against the API.
async fn owner_state(gc: &Collector, dependent: &Node, r: &OwnerRef) -> Result<Resolved, Error> {
    let Some(info) = gc.resources().resolve(&r.api_version, &r.kind) else {
        return Ok(Resolved::Unknown);
    };
    if info.namespaced && dependent.namespace.is_none() {
        // A cluster-scoped object cannot have a namespaced owner.
        report_invalid(gc, dependent, r, "cluster-scoped").await;
        return Ok(Resolved::State(OwnerState::Unresolvable));
    }
    let namespace = if info.namespaced {
        dependent.namespace.as_deref()
    } else {
        None
    };
    let Some(owner) = raw::get(&gc.client, &info, namespace, &r.name).await? else {
        check_cross_namespace(gc, dependent, r).await;
        return Ok(Resolved::State(OwnerState::Absent));
    };
    let m = &owner["metadata"];
    if m.get("uid").and_then(Value::as_str) != Some(r.uid.as_str()) {
        check_cross_namespace(gc, dependent, r).await;
        return Ok(Resolved::State(OwnerState::Absent));
    }
    let deleting_dependents = m.get("deletionTimestamp").is_some()
        && raw::finalizers(&owner).iter().any(|f| f == FOREGROUND);
    Ok(Resolved::State(if deleting_dependents {
        OwnerState::WaitingForDependents
    } else {
        OwnerState::Live
    }))
}

/// An absent owner whose uid the collector knows in another namespace:
/// the reference crossed namespaces, which is invalid.
async fn check_cross_namespace(gc: &Collector, dependent: &Node, r: &OwnerRef) {
    let elsewhere = gc
        .graph()
        .get(&r.uid)
        .filter(|o| o.namespace.is_some() && o.namespace != dependent.namespace)
        .map(|o| o.namespace.clone());
    if let Some(ns) = elsewhere {
        let ns = ns.unwrap_or_default();
        report_invalid(gc, dependent, r, &format!("in namespace {ns:?}")).await;
    }
}

/// Report `OwnerRefInvalidNamespace` on the dependent, once per reference.
async fn report_invalid(gc: &Collector, dependent: &Node, r: &OwnerRef, owner_is: &str) {
    let key = (dependent.uid.clone(), r.uid.clone());
    if !gc
        .reported
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key)
    {
        return;
    }
    let here = match &dependent.namespace {
        Some(ns) => format!("namespace {ns:?}"),
        None => "cluster scope".to_string(),
    };
    let message = format!(
        "ownerRef [{}/{}, namespace: {}, name: {}, uid: {}] does not exist in {here} (the owner is {owner_is})",
        r.api_version,
        r.kind,
        dependent.namespace.as_deref().unwrap_or(""),
        r.name,
        r.uid
    );
    let involved = Involved {
        api_version: dependent.resource.ar.api_version.clone(),
        kind: dependent.resource.ar.kind.clone(),
        namespace: dependent.namespace.clone(),
        name: dependent.name.clone(),
        uid: dependent.uid.clone(),
    };
    tracing::warn!(name = %dependent.name, namespace = ?dependent.namespace, "{message}");
    if let Err(e) = gc
        .recorder
        .warning(&involved, "OwnerRefInvalidNamespace", &message)
        .await
    {
        tracing::warn!(error = %e, "could not record an OwnerRefInvalidNamespace event");
    }
}
