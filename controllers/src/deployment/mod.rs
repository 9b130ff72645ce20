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
//! Every write carries the resourceVersion it was computed from and the
//! new replica set's name is deterministic, so a sync repeated by a new
//! leader, or from a stale cache, changes nothing twice.

pub mod plan;
pub mod progress;
pub mod revision;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, PostParams, Preconditions};
use kube::core::Selector;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher;
use kube::runtime::{Controller, WatchStreamExt};

use self::plan::{Rs, Target};
use self::progress::PROGRESSING;
use self::revision::HASH_LABEL;
use crate::context::Context;
use crate::events::Involved;
use crate::replicaset::pods;
use crate::{Error, runner, status_code};

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

    /// The replica sets this deployment controls, adopting and releasing
    /// by its selector as Kubernetes' ControllerRefManager does.
    async fn claim(&mut self, cache: &Store<ReplicaSet>) -> Result<(), Error> {
        let ns = self.d.metadata.namespace.clone();
        let uid = self.uid();
        let selector = self
            .d
            .spec
            .as_ref()
            .map(|s| s.selector.clone())
            .unwrap_or_default();
        let deleting = self.d.metadata.deletion_timestamp.is_some();
        let mut fresh_checked = false;
        for rs in cache.state_filter(|rs| rs.metadata.namespace == ns) {
            let matches = pods::selects(&selector, rs.metadata.labels.as_ref());
            match pods::controller_of(&rs.metadata) {
                Some(r) if r.uid == uid => {
                    if matches || deleting {
                        self.sets.push((*rs).clone());
                    } else {
                        crate::replicaset::release(&self.rs_api, rs.as_ref(), &uid).await?;
                    }
                }
                Some(_) => {}
                None if matches && !deleting && rs.metadata.deletion_timestamp.is_none() => {
                    if !fresh_checked {
                        let name = self.d.metadata.name.clone().unwrap_or_default();
                        let live = self.d_api.get(&name).await?;
                        if live.metadata.uid != self.d.metadata.uid
                            || live.metadata.deletion_timestamp.is_some()
                        {
                            return Ok(());
                        }
                        fresh_checked = true;
                    }
                    if let Some(adopted) = self.adopt(&rs).await? {
                        self.sets.push(adopted);
                    }
                }
                None => {}
            }
        }
        Ok(())
    }

    async fn adopt(&self, rs: &ReplicaSet) -> Result<Option<ReplicaSet>, Error> {
        let mut obj = rs.clone();
        obj.metadata
            .owner_references
            .get_or_insert_with(Vec::new)
            .push(pods::controller_ref(
                "apps/v1",
                "Deployment",
                &self.d.metadata,
            ));
        let name = rs.metadata.name.clone().unwrap_or_default();
        match self
            .rs_api
            .replace(&name, &PostParams::default(), &obj)
            .await
        {
            Ok(rs) => Ok(Some(rs)),
            Err(e) if matches!(status_code(&e), Some(404 | 409)) => Ok(None),
            Err(e) => Err(e.into()),
        }
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

    /// Find the new replica set and bring its revision (and the
    /// deployment's) up to date; create it when `create` and missing.
    async fn new_rs(&mut self, create: bool) -> Result<Option<usize>, Error> {
        let (new, old) = self.split();
        let max_old = old
            .iter()
            .map(|i| revision::revision(self.sets[*i].metadata.annotations.as_ref()))
            .max()
            .unwrap_or(0);
        let rev = max_old + 1;
        let min_ready = self.d.spec.as_ref().and_then(|s| s.min_ready_seconds);
        if let Some(i) = new {
            let rs = &self.sets[i];
            let ann = revision::new_rs_annotations(
                rs.metadata.annotations.as_ref(),
                self.d.metadata.annotations.as_ref(),
                rev,
                None,
            );
            let ready_differs = rs
                .spec
                .as_ref()
                .and_then(|s| s.min_ready_seconds)
                .unwrap_or(0)
                != min_ready.unwrap_or(0);
            if ann.is_some() || ready_differs {
                let mut obj = rs.clone();
                if let Some(a) = ann {
                    obj.metadata.annotations = Some(a);
                }
                if let Some(s) = obj.spec.as_mut() {
                    s.min_ready_seconds = min_ready;
                }
                let name = obj.metadata.name.clone().unwrap_or_default();
                self.sets[i] = self
                    .rs_api
                    .replace(&name, &PostParams::default(), &obj)
                    .await?;
            }
            let rs_rev = revision::revision(self.sets[i].metadata.annotations.as_ref());
            self.set_deployment_revision(rs_rev).await?;
            let status = self.d.status.clone().unwrap_or_default();
            if progress::deadline(&self.d).is_some()
                && progress::condition(&status, PROGRESSING).is_none()
            {
                let mut status = status;
                let name = self.sets[i].metadata.name.clone().unwrap_or_default();
                progress::set_condition(
                    &mut status,
                    progress::new_condition(
                        PROGRESSING,
                        "True",
                        progress::FOUND_NEW_RS,
                        format!("Found new replica set \"{name}\""),
                        Timestamp::now(),
                    ),
                );
                self.put_status(status).await?;
            }
            return Ok(Some(i));
        }
        if !create {
            return Ok(None);
        }
        self.create_new_rs(rev).await.map(Some)
    }

    async fn create_new_rs(&mut self, rev: i64) -> Result<usize, Error> {
        let spec = self.d.spec.clone().unwrap_or_default();
        let name = self.d.metadata.name.clone().unwrap_or_default();
        let collisions = self.d.status.as_ref().and_then(|s| s.collision_count);
        let hash = revision::template_hash(&spec.template, collisions);
        let mut template = spec.template.clone();
        let tmeta = template.metadata.get_or_insert_with(Default::default);
        tmeta
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(HASH_LABEL.into(), hash.clone());
        let mut selector = spec.selector.clone();
        selector
            .match_labels
            .get_or_insert_with(BTreeMap::new)
            .insert(HASH_LABEL.into(), hash.clone());
        let t = self.target()?;
        let replicas = if self.is_rolling() {
            let zero = Rs {
                name: String::new(),
                replicas: 0,
                available: 0,
                created: i64::MAX,
                desired: None,
                max: None,
            };
            let all: Vec<Rs> = self.sets.iter().map(view).chain([zero.clone()]).collect();
            plan::new_rs_replicas(&t, &all, &zero)
        } else {
            t.replicas
        };
        let rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(format!("{name}-{hash}")),
                namespace: self.d.metadata.namespace.clone(),
                labels: tmeta.labels.clone(),
                annotations: revision::new_rs_annotations(
                    None,
                    self.d.metadata.annotations.as_ref(),
                    rev,
                    Some((t.replicas, t.replicas + t.max_surge)),
                ),
                owner_references: Some(vec![pods::controller_ref(
                    "apps/v1",
                    "Deployment",
                    &self.d.metadata,
                )]),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(replicas),
                min_ready_seconds: spec.min_ready_seconds,
                selector,
                template: Some(template),
            }),
            status: None,
        };
        let rs_name = rs.metadata.name.clone().unwrap_or_default();
        let created = match self.rs_api.create(&PostParams::default(), &rs).await {
            Ok(c) => c,
            Err(e) if status_code(&e) == Some(409) => {
                // Ours already (a cache behind its own write), or a
                // collision with another template: bump collisionCount.
                let existing = self.rs_api.get(&rs_name).await?;
                let ours =
                    pods::controller_of(&existing.metadata).is_some_and(|r| r.uid == self.uid());
                if ours && revision::equal_ignoring_hash(&rs_template(&existing), &spec.template) {
                    self.sets.push(existing);
                    return Ok(self.sets.len() - 1);
                }
                let mut status = self.d.status.clone().unwrap_or_default();
                status.collision_count = Some(collisions.unwrap_or(0).saturating_add(1));
                self.put_status(status).await?;
                return Err(Error::Invalid(format!(
                    "replica set {rs_name} exists with another template: hash collision"
                )));
            }
            Err(e) => {
                let mut status = self.d.status.clone().unwrap_or_default();
                progress::set_condition(
                    &mut status,
                    progress::new_condition(
                        PROGRESSING,
                        "False",
                        "ReplicaSetCreateError",
                        format!(
                            "Failed to create new replica set \"{rs_name}\": {}",
                            crate::replicaset::api_message(&e)
                        ),
                        Timestamp::now(),
                    ),
                );
                let _ = self.put_status(status).await;
                return Err(e.into());
            }
        };
        self.ctx.metrics.created(self.ctx.name);
        if replicas > 0 {
            self.ctx
                .recorder
                .publish(
                    &Involved::of(&self.d),
                    "Normal",
                    "ScalingReplicaSet",
                    &format!("Scaled up replica set {rs_name} from 0 to {replicas}"),
                )
                .await;
        }
        self.sets.push(created);
        self.set_deployment_revision(rev).await?;
        if progress::deadline(&self.d).is_some() {
            let mut status = self.d.status.clone().unwrap_or_default();
            progress::set_condition(
                &mut status,
                progress::new_condition(
                    PROGRESSING,
                    "True",
                    progress::NEW_RS_CREATED,
                    format!("Created new replica set \"{rs_name}\""),
                    Timestamp::now(),
                ),
            );
            self.put_status(status).await?;
        }
        Ok(self.sets.len() - 1)
    }

    /// Annotate the deployment with its new replica set's revision.
    async fn set_deployment_revision(&mut self, rev: i64) -> Result<(), Error> {
        let current = self
            .d
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(revision::REVISION))
            .cloned();
        if current.as_deref() == Some(rev.to_string().as_str()) {
            return Ok(());
        }
        let mut obj = self.d.clone();
        obj.metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(revision::REVISION.into(), rev.to_string());
        let name = obj.metadata.name.clone().unwrap_or_default();
        self.d = self
            .d_api
            .replace(&name, &PostParams::default(), &obj)
            .await?;
        Ok(())
    }

    /// Resize replica set `i` to `size`, its replica annotations brought
    /// up to date; an event when the size changes. Whether it changed.
    async fn scale(&mut self, i: usize, size: i32) -> Result<bool, Error> {
        let t = self.target()?;
        let rs = &self.sets[i];
        let was = replicas_of(rs);
        let ann = rs.metadata.annotations.clone().unwrap_or_default();
        let (desired, max) = (
            t.replicas.to_string(),
            (t.replicas + t.max_surge).to_string(),
        );
        let ann_ok =
            ann.get(revision::DESIRED) == Some(&desired) && ann.get(revision::MAX) == Some(&max);
        if was == size && ann_ok {
            return Ok(false);
        }
        let mut obj = rs.clone();
        let a = obj.metadata.annotations.get_or_insert_with(BTreeMap::new);
        a.insert(revision::DESIRED.into(), desired);
        a.insert(revision::MAX.into(), max);
        obj.spec.get_or_insert_with(Default::default).replicas = Some(size);
        let name = obj.metadata.name.clone().unwrap_or_default();
        self.sets[i] = self
            .rs_api
            .replace(&name, &PostParams::default(), &obj)
            .await?;
        self.ctx.metrics.patched(self.ctx.name);
        if was != size {
            let dir = if size > was { "up" } else { "down" };
            self.ctx
                .recorder
                .publish(
                    &Involved::of(&self.d),
                    "Normal",
                    "ScalingReplicaSet",
                    &format!("Scaled {dir} replica set {name} from {was} to {size}"),
                )
                .await;
        }
        Ok(was != size)
    }

    fn index_of(&self, name: &str) -> Option<usize> {
        self.sets
            .iter()
            .position(|r| r.metadata.name.as_deref() == Some(name))
    }

    /// A RollingUpdate step (Kubernetes' `rolloutRolling`).
    async fn rolling(&mut self) -> Result<(), Error> {
        let Some(n) = self.new_rs(true).await? else {
            return Ok(());
        };
        let t = self.target()?;
        let new_view = view(&self.sets[n]);
        if new_view.replicas != t.replicas {
            let size = if new_view.replicas > t.replicas {
                t.replicas
            } else {
                let all: Vec<Rs> = self.sets.iter().map(view).collect();
                plan::new_rs_replicas(&t, &all, &new_view)
            };
            if self.scale(n, size).await? {
                return self.rollout_status(Some(n)).await;
            }
        }
        let (_, old) = self.split();
        let old_views: Vec<Rs> = old.iter().map(|i| view(&self.sets[*i])).collect();
        let changes = plan::scale_down_old(&t, &old_views, &view(&self.sets[n]));
        if !changes.is_empty() {
            for (name, size) in changes {
                if let Some(i) = self.index_of(&name) {
                    self.scale(i, size).await?;
                }
            }
            return self.rollout_status(Some(n)).await;
        }
        self.cleanup_if_complete(Some(n)).await?;
        self.rollout_status(Some(n)).await
    }

    /// A Recreate step: old replica sets to zero, wait for their pods to
    /// be gone, then the new one at full size.
    async fn recreate(&mut self) -> Result<(), Error> {
        let new = self.new_rs(false).await?;
        let (_, old) = self.split();
        let mut scaled = false;
        for i in old.clone() {
            if replicas_of(&self.sets[i]) > 0 {
                scaled |= self.scale(i, 0).await?;
            }
        }
        if scaled {
            return self.rollout_status(new).await;
        }
        if self.old_pods_running(&old).await? {
            self.requeue = Some(OLD_PODS_RETRY);
            return self.rollout_status(new).await;
        }
        let n = match new {
            Some(n) => n,
            None => match self.new_rs(true).await? {
                Some(n) => n,
                None => return Ok(()),
            },
        };
        let want = self.replicas();
        self.scale(n, want).await?;
        self.cleanup_if_complete(Some(n)).await?;
        self.rollout_status(Some(n)).await
    }

    /// Whether pods of the old replica sets still run (or still exist and
    /// have not finished), read fresh from the API.
    async fn old_pods_running(&self, old: &[usize]) -> Result<bool, Error> {
        if old.iter().any(|i| {
            self.sets[*i]
                .status
                .as_ref()
                .is_some_and(|s| s.replicas > 0)
        }) {
            return Ok(true);
        }
        let uids: Vec<String> = old
            .iter()
            .filter_map(|i| self.sets[*i].metadata.uid.clone())
            .collect();
        if uids.is_empty() {
            return Ok(false);
        }
        let selector = self
            .d
            .spec
            .as_ref()
            .map(|s| s.selector.clone())
            .unwrap_or_default();
        let sel = Selector::try_from(selector).map_err(|e| Error::Invalid(e.to_string()))?;
        let ns = self.d.metadata.namespace.clone().unwrap_or_default();
        let list = Api::<Pod>::namespaced(self.ctx.client.clone(), &ns)
            .list(&ListParams::default().labels_from(&sel))
            .await?;
        Ok(list.items.iter().any(|p| {
            pods::controller_of(&p.metadata).is_some_and(|r| uids.contains(&r.uid))
                && !matches!(
                    p.status.as_ref().and_then(|s| s.phase.as_deref()),
                    Some("Succeeded" | "Failed")
                )
        }))
    }

    /// Only resize (paused, or resized mid-rollout): Kubernetes' `sync`.
    async fn scale_only(&mut self, paused: bool) -> Result<(), Error> {
        let new = self.new_rs(false).await?;
        let (_, old) = self.split();
        let t = self.target()?;
        let new_view = new.map(|i| view(&self.sets[i]));
        let old_views: Vec<Rs> = old.iter().map(|i| view(&self.sets[*i])).collect();
        let status_replicas = self.d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0);
        let sizes = plan::proportional(
            &t,
            new_view.as_ref(),
            &old_views,
            status_replicas,
            self.is_rolling(),
        );
        for (name, size) in sizes {
            if let Some(i) = self.index_of(&name) {
                self.scale(i, size).await?;
            }
        }
        if paused {
            self.cleanup_if_complete(new).await?;
        }
        self.write_status().await
    }

    /// Delete old replica sets beyond revisionHistoryLimit once the
    /// rollout is complete.
    async fn cleanup_if_complete(&mut self, new: Option<usize>) -> Result<(), Error> {
        let t = self.target()?;
        let refs: Vec<&ReplicaSet> = self.sets.iter().collect();
        let status = progress::calculate(
            &self.d,
            &refs,
            new.map(|i| &self.sets[i]),
            t.max_unavailable,
            Timestamp::now(),
        );
        if !progress::complete(&self.d, &status) {
            return Ok(());
        }
        let Some(limit) = self.d.spec.as_ref().and_then(|s| s.revision_history_limit) else {
            return Ok(());
        };
        let (_, old) = self.split();
        let olds: Vec<revision::Old> = old
            .iter()
            .map(|i| &self.sets[*i])
            .filter(|rs| rs.metadata.deletion_timestamp.is_none())
            .map(|rs| revision::Old {
                name: rs.metadata.name.clone().unwrap_or_default(),
                revision: revision::revision(rs.metadata.annotations.as_ref()),
                created: created(&rs.metadata).0,
                idle: rs.status.as_ref().is_none_or(|s| s.replicas == 0)
                    && replicas_of(rs) == 0
                    && rs.status.as_ref().and_then(|s| s.observed_generation)
                        >= rs.metadata.generation,
            })
            .collect();
        for name in revision::to_clean(&olds, limit) {
            let Some(i) = self.index_of(&name) else {
                continue;
            };
            let dp = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: self.sets[i].metadata.uid.clone(),
                    resource_version: self.sets[i].metadata.resource_version.clone(),
                }),
                ..Default::default()
            };
            match self.rs_api.delete(&name, &dp).await {
                // Kept in `self.sets` (at zero, it counts for nothing):
                // the positions the rest of the sync holds stay valid.
                Ok(_) => self.ctx.metrics.deleted(self.ctx.name),
                Err(e) if matches!(status_code(&e), Some(404 | 409)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Status with the Progressing condition moved on (Kubernetes'
    /// `syncRolloutStatus`), and a look again at the progress deadline.
    async fn rollout_status(&mut self, new: Option<usize>) -> Result<(), Error> {
        let t = self.target()?;
        let refs: Vec<&ReplicaSet> = self.sets.iter().collect();
        let new_rs = new.map(|i| &self.sets[i]);
        let status =
            progress::calculate(&self.d, &refs, new_rs, t.max_unavailable, Timestamp::now());
        let name = new_rs.and_then(|r| r.metadata.name.clone());
        let (mut status, left) =
            progress::rollout(&self.d, status, name.as_deref(), Timestamp::now());
        self.replica_failure(&mut status);
        if let Some(left) = left {
            let after = Duration::from_secs(left.max(0) as u64 + 1);
            self.requeue = Some(self.requeue.map_or(after, |r| r.min(after)));
        }
        if Some(&status) != self.d.status.as_ref() {
            self.put_status(status).await?;
        }
        Ok(())
    }

    /// The status counts only (Kubernetes' `syncDeploymentStatus`).
    async fn write_status(&mut self) -> Result<(), Error> {
        let t = self.target()?;
        let (new, _) = self.split();
        let refs: Vec<&ReplicaSet> = self.sets.iter().collect();
        let mut status = progress::calculate(
            &self.d,
            &refs,
            new.map(|i| &self.sets[i]),
            t.max_unavailable,
            Timestamp::now(),
        );
        self.replica_failure(&mut status);
        if Some(&status) != self.d.status.as_ref() {
            self.put_status(status).await?;
        }
        Ok(())
    }

    /// A replica set's ReplicaFailure, shown on the deployment.
    fn replica_failure(&self, status: &mut DeploymentStatus) {
        let failure = self.sets.iter().find_map(|rs| {
            rs.status
                .as_ref()?
                .conditions
                .as_ref()?
                .iter()
                .find(|c| c.type_ == progress::REPLICA_FAILURE)
                .cloned()
        });
        match failure {
            Some(c) => progress::set_condition(
                status,
                progress::new_condition(
                    progress::REPLICA_FAILURE,
                    &c.status,
                    c.reason.as_deref().unwrap_or_default(),
                    c.message.unwrap_or_default(),
                    Timestamp::now(),
                ),
            ),
            None => progress::remove_condition(status, progress::REPLICA_FAILURE),
        }
    }

    /// Write `status` (with the resourceVersion the sync started from).
    async fn put_status(&mut self, status: DeploymentStatus) -> Result<(), Error> {
        let mut obj = self.d.clone();
        obj.status = Some(status);
        let name = obj.metadata.name.clone().unwrap_or_default();
        self.d = self
            .d_api
            .replace_status(&name, &PostParams::default(), &obj)
            .await?;
        Ok(())
    }
}
