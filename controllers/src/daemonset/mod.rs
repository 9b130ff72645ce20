//! The daemonset controller: one pod of each DaemonSet on every node that
//! should run it, as Kubernetes' DaemonSet controller does. A sync reads
//! the DaemonSet, the nodes and its pods fresh (a quorum list: a pod
//! created by the previous sync is always seen, so none is created
//! twice), keeps the current template's ControllerRevision
//! ([`revision`]), decides with [`nodes`] (who should run a pod) and
//! [`plan`] (create, delete, roll), and writes the status that `kubectl
//! rollout status daemonset` reads. Pods are pinned to their node with
//! required node affinity on `metadata.name` and bound by the scheduler.
//! Node changes (labels, taints) resync every DaemonSet.

pub mod nodes;
pub mod plan;
pub mod revision;

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::Action;
use kube::runtime::{Controller, WatchStreamExt, watcher};
use serde_json::json;

use crate::Error;
use crate::context::Context;
use crate::events::Involved;
use crate::workload::{self, claim_pods, controlled_by, controller_ref, not_found};
use plan::{DaemonPod, NodeFit, Strategy};
use revision::HASH_LABEL;

/// The controller's name in metrics, events and `--controllers`.
pub const NAME: &str = "daemonset";

/// Run until the future is dropped (leadership lost).
pub async fn run(ctx: Context) -> Result<(), Error> {
    let client = ctx.client.clone();
    let controller = Controller::new(
        Api::<DaemonSet>::all(client.clone()),
        watcher::Config::default(),
    );
    // Only what decides placement: not the status heartbeats.
    let placement = |n: &Node| {
        let mut h = DefaultHasher::new();
        n.metadata.labels.hash(&mut h);
        if let Some(spec) = &n.spec {
            spec.unschedulable.hash(&mut h);
            for t in spec.taints.iter().flatten() {
                (&t.key, &t.value, &t.effect).hash(&mut h);
            }
        }
        Some(h.finish())
    };
    let node_changes = watcher(Api::<Node>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .touched_objects()
        .predicate_filter(placement, Default::default())
        .boxed();
    let controller = controller
        .owns(Api::<Pod>::all(client.clone()), watcher::Config::default())
        .owns(
            Api::<ControllerRevision>::all(client),
            watcher::Config::default(),
        )
        .reconcile_all_on(node_changes.filter_map(|n| async move { n.ok().map(|_| ()) }));
    crate::runner::run(controller, ctx, reconcile).await;
    Ok(())
}

async fn reconcile(ds: Arc<DaemonSet>, ctx: Context) -> Result<Action, Error> {
    let ns = ds.metadata.namespace.clone().unwrap_or_default();
    let name = ds.metadata.name.clone().unwrap_or_default();
    let api = Api::<DaemonSet>::namespaced(ctx.client.clone(), &ns);
    let Some(mut ds) = api.get_opt(&name).await? else {
        return Ok(Action::await_change());
    };
    if ds.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let spec = ds.spec.clone().unwrap_or_default();
    let selector = workload::selector(Some(&spec.selector))?;
    if selector.selects_all() {
        tracing::warn!(daemonset = %name, "daemonset has an empty selector; not syncing");
        return Ok(Action::await_change());
    }
    let involved = Involved::of(&ds);
    let now = Timestamp::now();
    let node_list = Api::<Node>::all(ctx.client.clone())
        .list(&ListParams::default())
        .await?
        .items;
    let pods_api = Api::<Pod>::namespaced(ctx.client.clone(), &ns);
    let listed = pods_api
        .list(&ListParams::default().labels_from(&selector))
        .await?
        .items;
    let pods = claim_pods(&pods_api, &ds, &selector, listed).await?;

    // The current revision (its hash labels the pods).
    let crs_api = Api::<ControllerRevision>::namespaced(ctx.client.clone(), &ns);
    let uid = ds.metadata.uid.clone().unwrap_or_default();
    let revisions: Vec<ControllerRevision> = crs_api
        .list(&ListParams::default().labels_from(&selector))
        .await?
        .items
        .into_iter()
        .filter(|r| controlled_by(&r.metadata, &uid))
        .collect();
    let (current_name, hash) =
        match current_revision(&ctx, &api, &crs_api, &mut ds, &revisions).await? {
            Some(c) => c,
            // A hash collision: the collision count went up; sync again.
            None => return Ok(Action::requeue(Duration::from_millis(10))),
        };

    let template_spec = spec.template.spec.clone().unwrap_or_default();
    let fits: Vec<NodeFit> = node_list
        .iter()
        .map(|n| {
            let f = nodes::fit(n, &template_spec);
            NodeFit {
                name: n.metadata.name.clone().unwrap_or_default(),
                should_run: f.should_run,
                should_continue: f.should_continue,
            }
        })
        .collect();
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let live: Vec<&Pod> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    let daemon_pods: Vec<DaemonPod> = live
        .iter()
        .filter_map(|p| {
            let node = nodes::target_node(p.spec.as_ref()?)?;
            Some(DaemonPod {
                name: p.metadata.name.clone().unwrap_or_default(),
                node,
                updated: p.metadata.labels.as_ref().and_then(|l| l.get(HASH_LABEL)) == Some(&hash),
                failed: workload::phase(p) == "Failed",
                ready: workload::is_ready(p),
                available: workload::is_available(p, min_ready, now),
                created: workload::created(&p.metadata),
            })
        })
        .collect();
    let desired = fits.iter().filter(|n| n.should_run).count();
    let strategy = match spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.type_.as_deref())
    {
        Some("OnDelete") => Strategy::OnDelete,
        _ => {
            let ru = spec
                .update_strategy
                .as_ref()
                .and_then(|s| s.rolling_update.as_ref());
            let resolve =
                |v: Option<&k8s_openapi::apimachinery::pkg::util::intstr::IntOrString>,
                 default: i32| {
                    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
                    match v {
                        Some(IntOrString::Int(i)) => plan::scaled(None, Some(*i), desired),
                        Some(IntOrString::String(s)) => plan::scaled(Some(s), None, desired),
                        None => plan::scaled(None, Some(default), desired),
                    }
                    .unwrap_or(default.max(0) as usize)
                };
            let max_surge = resolve(ru.and_then(|r| r.max_surge.as_ref()), 0);
            let mut max_unavailable = resolve(ru.and_then(|r| r.max_unavailable.as_ref()), 1);
            if max_surge == 0 && max_unavailable == 0 {
                max_unavailable = 1;
            }
            Strategy::RollingUpdate {
                max_unavailable,
                max_surge,
            }
        }
    };
    let p = plan::plan(&fits, &daemon_pods, strategy);

    for (pod, node) in &p.failed {
        ctx.recorder
            .publish(
                &involved,
                "Warning",
                "FailedDaemonPod",
                &format!("Found failed daemon pod {ns}/{pod} on node {node}, will try to kill it"),
            )
            .await;
    }
    for pod_name in &p.delete {
        let uid = pods
            .iter()
            .find(|x| x.metadata.name.as_ref() == Some(pod_name))
            .and_then(|x| x.metadata.uid.clone());
        delete_pod(&ctx, &pods_api, pod_name, uid, &involved).await?;
    }
    create_pods(&ctx, &pods_api, &ds, &hash, &p.create, &involved).await?;

    // Old revisions no pod uses any more, beyond the history limit.
    let mut live_hashes: Vec<String> = live
        .iter()
        .filter_map(|p| p.metadata.labels.as_ref()?.get(HASH_LABEL).cloned())
        .collect();
    live_hashes.push(hash.clone());
    for old in revision::to_prune(
        &revisions,
        &current_name,
        &live_hashes,
        spec.revision_history_limit.unwrap_or(10),
    ) {
        match crs_api.delete(&old, &DeleteParams::default()).await {
            Ok(_) => ctx.metrics.deleted(ctx.name),
            Err(e) if not_found(&e) => {}
            Err(e) => return Err(e.into()),
        }
    }

    let c = plan::counts(&fits, &daemon_pods);
    let before = ds.status.clone();
    let status = ds.status.get_or_insert_with(DaemonSetStatus::default);
    status.desired_number_scheduled = c.desired;
    status.current_number_scheduled = c.current;
    status.number_misscheduled = c.misscheduled;
    status.number_ready = c.ready;
    status.number_available = Some(c.available);
    status.number_unavailable = Some(c.desired - c.available);
    status.updated_number_scheduled = Some(c.updated);
    status.observed_generation = ds.metadata.generation;
    if ds.status != before {
        api.replace_status(&name, &PostParams::default(), &ds)
            .await?;
    }

    // Look again when a ready pod becomes available (minReadySeconds).
    let next = live
        .iter()
        .filter_map(|p| workload::available_at(p, min_ready, now))
        .min();
    Ok(match next {
        Some(at) => {
            Action::requeue(at.duration_since(now).unsigned_abs() + Duration::from_millis(100))
        }
        None => Action::await_change(),
    })
}

