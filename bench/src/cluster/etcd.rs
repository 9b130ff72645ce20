//! The baseline: etcd members as `etcd` processes on free loopback ports.
//! By default they serve clients and each other over mutual TLS, as
//! Kubernetes deploys etcd (kubeadm's static pods) and as Keel's members
//! always talk; `--etcd-plaintext` runs them without TLS, the baseline of
//! the measurements taken before TLS was added. `/metrics` is served in
//! plain HTTP on a port of its own in both modes.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};
use keel_apiserver::pki::issue::Ca;

use super::{append, log_tail, running, settle};
use crate::{Proc, free_port, ready};

/// How the suites run the etcd baseline.
#[derive(clap::Args, Clone, Debug)]
pub struct EtcdArgs {
    /// The etcd binary of the baseline.
    #[arg(long = "etcd", default_value = "etcd")]
    pub binary: String,
    /// Run etcd's client and peer ports in plain text. By default both use
    /// mutual TLS, as Kubernetes runs etcd and as Keel's members run.
    #[arg(long)]
    pub etcd_plaintext: bool,
}

impl EtcdArgs {
    /// How etcd's clients and peers reach it, for a table's title.
    pub fn transport(&self) -> &'static str {
        if self.etcd_plaintext {
            "in plain text"
        } else {
            "over mutual TLS"
        }
    }
}

pub struct EtcdMember {
    pub name: String,
    pub client: String,
    pub peer: String,
    /// `/metrics` in plain HTTP, whatever the client port asks for.
    pub metrics: String,
    pub dir: PathBuf,
    proc: Option<Proc>,
}

/// The certificates of a cluster that runs over TLS.
struct Tls {
    /// `ca.crt` and each member's `<name>.crt` and `<name>.key`.
    dir: PathBuf,
    /// What a client presents and trusts.
    client: TlsOptions,
}

pub struct EtcdCluster {
    pub members: Vec<EtcdMember>,
    initial: String,
    root: PathBuf,
    binary: String,
    tls: Option<Tls>,
}

impl EtcdCluster {
    /// Start `n` etcd members under `root`.
    pub fn start(root: &Path, n: usize, args: &EtcdArgs) -> Result<EtcdCluster> {
        let mut members = Vec::new();
        for i in 0..n {
            members.push(EtcdMember {
                name: format!("e{}", i + 1),
                client: format!("127.0.0.1:{}", free_port()?),
                peer: format!("127.0.0.1:{}", free_port()?),
                metrics: format!("127.0.0.1:{}", free_port()?),
                dir: root.join(format!("etcd-{}", i + 1)),
                proc: None,
            });
        }
        let tls = if args.etcd_plaintext {
            None
        } else {
            Some(certificates(&root.join("etcd-pki"), &members)?)
        };
        let scheme = scheme(&tls);
        let initial = members
            .iter()
            .map(|m| format!("{}={scheme}://{}", m.name, m.peer))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = EtcdCluster {
            members,
            initial,
            root: root.to_path_buf(),
            binary: args.binary.clone(),
            tls,
        };
        for i in 0..n {
            cluster.spawn(i)?;
        }
        Ok(cluster)
    }

