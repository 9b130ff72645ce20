//! `keel up`: a local cluster of N `keel server` processes on loopback ports
//! counted from one base port, sharing one CA, and a kubeconfig with one
//! context per member.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use base64::Engine;
use keel_apiserver::pki;

/// Where member 1's Kubernetes API listens by default (Kubernetes' port).
pub const DEFAULT_BASE_PORT: u16 = 6443;
/// The peer ports start this far above the base: at the default base, on
/// 7001, the address `keel member` and `keel kv` try when given none.
const PEER_OFFSET: u16 = 558;
/// The health and metrics ports start this far above the base (7081 at the
/// default base), past the peer ports of any cluster `up` starts.
const HTTP_OFFSET: u16 = 638;
/// Peer ports run up to the health ports' start.
const MAX_MEMBERS: u64 = (HTTP_OFFSET - PEER_OFFSET) as u64;

#[derive(clap::Args)]
pub struct UpArgs {
    #[arg(long, default_value_t = 3)]
    pub members: u64,
    #[arg(long, default_value = "./keel-data")]
    pub data_dir: PathBuf,
    /// The first port. Member i (from 1) serves the Kubernetes API on
    /// base+i-1, the member protocol on base+558+i-1 and health and metrics
    /// on base+638+i-1 (at the default: 6443.., 7001.. and 7081..).
    #[arg(long, default_value_t = DEFAULT_BASE_PORT)]
    pub base_port: u16,
    /// Do not archive events (by default each member archives them to
    /// `<data-dir>/mN/archive`, docs/DR.md).
    #[arg(long)]
    pub no_archive: bool,
}

/// The loopback ports of member `i` (from 1).
struct Ports {
    api: u16,
    peer: u16,
    http: u16,
}

impl Ports {
    fn of(base: u16, i: u64) -> Ports {
        let at = |offset: u16| base + offset + (i - 1) as u16;
        Ports {
            api: at(0),
            peer: at(PEER_OFFSET),
            http: at(HTTP_OFFSET),
        }
    }
}

