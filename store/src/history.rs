//! Every change of one key a member knows: from its event archive (when it
//! archives, and the key is of the long class) and from its retained
//! events, oldest first, with the revisions it cannot account for named
//! (`keel history`, the API's `keel.dev` history endpoint).

use std::path::Path;

use crate::archive::{self, ArchiveConfig, Entry};
use crate::codec::store_meta;
use crate::db::{CF_STORE_META, Db};
use crate::error::StoreError;
use crate::state_machine::AppliedState;
use crate::{Event, read};

/// The changes of one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyHistory {
    pub key: String,
    /// Oldest first; each with its revision, time, actor, value and the
    /// value before it.
    pub changes: Vec<Event>,
    /// Every change from this revision on is listed (except in `gaps`).
    pub from: u64,
    /// The member's revision when it was read.
    pub revision: u64,
    /// Revisions `(from, to]` whose changes are unknown here, and why.
    pub gaps: Vec<(u64, u64, String)>,
}

/// The history of `key` in `db` and `archive`.
pub fn history(
    db: &Db,
    archive: Option<&ArchiveConfig>,
    key: &str,
) -> Result<KeyHistory, StoreError> {
    let state = AppliedState::load(db)?;
    let mut changes = Vec::new();
    let mut gaps = Vec::new();
    let archive = archive.filter(|a| !a.brief.iter().any(|p| key.starts_with(p.as_str())));
    let (from, scan_from) = match archive {
        Some(a) => {
            let entries = archive::open(&a.dir)?;
            match archive::span(&entries) {
                Some((start, end)) => {
                    for e in &entries {
                        match e {
                            Entry::Segment(s) => {
                                let mut crc = None;
                                archive::read_segment(
                                    &a.dir.join(&s.file),
                                    |ev| {
                                        if ev.key == key {
                                            changes.push(ev);
                                        }
                                        Ok(())
                                    },
                                    &mut crc,
                                )?;
                            }
                            Entry::Gap { from, to, reason } => {
                                gaps.push((*from, *to, reason.clone()))
                            }
                            Entry::Quiet { .. } => {}
                        }
                    }
                    let deleted = db
                        .get_decoded::<u64>(CF_STORE_META, store_meta::EVENTS_DELETED)?
                        .unwrap_or(0);
                    if deleted > end {
                        gaps.push((
                            end,
                            deleted,
                            "deleted from the member before they were archived".into(),
                        ));
                    }
                    (start + 1, end.max(deleted) + 1)
                }
                None => (state.compacted + 1, state.compacted + 1),
            }
        }
        None => (state.compacted + 1, state.compacted + 1),
    };
    let current = state.revision();
    read::scan_events_from(db, scan_from, "reading a key's history", |e| {
        if e.revision > current {
            return Ok(false);
        }
        let ev = e.decode()?;
        if ev.key == key {
            changes.push(ev);
        }
        Ok(true)
    })?;
    Ok(KeyHistory {
        key: key.to_string(),
        changes,
        from,
        revision: current,
        gaps,
    })
}

/// [`history`] of a data directory read offline.
pub fn history_offline(
    data_dir: &Path,
    archive: Option<&ArchiveConfig>,
    key: &str,
) -> Result<KeyHistory, StoreError> {
    let db = Db::open_read_only(data_dir)?;
    history(&db, archive, key)
}
