//! Watches that start below the compacted revision and replay from the
//! archive (`WatchStart::AfterArchived`, the store's `Kv.Watch`): which
//! prefixes may, and reading the archived events of a prefix one segment
//! at a time, grouped by revision as the watch hub sends them.

use std::path::Path;

use super::{ArchiveConfig, Entry};
use crate::error::StoreError;
use crate::watch::WatchMessage;

/// Whether a watch on `prefix` can replay from the archive: none of the
/// keys under it is of the brief class (those are never archived, and a
/// replay without them would silently miss changes).
pub fn covers_prefix(config: &ArchiveConfig, prefix: &str) -> bool {
    !config
        .brief
        .iter()
        .any(|b| b.starts_with(prefix) || prefix.starts_with(b.as_str()))
}

/// Whether the archive at `dir` holds every long-class event after `after`.
pub fn starts_by(dir: &Path, after: u64) -> bool {
    super::open(dir)
        .ok()
        .and_then(|e| super::span(&e))
        .is_some_and(|(start, _)| start <= after)
}

/// The archived events under `prefix` in `(from, until]`, from the one
/// segment (or quiet stretch) holding revision `from + 1`: the messages and
/// the last revision covered (`from` when the archive does not reach it yet).
/// A recorded gap is `Compacted`: the watcher lists again.
pub fn read_page(
    dir: &Path,
    prefix: &str,
    from: u64,
    until: u64,
) -> Result<(Vec<WatchMessage>, u64), StoreError> {
    let entries = super::open(dir)?;
    let Some(entry) = entries
        .iter()
        .find(|e| e.range().0 <= from && from < e.range().1)
    else {
        return Ok((Vec::new(), from));
    };
    let covered = entry.range().1.min(until);
    let mut msgs: Vec<WatchMessage> = Vec::new();
    match entry {
        Entry::Quiet { .. } => {}
        Entry::Gap { to, .. } => {
            return Err(StoreError::Compacted {
                requested: from,
                compacted: *to,
            });
        }
        Entry::Segment(s) => {
            let mut crc = None;
            super::read_segment(
                &dir.join(&s.file),
                |ev| {
                    if ev.revision <= from || ev.revision > covered || !ev.key.starts_with(prefix) {
                        return Ok(());
                    }
                    WatchMessage::push_event(&mut msgs, ev);
                    Ok(())
                },
                &mut crc,
            )?;
        }
    }
    Ok((msgs, covered))
}