    /// Start `n` members and wait until each serves a read, starting over on
    /// fresh ports (up to three times) when a member exits while starting.
    pub async fn launch(root: &Path, n: usize, args: &EtcdArgs) -> Result<EtcdCluster> {
        let mut last = None;
        for attempt in 1..=3 {
            let dir = root.join(format!("try-{attempt}"));
            std::fs::create_dir_all(&dir)?;
            let mut c = EtcdCluster::start(&dir, n, args)?;
            let endpoints = c.endpoints();
            let options = c.options();
            match settle(
                n,
                |i| c.members[i].proc.as_mut().and_then(Proc::exited),
                |i| read_once(endpoints[i].clone(), options.clone()),
                |i| log_tail(&dir.join(format!("e{}.log", i + 1))),
            )
            .await
            {
                Ok(()) => return Ok(c),
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("three attempts"))
    }

    /// Start member `i` (again) on its data.
    pub fn spawn(&mut self, i: usize) -> Result<()> {
        let scheme = scheme(&self.tls);
        let m = &mut self.members[i];
        let log = append(&self.root.join(format!("{}.log", m.name)))?;
        let mut cmd = Command::new(&self.binary);
        cmd.args(["--name", &m.name])
            .arg("--data-dir")
            .arg(&m.dir)
            .args(["--listen-client-urls", &format!("{scheme}://{}", m.client)])
            .args([
                "--advertise-client-urls",
                &format!("{scheme}://{}", m.client),
            ])
            .args(["--listen-peer-urls", &format!("{scheme}://{}", m.peer)])
            .args([
                "--initial-advertise-peer-urls",
                &format!("{scheme}://{}", m.peer),
            ])
            .args(["--listen-metrics-urls", &format!("http://{}", m.metrics)])
            .args(["--initial-cluster", &self.initial])
            .args(["--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", "keel-bench"]);
        // The same retention as Keel's default event window would need
        // `--auto-compaction`; etcd keeps every revision unless told.
        if let Some(tls) = &self.tls {
            let file = |name: &str| tls.dir.join(name);
            let (cert, key) = (
                file(&format!("{}.crt", m.name)),
                file(&format!("{}.key", m.name)),
            );
            cmd.arg("--cert-file")
                .arg(&cert)
                .arg("--key-file")
                .arg(&key)
                .arg("--trusted-ca-file")
                .arg(file("ca.crt"))
                .arg("--client-cert-auth")
                .arg("--peer-cert-file")
                .arg(&cert)
                .arg("--peer-key-file")
                .arg(&key)
                .arg("--peer-trusted-ca-file")
                .arg(file("ca.crt"))
                .arg("--peer-client-cert-auth");
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| {
                format!(
                    "starting {} (install Debian's etcd-server: make deps)",
                    self.binary
                )
            })?;
        m.proc = Some(Proc { child });
        Ok(())
    }

    pub fn kill(&mut self, i: usize) {
        self.members[i].proc = None;
    }

    pub fn pids(&self) -> Vec<u32> {
        running(self.members.iter().map(|m| &m.proc))
    }

    /// Member `i`'s client URL.
    pub fn endpoint(&self, i: usize) -> String {
        format!("{}://{}", scheme(&self.tls), self.members[i].client)
    }

    pub fn endpoints(&self) -> Vec<String> {
        (0..self.members.len()).map(|i| self.endpoint(i)).collect()
    }

    /// Connection options with the client's certificate, when etcd runs
    /// over TLS; add timeouts to taste.
    pub fn options(&self) -> ConnectOptions {
        match &self.tls {
            Some(tls) => ConnectOptions::new().with_tls(tls.client.clone()),
            None => ConnectOptions::new(),
        }
    }

    /// A client of `endpoints` (spread over them as etcd's client does).
    pub async fn connect(&self, endpoints: &[String]) -> Result<Client> {
        Client::connect(endpoints, Some(self.options()))
            .await
            .context("connecting to etcd")
    }

    /// The index of the leader, as the running members see it.
    pub async fn leader(&self) -> Option<usize> {
        let options = || {
            self.options()
                .with_connect_timeout(Duration::from_millis(500))
                .with_timeout(Duration::from_secs(1))
        };
        let mut ids = Vec::new();
        let mut leader = None;
        for (i, m) in self.members.iter().enumerate() {
            if m.proc.is_none() {
                ids.push(None);
                continue;
            }
            let status = match Client::connect([self.endpoint(i)], Some(options())).await {
                Ok(mut c) => c.status().await.ok(),
                Err(_) => None,
            };
            ids.push(
                status
                    .as_ref()
                    .and_then(|s| s.header().map(|h| h.member_id())),
            );
            if let Some(s) = status
                && s.leader() != 0
            {
                leader = leader.or(Some(s.leader()));
            }
        }
        // Member ids are etcd's; find the member that reports it.
        let leader = leader?;
        ids.iter().position(|id| *id == Some(leader))
    }

    /// Wait until member `i` serves a linearizable read.
    pub async fn wait_ready(&self, i: usize, timeout: Duration) -> Result<()> {
        let (endpoint, options) = (self.endpoint(i), self.options());
        ready("etcd member", timeout, || {
            read_once(endpoint.clone(), options.clone())
        })
        .await
    }
}

fn scheme(tls: &Option<Tls>) -> &'static str {
    if tls.is_some() { "https" } else { "http" }
}

