//! The replicaset controller, as kube-controller-manager's: each
//! ReplicaSet gets as many active pods as `spec.replicas` says.
//!
//! - Pods come from one watch of every pod, reflected into a cache before
//!   they trigger a sync of their controller (or, for an orphan, of every
//!   replica set in its namespace whose selector selects it).
//! - A sync claims pods (ControllerRef semantics): it adopts orphans its
//!   selector selects, releases pods it owns that no longer match, and
//!   ignores pods another controller owns.
//! - It creates missing pods in slow-start batches (1, 2, 4, ...; at most
//!   [`BURST`] per sync) and deletes extra pods in Kubernetes' order
//!   ([`pods::deletion_order`]), guarded by [`expectations`] so a cache
//!   that has not yet seen its own writes never makes it act twice.
//! - It writes the status ([`status`]) with observedGeneration, and the
//!   ReplicaFailure condition while the API refuses its pods.

pub mod expectations;
pub mod index;
pub mod pods;
pub mod status;

use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;

use futures::future::join_all;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, Event};
use kube::runtime::{Controller, WatchStreamExt};
use serde_json::json;

use self::expectations::Expectations;
use self::status::Failure;
use crate::context::Context;
use crate::events::Involved;
use crate::{Error, runner, status_code};

/// The controller's name in metrics, events and `--controllers`.
pub const NAME: &str = "replicaset";

/// The most pods one sync creates or deletes (Kubernetes' burstReplicas).
pub const BURST: usize = 500;

/// What every sync shares: the pod cache, its index by controller and
/// the expectations.
struct Shared {
    pods: Store<Pod>,
    index: index::OwnerIndex,
    expectations: Expectations,
}

/// Run until the future is dropped (leadership lost).
pub async fn run(ctx: Context) -> Result<(), Error> {
    let client = ctx.client.clone();
    let (pods, writer) = reflector::store::<Pod>();
    let shared = Arc::new(Shared {
        pods,
        index: index::OwnerIndex::default(),
        expectations: Expectations::default(),
    });
    let seen = shared.clone();
    let pod_events = watcher(Api::<Pod>::all(client.clone()))
        .default_backoff()
        .reflect(writer)
        .inspect_err(
            |e| tracing::debug!(controller = NAME, error = %e, "pod watch failed; retrying"),
        )
        .inspect_ok(move |ev| {
            if matches!(ev, Event::InitDone) {
                tracing::debug!(controller = NAME, "pod cache listed");
            }
            seen.index.apply(ev);
            match ev {
                Event::Apply(p) | Event::InitApply(p) => seen.expectations.observe(p, false),
                Event::Delete(p) => seen.expectations.observe(p, true),
                _ => {}
            }
        })
        .touched_objects();
    let controller = Controller::new(
        Api::<ReplicaSet>::all(client.clone()),
        watcher::Config::default(),
    );
    let sets = controller.store();
    let controller =
        controller.watches_stream(pod_events, move |pod: Pod| sets_to_sync(&sets, &pod));
    runner::run(controller, ctx, move |rs, ctx| {
        let shared = shared.clone();
        guarded(sync(rs, ctx, shared))
    })
    .await;
    Ok(())
}

/// A sync cut off after [`SYNC_TIMEOUT`] (a hung request is retried, not
/// waited on) and whose panic is an error to retry, not the end of the
/// controller.
pub(crate) async fn guarded(
    sync: impl std::future::Future<Output = Result<Action, Error>>,
) -> Result<Action, Error> {
    use futures::FutureExt;
    match tokio::time::timeout(
        SYNC_TIMEOUT,
        std::panic::AssertUnwindSafe(sync).catch_unwind(),
    )
    .await
    {
        Ok(Ok(out)) => out,
        Ok(Err(panic)) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(error = %what, "sync panicked");
            Err(Error::Invalid(format!("sync panicked: {what}")))
        }
        Err(_) => Err(Error::Invalid("sync timed out".into())),
    }
}

