//! The clusters a benchmark starts: Keel members as `keel server` processes
//! (sharing one CA, so one client certificate works against every API) and
//! etcd members as `etcd` processes, each on free loopback ports, with their
//! data under the suite's temporary directory. Members can be killed
//! (SIGKILL) and started again on the same data. The etcd side is in
//! [`etcd`].

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use keel_proto::member as pb;
use tonic::transport::Channel;

use super::{Proc, free_port, ready};

mod etcd;
pub use etcd::{EtcdArgs, EtcdCluster, EtcdMember};

/// The `keel` binary the members run: the one beside this executable
/// (cargo builds both into the same directory).
pub fn keel_exe() -> Result<PathBuf> {
    let me = std::env::current_exe().context("finding this executable")?;
    let keel = me.with_file_name("keel");
    if !keel.exists() {
        bail!(
            "{} not found: the benchmark starts the `keel` binary beside it \
             (build both: cargo build --workspace --release)",
            keel.display()
        );
    }
    Ok(keel)
}

pub struct KeelMember {
    pub id: u64,
    pub peer: String,
    pub http: String,
    pub api: String,
    pub dir: PathBuf,
    proc: Option<Proc>,
}

pub struct KeelCluster {
    pub members: Vec<KeelMember>,
    initial: String,
    extra: Vec<String>,
    root: PathBuf,
    pub tls: Arc<rustls::ClientConfig>,
    /// The administrator certificate on the member port (mutual TLS).
    pub peer_tls: keel_store::ClientTls,
}

impl KeelCluster {
    /// Start `n` members under `root` with `extra` server options.
    pub fn start(root: &Path, n: usize, extra: &[&str]) -> Result<KeelCluster> {
        let ca_dir = root.join("keel-ca");
        let pki = keel_apiserver::pki::Pki::load_or_create(
            &ca_dir,
            &keel_apiserver::pki::serving_names(&[]),
        )
        .context("creating the benchmark CA")?;
        let mut members = Vec::new();
        for i in 0..n {
            let dir = root.join(format!("keel-{}", i + 1));
            std::fs::create_dir_all(dir.join("pki"))?;
            for f in ["ca.crt", "ca.key"] {
                std::fs::copy(ca_dir.join(f), dir.join("pki").join(f))?;
            }
            members.push(KeelMember {
                id: i as u64 + 1,
                peer: format!("127.0.0.1:{}", free_port()?),
                http: format!("127.0.0.1:{}", free_port()?),
                api: format!("127.0.0.1:{}", free_port()?),
                dir,
                proc: None,
            });
        }
        let initial = members
            .iter()
            .map(|m| format!("{}={}", m.id, m.peer))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = KeelCluster {
            members,
            initial,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            root: root.to_path_buf(),
            tls: Arc::new(pki.client_config()?),
            peer_tls: keel_store::ClientTls {
                ca_pem: pki.ca_pem.clone(),
                identity: keel_store::PemIdentity {
                    cert_pem: pki.admin_cert_pem.clone(),
                    key_pem: pki.admin_key_pem.clone(),
                },
            },
        };
        for i in 0..n {
            cluster.spawn(i)?;
        }
        Ok(cluster)
    }

