//! The data directory's parts: RocksDB in `db/` and the snapshot file in
//! `snapshots/`, beside what the API server keeps there (`pki/`,
//! `kubeconfig`). A directory of the old, flat layout (RocksDB's files and
//! `snapshot.bin` at its root) is moved into these parts at start.
//!
//! The move survives a crash at any point: RocksDB's files go one rename at a
//! time into `db.partial/`, which becomes `db/` in one last rename, so a
//! start finds either files still to move (and finishes), or a complete
//! `db/`. RocksDB never opens a half-moved database.

use std::path::{Path, PathBuf};

use crate::error::StoreError;
use crate::snapshot_file::{SNAPSHOT_FILE, TMP_SUFFIX};

/// RocksDB's directory inside the data directory.
pub const DB_DIR: &str = "db";
/// The snapshot file's directory inside the data directory.
pub const SNAPSHOTS_DIR: &str = "snapshots";
/// Where RocksDB's files gather while an old layout is being moved.
const DB_PARTIAL: &str = "db.partial";

/// The paths of a data directory's parts.
#[derive(Clone, Debug)]
pub struct DataDir {
    root: PathBuf,
    db: PathBuf,
    snapshots: PathBuf,
}

impl DataDir {
    /// The parts of data directory `root` (nothing is touched on disk).
    pub fn new(root: impl Into<PathBuf>) -> DataDir {
        let root = root.into();
        DataDir {
            db: root.join(DB_DIR),
            snapshots: root.join(SNAPSHOTS_DIR),
            root,
        }
    }

    /// Create the directory and its parts, first moving a directory of the
    /// old layout into them. A directory that cannot be moved is refused with
    /// a message that says how to move it by hand.
    pub fn prepare(root: &Path) -> Result<DataDir, StoreError> {
        let dir = DataDir::new(root);
        std::fs::create_dir_all(root).map_err(|e| dir.err(format!("cannot create it: {e}")))?;
        dir.move_old_layout()?;
        for part in [&dir.db, &dir.snapshots] {
            std::fs::create_dir_all(part)
                .map_err(|e| dir.err(format!("cannot create {}: {e}", part.display())))?;
        }
        Ok(dir)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// RocksDB's directory.
    pub fn db(&self) -> &Path {
        &self.db
    }

    /// The snapshot file's directory.
    pub fn snapshots(&self) -> &Path {
        &self.snapshots
    }

    fn err(&self, detail: String) -> StoreError {
        StoreError::DataDir {
            path: self.root.display().to_string(),
            detail,
        }
    }

    /// The refusal for an old layout that could not be moved: what went
    /// wrong, and how an operator moves it by hand.
    fn refuse(&self, why: String) -> StoreError {
        self.err(format!(
            "it is in the old layout (RocksDB's files at its root) and was not moved: {why}. \
             Stop every process that uses it, then move it by hand: in {root}, create db/ and \
             snapshots/, move RocksDB's files (CURRENT, IDENTITY, LOCK, LOG*, MANIFEST-*, \
             OPTIONS-*, *.sst, *.log, and any files in db.partial/) into db/ and {SNAPSHOT_FILE} \
             into snapshots/; pki/ and kubeconfig stay where they are",
            root = self.root.display()
        ))
    }

    /// Move RocksDB's files and the snapshot files from the root into their
    /// parts; nothing to do in a directory of the new layout.
    fn move_old_layout(&self) -> Result<(), StoreError> {
        let partial = self.root.join(DB_PARTIAL);
        let (rocks, snapshots) = self.old_files()?;
        let interrupted = partial.is_dir();
        if rocks.is_empty() && snapshots.is_empty() && !interrupted {
            return Ok(());
        }
        if (!rocks.is_empty() || interrupted) && self.db.exists() {
            return Err(self.refuse(format!(
                "{} already exists beside RocksDB files at the root (or {DB_PARTIAL}/)",
                self.db.display()
            )));
        }
        let mv = |from: &Path, to: &Path| {
            std::fs::rename(from, to).map_err(|e| {
                self.refuse(format!(
                    "moving {} to {}: {e}",
                    from.display(),
                    to.display()
                ))
            })
        };
        let sync = |dir: &Path| {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| self.refuse(format!("syncing {}: {e}", dir.display())))
        };
        if !rocks.is_empty() || interrupted {
            std::fs::create_dir_all(&partial)
                .map_err(|e| self.refuse(format!("creating {}: {e}", partial.display())))?;
            for name in &rocks {
                mv(&self.root.join(name), &partial.join(name))?;
            }
            sync(&partial)?;
            sync(&self.root)?;
            mv(&partial, &self.db)?;
            sync(&self.root)?;
        }
        let mut moved_snapshots = Vec::new();
        if !snapshots.is_empty() {
            std::fs::create_dir_all(&self.snapshots)
                .map_err(|e| self.refuse(format!("creating {}: {e}", self.snapshots.display())))?;
            for name in &snapshots {
                let from = self.root.join(name);
                if name.ends_with(TMP_SUFFIX) {
                    // A build or a receive a crash interrupted: never published.
                    let _ = std::fs::remove_file(&from);
                    continue;
                }
                let to = self.snapshots.join(name);
                if to.exists() {
                    return Err(self.refuse(format!(
                        "both {} and {} exist",
                        from.display(),
                        to.display()
                    )));
                }
                mv(&from, &to)?;
                moved_snapshots.push(name.clone());
            }
            sync(&self.snapshots)?;
            sync(&self.root)?;
        }
        tracing::info!(
            data_dir = %self.root.display(),
            rocksdb_files = rocks.len(),
            finished_interrupted_move = interrupted,
            snapshot_files = ?moved_snapshots,
            "moved the data directory to the new layout: RocksDB's files into {DB_DIR}/, \
             the snapshot file into {SNAPSHOTS_DIR}/"
        );
        Ok(())
    }