/// The longest one sync may take.
pub(crate) const SYNC_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a sync waits for the first list of pods before it gives up
/// (and is retried).
const CACHE_WAIT: Duration = Duration::from_secs(20);

fn watcher(api: Api<Pod>) -> impl futures::Stream<Item = watcher::Result<Event<Pod>>> {
    kube::runtime::watcher(api, watcher::Config::default())
}

/// The replica sets a pod change concerns: its controller if that is a
/// ReplicaSet, or for an orphan every replica set that selects it.
fn sets_to_sync(sets: &Store<ReplicaSet>, pod: &Pod) -> Vec<ObjectRef<ReplicaSet>> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    match pods::controller_of(&pod.metadata) {
        Some(r) if r.kind == "ReplicaSet" && r.api_version == "apps/v1" => {
            vec![ObjectRef::new(&r.name).within(&ns)]
        }
        Some(_) => vec![],
        None => {
            sets.state()
                .iter()
                .filter(|rs| {
                    rs.metadata.namespace.as_deref() == Some(ns.as_str())
                        && rs.spec.as_ref().is_some_and(|s| {
                            pods::selects(&s.selector, pod.metadata.labels.as_ref())
                        })
                })
                .map(|rs| ObjectRef::from_obj(rs.as_ref()))
                .collect()
        }
    }
}

/// One sync of `rs`: claim, manage replicas, write status.
async fn sync(rs: Arc<ReplicaSet>, ctx: Context, shared: Arc<Shared>) -> Result<Action, Error> {
    let uid = rs.metadata.uid.clone().unwrap_or_default();
    let (Some(ns), Some(name)) = (rs.metadata.namespace.clone(), rs.metadata.name.clone()) else {
        return Ok(Action::await_change());
    };
    match tokio::time::timeout(CACHE_WAIT, shared.pods.wait_until_ready()).await {
        Ok(Ok(())) => {}
        Ok(Err(_)) => return Err(Error::Invalid("the pod cache is gone".into())),
        Err(_) => return Err(Error::Invalid("the pod cache is not listed yet".into())),
    }
    let Some(spec) = rs.spec.clone() else {
        return Ok(Action::await_change());
    };
    let pods_api = Api::<Pod>::namespaced(ctx.client.clone(), &ns);
    let deleting = rs.metadata.deletion_timestamp.is_some();

    // Claim: every active pod that is ours or an orphan of the namespace.
    let mine: Vec<Arc<Pod>> = shared
        .index
        .owned(&uid)
        .iter()
        .filter_map(|r| shared.pods.get(r))
        .collect();
    let candidates: Vec<Arc<Pod>> = mine
        .iter()
        .cloned()
        .chain(
            shared
                .index
                .orphans(&ns)
                .iter()
                .filter_map(|r| shared.pods.get(r)),
        )
        .filter(|p| pods::is_active(p))
        .collect();
    let mut owned: Vec<Arc<Pod>> = Vec::new();
    let mut fresh_checked = false;
    for p in candidates {
        let matches = pods::selects(&spec.selector, p.metadata.labels.as_ref());
        match pods::controller_of(&p.metadata) {
            Some(r) if r.uid == uid => {
                if matches || deleting {
                    owned.push(p);
                } else {
                    release(&pods_api, &p, &uid).await?;
                }
            }
            Some(_) => {}
            None if matches && !deleting && p.metadata.deletion_timestamp.is_none() => {
                // Adopt only if the owner, read fresh, is not being deleted
                // (Kubernetes' RecheckDeletionTimestamp).
                if !fresh_checked {
                    let live = Api::<ReplicaSet>::namespaced(ctx.client.clone(), &ns)
                        .get(&name)
                        .await?;
                    if live.metadata.uid.as_deref() != Some(uid.as_str())
                        || live.metadata.deletion_timestamp.is_some()
                    {
                        return Ok(Action::await_change());
                    }
                    fresh_checked = true;
                }
                if let Some(p) = adopt(&pods_api, &p, &rs).await? {
                    owned.push(Arc::new(p));
                }
            }
            None => {}
        }
    }

    let mut failure = None;
    if !deleting
        && shared
            .expectations
            .satisfied(&uid, &ns, &shared.pods, &mine)
    {
        let want = spec.replicas.unwrap_or(1).max(0) as usize;
        tracing::debug!(controller = NAME, replicaset = %name, have = owned.len(), want, "managing replicas");
        failure = if owned.len() < want {
            create_pods(&ctx, &shared, &rs, &ns, want - owned.len()).await
        } else if owned.len() > want {
            delete_pods(&ctx, &shared, &rs, &pods_api, &owned, owned.len() - want).await
        } else {
            None
        };
    }
    if deleting {
        shared.expectations.forget(&uid);
    }

    let now = Timestamp::now();
    let refs: Vec<&Pod> = owned.iter().map(|p| p.as_ref()).collect();
    let new_status = status::calculate(&rs, &refs, failure.as_ref(), now);
    if !rs
        .status
        .as_ref()
        .is_some_and(|s| status::same(s, &new_status))
    {
        write_status(&ctx, &rs, new_status.clone()).await?;
    }
    if let Some(f) = failure {
        return Err(Error::Invalid(f.message));
    }
    // A pod ready but not yet available for minReadySeconds: look again then.
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let next = refs
        .iter()
        .filter_map(|p| pods::seconds_to_available(p, min_ready, now))
        .min();
    Ok(match next {
        Some(s) => Action::requeue(Duration::from_secs(s.max(1) as u64)),
        None => Action::await_change(),
    })
}

