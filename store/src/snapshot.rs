//! Snapshots: building one from one pinned RocksDB view straight to a file,
//! and installing one from a file, which verifies everything before it
//! replaces a single byte of state and survives a crash between the file and
//! the state. Neither holds a snapshot whole in memory; the format is in
//! [`format`].

pub mod format;

use std::fs::File;
use std::io::{BufReader, BufWriter, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;

use openraft::RaftSnapshotBuilder;
use rocksdb::{IteratorMode, ReadOptions, WriteBatch};

use crate::codec::{self, store_meta};
use crate::db::{CF_EVENTS, CF_OBJECTS, CF_STORE_META, Db};
use crate::error::StoreError;
use crate::snapshot_file::{SnapshotData, SnapshotFiles};
use crate::state_machine::AppliedState;
use crate::{LogId, Snapshot, SnapshotMeta, StoredMembership, TypeConfig};

pub use format::{
    Header, Meta, SNAPSHOT_FORMAT, SnapshotReader, SnapshotWriter, meta_from_bytes, verify,
};

/// Bytes of records written to RocksDB per batch while installing: memory
/// stays bounded whatever the snapshot's size.
pub const INSTALL_BATCH_BYTES: usize = 4 << 20;

/// Write buffer of a snapshot being built, and read buffer of one installed.
const IO_BUFFER: usize = 1 << 20;

fn io_err(what: &str, path: &std::path::Path) -> impl Fn(std::io::Error) -> StoreError {
    let at = format!("{what} {}", path.display());
    move |e| StoreError::Snapshot(format!("{at}: {e}"))
}

/// Builds a snapshot from one consistent RocksDB view.
pub struct SnapshotBuilder {
    db: Arc<Db>,
    files: Arc<SnapshotFiles>,
}

/// A snapshot written to its own temporary file, synced, not yet published.
pub(crate) struct Built {
    pub header: Header,
    pub path: PathBuf,
    /// Open for reading, positioned at the start.
    pub file: File,
    pub records: u64,
    pub bytes: u64,
}

impl SnapshotBuilder {
    pub(crate) fn new(db: Arc<Db>, files: Arc<SnapshotFiles>) -> SnapshotBuilder {
        SnapshotBuilder { db, files }
    }

    /// Stream the objects of one pinned view to a new temporary file.
    pub(crate) fn build(&self) -> Result<Built, StoreError> {
        // Installs replace the state in several batches under this lock: a
        // view is taken before one starts or after it ends, never halfway.
        let snap = {
            let _installs = self.files.lock();
            self.db.db.snapshot()
        };
        // Make every applied batch in the view durable before the snapshot
        // file claims it and lets Raft purge the log: applied batches skip
        // the WAL, so their memtables are flushed. Flushed after taking the
        // view, so entries applied in between are covered too.
        self.db.flush()?;
        let meta = |key: &'static [u8]| -> Result<Option<Vec<u8>>, StoreError> {
            snap.get_cf(self.db.cf(CF_STORE_META), key)
                .map_err(|source| StoreError::Io {
                    step: "reading store meta for a snapshot",
                    source,
                })
        };
        let applied: Option<LogId> = decode_meta(meta(store_meta::APPLIED)?, "applied")?.flatten();
        let membership: StoredMembership =
            decode_meta(meta(store_meta::MEMBERSHIP)?, "membership")?.unwrap_or_default();
        let revision_offset: u64 =
            decode_meta(meta(store_meta::REVISION_OFFSET)?, "revision_offset")?.unwrap_or(0);
        let header = Header {
            meta: SnapshotMeta {
                last_log_id: applied,
                last_membership: membership,
            },
            revision_offset,
        };
        let (path, file) = self.files.create_tmp("build")?;
        let res = (|| {
            let io = io_err("writing", &path);
            let mut w = SnapshotWriter::new(BufWriter::with_capacity(IO_BUFFER, &file), &header)
                .map_err(&io)?;
            // A one-off scan: keep it out of the block cache.
            let mut ro = ReadOptions::default();
            ro.fill_cache(false);
            ro.set_readahead_size(2 << 20);
            for item in snap.iterator_cf_opt(self.db.cf(CF_OBJECTS), ro, IteratorMode::Start) {
                let (k, v) = item.map_err(|source| StoreError::Io {
                    step: "reading state for a snapshot",
                    source,
                })?;
                w.record(&k, &v).map_err(&io)?;
            }
            let (out, records, bytes) = w.finish().map_err(&io)?;
            drop(out);
            file.sync_all().map_err(&io)?;
            (&file).seek(SeekFrom::Start(0)).map_err(&io)?;
            Ok((records, bytes))
        })();
        match res {
            Ok((records, bytes)) => Ok(Built {
                header,
                path,
                file,
                records,
                bytes,
            }),
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                Err(e)
            }
        }
    }
}

