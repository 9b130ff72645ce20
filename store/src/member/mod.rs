//! A running store member: the openraft instance with its RocksDB storage and
//! the watch hub. Each concern of a member has its own file:
//!
//! - `propose.rs`: proposals, and forwarding them from a follower to the leader.
//! - `batcher.rs`: group commit of concurrent transactions into batch entries,
//!   and on a follower into shared calls to the leader.
//! - `reads.rs`: linearizable and local reads, watches, the read index.
//! - `read_rounds.rs`: read-index rounds shared by concurrent reads.
//! - `metrics.rs`: the member's counters and their Prometheus rendering.
//! - `election.rs`: the election assist and its pure decision.
//! - `retention.rs`: the leader's retention task and how far it compacts.
//! - `admin.rs`: bootstrap, membership changes, status.
//! - `peer.rs`: serving the requests of other members.
//! - `snapshot_in.rs`: receiving a snapshot from the leader, chunk by chunk.

use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::Duration;

use openraft::async_runtime::WatchReceiver;
use openraft::{Config, SnapshotPolicy};
use tokio::sync::Notify;

use crate::command::Limits;
use crate::db::Db;
use crate::error::StoreError;
use crate::log_store::LogStore;
use crate::raft_network::NetworkFactory;
use crate::state_machine::{AppliedState, StateMachine};
use crate::transport::Transport;
use crate::watch::{WatchConfig, WatchHub};
use crate::{ClusterId, NodeId, Raft};

mod admin;
mod batcher;
mod election;
mod identity;
mod metrics;
mod peer;
mod propose;
mod read_rounds;
mod reads;
mod retention;
mod snapshot_in;

pub use admin::{MemberInfo, MemberStatus};
pub use metrics::Counters;
pub use retention::RetentionConfig;

/// Everything a member needs to start.
#[derive(Clone, Debug)]
pub struct MemberConfig {
    pub id: NodeId,
    /// The address other members reach this one at (host:port).
    pub addr: String,
    /// The data directory: RocksDB in `db/`, snapshots in `snapshots/` (see
    /// [`crate::data_dir`]).
    pub data_dir: PathBuf,
    pub heartbeat: Duration,
    pub election_timeout: (Duration, Duration),
    /// Build a snapshot (and purge the log behind it) after this many entries.
    pub snapshot_every: u64,
    /// Entries kept behind a snapshot for followers that are slightly behind.
    pub keep_behind_snapshot: u64,
    pub limits: Limits,
    pub retention: RetentionConfig,
    pub watch: WatchConfig,
    /// Deadline for a write to commit, or a read index to be confirmed.
    pub request_timeout: Duration,
    /// Log entries of queued transactions being committed at once; more
    /// transactions wait and go in together as one batch entry (see
    /// `batcher.rs`).
    pub commit_slots: usize,
    /// Archive events before they leave the retention window (see
    /// [`crate::archive`]); `None`: no archive.
    pub archive: Option<crate::archive::ArchiveConfig>,
    /// Mixed into the id of a cluster this member bootstraps (see
    /// [`crate::cluster_id`]): two clusters of the same members get
    /// different ids with different tokens.
    pub cluster_token: String,
}

impl MemberConfig {
    /// Defaults suited to a loaded two-core machine.
    pub fn new(id: NodeId, addr: impl Into<String>, data_dir: impl Into<PathBuf>) -> MemberConfig {
        MemberConfig {
            id,
            addr: addr.into(),
            data_dir: data_dir.into(),
            heartbeat: Duration::from_millis(250),
            election_timeout: (Duration::from_millis(1500), Duration::from_millis(3000)),
            snapshot_every: 10_000,
            keep_behind_snapshot: 1_000,
            limits: Limits::default(),
            retention: RetentionConfig::default(),
            watch: WatchConfig::default(),
            request_timeout: Duration::from_secs(5),
            commit_slots: 4,
            archive: None,
            cluster_token: DEFAULT_CLUSTER_TOKEN.into(),
        }
    }
}

/// The cluster token of a member configured without one.
pub const DEFAULT_CLUSTER_TOKEN: &str = "keel-cluster";

