//! `keel kv`: reads, writes and watches keys through any member's `Kv`
//! service (the store's client API).

use anyhow::{Result, bail};
use clap::Subcommand;
use keel_proto::member as pb;

#[derive(Subcommand)]
pub enum KvAction {
    /// Create a key; fails if it exists.
    Create { key: String, value: String },
    /// Replace a key's value; fails if it does not exist (or was modified since `--if-mod-revision`).
    Update {
        key: String,
        value: String,
        #[arg(long)]
        if_mod_revision: Option<u64>,
    },
    /// Delete a key.
    Delete {
        key: String,
        #[arg(long)]
        if_mod_revision: Option<u64>,
    },
    /// Print one key.
    Get {
        key: String,
        /// Read this member's state without a read-index round trip.
        #[arg(long)]
        serializable: bool,
    },
    /// Print the keys under a prefix.
    List {
        #[arg(default_value = "")]
        prefix: String,
        /// Page size; every page is read at the first page's revision (0: one page).
        #[arg(long, default_value_t = 0)]
        limit: u32,
        /// Read at this past revision.
        #[arg(long, default_value_t = 0)]
        revision: u64,
        #[arg(long)]
        serializable: bool,
    },
    /// Print changes under a prefix as they happen (Ctrl-C stops).
    Watch {
        #[arg(default_value = "")]
        prefix: String,
        /// Replay changes after this revision first.
        #[arg(long)]
        after: Option<u64>,
    },
}

fn print_kv(kv: &pb::KeyValue) {
    println!(
        "{}\t{}\t{}",
        kv.key,
        kv.mod_revision,
        String::from_utf8_lossy(&kv.value)
    );
}

pub async fn run(peer: super::member::PeerClient, action: KvAction) -> Result<()> {
    use pb::operation::Kind;
    let mut client = pb::kv_client::KvClient::new(peer.channel().await?);
    let op = |kind: Kind, key: String, value: String, if_mod_revision: Option<u64>| pb::Operation {
        kind: kind as i32,
        key,
        value: value.into_bytes(),
        if_mod_revision,
        ..Default::default()
    };
    let txn = |o: pb::Operation| pb::TxnRequest { ops: vec![o] };
    match action {
        KvAction::Create { key, value } => {
            let r = client
                .txn(txn(op(Kind::Create, key, value, None)))
                .await?
                .into_inner();
            println!("created at revision {}", r.revision);
        }
        KvAction::Update {
            key,
            value,
            if_mod_revision,
        } => {
            let r = client
                .txn(txn(op(Kind::Update, key, value, if_mod_revision)))
                .await?
                .into_inner();
            println!("updated at revision {}", r.revision);
        }
        KvAction::Delete {
            key,
            if_mod_revision,
        } => {
            let r = client
                .txn(txn(op(Kind::Delete, key, String::new(), if_mod_revision)))
                .await?
                .into_inner();
            println!("deleted at revision {}", r.revision);
        }
        KvAction::Get { key, serializable } => {
            let r = client
                .range(pb::RangeRequest {
                    prefix: key.clone(),
                    serializable,
                    ..Default::default()
                })
                .await?
                .into_inner();
            match r.kvs.iter().find(|kv| kv.key == key) {
                Some(kv) => print_kv(kv),
                None => bail!("key {key} not found (revision {})", r.revision),
            }
        }
        KvAction::List {
            prefix,
            limit,
            revision,
            serializable,
        } => {
            let mut continue_token = String::new();
            loop {
                let r = client
                    .range(pb::RangeRequest {
                        prefix: prefix.clone(),
                        limit,
                        continue_token: continue_token.clone(),
                        revision,
                        serializable,
                    })
                    .await?
                    .into_inner();
                r.kvs.iter().for_each(print_kv);
                if r.continue_token.is_empty() {
                    break;
                }
                continue_token = r.continue_token;
            }
        }
        KvAction::Watch { prefix, after } => {
            let mut stream = client
                .watch(pb::WatchRequest {
                    prefix,
                    after_revision: after,
                })
                .await?
                .into_inner();
            while let Some(reply) = stream.message().await? {
                for e in &reply.events {
                    let kind = pb::event::Kind::try_from(e.kind)
                        .map(|k| k.as_str_name())
                        .unwrap_or("?");
                    let kv = e.kv.clone().unwrap_or_default();
                    // Last, so the columns before it keep their places.
                    let actor = e.actor.as_ref().map_or("-".to_string(), |a| {
                        format!("{} [{}]", a.user, a.groups.join(","))
                    });
                    // A reply may hold several revisions: each event's own.
                    println!(
                        "{}\t{kind}\t{}\t{}\t{actor}",
                        kv.mod_revision,
                        kv.key,
                        String::from_utf8_lossy(&kv.value)
                    );
                }
            }
        }
    }
    Ok(())
}
