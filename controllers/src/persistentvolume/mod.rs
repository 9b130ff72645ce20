//! The PV binder (`persistentvolume-binder`, Kubernetes' PV controller for
//! pre-provisioned volumes): binds Immediate claims to the smallest
//! matching Available volume, completes the bindings the scheduler
//! reserved for WaitForFirstConsumer claims (claimRef set →
//! `spec.volumeName`, both phases Bound, the `bind-completed` and
//! `bound-by-controller` annotations), releases a volume whose claim is
//! deleted and reclaims it (Delete: the volume is deleted; Retain: it
//! stays Released). Claims and volumes are queued from their watches and
//! all of them every resync period; each pass makes one write chosen by
//! [`plan`] from the watched state, guarded by resourceVersion, and looks
//! again, so a binding cut short anywhere is finished later.

pub mod matching;
pub mod plan;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, Event};

use crate::context::Context;
use crate::events::{Involved, Recorder};
use crate::queue::Queue;
use crate::{Error, status_code};
use plan::{BIND_COMPLETED, BOUND_BY_CONTROLLER, ClaimStep, VolumeStep};

/// The controller's name in metrics, events and `--controllers`.
pub const NAME: &str = "persistentvolume-binder";
/// The component its events come from (Kubernetes' PV controller's).
pub const EVENT_SOURCE: &str = "persistentvolume-controller";
/// How often every claim and volume is looked at again (Kubernetes' PV
/// controller resyncs every 15 s).
const RESYNC: Duration = Duration::from_secs(15);

/// A unit of work.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Claim(String, String),
    Volume(String),
}

struct Binder {
    ctx: Context,
    claims: Store<PersistentVolumeClaim>,
    volumes: Store<PersistentVolume>,
    classes: Store<StorageClass>,
    queue: Queue<Key>,
    /// Claims (by uid) already told they wait, so the event is recorded once.
    reported: Mutex<HashSet<String>>,
}

fn claim_key(c: &PersistentVolumeClaim) -> Key {
    Key::Claim(
        c.metadata.namespace.clone().unwrap_or_default(),
        c.metadata.name.clone().unwrap_or_default(),
    )
}

impl Binder {
    fn claim(&self, ns: &str, name: &str) -> Option<Arc<PersistentVolumeClaim>> {
        self.claims.get(&ObjectRef::new(name).within(ns))
    }

    fn queue_all(&self) {
        for c in self.claims.state() {
            self.queue.add(claim_key(&c));
        }
        for v in self.volumes.state() {
            self.queue
                .add(Key::Volume(v.metadata.name.clone().unwrap_or_default()));
        }
        self.ctx.metrics.queue_depth(NAME, self.queue.len());
    }

    /// Report once per claim that it waits, and why.
    async fn report_once(&self, c: &PersistentVolumeClaim, type_: &str, reason: &str, msg: &str) {
        let uid = c.metadata.uid.clone().unwrap_or_default();
        let first = self
            .reported
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(format!("{uid}/{reason}"));
        if first {
            self.ctx
                .recorder
                .publish(&Involved::of(c), type_, reason, msg)
                .await;
        }
    }

