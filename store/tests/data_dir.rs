//! The data directory's layout: a fresh member keeps RocksDB in `db/` and its
//! snapshot in `snapshots/`, and a directory of the old, flat layout is moved
//! into them at start with every key and revision intact.

use std::path::Path;
use std::time::Duration;

use keel_store::data_dir::{DB_DIR, DataDir, SNAPSHOTS_DIR};
use keel_store::snapshot_file::SNAPSHOT_FILE;
use keel_store::{Consistency, Op};

mod common;
use common::{config, start, stop};

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

/// Write a key, snapshot, and write another key, so that the directory holds
/// SST files, a WAL and a snapshot file. Returns the last revision.
async fn fill(dir: &Path) -> u64 {
    let m = start(config(dir)).await;
    m.txn(vec![Op::create("/kept/a", b"1".to_vec())])
        .await
        .unwrap();
    m.raft().trigger().snapshot().await.unwrap();
    m.raft()
        .wait(Some(Duration::from_secs(20)))
        .metrics(|x| x.snapshot.is_some(), "snapshot")
        .await
        .unwrap();
    let rev = m
        .txn(vec![Op::create("/kept/b", b"2".to_vec())])
        .await
        .unwrap();
    stop(m).await;
    rev
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_member_keeps_rocksdb_in_db_and_snapshots_in_snapshots() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("data");
    // What the API server keeps there is left alone.
    std::fs::create_dir_all(root.join("pki")).unwrap();
    std::fs::write(root.join("kubeconfig"), "apiVersion: v1\n").unwrap();
    fill(&root).await;
    assert_eq!(names(&root), [DB_DIR, "kubeconfig", "pki", SNAPSHOTS_DIR]);
    let parts = DataDir::new(&root);
    let db = names(parts.db());
    assert!(db.iter().any(|n| n == "CURRENT"), "{db:?}");
    assert!(db.iter().any(|n| n.starts_with("MANIFEST-")), "{db:?}");
    assert_eq!(names(parts.snapshots()), [SNAPSHOT_FILE]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_directory_of_the_old_layout_is_moved_at_start_with_its_data() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let rev = fill(root).await;
    // Put it back in the old layout: every file of db/ and snapshots/ at the root.
    let parts = DataDir::new(root);
    let mut old_files = Vec::new();
    for part in [parts.db(), parts.snapshots()] {
        for name in names(part) {
            std::fs::rename(part.join(&name), root.join(&name)).unwrap();
            old_files.push(name);
        }
        std::fs::remove_dir(part).unwrap();
    }
    assert!(old_files.iter().any(|n| n == "CURRENT"), "{old_files:?}");
    assert!(
        old_files.iter().any(|n| n == SNAPSHOT_FILE),
        "{old_files:?}"
    );

    let m = start(config(root)).await;
    // The data came along: the revision, and keys before and after the snapshot.
    assert!(m.revisions().unwrap().0 >= rev);
    let (a, _) = m.get("/kept/a", Consistency::Local).await.unwrap();
    assert_eq!(a.unwrap().value, b"1");
    let (b, _) = m.get("/kept/b", Consistency::Local).await.unwrap();
    assert_eq!(b.unwrap().mod_revision, rev);
    stop(m).await;
    // And the files now lie in the parts, none at the root.
    assert_eq!(names(root), [DB_DIR, SNAPSHOTS_DIR]);
    assert!(names(parts.db()).iter().any(|n| n == "CURRENT"));
    assert_eq!(names(parts.snapshots()), [SNAPSHOT_FILE]);
}