/// A running member.
pub struct Member {
    config: MemberConfig,
    raft: Raft,
    db: Arc<Db>,
    hub: Arc<WatchHub>,
    transport: Arc<dyn Transport>,
    /// Wakes background tasks on shutdown.
    stop: Arc<Notify>,
    counters: Counters,
    /// When an AppendEntries (or heartbeat) from a leader last arrived.
    last_append: std::sync::Mutex<std::time::Instant>,
    /// When this member last called an election itself (election assist).
    last_elect: std::sync::Mutex<Option<std::time::Instant>>,
    /// The group-commit queue and commit slots ([`batcher`]).
    batcher: batcher::Batcher,
    /// Read-index rounds of this member's reads, and of other members'
    /// requests for the read index.
    read_rounds: read_rounds::Rounds,
    peer_read_rounds: read_rounds::Rounds,
    /// This member, for the tasks it spawns.
    me: Weak<Member>,
    /// The event archive's progress (disabled without an archive).
    archive: Arc<crate::archive::archiver::ArchiveProgress>,
    /// The cluster's identity, once known ([`crate::cluster_id`]).
    cluster_id: std::sync::Mutex<Option<ClusterId>>,
    /// Where snapshots from the leader are received ([`snapshot_in`]).
    snapshot_files: Arc<crate::snapshot_file::SnapshotFiles>,
    /// The snapshot on its way in from the leader, if any.
    snapshot_in: tokio::sync::Mutex<Option<snapshot_in::Incoming>>,
}

fn raft_config(c: &MemberConfig) -> Result<Config, StoreError> {
    Config {
        cluster_name: "keel".into(),
        heartbeat_interval: c.heartbeat.as_millis() as u64,
        election_timeout_min: c.election_timeout.0.as_millis() as u64,
        election_timeout_max: c.election_timeout.1.as_millis() as u64,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(c.snapshot_every),
        max_in_snapshot_log_to_keep: c.keep_behind_snapshot,
        // Snapshot chunks (`raft_network`) stay far below the gRPC message
        // limit; each call may take seconds on a busy machine.
        snapshot_max_chunk_size: crate::raft_network::SNAPSHOT_CHUNK_BYTES as u64,
        install_snapshot_timeout: 10_000,
        purge_batch_size: (c.snapshot_every / 4).clamp(1, 256),
        replication_lag_threshold: c.snapshot_every.max(1000),
        // Bounds what the leader reads from its log per batch (openraft's
        // default, 300, is 450 MiB of 1.5 MiB entries). The bytes of a batch
        // are bounded by the network (`APPEND_BUDGET_BYTES`), which sends
        // the leading entries that fit and reports a partial success.
        max_payload_entries: 64,
        // A member that cannot win an election (cut off for a while, or
        // behind) asks first whether it would, and does not raise the term
        // and unseat a working leader when it comes back.
        enable_pre_vote: Some(true),
        ..Default::default()
    }
    .validate()
    .map_err(|e| StoreError::Raft(format!("invalid raft configuration: {e}")))
}

