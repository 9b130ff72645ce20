//! The snapshot file on disk, which only moves forward, and the handle
//! openraft streams snapshots through ([`SnapshotData`]): a received snapshot
//! is written chunk by chunk to a temporary file, bounded in size, instead of
//! growing a buffer in memory, and installed from that file.

use std::io::{BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncSeek, AsyncWrite, ReadBuf};

use crate::LogId;
use crate::error::StoreError;

type Meta = crate::SnapshotMeta;

/// The largest snapshot a member accepts from a peer (etcd's largest quota).
pub const MAX_SNAPSHOT_BYTES: u64 = 8 << 30;

/// The name of the current snapshot in the data directory's `snapshots/`.
pub const SNAPSHOT_FILE: &str = "snapshot.bin";

/// Temporary files (being written or received) end with this.
pub(crate) const TMP_SUFFIX: &str = ".snap-tmp";

/// The data directory's snapshot file. Builds and installs replace it through
/// [`SnapshotFiles::publish`] under one lock, so it never moves back to an
/// older `last_log_id`, and two writers never share a temporary file.
pub struct SnapshotFiles {
    dir: PathBuf,
    path: PathBuf,
    /// The `last_log_id` of the file now in place (`None`: no valid file).
    published: Mutex<Option<LogId>>,
    seq: AtomicU64,
}

/// Held while the snapshot file (and, on install, the state it describes) changes.
pub struct PublishGuard<'a>(MutexGuard<'a, Option<LogId>>);

impl SnapshotFiles {
    /// The snapshot files of data directory `dir`. Temporary files left by a
    /// crash are removed.
    pub fn open(dir: &Path) -> SnapshotFiles {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().ends_with(TMP_SUFFIX) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        let files = SnapshotFiles {
            dir: dir.to_path_buf(),
            path: dir.join(SNAPSHOT_FILE),
            published: Mutex::new(None),
            seq: AtomicU64::new(0),
        };
        let current = files.read_current().ok().flatten().map(|(meta, _)| meta);
        *files.published.lock().unwrap_or_else(|e| e.into_inner()) =
            current.and_then(|m| m.last_log_id);
        files
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The current file, open at its start, and its metadata after checking
    /// its structure and checksum (read through once, never held whole);
    /// `None` when there is none. A damaged file is an error (the caller
    /// decides).
    pub fn read_current(&self) -> Result<Option<(Meta, std::fs::File)>, StoreError> {
        let mut f = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(StoreError::Snapshot(format!(
                    "reading {}: {e}",
                    self.path.display()
                )));
            }
        };
        // Read through the handle that is returned, so a file replaced in
        // between cannot pair one file's metadata with another's bytes.
        let (header, _) = crate::snapshot::verify(BufReader::with_capacity(1 << 20, &f), false)
            .map_err(|e| StoreError::Snapshot(format!("{}: {e}", self.path.display())))?;
        f.seek(SeekFrom::Start(0))
            .map_err(|e| StoreError::Snapshot(format!("reading {}: {e}", self.path.display())))?;
        Ok(Some((header.meta, f)))
    }

    /// Take the lock that every change of the file holds.
    pub fn lock(&self) -> PublishGuard<'_> {
        PublishGuard(self.published.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Make `tmp` (a synced temporary file from [`SnapshotFiles::create_tmp`]
    /// or [`SnapshotFiles::receive`], holding a snapshot up to `last_log_id`)
    /// the current file, unless the file in place already covers as much:
    /// then nothing changes, `tmp` is removed and `false` is returned.
    /// Renamed into place, then the directory synced; handles open on `tmp`
    /// keep reading it either way.
    pub fn publish(
        &self,
        guard: &mut PublishGuard<'_>,
        last_log_id: Option<LogId>,
        tmp: &Path,
    ) -> Result<bool, StoreError> {
        if guard.0.is_some() && *guard.0 >= last_log_id {
            let _ = std::fs::remove_file(tmp);
            return Ok(false);
        }
        if let Err(e) = std::fs::rename(tmp, &self.path) {
            let _ = std::fs::remove_file(tmp);
            return Err(StoreError::Snapshot(format!(
                "moving {} into place: {e}",
                tmp.display()
            )));
        }
        if let Ok(d) = std::fs::File::open(&self.dir) {
            let _ = d.sync_all();
        }
        *guard.0 = last_log_id;
        Ok(true)
    }

    /// A fresh temporary file name in the data directory: unique per writer.
    fn tmp_path(&self, what: &str) -> PathBuf {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        self.dir.join(format!(
            "snapshot.{what}-{}-{n}{TMP_SUFFIX}",
            std::process::id()
        ))
    }

    /// A new, empty temporary file of this directory (read and write), for a
    /// snapshot being built; the caller removes it unless it is published.
    pub fn create_tmp(&self, what: &str) -> Result<(PathBuf, std::fs::File), StoreError> {
        let path = self.tmp_path(what);
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| StoreError::Snapshot(format!("creating {}: {e}", path.display())))?;
        Ok((path, f))
    }

    /// An empty temporary file that a received snapshot is written to; it is
    /// removed when the handle is dropped.
    pub fn receive(&self) -> Result<SnapshotData, StoreError> {
        let (path, f) = self.create_tmp("recv")?;
        Ok(SnapshotData {
            inner: Inner::File(tokio::fs::File::from_std(f)),
            pos: 0,
            limit: MAX_SNAPSHOT_BYTES,
            remove_on_drop: Some(path),
        })
    }
}