    /// Start `n` members and wait until every one is ready. A member that
    /// exits while starting (a port taken between choosing and binding it)
    /// makes it start over on fresh ports, up to three times.
    pub async fn launch(root: &Path, n: usize, extra: &[&str]) -> Result<KeelCluster> {
        let mut last = None;
        for attempt in 1..=3 {
            let dir = root.join(format!("try-{attempt}"));
            let mut c = KeelCluster::start(&dir, n, extra)?;
            let health: Vec<String> = c.members.iter().map(|m| m.http.clone()).collect();
            match settle(
                n,
                |i| c.members[i].proc.as_mut().and_then(Proc::exited),
                |i| http_ok(health[i].clone(), "/readyz"),
                |i| log_tail(&dir.join(format!("keel-{}.log", i + 1))),
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
        let initial = self.initial.clone();
        self.spawn_with(i, &["--initial-members", &initial])
    }

    /// `kill -9` member `i`, give it an empty data directory (keeping the
    /// cluster's CA) and start it with `--join`: a member whose disk was
    /// replaced, as an operator brings it back (it must have been removed
    /// from the cluster first, and is added again after).
    pub fn spawn_wiped(&mut self, i: usize) -> Result<()> {
        self.kill(i);
        let dir = self.members[i].dir.clone();
        std::fs::remove_dir_all(&dir)?;
        std::fs::create_dir_all(dir.join("pki"))?;
        let ca = self.root.join("keel-ca");
        for f in ["ca.crt", "ca.key"] {
            std::fs::copy(ca.join(f), dir.join("pki").join(f))?;
        }
        self.spawn_with(i, &["--join"])
    }

    fn spawn_with(&mut self, i: usize, how: &[&str]) -> Result<()> {
        let exe = keel_exe()?;
        let m = &mut self.members[i];
        let log = append(&self.root.join(format!("keel-{}.log", m.id)))?;
        let child = Command::new(exe)
            .args(["server", "--id", &m.id.to_string()])
            .arg("--data-dir")
            .arg(&m.dir)
            .args(["--peer-addr", &m.peer])
            .args(["--http-addr", &m.http])
            .args(["--api-addr", &m.api])
            .args(how)
            .args(&self.extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting keel server")?;
        m.proc = Some(Proc { child });
        Ok(())
    }

    /// `kill -9` member `i`.
    pub fn kill(&mut self, i: usize) {
        self.members[i].proc = None;
    }

    pub fn pids(&self) -> Vec<u32> {
        running(self.members.iter().map(|m| &m.proc))
    }

    /// The member port of member `i`, over mutual TLS as the administrator.
    pub fn endpoint(&self, i: usize) -> Result<tonic::transport::Endpoint> {
        Ok(self.peer_tls.endpoint(&self.members[i].peer)?)
    }

    /// A store client (`Kv` over gRPC) of member `i`.
    pub async fn kv(&self, i: usize) -> Result<pb::kv_client::KvClient<Channel>> {
        let ch = ready("keel member", Duration::from_secs(60), || async {
            Ok(self.endpoint(i)?.connect().await?)
        })
        .await?;
        Ok(pb::kv_client::KvClient::new(ch))
    }

    /// The process id of member `i`, if it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.members[i].proc.as_ref().map(Proc::pid)
    }

    /// The `Admin` service of member `i` (membership and status).
    pub async fn admin(&self, i: usize) -> Result<pb::admin_client::AdminClient<Channel>> {
        let ch = ready("keel member", Duration::from_secs(60), || async {
            Ok(self.endpoint(i)?.connect().await?)
        })
        .await?;
        Ok(pb::admin_client::AdminClient::new(ch))
    }

    /// The index of the leader, as the running members see it.
    pub async fn leader(&self) -> Option<usize> {
        for (i, m) in self.members.iter().enumerate() {
            if m.proc.is_none() {
                continue;
            }
            let Ok(ch) = self
                .endpoint(i)
                .ok()?
                .connect_timeout(Duration::from_millis(500))
                .connect()
                .await
            else {
                continue;
            };
            if let Ok(s) = pb::admin_client::AdminClient::new(ch)
                .status(pb::StatusRequest {})
                .await
            {
                let leader = s.into_inner().leader;
                if leader != 0 {
                    return self.members.iter().position(|m| m.id == leader);
                }
            }
        }
        None
    }

    /// Wait until member `i` answers `/readyz` with 200 (it has a leader and
    /// serves linearizable reads).
    pub async fn wait_ready(&self, i: usize, timeout: Duration) -> Result<()> {
        let addr = self.members[i].http.clone();
        ready("keel /readyz", timeout, || http_ok(addr.clone(), "/readyz")).await
    }

    /// The API of member `i` with `connections` HTTP/2 connections.
    pub async fn api(&self, i: usize, connections: usize) -> Result<super::http::Api> {
        super::http::Api::connect(&self.members[i].api, self.tls.clone(), connections).await
    }
}

/// Wait (a minute at most) until `ready(i)` holds for every member; fail
/// at once, with the end of its log, when `exited(i)` reports a member gone.
async fn settle<E, R, Fut, L>(n: usize, mut exited: E, ready: R, log: L) -> Result<()>
where
    E: FnMut(usize) -> Option<String>,
    R: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
    L: Fn(usize) -> String,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut done = vec![false; n];
    loop {
        for (i, done) in done.iter_mut().enumerate() {
            if let Some(status) = exited(i) {
                bail!(
                    "member {} exited ({status}) while starting:\n{}",
                    i + 1,
                    log(i)
                );
            }
            if !*done {
                *done = ready(i).await.is_ok();
            }
        }
        if done.iter().all(|d| *d) {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            let waiting: Vec<usize> = (0..n).filter(|i| !done[*i]).map(|i| i + 1).collect();
            bail!(
                "members {waiting:?} not ready after a minute:\n{}",
                log(waiting[0] - 1)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A member's log, appended to across restarts.
fn append(path: &Path) -> Result<std::fs::File> {
    Ok(std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?)
}

/// The pids of the members that are running.
fn running<'a>(procs: impl Iterator<Item = &'a Option<Proc>>) -> Vec<u32> {
    procs.filter_map(|p| p.as_ref().map(Proc::pid)).collect()
}

/// The last lines of a log file, for error messages.
fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// GET `path` over plain HTTP/1.0; Ok when the status is 200.
pub async fn http_ok(addr: String, path: &str) -> Result<()> {
    http_get(&addr, path).await.map(drop)
}

/// GET `path` over plain HTTP/1.0 (the server closes the connection after
/// the body, so no chunked encoding); the body when the status is 200.
pub async fn http_get(addr: &str, path: &str) -> Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr))
        .await??;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await??;
    let head = String::from_utf8_lossy(&buf[..buf.len().min(64)]).to_string();
    if !(head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200")) {
        bail!("{path}: {head}")
    }
    let body = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(&buf[..0], |at| &buf[at + 4..]);
    Ok(String::from_utf8_lossy(body).into_owned())
}
