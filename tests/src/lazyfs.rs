//! A FUSE filesystem for power-cut tests, in the spirit of Jepsen's lazyfs:
//! it passes every operation through to a backing directory but keeps what
//! is not yet durable in memory, and [`LazyMount::power_cut`] throws that
//! away, as a machine losing power would.
//!
//! What is durable, and when:
//! - File data reaches the backing file only on fsync/fdatasync of that file.
//!   Until then writes and truncations live in a per-file page cache that
//!   reads see (read-your-writes). `close()` makes nothing durable.
//! - Namespace changes (create, mkdir, mknod, symlink, link, unlink, rmdir,
//!   rename) are applied to the backing directory at once but recorded with
//!   their undo; they become durable on an fsync of a directory they touch,
//!   together with every earlier change (in order, like a journaling
//!   filesystem). A file fsync does not make its own name durable: a new file
//!   needs an fsync of its directory too, as RocksDB does.
//! - Mode, owner and times pass through and are durable at once.
//!
//! A power cut drops every unsynced page, undoes unsynced namespace changes
//! newest first, and makes every further operation on the mount fail with
//! EIO. The backing directory then holds only synced state; remount it with
//! [`LazyMount::remount`]. A clean unmount makes everything durable, as a
//! clean shutdown would.
//!
//! Needs `/dev/fuse`, and root or Debian's `fuse3` (`fusermount3`).

mod cache;
mod fs;
mod journal;
mod state;
mod sys;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub use state::CutReport;

/// A mounted lazyfs; unmounts cleanly when dropped.
pub struct LazyMount {
    backing: PathBuf,
    mountpoint: PathBuf,
    state: Arc<Mutex<state::State>>,
    session: Option<fuser::BackgroundSession>,
}

impl LazyMount {
    /// Mount `backing` at `mountpoint` (both are created if missing).
    pub fn mount(backing: impl AsRef<Path>, mountpoint: impl AsRef<Path>) -> io::Result<LazyMount> {
        let (backing, mountpoint) = (backing.as_ref(), mountpoint.as_ref());
        std::fs::create_dir_all(backing)?;
        std::fs::create_dir_all(mountpoint)?;
        // Entries left in a stash by a harness that died: their removal is
        // taken as durable.
        let stash = backing.join(state::STASH);
        if stash.exists() {
            std::fs::remove_dir_all(&stash)?;
        }
        std::fs::create_dir(&stash)?;
        let state = Arc::new(Mutex::new(state::State::new(backing)?));
        let mut config = fuser::Config::default();
        config.mount_options = vec![
            fuser::MountOption::FSName("lazyfs".into()),
            fuser::MountOption::Subtype("lazyfs".into()),
        ];
        let session = fuser::spawn_mount(
            fs::LazyFs {
                state: state.clone(),
            },
            mountpoint,
            &config,
        )
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "mounting lazyfs at {} (needs /dev/fuse and root or fusermount3): {e}",
                    mountpoint.display()
                ),
            )
        })?;
        Ok(LazyMount {
            backing: backing.to_path_buf(),
            mountpoint: mountpoint.to_path_buf(),
            state,
            session: Some(session),
        })
    }

    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    pub fn backing(&self) -> &Path {
        &self.backing
    }

    /// Cut the power: drop unsynced data and namespace changes, and fail all
    /// further I/O on this mount. An error means the backing directory could
    /// not be put back to its synced state (a bug in this filesystem).
    pub fn power_cut(&self) -> io::Result<CutReport> {
        let (report, errors) = self
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .power_cut();
        if errors.is_empty() {
            Ok(report)
        } else {
            Err(io::Error::other(errors.join("; ")))
        }
    }

    /// Namespace changes not yet made durable by a directory fsync.
    pub fn unsynced_namespace_ops(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .unsynced_namespace_ops()
    }

    /// Unmount (cleanly, unless the power was cut) and mount the backing
    /// directory again: the state a machine boots into.
    pub fn remount(mut self) -> io::Result<LazyMount> {
        self.detach()?;
        LazyMount::mount(&self.backing, &self.mountpoint)
    }

    /// Unmount; everything not lost to a power cut becomes durable.
    pub fn unmount(mut self) -> io::Result<()> {
        self.detach()
    }

    fn detach(&mut self) -> io::Result<()> {
        let Some(session) = self.session.take() else {
            return Ok(());
        };
        let synced = self
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .sync_all();
        let unmounted = unmount(&self.mountpoint);
        // The session thread ends when the kernel closes the connection;
        // joining could wait on a process that still holds a file open.
        drop(session);
        let _ = std::fs::remove_dir(self.backing.join(state::STASH));
        synced.and(unmounted)
    }
}

impl Drop for LazyMount {
    fn drop(&mut self) {
        let _ = self.detach();
    }
}

/// Unmount, lazily if something still uses the mount.
fn unmount(mountpoint: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(mountpoint.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    for flags in [0, libc::MNT_DETACH] {
        // SAFETY: a NUL-terminated path.
        if unsafe { libc::umount2(path.as_ptr(), flags) } == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EBUSY) => continue,
            Some(libc::EPERM) => break,
            _ => return Err(e),
        }
    }
    // Not root: the setuid helper from Debian's fuse3 unmounts for us.
    let out = std::process::Command::new("fusermount3")
        .args(["-u", "-z", "--"])
        .arg(mountpoint)
        .output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "fusermount3 -u {}: {}",
            mountpoint.display(),
            String::from_utf8_lossy(&out.stderr)
        )))
    }
}

#[cfg(test)]
mod tests;