/// Create `n` pods for `rs` (at most [`BURST`]) in slow-start batches;
/// the first failed batch stops the rest.
async fn create_pods(
    ctx: &Context,
    shared: &Shared,
    rs: &ReplicaSet,
    ns: &str,
    n: usize,
) -> Option<Failure> {
    let uid = rs.metadata.uid.clone().unwrap_or_default();
    let owner = pods::controller_ref("apps/v1", "ReplicaSet", &rs.metadata);
    let template = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.clone())
        .unwrap_or_default();
    let pod = pods::pod_from_template(&template, ns, owner);
    let api = Api::<Pod>::namespaced(ctx.client.clone(), ns);
    let involved = Involved::of(rs);
    for batch in pods::slow_start_batches(n.min(BURST)) {
        let pp = PostParams::default();
        let started = std::time::Instant::now();
        let results = join_all((0..batch).map(|_| api.create(&pp, &pod))).await;
        tracing::debug!(controller = NAME, batch, took = ?started.elapsed(), "created a batch of pods");
        let mut failed = None;
        for r in results {
            match r {
                Ok(p) => {
                    let pname = p.metadata.name.clone().unwrap_or_default();
                    shared.expectations.created(&uid, pname.clone());
                    ctx.metrics.created(ctx.name);
                    ctx.recorder
                        .publish(
                            &involved,
                            "Normal",
                            "SuccessfulCreate",
                            &format!("Created pod: {pname}"),
                        )
                        .await;
                }
                Err(e) => {
                    let message = format!("Error creating: {}", api_message(&e));
                    ctx.recorder
                        .publish(&involved, "Warning", "FailedCreate", &message)
                        .await;
                    failed = Some(Failure {
                        reason: "FailedCreate",
                        message,
                    });
                }
            }
        }
        if failed.is_some() {
            return failed;
        }
    }
    None
}

