//! `keel certs member|node|user`: certificates (and, for nodes and users,
//! kubeconfigs) issued from the cluster CA, written as files whose paths are
//! printed.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Subcommand;
use keel_apiserver::pki;

#[derive(clap::Args)]
pub struct CertsArgs {
    /// The directory holding the CA (`ca.crt`, `ca.key`): a `--ca-dir`, or a
    /// member's `<data-dir>/pki`. Default: `./keel-data/pki`, else (a `keel
    /// up` directory) `./keel-data/m1/pki`.
    #[arg(long)]
    pub ca_dir: Option<PathBuf>,
    /// Where the files go (created if missing).
    #[arg(long, default_value = ".")]
    pub out: PathBuf,
    /// The API server the kubeconfigs point at.
    #[arg(long, default_value = "https://127.0.0.1:6443")]
    pub server: String,
    #[command(subcommand)]
    pub kind: CertKind,
}

#[derive(Subcommand)]
pub enum CertKind {
    /// A member certificate (CN keel-member-<id>, O system:keel-members) for
    /// the member port, naming the peer address's host.
    Member {
        #[arg(long)]
        id: u64,
        #[arg(long)]
        peer_addr: String,
    },
    /// A node's client certificate (CN system:node:<name>, O system:nodes)
    /// and kubeconfig.
    Node {
        #[arg(long)]
        name: String,
    },
    /// A user's client certificate (CN <name>, one O per --group) and
    /// kubeconfig. `--group system:masters` makes an administrator.
    User {
        #[arg(long)]
        name: String,
        #[arg(long = "group")]
        groups: Vec<String>,
    },
}

pub fn run(args: CertsArgs) -> Result<()> {
    let ca_dir = args.ca_dir.clone().unwrap_or_else(|| {
        let single = PathBuf::from("./keel-data/pki");
        if single.join("ca.key").exists() {
            single
        } else {
            PathBuf::from("./keel-data/m1/pki")
        }
    });
    let ca = pki::Ca::load(&ca_dir).with_context(|| format!("the CA in {}", ca_dir.display()))?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    match &args.kind {
        CertKind::Member { id, peer_addr } => {
            if *id == 0 {
                anyhow::bail!("--id must be greater than 0");
            }
            let host = peer_addr
                .rsplit_once(':')
                .map_or(peer_addr.as_str(), |(h, _)| h)
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let issued = ca.issue_member(*id, &pki::serving_names(&[host]))?;
            write_pair(&args.out, &format!("member-{id}"), &issued)?;
        }
        CertKind::Node { name } => {
            let issued = ca.issue_node(name)?;
            let user = format!("system:node:{name}");
            write_pair(&args.out, &format!("node-{name}"), &issued)?;
            write_kubeconfig(&args, &ca, &format!("node-{name}"), &user, &issued)?;
        }
        CertKind::User { name, groups } => {
            let issued = ca.issue_user(name, groups)?;
            write_pair(&args.out, name, &issued)?;
            write_kubeconfig(&args, &ca, name, name, &issued)?;
        }
    }
    Ok(())
}

/// `<stem>.crt` (0644) and `<stem>.key` (0600) under `out`.
fn write_pair(out: &Path, stem: &str, issued: &pki::Issued) -> Result<()> {
    let crt = out.join(format!("{stem}.crt"));
    let key = out.join(format!("{stem}.key"));
    pki::write_durable(&crt, issued.cert_pem.as_bytes(), 0o644)?;
    pki::write_private(&key, issued.key_pem.as_bytes())?;
    let (cn, groups) = pki::subject(&issued.cert_pem)?;
    println!(
        "certificate: {} (CN={cn}, O={})",
        crt.display(),
        groups.join(",")
    );
    println!("key:         {}", key.display());
    Ok(())
}

/// `<stem>.kubeconfig` (0600: it holds the key) under `out`.
fn write_kubeconfig(
    args: &CertsArgs,
    ca: &pki::Ca,
    stem: &str,
    user: &str,
    issued: &pki::Issued,
) -> Result<()> {
    let path = args.out.join(format!("{stem}.kubeconfig"));
    let text = pki::kubeconfig(&args.server, &ca.cert_pem, user, issued);
    pki::write_private(&path, text.as_bytes())?;
    println!("kubeconfig:  {} (server {})", path.display(), args.server);
    Ok(())
}
