//! The filesystem's own contract, through a real mount: unsynced data and
//! names are lost in a power cut, synced ones survive, reads see writes.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::Path;

use super::LazyMount;

fn mount() -> (tempfile::TempDir, LazyMount) {
    let dir = tempfile::tempdir().unwrap();
    let m = LazyMount::mount(dir.path().join("backing"), dir.path().join("mnt")).unwrap();
    (dir, m)
}

fn sync_dir(path: &Path) {
    File::open(path).unwrap().sync_all().unwrap();
}

fn read(path: &Path) -> Option<Vec<u8>> {
    match std::fs::read(path) {
        Ok(v) => Some(v),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => panic!("reading {}: {e}", path.display()),
    }
}

#[test]
fn unsynced_writes_are_read_back_then_lost_in_a_power_cut() {
    let (_dir, m) = mount();
    let f = m.mountpoint().join("wal");
    let mut file = File::create(&f).unwrap();
    sync_dir(m.mountpoint()); // the name is durable, the data is not
    file.write_all(b"acknowledged too early").unwrap();
    drop(file); // close() is not fsync
    assert_eq!(read(&f).unwrap(), b"acknowledged too early");
    assert_eq!(read(&m.backing().join("wal")).unwrap(), b"");
    let report = m.power_cut().unwrap();
    assert_eq!(report.files, 1, "{report:?}");
    assert!(report.bytes > 0, "{report:?}");
    let err = std::fs::read(&f).expect_err("I/O after a power cut must fail");
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    let m = m.remount().unwrap();
    assert_eq!(read(&m.mountpoint().join("wal")).unwrap(), b"");
}

#[test]
fn fsynced_writes_survive_a_power_cut() {
    let (_dir, m) = mount();
    let f = m.mountpoint().join("wal");
    let mut file = File::create(&f).unwrap();
    sync_dir(m.mountpoint());
    file.write_all(b"durable").unwrap();
    file.sync_data().unwrap();
    file.write_all(b" and then lost").unwrap();
    assert_eq!(read(&f).unwrap(), b"durable and then lost");
    m.power_cut().unwrap();
    drop(file);
    let m = m.remount().unwrap();
    assert_eq!(read(&m.mountpoint().join("wal")).unwrap(), b"durable");
}

#[test]
fn overwrites_and_truncation_are_cached_until_fsync() {
    let (_dir, m) = mount();
    let f = m.mountpoint().join("data");
    std::fs::write(&f, vec![b'x'; 10_000]).unwrap();
    File::open(&f).unwrap().sync_all().unwrap();
    sync_dir(m.mountpoint());
    let mut file = OpenOptions::new().write(true).open(&f).unwrap();
    file.set_len(3).unwrap();
    file.write_all(b"ab").unwrap();
    let mut got = Vec::new();
    File::open(&f).unwrap().read_to_end(&mut got).unwrap();
    assert_eq!(got, b"abx");
    assert_eq!(std::fs::metadata(&f).unwrap().len(), 3);
    m.power_cut().unwrap();
    drop(file);
    let m = m.remount().unwrap();
    assert_eq!(
        read(&m.mountpoint().join("data")).unwrap(),
        vec![b'x'; 10_000]
    );
}

#[test]
fn names_need_a_directory_fsync() {
    let (_dir, m) = mount();
    let root = m.mountpoint().to_path_buf();
    // Durable start: CURRENT and OLD exist and are synced.
    for (name, body) in [("CURRENT", "v1"), ("OLD", "old")] {
        let mut f = File::create(root.join(name)).unwrap();
        f.write_all(body.as_bytes()).unwrap();
        f.sync_all().unwrap();
    }
    std::fs::create_dir(root.join("sub")).unwrap();
    sync_dir(&root);
    // Unsynced: a new file (its data synced, its name not), a replacing
    // rename, a removal, and a new directory.
    let mut f = File::create(root.join("NEW")).unwrap();
    f.write_all(b"new").unwrap();
    f.sync_all().unwrap();
    std::fs::write(root.join("CURRENT.tmp"), "v2").unwrap();
    File::open(root.join("CURRENT.tmp"))
        .unwrap()
        .sync_all()
        .unwrap();
    std::fs::rename(root.join("CURRENT.tmp"), root.join("CURRENT")).unwrap();
    std::fs::remove_file(root.join("OLD")).unwrap();
    std::fs::create_dir(root.join("sub").join("inner")).unwrap();
    assert_eq!(read(&root.join("CURRENT")).unwrap(), b"v2");
    assert_eq!(read(&root.join("OLD")), None);
    assert!(m.unsynced_namespace_ops() >= 4);
    let mut names: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["CURRENT", "NEW", "sub"], "the stash is hidden");
    let report = m.power_cut().unwrap();
    assert!(report.namespace_ops >= 4, "{report:?}");
    drop(f);
    let m = m.remount().unwrap();
    let root = m.mountpoint().to_path_buf();
    assert_eq!(read(&root.join("CURRENT")).unwrap(), b"v1");
    assert_eq!(read(&root.join("OLD")).unwrap(), b"old");
    assert_eq!(read(&root.join("NEW")), None);
    assert_eq!(read(&root.join("CURRENT.tmp")), None);
    assert!(!root.join("sub").join("inner").exists());
    // The same changes followed by a directory fsync are durable.
    std::fs::write(root.join("CURRENT.tmp"), "v2").unwrap();
    File::open(root.join("CURRENT.tmp"))
        .unwrap()
        .sync_all()
        .unwrap();
    std::fs::rename(root.join("CURRENT.tmp"), root.join("CURRENT")).unwrap();
    std::fs::remove_file(root.join("OLD")).unwrap();
    sync_dir(&root);
    assert_eq!(m.unsynced_namespace_ops(), 0);
    let stash = m.backing().join(super::state::STASH);
    assert_eq!(
        std::fs::read_dir(&stash).unwrap().count(),
        0,
        "durable removals are gone"
    );
    m.power_cut().unwrap();
    let m = m.remount().unwrap();
    let root = m.mountpoint().to_path_buf();
    assert_eq!(read(&root.join("CURRENT")).unwrap(), b"v2");
    assert_eq!(read(&root.join("OLD")), None);
}

#[test]
fn a_clean_unmount_keeps_everything() {
    let (dir, m) = mount();
    std::fs::create_dir(m.mountpoint().join("d")).unwrap();
    std::fs::write(m.mountpoint().join("d").join("f"), "kept").unwrap();
    m.unmount().unwrap();
    let backing = dir.path().join("backing");
    assert_eq!(read(&backing.join("d").join("f")).unwrap(), b"kept");
    assert!(!backing.join(super::state::STASH).exists());
}
