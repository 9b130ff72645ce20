//! `keel archive status|log`: what an event archive (a member's
//! --archive-dir) holds, read offline: its segments, gaps and span, and the
//! archived changes of a key or prefix with their revision, time, operation
//! and user (how to find the revision to restore to, docs/DR.md).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Subcommand;
use keel_store::EventKind;
use keel_store::archive::{self, Entry};

use super::snapshot::rfc3339;

#[derive(Subcommand)]
pub enum ArchiveAction {
    /// Check the index against the segment files and print the revisions
    /// covered, every gap, and the segments' totals.
    Status { dir: PathBuf },
    /// The archived changes of keys under a prefix, oldest first (each
    /// segment read is checked whole).
    Log {
        dir: PathBuf,
        /// A store key prefix, e.g. /registry/core/namespaces/team
        #[arg(long, default_value = "/")]
        prefix: String,
        /// Only changes after this revision.
        #[arg(long)]
        after: Option<u64>,
        /// Only changes up to this revision.
        #[arg(long)]
        through: Option<u64>,
    },
}

pub fn run(action: ArchiveAction) -> Result<()> {
    match action {
        ArchiveAction::Status { dir } => {
            let entries =
                archive::open(&dir).with_context(|| format!("reading {}", dir.display()))?;
            let Some((from, to)) = archive::span(&entries) else {
                println!("{}: empty", dir.display());
                return Ok(());
            };
            let (mut segments, mut events, mut bytes) = (0u64, 0u64, 0u64);
            for e in &entries {
                match e {
                    Entry::Segment(s) => {
                        segments += 1;
                        events += s.events;
                        bytes += s.bytes;
                    }
                    Entry::Gap { from, to, reason } => {
                        println!("gap:      revisions {} to {to}: {reason}", from + 1)
                    }
                    Entry::Quiet { .. } => {}
                }
            }
            println!("archive:  {}", dir.display());
            println!("covers:   revisions {} to {to}", from + 1);
            println!("segments: {segments} ({events} events, {bytes} bytes)");
            Ok(())
        }
        ArchiveAction::Log {
            dir,
            prefix,
            after,
            through,
        } => {
            let entries =
                archive::open(&dir).with_context(|| format!("reading {}", dir.display()))?;
            let Some((start, end)) = archive::span(&entries) else {
                return Ok(());
            };
            let after = after.unwrap_or(start).max(start);
            let through = through.unwrap_or(end).min(end);
            println!(
                "{:<12} {:<24} {:<9} {:<24} KEY",
                "REVISION", "TIME", "CHANGE", "USER"
            );
            archive::read_range(&dir, after, through, |e| {
                if !e.key.starts_with(&prefix) {
                    return Ok(());
                }
                let change = match e.kind {
                    EventKind::Added => "created",
                    EventKind::Modified => "updated",
                    EventKind::Deleted => "deleted",
                };
                let user = e.actor.as_ref().map_or("-".to_string(), |a| a.user.clone());
                println!(
                    "{:<12} {:<24} {:<9} {:<24} {}",
                    e.revision,
                    rfc3339(e.at_ms),
                    change,
                    user,
                    e.key
                );
                Ok(())
            })
            .with_context(|| format!("reading {}", dir.display()))?;
            Ok(())
        }
    }
}
