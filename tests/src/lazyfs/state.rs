//! The state of one mount: the inodes it has handed to the kernel (each an
//! `O_PATH` handle on a backing inode), their unsynced data ([`Dirty`]) and
//! the unsynced namespace changes ([`Journal`]). Every operation here works on
//! the backing directory; `fs.rs` maps FUSE requests onto them.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{FileAttr, FileType, INodeNo, RenameFlags, TimeOrNow};

use super::cache::Dirty;
use super::journal::{Dir, Journal};
use super::sys;

/// The backing root's entry that holds removed entries until their removal is durable.
pub(crate) const STASH: &str = ".lazyfs-stash";

pub(crate) struct Node {
    pub(crate) fd: Arc<OwnedFd>,
    id: (u64, u64),
    kind: FileType,
    pub(crate) lookups: u64,
    pub(crate) opens: u64,
    /// Opened on first use, for regular files.
    file: Option<File>,
    dirty: Option<Dirty>,
}

/// What a power cut threw away.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CutReport {
    /// Files that held unsynced data.
    pub files: usize,
    /// Unsynced bytes dropped (counted in whole cached pages).
    pub bytes: u64,
    /// Namespace changes (create, rename, remove) undone.
    pub namespace_ops: usize,
}

pub(crate) struct State {
    pub(crate) dead: bool,
    pub(crate) nodes: HashMap<u64, Node>,
    by_id: HashMap<(u64, u64), u64>,
    next_ino: u64,
    pub(crate) journal: Journal,
    pub(crate) listings: HashMap<u64, Vec<(OsString, FileType, u64)>>,
    next_fh: u64,
}

fn kind_of(mode: u32) -> FileType {
    match mode & libc::S_IFMT {
        libc::S_IFDIR => FileType::Directory,
        libc::S_IFLNK => FileType::Symlink,
        libc::S_IFIFO => FileType::NamedPipe,
        libc::S_IFSOCK => FileType::Socket,
        libc::S_IFCHR => FileType::CharDevice,
        libc::S_IFBLK => FileType::BlockDevice,
        _ => FileType::RegularFile,
    }
}

fn time(sec: i64, nsec: i64) -> SystemTime {
    if sec >= 0 {
        UNIX_EPOCH + Duration::new(sec as u64, nsec as u32)
    } else {
        UNIX_EPOCH
    }
}

fn timespec(t: TimeOrNow) -> libc::timespec {
    match t {
        TimeOrNow::Now => libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_NOW,
        },
        TimeOrNow::SpecificTime(t) => {
            let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
            libc::timespec {
                tv_sec: d.as_secs() as libc::time_t,
                tv_nsec: d.subsec_nanos() as libc::c_long,
            }
        }
    }
}

