//! The backfill of a watch: the events of `(from, until]` under a prefix,
//! a page at a time, from the member's events or (for watches that may)
//! its event archive.

use rocksdb::{Direction, IteratorMode, ReadOptions};

use super::WatchMessage;
use crate::Event;
use crate::codec::{self, store_meta};
use crate::db::{CF_EVENTS, CF_STORE_META, Db};
use crate::error::StoreError;

/// See [`WatchStream::read_page`].
/// With `archive`, revisions the archive holds are read from it, and the
/// member's own events below the compacted revision count: only a snapshot
/// install (`store_meta::EVENTS_DELETED`) or the archive's own progress
/// drops them, and that progress is read after the view is taken, so
/// whatever the view lacks below it is in the archive.
pub(crate) fn read_events_page(
    db: &Db,
    prefix: &str,
    from: u64,
    until: u64,
    page: usize,
    archive: Option<&std::path::Path>,
) -> Result<(Vec<WatchMessage>, u64), StoreError> {
    let snap = db.db.snapshot();
    if let Some(dir) = archive {
        let end = crate::archive::open(dir)
            .ok()
            .and_then(|e| crate::archive::span(&e))
            .map_or(0, |(_, to)| to);
        if from < end {
            let (msgs, covered) = crate::archive::backfill::read_page(dir, prefix, from, until)?;
            if covered == from {
                return Err(StoreError::Compacted {
                    requested: from,
                    compacted: end,
                });
            }
            return Ok((msgs, covered));
        }
    }
    let bound = if archive.is_some() {
        store_meta::EVENTS_DELETED
    } else {
        store_meta::COMPACTED
    };
    let compacted =
        match snap
            .get_cf(db.cf(CF_STORE_META), bound)
            .map_err(|source| StoreError::Io {
                step: "reading the compacted revision",
                source,
            })? {
            Some(v) => codec::decode::<u64>(&v).map_err(|detail| StoreError::Corrupt {
                cf: CF_STORE_META,
                key: "compacted".into(),
                detail,
            })?,
            None => 0,
        };
    if from < compacted {
        return Err(StoreError::Compacted {
            requested: from,
            compacted,
        });
    }
    let mut ro = ReadOptions::default();
    ro.set_iterate_upper_bound(codec::event_key(until.saturating_add(1), 0).to_vec());
    let start = codec::event_key(from.saturating_add(1), 0);
    let iter = snap.iterator_cf_opt(
        db.cf(CF_EVENTS),
        ro,
        IteratorMode::From(&start, Direction::Forward),
    );
    let mut msgs: Vec<WatchMessage> = Vec::new();
    let mut covered = from;
    for (seen, item) in iter.enumerate() {
        let (k, v) = item.map_err(|source| StoreError::Io {
            step: "reading events",
            source,
        })?;
        let (rev, _) = codec::parse_event_key(&k).ok_or_else(|| StoreError::Corrupt {
            cf: CF_EVENTS,
            key: format!("{k:?}"),
            detail: "event key is not 12 bytes".into(),
        })?;
        if rev != covered && seen >= page {
            // Stop on a revision boundary; `covered` is complete.
            return Ok((msgs, covered));
        }
        covered = rev;
        let ev: Event = codec::decode_event(&v).map_err(|detail| StoreError::Corrupt {
            cf: CF_EVENTS,
            key: format!(
                "({rev},{})",
                codec::parse_event_key(&k).map(|p| p.1).unwrap_or(0)
            ),
            detail,
        })?;
        if !ev.key.starts_with(prefix) {
            continue;
        }
        WatchMessage::push_event(&mut msgs, ev);
    }
    Ok((msgs, until))
}