pub async fn run(args: UpArgs) -> Result<()> {
    let UpArgs {
        members,
        data_dir,
        base_port,
        no_archive,
    } = args;
    if base_port == 0 {
        bail!("--base-port must be positive");
    }
    if !(1..=MAX_MEMBERS).contains(&members) {
        bail!("--members must be between 1 and {MAX_MEMBERS}");
    }
    if u64::from(base_port) + u64::from(HTTP_OFFSET) + members - 1 > u64::from(u16::MAX) {
        bail!(
            "--base-port {base_port} is too high: the last member's health port would be past {}",
            u16::MAX
        );
    }
    let exe = std::env::current_exe()?;
    let ca_dir = data_dir.join("m1").join("pki");
    pki::Pki::load_or_create(&ca_dir, &pki::serving_names(&[]))
        .context("creating the cluster CA")?;
    let ports: Vec<Ports> = (1..=members).map(|i| Ports::of(base_port, i)).collect();
    let initial = ports
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{}=127.0.0.1:{}", i + 1, p.peer))
        .collect::<Vec<_>>()
        .join(",");
    let mut children = Vec::new();
    for (i, p) in (1..=members).zip(&ports) {
        let dir = data_dir.join(format!("m{i}"));
        let pki_dir = dir.join("pki");
        std::fs::create_dir_all(&pki_dir)?;
        if !pki_dir.join("ca.crt").exists() {
            let crt = std::fs::read(ca_dir.join("ca.crt"))?;
            pki::write_durable(&pki_dir.join("ca.crt"), &crt, 0o644)
                .with_context(|| format!("copying ca.crt to member {i}"))?;
        }
        if !pki_dir.join("ca.key").exists() {
            let key = std::fs::read(ca_dir.join("ca.key"))?;
            pki::write_private(&pki_dir.join("ca.key"), &key)
                .with_context(|| format!("copying ca.key to member {i}"))?;
        }
        let mut command = tokio::process::Command::new(&exe);
        command.args(["server", "--id", &i.to_string()]);
        if !no_archive {
            command.arg("--archive-dir").arg(dir.join("archive"));
        }
        let child = command
            .arg("--data-dir")
            .arg(&dir)
            .args(["--peer-addr", &format!("127.0.0.1:{}", p.peer)])
            .args(["--http-addr", &format!("127.0.0.1:{}", p.http)])
            .args(["--api-addr", &format!("127.0.0.1:{}", p.api)])
            .args(["--initial-members", &initial])
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting member {i}"))?;
        println!(
            "member {i}: api https://127.0.0.1:{}  peer 127.0.0.1:{}  health http://127.0.0.1:{}/readyz  data {}  pid {}",
            p.api,
            p.peer,
            p.http,
            dir.display(),
            child.id().unwrap_or(0)
        );
        children.push(child);
    }
    // Member 1 writes its kubeconfig once its API serves: the cluster is up.
    let m1 = data_dir.join("m1").join("kubeconfig");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !m1.exists() {
        if Instant::now() > deadline {
            bail!("member 1 did not write its kubeconfig");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let servers: Vec<String> = ports
        .iter()
        .map(|p| format!("https://127.0.0.1:{}", p.api))
        .collect();
    let kubeconfig = data_dir.join("kubeconfig");
    pki::write_private(
        &kubeconfig,
        cluster_kubeconfig(&ca_dir, &servers)?.as_bytes(),
    )?;
    println!(
        "kubeconfig: {} (kubectl --kubeconfig {} get ns; --context keel-m2 to go through member 2)",
        kubeconfig.display(),
        kubeconfig.display()
    );
    super::shutdown_signal().await;
    for c in &mut children {
        if let Some(pid) = c.id() {
            // SIGTERM: each member shuts down gracefully.
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
    }
    for mut c in children {
        let _ = c.wait().await;
    }
    Ok(())
}

/// A kubeconfig with a cluster and a context per member (`keel-m1`,
/// `keel-m2`, …; member 1's is current), all with the admin credentials of
/// `pki_dir`: every member's serving certificate comes from the same CA, so
/// when one member is down kubectl reaches another with `--context`.
fn cluster_kubeconfig(pki_dir: &Path, servers: &[String]) -> Result<String> {
    let b64 = |file: &str| -> Result<String> {
        let pem = std::fs::read(pki_dir.join(file))
            .with_context(|| format!("reading {}", pki_dir.join(file).display()))?;
        Ok(base64::engine::general_purpose::STANDARD.encode(pem))
    };
    let (ca, crt, key) = (b64("ca.crt")?, b64("admin.crt")?, b64("admin.key")?);
    let mut clusters = String::new();
    let mut contexts = String::new();
    for (i, server) in servers.iter().enumerate() {
        let name = format!("keel-m{}", i + 1);
        clusters.push_str(&format!(
            "- name: {name}\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\n"
        ));
        contexts.push_str(&format!(
            "- name: {name}\n  context:\n    cluster: {name}\n    user: admin\n    namespace: default\n"
        ));
    }
    Ok(format!(
        "apiVersion: v1\nkind: Config\nclusters:\n{clusters}users:\n- name: admin\n  user:\n    client-certificate-data: {crt}\n    client-key-data: {key}\ncontexts:\n{contexts}current-context: keel-m1\n"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_base_keeps_the_ports_of_earlier_versions() {
        let p = Ports::of(DEFAULT_BASE_PORT, 1);
        assert_eq!((p.api, p.peer, p.http), (6443, 7001, 7081));
        let p = Ports::of(DEFAULT_BASE_PORT, 3);
        assert_eq!((p.api, p.peer, p.http), (6445, 7003, 7083));
    }

    #[test]
    fn ports_of_different_members_never_collide() {
        let mut seen = std::collections::BTreeSet::new();
        for i in 1..=MAX_MEMBERS {
            let p = Ports::of(20000, i);
            for port in [p.api, p.peer, p.http] {
                assert!(seen.insert(port), "port {port} twice");
            }
        }
    }
}