/// One linearizable read from `endpoint`, with short timeouts.
async fn read_once(endpoint: String, options: ConnectOptions) -> Result<()> {
    let options = options
        .with_connect_timeout(Duration::from_millis(500))
        .with_timeout(Duration::from_secs(2));
    let mut c = Client::connect([endpoint], Some(options)).await?;
    c.get("/bench/ready", None).await?;
    Ok(())
}

/// A CA of its own for the cluster, each member's certificate (server and
/// client, for 127.0.0.1) in `dir`, and a client certificate for the suite.
fn certificates(dir: &Path, members: &[EtcdMember]) -> Result<Tls> {
    std::fs::create_dir_all(dir)?;
    let ca = Ca::generate().context("creating etcd's CA")?;
    std::fs::write(dir.join("ca.crt"), &ca.cert_pem)?;
    for (i, m) in members.iter().enumerate() {
        let issued = ca
            .issue_member(i as u64 + 1, &["127.0.0.1".to_string()])
            .context("issuing an etcd member's certificate")?;
        std::fs::write(dir.join(format!("{}.crt", m.name)), &issued.cert_pem)?;
        keel_apiserver::pki::write_private(
            &dir.join(format!("{}.key", m.name)),
            issued.key_pem.as_bytes(),
        )?;
    }
    let client = ca
        .issue_user("keel-bench", &[])
        .context("issuing etcd's client certificate")?;
    Ok(Tls {
        dir: dir.to_path_buf(),
        client: TlsOptions::new()
            .ca_certificate(Certificate::from_pem(&ca.cert_pem))
            .identity(Identity::from_pem(&client.cert_pem, &client.key_pem)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quick() -> ConnectOptions {
        ConnectOptions::new()
            .with_connect_timeout(Duration::from_millis(500))
            .with_timeout(Duration::from_secs(2))
    }

    /// A one-member cluster, and the directory that holds it.
    async fn one_member(etcd_plaintext: bool) -> (tempfile::TempDir, EtcdCluster) {
        let dir = tempfile::tempdir().unwrap();
        let args = EtcdArgs {
            binary: "etcd".into(),
            etcd_plaintext,
        };
        let c = EtcdCluster::launch(dir.path(), 1, &args).await.unwrap();
        (dir, c)
    }

    async fn read(endpoint: &str, options: ConnectOptions) -> Result<()> {
        let mut c = Client::connect([endpoint], Some(options)).await?;
        c.get("/bench/k", None).await?;
        Ok(())
    }

    /// The baseline runs as Kubernetes runs etcd: only a client presenting
    /// a certificate of the cluster's CA is served, and the leader-change
    /// counter stays readable in plain HTTP.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn etcd_serves_only_clients_with_a_certificate_of_its_ca() {
        let (_dir, c) = one_member(false).await;
        let ep = c.endpoint(0);
        assert!(ep.starts_with("https://"), "{ep}");
        let mut client = c.connect(std::slice::from_ref(&ep)).await.unwrap();
        client.put("/bench/k", "v", None).await.unwrap();
        read(&ep, c.options()).await.unwrap();

        let plain = format!("http://{}", c.members[0].client);
        assert!(read(&plain, quick()).await.is_err(), "served without TLS");
        let ca_pem = &std::fs::read_to_string(c.tls.as_ref().unwrap().dir.join("ca.crt")).unwrap();
        let no_cert = TlsOptions::new().ca_certificate(Certificate::from_pem(ca_pem));
        assert!(
            read(&ep, quick().with_tls(no_cert)).await.is_err(),
            "served a client without a certificate"
        );
        let stranger = Ca::generate().unwrap().issue_user("x", &[]).unwrap();
        let wrong = TlsOptions::new()
            .ca_certificate(Certificate::from_pem(ca_pem))
            .identity(Identity::from_pem(&stranger.cert_pem, &stranger.key_pem));
        assert!(
            read(&ep, quick().with_tls(wrong)).await.is_err(),
            "served a certificate of another CA"
        );

        let metrics = super::super::http_get(&c.members[0].metrics, "/metrics")
            .await
            .unwrap();
        assert!(
            metrics.contains("etcd_server_leader_changes_seen_total"),
            "{metrics}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn etcd_plaintext_serves_plain_http() {
        let (_dir, c) = one_member(true).await;
        let ep = c.endpoint(0);
        assert_eq!(ep, format!("http://{}", c.members[0].client));
        read(&ep, quick()).await.unwrap();
    }
}
