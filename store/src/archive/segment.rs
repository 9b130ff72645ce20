//! One archive segment: the events of the revisions `(from, to]`, in
//! revision order, as LZ4 frames around the record layout and CRC-32 trailer
//! of snapshots (`crate::snapshot::format`), under the magic `KEELSEGM`.
//! Written to a temporary file, synced, renamed into place and the directory
//! synced: a segment that has its name is whole. Never rewritten.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::prefetch::Prefetch;
use crate::codec::EventHead;
use crate::error::StoreError;
use crate::snapshot::format::{FileHeader, SnapshotReader, SnapshotWriter};
use crate::{Event, NodeId, codec};

/// What a segment file opens with.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentHeader {
    /// The segment holds every archived event of revisions `from + 1 ..= to`.
    pub from: u64,
    pub to: u64,
    /// The member that wrote it, and when (Unix milliseconds).
    pub member: NodeId,
    pub created_ms: u64,
}

impl FileHeader for SegmentHeader {
    const MAGIC: &'static [u8; 8] = b"KEELSEGM";
    const FORMAT: u32 = 1;
    const OLDER: &'static str = "no other segment format exists; was it written by a newer keel?";
}

/// A segment as the index lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SegmentInfo {
    pub from: u64,
    pub to: u64,
    pub events: u64,
    /// Proposal times of its first and last events (0 when it has none).
    pub first_ms: u64,
    pub last_ms: u64,
    /// The compressed file's length, and the CRC-32 of its records.
    pub bytes: u64,
    pub crc32: u32,
    pub file: String,
}

/// `<from>-<to>.seg`, zero-padded so names sort by revision.
pub fn segment_name(from: u64, to: u64) -> String {
    format!("{from:020}-{to:020}.seg")
}

/// The range a segment's file name claims.
pub fn parse_segment_name(name: &str) -> Option<(u64, u64)> {
    let (from, to) = name.strip_suffix(".seg")?.split_once('-')?;
    Some((from.parse().ok()?, to.parse().ok()?))
}

fn io(what: &str, path: &Path) -> impl Fn(std::io::Error) -> StoreError {
    let at = format!("{what} {}", path.display());
    move |e| StoreError::Archive(format!("{at}: {e}"))
}

/// Writes one segment.
pub struct SegmentWriter {
    header: SegmentHeader,
    dir: PathBuf,
    tmp: PathBuf,
    out: SnapshotWriter<lz4::Encoder<BufWriter<File>>>,
    first_ms: u64,
    last_ms: u64,
    last_revision: u64,
}

impl SegmentWriter {
    pub fn create(dir: &Path, header: SegmentHeader) -> Result<SegmentWriter, StoreError> {
        let tmp = dir.join(format!("{}.tmp", segment_name(header.from, header.to)));
        let file = File::create(&tmp).map_err(io("creating", &tmp))?;
        // No LZ4 content checksum: the records carry their own CRC-32, and
        // the frame's XXH32 cost more than decompression itself on reads.
        let enc = lz4::EncoderBuilder::new()
            .level(1)
            .checksum(lz4::ContentChecksum::NoChecksum)
            .build(BufWriter::with_capacity(1 << 20, file))
            .map_err(io("starting LZ4 in", &tmp))?;
        let out = SnapshotWriter::new(enc, &header).map_err(io("writing", &tmp))?;
        Ok(SegmentWriter {
            last_revision: header.from,
            header,
            dir: dir.to_path_buf(),
            tmp,
            out,
            first_ms: 0,
            last_ms: 0,
        })
    }

    /// Append one stored event (its events-CF key and value).
    pub fn push(
        &mut self,
        key: &[u8],
        value: &[u8],
        revision: u64,
        at_ms: u64,
    ) -> Result<(), StoreError> {
        if revision <= self.header.from
            || revision > self.header.to
            || revision < self.last_revision
        {
            return Err(StoreError::Archive(format!(
                "event of revision {revision} does not belong in segment ({}, {}] after revision {}",
                self.header.from, self.header.to, self.last_revision
            )));
        }
        self.last_revision = revision;
        if self.first_ms == 0 {
            self.first_ms = at_ms;
        }
        self.last_ms = at_ms;
        self.out
            .record(key, value)
            .map_err(io("writing", &self.tmp))
    }

    /// Finish, sync and name the segment.
    pub fn finish(self) -> Result<SegmentInfo, StoreError> {
        let (enc, events, _) = self.out.finish().map_err(io("writing", &self.tmp))?;
        let (buf, res) = enc.finish();
        res.map_err(io("finishing LZ4 in", &self.tmp))?;
        let file = buf
            .into_inner()
            .map_err(|e| io("writing", &self.tmp)(e.into_error()))?;
        file.sync_all().map_err(io("syncing", &self.tmp))?;
        let bytes = file.metadata().map_err(io("reading", &self.tmp))?.len();
        drop(file);
        // The CRC is the trailer's last four bytes; read it back through the
        // reader so what the index says is what the file holds.
        let name = segment_name(self.header.from, self.header.to);
        let path = self.dir.join(&name);
        let crc32 = {
            let mut crc = None;
            read_segment(&self.tmp, |_| Ok(()), &mut crc)?;
            crc.expect("a finished segment has a trailer")
        };
        std::fs::rename(&self.tmp, &path).map_err(io("naming", &path))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io("syncing", &self.dir))?;
        Ok(SegmentInfo {
            from: self.header.from,
            to: self.header.to,
            events,
            first_ms: self.first_ms,
            last_ms: self.last_ms,
            bytes,
            crc32,
            file: name,
        })
    }
}

