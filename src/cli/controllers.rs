//! `keel controllers`: the controller manager (garbage collector, namespace
//! controller) as a client of a Kubernetes API named by a kubeconfig, and
//! the start-up `keel server` uses to run the same manager beside its API.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use keel_controllers::{Manager, ManagerConfig, Metrics, Settings};

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
    /// Run each controller as its own ServiceAccount in kube-system (its
    /// role `system:controller:<account>`), with tokens the manager
    /// requests; the kubeconfig's user then needs Kubernetes'
    /// `system:kube-controller-manager` rights. Off: every controller acts
    /// as the kubeconfig's user.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    pub use_service_account_credentials: bool,
    /// Where the controllers' tokens are kept (private files) with
    /// `--use-service-account-credentials`; default: a new directory under
    /// the system's temporary directory.
    #[arg(long)]
    pub token_dir: Option<PathBuf>,
    /// How long a node may go without a heartbeat (its Lease or status)
    /// before the node lifecycle controller marks it Unknown and taints it
    /// unreachable (kube-controller-manager's default: 40s).
    #[arg(long, default_value = "40s", value_parser = parse_duration)]
    pub node_monitor_grace_period: Duration,
    /// How long Events are kept (kube-apiserver's `--event-ttl`: `1h`,
    /// `30m`, `90s`, `1h30m`).
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub event_ttl: Duration,
}

/// The controllers' options from the command line.
pub fn settings(node_monitor_grace_period: Duration, event_ttl: Duration) -> Result<Settings> {
    if node_monitor_grace_period.is_zero() {
        anyhow::bail!("--node-monitor-grace-period must be positive (such as 40s)");
    }
    Ok(Settings {
        node_monitor_grace_period,
        event_ttl,
    })
}

/// A Go-style duration (`1h30m`, `90s`, `500ms`): numbers each followed by
/// `h`, `m`, `s` or `ms`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    keel_agent::duration::parse(s)
        .ok_or_else(|| format!("{s:?} is not a duration (e.g. 1h, 30m, 90s)"))
}

/// Start the manager against the API `kubeconfig` names.
/// `token_dir`, when given, makes each controller run as its own
/// ServiceAccount with tokens kept there.
pub async fn start(
    kubeconfig: &Path,
    identity: String,
    controllers: Vec<String>,
    token_dir: Option<PathBuf>,
    settings: Settings,
    metrics: Arc<Metrics>,
) -> Result<Manager> {
    let mut config = ManagerConfig::new(identity.clone());
    config.controllers = controllers;
    config.settings = settings;
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
    let (client, credentials) = keel_controllers::connect(kubeconfig, token_dir.as_deref())
        .await
        .context("the controller manager's client")?;
    config.credentials = credentials;
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
    let token_dir = args.use_service_account_credentials.then(|| {
        args.token_dir.clone().unwrap_or_else(|| {
            std::env::temp_dir().join(format!("keel-controller-tokens-{}", std::process::id()))
        })
    });
    let settings = settings(args.node_monitor_grace_period, args.event_ttl)?;
    let manager = start(
        &args.kubeconfig,
        identity,
        args.controllers,
        token_dir,
        settings,
        Arc::new(Metrics::default()),
    )
    .await?;
    super::shutdown_signal().await;
    manager.stop().await;
    Ok(())
}

#[cfg(test)]
mod duration_tests {
    use super::*;

    #[test]
    fn durations_parse_as_go_writes_them() {
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        // Go's time.ParseDuration takes fractions too.
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        for bad in ["", "1", "h", "1d", "-1s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
