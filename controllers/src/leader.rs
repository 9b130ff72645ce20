//! Leader election through a `coordination.k8s.io/v1` Lease, as client-go's
//! leaderelection does it: the holder renews `renewTime` every retry
//! period; a candidate takes the lease over only once it has seen the same
//! record unchanged for `leaseDurationSeconds` (measured on its own clock,
//! so the members' clocks need not agree); every write carries the
//! resourceVersion it read, so two candidates cannot both win. A holder
//! that cannot renew within the renew deadline gives up leadership before
//! anyone else may take it over. A holder renews from the lease it last
//! wrote, without reading it first (client-go's optimistic renewal): one
//! write per renewal instead of a linearizable read and a write, which is
//! what keeps a renewal inside its deadline on a loaded member; any other
//! write in between makes the renewal a conflict, and the candidate then
//! reads the lease and decides as before.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, PostParams};

use crate::{Error, status_code};

/// Where the lease is and how it is held.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// This candidate's identity, unique among candidates.
    pub identity: String,
    /// How long a lease is good for after its last renewal.
    pub lease_duration: Duration,
    /// A holder that has not renewed for this long stops leading.
    pub renew_deadline: Duration,
    /// Time between attempts to acquire or renew.
    pub retry_period: Duration,
}

impl LeaseConfig {
    /// Kubernetes' defaults (15 s, 10 s, 2 s) for lease `name` in `kube-system`.
    pub fn new(name: &str, identity: String) -> LeaseConfig {
        LeaseConfig {
            namespace: "kube-system".into(),
            name: name.into(),
            identity,
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// One candidate's view of the lease.
pub struct Elector {
    api: Api<Lease>,
    cfg: LeaseConfig,
    /// The last lease record seen (holder, renewTime, transitions) and
    /// when it was first seen in that state.
    observed: Option<(LeaseSpec, Instant)>,
    /// The lease as this candidate last wrote it while holding it.
    held: Option<Lease>,
}

/// The lease record's fields that say whether it changed.
fn same_record(a: &LeaseSpec, b: &LeaseSpec) -> bool {
    a.holder_identity == b.holder_identity
        && a.renew_time == b.renew_time
        && a.lease_transitions == b.lease_transitions
}

impl Elector {
    pub fn new(client: Client, cfg: LeaseConfig) -> Elector {
        Elector {
            api: Api::namespaced(client, &cfg.namespace),
            cfg,
            observed: None,
            held: None,
        }
    }

    pub fn config(&self) -> &LeaseConfig {
        &self.cfg
    }

    /// The holder of the lease as last observed.
    pub fn observed_holder(&self) -> Option<&str> {
        self.observed
            .as_ref()
            .and_then(|(s, _)| s.holder_identity.as_deref())
    }

    fn spec(&self, now: Timestamp, acquire: Option<MicroTime>, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.cfg.identity.clone()),
            lease_duration_seconds: Some(self.cfg.lease_duration.as_secs().max(1) as i32),
            acquire_time: Some(acquire.unwrap_or(MicroTime(now))),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..Default::default()
        }
    }

    /// Acquire the lease, or renew it if held: `Ok(true)` when this
    /// candidate holds it now.
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool, Error> {
        if let Some(held) = self.held.take() {
            match self.renew(held).await {
                Ok(()) => return Ok(true),
                // Someone wrote the lease since: read it and decide below.
                Err(e) if status_code(&e) == Some(409) => {}
                // Whether the write landed is unknown: the next attempt
                // reads the lease.
                Err(e) => return Err(e.into()),
            }
        }
        let now = Timestamp::now();
        let current = match self.api.get_opt(&self.cfg.name).await? {
            Some(l) => l,
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.cfg.name.clone()),
                        namespace: Some(self.cfg.namespace.clone()),
                        ..Default::default()
                    },
                    spec: Some(self.spec(now, None, 0)),
                };
                return match self.api.create(&PostParams::default(), &lease).await {
                    Ok(l) => {
                        self.hold(l);
                        Ok(true)
                    }
                    // Another candidate created it first.
                    Err(e) if status_code(&e) == Some(409) => Ok(false),
                    Err(e) => Err(e.into()),
                };
            }
        };
        let spec = current.spec.clone().unwrap_or_default();
        self.observe(spec.clone());
        let holder = spec.holder_identity.as_deref().unwrap_or_default();
        let ours = holder == self.cfg.identity;
        if !ours && !holder.is_empty() && !self.expired(&spec) {
            return Ok(false);
        }
        let (acquire, transitions) = if ours {
            (
                spec.acquire_time.clone(),
                spec.lease_transitions.unwrap_or(0),
            )
        } else {
            (None, spec.lease_transitions.unwrap_or(0).saturating_add(1))
        };
        let mut next = current;
        next.spec = Some(self.spec(now, acquire, transitions));
        // `replace` sends the resourceVersion read above: a concurrent
        // write makes this one fail with 409 rather than both winning.
        match self
            .api
            .replace(&self.cfg.name, &PostParams::default(), &next)
            .await
        {
            Ok(l) => {
                if !ours {
                    tracing::info!(lease = %self.cfg.name, identity = %self.cfg.identity, previous = %holder, "acquired the controller lease");
                }
                self.hold(l);
                Ok(true)
            }
            Err(e) if status_code(&e) == Some(409) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Renew `held` (the lease as this candidate last wrote it) with the
    /// resourceVersion it carries: a conflict when anyone wrote it since.
    async fn renew(&mut self, mut held: Lease) -> Result<(), kube::Error> {
        let spec = held.spec.clone().unwrap_or_default();
        held.spec = Some(self.spec(
            Timestamp::now(),
            spec.acquire_time,
            spec.lease_transitions.unwrap_or(0),
        ));
        let l = self
            .api
            .replace(&self.cfg.name, &PostParams::default(), &held)
            .await?;
        self.hold(l);
        Ok(())
    }

    /// This candidate holds `lease`, as the API returned it.
    fn hold(&mut self, lease: Lease) {
        self.observe(lease.spec.clone().unwrap_or_default());
        self.held = Some(lease);
    }

    fn observe(&mut self, spec: LeaseSpec) {
        match &self.observed {
            Some((old, _)) if same_record(old, &spec) => {}
            _ => self.observed = Some((spec, Instant::now())),
        }
    }

    /// Whether the record has gone unrenewed for its lease duration, by
    /// this candidate's own clock since it first saw the record.
    fn expired(&self, spec: &LeaseSpec) -> bool {
        let duration = spec
            .lease_duration_seconds
            .filter(|d| *d > 0)
            .map(|d| Duration::from_secs(d as u64))
            .unwrap_or(self.cfg.lease_duration);
        match &self.observed {
            Some((seen, at)) if same_record(seen, spec) => at.elapsed() >= duration,
            _ => false,
        }
    }

    /// Give the lease up (on a clean stop) so that another candidate need
    /// not wait for it to expire.
    pub async fn release(&mut self) -> Result<(), Error> {
        self.held = None;
        let Some(mut current) = self.api.get_opt(&self.cfg.name).await? else {
            return Ok(());
        };
        let Some(spec) = current.spec.as_mut() else {
            return Ok(());
        };
        if spec.holder_identity.as_deref() != Some(self.cfg.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        self.api
            .replace(&self.cfg.name, &PostParams::default(), &current)
            .await?;
        Ok(())
    }
}
