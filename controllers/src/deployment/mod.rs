//! The deployment controller, as kube-controller-manager's: a Deployment
//! rolls its pod template out through ReplicaSets, one per template
//! revision.
//!
//! - Replica sets come from one watch, reflected into a cache before they
//!   trigger a sync of their deployment (or, for an orphan, of every
//!   deployment in the namespace whose selector selects it). A sync claims
//!   them with ControllerRef semantics (adopt orphans, release strays).
//! - The new replica set is the one whose template equals the deployment's
//!   (ignoring `pod-template-hash`); it is created as `<name>-<hash>` when
//!   missing (a name taken by another template bumps `collisionCount`), and
//!   numbered one past the highest old revision ([`revision`]).
//! - RollingUpdate and Recreate move replicas between the replica sets as
//!   [`plan`] computes; a paused deployment, or one resized mid-rollout, is
//!   only scaled (in proportion). Old replica sets past
//!   `revisionHistoryLimit` are deleted once idle.
//! - Status and the Available/Progressing conditions follow [`progress`].
//!
//! A sync runs in steps, one module each: `claim` (the replica sets it
//! controls), `new_rs` (find or create the new one), `rollout` (move
//! replicas, clean up old revisions) and `status` (write what it saw).
//!
//! Every write carries the resourceVersion it was computed from and the
//! new replica set's name is deterministic, so a sync repeated by a new
//! leader, or from a stale cache, changes nothing twice.

mod claim;
mod new_rs;
pub mod plan;
pub mod progress;
pub mod revision;
mod rollout;
mod status;

use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher;
use kube::runtime::{Controller, WatchStreamExt};

use self::plan::{Rs, Target};
use crate::context::Context;
use crate::events::Involved;
use crate::replicaset::pods;
use crate::{Error, runner};

/// The controller's name in metrics, events and `--controllers`.
pub const NAME: &str = "deployment";

/// How soon a Recreate rollout looks again while old pods still run.
const OLD_PODS_RETRY: Duration = Duration::from_secs(1);