    /// The names at the root that belong to RocksDB, and those that belong to
    /// the snapshot file (the file and its temporaries).
    fn old_files(&self) -> Result<(Vec<String>, Vec<String>), StoreError> {
        let entries =
            std::fs::read_dir(&self.root).map_err(|e| self.err(format!("cannot list it: {e}")))?;
        let (mut rocks, mut snapshots) = (Vec::new(), Vec::new());
        for entry in entries {
            let entry = entry.map_err(|e| self.err(format!("cannot list it: {e}")))?;
            if !entry.file_type().is_ok_and(|t| t.is_file()) {
                continue;
            }
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if name == SNAPSHOT_FILE || name.ends_with(TMP_SUFFIX) {
                snapshots.push(name);
            } else if is_rocksdb_file(&name) {
                rocks.push(name);
            }
        }
        rocks.sort();
        snapshots.sort();
        Ok((rocks, snapshots))
    }
}

/// Whether `name` is one of the files RocksDB keeps in its directory. Its
/// table, WAL and blob files have numeric names, so an operator's own
/// `keel.log` beside the parts is not taken for one.
fn is_rocksdb_file(name: &str) -> bool {
    let numbered = |suffix: &str| {
        name.strip_suffix(suffix)
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    matches!(name, "CURRENT" | "IDENTITY" | "LOCK" | "LOG")
        || ["LOG.old.", "MANIFEST-", "OPTIONS-"]
            .iter()
            .any(|p| name.starts_with(p))
        || [".sst", ".log", ".blob", ".dbtmp"]
            .iter()
            .any(|s| numbered(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(dir: &Path, names: &[&str]) {
        for n in names {
            std::fs::write(dir.join(n), n.as_bytes()).unwrap();
        }
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    const ROCKS: [&str; 6] = [
        "000004.log",
        "000009.sst",
        "CURRENT",
        "IDENTITY",
        "MANIFEST-000005",
        "OPTIONS-000007",
    ];

    #[test]
    fn an_old_layout_is_moved_into_its_parts_and_the_rest_stays() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        touch(root, &ROCKS);
        touch(root, &[SNAPSHOT_FILE, "kubeconfig", "keel.log"]);
        std::fs::create_dir(root.join("pki")).unwrap();
        let dir = DataDir::prepare(root).unwrap();
        assert_eq!(names(dir.db()), ROCKS);
        assert_eq!(names(dir.snapshots()), [SNAPSHOT_FILE]);
        assert_eq!(
            names(root),
            ["db", "keel.log", "kubeconfig", "pki", "snapshots"]
        );
        // The move is done once: a second start finds the new layout.
        DataDir::prepare(root).unwrap();
        assert_eq!(names(dir.db()), ROCKS);
    }

    #[test]
    fn a_move_interrupted_by_a_crash_is_finished_at_the_next_start() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        // A crash after three of six files went into db.partial/.
        std::fs::create_dir(root.join(DB_PARTIAL)).unwrap();
        touch(&root.join(DB_PARTIAL), &ROCKS[..3]);
        touch(root, &ROCKS[3..]);
        touch(root, &[SNAPSHOT_FILE]);
        let dir = DataDir::prepare(root).unwrap();
        assert_eq!(names(dir.db()), ROCKS);
        assert_eq!(names(dir.snapshots()), [SNAPSHOT_FILE]);
        assert_eq!(names(root), ["db", "snapshots"]);

        // A crash after db.partial/ became db/, before the snapshot moved.
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::create_dir(root.join(DB_DIR)).unwrap();
        touch(&root.join(DB_DIR), &ROCKS);
        touch(root, &[SNAPSHOT_FILE, "x.snap-tmp"]);
        let dir = DataDir::prepare(root).unwrap();
        assert_eq!(names(dir.db()), ROCKS);
        assert_eq!(names(dir.snapshots()), [SNAPSHOT_FILE]);
        assert_eq!(names(root), ["db", "snapshots"]);
    }

    #[test]
    fn rocksdb_files_both_at_the_root_and_in_db_are_refused_with_how_to_move_them() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::create_dir(root.join(DB_DIR)).unwrap();
        touch(&root.join(DB_DIR), &ROCKS);
        touch(root, &["CURRENT", "000010.sst"]);
        let err = DataDir::prepare(root).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, StoreError::DataDir { .. }), "{msg}");
        assert!(msg.contains("old layout"), "{msg}");
        assert!(msg.contains("move it by hand"), "{msg}");
        // Nothing was moved.
        assert_eq!(names(root), ["000010.sst", "CURRENT", "db"]);
    }

    #[test]
    fn a_fresh_directory_gets_the_parts_and_nothing_else() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("data");
        std::fs::create_dir_all(root.join("pki")).unwrap();
        DataDir::prepare(&root).unwrap();
        assert_eq!(names(&root), ["db", "pki", "snapshots"]);
    }
}