/// Find or make the revision of the current template; its name and hash.
/// `None` after a hash collision (the status' collisionCount was raised).
async fn current_revision(
    ctx: &Context,
    api: &Api<DaemonSet>,
    crs_api: &Api<ControllerRevision>,
    ds: &mut DaemonSet,
    revisions: &[ControllerRevision],
) -> Result<Option<(String, String)>, Error> {
    let data = revision::data(ds);
    let h = revision::history(revisions, &data);
    for dup in &h.duplicates {
        match crs_api.delete(dup, &DeleteParams::default()).await {
            Ok(_) => ctx.metrics.deleted(ctx.name),
            Err(e) if not_found(&e) => {}
            Err(e) => return Err(e.into()),
        }
    }
    if let Some(current) = &h.current {
        let cr = revisions
            .iter()
            .find(|r| r.metadata.name.as_ref() == Some(current));
        let hash = cr
            .and_then(|r| r.metadata.labels.as_ref()?.get(HASH_LABEL).cloned())
            .unwrap_or_else(|| revision::hash(&data, None));
        if let Some(n) = h.renumber {
            crs_api
                .patch(
                    current,
                    &PatchParams::default(),
                    &Patch::Merge(&json!({"revision": n})),
                )
                .await?;
            ctx.metrics.patched(ctx.name);
        }
        return Ok(Some((current.clone(), hash)));
    }
    let collisions = ds.status.as_ref().and_then(|s| s.collision_count);
    let hash = revision::hash(&data, collisions);
    let cr = revision::new_revision(ds, data.clone(), &hash, h.next);
    let name = cr.metadata.name.clone().unwrap_or_default();
    match crs_api.create(&PostParams::default(), &cr).await {
        Ok(_) => {
            ctx.metrics.created(ctx.name);
            Ok(Some((name, hash)))
        }
        Err(e) if workload::conflict(&e) => {
            let existing = crs_api.get_opt(&name).await?;
            let uid = ds.metadata.uid.clone().unwrap_or_default();
            if let Some(x) = existing
                && controlled_by(&x.metadata, &uid)
                && revision::data_of(&x) == Some(&data)
            {
                return Ok(Some((name, hash)));
            }
            // Another template already has this name: count the collision.
            let status = ds.status.get_or_insert_with(DaemonSetStatus::default);
            status.collision_count = Some(collisions.unwrap_or(0) + 1);
            let ds_name = ds.metadata.name.clone().unwrap_or_default();
            *ds = api
                .replace_status(&ds_name, &PostParams::default(), ds)
                .await?;
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

async fn delete_pod(
    ctx: &Context,
    api: &Api<Pod>,
    name: &str,
    uid: Option<String>,
    involved: &Involved,
) -> Result<(), Error> {
    let dp = DeleteParams {
        preconditions: Some(Preconditions {
            uid,
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(name, &dp).await {
        Ok(_) => {
            ctx.metrics.deleted(ctx.name);
            ctx.recorder
                .publish(
                    involved,
                    "Normal",
                    "SuccessfulDelete",
                    &format!("Deleted pod: {name}"),
                )
                .await;
            Ok(())
        }
        Err(e) if not_found(&e) || workload::conflict(&e) => Ok(()),
        Err(e) => {
            ctx.recorder
                .publish(
                    involved,
                    "Warning",
                    "FailedDelete",
                    &format!("Error deleting: {e}"),
                )
                .await;
            Err(e.into())
        }
    }
}

/// Create the pods for `on` (node names) in slow-start batches.
async fn create_pods(
    ctx: &Context,
    api: &Api<Pod>,
    ds: &DaemonSet,
    hash: &str,
    on: &[String],
    involved: &Involved,
) -> Result<(), Error> {
    let pods = on
        .iter()
        .take(workload::MAX_BATCH)
        .map(|node| new_pod(ds, hash, node))
        .collect();
    workload::create_in_batches(ctx, api, pods, involved).await?;
    Ok(())
}

/// A daemon pod for `node` from the template: owned by the DaemonSet,
/// labelled with the revision hash, with the daemon tolerations, pinned
/// to the node by required node affinity.
pub fn new_pod(ds: &DaemonSet, hash: &str, node: &str) -> Pod {
    let template = ds
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let tmeta = template.metadata.unwrap_or_default();
    let mut labels = tmeta.labels.unwrap_or_default();
    labels.insert(HASH_LABEL.into(), hash.into());
    let mut spec = template.spec.unwrap_or_default();
    nodes::add_daemon_tolerations(&mut spec);
    nodes::pin_to_node(&mut spec, node);
    let mut prefix = format!("{}-", ds.metadata.name.as_deref().unwrap_or_default());
    if prefix.len() > 58 {
        prefix.truncate(58);
    }
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(prefix),
            namespace: ds.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: tmeta.annotations,
            finalizers: tmeta.finalizers,
            owner_references: Some(vec![controller_ref(ds)]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}
