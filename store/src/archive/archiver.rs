//! A member's archiver: a task that writes the member's events to segments
//! as they age (or pile up), from one pinned RocksDB view per segment, then
//! lets the state machine drop them. Its position is the `to` of the last
//! segment or gap in the index, so a member that restarts resumes where it
//! stopped, without gaps or duplicates.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use rocksdb::{IteratorMode, ReadOptions, WriteBatch};
use tokio::sync::Notify;

use super::segment::{SegmentHeader, SegmentWriter};
use super::{ArchiveConfig, Entry};
use crate::LogId;
use crate::codec::{self, store_meta};
use crate::db::{CF_EVENTS, CF_STORE_META, Db};
use crate::error::StoreError;
use crate::member::Member;
use crate::{NodeId, state_machine::AppliedState};

/// The archive's progress, shared with the state machine (which never
/// physically drops events above `floor`) and the metrics.
#[derive(Debug)]
pub struct ArchiveProgress {
    /// Every event up to this revision is archived (or a recorded gap);
    /// `u64::MAX` when the member does not archive.
    pub floor: AtomicU64,
    pub segments: AtomicU64,
    pub gaps: AtomicU64,
    pub failures: AtomicU64,
}

impl ArchiveProgress {
    pub fn disabled() -> Arc<ArchiveProgress> {
        Arc::new(ArchiveProgress {
            floor: AtomicU64::new(u64::MAX),
            segments: AtomicU64::new(0),
            gaps: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        })
    }

    pub fn archived(&self) -> Option<u64> {
        Some(self.floor.load(Ordering::Acquire)).filter(|f| *f != u64::MAX)
    }
}

/// Open the archive before Raft starts: the floor the state machine must
/// respect from its first apply on. An empty archive starts where the
/// member's events start (its deleted-through mark), without a gap.
pub(crate) fn prepare(config: &ArchiveConfig, db: &Db) -> Result<(Vec<Entry>, u64), StoreError> {
    let entries = super::recover(&config.dir)?;
    let position = match entries.last() {
        Some(e) => e.range().1,
        None => deleted_through(db)?,
    };
    Ok((entries, position))
}

fn deleted_through(db: &Db) -> Result<u64, StoreError> {
    Ok(db
        .get_decoded::<u64>(CF_STORE_META, store_meta::EVENTS_DELETED)?
        .unwrap_or(0))
}

struct Archiver {
    config: ArchiveConfig,
    member: NodeId,
    entries: Vec<Entry>,
    position: u64,
}

pub(crate) async fn archive_loop(
    member: Weak<Member>,
    stop: Arc<Notify>,
    config: ArchiveConfig,
    entries: Vec<Entry>,
    position: u64,
    progress: Arc<ArchiveProgress>,
) {
    let Some(id) = member.upgrade().map(|m| m.id()) else {
        return;
    };
    let mut a = Some(Archiver {
        member: id,
        config: config.clone(),
        entries,
        position,
    });
    loop {
        tokio::select! {
            _ = stop.notified() => return,
            _ = tokio::time::sleep(config.interval) => {}
        }
        let Some(m) = member.upgrade() else { return };
        let Some(db) = m.db_handle().upgrade() else {
            return;
        };
        drop(m);
        let mut state = a.take().expect("the archiver is back after each step");
        let progress2 = progress.clone();
        let joined = tokio::task::spawn_blocking(move || {
            let r = state.step(&db, &progress2);
            (state, r)
        })
        .await;
        match joined {
            Ok((state, r)) => {
                if let Err(e) = r {
                    progress.failures.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(error = %e, dir = %state.config.dir.display(), "archiving failed; retrying");
                }
                a = Some(state);
            }
            Err(e) => {
                tracing::error!(error = %e, "the archiver task panicked; archiving stopped");
                return;
            }
        }
    }
}

fn decode(v: &[u8], rev: u64) -> Result<crate::Event, StoreError> {
    codec::decode_event(v).map_err(|detail| StoreError::Corrupt {
        cf: CF_EVENTS,
        key: format!("{rev}"),
        detail,
    })
}

