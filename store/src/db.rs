//! Opens the member's one RocksDB (in the data directory's `db/`) with its
//! column families, checks the data format marker, and wraps reads and writes
//! with typed errors. The RocksDB handle itself is private to the storage
//! modules (`log_store`, `state_machine`, `snapshot`, `read`); a member reads
//! through `read`.

use std::path::Path;
use std::sync::Arc;

use rocksdb::{ColumnFamily, ColumnFamilyDescriptor, DB, Options, WriteBatch, WriteOptions};

use crate::codec;
use crate::data_dir::DataDir;
use crate::error::StoreError;

/// The on-disk format this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;

pub const CF_RAFT_LOG: &str = "raft_log";
pub const CF_RAFT_META: &str = "raft_meta";
pub const CF_OBJECTS: &str = "objects";
pub const CF_EVENTS: &str = "events";
pub const CF_STORE_META: &str = "store_meta";
const ALL_CFS: [&str; 5] = [
    CF_RAFT_LOG,
    CF_RAFT_META,
    CF_OBJECTS,
    CF_EVENTS,
    CF_STORE_META,
];

/// The member's RocksDB, shared by the log store, the state machine and readers.
pub struct Db {
    pub(crate) db: DB,
    dir: DataDir,
}

impl Db {
    /// Open (or create) the store of data directory `data_dir` (RocksDB in
    /// its `db/`; an old flat layout is moved first, see `data_dir`). A
    /// directory holding data of another format, or data RocksDB cannot
    /// verify, is refused with the reason.
    pub fn open(data_dir: &Path) -> Result<Arc<Db>, StoreError> {
        let dir = DataDir::prepare(data_dir)?;
        let path = dir.db();
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_paranoid_checks(true);
        // Bound the WAL so a steady churn does not grow the directory without end.
        opts.set_max_total_wal_size(64 << 20);
        // RocksDB's own info log: warnings only, bounded in size and count.
        opts.set_log_level(rocksdb::LogLevel::Warn);
        opts.set_max_log_file_size(1 << 20);
        opts.set_keep_log_file_num(4);
        opts.set_max_background_jobs(2);
        // Bound memtable memory across all column families (RocksDB's default
        // is 64 MiB per CF and memtable, several per CF): flushes start sooner,
        // resident memory stays flat under write load.
        opts.set_db_write_buffer_size(64 << 20);
        // Applied entries are written without the WAL (the Raft log, which
        // has one, is their record; see `apply`). Flushing every column
        // family at one point keeps what a power cut leaves consistent
        // across them: the state at some applied id, replayed from there.
        opts.set_atomic_flush(true);
        let cfs = ALL_CFS.iter().map(|name| {
            let mut cf_opts = Options::default();
            // Compress only the last level, where (with dynamic level sizes)
            // nearly all data settles: every byte still reaches the disk
            // compressed in the end, but flushes and the compactions above
            // it no longer compress and decompress each value again. With
            // LZ4 on every level, compaction's LZ4 took a fifth of both
            // cores while 150,000 pods were created through the API.
            cf_opts.set_compression_type(rocksdb::DBCompressionType::None);
            cf_opts.set_bottommost_compression_type(rocksdb::DBCompressionType::Lz4);
            cf_opts.set_write_buffer_size(16 << 20);
            cf_opts.set_max_write_buffer_number(2);
            if *name == CF_OBJECTS {
                // Applying a create looks the key up first, and the key is
                // usually new: a bloom filter answers "absent" without
                // searching every level's index and data blocks.
                let mut table = rocksdb::BlockBasedOptions::default();
                table.set_bloom_filter(10.0, false);
                table.set_whole_key_filtering(true);
                cf_opts.set_block_based_table_factory(&table);
            }
            if *name == CF_EVENTS || *name == CF_RAFT_LOG {
                // Ranges of these CFs are dropped with delete_range; compacting
                // files full of tombstones early gives the space back.
                cf_opts.set_level_compaction_dynamic_level_bytes(true);
            }
            ColumnFamilyDescriptor::new(*name, cf_opts)
        });
        let db =
            DB::open_cf_descriptors(&opts, path, cfs).map_err(|source| StoreError::OpenDb {
                path: path.display().to_string(),
                source,
            })?;
        let db = Db { db, dir };
        db.check_format()?;
        Ok(Arc::new(db))
    }

    /// Open a data directory for reading only (`keel replay`): nothing is
    /// created, moved or written, and no lock is taken, so it may be a copy
    /// or the directory of a stopped member. A directory without a store,
    /// or of another format, is refused.
    pub fn open_read_only(data_dir: &Path) -> Result<Arc<Db>, StoreError> {
        let dir = DataDir::new(data_dir);
        let path = dir.db();
        if !path.join("CURRENT").exists() {
            return Err(StoreError::DataDir {
                path: data_dir.display().to_string(),
                detail: "holds no store (no db/CURRENT)".into(),
            });
        }
        let mut opts = Options::default();
        opts.set_paranoid_checks(true);
        opts.set_log_level(rocksdb::LogLevel::Warn);
        let db = DB::open_cf_for_read_only(&opts, path, ALL_CFS, false).map_err(|source| {
            StoreError::OpenDb {
                path: path.display().to_string(),
                source,
            }
        })?;
        let db = Db { db, dir };
        match db.get(CF_STORE_META, codec::store_meta::FORMAT)? {
            Some(v) if v.as_slice() == FORMAT_VERSION.to_be_bytes() => Ok(Arc::new(db)),
            _ => Err(StoreError::FormatVersion {
                path: data_dir.display().to_string(),
                found: 0,
                expected: FORMAT_VERSION,
            }),
        }
    }