/// Delete `n` of `owned` (at most [`BURST`]) in Kubernetes' order, each
/// with its uid as a precondition.
async fn delete_pods(
    ctx: &Context,
    shared: &Shared,
    rs: &ReplicaSet,
    api: &Api<Pod>,
    owned: &[Arc<Pod>],
    n: usize,
) -> Option<Failure> {
    let uid = rs.metadata.uid.clone().unwrap_or_default();
    let refs: Vec<&Pod> = owned.iter().map(|p| p.as_ref()).collect();
    let victims: Vec<&Pod> = pods::deletion_order(&refs)
        .into_iter()
        .take(n.min(BURST))
        .map(|i| refs[i])
        .collect();
    let involved = Involved::of(rs);
    let results = join_all(victims.iter().map(|p| {
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                uid: p.metadata.uid.clone(),
                resource_version: None,
            }),
            ..Default::default()
        };
        let name = p.metadata.name.clone().unwrap_or_default();
        async move {
            let r = api.delete(&name, &dp).await;
            (name, r)
        }
    }))
    .await;
    let mut failed = None;
    for ((name, r), p) in results.into_iter().zip(&victims) {
        match r {
            Ok(_) => {
                shared
                    .expectations
                    .deleted(&uid, p.metadata.uid.clone().unwrap_or_default());
                ctx.metrics.deleted(ctx.name);
                ctx.recorder
                    .publish(
                        &involved,
                        "Normal",
                        "SuccessfulDelete",
                        &format!("Deleted pod: {name}"),
                    )
                    .await;
            }
            // Already gone: what we wanted.
            Err(e) if status_code(&e) == Some(404) => {}
            Err(e) => {
                let message = format!("Error deleting: {}", api_message(&e));
                ctx.recorder
                    .publish(&involved, "Warning", "FailedDelete", &message)
                    .await;
                failed = Some(Failure {
                    reason: "FailedDelete",
                    message,
                });
            }
        }
    }
    failed
}

/// The API's message of an error (what Kubernetes' events quote).
pub(crate) fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        e => e.to_string(),
    }
}

/// Make `rs` the controller of orphan `pod` (a patch that fails if the pod
/// changed since the cache saw it). `None` when the pod changed or went.
async fn adopt(api: &Api<Pod>, pod: &Pod, rs: &ReplicaSet) -> Result<Option<Pod>, Error> {
    let mut refs = pod.metadata.owner_references.clone().unwrap_or_default();
    refs.push(pods::controller_ref("apps/v1", "ReplicaSet", &rs.metadata));
    let patch = json!({"metadata": {
        "ownerReferences": refs,
        "resourceVersion": pod.metadata.resource_version,
        "uid": pod.metadata.uid,
    }});
    let name = pod.metadata.name.clone().unwrap_or_default();
    match api
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(p) => Ok(Some(p)),
        Err(e) if matches!(status_code(&e), Some(404 | 409)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Drop the controller reference `owner` from `pod`, which it no longer selects.
pub(crate) async fn release<K>(api: &Api<K>, obj: &K, owner: &str) -> Result<(), Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let meta = obj.meta();
    let refs: Vec<_> = meta
        .owner_references
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.uid != owner)
        .collect();
    let patch = json!({"metadata": {
        "ownerReferences": refs,
        "resourceVersion": meta.resource_version,
        "uid": meta.uid,
    }});
    let name = meta.name.clone().unwrap_or_default();
    match api
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        // Gone, or changed since: the next sync sees what it is now.
        Err(e) if matches!(status_code(&e), Some(404 | 409)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Write `status` to `rs` (optimistic concurrency: on a conflict, once
/// more on the object read fresh).
async fn write_status(
    ctx: &Context,
    rs: &ReplicaSet,
    status: k8s_openapi::api::apps::v1::ReplicaSetStatus,
) -> Result<(), Error> {
    let ns = rs.metadata.namespace.clone().unwrap_or_default();
    let name = rs.metadata.name.clone().unwrap_or_default();
    let api = Api::<ReplicaSet>::namespaced(ctx.client.clone(), &ns);
    let mut obj = rs.clone();
    obj.status = Some(status.clone());
    match api
        .replace_status(&name, &PostParams::default(), &obj)
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if status_code(&e) == Some(409) => {
            let mut live = api.get(&name).await?;
            if live.metadata.uid != rs.metadata.uid {
                return Ok(());
            }
            live.status = Some(status);
            api.replace_status(&name, &PostParams::default(), &live)
                .await?;
            Ok(())
        }
        Err(e) if status_code(&e) == Some(404) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