/// A snapshot as openraft reads and writes it: an open snapshot file (the
/// current one, or one just built), or a temporary file being received. Writes and
/// seeks beyond [`MAX_SNAPSHOT_BYTES`] fail, so a peer cannot make a member
/// allocate or store without bound.
pub struct SnapshotData {
    inner: Inner,
    pos: u64,
    limit: u64,
    remove_on_drop: Option<PathBuf>,
}

enum Inner {
    Memory(std::io::Cursor<Vec<u8>>),
    File(tokio::fs::File),
}

impl SnapshotData {
    /// A snapshot held in memory (tests; an install copies it to a file).
    pub fn memory(bytes: Vec<u8>) -> SnapshotData {
        SnapshotData {
            inner: Inner::Memory(std::io::Cursor::new(bytes)),
            pos: 0,
            limit: MAX_SNAPSHOT_BYTES,
            remove_on_drop: None,
        }
    }

    /// An open snapshot file, read from its start.
    pub fn file(f: std::fs::File) -> SnapshotData {
        SnapshotData {
            inner: Inner::File(tokio::fs::File::from_std(f)),
            pos: 0,
            limit: MAX_SNAPSHOT_BYTES,
            remove_on_drop: None,
        }
    }

    /// The snapshot as a temporary file of the snapshot directory, to be
    /// read as a stream (never whole into memory) and published by an
    /// install: the file it was received into, or else a copy.
    pub async fn into_file(mut self, files: &SnapshotFiles) -> Result<ReceivedFile, StoreError> {
        use tokio::io::{AsyncSeekExt, AsyncWriteExt};
        let io = |e: std::io::Error| StoreError::Snapshot(format!("storing a snapshot: {e}"));
        self.flush().await.map_err(io)?;
        if matches!(self.inner, Inner::File(_))
            && let Some(path) = self.remove_on_drop.take()
        {
            let inner = std::mem::replace(&mut self.inner, Inner::Memory(Default::default()));
            let Inner::File(f) = inner else {
                unreachable!("checked above")
            };
            let file = f.into_std().await;
            return Ok(ReceivedFile { path, file });
        }
        let (path, file) = files.create_tmp("recv")?;
        let received = ReceivedFile { path, file };
        let mut out = tokio::fs::File::from_std(received.file.try_clone().map_err(io)?);
        self.seek(SeekFrom::Start(0)).await.map_err(io)?;
        tokio::io::copy(&mut self, &mut out).await.map_err(io)?;
        out.flush().await.map_err(io)?;
        Ok(received)
    }

    fn too_large(&self, end: u64) -> std::io::Error {
        std::io::Error::other(format!(
            "snapshot would reach {end} bytes, above the limit of {} bytes",
            self.limit
        ))
    }
}

/// A snapshot in a temporary file of the snapshot directory, removed on drop
/// unless it was published (moved into place) first.
pub struct ReceivedFile {
    pub path: PathBuf,
    pub file: std::fs::File,
}