impl Archiver {
    /// Write at most one segment; drop what is archived and compacted.
    fn step(&mut self, db: &Db, progress: &ArchiveProgress) -> Result<(), StoreError> {
        let snap = db.db.snapshot();
        let meta = |key: &'static [u8]| -> Result<Option<u64>, StoreError> {
            snap.get_cf(db.cf(CF_STORE_META), key)
                .map_err(|source| StoreError::Io {
                    step: "reading store meta for the archive",
                    source,
                })?
                .map(|v| {
                    codec::decode::<u64>(&v).map_err(|detail| StoreError::Corrupt {
                        cf: CF_STORE_META,
                        key: String::from_utf8_lossy(key).into_owned(),
                        detail,
                    })
                })
                .transpose()
        };
        let applied: Option<LogId> = snap
            .get_cf(db.cf(CF_STORE_META), store_meta::APPLIED)
            .map_err(|source| StoreError::Io {
                step: "reading store meta for the archive",
                source,
            })?
            .and_then(|v| codec::decode::<Option<LogId>>(&v).ok())
            .flatten();
        let revision =
            applied.map(|l| l.index).unwrap_or(0) + meta(store_meta::REVISION_OFFSET)?.unwrap_or(0);
        let deleted = meta(store_meta::EVENTS_DELETED)?.unwrap_or(0);
        if deleted > self.position {
            let reason = "the member's events of these revisions were deleted before they \
                          were archived (a snapshot install, or archiving was off)";
            tracing::error!(
                from = self.position + 1,
                to = deleted,
                "gap in the event archive: {reason}"
            );
            let gap = Entry::Gap {
                from: self.position,
                to: deleted,
                reason: format!("{reason}; member {}", self.member),
            };
            self.record(|entries| entries.push(gap))?;
            self.position = deleted;
            progress.gaps.fetch_add(1, Ordering::Relaxed);
            progress.floor.store(deleted, Ordering::Release);
        }
        // What waits: how many long-class events, how old the first event,
        // where a full segment would end (on a revision boundary).
        let start = codec::event_key(self.position + 1, 0);
        let mut count = 0u64;
        let mut first_ms = None;
        let mut end = revision;
        {
            let mut ro = ReadOptions::default();
            ro.set_iterate_lower_bound(start.to_vec());
            ro.fill_cache(false);
            for item in snap.iterator_cf_opt(db.cf(CF_EVENTS), ro, IteratorMode::Start) {
                let (k, v) = item.map_err(|source| StoreError::Io {
                    step: "reading events to archive",
                    source,
                })?;
                let rev = codec::parse_event_key(&k).map_or(0, |(r, _)| r);
                if rev > revision || (count >= self.config.segment_events && rev != end) {
                    break;
                }
                let event = decode(&v, rev)?;
                first_ms.get_or_insert(event.at_ms);
                if !self.brief(&event.key) {
                    count += 1;
                    end = rev;
                }
            }
        }
        let full = count >= self.config.segment_events;
        let Some(first_ms) = first_ms else {
            return Ok(());
        };
        let age = crate::command::now_ms().saturating_sub(first_ms);
        if !full && age < self.config.max_delay.as_millis() as u64 {
            return Ok(());
        }
        if count == 0 {
            // Only brief keys changed: covered, with no segment to write.
            let position = self.position;
            self.record(|entries| match entries.last_mut() {
                Some(Entry::Quiet { to, .. }) if *to == position => *to = revision,
                _ => entries.push(Entry::Quiet {
                    from: position,
                    to: revision,
                }),
            })?;
            drop(snap);
            return self.advance(db, revision, progress);
        }
        let to = if full { end } else { revision };
        let mut w = SegmentWriter::create(
            &self.config.dir,
            SegmentHeader {
                from: self.position,
                to,
                member: self.member,
                created_ms: crate::command::now_ms(),
            },
        )?;
        let mut ro = ReadOptions::default();
        ro.set_iterate_lower_bound(start.to_vec());
        ro.set_iterate_upper_bound(codec::event_key(to + 1, 0).to_vec());
        ro.fill_cache(false);
        for item in snap.iterator_cf_opt(db.cf(CF_EVENTS), ro, IteratorMode::Start) {
            let (k, v) = item.map_err(|source| StoreError::Io {
                step: "reading events to archive",
                source,
            })?;
            let rev = codec::parse_event_key(&k).map_or(0, |(r, _)| r);
            let event = decode(&v, rev)?;
            if !self.brief(&event.key) {
                w.push(&k, &v, rev, event.at_ms)?;
            }
        }
        drop(snap);
        let info = w.finish()?;
        tracing::debug!(
            from = info.from,
            to = info.to,
            events = info.events,
            "archived a segment"
        );
        let file = self.config.dir.join(&info.file);
        if let Err(e) = self.record(|entries| entries.push(Entry::Segment(info))) {
            // Named but not listed: the retried step writes it again (with
            // what arrived meanwhile), so this one must not linger beside it.
            let _ = std::fs::remove_file(&file);
            return Err(e);
        }
        progress.segments.fetch_add(1, Ordering::Relaxed);
        self.advance(db, to, progress)
    }

    /// Change the entries and rewrite the index; if the index cannot be
    /// written the entries stay as they were, so the retried step starts
    /// from what the index says (no entry twice, no checksum of a segment
    /// written again).
    fn record(&mut self, change: impl FnOnce(&mut Vec<Entry>)) -> Result<(), StoreError> {
        let (len, last) = (self.entries.len(), self.entries.last().cloned());
        change(&mut self.entries);
        if let Err(e) = super::write_index(&self.config.dir, &self.entries) {
            self.entries.truncate(len);
            if let (Some(slot), Some(last)) = (self.entries.last_mut(), last) {
                *slot = last;
            }
            return Err(e);
        }
        Ok(())
    }

    fn brief(&self, key: &str) -> bool {
        self.config
            .brief
            .iter()
            .any(|p| key.starts_with(p.as_str()))
    }

    /// Everything up to `to` is archived: let compaction drop it, and drop
    /// what is both archived and compacted already.
    fn advance(&mut self, db: &Db, to: u64, progress: &ArchiveProgress) -> Result<(), StoreError> {
        self.position = to;
        progress.floor.store(to, Ordering::Release);
        let compacted = AppliedState::load(db)?.compacted;
        let drop_to = compacted.min(to);
        if drop_to > 0 {
            let mut batch = WriteBatch::default();
            batch.delete_range_cf(
                db.cf(CF_EVENTS),
                codec::event_key(0, 0),
                codec::event_key(drop_to + 1, 0),
            );
            db.db.write(batch).map_err(|source| StoreError::Io {
                step: "dropping archived events",
                source,
            })?;
        }
        Ok(())
    }
}
