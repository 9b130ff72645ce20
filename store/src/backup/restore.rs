//! Restoring a backup: builds a new member's data directory whose state is
//! the backup's objects, byte for byte (resourceVersions included), as if
//! the member had installed a Raft snapshot of a new cluster. With an
//! archive (`crate::archive`), the events archived after the backup are
//! replayed onto it up to a revision or a time: point-in-time recovery.
//!
//! The new cluster's log starts at index 1 in term 0 (every leader it elects
//! has a later term), its membership is the plan's, and its revisions
//! continue `bump` above the restored state's: revision `state + bump` is both its
//! current and its compacted revision. No revision the old cluster could
//! have handed out after the backup is ever handed out again, and a client
//! that asks for one (a watch or a read at an old resourceVersion) gets
//! `Compacted` (410 at the API) and lists again, as etcd's
//! `--bump-revision`/`--mark-compacted` arrange. Every member restored from
//! the same backup with the same members and bump gets the same state, so
//! each of a three-member cluster's members can be restored on its own
//! machine.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufReader, BufWriter, Read};
use std::path::{Path, PathBuf};

use crate::{Membership, SnapshotMeta, StoredMembership};
use openraft::BasicNode;
use rocksdb::WriteBatch;

use super::BackupHeader;
use crate::ClusterId;
use crate::codec::{self, EventHead, raft_meta, store_meta};
use crate::db::{CF_OBJECTS, CF_RAFT_META, CF_STORE_META, Db};
use crate::error::StoreError;
use crate::snapshot::INSTALL_BATCH_BYTES;
use crate::snapshot::format::{Header, SnapshotReader, SnapshotWriter, check_object};
use crate::snapshot_file::SnapshotFiles;
use crate::state_machine::AppliedState;
use crate::{EventKind, NodeId};

/// What to build.
#[derive(Clone, Debug)]
pub struct RestorePlan {
    /// The new data directory: absent, or an empty directory.
    pub data_dir: PathBuf,
    /// The new cluster's members (id → peer address), all voters.
    pub members: BTreeMap<NodeId, String>,
    /// How far the new cluster's revisions jump above the restored state's.
    pub bump: u64,
    /// Mixed into the new cluster's id (see [`crate::cluster_id`]), so that
    /// two restores of the same backup to the same point can differ.
    pub cluster_token: String,
    /// Replay archived events after the backup up to a point in time.
    pub replay: Option<Replay>,
}

/// Point-in-time recovery: the archive and how far to replay it.
#[derive(Clone, Debug)]
pub struct Replay {
    pub archive: PathBuf,
    pub to: ReplayTo,
}

#[derive(Clone, Copy, Debug)]
pub enum ReplayTo {
    /// The state at exactly this revision.
    Revision(u64),
    /// The state just before the first archived change proposed after this
    /// time (Unix milliseconds).
    Time(u64),
}

/// What a restore built.
#[derive(Clone, Debug)]
pub struct Restored {
    pub header: BackupHeader,
    /// Objects in the restored state.
    pub objects: u64,
    /// The revision of the restored state (the backup's, or the replay's end)
    /// and the archived events replayed onto the backup to reach it.
    pub state_revision: u64,
    pub replayed: u64,
    /// The restored cluster's current and compacted revision.
    pub revision: u64,
    /// Objects per key prefix of three segments (`/registry/core/secrets`).
    pub by_prefix: BTreeMap<String, u64>,
    /// The new cluster's identity, the same for every member of the plan.
    pub cluster_id: ClusterId,
}

fn fail(what: String) -> StoreError {
    StoreError::Restore(what)
}

/// Build `plan.data_dir` from the backup read from `input`. Every record is
/// checked before the state is written, and nothing is left behind on
/// failure. `progress` is called with the records read so far: the backup's
/// objects, then the archived events of each of the replay's two passes.
pub fn restore(
    input: impl Read,
    plan: &RestorePlan,
    progress: &mut dyn FnMut(u64),
) -> Result<Restored, StoreError> {
    if plan.members.is_empty() || plan.members.contains_key(&0) {
        return Err(fail(
            "the new cluster needs at least one member, with ids above 0".into(),
        ));
    }
    let root = &plan.data_dir;
    let existed = root.exists();
    if existed {
        let mut entries = std::fs::read_dir(root)
            .map_err(|e| fail(format!("reading {}: {e}", root.display())))?;
        if entries.next().is_some() {
            return Err(fail(format!(
                "{} is not empty: restore builds a new data directory (move the old one aside)",
                root.display()
            )));
        }
    }
    // Built aside and renamed into place once whole: a crash or a failure
    // halfway never leaves a directory a member could start from.
    let name = root
        .file_name()
        .ok_or_else(|| fail(format!("{} names no directory", root.display())))?;
    let mut aside_name = name.to_os_string();
    aside_name.push(".restoring");
    let aside = root.with_file_name(aside_name);
    if aside.exists() {
        // Left by a restore that did not finish.
        std::fs::remove_dir_all(&aside)
            .map_err(|e| fail(format!("removing {}: {e}", aside.display())))?;
    }
    let built = build(input, plan, &aside, progress).and_then(|restored| {
        if existed {
            std::fs::remove_dir(root)
                .map_err(|e| fail(format!("replacing the empty {}: {e}", root.display())))?;
        }
        std::fs::rename(&aside, root).map_err(|e| {
            fail(format!(
                "renaming {} to {}: {e}",
                aside.display(),
                root.display()
            ))
        })?;
        let parent = root
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::File::open(parent)
            .and_then(|d| d.sync_all())
            .map_err(|e| fail(format!("syncing {}: {e}", parent.display())))?;
        Ok(restored)
    });
    if built.is_err() {
        let _ = std::fs::remove_dir_all(&aside);
    }
    built
}