impl Member {
    /// Open the data directory and start Raft. A directory whose data cannot be
    /// trusted is refused with the reason; nothing is modified (except that a
    /// directory of the old, flat layout is first moved into its parts).
    pub async fn open(
        config: MemberConfig,
        transport: Arc<dyn Transport>,
    ) -> Result<Arc<Member>, StoreError> {
        let db = Db::open(&config.data_dir)?;
        let log_store = LogStore::new(db.clone());
        log_store.verify()?;
        crate::snapshot::recover_snapshot(&db)?;
        let state = AppliedState::load(&db)?;
        let applied = state.revision();
        let hub = WatchHub::new(db.clone(), config.watch, applied, state.compacted);
        let archive = crate::archive::archiver::ArchiveProgress::disabled();
        let archive_start = match &config.archive {
            Some(a) => {
                hub.set_archive(a.clone());
                let (entries, position) = crate::archive::archiver::prepare(a, &db)?;
                archive
                    .floor
                    .store(position, std::sync::atomic::Ordering::Release);
                Some((a.clone(), entries, position))
            }
            None => None,
        };
        let cluster_id = match db.get(
            crate::db::CF_STORE_META,
            crate::codec::store_meta::CLUSTER_ID,
        )? {
            None => None,
            Some(bytes) => {
                Some(
                    ClusterId::from_bytes(&bytes).ok_or_else(|| StoreError::Corrupt {
                        cf: crate::db::CF_STORE_META,
                        key: "cluster_id".into(),
                        detail: format!("the cluster id is {} bytes, not 16", bytes.len()),
                    })?,
                )
            }
        };
        if let Some(id) = cluster_id {
            transport.set_cluster_id(id);
        }
        let sm = StateMachine::new(db.clone(), hub.clone(), state).with_archive(archive.clone());
        let snapshot_files = sm.files();
        let raft = Raft::new(
            config.id,
            Arc::new(raft_config(&config)?),
            NetworkFactory {
                transport: transport.clone(),
            },
            log_store,
            sm,
        )
        .await
        .map_err(|e| StoreError::Raft(format!("starting raft: {e}")))?;
        let batcher = batcher::Batcher::new(config.commit_slots, config.limits.max_txn_bytes);
        let member = Arc::new_cyclic(|me| Member {
            config,
            raft,
            db,
            hub,
            transport,
            stop: Arc::new(Notify::new()),
            counters: Counters::default(),
            last_append: std::sync::Mutex::new(std::time::Instant::now()),
            last_elect: std::sync::Mutex::new(None),
            batcher,
            read_rounds: read_rounds::Rounds::default(),
            peer_read_rounds: read_rounds::Rounds::default(),
            me: me.clone(),
            archive: archive.clone(),
            cluster_id: std::sync::Mutex::new(cluster_id),
            snapshot_files,
            snapshot_in: tokio::sync::Mutex::new(None),
        });
        if let Some((config, entries, position)) = archive_start {
            tracing::info!(dir = %config.dir.display(), position, "archiving events");
            tokio::spawn(crate::archive::archiver::archive_loop(
                Arc::downgrade(&member),
                member.stop.clone(),
                config,
                entries,
                position,
                archive,
            ));
        }
        tokio::spawn(retention::retention_loop(
            Arc::downgrade(&member),
            member.stop.clone(),
        ));
        tokio::spawn(election::election_assist_loop(
            Arc::downgrade(&member),
            member.stop.clone(),
        ));
        tracing::info!(
            id = member.config.id,
            addr = %member.config.addr,
            revision = applied,
            cluster_id = %cluster_id.map(|c| c.to_string()).unwrap_or_else(|| "none yet".into()),
            "member started"
        );
        Ok(member)
    }

    pub fn id(&self) -> NodeId {
        self.config.id
    }

    pub fn config(&self) -> &MemberConfig {
        &self.config
    }

    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// Whether Raft is running on this member (it has not stopped on a fatal
    /// storage or network error, nor been shut down).
    pub fn is_running(&self) -> bool {
        self.raft.metrics().borrow_watched().running_state.is_ok()
    }

    pub fn hub(&self) -> &Arc<WatchHub> {
        &self.hub
    }

    /// A weak handle on the database: it is closed once this upgrade fails.
    pub fn db_handle(&self) -> Weak<Db> {
        Arc::downgrade(&self.db)
    }

    /// The current leader and its address, if known.
    pub fn leader(&self) -> Option<(NodeId, String)> {
        let m = self.raft.metrics().borrow_watched().clone();
        let id = self.heard_leader(m.current_leader)?;
        let addr = m.membership_config.membership().get_node(&id)?.addr.clone();
        Some((id, addr))
    }

    /// `leader` (as openraft names it) while this member still hears from
    /// it: a follower that heard nothing for longer than the maximum
    /// election timeout (every leader's lease) knows no leader. With
    /// pre-vote, openraft keeps naming the old leader until a new one is
    /// elected, which for a member cut off from the others is never; its
    /// requests would go to a leader that does not answer.
    pub(super) fn heard_leader(&self, leader: Option<NodeId>) -> Option<NodeId> {
        let id = leader?;
        if id == self.config.id {
            return Some(id);
        }
        let silent = self.last_append.lock().unwrap().elapsed();
        (silent <= self.config.election_timeout.1).then_some(id)
    }

    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow_watched().current_leader == Some(self.config.id)
    }

    /// Stop Raft and background tasks, and flush what was applied. The
    /// database closes when the last handle (including open watch streams)
    /// is dropped.
    pub async fn shutdown(&self) {
        self.stop.notify_waiters();
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(id = self.config.id, error = %e, "raft shutdown");
        }
        // Applied entries skip the WAL: flushed here, the data directory of
        // a member stopped cleanly holds all it applied (what `keel replay`
        // reads offline), not only what its log would apply again.
        let db = self.db.clone();
        if let Err(e) = blocking(move || db.flush()).await {
            tracing::warn!(id = self.config.id, error = %e, "flushing at shutdown");
        }
    }
}

/// Run a blocking storage call off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Raft(format!("read task failed: {e}")))?
}
