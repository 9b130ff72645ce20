//! `keel member status|add|remove`: cluster administration through any
//! member's admin service; also how `keel member` and `keel kv` reach the
//! member port with an administrator's certificate ([`PeerClient`]).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Subcommand;
use keel_proto::member as pb;
use keel_store::ClientTls;
use tonic::transport::Channel;

/// Where a client of the member port connects and what it presents: the
/// member port takes mutual TLS only, and `Kv` and `Admin` calls need an
/// administrator's certificate (group `system:masters`).
#[derive(clap::Args)]
pub struct PeerClient {
    /// Peer address of any member.
    #[arg(long, default_value = "127.0.0.1:7001")]
    pub addr: String,
    /// A member's data directory: the CA and administrator certificate are
    /// read from its `pki/` (`ca.crt`, `admin.crt`, `admin.key`), or, for a
    /// `keel up` directory, from member 1's (`m1/pki/`).
    #[arg(long, default_value = "./keel-data")]
    pub data_dir: PathBuf,
    /// The CA certificate to trust the member by (overrides the data dir's).
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// The client certificate to present (overrides the data dir's admin.crt).
    #[arg(long)]
    pub cert: Option<PathBuf>,
    /// The client certificate's key (overrides the data dir's admin.key).
    #[arg(long)]
    pub key: Option<PathBuf>,
}

impl PeerClient {
    /// The TLS material the flags name.
    pub fn tls(&self) -> Result<ClientTls> {
        let single = self.data_dir.join("pki");
        let pki = if single.join("admin.crt").exists() {
            single
        } else {
            self.data_dir.join("m1").join("pki")
        };
        let pick = |given: &Option<PathBuf>, file: &str| given.clone().unwrap_or(pki.join(file));
        ClientTls::from_files(
            &pick(&self.ca, "ca.crt"),
            &pick(&self.cert, "admin.crt"),
            &pick(&self.key, "admin.key"),
        )
        .context("reading the client certificate for the member port (see --data-dir, --ca, --cert, --key)")
    }

    /// A connected channel to the member at `--addr`.
    pub async fn channel(&self) -> Result<Channel> {
        let addr = &self.addr;
        self.tls()?
            .endpoint(addr)
            .with_context(|| format!("member address {addr}"))?
            .connect()
            .await
            .with_context(|| format!("connecting to member at {addr}"))
    }
}

#[derive(Subcommand)]
pub enum MemberAction {
    /// Leader, term, applied index and members.
    Status,
    /// Add a member (learner first, voter once caught up).
    Add {
        #[arg(long)]
        id: u64,
        #[arg(long)]
        peer_addr: String,
    },
    /// Remove a member.
    Remove {
        #[arg(long)]
        id: u64,
    },
}

pub async fn run(peer: PeerClient, action: MemberAction) -> Result<()> {
    let mut client = pb::admin_client::AdminClient::new(peer.channel().await?);
    match action {
        MemberAction::Status => {
            let s = client.status(pb::StatusRequest {}).await?.into_inner();
            println!("member:    {} ({})", s.id, s.state);
            println!(
                "cluster:   {}",
                if s.cluster_id.is_empty() {
                    "unknown (no id yet)"
                } else {
                    &s.cluster_id
                }
            );
            println!(
                "leader:    {}",
                if s.leader == 0 {
                    "none".to_string()
                } else {
                    s.leader.to_string()
                }
            );
            println!("term:      {}", s.term);
            println!("applied:   {}", s.applied_index);
            println!("last log:  {}", s.last_log_index);
            println!("compacted: {}", s.compacted_revision);
            println!("members:");
            print_members(&s.members);
        }
        MemberAction::Add { id, peer_addr } => {
            let r = client
                .add_member(pb::AddMemberRequest {
                    id,
                    addr: peer_addr,
                })
                .await?
                .into_inner();
            println!("member {id} added; members:");
            print_members(&r.members);
        }
        MemberAction::Remove { id } => {
            let r = client
                .remove_member(pb::RemoveMemberRequest { id })
                .await?
                .into_inner();
            println!("member {id} removed; members:");
            print_members(&r.members);
        }
    }
    Ok(())
}

fn print_members(members: &[pb::Member]) {
    for m in members {
        println!(
            "  {:>4}  {:<22} {}",
            m.id,
            m.addr,
            if m.voter { "voter" } else { "learner" }
        );
    }
}
