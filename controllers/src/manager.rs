//! The controller manager: competes for the controller lease and, while it
//! holds it, runs the controllers (garbage collector, namespace
//! controller). Losing the lease (no renewal within the renew deadline)
//! aborts them at once; they start again from fresh lists when it leads
//! again. One per `keel server`, or alone as `keel controllers`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::Client;
use tokio::task::JoinSet;

use crate::leader::{Elector, LeaseConfig};
use crate::metrics::Metrics;
use crate::{gc, namespace};

/// The lease the manager holds while it runs the controllers.
pub const LEASE_NAME: &str = "keel-controller-manager";

/// How the manager runs.
#[derive(Debug, Clone)]
pub struct ManagerConfig {
    pub lease: LeaseConfig,
    /// Run the garbage collector.
    pub gc: bool,
    /// Run the namespace controller.
    pub namespaces: bool,
}

impl ManagerConfig {
    /// Every controller, Kubernetes' lease timings, and `identity` (unique
    /// per candidate; a host name or member id plus something per process).
    pub fn new(identity: String) -> ManagerConfig {
        ManagerConfig {
            lease: LeaseConfig::new(LEASE_NAME, identity),
            gc: true,
            namespaces: true,
        }
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
    if config.gc {
        let (client, metrics, id) = (
            client.clone(),
            metrics.clone(),
            config.lease.identity.clone(),
        );
        set.spawn(supervise(gc::NAME, move || {
            gc::run(client.clone(), metrics.clone(), id.clone())
        }));
    }
    if config.namespaces {
        let (client, metrics) = (client.clone(), metrics.clone());
        set.spawn(supervise(namespace::NAME, move || {
            namespace::run(client.clone(), metrics.clone())
        }));
    }
    set
}

/// Run a controller again (after a pause) whenever it returns.
async fn supervise<F, Fut>(name: &'static str, start: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(), crate::Error>>,
{
    loop {
        match start().await {
            Ok(()) => tracing::warn!(controller = name, "controller stopped; restarting"),
            Err(e) => {
                tracing::warn!(controller = name, error = %e, "controller failed; restarting")
            }
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
    }
}
