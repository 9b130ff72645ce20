//! The event archive: before events leave a member's retention window they
//! are written to an archive directory of immutable, checksummed, LZ4
//! compressed segment files, each covering a revision range, listed in an
//! index. With a backup (`crate::backup`) at revision `B` and the segments
//! after it, the state at any later archived revision can be rebuilt
//! (`keel restore --archive --to-revision/--to-time`).
//!
//! Every member archives its own events (they are the same on every member)
//! on a task of its own ([`archiver`]), so archiving never blocks apply. The
//! state machine never deletes events the archive has not taken: a
//! compaction moves the compacted revision at once (reads and watches below
//! it get `Compacted`) but drops only the events up to the archive's
//! position (its *floor*); the archiver drops the rest once it has written
//! them. Events a member never had (it installed a snapshot) or lost while
//! archiving was off are recorded in the index as a gap, and reading across
//! a gap fails, naming it: never skipped silently.
//!
//! ```text
//! <archive-dir>/
//!   00000000000000000000-00000000000000001234.seg   events of revisions 1..=1234
//!   00000000000000001234-00000000000000005000.seg   events of revisions 1235..=5000
//!   index.tsv   one line per segment, gap or quiet stretch (only brief-class keys
//!               changed), rewritten (atomically) after each
//! ```

pub(crate) mod archiver;
pub mod backfill;
mod prefetch;
pub mod segment;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use segment::{
    Archived, SegmentHeader, SegmentInfo, read_segment, read_segment_as, segment_name,
};

pub use crate::codec::EventHead;

use crate::Event;
use crate::error::StoreError;

/// Where and how often a member archives.
#[derive(Clone, Debug)]
pub struct ArchiveConfig {
    pub dir: PathBuf,
    /// A segment is written once its oldest event is this old: the most a
    /// point-in-time restore can miss of what the cluster acknowledged.
    pub max_delay: Duration,
    /// ... or once this many events wait (a segment ends on a revision).
    pub segment_events: u64,
    /// How often the archiver looks.
    pub interval: Duration,
    /// Retention classes: keys under these prefixes are *brief* (kept in
    /// the member's retention window only, never archived); every other key
    /// is *long* (archived). By default leases and events, whose renewals
    /// and reports would otherwise fill the archive.
    pub brief: Vec<String>,
}

/// The default brief class: Lease renewals and Events.
pub const DEFAULT_BRIEF: [&str; 3] = [
    "/registry/coordination.k8s.io/leases/",
    "/registry/core/events/",
    "/registry/events.k8s.io/events/",
];

impl ArchiveConfig {
    pub fn new(dir: impl Into<PathBuf>) -> ArchiveConfig {
        ArchiveConfig {
            dir: dir.into(),
            max_delay: Duration::from_secs(10),
            segment_events: 100_000,
            interval: Duration::from_millis(500),
            brief: DEFAULT_BRIEF.iter().map(|p| p.to_string()).collect(),
        }
    }
}

/// One line of the index.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Entry {
    Segment(SegmentInfo),
    /// Revisions `(from, to]` whose events are not in the archive.
    Gap {
        from: u64,
        to: u64,
        reason: String,
    },
    /// Revisions `(from, to]` that changed only keys of the brief class:
    /// covered, with nothing to archive.
    Quiet {
        from: u64,
        to: u64,
    },
}

impl Entry {
    pub fn range(&self) -> (u64, u64) {
        match self {
            Entry::Segment(s) => (s.from, s.to),
            Entry::Gap { from, to, .. } | Entry::Quiet { from, to } => (*from, *to),
        }
    }
}

pub const INDEX_FILE: &str = "index.tsv";

fn bad_index(dir: &Path, line: usize, what: &str) -> StoreError {
    StoreError::Archive(format!(
        "{} line {line}: {what}",
        dir.join(INDEX_FILE).display()
    ))
}

/// The archive's entries in revision order: the index, plus any segment
/// file left out of it (named, index not yet rewritten: a crash, or the
/// archiver between the two steps), checked. Writes nothing, so readers
/// (watches from the archive, history, `keel archive`, restore) may open
/// an archive a member is writing; the archiver alone changes it, and
/// [`recover`] makes the index whole before it starts.
pub fn open(dir: &Path) -> Result<Vec<Entry>, StoreError> {
    Ok(scan(dir)?.0)
}