fn err(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

fn is_empty_dir(fd: &OwnedFd) -> io::Result<bool> {
    Ok(std::fs::read_dir(sys::proc_path(fd.as_fd()))?
        .next()
        .is_none())
}

impl State {
    pub(crate) fn new(backing: &Path) -> io::Result<State> {
        let root = sys::open_dir_path(backing)?;
        let stash = sys::open_path(root.as_fd(), OsStr::new(STASH))?;
        let st = sys::stat(root.as_fd())?;
        let id = (st.st_dev, st.st_ino);
        let mut state = State {
            dead: false,
            nodes: HashMap::new(),
            by_id: HashMap::new(),
            next_ino: 2,
            journal: Journal::new(stash),
            listings: HashMap::new(),
            next_fh: 1,
        };
        state.by_id.insert(id, INodeNo::ROOT.0);
        state.nodes.insert(
            INodeNo::ROOT.0,
            Node {
                fd: Arc::new(root),
                id,
                kind: FileType::Directory,
                lookups: 1,
                opens: 0,
                file: None,
                dirty: None,
            },
        );
        Ok(state)
    }

    pub(crate) fn node(&mut self, ino: INodeNo) -> io::Result<&mut Node> {
        self.nodes.get_mut(&ino.0).ok_or_else(|| err(libc::ESTALE))
    }

    pub(crate) fn dir(&mut self, ino: INodeNo) -> io::Result<Dir> {
        let n = self.node(ino)?;
        if n.kind != FileType::Directory {
            return Err(err(libc::ENOTDIR));
        }
        Ok(Dir {
            fd: n.fd.clone(),
            id: n.id,
        })
    }

    /// The stash is invisible, and its name cannot be taken.
    pub(crate) fn check_name(parent: INodeNo, name: &OsStr) -> io::Result<()> {
        if parent == INodeNo::ROOT && name == OsStr::new(STASH) {
            return Err(err(libc::EPERM));
        }
        Ok(())
    }

    pub(crate) fn attr_of(&mut self, ino: u64) -> io::Result<FileAttr> {
        let n = self.nodes.get(&ino).ok_or_else(|| err(libc::ESTALE))?;
        let st = sys::stat(n.fd.as_fd())?;
        let mut size = st.st_size as u64;
        let mut blocks = st.st_blocks as u64;
        if let Some(d) = &n.dirty {
            size = d.len();
            blocks = blocks.max(size.div_ceil(512));
        }
        Ok(FileAttr {
            ino: INodeNo(ino),
            size,
            blocks,
            atime: time(st.st_atime, st.st_atime_nsec),
            mtime: time(st.st_mtime, st.st_mtime_nsec),
            ctime: time(st.st_ctime, st.st_ctime_nsec),
            crtime: UNIX_EPOCH,
            kind: kind_of(st.st_mode),
            perm: (st.st_mode & 0o7777) as u16,
            nlink: st.st_nlink as u32,
            uid: st.st_uid,
            gid: st.st_gid,
            rdev: st.st_rdev as u32,
            blksize: 4096,
            flags: 0,
        })
    }

    /// Count a lookup of the entry `name` in `parent`, making a node if it is new.
    pub(crate) fn enter(&mut self, parent: INodeNo, name: &OsStr) -> io::Result<FileAttr> {
        let dir = self.dir(parent)?;
        let fd = sys::open_path(dir.fd.as_fd(), name)?;
        let st = sys::stat(fd.as_fd())?;
        let id = (st.st_dev, st.st_ino);
        let ino = match self.by_id.get(&id) {
            Some(&ino) => {
                self.node(INodeNo(ino))?.lookups += 1;
                ino
            }
            None => {
                let ino = self.next_ino;
                self.next_ino += 1;
                self.by_id.insert(id, ino);
                self.nodes.insert(
                    ino,
                    Node {
                        fd: Arc::new(fd),
                        id,
                        kind: kind_of(st.st_mode),
                        lookups: 1,
                        opens: 0,
                        file: None,
                        dirty: None,
                    },
                );
                ino
            }
        };
        self.attr_of(ino)
    }

    /// Drop a node nobody refers to, unless it still holds unsynced data
    /// (a later open must see it).
    pub(crate) fn maybe_drop(&mut self, ino: u64) {
        let Some(n) = self.nodes.get(&ino) else {
            return;
        };
        if ino == INodeNo::ROOT.0
            || n.lookups > 0
            || n.opens > 0
            || n.dirty.as_ref().is_some_and(|d| !d.is_clean())
        {
            return;
        }
        let id = n.id;
        self.nodes.remove(&ino);
        self.by_id.remove(&id);
    }

    /// The node's file for I/O, and its unsynced state.
    pub(crate) fn data(&mut self, ino: INodeNo) -> io::Result<(&File, &mut Dirty)> {
        let n = self.node(ino)?;
        if n.kind != FileType::RegularFile {
            return Err(err(libc::EINVAL));
        }
        if n.file.is_none() {
            let file = match sys::reopen(n.fd.as_fd(), libc::O_RDWR) {
                // A read-only file of another user: reads still work.
                Err(e) if e.raw_os_error() == Some(libc::EACCES) => {
                    sys::reopen(n.fd.as_fd(), libc::O_RDONLY)?
                }
                other => other?,
            };
            n.file = Some(file);
        }
        let file = n.file.as_ref().expect("opened above");
        if n.dirty.is_none() {
            n.dirty = Some(Dirty::new(file.metadata()?.len()));
        }
        Ok((file, n.dirty.as_mut().expect("made above")))
    }

    pub(crate) fn read(&mut self, ino: INodeNo, off: u64, size: usize) -> io::Result<Vec<u8>> {
        let (file, dirty) = self.data(ino)?;
        dirty.read(file, off, size)
    }

    pub(crate) fn write(&mut self, ino: INodeNo, off: u64, data: &[u8]) -> io::Result<()> {
        let (file, dirty) = self.data(ino)?;
        dirty.write(file, off, data)
    }

    pub(crate) fn fsync(&mut self, ino: INodeNo) -> io::Result<()> {
        let n = self.node(ino)?;
        if let (Some(file), Some(dirty)) = (&n.file, &mut n.dirty) {
            dirty.sync(file)?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)] // the fields of a FUSE setattr
    pub(crate) fn setattr(
        &mut self,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
    ) -> io::Result<FileAttr> {
        let n = self.node(ino)?;
        let (fd, kind) = (n.fd.clone(), n.kind);
        // Ownership, mode and times pass through at once: only data and
        // names are held back, which is what durability tests care about.
        if let Some(mode) = mode
            && kind != FileType::Symlink
        {
            std::fs::set_permissions(
                sys::proc_path(fd.as_fd()),
                std::fs::Permissions::from_mode(mode & 0o7777),
            )?;
        }
        if uid.is_some() || gid.is_some() {
            sys::chown(fd.as_fd(), uid, gid)?;
        }
        if (atime.is_some() || mtime.is_some()) && kind != FileType::Symlink {
            sys::set_times(fd.as_fd(), atime.map(timespec), mtime.map(timespec))?;
        }
        if let Some(size) = size {
            self.data(ino)?.1.set_len(size);
        }
        self.attr_of(ino.0)
    }

    pub(crate) fn create(
        &mut self,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        flags: i32,
    ) -> io::Result<FileAttr> {
        Self::check_name(parent, name)?;
        let dir = self.dir(parent)?;
        let made = sys::create_at(dir.fd.as_fd(), name, mode)?;
        let existed = made.is_none();
        if existed && flags & libc::O_EXCL != 0 {
            return Err(err(libc::EEXIST));
        }
        if !existed {
            self.journal.created(dir, name);
        }
        let attr = self.enter(parent, name)?;
        let n = self.node(attr.ino)?;
        n.opens += 1;
        if n.file.is_none() {
            n.file = made;
        }
        if existed && flags & libc::O_TRUNC != 0 {
            self.data(attr.ino)?.1.set_len(0);
            return self.attr_of(attr.ino.0);
        }
        Ok(attr)
    }

    /// Make a directory entry with `make`, record it, and look it up.
    pub(crate) fn make(
        &mut self,
        parent: INodeNo,
        name: &OsStr,
        make: impl FnOnce(&OwnedFd) -> io::Result<()>,
    ) -> io::Result<FileAttr> {
        Self::check_name(parent, name)?;
        let dir = self.dir(parent)?;
        make(&dir.fd)?;
        self.journal.created(dir, name);
        self.enter(parent, name)
    }

    pub(crate) fn link(
        &mut self,
        ino: INodeNo,
        parent: INodeNo,
        name: &OsStr,
    ) -> io::Result<FileAttr> {
        let fd = self.node(ino)?.fd.clone();
        self.make(parent, name, |dir| {
            sys::link_at(fd.as_fd(), dir.as_fd(), name)
        })
    }

    pub(crate) fn remove(
        &mut self,
        parent: INodeNo,
        name: &OsStr,
        want_dir: bool,
    ) -> io::Result<()> {
        Self::check_name(parent, name)?;
        let dir = self.dir(parent)?;
        let st = sys::stat_at(dir.fd.as_fd(), name)?.ok_or_else(|| err(libc::ENOENT))?;
        let is_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
        match (want_dir, is_dir) {
            (false, true) => return Err(err(libc::EISDIR)),
            (true, false) => return Err(err(libc::ENOTDIR)),
            (true, true) if !is_empty_dir(&sys::open_path(dir.fd.as_fd(), name)?)? => {
                return Err(err(libc::ENOTEMPTY));
            }
            _ => {}
        }
        self.journal.remove(dir, name)
    }

    pub(crate) fn rename(
        &mut self,
        parent: INodeNo,
        name: &OsStr,
        new_parent: INodeNo,
        new_name: &OsStr,
        flags: RenameFlags,
    ) -> io::Result<()> {
        Self::check_name(parent, name)?;
        Self::check_name(new_parent, new_name)?;
        if flags.intersects(RenameFlags::RENAME_EXCHANGE | RenameFlags::RENAME_WHITEOUT) {
            return Err(err(libc::EINVAL));
        }
        let (from, to) = (self.dir(parent)?, self.dir(new_parent)?);
        let src = sys::stat_at(from.fd.as_fd(), name)?.ok_or_else(|| err(libc::ENOENT))?;
        let dst = sys::stat_at(to.fd.as_fd(), new_name)?;
        if let Some(dst) = &dst {
            if flags.contains(RenameFlags::RENAME_NOREPLACE) {
                return Err(err(libc::EEXIST));
            }
            if (dst.st_dev, dst.st_ino) == (src.st_dev, src.st_ino) {
                return Ok(()); // two names of one inode: POSIX says do nothing
            }
            let src_dir = src.st_mode & libc::S_IFMT == libc::S_IFDIR;
            let dst_dir = dst.st_mode & libc::S_IFMT == libc::S_IFDIR;
            if src_dir && !dst_dir {
                return Err(err(libc::ENOTDIR));
            }
            if !src_dir && dst_dir {
                return Err(err(libc::EISDIR));
            }
            if dst_dir && !is_empty_dir(&sys::open_path(to.fd.as_fd(), new_name)?)? {
                return Err(err(libc::ENOTEMPTY));
            }
        }
        self.journal.rename(from, name, to, new_name, dst.is_some())
    }

    pub(crate) fn list(&mut self, ino: INodeNo) -> io::Result<u64> {
        let fd = self.dir(ino)?.fd;
        let mut entries = vec![
            (OsString::from("."), FileType::Directory, ino.0),
            (OsString::from(".."), FileType::Directory, INodeNo::ROOT.0),
        ];
        for e in std::fs::read_dir(sys::proc_path(fd.as_fd()))? {
            let e = e?;
            let name = e.file_name();
            if ino == INodeNo::ROOT && name == OsStr::new(STASH) {
                continue;
            }
            let ft = e.file_type()?;
            let kind = FileType::from_std(ft).unwrap_or(FileType::RegularFile);
            use std::os::unix::fs::DirEntryExt;
            entries.push((name, kind, e.ino().max(2)));
        }
        let fh = self.next_fh;
        self.next_fh += 1;
        self.listings.insert(fh, entries);
        Ok(fh)
    }

    pub(crate) fn fallocate(
        &mut self,
        ino: INodeNo,
        off: u64,
        len: u64,
        mode: i32,
    ) -> io::Result<()> {
        match mode {
            // Preallocation only: nothing a reader could see.
            libc::FALLOC_FL_KEEP_SIZE => Ok(()),
            0 => {
                let dirty = self.data(ino)?.1;
                if off + len > dirty.len() {
                    dirty.set_len(off + len);
                }
                Ok(())
            }
            _ => Err(err(libc::EOPNOTSUPP)),
        }
    }

    /// Throw away everything unsynced and fail all further I/O.
    pub(crate) fn power_cut(&mut self) -> (CutReport, Vec<String>) {
        self.dead = true;
        let mut report = CutReport::default();
        for n in self.nodes.values_mut() {
            if let Some(d) = n.dirty.take()
                && !d.is_clean()
            {
                report.files += 1;
                report.bytes += d.unsynced_bytes();
            }
            n.file = None;
        }
        let (undone, errors) = self.journal.roll_back();
        report.namespace_ops = undone;
        (report, errors)
    }

    /// A clean shutdown: everything written becomes durable.
    pub(crate) fn sync_all(&mut self) -> io::Result<()> {
        if self.dead {
            return Ok(());
        }
        self.dead = true;
        for n in self.nodes.values_mut() {
            if let (Some(file), Some(dirty)) = (&n.file, &mut n.dirty) {
                dirty.sync(file)?;
            }
            n.file = None;
        }
        self.journal.sync_all();
        Ok(())
    }

    pub(crate) fn unsynced_namespace_ops(&self) -> usize {
        self.journal.len()
    }
}
