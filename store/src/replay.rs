//! The state at a past revision, read offline from a data directory plus
//! an event archive (`keel replay`): the directory's current objects with
//! every change after the revision undone from each change's previous
//! value, the changes read from the archive up to its end and from the
//! directory's own events after it. Nothing is written.

use std::collections::BTreeMap;
use std::path::Path;

use crate::codec::store_meta;
use crate::db::{CF_OBJECTS, CF_STORE_META, Db};
use crate::error::StoreError;
use crate::state_machine::AppliedState;
use crate::{KeyValue, codec, read};

/// What [`state_at`] read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplayedState {
    /// The revision of the state visited.
    pub revision: u64,
    /// The directory's own revision and compacted revision.
    pub current: u64,
    pub compacted: u64,
    /// Changes after `revision` undone.
    pub undone: u64,
}

/// Visit every object (in key order) as it was at revision `to` (default:
/// the directory's current revision). Changes after `to` are undone from the
/// directory's events; below its compacted revision `archive` supplies them.
pub fn state_at(
    data_dir: &Path,
    archive: Option<&Path>,
    to: Option<u64>,
    mut visit: impl FnMut(&KeyValue) -> Result<(), StoreError>,
) -> Result<ReplayedState, StoreError> {
    let db = Db::open_read_only(data_dir)?;
    let state = AppliedState::load(&db)?;
    let current = state.revision();
    let revision = to.unwrap_or(current);
    if revision > current {
        return Err(StoreError::FutureRevision {
            requested: revision,
            current,
        });
    }
    // key → its value at `revision` (None: absent), for every key changed
    // after it: the previous value of its first change after it.
    let mut before: BTreeMap<String, Option<KeyValue>> = BTreeMap::new();
    let mut undone = 0u64;
    let mut undo = |e: crate::Event| {
        undone += 1;
        before.entry(e.key).or_insert(e.prev);
    };
    let mut from_dir = revision;
    if revision < state.compacted {
        let Some(archive) = archive else {
            return Err(StoreError::Compacted {
                requested: revision,
                compacted: state.compacted,
            });
        };
        let entries = crate::archive::open(archive)?;
        let end = crate::archive::span(&entries)
            .map_or(revision, |(_, to)| to)
            .min(current);
        let deleted = db
            .get_decoded::<u64>(CF_STORE_META, store_meta::EVENTS_DELETED)?
            .unwrap_or(0);
        if end < deleted {
            return Err(StoreError::Archive(format!(
                "revisions {} to {deleted} are neither in the archive at {} (it ends at {end}) \
                 nor in {}",
                end + 1,
                archive.display(),
                data_dir.display()
            )));
        }
        if end > revision {
            crate::archive::read_range(archive, revision, end, |e| {
                undo(e);
                Ok(())
            })?;
        }
        from_dir = end.max(revision);
    }
    read::scan_events_from(&db, from_dir + 1, "reading events to undo", |e| {
        if e.revision > current {
            return Ok(false);
        }
        undo(e.decode()?);
        Ok(true)
    })?;
    // A merge of the objects (in key order) with the undone keys.
    let mut pending = before.into_iter().peekable();
    let emit_before = |upto: Option<&str>,
                       pending: &mut std::iter::Peekable<
        std::collections::btree_map::IntoIter<String, Option<KeyValue>>,
    >,
                       visit: &mut dyn FnMut(&KeyValue) -> Result<(), StoreError>|
     -> Result<(), StoreError> {
        while let Some((k, _)) = pending.peek() {
            if upto.is_some_and(|u| k.as_str() >= u) {
                break;
            }
            let (_, v) = pending.next().expect("peeked");
            if let Some(kv) = v {
                visit(&kv)?;
            }
        }
        Ok(())
    };
    for item in db
        .db
        .iterator_cf(db.cf(CF_OBJECTS), rocksdb::IteratorMode::Start)
    {
        let (k, v) = item.map_err(|source| StoreError::Io {
            step: "reading objects to replay",
            source,
        })?;
        let key = String::from_utf8_lossy(&k).into_owned();
        emit_before(Some(&key), &mut pending, &mut visit)?;
        if pending.peek().is_some_and(|(pk, _)| *pk == key) {
            let (_, was) = pending.next().expect("peeked");
            if let Some(kv) = was {
                visit(&kv)?;
            }
            continue;
        }
        let kv: KeyValue = codec::decode(&v).map_err(|detail| StoreError::Corrupt {
            cf: CF_OBJECTS,
            key: key.clone(),
            detail,
        })?;
        visit(&kv)?;
    }
    emit_before(None, &mut pending, &mut visit)?;
    Ok(ReplayedState {
        revision,
        current,
        compacted: state.compacted,
        undone,
    })
}