/// Before the archiver starts (nothing else writes the directory): create
/// it, remove temporaries of unfinished segments and write segments a crash
/// left out of the index into it. Returns the entries, as [`open`] does.
pub(crate) fn recover(dir: &Path) -> Result<Vec<Entry>, StoreError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| StoreError::Archive(format!("creating {}: {e}", dir.display())))?;
    for name in names(dir)? {
        if name.ends_with(".tmp") {
            let _ = std::fs::remove_file(dir.join(&name));
        }
    }
    let (entries, adopted) = scan(dir)?;
    for name in &adopted {
        tracing::info!(segment = %name, "a segment missing from the archive index was added");
    }
    if !adopted.is_empty() {
        write_index(dir, &entries)?;
    }
    Ok(entries)
}

fn names(dir: &Path) -> Result<Vec<String>, StoreError> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| StoreError::Archive(format!("reading {}: {e}", dir.display())))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    Ok(names)
}

/// The index's entries and the unlisted segments that continue them (in
/// name order, so by first revision), with the names of those adopted. An
/// unlisted segment that overlaps what is already covered is a leftover of
/// a step that failed and was written again; it is left out.
fn scan(dir: &Path) -> Result<(Vec<Entry>, Vec<String>), StoreError> {
    if !dir.exists() {
        return Ok((Vec::new(), Vec::new()));
    }
    let mut entries = read_index(dir)?;
    let listed: std::collections::BTreeSet<String> = entries
        .iter()
        .filter_map(|e| match e {
            Entry::Segment(s) => Some(s.file.clone()),
            Entry::Gap { .. } | Entry::Quiet { .. } => None,
        })
        .collect();
    let mut adopted = Vec::new();
    for name in names(dir)? {
        if listed.contains(&name) {
            continue;
        }
        let Some((from, _)) = segment::parse_segment_name(&name) else {
            continue;
        };
        let end = entries.iter().map(|e| e.range().1).max().unwrap_or(0);
        if !entries.is_empty() && from < end {
            tracing::warn!(segment = %name, covered_to = end, "an unlisted segment overlaps the archive index; left out");
            continue;
        }
        let path = dir.join(&name);
        let (mut events, mut first_ms, mut last_ms) = (0u64, 0u64, 0u64);
        let mut crc = None;
        let header = read_segment(
            &path,
            |e| {
                events += 1;
                if first_ms == 0 {
                    first_ms = e.at_ms;
                }
                last_ms = e.at_ms;
                Ok(())
            },
            &mut crc,
        )?;
        let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        entries.push(Entry::Segment(SegmentInfo {
            from: header.from,
            to: header.to,
            events,
            first_ms,
            last_ms,
            bytes,
            crc32: crc.unwrap_or(0),
            file: name.clone(),
        }));
        adopted.push(name);
    }
    entries.sort_by_key(|e| e.range());
    Ok((entries, adopted))
}

fn read_index(dir: &Path) -> Result<Vec<Entry>, StoreError> {
    let path = dir.join(INDEX_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(StoreError::Archive(format!(
                "reading {}: {e}",
                path.display()
            )));
        }
    };
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split('\t').collect();
        let num = |j: usize| -> Result<u64, StoreError> {
            f.get(j)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| bad_index(dir, i + 1, "a field is not a number"))
        };
        match f[0] {
            "segment" if f.len() == 9 => out.push(Entry::Segment(SegmentInfo {
                from: num(1)?,
                to: num(2)?,
                events: num(3)?,
                first_ms: num(4)?,
                last_ms: num(5)?,
                bytes: num(6)?,
                crc32: u32::from_str_radix(f[7], 16)
                    .map_err(|_| bad_index(dir, i + 1, "the checksum is not hexadecimal"))?,
                file: f[8].to_string(),
            })),
            "quiet" if f.len() == 3 => out.push(Entry::Quiet {
                from: num(1)?,
                to: num(2)?,
            }),
            "gap" if f.len() == 4 => out.push(Entry::Gap {
                from: num(1)?,
                to: num(2)?,
                reason: f[3].to_string(),
            }),
            _ => return Err(bad_index(dir, i + 1, "not a segment or gap line")),
        }
    }
    Ok(out)
}