    async fn sync_claim(&self, ns: &str, name: &str) -> Result<bool, Error> {
        let Some(c) = self.claim(ns, name) else {
            return Ok(false);
        };
        let class_name = matching::claim_class(&c);
        let class = (!class_name.is_empty())
            .then(|| self.classes.get(&ObjectRef::new(&class_name)))
            .flatten();
        let volumes = self.volumes.state();
        let step = plan::claim(&c, &volumes, class.as_deref());
        let client = &self.ctx.client;
        let volume_of = |v: &str| {
            volumes
                .iter()
                .find(|p| p.metadata.name.as_deref() == Some(v))
                .cloned()
        };
        match step {
            ClaimStep::Nothing => return Ok(false),
            ClaimStep::WaitForConsumer => {
                self.report_once(
                    &c,
                    "Normal",
                    "WaitForFirstConsumer",
                    "waiting for first consumer to be created before binding",
                )
                .await;
                return Ok(false);
            }
            ClaimStep::NoVolume => {
                let msg = if class_name.is_empty() {
                    "no persistent volumes available for this claim and no storage class is set"
                        .to_string()
                } else {
                    format!(
                        "storageclass.storage.k8s.io \"{class_name}\" has no available persistent volumes for this claim; no provisioner runs in Keel"
                    )
                };
                self.report_once(&c, "Normal", "FailedBinding", &msg).await;
                return Ok(false);
            }
            ClaimStep::ClaimVolume {
                volume,
                by_controller,
            } => {
                let Some(pv) = volume_of(&volume) else {
                    return Ok(false);
                };
                let mut pv = (*pv).clone();
                let spec = pv.spec.get_or_insert_with(Default::default);
                let mut r = spec.claim_ref.clone().unwrap_or_default();
                r.api_version = Some("v1".into());
                r.kind = Some("PersistentVolumeClaim".into());
                r.namespace = c.metadata.namespace.clone();
                r.name = c.metadata.name.clone();
                r.uid = c.metadata.uid.clone();
                r.resource_version = c.metadata.resource_version.clone();
                spec.claim_ref = Some(r);
                if by_controller {
                    pv.metadata
                        .annotations
                        .get_or_insert_with(Default::default)
                        .insert(BOUND_BY_CONTROLLER.into(), "yes".into());
                }
                Api::<PersistentVolume>::all(client.clone())
                    .replace(&volume, &PostParams::default(), &pv)
                    .await?;
            }
            ClaimStep::VolumeBound { volume } => {
                let Some(pv) = volume_of(&volume) else {
                    return Ok(false);
                };
                self.set_volume_phase(&pv, "Bound").await?;
            }
            ClaimStep::BindClaim {
                volume,
                by_controller,
            } => {
                let mut c2 = (*c).clone();
                c2.spec.get_or_insert_with(Default::default).volume_name = Some(volume.clone());
                let a = c2.metadata.annotations.get_or_insert_with(Default::default);
                a.insert(BIND_COMPLETED.into(), "yes".into());
                if by_controller {
                    a.insert(BOUND_BY_CONTROLLER.into(), "yes".into());
                }
                Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns)
                    .replace(name, &PostParams::default(), &c2)
                    .await?;
            }
            ClaimStep::ClaimPhase { phase, volume } => {
                let mut c2 = (*c).clone();
                let st = c2.status.get_or_insert_with(Default::default);
                st.phase = Some(phase.into());
                if let Some(pv) = volume.as_deref().and_then(volume_of) {
                    let spec = pv.spec.clone().unwrap_or_default();
                    st.capacity = spec.capacity;
                    st.access_modes = spec.access_modes;
                }
                Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns)
                    .replace_status(name, &PostParams::default(), &c2)
                    .await?;
                if phase == "Lost" {
                    self.ctx
                        .recorder
                        .publish(
                            &Involved::of(c.as_ref()),
                            "Warning",
                            "ClaimLost",
                            "Bound claim has lost reference to PersistentVolume. Data on the volume is lost!",
                        )
                        .await;
                }
            }
        }
        self.ctx.metrics.patched(NAME);
        Ok(true)
    }

    async fn set_volume_phase(&self, pv: &PersistentVolume, phase: &str) -> Result<(), Error> {
        let mut pv = pv.clone();
        let st = pv.status.get_or_insert_with(Default::default);
        st.phase = Some(phase.into());
        st.last_phase_transition_time = Some(Time(Timestamp::now()));
        let name = pv.metadata.name.clone().unwrap_or_default();
        Api::<PersistentVolume>::all(self.ctx.client.clone())
            .replace_status(&name, &PostParams::default(), &pv)
            .await?;
        Ok(())
    }

    async fn sync_volume(&self, name: &str) -> Result<bool, Error> {
        let Some(pv) = self.volumes.get(&ObjectRef::new(name)) else {
            return Ok(false);
        };
        let claim = pv
            .spec
            .as_ref()
            .and_then(|s| s.claim_ref.as_ref())
            .and_then(|r| self.claim(r.namespace.as_deref()?, r.name.as_deref()?));
        let client = &self.ctx.client;
        match plan::volume(&pv, claim.as_deref()) {
            VolumeStep::Nothing => return Ok(false),
            VolumeStep::Phase(p) => {
                self.set_volume_phase(&pv, p).await?;
                if p == "Released" {
                    tracing::info!(volume = name, "volume released: its claim is gone");
                }
            }
            VolumeStep::Unclaim => {
                let mut pv2 = (*pv).clone();
                if let Some(s) = pv2.spec.as_mut() {
                    s.claim_ref = None;
                }
                if let Some(a) = pv2.metadata.annotations.as_mut() {
                    a.remove(BOUND_BY_CONTROLLER);
                }
                Api::<PersistentVolume>::all(client.clone())
                    .replace(name, &PostParams::default(), &pv2)
                    .await?;
            }
            VolumeStep::Delete => {
                let dp = DeleteParams {
                    preconditions: Some(Preconditions {
                        uid: pv.metadata.uid.clone(),
                        resource_version: pv.metadata.resource_version.clone(),
                    }),
                    ..Default::default()
                };
                match Api::<PersistentVolume>::all(client.clone())
                    .delete(name, &dp)
                    .await
                {
                    Ok(_) => {}
                    Err(e) if status_code(&e) == Some(404) => {}
                    Err(e) => return Err(e.into()),
                }
                self.ctx.metrics.deleted(NAME);
                return Ok(true);
            }
        }
        self.ctx.metrics.patched(NAME);
        Ok(true)
    }

    async fn worker(self: Arc<Self>) {
        loop {
            let key = self.queue.next().await;
            self.ctx.metrics.queue_depth(NAME, self.queue.len());
            self.ctx.metrics.started(NAME);
            let start = std::time::Instant::now();
            let out = match &key {
                Key::Claim(ns, name) => self.sync_claim(ns, name).await,
                Key::Volume(name) => self.sync_volume(name).await,
            };
            self.ctx
                .metrics
                .finished(NAME, start.elapsed(), out.is_ok());
            match out {
                Ok(wrote) => {
                    self.queue.forget(&key);
                    // Each pass makes one write; the watch brings the next
                    // state, but look again soon in case it is slow.
                    if wrote {
                        self.queue.add_after(key, Duration::from_millis(500));
                    }
                }
                Err(e) => {
                    tracing::debug!(?key, error = %e, "persistentvolume-binder: retrying");
                    self.queue.retry(key);
                }
            }
        }
    }
}

