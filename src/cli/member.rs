//! `keel member status|add|remove`: cluster administration through any
//! member's admin service.

use anyhow::{Context, Result};
use clap::Subcommand;
use keel_proto::member as pb;

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

pub async fn run(addr: String, action: MemberAction) -> Result<()> {
    let mut client = pb::admin_client::AdminClient::connect(format!("http://{addr}"))
        .await
        .with_context(|| format!("connecting to member at {addr}"))?;
    match action {
        MemberAction::Status => {
            let s = client.status(pb::StatusRequest {}).await?.into_inner();
            println!("member:    {} ({})", s.id, s.state);
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
