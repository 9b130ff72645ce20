//! Cluster backups: `keel snapshot save` streams the objects of one
//! consistent view, at one revision, into a checksummed file
//! ([`save`]); `keel snapshot status` summarises one ([`summarize`]);
//! `keel restore` builds a new member's data directory from one
//! ([`restore`]). A backup shares the record layout and CRC-32 trailer of
//! Raft snapshots (`crate::snapshot::format`) under its own magic,
//! `KEELBKUP`, and a header that describes the cluster it came from instead
//! of Raft metadata, so one can never be mistaken for the other.

mod restore;
mod save;

use std::collections::BTreeMap;
use std::io::Read;

use serde::{Deserialize, Serialize};

use crate::NodeId;
use crate::error::StoreError;
use crate::snapshot::format::{FileHeader, SnapshotReader, check_object};

pub use restore::{Replay, ReplayTo, RestorePlan, Restored, restore};
pub use save::{SAVE_CHUNK_BYTES, Saved, save};

/// The backup format this build writes and reads.
pub const BACKUP_FORMAT: u32 = 1;

/// What a backup file opens with.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupHeader {
    /// The revision of the state the backup holds: every change up to it
    /// and none after.
    pub revision: u64,
    /// The source cluster's compacted revision when the backup was taken.
    pub compacted: u64,
    /// The member that read the state, and when (Unix milliseconds).
    pub taken_by: NodeId,
    pub taken_at_ms: u64,
    /// The source cluster's members (id, peer address, voter).
    pub members: Vec<(NodeId, String, bool)>,
    /// The `keel` version that wrote the file.
    pub keel_version: String,
}

impl FileHeader for BackupHeader {
    const MAGIC: &'static [u8; 8] = b"KEELBKUP";
    const FORMAT: u32 = BACKUP_FORMAT;
    const OLDER: &'static str = "no other backup format exists; was it written by a newer keel?";
}

/// What `keel snapshot status` shows of a backup, every byte of which was
/// read and checked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub header: BackupHeader,
    pub objects: u64,
    /// The file's length and the CRC-32 its trailer holds (verified).
    pub bytes: u64,
    pub crc32: u32,
    /// Objects and the bytes of their stored values per key prefix of
    /// `depth` path segments (`/registry/core/pods` at depth 3).
    pub by_prefix: BTreeMap<String, PrefixCount>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PrefixCount {
    pub objects: u64,
    pub bytes: u64,
}

/// The first `depth` `/`-separated segments of `key`, with their slashes.
pub fn key_prefix(key: &str, depth: usize) -> &str {
    let mut seen = 0;
    for (i, c) in key.char_indices() {
        if c == '/' && i > 0 {
            seen += 1;
            if seen == depth {
                return &key[..i];
            }
        }
    }
    key
}

/// Read a whole backup, checking its structure, its checksum and that every
/// record is the object of its key; count its objects by key prefix.
pub fn summarize(input: impl Read, depth: usize) -> Result<Summary, StoreError> {
    let mut r: SnapshotReader<_, BackupHeader> = SnapshotReader::open(input)?;
    let (mut k, mut v) = (Vec::new(), Vec::new());
    let mut by_prefix: BTreeMap<String, PrefixCount> = BTreeMap::new();
    while r.next_record(&mut k, &mut v)? {
        check_object(&k, &v)?;
        let key = String::from_utf8_lossy(&k);
        let count = by_prefix
            .entry(key_prefix(&key, depth).to_string())
            .or_default();
        count.objects += 1;
        count.bytes += v.len() as u64;
    }
    Ok(Summary {
        header: r.header().clone(),
        objects: r.records(),
        bytes: r.offset(),
        crc32: r.checksum().expect("the trailer was read"),
        by_prefix,
    })
}

#[cfg(test)]
mod tests;