/// Run until the future is dropped (leadership lost).
pub async fn run(ctx: Context) -> Result<(), Error> {
    let client = ctx.client.clone();
    let (sets, writer) = reflector::store::<ReplicaSet>();
    let rs_events = watcher(
        Api::<ReplicaSet>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .reflect(writer)
    .inspect_err(
        |e| tracing::debug!(controller = NAME, error = %e, "replica set watch failed; retrying"),
    )
    .touched_objects();
    let controller = Controller::new(
        Api::<Deployment>::all(client.clone()),
        watcher::Config::default(),
    );
    let deployments = controller.store();
    let controller =
        controller.watches_stream(rs_events, move |rs: ReplicaSet| to_sync(&deployments, &rs));
    runner::run(controller, ctx, move |d, ctx| {
        let sets = sets.clone();
        crate::replicaset::guarded(sync(d, ctx, sets))
    })
    .await;
    Ok(())
}

/// The deployments a replica set change concerns.
fn to_sync(deployments: &Store<Deployment>, rs: &ReplicaSet) -> Vec<ObjectRef<Deployment>> {
    let ns = rs.metadata.namespace.clone().unwrap_or_default();
    match pods::controller_of(&rs.metadata) {
        Some(r) if r.kind == "Deployment" && r.api_version == "apps/v1" => {
            vec![ObjectRef::new(&r.name).within(&ns)]
        }
        Some(_) => vec![],
        None => deployments
            .state()
            .iter()
            .filter(|d| {
                d.metadata.namespace.as_deref() == Some(ns.as_str())
                    && d.spec
                        .as_ref()
                        .is_some_and(|s| pods::selects(&s.selector, rs.metadata.labels.as_ref()))
            })
            .map(|d| ObjectRef::from_obj(d.as_ref()))
            .collect(),
    }
}

/// One sync's view: the deployment (as last written), its replica sets,
/// and the API handles.
struct Sync {
    ctx: Context,
    d: Deployment,
    sets: Vec<ReplicaSet>,
    rs_api: Api<ReplicaSet>,
    d_api: Api<Deployment>,
    /// When to look again (the progress deadline, old pods still running).
    requeue: Option<Duration>,
}

async fn sync(d: Arc<Deployment>, ctx: Context, cache: Store<ReplicaSet>) -> Result<Action, Error> {
    let (Some(ns), Some(_)) = (d.metadata.namespace.clone(), d.metadata.name.clone()) else {
        return Ok(Action::await_change());
    };
    match tokio::time::timeout(Duration::from_secs(20), cache.wait_until_ready()).await {
        Ok(Ok(())) => {}
        Ok(Err(_)) => return Err(Error::Invalid("the replica set cache is gone".into())),
        Err(_) => {
            return Err(Error::Invalid(
                "the replica set cache is not listed yet".into(),
            ));
        }
    }
    let Some(spec) = d.spec.clone() else {
        return Ok(Action::await_change());
    };
    let mut s = Sync {
        rs_api: Api::namespaced(ctx.client.clone(), &ns),
        d_api: Api::namespaced(ctx.client.clone(), &ns),
        ctx,
        d: (*d).clone(),
        sets: vec![],
        requeue: None,
    };
    let empty = spec
        .selector
        .match_labels
        .as_ref()
        .is_none_or(|m| m.is_empty())
        && spec
            .selector
            .match_expressions
            .as_ref()
            .is_none_or(|e| e.is_empty());
    if empty {
        s.ctx
            .recorder
            .publish(
                &Involved::of(&s.d),
                "Warning",
                "SelectingAll",
                "This deployment is selecting all pods. A non-empty selector is required.",
            )
            .await;
        return Ok(Action::await_change());
    }
    s.claim(&cache).await?;
    if s.d.metadata.deletion_timestamp.is_some() {
        s.write_status().await?;
        return Ok(Action::await_change());
    }
    let mut status = s.d.status.clone().unwrap_or_default();
    progress::paused(&s.d, &mut status, Timestamp::now());
    if status != s.d.status.clone().unwrap_or_default() {
        s.put_status(status).await?;
    }
    let paused = spec.paused.unwrap_or(false);
    let recreate = spec.strategy.as_ref().and_then(|st| st.type_.as_deref()) == Some("Recreate");
    if paused || s.scaling_event()? {
        s.scale_only(paused).await?;
    } else if recreate {
        s.recreate().await?;
    } else {
        s.rolling().await?;
    }
    Ok(match s.requeue {
        Some(after) => Action::requeue(after),
        None => Action::await_change(),
    })
}

/// The planner's view of a replica set.
fn view(rs: &ReplicaSet) -> Rs {
    let ann = rs.metadata.annotations.as_ref();
    let num = |k: &str| ann.and_then(|a| a.get(k)).and_then(|v| v.parse().ok());
    Rs {
        name: rs.metadata.name.clone().unwrap_or_default(),
        replicas: replicas_of(rs),
        available: rs
            .status
            .as_ref()
            .and_then(|s| s.available_replicas)
            .unwrap_or(0),
        created: rs
            .metadata
            .creation_timestamp
            .as_ref()
            .map_or(0, |t| t.0.as_second()),
        desired: num(revision::DESIRED),
        max: num(revision::MAX),
    }
}

fn replicas_of(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

fn rs_template(rs: &ReplicaSet) -> k8s_openapi::api::core::v1::PodTemplateSpec {
    rs.spec
        .as_ref()
        .and_then(|s| s.template.clone())
        .unwrap_or_default()
}

fn created(meta: &ObjectMeta) -> (i64, String) {
    (
        meta.creation_timestamp
            .as_ref()
            .map_or(0, |t| t.0.as_second()),
        meta.name.clone().unwrap_or_default(),
    )
}

impl Sync {
    /// The ScalingReplicaSet event kube-controller-manager records for
    /// every replica set it resizes.
    async fn record_scaling(&self, message: &str) {
        self.ctx
            .recorder
            .publish(
                &Involved::of(&self.d),
                "Normal",
                "ScalingReplicaSet",
                message,
            )
            .await;
    }

    fn replicas(&self) -> i32 {
        self.d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }

    fn is_rolling(&self) -> bool {
        self.d
            .spec
            .as_ref()
            .and_then(|s| s.strategy.as_ref())
            .and_then(|st| st.type_.as_deref())
            != Some("Recreate")
    }

    /// The deployment's numbers: maxSurge, and maxUnavailable at most replicas.
    fn target(&self) -> Result<Target, Error> {
        let replicas = self.replicas();
        if !self.is_rolling() {
            return Ok(Target {
                replicas,
                max_surge: 0,
                max_unavailable: 0,
            });
        }
        let ru = self
            .d
            .spec
            .as_ref()
            .and_then(|s| s.strategy.as_ref())
            .and_then(|st| st.rolling_update.clone())
            .unwrap_or_default();
        let pct = IntOrString::String("25%".into());
        let (max_surge, u) = plan::fenceposts(
            ru.max_surge.as_ref().unwrap_or(&pct),
            ru.max_unavailable.as_ref().unwrap_or(&pct),
            replicas,
        )
        .map_err(Error::Invalid)?;
        Ok(Target {
            replicas,
            max_surge,
            max_unavailable: if replicas == 0 { 0 } else { u.min(replicas) },
        })
    }

    fn uid(&self) -> String {
        self.d.metadata.uid.clone().unwrap_or_default()
    }

    /// The new replica set (the oldest with the deployment's template) and
    /// the others, by position in `self.sets`.
    fn split(&self) -> (Option<usize>, Vec<usize>) {
        let template = self
            .d
            .spec
            .as_ref()
            .map(|s| s.template.clone())
            .unwrap_or_default();
        let mut new: Option<usize> = None;
        for (i, rs) in self.sets.iter().enumerate() {
            if revision::equal_ignoring_hash(&rs_template(rs), &template)
                && new.is_none_or(|n| created(&rs.metadata) < created(&self.sets[n].metadata))
            {
                new = Some(i);
            }
        }
        let old = (0..self.sets.len()).filter(|i| Some(*i) != new).collect();
        (new, old)
    }

    /// Whether the deployment was resized since its replica sets were.
    fn scaling_event(&self) -> Result<bool, Error> {
        let (new, old) = self.split();
        let new = new.map(|i| view(&self.sets[i]));
        let old: Vec<Rs> = old.iter().map(|i| view(&self.sets[*i])).collect();
        Ok(plan::is_scaling_event(self.replicas(), new.as_ref(), &old))
    }

    fn index_of(&self, name: &str) -> Option<usize> {
        self.sets
            .iter()
            .position(|r| r.metadata.name.as_deref() == Some(name))
    }
}