    fn check_format(&self) -> Result<(), StoreError> {
        match self.get(CF_STORE_META, codec::store_meta::FORMAT)? {
            None => {
                // A fresh directory: nothing else may be in it.
                let has_data = ALL_CFS.iter().any(|cf| {
                    self.db
                        .iterator_cf(self.cf(cf), rocksdb::IteratorMode::Start)
                        .next()
                        .is_some()
                });
                if has_data {
                    return Err(StoreError::Corrupt {
                        cf: CF_STORE_META,
                        key: "format".into(),
                        detail: "the format marker is missing but the store holds data".into(),
                    });
                }
                let mut wo = WriteOptions::default();
                wo.set_sync(true);
                self.db
                    .put_cf_opt(
                        self.cf(CF_STORE_META),
                        codec::store_meta::FORMAT,
                        FORMAT_VERSION.to_be_bytes(),
                        &wo,
                    )
                    .map_err(|source| StoreError::Io {
                        step: "writing the format marker",
                        source,
                    })
            }
            Some(v) => {
                let found = <[u8; 4]>::try_from(v.as_slice())
                    .map(u32::from_be_bytes)
                    .map_err(|_| StoreError::Corrupt {
                        cf: CF_STORE_META,
                        key: "format".into(),
                        detail: format!("expected 4 bytes, found {}", v.len()),
                    })?;
                if found != FORMAT_VERSION {
                    return Err(StoreError::FormatVersion {
                        path: self.dir.root().display().to_string(),
                        found,
                        expected: FORMAT_VERSION,
                    });
                }
                Ok(())
            }
        }
    }

    /// The data directory's parts.
    pub fn dir(&self) -> &DataDir {
        &self.dir
    }

    pub fn cf(&self, name: &str) -> &ColumnFamily {
        // Every CF is opened in `open`; a missing handle is a programming error.
        self.db
            .cf_handle(name)
            .expect("column family opened at start")
    }

    pub fn get(&self, cf: &'static str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.db
            .get_cf(self.cf(cf), key)
            .map_err(|source| StoreError::Io {
                step: "reading",
                source,
            })
    }

    /// Read and decode a bincode value, naming the CF and key if it is corrupt.
    pub fn get_decoded<T: serde::de::DeserializeOwned>(
        &self,
        cf: &'static str,
        key: &[u8],
    ) -> Result<Option<T>, StoreError> {
        match self.get(cf, key)? {
            None => Ok(None),
            Some(bytes) => codec::decode(&bytes)
                .map(Some)
                .map_err(|detail| StoreError::Corrupt {
                    cf,
                    key: String::from_utf8_lossy(key).into_owned(),
                    detail,
                }),
        }
    }

    /// Write a batch durably: it is on disk (fsync'd WAL) when this returns.
    pub fn write_synced(&self, batch: WriteBatch, step: &'static str) -> Result<(), StoreError> {
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db
            .write_opt(batch, &wo)
            .map_err(|source| StoreError::Io { step, source })
    }

    /// Flush every column family's memtables to SST files, all at one
    /// point (atomic flush): what was written before the call, with or
    /// without the WAL, is on disk when this returns.
    pub fn flush(&self) -> Result<(), StoreError> {
        let cfs: Vec<_> = ALL_CFS.iter().map(|cf| self.cf(cf)).collect();
        self.db
            .flush_cfs_opt(&cfs, &rocksdb::FlushOptions::default())
            .map_err(|source| StoreError::Io {
                step: "flushing memtables",
                source,
            })
    }

    /// Bytes on disk in the store's parts of the data directory (SST, WAL,
    /// manifest, snapshot file), after flushing memtables so that what is
    /// counted is what would persist.
    pub fn disk_usage(&self) -> Result<u64, StoreError> {
        self.flush()?;
        let mut total = 0;
        for part in [self.dir.db(), self.dir.snapshots()] {
            let entries = std::fs::read_dir(part).map_err(|e| StoreError::DataDir {
                path: self.dir.root().display().to_string(),
                detail: format!("cannot list {}: {e}", part.display()),
            })?;
            for entry in entries.flatten() {
                if let Ok(meta) = entry.metadata()
                    && meta.is_file()
                {
                    total += meta.len();
                }
            }
        }
        Ok(total)
    }

    /// Ask RocksDB to compact a key range in the background of the caller's
    /// thread, so tombstones from delete_range turn into free space.
    pub fn reclaim(&self, cf: &'static str, end: &[u8]) {
        self.db
            .compact_range_cf(self.cf(cf), None::<&[u8]>, Some(end));
    }
}
