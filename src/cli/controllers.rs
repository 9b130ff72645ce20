//! `keel controllers`: the controller manager (garbage collector, namespace
//! controller) as a client of a Kubernetes API named by a kubeconfig, and
//! the start-up `keel server` uses to run the same manager beside its API.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use keel_controllers::{Manager, ManagerConfig, Metrics};

#[derive(clap::Args, Debug)]
pub struct ControllersArgs {
    /// The kubeconfig of the API to manage (its current context).
    #[arg(long)]
    pub kubeconfig: PathBuf,
    /// This candidate's identity in the lease (default: host name and pid).
    #[arg(long)]
    pub identity: Option<String>,
    /// Which controllers run: `*` for all, `name`, `-name` (`*,-scheduler`);
    /// names are in docs/CONTROLLERS.md.
    #[arg(long, value_delimiter = ',', default_value = "*")]
    pub controllers: Vec<String>,
}

/// Start the manager against the API `kubeconfig` names.
pub async fn start(
    kubeconfig: &Path,
    identity: String,
    controllers: Vec<String>,
    metrics: Arc<Metrics>,
) -> Result<Manager> {
    let mut config = ManagerConfig::new(identity.clone());
    config.controllers = controllers;
    let unknown = config.unknown();
    if !unknown.is_empty() {
        anyhow::bail!(
            "unknown controllers {unknown:?}; known: {:?}",
            keel_controllers::manager::CONTROLLERS
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
        );
    }
    let client = keel_controllers::client_from_kubeconfig(kubeconfig)
        .await
        .context("the controller manager's client")?;
    tracing::info!(%identity, "controller manager started, competing for the lease");
    Ok(Manager::spawn(client, config, metrics))
}

pub async fn run(args: ControllersArgs) -> Result<()> {
    let identity = match args.identity {
        Some(i) => i,
        None => {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_else(|_| "keel".into());
            format!("{host}_{}", std::process::id())
        }
    };
    let manager = start(
        &args.kubeconfig,
        identity,
        args.controllers,
        Arc::new(Metrics::default()),
    )
    .await?;
    super::shutdown_signal().await;
    manager.stop().await;
    Ok(())
}