fn decode_meta<T: serde::de::DeserializeOwned>(
    v: Option<Vec<u8>>,
    key: &str,
) -> Result<Option<T>, StoreError> {
    v.map(|v| {
        codec::decode(&v).map_err(|detail| StoreError::Corrupt {
            cf: CF_STORE_META,
            key: key.into(),
            detail,
        })
    })
    .transpose()
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = SnapshotData;

    async fn build_snapshot(&mut self) -> Result<Snapshot, std::io::Error> {
        let this = SnapshotBuilder {
            db: self.db.clone(),
            files: self.files.clone(),
        };
        let built = tokio::task::spawn_blocking(move || {
            let built = this.build()?;
            // Builds run alongside installs: an install that replaced the
            // state (and the file) while this one read keeps its newer file.
            // The open handle still reads this build's bytes either way.
            if !this
                .files
                .publish(&mut this.files.lock(), built.header.meta.last_log_id, &built.path)?
            {
                tracing::info!(last_log_id = ?built.header.meta.last_log_id, "a newer snapshot file is in place; kept it");
            }
            tracing::info!(
                last_log_id = ?built.header.meta.last_log_id,
                objects = built.records,
                bytes = built.bytes,
                "built snapshot"
            );
            Ok::<_, StoreError>(built)
        })
        .await
        .map_err(|e| std::io::Error::other(format!("building a snapshot: {e}")))?
        .map_err(|e| std::io::Error::other(format!("building a snapshot: {e}")))?;
        Ok(Snapshot {
            meta: built.header.meta.clone(),
            snapshot: SnapshotData::file(built.file),
        })
    }
}

/// What an install wrote. A member installed from a snapshot starts its
/// watch window (and reads at past revisions) at `header.revision()`.
#[derive(Debug)]
pub struct Installed {
    pub header: Header,
    pub records: u64,
}

/// Replace the member's state with the snapshot in `file` (already verified)
/// in batches of about `batch_bytes`: the first deletes the objects and
/// events and moves the compacted revision to the snapshot's, the last,
/// synced, writes the applied log id and membership. Until that last one
/// lands the applied log id is the old one, so [`recover_snapshot`] redoes an
/// install a crash interrupted.
fn apply_file(db: &Db, file: &File, batch_bytes: usize) -> Result<Installed, StoreError> {
    let io = |e: std::io::Error| StoreError::Snapshot(format!("reading a snapshot: {e}"));
    let mut f = file;
    f.seek(SeekFrom::Start(0)).map_err(io)?;
    let mut reader: SnapshotReader<_, Header> =
        SnapshotReader::open(BufReader::with_capacity(IO_BUFFER, f))?;
    let header = reader.header().clone();
    let revision = header.revision();
    let meta_cf = db.cf(CF_STORE_META);
    let mut batch = WriteBatch::default();
    batch.delete_range_cf(db.cf(CF_OBJECTS), b"".as_slice(), [0xffu8].as_slice());
    batch.delete_range_cf(
        db.cf(CF_EVENTS),
        codec::event_key(0, 0).as_slice(),
        [0xffu8; 13].as_slice(),
    );
    // No events come with a snapshot: everything up to it is compacted, from
    // the first batch on, so that a read at a past revision or a watch
    // backfill during the install fails with Compacted instead of finding
    // the events gone.
    batch.put_cf(meta_cf, store_meta::COMPACTED, codec::encode(&revision));
    batch.put_cf(meta_cf, store_meta::EVENT_COUNT, codec::encode(&0u64));
    // The events up to the snapshot never reach this member: an archive of
    // its events records them as a gap.
    let deleted: u64 = db
        .get_decoded(CF_STORE_META, store_meta::EVENTS_DELETED)?
        .unwrap_or(0);
    batch.put_cf(
        meta_cf,
        store_meta::EVENTS_DELETED,
        codec::encode(&deleted.max(revision)),
    );
    let (mut k, mut v) = (Vec::new(), Vec::new());
    while reader.next_record(&mut k, &mut v)? {
        batch.put_cf(db.cf(CF_OBJECTS), &k, &v);
        if batch.size_in_bytes() >= batch_bytes {
            // Not synced: the last batch is, and syncing the WAL covers
            // every write before it.
            db.db
                .write(std::mem::take(&mut batch))
                .map_err(|source| StoreError::Io {
                    step: "installing a snapshot",
                    source,
                })?;
            fail_point("between install batches")?;
        }
    }
    batch.put_cf(
        meta_cf,
        store_meta::MEMBERSHIP,
        codec::encode(&header.meta.last_membership),
    );
    batch.put_cf(
        meta_cf,
        store_meta::REVISION_OFFSET,
        codec::encode(&header.revision_offset),
    );
    batch.put_cf(
        meta_cf,
        store_meta::APPLIED,
        codec::encode(&header.meta.last_log_id),
    );
    db.write_synced(batch, "installing a snapshot")?;
    Ok(Installed {
        records: reader.records(),
        header,
    })
}