/// Run until the future is dropped (leadership lost).
pub async fn run(mut ctx: Context) -> Result<(), Error> {
    let client: Client = ctx.client.clone();
    // Events come from "persistentvolume-controller", as in Kubernetes.
    ctx.recorder = Recorder::new(client.clone(), EVENT_SOURCE, ctx.identity.clone());
    let (claims, claims_w) = reflector::store();
    let (volumes, volumes_w) = reflector::store();
    let (classes, classes_w) = reflector::store();
    let b = Arc::new(Binder {
        ctx,
        claims,
        volumes,
        classes,
        queue: Queue::default(),
        reported: Mutex::new(HashSet::new()),
    });
    let classes_stream = reflector::reflector(
        classes_w,
        watcher::watcher(
            Api::<StorageClass>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff(),
    )
    .for_each(|_| async {});
    let bc = b.clone();
    let claims_stream = reflector::reflector(
        claims_w,
        watcher::watcher(
            Api::<PersistentVolumeClaim>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff(),
    )
    .for_each(move |ev| {
        let b = bc.clone();
        async move {
            match ev {
                Ok(Event::Apply(c) | Event::InitApply(c)) => b.queue.add(claim_key(&c)),
                // A deleted claim releases the volume it names.
                Ok(Event::Delete(c)) => {
                    if let Some(v) = c.spec.and_then(|s| s.volume_name) {
                        b.queue.add(Key::Volume(v));
                    }
                    for v in b.volumes.state() {
                        if plan_names(&v, &c.metadata.namespace, &c.metadata.name) {
                            b.queue
                                .add(Key::Volume(v.metadata.name.clone().unwrap_or_default()));
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "persistentvolume-binder: claim watch failed")
                }
            }
        }
    });
    let bv = b.clone();
    let volumes_stream = reflector::reflector(
        volumes_w,
        watcher::watcher(
            Api::<PersistentVolume>::all(client),
            watcher::Config::default(),
        )
        .default_backoff(),
    )
    .for_each(move |ev| {
        let b = bv.clone();
        async move {
            match ev {
                Ok(Event::Apply(v) | Event::InitApply(v)) => {
                    b.queue
                        .add(Key::Volume(v.metadata.name.clone().unwrap_or_default()));
                    if let Some(r) = v.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) {
                        b.queue.add(Key::Claim(
                            r.namespace.clone().unwrap_or_default(),
                            r.name.clone().unwrap_or_default(),
                        ));
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "persistentvolume-binder: volume watch failed")
                }
            }
        }
    });
    let bw = b.clone();
    let worker = async move {
        let _ = bw.claims.wait_until_ready().await;
        let _ = bw.volumes.wait_until_ready().await;
        let _ = bw.classes.wait_until_ready().await;
        bw.worker().await
    };
    let resync = async {
        loop {
            tokio::time::sleep(RESYNC).await;
            b.queue_all();
        }
    };
    tokio::select! {
        _ = classes_stream => {}
        _ = claims_stream => {}
        _ = volumes_stream => {}
        _ = worker => {}
        _ = resync => {}
    }
    Err(Error::Invalid("persistentvolume-binder task ended".into()))
}

/// Whether the volume's claimRef names the claim `ns/name`.
fn plan_names(v: &PersistentVolume, ns: &Option<String>, name: &Option<String>) -> bool {
    v.spec
        .as_ref()
        .and_then(|s| s.claim_ref.as_ref())
        .is_some_and(|r| &r.namespace == ns && &r.name == name)
}