/// Rewrite the index (temporary file, sync, rename, sync the directory).
pub(crate) fn write_index(dir: &Path, entries: &[Entry]) -> Result<(), StoreError> {
    let mut text = String::from(
        "# keel event archive: segment from to events first_ms last_ms bytes crc32 file | gap from to reason | quiet from to\n",
    );
    for e in entries {
        match e {
            Entry::Segment(s) => text.push_str(&format!(
                "segment\t{}\t{}\t{}\t{}\t{}\t{}\t{:08x}\t{}\n",
                s.from, s.to, s.events, s.first_ms, s.last_ms, s.bytes, s.crc32, s.file
            )),
            Entry::Gap { from, to, reason } => text.push_str(&format!(
                "gap\t{from}\t{to}\t{}\n",
                reason.replace(['\t', '\n'], " ")
            )),
            Entry::Quiet { from, to } => text.push_str(&format!("quiet\t{from}\t{to}\n")),
        }
    }
    let tmp = dir.join(format!("{INDEX_FILE}.tmp"));
    segment::sync_file(&tmp, text.as_bytes())?;
    let path = dir.join(INDEX_FILE);
    std::fs::rename(&tmp, &path)
        .map_err(|e| StoreError::Archive(format!("naming {}: {e}", path.display())))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::Archive(format!("syncing {}: {e}", dir.display())))
}

/// The revisions the archive covers without a gap from its start: `(from, to]`.
pub fn span(entries: &[Entry]) -> Option<(u64, u64)> {
    let first = entries.first()?.range().0;
    let last = entries.last()?.range().1;
    Some((first, last))
}

/// Visit every archived event of revisions `(after, through]` in order.
/// Fails, naming the revisions, when part of the range is not archived (a
/// recorded gap, a missing segment, or the archive ending first), and,
/// naming the file and its range, when a segment is damaged.
pub fn read_range(
    dir: &Path,
    after: u64,
    through: u64,
    visit: impl FnMut(Event) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    read_range_as(dir, after, through, visit)
}

/// [`read_range`], decoding each event as `T` (an [`EventHead`] skips the
/// values).
pub fn read_range_as<T: Archived>(
    dir: &Path,
    after: u64,
    through: u64,
    mut visit: impl FnMut(T) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let entries = open(dir)?;
    let mut at = after;
    for e in &entries {
        if at >= through {
            break;
        }
        let (from, to) = e.range();
        if to <= at {
            continue;
        }
        if from > at {
            return Err(StoreError::Archive(format!(
                "revisions {} to {from} are not in the archive at {} (no segment covers them)",
                at + 1,
                dir.display()
            )));
        }
        match e {
            Entry::Quiet { .. } => at = to,
            Entry::Gap { reason, .. } => {
                return Err(StoreError::Archive(format!(
                    "revisions {} to {to} are a recorded gap in the archive at {}: {reason}",
                    from + 1,
                    dir.display()
                )));
            }
            Entry::Segment(s) => {
                let path = dir.join(&s.file);
                let mut crc = None;
                let header = read_segment_as(
                    &path,
                    |ev: T| {
                        let revision = ev.position().0;
                        if revision > at && revision <= through {
                            visit(ev)?;
                        }
                        Ok(())
                    },
                    &mut crc,
                )?;
                if (header.from, header.to) != (s.from, s.to) || crc != Some(s.crc32) {
                    return Err(StoreError::Archive(format!(
                        "segment {} holds revisions {} to {} (crc32 {:08x?}), the index says {} to {} ({:08x})",
                        path.display(),
                        header.from + 1,
                        header.to,
                        crc,
                        s.from + 1,
                        s.to,
                        s.crc32
                    )));
                }
                at = to;
            }
        }
    }
    if at < through {
        return Err(StoreError::Archive(format!(
            "the archive at {} ends at revision {at}; revision {through} is not archived yet",
            dir.display()
        )));
    }
    Ok(())
}

/// The last revision before the first archived event after `after` that was
/// proposed later than `at_ms`: the state "as of" that time. Fails when the
/// archive holds no event after the time (it cannot tell what happened
/// after its end).
pub fn revision_at_time(dir: &Path, after: u64, at_ms: u64) -> Result<u64, StoreError> {
    let entries = open(dir)?;
    let end = span(&entries).map(|s| s.1).unwrap_or(after);
    let mut found = None;
    let stop = "stop";
    let res = read_range(dir, after, end, |ev| {
        if ev.at_ms > at_ms {
            found = Some(ev.revision - 1);
            return Err(StoreError::Archive(stop.into()));
        }
        Ok(())
    });
    match (found, res) {
        (Some(r), _) => Ok(r.max(after)),
        (None, Err(e)) => Err(e),
        (None, Ok(())) => Err(StoreError::Archive(format!(
            "the archive at {} ends at revision {end} with no event after the requested time; \
             restore to a revision instead (--to-revision {end})",
            dir.display()
        ))),
    }
}

#[cfg(test)]
mod tests;
