//! The unsynced contents of one file: pages written since its last fsync,
//! laid over the synced bytes in the backing file.
//!
//! Invariants: `base_len <= len`; bytes of the backing file at or past
//! `base_len` are stale (a truncation since the last sync cut them off) and
//! read as zeros; bytes of cached pages at or past `len` are zeros.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

pub(crate) const PAGE: u64 = 4096;

/// Unsynced state of one regular file.
#[derive(Debug)]
pub(crate) struct Dirty {
    pages: BTreeMap<u64, Box<[u8]>>,
    /// The size readers see.
    len: u64,
    /// How much of the backing file still shows through.
    base_len: u64,
}

impl Dirty {
    /// A clean view of `file`, whose synced size is `synced_len`.
    pub(crate) fn new(synced_len: u64) -> Dirty {
        Dirty {
            pages: BTreeMap::new(),
            len: synced_len,
            base_len: synced_len,
        }
    }

    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Bytes held only in memory (what a power cut would lose, roughly).
    pub(crate) fn unsynced_bytes(&self) -> u64 {
        self.pages.len() as u64 * PAGE
    }

    /// Fill `buf` with the synced bytes at `off`, zeros past `base_len`.
    fn read_base(&self, file: &File, off: u64, buf: &mut [u8]) -> io::Result<()> {
        buf.fill(0);
        let end = (off + buf.len() as u64).min(self.base_len);
        if end <= off {
            return Ok(());
        }
        let want = (end - off) as usize;
        let mut done = 0;
        while done < want {
            let n = file.read_at(&mut buf[done..want], off + done as u64)?;
            if n == 0 {
                break; // the backing file is shorter: the rest reads as zeros
            }
            done += n;
        }
        Ok(())
    }

    fn page_mut(&mut self, file: &File, index: u64) -> io::Result<&mut [u8]> {
        if !self.pages.contains_key(&index) {
            let mut page = vec![0u8; PAGE as usize].into_boxed_slice();
            self.read_base(file, index * PAGE, &mut page)?;
            self.pages.insert(index, page);
        }
        Ok(self.pages.get_mut(&index).expect("inserted above"))
    }

    pub(crate) fn write(&mut self, file: &File, off: u64, data: &[u8]) -> io::Result<()> {
        let mut done = 0usize;
        while done < data.len() {
            let pos = off + done as u64;
            let (index, at) = (pos / PAGE, (pos % PAGE) as usize);
            let n = (PAGE as usize - at).min(data.len() - done);
            self.page_mut(file, index)?[at..at + n].copy_from_slice(&data[done..done + n]);
            done += n;
        }
        self.len = self.len.max(off + data.len() as u64);
        Ok(())
    }

    /// Up to `size` bytes at `off`, cut at the end of the file.
    pub(crate) fn read(&self, file: &File, off: u64, size: usize) -> io::Result<Vec<u8>> {
        let end = (off + size as u64).min(self.len);
        if end <= off {
            return Ok(Vec::new());
        }
        let mut out = vec![0u8; (end - off) as usize];
        let mut pos = off;
        while pos < end {
            let (index, at) = (pos / PAGE, (pos % PAGE) as usize);
            let n = ((PAGE - at as u64).min(end - pos)) as usize;
            let dst = &mut out[(pos - off) as usize..(pos - off) as usize + n];
            match self.pages.get(&index) {
                Some(page) => dst.copy_from_slice(&page[at..at + n]),
                None => self.read_base(file, pos, dst)?,
            }
            pos += n as u64;
        }
        Ok(out)
    }

    pub(crate) fn set_len(&mut self, new_len: u64) {
        if new_len < self.len {
            self.base_len = self.base_len.min(new_len);
            let first_gone = new_len.div_ceil(PAGE);
            let _dropped = self.pages.split_off(&first_gone);
            if !new_len.is_multiple_of(PAGE)
                && let Some(page) = self.pages.get_mut(&(new_len / PAGE))
            {
                page[(new_len % PAGE) as usize..].fill(0);
            }
        }
        self.len = new_len;
    }

    /// Write everything to the backing file; afterwards the file alone holds it.
    pub(crate) fn sync(&mut self, file: &File) -> io::Result<()> {
        if file.metadata()?.len() > self.base_len {
            file.set_len(self.base_len)?;
        }
        for (index, page) in &self.pages {
            let start = index * PAGE;
            if start >= self.len {
                break;
            }
            let n = (self.len - start).min(PAGE) as usize;
            file.write_all_at(&page[..n], start)?;
        }
        file.set_len(self.len)?;
        self.pages.clear();
        self.base_len = self.len;
        Ok(())
    }

    pub(crate) fn is_clean(&self) -> bool {
        self.pages.is_empty() && self.base_len == self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backing(bytes: &[u8]) -> (tempfile::TempDir, File) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, bytes).unwrap();
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        (dir, f)
    }

    fn contents(f: &File) -> Vec<u8> {
        let mut v = vec![0; f.metadata().unwrap().len() as usize];
        f.read_exact_at(&mut v, 0).unwrap();
        v
    }

    #[test]
    fn writes_are_read_back_but_reach_the_file_only_on_sync() {
        let (_d, f) = backing(b"hello world");
        let mut d = Dirty::new(11);
        d.write(&f, 6, b"there, across pages").unwrap();
        d.write(&f, 5000, b"far").unwrap();
        assert_eq!(d.read(&f, 0, 25).unwrap(), b"hello there, across pages");
        assert_eq!(d.len(), 5003);
        assert_eq!(
            &d.read(&f, 4990, 100).unwrap()[..],
            b"\0\0\0\0\0\0\0\0\0\0far"
        );
        assert_eq!(
            contents(&f),
            b"hello world",
            "nothing reaches the file before a sync"
        );
        d.sync(&f).unwrap();
        assert!(d.is_clean());
        let all = contents(&f);
        assert_eq!(all.len(), 5003);
        assert_eq!(&all[..25], b"hello there, across pages");
        assert_eq!(&all[5000..], b"far");
    }

    #[test]
    fn truncation_hides_the_old_tail_even_after_regrowth() {
        let (_d, f) = backing(&[7u8; 10000]);
        let mut d = Dirty::new(10000);
        d.write(&f, 0, b"ab").unwrap(); // page 0 cached
        d.set_len(1);
        assert_eq!(d.read(&f, 0, 10).unwrap(), b"a");
        d.set_len(9000);
        let v = d.read(&f, 0, 9000).unwrap();
        assert_eq!(v[0], b'a');
        assert!(v[1..].iter().all(|b| *b == 0), "stale bytes came back");
        d.sync(&f).unwrap();
        let all = contents(&f);
        assert_eq!(all.len(), 9000);
        assert_eq!(all[0], b'a');
        assert!(all[1..].iter().all(|b| *b == 0));
    }
}
