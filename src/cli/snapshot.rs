//! `keel snapshot save|status`: a backup of a running cluster at one
//! revision, streamed from any member's admin service into a file (written
//! beside it, synced, read back and checked, then renamed into place), and a
//! summary of a backup file after every byte of it has been checked.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Subcommand;
use keel_proto::member as pb;
use keel_store::backup::{self, BackupHeader, Summary};
use keel_store::snapshot::format::SnapshotReader;

use super::member::PeerClient;
use super::progress::{Progress, Unit};

#[derive(Subcommand)]
pub enum SnapshotAction {
    /// Save a backup of the cluster's state at one revision into FILE,
    /// through the member at --addr (with an administrator's certificate).
    Save {
        file: PathBuf,
        #[command(flatten)]
        peer: PeerClient,
    },
    /// Check every byte of a backup file and print its revision, when and
    /// where it was taken, its objects by resource, its size and checksum.
    Status {
        file: PathBuf,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(action: SnapshotAction) -> Result<()> {
    match action {
        SnapshotAction::Save { file, peer } => save(&file, &peer).await,
        SnapshotAction::Status { file, json } => {
            let sum = check(&file)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&sum)?);
            } else {
                print_summary(&file, &sum);
            }
            Ok(())
        }
    }
}

/// Read and check the whole backup at `path`; an error names the file and,
/// when its header could be read, the revision it claims to hold.
pub fn check(path: &Path) -> Result<Summary> {
    let open = || File::open(path).with_context(|| format!("opening {}", path.display()));
    let claimed = SnapshotReader::<_, BackupHeader>::open(BufReader::new(open()?))
        .map(|r| r.header().revision)
        .ok();
    backup::summarize(BufReader::with_capacity(1 << 20, open()?), 3).with_context(
        || match claimed {
            Some(rev) => format!(
                "{} (a backup of revision {rev}, objects up to revision {rev}) is damaged",
                path.display()
            ),
            None => format!("{} is not a readable backup", path.display()),
        },
    )
}

async fn save(path: &Path, peer: &PeerClient) -> Result<()> {
    let mut client = pb::admin_client::AdminClient::new(peer.channel().await?)
        .max_decoding_message_size(keel_store::grpc::MAX_MESSAGE_BYTES);
    let name = path
        .file_name()
        .with_context(|| format!("{} names no file", path.display()))?;
    let mut part_name = name.to_os_string();
    part_name.push(".part");
    let part = path.with_file_name(part_name);
    let result = async {
        let mut stream = client.save(pb::SaveRequest {}).await?.into_inner();
        let file = File::create(&part).with_context(|| format!("creating {}", part.display()))?;
        let mut out = BufWriter::with_capacity(1 << 20, &file);
        let mut progress = Progress::new("receiving the backup", Unit::Bytes, None);
        let mut received = 0u64;
        while let Some(piece) = stream.message().await? {
            out.write_all(&piece.data)
                .with_context(|| format!("writing {}", part.display()))?;
            received += piece.data.len() as u64;
            progress.update(received);
        }
        progress.finish(received);
        out.flush()?;
        drop(out);
        file.sync_all()
            .with_context(|| format!("syncing {}", part.display()))?;
        // A stream that ended early, or a member that failed halfway, leaves
        // a file that does not verify: it never takes the name.
        let sum = check(&part)?;
        std::fs::rename(&part, path)
            .with_context(|| format!("renaming {} to {}", part.display(), path.display()))?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .with_context(|| format!("syncing {}", dir.display()))?;
        }
        Ok::<_, anyhow::Error>(sum)
    }
    .await;
    match result {
        Ok(sum) => {
            println!(
                "saved {}: revision {}, {} objects, {} bytes, crc32 {:#010x}",
                path.display(),
                sum.header.revision,
                sum.objects,
                sum.bytes,
                sum.crc32
            );
            Ok(())
        }
        Err(e) => {
            let _ = std::fs::remove_file(&part);
            Err(e)
        }
    }
}

/// Milliseconds since the epoch as RFC 3339 (UTC).
pub fn rfc3339(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| format!("{ms} ms after the epoch"))
}

fn print_summary(path: &Path, s: &Summary) {
    let h = &s.header;
    println!("file:       {}", path.display());
    println!("revision:   {}", h.revision);
    println!(
        "compacted:  {} (the source cluster's, when saved)",
        h.compacted
    );
    println!(
        "taken:      {} by member {} (keel {})",
        rfc3339(h.taken_at_ms),
        h.taken_by,
        h.keel_version
    );
    let members: Vec<String> = h
        .members
        .iter()
        .map(|(id, addr, voter)| format!("{id}={addr}{}", if *voter { "" } else { " (learner)" }))
        .collect();
    println!("members:    {}", members.join(","));
    println!("objects:    {}", s.objects);
    println!("size:       {} bytes", s.bytes);
    println!("crc32:      {:#010x} (verified)", s.crc32);
    println!("objects by resource:");
    for (prefix, c) in &s.by_prefix {
        let resource = prefix.strip_prefix("/registry/").unwrap_or(prefix);
        println!("  {resource:<40} {:>9} {:>12} bytes", c.objects, c.bytes);
    }
}
