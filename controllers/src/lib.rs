//! Keel's controllers: API clients on `kube` that reconcile cluster state
//! through the public Kubernetes API, as any out-of-process controller would.
//! [`Manager`] runs them on the member that holds the controller lease
//! ([`leader`]), each with a [`context::Context`], most through
//! [`runner::run`] (a `kube::runtime::Controller` with metrics and retries).
//! [`gc`] is the garbage collector, [`namespace`] empties deleted
//! namespaces, [`scheduler`] binds pods to nodes, and the workload and
//! upkeep controllers are named after their Kubernetes counterparts.
//! Nothing here reaches into the store or the API server.

pub mod context;
pub mod credentials;
pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod discovery;
pub mod disruption;
pub mod endpoints;
pub mod endpointslice;
pub mod events;
pub mod eventttl;
pub mod gc;
pub mod job;
pub mod leader;
pub mod manager;
pub mod metrics;
pub mod namespace;
pub mod nodelifecycle;
pub mod persistentvolume;
pub mod queue;
mod raw;
pub mod replicaset;
pub mod resourcequota;
pub mod runner;
pub mod scheduler;
pub mod serviceaccount;
pub mod statefulset;
pub mod workload;

pub use context::Settings;
pub use manager::{Manager, ManagerConfig};
pub use metrics::Metrics;

/// What can go wrong talking to the API.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API answered with an error or could not be reached.
    #[error("{0}")]
    Kube(#[from] kube::Error),
    /// The kubeconfig could not be read or used.
    #[error("kubeconfig: {0}")]
    Kubeconfig(String),
    /// An answer the controller could not make sense of.
    #[error("{0}")]
    Invalid(String),
}

/// A client for the API that `kubeconfig` (a file) names, with the
/// credentials it carries (Keel's admin kubeconfig: a client certificate).
pub async fn client_from_kubeconfig(kubeconfig: &std::path::Path) -> Result<kube::Client, Error> {
    Ok(kube::Client::try_from(
        config_from_kubeconfig(kubeconfig).await?,
    )?)
}

/// The manager's client from `kubeconfig`, and, with a `token_dir`, the
/// [`credentials::Credentials`] that give each controller its own account.
pub async fn connect(
    kubeconfig: &std::path::Path,
    token_dir: Option<&std::path::Path>,
) -> Result<(kube::Client, Option<credentials::Credentials>), Error> {
    let config = config_from_kubeconfig(kubeconfig).await?;
    let client = kube::Client::try_from(config.clone())?;
    let creds = match token_dir {
        Some(dir) => Some(credentials::Credentials::new(config, client.clone(), dir)?),
        None => None,
    };
    Ok((client, creds))
}

/// The client configuration of `kubeconfig`'s current context.
pub async fn config_from_kubeconfig(kubeconfig: &std::path::Path) -> Result<kube::Config, Error> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)
        .map_err(|e| Error::Kubeconfig(format!("{}: {e}", kubeconfig.display())))?;
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .map_err(|e| Error::Kubeconfig(format!("{}: {e}", kubeconfig.display())))?;
    Ok(config)
}

/// The HTTP status code of an API error, if the API answered at all.
pub(crate) fn status_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}
