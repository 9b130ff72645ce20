//! The controller manager: competes for the controller lease and, while it
//! holds it, runs the controllers of [`CONTROLLERS`] that its configuration
//! enables (all by default, as kube-controller-manager's `--controllers=*`). Losing the lease (no renewal within the renew deadline)
//! aborts them at once, and the member steps aside for a lease duration
//! so that another member can take over; they start again from fresh
//! lists when it leads again. One per `keel server`, or alone as `keel controllers`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::Client;
use tokio::task::JoinSet;

use futures::future::BoxFuture;

use crate::context::{Context, Settings};
use crate::credentials::Credentials;
use crate::leader::{Elector, LeaseConfig};
use crate::metrics::Metrics;
use crate::{
    cronjob, daemonset, deployment, disruption, endpoints, endpointslice, eventttl, gc, job,
    namespace, nodelifecycle, persistentvolume, replicaset, resourcequota, scheduler,
    serviceaccount, statefulset,
};

/// How a controller starts: it runs until its future is dropped.
type Start = fn(Context) -> BoxFuture<'static, Result<(), crate::Error>>;

/// Every controller the manager knows, by name.
pub const CONTROLLERS: &[(&str, Start)] = &[
    (gc::NAME, |c| {
        Box::pin(gc::run(c.client, c.metrics, c.identity))
    }),
    (namespace::NAME, |c| {
        Box::pin(namespace::run(c.client, c.metrics))
    }),
    (scheduler::NAME, |c| Box::pin(scheduler::run(c))),
    (persistentvolume::NAME, |c| {
        Box::pin(persistentvolume::run(c))
    }),
    (replicaset::NAME, |c| Box::pin(replicaset::run(c))),
    (deployment::NAME, |c| Box::pin(deployment::run(c))),
    (statefulset::NAME, |c| Box::pin(statefulset::run(c))),
    (daemonset::NAME, |c| Box::pin(daemonset::run(c))),
    (job::NAME, |c| Box::pin(job::run(c))),
    (cronjob::NAME, |c| Box::pin(cronjob::run(c))),
    (endpoints::NAME, |c| Box::pin(endpoints::run(c))),
    (endpointslice::NAME, |c| Box::pin(endpointslice::run(c))),
    (serviceaccount::NAME, |c| Box::pin(serviceaccount::run(c))),
    (resourcequota::NAME, |c| Box::pin(resourcequota::run(c))),
    (disruption::NAME, |c| Box::pin(disruption::run(c))),
    (eventttl::NAME, |c| Box::pin(eventttl::run(c))),
    (nodelifecycle::NAME, |c| Box::pin(nodelifecycle::run(c))),
];

/// The lease the manager holds while it runs the controllers.
pub const LEASE_NAME: &str = "keel-controller-manager";

/// How the manager runs.
#[derive(Debug, Clone)]
pub struct ManagerConfig {
    pub lease: LeaseConfig,
    /// Which controllers run, as kube-controller-manager's `--controllers`:
    /// `*` (every one), a name, or `-name` (not that one); later entries win.
    pub controllers: Vec<String>,
    /// Run each controller as its own ServiceAccount (tokens made with
    /// these); without, every controller uses the manager's client.
    pub credentials: Option<Credentials>,
    /// Options handed to the controllers in their [`Context`].
    pub settings: Settings,
}

impl ManagerConfig {
    /// Every controller, Kubernetes' lease timings, and `identity` (unique
    /// per candidate; a host name or member id plus something per process).
    pub fn new(identity: String) -> ManagerConfig {
        ManagerConfig {
            lease: LeaseConfig::new(LEASE_NAME, identity),
            controllers: vec!["*".into()],
            credentials: None,
            settings: Settings::default(),
        }
    }

    /// Whether the controller called `name` runs.
    pub fn enabled(&self, name: &str) -> bool {
        let mut on = false;
        for c in &self.controllers {
            match c.as_str() {
                "*" => on = true,
                c if c.strip_prefix('-') == Some(name) => on = false,
                c if c == name => on = true,
                _ => {}
            }
        }
        on
    }

    /// The names in `controllers` that are no controller's, to refuse at start.
    pub fn unknown(&self) -> Vec<String> {
        self.controllers
            .iter()
            .map(|c| c.trim_start_matches('-'))
            .filter(|c| *c != "*" && !CONTROLLERS.iter().any(|(n, _)| n == c))
            .map(str::to_string)
            .collect()
    }
}

