//! Namespace changes (create, link, remove, rename) not yet made durable by
//! an fsync of a directory they touch. Each is applied to the backing
//! directory at once, so lookups stay plain pass-through, and is recorded
//! with what undoes it; a removed or replaced entry is parked in a stash
//! directory until the removal is durable.
//!
//! Changes become durable in order, as in a journaling filesystem: an fsync
//! of a directory makes durable the last change touching it and every change
//! before that one. Undoing a suffix of the journal in reverse order is
//! therefore always consistent.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use super::sys;

/// A directory as the journal sees it: its handle, and its backing identity
/// (device, inode) to match fsyncs against.
#[derive(Clone)]
pub(crate) struct Dir {
    pub(crate) fd: Arc<OwnedFd>,
    pub(crate) id: (u64, u64),
}

enum Undo {
    /// Undoes a create, mkdir, mknod, symlink or link.
    Remove { dir: Dir, name: OsString },
    /// Undoes an unlink or rmdir: the entry waits in the stash.
    Restore {
        dir: Dir,
        name: OsString,
        stashed: OsString,
    },
    /// Undoes a rename, putting back the entry it replaced, if any.
    MoveBack {
        from: Dir,
        from_name: OsString,
        to: Dir,
        to_name: OsString,
        replaced: Option<OsString>,
    },
}

impl Undo {
    fn touches(&self, id: (u64, u64)) -> bool {
        match self {
            Undo::Remove { dir, .. } | Undo::Restore { dir, .. } => dir.id == id,
            Undo::MoveBack { from, to, .. } => from.id == id || to.id == id,
        }
    }

    fn stashed(&self) -> Option<&OsStr> {
        match self {
            Undo::Restore { stashed, .. } => Some(stashed.as_os_str()),
            Undo::MoveBack { replaced, .. } => replaced.as_deref(),
            Undo::Remove { .. } => None,
        }
    }
}

/// The unsynced namespace changes of one mount, oldest first.
pub(crate) struct Journal {
    stash: OwnedFd,
    next_stash: u64,
    pending: Vec<Undo>,
}

/// Remove an entry whatever its kind (a directory is empty by construction:
/// anything made inside it later was undone first).
fn remove_entry(dir: &OwnedFd, name: &OsStr) -> io::Result<()> {
    match sys::unlink_at(dir.as_fd(), name, false) {
        Err(e) if e.raw_os_error() == Some(libc::EISDIR) => sys::unlink_at(dir.as_fd(), name, true),
        other => other,
    }
}

impl Journal {
    pub(crate) fn new(stash: OwnedFd) -> Journal {
        Journal {
            stash,
            next_stash: 0,
            pending: Vec::new(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.pending.len()
    }

    /// `name` was just created in `dir`.
    pub(crate) fn created(&mut self, dir: Dir, name: &OsStr) {
        self.pending.push(Undo::Remove {
            dir,
            name: name.to_owned(),
        });
    }

    /// Move `name` out of `dir` into the stash (an unlink or rmdir that can be undone).
    pub(crate) fn remove(&mut self, dir: Dir, name: &OsStr) -> io::Result<()> {
        let stashed = self.park(&dir, name)?;
        self.pending.push(Undo::Restore {
            dir,
            name: name.to_owned(),
            stashed,
        });
        Ok(())
    }

    fn park(&mut self, dir: &Dir, name: &OsStr) -> io::Result<OsString> {
        let stashed = OsString::from(format!("{}", self.next_stash));
        self.next_stash += 1;
        sys::rename_at(
            dir.fd.as_fd(),
            name,
            self.stash.as_fd(),
            &stashed,
            libc::RENAME_NOREPLACE,
        )?;
        Ok(stashed)
    }

    /// Rename, parking an entry that `to_name` replaces. The caller checked
    /// that the kinds allow the replacement.
    pub(crate) fn rename(
        &mut self,
        from: Dir,
        from_name: &OsStr,
        to: Dir,
        to_name: &OsStr,
        replaces: bool,
    ) -> io::Result<()> {
        let replaced = if replaces {
            Some(self.park(&to, to_name)?)
        } else {
            None
        };
        if let Err(e) = sys::rename_at(
            from.fd.as_fd(),
            from_name,
            to.fd.as_fd(),
            to_name,
            libc::RENAME_NOREPLACE,
        ) {
            if let Some(r) = &replaced {
                let _ = sys::rename_at(self.stash.as_fd(), r, to.fd.as_fd(), to_name, 0);
            }
            return Err(e);
        }
        self.pending.push(Undo::MoveBack {
            from,
            from_name: from_name.to_owned(),
            to,
            to_name: to_name.to_owned(),
            replaced,
        });
        Ok(())
    }

    /// An fsync of the directory `id`: its changes, and all before them, are durable.
    pub(crate) fn sync_dir(&mut self, id: (u64, u64)) {
        if let Some(last) = self.pending.iter().rposition(|u| u.touches(id)) {
            let done: Vec<Undo> = self.pending.drain(..=last).collect();
            self.forget(done);
        }
    }

    /// Everything is durable (a clean unmount).
    pub(crate) fn sync_all(&mut self) {
        let done = std::mem::take(&mut self.pending);
        self.forget(done);
    }

    fn forget(&self, done: Vec<Undo>) {
        for undo in done {
            if let Some(s) = undo.stashed() {
                let _ = remove_entry(&self.stash, s);
            }
        }
    }

    /// A power cut: undo every unsynced change, newest first. Returns how
    /// many were undone and the errors met (a test should see none).
    pub(crate) fn roll_back(&mut self) -> (usize, Vec<String>) {
        let mut errors = Vec::new();
        let n = self.pending.len();
        while let Some(undo) = self.pending.pop() {
            let res = match &undo {
                Undo::Remove { dir, name } => remove_entry(&dir.fd, name),
                Undo::Restore { dir, name, stashed } => {
                    sys::rename_at(self.stash.as_fd(), stashed, dir.fd.as_fd(), name, 0)
                }
                Undo::MoveBack {
                    from,
                    from_name,
                    to,
                    to_name,
                    replaced,
                } => sys::rename_at(to.fd.as_fd(), to_name, from.fd.as_fd(), from_name, 0)
                    .and_then(|()| match replaced {
                        Some(r) => sys::rename_at(self.stash.as_fd(), r, to.fd.as_fd(), to_name, 0),
                        None => Ok(()),
                    }),
            };
            if let Err(e) = res {
                errors.push(format!("undoing a namespace change: {e}"));
            }
        }
        (n, errors)
    }
}
