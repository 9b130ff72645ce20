//! Per-controller identities, as kube-controller-manager's
//! `--use-service-account-credentials`: the manager (authenticated as
//! `system:kube-controller-manager`) makes sure each controller's
//! ServiceAccount exists in `kube-system`, requests a token for it
//! (TokenRequest), and hands the controller a client that presents that
//! token, so each controller acts with its own role
//! (`system:controller:<account>`) and shows up as itself in audit logs
//! and in `managedFields`. Tokens live in private files that the client
//! re-reads (kube re-reads a token file at least once a minute), renewed at
//! half their lifetime.

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Client;
use kube::api::{Api, PostParams};

use crate::{Error, status_code};

/// Where the controllers' accounts live.
pub const NAMESPACE: &str = "kube-system";
/// How long a controller's token is good for.
const TOKEN_SECONDS: i64 = 3600;

/// The ServiceAccount a controller runs as (Kubernetes' names where
/// Kubernetes has the controller).
pub fn account(controller: &str) -> String {
    match controller {
        "garbagecollector" => "generic-garbage-collector".into(),
        "scheduler" => "kube-scheduler".into(),
        "persistentvolume-binder" => "persistent-volume-binder".into(),
        "daemonset" => "daemon-set-controller".into(),
        "endpoints" => "endpoint-controller".into(),
        "serviceaccount" => "service-account-controller".into(),
        "eventttl" => "event-ttl-controller".into(),
        "nodelifecycle" => "node-controller".into(),
        other => format!("{other}-controller"),
    }
}

/// Makes clients for controllers from the manager's own configuration.
#[derive(Clone)]
pub struct Credentials {
    /// The manager's configuration: the API's address and CA are reused.
    base: kube::Config,
    /// The manager's own client, which creates accounts and tokens.
    manager: Client,
    /// A private directory for token files.
    dir: PathBuf,
}

impl Credentials {
    /// Credentials under `dir` (created 0700 if missing).
    pub fn new(base: kube::Config, manager: Client, dir: &Path) -> Result<Credentials, Error> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| Error::Invalid(format!("{}: {e}", dir.display())))?;
        Ok(Credentials {
            base,
            manager,
            dir: dir.to_path_buf(),
        })
    }

    /// A client acting as `controller`'s account, and the future that keeps
    /// its token fresh (run it beside the controller; it never ends
    /// without an error).
    pub async fn client(
        &self,
        controller: &str,
    ) -> Result<(Client, impl Future<Output = Error> + use<>), Error> {
        let account = account(controller);
        self.ensure_account(&account).await?;
        let path = self.dir.join(format!("{account}.token"));
        let expires = self.renew(&account, &path).await?;
        let mut config = self.base.clone();
        config.auth_info = kube::config::AuthInfo {
            token_file: Some(path.to_string_lossy().into_owned()),
            ..Default::default()
        };
        let client = Client::try_from(config)?;
        let this = self.clone();
        let refresh = async move {
            let mut wait = half(expires);
            loop {
                tokio::time::sleep(wait).await;
                match this.renew(&account, &path).await {
                    Ok(e) => wait = half(e),
                    Err(e) => {
                        tracing::warn!(%account, error = %e, "cannot renew the controller's token");
                        // Try again soon; the old token is still good for a while.
                        wait = Duration::from_secs(10);
                    }
                }
                if wait.is_zero() {
                    return Error::Invalid(format!("the token of {account} expired"));
                }
            }
        };
        Ok((client, refresh))
    }

    async fn ensure_account(&self, account: &str) -> Result<(), Error> {
        let api: Api<ServiceAccount> = Api::namespaced(self.manager.clone(), NAMESPACE);
        let sa = ServiceAccount {
            metadata: ObjectMeta {
                name: Some(account.to_string()),
                ..Default::default()
            },
            ..Default::default()
        };
        match api.create(&PostParams::default(), &sa).await {
            Ok(_) => Ok(()),
            Err(e) if status_code(&e) == Some(409) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Request a token for `account`, write it to `path` (0600, replaced
    /// atomically), and return how long it is good for.
    async fn renew(&self, account: &str, path: &Path) -> Result<Duration, Error> {
        let api: Api<ServiceAccount> = Api::namespaced(self.manager.clone(), NAMESPACE);
        let req = TokenRequest {
            spec: TokenRequestSpec {
                expiration_seconds: Some(TOKEN_SECONDS),
                ..Default::default()
            },
            ..Default::default()
        };
        let tr: TokenRequest = api
            .create_subresource("token", account, &PostParams::default(), &req)
            .await?;
        let status = tr
            .status
            .ok_or_else(|| Error::Invalid(format!("no token in the TokenRequest of {account}")))?;
        write_private(path, status.token.as_bytes())
            .map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?;
        let seconds = tr.spec.expiration_seconds.unwrap_or(TOKEN_SECONDS).max(0) as u64;
        Ok(Duration::from_secs(seconds))
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("cluster", &self.base.cluster_url)
            .field("dir", &self.dir)
            .finish()
    }
}

fn half(d: Duration) -> Duration {
    d / 2
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_are_kubernetes_names() {
        assert_eq!(account("garbagecollector"), "generic-garbage-collector");
        assert_eq!(account("deployment"), "deployment-controller");
        assert_eq!(account("daemonset"), "daemon-set-controller");
        assert_eq!(account("endpoints"), "endpoint-controller");
        assert_eq!(account("nodelifecycle"), "node-controller");
        assert_eq!(account("scheduler"), "kube-scheduler");
    }
}