/// What reading a segment yields for each event: the whole [`Event`], or
/// only its [`EventHead`] (no values decoded).
pub trait Archived: Sized {
    fn decode(bytes: &[u8]) -> Result<Self, String>;
    /// Its revision and operation index.
    fn position(&self) -> (u64, u32);
}

impl Archived for Event {
    fn decode(bytes: &[u8]) -> Result<Self, String> {
        codec::decode_event(bytes)
    }
    fn position(&self) -> (u64, u32) {
        (self.revision, self.op_index)
    }
}

impl Archived for EventHead {
    fn decode(bytes: &[u8]) -> Result<Self, String> {
        codec::decode_event_head(bytes)
    }
    fn position(&self) -> (u64, u32) {
        (self.revision, self.op_index)
    }
}

/// Read a whole segment, checking its structure, its checksum and that its
/// events lie in its range in revision order; `visit` sees each event (not
/// yet covered by the checksum: a caller that acts on them must discard its
/// work when this fails). Returns the header; `crc` gets the checksum.
pub fn read_segment(
    path: &Path,
    visit: impl FnMut(Event) -> Result<(), StoreError>,
    crc: &mut Option<u32>,
) -> Result<SegmentHeader, StoreError> {
    read_segment_as(path, visit, crc)
}

/// [`read_segment`], decoding each event as `T`.
pub fn read_segment_as<T: Archived>(
    path: &Path,
    mut visit: impl FnMut(T) -> Result<(), StoreError>,
    crc: &mut Option<u32>,
) -> Result<SegmentHeader, StoreError> {
    let named = |e: StoreError| {
        StoreError::Archive(format!(
            "segment {}{}: {e}",
            path.display(),
            path.file_name()
                .and_then(|n| parse_segment_name(&n.to_string_lossy()))
                .map(|(f, t)| format!(" (revisions {} to {t})", f + 1))
                .unwrap_or_default()
        ))
    };
    let file = File::open(path).map_err(io("opening", path))?;
    let dec = lz4::Decoder::new(BufReader::with_capacity(1 << 20, file))
        .map_err(|e| named(StoreError::Snapshot(format!("not an LZ4 frame: {e}"))))?;
    // Decompression runs a few chunks ahead on a thread of its own; its
    // last act checks that the LZ4 frame ends, and the file with it.
    let input = Prefetch::spawn("keel-segment-read", dec, |dec| {
        let (mut rest, ended) = dec.finish();
        ended.map_err(|e| format!("truncated: the LZ4 frame does not end: {e}"))?;
        let mut extra = [0u8; 1];
        match std::io::Read::read(&mut rest, &mut extra) {
            Ok(0) => Ok(()),
            Ok(_) => Err("padded: bytes follow the LZ4 frame".into()),
            Err(e) => Err(format!("reading past the frame: {e}")),
        }
    })
    .map_err(io("starting a reader thread for", path))?;
    let mut r: SnapshotReader<_, SegmentHeader> = SnapshotReader::open(input).map_err(named)?;
    let header = r.header().clone();
    let (mut k, mut v) = (Vec::new(), Vec::new());
    let mut last = header.from;
    // Most records lie whole in the reader's current chunk and decode
    // where they lie; the rest are copied out first.
    let place = |k: &[u8], v: &[u8], last: u64| -> Result<T, StoreError> {
        let event = T::decode(v)
            .map_err(|e| StoreError::Snapshot(format!("an event does not decode: {e}")))?;
        let (revision, op_index) = event.position();
        if codec::parse_event_key(k) != Some((revision, op_index))
            || revision <= header.from
            || revision > header.to
            || revision < last
        {
            return Err(StoreError::Snapshot(format!(
                "event of revision {revision} out of place (segment ({}, {}], after {last})",
                header.from, header.to
            )));
        }
        Ok(event)
    };
    while let Some(event) = r
        .next_record_with(&mut k, &mut v, |k, v| place(k, v, last))
        .map_err(named)?
    {
        let event = event.map_err(named)?;
        last = event.position().0;
        visit(event)?;
    }
    *crc = r.checksum();
    // The records verified; nothing may follow them, in the frame or after it.
    r.into_input()
        .finish()
        .map_err(|e| named(StoreError::Snapshot(e)))?;
    Ok(header)
}

/// Flush `w` to disk.
pub(crate) fn sync_file(path: &Path, text: &[u8]) -> Result<(), StoreError> {
    let mut f = File::create(path).map_err(io("creating", path))?;
    f.write_all(text).map_err(io("writing", path))?;
    f.sync_all().map_err(io("syncing", path))
}