/// A running manager; dropping it (or [`Manager::stop`]) stops everything.
pub struct Manager {
    metrics: Arc<Metrics>,
    task: Option<tokio::task::JoinHandle<()>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Manager {
    /// Start competing for the lease with `client`, counting into `metrics`.
    pub fn spawn(client: Client, config: ManagerConfig, metrics: Arc<Metrics>) -> Manager {
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(run(client, config, metrics.clone(), stop_rx));
        Manager {
            metrics,
            task: Some(task),
            stop: Some(stop_tx),
        }
    }

    /// The counters, for a `/metrics` endpoint.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Stop the controllers and give the lease up if held.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }

    /// Wait until the manager ends (it ends only when stopped).
    pub async fn wait(mut self) {
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

/// The controllers, each restarted after a failure while this member leads.
fn start_controllers(
    client: &Client,
    config: &ManagerConfig,
    metrics: &Arc<Metrics>,
) -> JoinSet<()> {
    let mut set = JoinSet::new();
    for (name, start) in CONTROLLERS {
        if !config.enabled(name) {
            continue;
        }
        let (client, metrics, identity, creds, settings) = (
            client.clone(),
            metrics.clone(),
            config.lease.identity.clone(),
            config.credentials.clone(),
            config.settings.clone(),
        );
        set.spawn(supervise(name, move || {
            let (client, metrics, identity, creds, settings) = (
                client.clone(),
                metrics.clone(),
                identity.clone(),
                creds.clone(),
                settings.clone(),
            );
            Box::pin(async move {
                let context = |client| Context {
                    settings,
                    ..Context::new(client, metrics, name, identity)
                };
                let Some(creds) = creds else {
                    return start(context(client)).await;
                };
                let (own, refresh) = creds.client(name).await?;
                tokio::select! {
                    r = start(context(own)) => r,
                    e = refresh => Err(e),
                }
            })
        }));
    }
    set
}

/// Run a controller again (after a pause) whenever it returns, fails or
/// panics: a bug in one reconcile must not leave the controller dead until
/// the lease moves. Each run is its own task, aborted with this future.
async fn supervise<F>(name: &'static str, start: F)
where
    F: Fn() -> BoxFuture<'static, Result<(), crate::Error>>,
{
    /// Aborts the running controller when the supervisor is dropped.
    struct AbortOnDrop(tokio::task::AbortHandle);
    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    loop {
        let task = tokio::spawn(start());
        let _guard = AbortOnDrop(task.abort_handle());
        match task.await {
            Ok(Ok(())) => tracing::warn!(controller = name, "controller stopped; restarting"),
            Ok(Err(e)) => {
                tracing::warn!(controller = name, error = %e, "controller failed; restarting")
            }
            Err(e) if e.is_panic() => {
                tracing::error!(controller = name, "controller panicked; restarting")
            }
            Err(_) => return,
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn run(
    client: Client,
    config: ManagerConfig,
    metrics: Arc<Metrics>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let mut elector = Elector::new(client.clone(), config.lease.clone());
    let retry = config.lease.retry_period;
    loop {
        // Candidate: try until the lease is ours.
        loop {
            match elector.try_acquire_or_renew().await {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "controller lease: could not read or write the lease")
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(retry) => {}
                _ = &mut stop => return,
            }
        }
        metrics.set_leader(true);
        tracing::info!(identity = %config.lease.identity, "leading: starting the controllers");
        let controllers = start_controllers(&client, &config, &metrics);
        let mut renewed = Instant::now();
        let stopped = loop {
            tokio::select! {
                _ = tokio::time::sleep(retry) => {}
                _ = &mut stop => break true,
            }
            let left = config
                .lease
                .renew_deadline
                .saturating_sub(renewed.elapsed());
            match tokio::time::timeout(left, elector.try_acquire_or_renew()).await {
                Ok(Ok(true)) => renewed = Instant::now(),
                Ok(Ok(false)) => {
                    // Someone else holds it now: we were too slow.
                    tracing::warn!(holder = ?elector.observed_holder(), "controller lease taken over");
                    break false;
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "controller lease: renewal failed"),
                Err(_) => {}
            }
            if renewed.elapsed() >= config.lease.renew_deadline {
                tracing::warn!("controller lease not renewed within the renew deadline");
                break false;
            }
        };
        // Dropping the set aborts every controller task now.
        drop(controllers);
        metrics.set_leader(false);
        tracing::warn!(identity = %config.lease.identity, "stopped leading: controllers stopped");
        if stopped {
            let _ = tokio::time::timeout(Duration::from_secs(2), elector.release()).await;
            return;
        }
        // Step aside for a lease duration before campaigning again. A
        // member that missed its renew deadline is overloaded, and the
        // record may still name it: campaigning at once wins that record
        // back and starts every controller again, each re-listing the
        // cluster, on the member that was too slow (at 150,000 pods this
        // went round five times). Meanwhile another member sees the record
        // unchanged for a lease duration and takes over, as it would
        // after kube-controller-manager exits on a lost lease.
        tokio::select! {
            _ = tokio::time::sleep(config.lease.lease_duration) => {}
            _ = &mut stop => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_controller_is_started_again() {
        let runs = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let r = runs.clone();
        let supervisor = tokio::spawn(supervise("boom", move || {
            let r = r.clone();
            Box::pin(async move {
                if r.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 2 {
                    panic!("a reconcile bug");
                }
                std::future::pending().await
            })
        }));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while runs.load(std::sync::atomic::Ordering::SeqCst) < 3 {
            assert!(tokio::time::Instant::now() < deadline, "not restarted");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(!supervisor.is_finished());
        supervisor.abort();
    }

    #[test]
    fn controllers_are_chosen_as_kube_controller_manager_chooses_them() {
        let mut c = ManagerConfig::new("me".into());
        assert!(c.enabled("deployment") && c.enabled(gc::NAME));
        c.controllers = vec!["*".into(), "-deployment".into()];
        assert!(!c.enabled("deployment") && c.enabled("statefulset"));
        c.controllers = vec!["scheduler".into()];
        assert!(c.enabled("scheduler") && !c.enabled("statefulset"));
        c.controllers = vec!["*".into(), "-nope".into(), "bogus".into()];
        assert_eq!(c.unknown(), ["nope", "bogus"]);
    }
}