impl Drop for ReceivedFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Drop for SnapshotData {
    fn drop(&mut self) {
        if let Some(p) = self.remove_on_drop.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

impl AsyncRead for SnapshotData {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let res = match &mut this.inner {
            Inner::Memory(c) => Pin::new(c).poll_read(cx, buf),
            Inner::File(f) => Pin::new(f).poll_read(cx, buf),
        };
        if let Poll::Ready(Ok(())) = res {
            this.pos += (buf.filled().len() - before) as u64;
        }
        res
    }
}

impl AsyncWrite for SnapshotData {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let end = this.pos.saturating_add(buf.len() as u64);
        if end > this.limit {
            return Poll::Ready(Err(this.too_large(end)));
        }
        let res = match &mut this.inner {
            Inner::Memory(c) => Pin::new(c).poll_write(cx, buf),
            Inner::File(f) => Pin::new(f).poll_write(cx, buf),
        };
        if let Poll::Ready(Ok(n)) = res {
            this.pos += n as u64;
        }
        res
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.get_mut().inner {
            Inner::Memory(c) => Pin::new(c).poll_flush(cx),
            Inner::File(f) => Pin::new(f).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.get_mut().inner {
            Inner::Memory(c) => Pin::new(c).poll_shutdown(cx),
            Inner::File(f) => Pin::new(f).poll_shutdown(cx),
        }
    }
}

impl AsyncSeek for SnapshotData {
    fn start_seek(self: Pin<&mut Self>, position: SeekFrom) -> std::io::Result<()> {
        let this = self.get_mut();
        if let SeekFrom::Start(n) = position
            && n > this.limit
        {
            return Err(this.too_large(n));
        }
        match &mut this.inner {
            Inner::Memory(c) => Pin::new(c).start_seek(position),
            Inner::File(f) => Pin::new(f).start_seek(position),
        }
    }

    fn poll_complete(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<u64>> {
        let this = self.get_mut();
        let res = match &mut this.inner {
            Inner::Memory(c) => Pin::new(c).poll_complete(cx),
            Inner::File(f) => Pin::new(f).poll_complete(cx),
        };
        if let Poll::Ready(Ok(p)) = res {
            this.pos = p;
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

    use super::*;
    use crate::snapshot::SnapshotWriter;

    #[tokio::test]
    async fn a_received_snapshot_is_bounded_and_removed_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let files = SnapshotFiles::open(dir.path());
        let mut data = files.receive().unwrap();
        data.limit = 10;
        data.write_all(b"0123456789").await.unwrap();
        assert!(data.write_all(b"x").await.is_err(), "past the limit");
        assert!(data.seek(SeekFrom::Start(11)).await.is_err());
        data.seek(SeekFrom::Start(2)).await.unwrap();
        data.write_all(b"ab").await.unwrap();
        data.seek(SeekFrom::Start(0)).await.unwrap();
        let mut back = Vec::new();
        data.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"01ab456789");
        let tmp = data.remove_on_drop.clone().unwrap();
        assert!(tmp.exists());
        drop(data);
        assert!(!tmp.exists(), "an uninstalled received snapshot is removed");
    }

    #[test]
    fn the_file_never_moves_back() {
        let dir = tempfile::tempdir().unwrap();
        let at = |index| Some(crate::log_id(1, 1, index));
        let body = |files: &SnapshotFiles, index| {
            let header = crate::snapshot::Header {
                meta: crate::snapshot::Meta {
                    last_log_id: at(index),
                    ..Default::default()
                },
                revision_offset: 0,
            };
            let (path, file) = files.create_tmp("test").unwrap();
            SnapshotWriter::new(&file, &header)
                .unwrap()
                .finish()
                .unwrap();
            path
        };
        let files = SnapshotFiles::open(dir.path());
        let publish = |files: &SnapshotFiles, index| {
            let tmp = body(files, index);
            files.publish(&mut files.lock(), at(index), &tmp).unwrap()
        };
        assert!(publish(&files, 10));
        assert!(!publish(&files, 5));
        assert!(!publish(&files, 10));
        let (meta, _) = files.read_current().unwrap().unwrap();
        assert_eq!(meta.last_log_id, at(10));
        // A reopened directory remembers what is in place.
        let files = SnapshotFiles::open(dir.path());
        assert!(!publish(&files, 9));
        assert!(publish(&files, 11));
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            left,
            vec![SNAPSHOT_FILE.to_string()],
            "no temporary file is left"
        );
    }
}
