//! Writing a backup: the objects of one pinned RocksDB view, streamed record
//! by record to any writer (a gRPC stream for `keel snapshot save`), so a
//! member never holds a backup in memory.

use std::io::{BufWriter, Write};

use rocksdb::{IteratorMode, ReadOptions};

use super::BackupHeader;
use crate::LogId;
use crate::NodeId;
use crate::codec::{self, store_meta};
use crate::db::{CF_OBJECTS, CF_STORE_META, Db};
use crate::error::StoreError;
use crate::snapshot::format::SnapshotWriter;

/// The size of the pieces a backup is written (and sent) in.
pub const SAVE_CHUNK_BYTES: usize = 1 << 20;

/// What a save wrote.
#[derive(Clone, Debug)]
pub struct Saved {
    pub header: BackupHeader,
    pub objects: u64,
    pub bytes: u64,
}

/// Stream every object of one consistent view of `db` to `out` as a backup.
/// `taken_by` and `members` describe the cluster in the header.
///
/// A view taken while a snapshot install is replacing the state (its first
/// batch moves the compacted revision past the applied one, its last
/// catches the applied one up) would hold part of the new objects: that is
/// refused as [`StoreError::Busy`] and the caller retries.
pub fn save(
    db: &Db,
    out: impl Write,
    taken_by: NodeId,
    members: Vec<(NodeId, String, bool)>,
) -> Result<Saved, StoreError> {
    let snap = db.db.snapshot();
    let meta = |key: &'static [u8]| -> Result<Option<Vec<u8>>, StoreError> {
        snap.get_cf(db.cf(CF_STORE_META), key)
            .map_err(|source| StoreError::Io {
                step: "reading store meta for a backup",
                source,
            })
    };
    let decode = |v: Option<Vec<u8>>, name: &str| -> Result<Option<u64>, StoreError> {
        v.map(|v| {
            codec::decode::<u64>(&v).map_err(|detail| StoreError::Corrupt {
                cf: CF_STORE_META,
                key: name.into(),
                detail,
            })
        })
        .transpose()
    };
    let applied: Option<LogId> = meta(store_meta::APPLIED)?
        .map(|v| {
            codec::decode::<Option<LogId>>(&v).map_err(|detail| StoreError::Corrupt {
                cf: CF_STORE_META,
                key: "applied".into(),
                detail,
            })
        })
        .transpose()?
        .flatten();
    let offset = decode(meta(store_meta::REVISION_OFFSET)?, "revision_offset")?.unwrap_or(0);
    let compacted = decode(meta(store_meta::COMPACTED)?, "compacted")?.unwrap_or(0);
    let revision = applied.map(|l| l.index).unwrap_or(0) + offset;
    if compacted > revision {
        return Err(StoreError::Busy(format!(
            "a snapshot install is replacing this member's state (compacted {compacted}, \
             applied revision {revision})"
        )));
    }
    let header = BackupHeader {
        revision,
        compacted,
        taken_by,
        taken_at_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0),
        members,
        keel_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    let io = |e: std::io::Error| StoreError::Snapshot(format!("writing a backup: {e}"));
    let mut w = SnapshotWriter::new(BufWriter::with_capacity(SAVE_CHUNK_BYTES, out), &header)
        .map_err(io)?;
    // A one-off scan: keep it out of the block cache.
    let mut ro = ReadOptions::default();
    ro.fill_cache(false);
    ro.set_readahead_size(2 << 20);
    for item in snap.iterator_cf_opt(db.cf(CF_OBJECTS), ro, IteratorMode::Start) {
        let (k, v) = item.map_err(|source| StoreError::Io {
            step: "reading state for a backup",
            source,
        })?;
        w.record(&k, &v).map_err(io)?;
    }
    let (_, objects, bytes) = w.finish().map_err(io)?;
    Ok(Saved {
        header,
        objects,
        bytes,
    })
}