fn io_step(step: &'static str) -> impl Fn(rocksdb::Error) -> StoreError {
    move |source| StoreError::Io { step, source }
}

fn build(
    input: impl Read,
    plan: &RestorePlan,
    dir: &Path,
    progress: &mut dyn FnMut(u64),
) -> Result<Restored, StoreError> {
    let mut reader: SnapshotReader<_, BackupHeader> =
        SnapshotReader::open(BufReader::with_capacity(1 << 20, input))?;
    let backup = reader.header().clone();
    let db = Db::open(dir)?;
    let objects_cf = db.cf(CF_OBJECTS);
    // Bulk writes skip the WAL: the memtables are flushed before the
    // synced write of the applied state, which is the commit point (and
    // the directory is renamed into place only after it).
    let mut bulk = rocksdb::WriteOptions::default();
    bulk.disable_wal(true);
    // The backup's objects, each checked, in bounded batches. Nothing here
    // is trusted until the trailer's checksum has been read: a damaged
    // backup fails the restore and the directory is removed.
    let mut by_prefix = BTreeMap::new();
    let mut batch = WriteBatch::default();
    let (mut k, mut v) = (Vec::new(), Vec::new());
    while reader.next_record(&mut k, &mut v)? {
        check_object(&k, &v)?;
        let key = String::from_utf8_lossy(&k);
        *by_prefix
            .entry(super::key_prefix(&key, 3).to_string())
            .or_default() += 1;
        batch.put_cf(objects_cf, &k, &v);
        if batch.size_in_bytes() >= INSTALL_BATCH_BYTES {
            db.db
                .write_opt(std::mem::take(&mut batch), &bulk)
                .map_err(io_step("writing restored objects"))?;
        }
        if reader.records().is_multiple_of(10_000) {
            progress(reader.records());
        }
    }
    db.db
        .write_opt(std::mem::take(&mut batch), &bulk)
        .map_err(io_step("writing restored objects"))?;
    let mut objects = reader.records();
    progress(objects);
    // The backup's checksum and header identify it (the new cluster's id).
    let backup_identity = codec::encode(&(
        reader.checksum(),
        backup.revision,
        backup.taken_by,
        backup.taken_at_ms,
    ));
    // Then the archived events after the backup, up to the restore point.
    let mut state_revision = backup.revision;
    let mut replayed = 0u64;
    if let Some(replay) = &plan.replay {
        let target = match replay.to {
            ReplayTo::Revision(r) => r,
            ReplayTo::Time(ms) => {
                if backup.taken_at_ms > ms {
                    return Err(fail(format!(
                        "the backup was taken at {} ms after the epoch, after the requested \
                         time ({ms}); restore from an older backup",
                        backup.taken_at_ms
                    )));
                }
                crate::archive::revision_at_time(&replay.archive, backup.revision, ms)?
            }
        };
        if target < backup.revision {
            return Err(fail(format!(
                "revision {target} is before the backup's ({}); restore from an older backup",
                backup.revision
            )));
        }
        // The restored state needs only each key's last change up to the
        // target: a first pass reads event heads (no values are decoded) to
        // find it, and the second writes only those changes, so a key
        // updated a thousand times since the backup is written once.
        let mut last: HashMap<String, (u64, u32)> = HashMap::new();
        let mut read = 0u64;
        crate::archive::read_range_as(
            &replay.archive,
            backup.revision,
            target,
            |head: EventHead| {
                last.insert(head.key, (head.revision, head.op_index));
                read += 1;
                if read.is_multiple_of(10_000) {
                    progress(objects + read);
                }
                Ok(())
            },
        )?;
        crate::archive::read_range(&replay.archive, backup.revision, target, |event| {
            replayed += 1;
            if replayed.is_multiple_of(10_000) {
                progress(objects + read + replayed);
            }
            if last.get(&event.key) != Some(&(event.revision, event.op_index)) {
                return Ok(());
            }
            match (&event.kind, &event.value) {
                (EventKind::Deleted, _) => batch.delete_cf(objects_cf, event.key.as_bytes()),
                (_, Some(kv)) => batch.put_cf(objects_cf, event.key.as_bytes(), codec::encode(kv)),
                (_, None) => {
                    return Err(fail(format!(
                        "archived event {}:{} on {} has no value",
                        event.revision, event.op_index, event.key
                    )));
                }
            }
            if batch.size_in_bytes() >= INSTALL_BATCH_BYTES {
                db.db
                    .write_opt(std::mem::take(&mut batch), &bulk)
                    .map_err(io_step("replaying archived events"))?;
            }
            Ok(())
        })?;
        db.db
            .write_opt(std::mem::take(&mut batch), &bulk)
            .map_err(io_step("replaying archived events"))?;
        state_revision = target;
    }
    let revision = state_revision
        .checked_add(plan.bump)
        .ok_or_else(|| {
            fail(format!(
                "revision {state_revision} plus a bump of {} overflows",
                plan.bump
            ))
        })?
        .max(1);
    // The new log starts at index 1 in term 0: the first leader's term is 1.
    let log_id = crate::log_id(0, 0, 1);
    let voters: BTreeSet<NodeId> = plan.members.keys().copied().collect();
    let nodes: BTreeMap<NodeId, BasicNode> = plan
        .members
        .iter()
        .map(|(id, addr)| (*id, BasicNode { addr: addr.clone() }))
        .collect();
    let membership = Membership::new(vec![voters], nodes)
        .map_err(|e| fail(format!("the restored membership: {e}")))?;
    let membership = StoredMembership::new(Some(log_id), membership);
    let header = Header {
        meta: SnapshotMeta {
            last_log_id: Some(log_id),
            last_membership: membership.clone(),
        },
        revision_offset: revision - log_id.index,
    };
    let cluster_id = ClusterId::restored(
        &backup_identity,
        state_revision,
        plan.bump,
        &plan.cluster_token,
        &plan.members,
    );
    db.flush()?;
    // The state as a member that installed a snapshot of it at `log_id`:
    // everything before `revision` is compacted and no event is here.
    let meta = db.cf(CF_STORE_META);
    batch.put_cf(meta, store_meta::APPLIED, codec::encode(&Some(log_id)));
    batch.put_cf(meta, store_meta::MEMBERSHIP, codec::encode(&membership));
    batch.put_cf(
        meta,
        store_meta::REVISION_OFFSET,
        codec::encode(&header.revision_offset),
    );
    batch.put_cf(meta, store_meta::COMPACTED, codec::encode(&revision));
    batch.put_cf(meta, store_meta::EVENT_COUNT, codec::encode(&0u64));
    batch.put_cf(meta, store_meta::EVENTS_DELETED, codec::encode(&revision));
    batch.put_cf(meta, store_meta::CLUSTER_ID, cluster_id.to_bytes());
    batch.put_cf(
        db.cf(CF_RAFT_META),
        raft_meta::LAST_PURGED,
        codec::encode(&Some(log_id)),
    );
    db.write_synced(batch, "writing the restored state")?;
    // Its snapshot file, built from the restored objects: what the member
    // sends a member that joins later.
    let files = SnapshotFiles::open(db.dir().snapshots());
    let (path, file) = files.create_tmp("restore")?;
    let written = (|| {
        let io = |e: std::io::Error| fail(format!("writing {}: {e}", path.display()));
        let mut w =
            SnapshotWriter::new(BufWriter::with_capacity(1 << 20, &file), &header).map_err(io)?;
        let mut ro = rocksdb::ReadOptions::default();
        ro.fill_cache(false);
        for item in db
            .db
            .iterator_cf_opt(objects_cf, ro, rocksdb::IteratorMode::Start)
        {
            let (k, v) = item.map_err(io_step("reading restored objects"))?;
            w.record(&k, &v).map_err(io)?;
        }
        let (out, n, _) = w.finish().map_err(io)?;
        drop(out);
        file.sync_all().map_err(io)?;
        Ok::<_, StoreError>(n)
    })();
    match written {
        Ok(n) => objects = n,
        Err(e) => {
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
    }
    files.publish(&mut files.lock(), Some(log_id), &path)?;
    let state = AppliedState::load(&db)?;
    if state.revision() != revision || state.compacted != revision {
        return Err(fail(format!(
            "the restored state is at revision {} (compacted {}), expected {revision}",
            state.revision(),
            state.compacted
        )));
    }
    Ok(Restored {
        header: backup,
        objects,
        state_revision,
        replayed,
        revision,
        by_prefix,
        cluster_id,
    })
}