/// Verify a received snapshot file completely (structure, checksum, every
/// object) without touching state; it must cover `announced`.
pub(crate) fn verify_file(file: &File, announced: Option<LogId>) -> Result<Header, StoreError> {
    let io = |e: std::io::Error| StoreError::Snapshot(format!("reading a snapshot: {e}"));
    let mut f = file;
    f.seek(SeekFrom::Start(0)).map_err(io)?;
    let (header, _) = verify(BufReader::with_capacity(IO_BUFFER, f), true)?;
    let meta = &header.meta;
    if meta.last_log_id != announced {
        return Err(StoreError::Snapshot(format!(
            "the snapshot covers {:?} but was announced as covering {:?}",
            meta.last_log_id, announced
        )));
    }
    Ok(header)
}

/// Install the verified snapshot in `file` (a temporary file at `path` in the
/// snapshot directory): the file is published first, then the state is
/// replaced, both under the file's lock. A crash between the two, or between
/// two of the state's batches, leaves a file ahead of the state, which
/// [`recover_snapshot`] completes at the next start; never a file behind it.
pub(crate) fn install_file(
    db: &Db,
    files: &SnapshotFiles,
    path: &std::path::Path,
    file: &File,
    last_log_id: Option<LogId>,
) -> Result<Installed, StoreError> {
    install_file_in_batches(db, files, path, file, last_log_id, INSTALL_BATCH_BYTES)
}

fn install_file_in_batches(
    db: &Db,
    files: &SnapshotFiles,
    path: &std::path::Path,
    file: &File,
    last_log_id: Option<LogId>,
    batch_bytes: usize,
) -> Result<Installed, StoreError> {
    file.sync_all().map_err(io_err("syncing", path))?;
    let mut guard = files.lock();
    files.publish(&mut guard, last_log_id, path)?;
    fail_point("after the snapshot file, before the install batch")?;
    apply_file(db, file, batch_bytes)
}

/// Finish an install that a crash interrupted: when the snapshot file is
/// ahead of the applied state, install it. Run before the state is loaded.
/// Returns whether it installed anything.
pub fn recover_snapshot(db: &Db) -> Result<bool, StoreError> {
    let files = SnapshotFiles::open(db.dir().snapshots());
    let Ok(Some((meta, file))) = files.read_current() else {
        return Ok(false);
    };
    let applied = AppliedState::load(db)?.applied;
    if meta.last_log_id <= applied {
        return Ok(false);
    }
    // The file's structure and checksum were checked on opening; its
    // objects too before anything is replaced.
    verify_file(&file, meta.last_log_id)?;
    tracing::warn!(
        snapshot = ?meta.last_log_id,
        applied = ?applied,
        "the snapshot file is ahead of the state (an install was interrupted): installing it"
    );
    apply_file(db, &file, INSTALL_BATCH_BYTES)?;
    Ok(true)
}

/// Tests make a step fail here to stand for a crash at that point.
#[cfg(test)]
fn fail_point(at: &'static str) -> Result<(), StoreError> {
    if tests::CRASH_AT.with(|c| c.get()) == Some(at) {
        return Err(StoreError::Snapshot(format!("simulated crash {at}")));
    }
    Ok(())
}

#[cfg(not(test))]
fn fail_point(_at: &'static str) -> Result<(), StoreError> {
    Ok(())
}

#[cfg(test)]
mod tests;
