//! A running store member: the openraft instance with its RocksDB storage,
//! the watch hub, proposal forwarding to the leader, linearizable and local
//! reads, the leader's retention task, and membership administration.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};
use openraft::{BasicNode, ChangeMembers, Config, LogId, ServerState, SnapshotPolicy};
use rocksdb::IteratorMode;
use tokio::sync::Notify;

use crate::command::{Command, CommandOutcome, Limits, Op};
use crate::db::{CF_EVENTS, Db};
use crate::error::StoreError;
use crate::log_store::LogStore;
use crate::network::{
    LeaderError, LogPosition, NetworkFactory, PeerRequest, PeerResponse, Transport, TransportError,
};
use crate::read::{self, Consistency, RangeRequest, RangeResponse};
use crate::state_machine::{AppliedState, StateMachine};
use crate::watch::{WatchConfig, WatchHub, WatchStart, WatchStream};
use crate::{Event, KeyValue, NodeId, Raft, codec};

/// How long events are kept.
#[derive(Clone, Copy, Debug)]
pub struct RetentionConfig {
    /// Keep at most this many events.
    pub max_events: u64,
    /// Drop events older than this (`None`: no age limit).
    pub max_age: Option<Duration>,
    /// How often the leader checks.
    pub interval: Duration,
    /// At most this many events are dropped by one compaction command, so
    /// compaction proceeds in small steps between writes.
    pub batch: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            max_events: 100_000,
            max_age: Some(Duration::from_secs(3600)),
            interval: Duration::from_secs(5),
            batch: 10_000,
        }
    }
}

/// Everything a member needs to start.
#[derive(Clone, Debug)]
pub struct MemberConfig {
    pub id: NodeId,
    /// The address other members reach this one at (host:port).
    pub addr: String,
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
        }
    }
}

/// One member of the cluster, as listed in the membership.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberInfo {
    pub id: NodeId,
    pub addr: String,
    pub voter: bool,
}

/// A snapshot of a member's Raft state.
#[derive(Clone, Debug)]
pub struct MemberStatus {
    pub id: NodeId,
    pub leader: Option<NodeId>,
    pub term: u64,
    pub applied_index: u64,
    pub last_log_index: u64,
    pub compacted_revision: u64,
    pub members: Vec<MemberInfo>,
    pub state: String,
}

/// Counters of what a member has served, exported by [`Member::render_metrics`].
#[derive(Default)]
pub struct Counters {
    pub writes_applied: AtomicU64,
    pub writes_failed_precondition: AtomicU64,
    pub writes_error: AtomicU64,
    pub writes_forwarded: AtomicU64,
    pub reads_linearizable: AtomicU64,
    pub reads_local: AtomicU64,
    pub watches_started: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

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
}

fn raft_config(c: &MemberConfig) -> Result<Config, StoreError> {
    Config {
        cluster_name: "keel".into(),
        heartbeat_interval: c.heartbeat.as_millis() as u64,
        election_timeout_min: c.election_timeout.0.as_millis() as u64,
        election_timeout_max: c.election_timeout.1.as_millis() as u64,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(c.snapshot_every),
        max_in_snapshot_log_to_keep: c.keep_behind_snapshot,
        // Chunks stay far below the gRPC message limit; each may take seconds on a busy machine.
        snapshot_max_chunk_size: 1 << 20,
        install_snapshot_timeout: 10_000,
        purge_batch_size: (c.snapshot_every / 4).clamp(1, 256),
        replication_lag_threshold: c.snapshot_every.max(1000),
        // Bounds what the leader reads from its log per batch (openraft's
        // default, 300, is 450 MiB of 1.5 MiB entries). The bytes of a batch
        // are bounded by the network (`APPEND_BUDGET_BYTES`), which asks
        // openraft for fewer entries when they do not fit.
        max_payload_entries: 64,
        ..Default::default()
    }
    .validate()
    .map_err(|e| StoreError::Raft(format!("invalid raft configuration: {e}")))
}

impl Member {
    /// Open the data directory and start Raft. A directory whose data cannot be
    /// trusted is refused with the reason; nothing is modified.
    pub async fn open(
        config: MemberConfig,
        transport: Arc<dyn Transport>,
    ) -> Result<Arc<Member>, StoreError> {
        let db = Db::open(&config.data_dir)?;
        let log_store = LogStore::new(db.clone());
        log_store.verify()?;
        crate::state_machine::recover_snapshot(&db)?;
        let state = AppliedState::load(&db)?;
        let applied = state.applied.map(|l| l.index).unwrap_or(0);
        let hub = WatchHub::new(db.clone(), config.watch, applied, state.compacted);
        let sm = StateMachine::new(db.clone(), hub.clone(), state);
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
        let member = Arc::new(Member {
            config,
            raft,
            db,
            hub,
            transport,
            stop: Arc::new(Notify::new()),
            counters: Counters::default(),
            last_append: std::sync::Mutex::new(std::time::Instant::now()),
            last_elect: std::sync::Mutex::new(None),
        });
        tokio::spawn(retention_loop(Arc::downgrade(&member), member.stop.clone()));
        tokio::spawn(election_assist_loop(
            Arc::downgrade(&member),
            member.stop.clone(),
        ));
        tracing::info!(id = member.config.id, addr = %member.config.addr, revision = applied, "member started");
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

    pub fn hub(&self) -> &Arc<WatchHub> {
        &self.hub
    }

    /// A weak handle on the database: it is closed once this upgrade fails.
    pub fn db_handle(&self) -> Weak<Db> {
        Arc::downgrade(&self.db)
    }

    /// Bootstrap a new cluster with these members (id → address). Harmless on
    /// a member that is already part of a cluster.
    pub async fn initialize(&self, members: BTreeMap<NodeId, String>) -> Result<(), StoreError> {
        let nodes: BTreeMap<NodeId, BasicNode> = members
            .into_iter()
            .map(|(id, addr)| (id, BasicNode { addr }))
            .collect();
        match self.raft.initialize(nodes).await {
            Ok(()) => Ok(()),
            Err(RaftError::APIError(openraft::error::InitializeError::NotAllowed(_))) => Ok(()),
            Err(e) => Err(StoreError::Membership(format!("initialize: {e}"))),
        }
    }

    /// Bootstrap a single-member cluster of this member alone.
    pub async fn bootstrap_single(&self) -> Result<(), StoreError> {
        self.initialize(BTreeMap::from([(self.config.id, self.config.addr.clone())]))
            .await
    }

    /// The current leader and its address, if known.
    pub fn leader(&self) -> Option<(NodeId, String)> {
        let m = self.raft.metrics().borrow().clone();
        let id = m.current_leader?;
        let addr = m.membership_config.membership().get_node(&id)?.addr.clone();
        Some((id, addr))
    }

    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().current_leader == Some(self.config.id)
    }

    /// Propose a command; on a follower it is forwarded to the leader. With no
    /// known leader this fails at once with a retryable error.
    pub async fn propose(&self, cmd: Command) -> Result<CommandOutcome, StoreError> {
        let res = self.propose_inner(cmd).await;
        match &res {
            Ok(CommandOutcome::Failed(_)) => bump(&self.counters.writes_failed_precondition),
            Ok(_) => bump(&self.counters.writes_applied),
            Err(_) => bump(&self.counters.writes_error),
        }
        res
    }

    async fn propose_inner(&self, cmd: Command) -> Result<CommandOutcome, StoreError> {
        cmd.validate(&self.config.limits)?;
        match self.propose_local(cmd.clone()).await {
            Err(StoreError::NotLeader {
                leader_id,
                leader_addr,
            }) => {
                bump(&self.counters.writes_forwarded);
                let started = std::time::Instant::now();
                let millis = || started.elapsed().as_millis() as u64;
                let resp = self
                    .transport
                    .call(
                        leader_id,
                        &leader_addr,
                        PeerRequest::Forward(cmd),
                        self.config.request_timeout,
                    )
                    .await
                    .map_err(|e| match e {
                        // Never delivered: nothing was proposed, a retry is safe.
                        TransportError::Unreachable(_) | TransportError::TooLarge(_) => {
                            StoreError::Transport {
                                target: leader_id,
                                detail: e.to_string(),
                            }
                        }
                        // Sent, but no answer came back: the leader may have committed it.
                        TransportError::Network(_) => {
                            tracing::debug!(leader = leader_id, error = %e, "forwarded write: outcome unknown");
                            StoreError::Timeout {
                                step: "waiting for the leader's answer to a forwarded write",
                                millis: millis(),
                            }
                        }
                    })?;
                match resp {
                    PeerResponse::Forward(r) => {
                        r.map_err(|e| e.into_store_error(leader_id, millis()))
                    }
                    other => Err(StoreError::Transport {
                        target: leader_id,
                        detail: format!("unexpected answer {other:?}"),
                    }),
                }
            }
            r => r,
        }
    }

    /// Apply a transaction; a failed precondition becomes `StoreError::Precondition`.
    pub async fn txn(&self, ops: Vec<Op>) -> Result<u64, StoreError> {
        match self.propose(Command::txn(ops)).await? {
            CommandOutcome::Applied { revision } => Ok(revision),
            CommandOutcome::Failed(f) => Err(StoreError::Precondition(Box::new(f))),
            other => Err(StoreError::Raft(format!("unexpected outcome {other:?}"))),
        }
    }

    /// Compact the event log up to `revision` on every member.
    pub async fn compact(&self, revision: u64) -> Result<u64, StoreError> {
        match self.propose(Command::compact(revision)).await? {
            CommandOutcome::Compacted { compacted } => Ok(compacted),
            other => Err(StoreError::Raft(format!("unexpected outcome {other:?}"))),
        }
    }

    async fn propose_local(&self, cmd: Command) -> Result<CommandOutcome, StoreError> {
        let t = self.config.request_timeout;
        match tokio::time::timeout(t, self.raft.client_write(cmd)).await {
            Err(_) => Err(StoreError::Timeout {
                step: "committing a write",
                millis: t.as_millis() as u64,
            }),
            Ok(Ok(resp)) => Ok(resp.data),
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
                Err(self.not_leader(f.leader_id, f.leader_node))
            }
            Ok(Err(e)) => Err(StoreError::Raft(e.to_string())),
        }
    }

    fn not_leader(&self, id: Option<NodeId>, node: Option<BasicNode>) -> StoreError {
        match (id, node) {
            (Some(leader_id), Some(n)) if leader_id != self.config.id => StoreError::NotLeader {
                leader_id,
                leader_addr: n.addr,
            },
            _ => StoreError::NoLeader(format!("member {} knows no leader", self.config.id)),
        }
    }

    /// On the leader: confirm leadership with a quorum; the index to wait for.
    async fn read_index_local(&self) -> Result<u64, StoreError> {
        let t = self.config.request_timeout;
        match tokio::time::timeout(t, self.raft.get_read_log_id()).await {
            Err(_) => Err(StoreError::Timeout {
                step: "confirming leadership for a read",
                millis: t.as_millis() as u64,
            }),
            Ok(Ok((read, _applied))) => Ok(read.map(|l| l.index).unwrap_or(0)),
            Ok(Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)))) => {
                Err(self.not_leader(f.leader_id, f.leader_node))
            }
            Ok(Err(e)) => Err(StoreError::Raft(e.to_string())),
        }
    }

    /// Wait until this member has applied everything committed before now.
    pub async fn linearize(&self) -> Result<u64, StoreError> {
        let index = match self.read_index_local().await {
            Err(StoreError::NotLeader {
                leader_id,
                leader_addr,
            }) => {
                let resp = self
                    .transport
                    .call(
                        leader_id,
                        &leader_addr,
                        PeerRequest::ReadIndex,
                        self.config.request_timeout,
                    )
                    .await
                    .map_err(|e| StoreError::Transport {
                        target: leader_id,
                        detail: e.to_string(),
                    })?;
                match resp {
                    PeerResponse::ReadIndex(r) => r.map_err(|e| {
                        e.into_store_error(
                            leader_id,
                            self.config.request_timeout.as_millis() as u64,
                        )
                    })?,
                    other => {
                        return Err(StoreError::Transport {
                            target: leader_id,
                            detail: format!("unexpected answer {other:?}"),
                        });
                    }
                }
            }
            r => r?,
        };
        let t = self.config.request_timeout;
        self.raft
            .wait(Some(t))
            .applied_index_at_least(Some(index), "linearizable read")
            .await
            .map_err(|_| StoreError::Timeout {
                step: "applying up to the read index",
                millis: t.as_millis() as u64,
            })?;
        Ok(index)
    }

    /// Read one key.
    pub async fn get(
        &self,
        key: &str,
        consistency: Consistency,
    ) -> Result<(Option<KeyValue>, u64), StoreError> {
        self.count_read(consistency);
        if consistency == Consistency::Linearizable {
            self.linearize().await?;
        }
        let db = self.db.clone();
        let key = key.to_string();
        blocking(move || read::get(&db, &key)).await
    }

    /// Read a range of keys (see [`RangeRequest`]).
    pub async fn range(&self, req: RangeRequest) -> Result<RangeResponse, StoreError> {
        self.count_read(req.consistency);
        if req.consistency == Consistency::Linearizable
            && req.revision.is_none()
            && req.continue_token.is_none()
        {
            self.linearize().await?;
        }
        let db = self.db.clone();
        blocking(move || read::range(&db, &req)).await
    }

    /// Watch every key starting with `prefix`.
    pub fn watch(
        &self,
        prefix: impl Into<String>,
        start: WatchStart,
    ) -> Result<WatchStream, StoreError> {
        bump(&self.counters.watches_started);
        self.hub.watch(prefix, start)
    }

    fn count_read(&self, consistency: Consistency) {
        match consistency {
            Consistency::Linearizable => bump(&self.counters.reads_linearizable),
            Consistency::Local => bump(&self.counters.reads_local),
        }
    }

    /// Whether this member can serve linearizable reads now: it knows a leader
    /// and has applied everything committed before the check.
    pub async fn ready(&self) -> bool {
        self.leader().is_some() && self.linearize().await.is_ok()
    }

    /// Prometheus text exposition of this member's state and counters.
    pub fn render_metrics(&self) -> String {
        let m = self.raft.metrics().borrow().clone();
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
            for (labels, v) in samples {
                out.push_str(&format!("{name}{labels} {v}\n"));
            }
        };
        let is_leader = u64::from(m.current_leader == Some(self.config.id));
        metric(
            "keel_raft_term",
            "gauge",
            "Current Raft term.",
            &[("", m.current_term)],
        );
        metric(
            "keel_raft_is_leader",
            "gauge",
            "1 if this member leads.",
            &[("", is_leader)],
        );
        metric(
            "keel_raft_has_leader",
            "gauge",
            "1 if this member knows a leader.",
            &[("", u64::from(m.current_leader.is_some()))],
        );
        metric(
            "keel_raft_last_log_index",
            "gauge",
            "Index of the last entry in the local Raft log.",
            &[("", m.last_log_index.unwrap_or(0))],
        );
        metric(
            "keel_raft_applied_index",
            "gauge",
            "Index of the last applied entry (the member's revision).",
            &[("", m.last_applied.map(|l| l.index).unwrap_or(0))],
        );
        metric(
            "keel_raft_snapshot_index",
            "gauge",
            "Index covered by the current snapshot.",
            &[("", m.snapshot.map(|l| l.index).unwrap_or(0))],
        );
        metric(
            "keel_raft_purged_index",
            "gauge",
            "Index up to which the Raft log was purged.",
            &[("", m.purged.map(|l| l.index).unwrap_or(0))],
        );
        metric(
            "keel_store_compacted_revision",
            "gauge",
            "Events at or below this revision are compacted.",
            &[("", self.hub.compacted())],
        );
        metric(
            "keel_store_watchers",
            "gauge",
            "Open watchers.",
            &[("", self.hub.watcher_count() as u64)],
        );
        metric(
            "keel_store_writes_total",
            "counter",
            "Proposals submitted to this member, by result.",
            &[
                ("{result=\"applied\"}", get(&c.writes_applied)),
                (
                    "{result=\"precondition_failed\"}",
                    get(&c.writes_failed_precondition),
                ),
                ("{result=\"error\"}", get(&c.writes_error)),
            ],
        );
        metric(
            "keel_store_writes_forwarded_total",
            "counter",
            "Proposals forwarded to the leader.",
            &[("", get(&c.writes_forwarded))],
        );
        metric(
            "keel_store_reads_total",
            "counter",
            "Reads served, by consistency.",
            &[
                ("{consistency=\"linearizable\"}", get(&c.reads_linearizable)),
                ("{consistency=\"local\"}", get(&c.reads_local)),
            ],
        );
        metric(
            "keel_store_watches_started_total",
            "counter",
            "Watches started.",
            &[("", get(&c.watches_started))],
        );
        out
    }

    /// The applied and compacted revisions of this member.
    pub fn revisions(&self) -> Result<(u64, u64), StoreError> {
        read::revisions(&self.db)
    }

    /// Every event this member retains, in order (for tests and tooling).
    pub fn events(&self) -> Result<Vec<Event>, StoreError> {
        let mut out = Vec::new();
        for item in self
            .db
            .db
            .iterator_cf(self.db.cf(CF_EVENTS), IteratorMode::Start)
        {
            let (k, v) = item.map_err(|source| StoreError::Io {
                step: "reading events",
                source,
            })?;
            out.push(codec::decode(&v).map_err(|detail| StoreError::Corrupt {
                cf: CF_EVENTS,
                key: format!("{:?}", codec::parse_event_key(&k)),
                detail,
            })?);
        }
        Ok(out)
    }

    /// Bytes this member's data directory occupies (memtables flushed first).
    pub fn disk_usage(&self) -> Result<u64, StoreError> {
        self.db.disk_usage()
    }

    /// Serve a request from another member.
    pub async fn handle(&self, req: PeerRequest) -> PeerResponse {
        match req {
            PeerRequest::Vote(r) => PeerResponse::Vote(self.raft.vote(r).await),
            PeerRequest::Append(r) => {
                *self.last_append.lock().unwrap() = std::time::Instant::now();
                PeerResponse::Append(self.raft.append_entries(r).await)
            }
            PeerRequest::Snapshot(r) => PeerResponse::Snapshot(self.raft.install_snapshot(r).await),
            PeerRequest::Forward(cmd) => {
                let res = match cmd.validate(&self.config.limits) {
                    Ok(()) => self.propose_local(cmd).await,
                    Err(e) => Err(e),
                };
                PeerResponse::Forward(res.map_err(|e| LeaderError::from(&e)))
            }
            PeerRequest::ReadIndex => PeerResponse::ReadIndex(
                self.read_index_local()
                    .await
                    .map_err(|e| LeaderError::from(&e)),
            ),
            PeerRequest::Position => PeerResponse::Position(self.position()),
        }
    }

    fn position(&self) -> LogPosition {
        let m = self.raft.metrics().borrow().clone();
        let silent = if m.current_leader == Some(self.config.id) {
            Duration::ZERO
        } else {
            self.last_append.lock().unwrap().elapsed()
        };
        LogPosition {
            last_log: self.raft.data_metrics().borrow().last_log,
            leader_silent_ms: silent.as_millis() as u64,
        }
    }

    /// Election assist. openraft 0.9 draws a member's election timeout once
    /// per process and has no pre-vote, so after the leader dies the
    /// survivors can reject each other's candidacies for several rounds
    /// (measured: 5–18 s of write unavailability). Once no member has heard
    /// from a leader for longer than the maximum election timeout (so every
    /// leader lease has run out), the voter whose last log id (leader term,
    /// then index: the order Raft grants votes by) is the greatest among those
    /// it can reach (ties to the lowest id) calls an election at once; the
    /// others grant it, since its log is at least as up to date as theirs. A
    /// longer log from an older term ranks below a shorter one from a newer
    /// term: ranking by index alone let a stale member campaign again and
    /// again, raising its term past the member that could win, so the cluster
    /// stayed leaderless. Calling an election is always safe in Raft; this
    /// only chooses who and when.
    async fn assist_election(&self) {
        // The cheap test first: a follower that hears its leader does nothing.
        let quiet = self.config.election_timeout.1 + self.config.heartbeat;
        if self.last_append.lock().unwrap().elapsed() < quiet {
            return;
        }
        let m = self.raft.metrics().borrow().clone();
        let me = self.config.id;
        if m.current_leader == Some(me) {
            return;
        }
        let membership = m.membership_config.membership().clone();
        let voters: Vec<NodeId> = membership.voter_ids().collect();
        if !voters.contains(&me) {
            return;
        }
        if self
            .last_elect
            .lock()
            .unwrap()
            .is_some_and(|t| t.elapsed() < self.config.election_timeout.0)
        {
            return;
        }
        let mine = self.raft.data_metrics().borrow().last_log;
        let mut answers = Vec::new();
        for id in voters.iter().copied().filter(|id| *id != me) {
            let Some(node) = membership.get_node(&id) else {
                continue;
            };
            let answer = self
                .transport
                .call(id, &node.addr, PeerRequest::Position, self.config.heartbeat)
                .await;
            if let Ok(PeerResponse::Position(p)) = answer {
                answers.push((id, p));
            }
        }
        if !should_call_election(me, mine, &answers, voters.len(), quiet) {
            return;
        }
        *self.last_elect.lock().unwrap() = Some(std::time::Instant::now());
        tracing::info!(
            id = me,
            last_log = ?mine,
            "no leader heard from and this member's log is the most up to date reachable: calling an election"
        );
        if let Err(e) = self.raft.trigger().elect().await {
            tracing::warn!(error = %e, "calling an election failed");
        }
    }

    fn ensure_leader(&self) -> Result<(), StoreError> {
        match self.leader() {
            Some((id, _)) if id == self.config.id => Ok(()),
            Some((leader_id, leader_addr)) => Err(StoreError::NotLeader {
                leader_id,
                leader_addr,
            }),
            None => Err(StoreError::NoLeader(format!(
                "member {} knows no leader",
                self.config.id
            ))),
        }
    }

    /// Add a member: as a learner until it has caught up, then as a voter.
    pub async fn add_member(
        &self,
        id: NodeId,
        addr: String,
    ) -> Result<Vec<MemberInfo>, StoreError> {
        self.ensure_leader()?;
        let err = |e: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>| {
            StoreError::Membership(e.to_string())
        };
        tracing::info!(id, %addr, "adding member as learner");
        self.raft
            .add_learner(id, BasicNode { addr }, true)
            .await
            .map_err(err)?;
        tracing::info!(id, "promoting member to voter");
        self.raft
            .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
            .await
            .map_err(err)?;
        Ok(self.members())
    }

    /// Remove a member (voter or learner) from the cluster.
    pub async fn remove_member(&self, id: NodeId) -> Result<Vec<MemberInfo>, StoreError> {
        self.ensure_leader()?;
        let err = |e: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>| {
            StoreError::Membership(e.to_string())
        };
        let is_voter = self.members().iter().any(|m| m.id == id && m.voter);
        if is_voter {
            self.raft
                .change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])), false)
                .await
                .map_err(err)?;
        } else {
            self.raft
                .change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([id])), false)
                .await
                .map_err(err)?;
        }
        Ok(self.members())
    }

    /// The members in the current membership config.
    pub fn members(&self) -> Vec<MemberInfo> {
        let m = self.raft.metrics().borrow().membership_config.clone();
        let voters: BTreeSet<NodeId> = m.membership().voter_ids().collect();
        m.membership()
            .nodes()
            .map(|(id, n)| MemberInfo {
                id: *id,
                addr: n.addr.clone(),
                voter: voters.contains(id),
            })
            .collect()
    }

    pub fn status(&self) -> MemberStatus {
        let m = self.raft.metrics().borrow().clone();
        MemberStatus {
            id: self.config.id,
            leader: m.current_leader,
            term: m.current_term,
            applied_index: m.last_applied.map(|l| l.index).unwrap_or(0),
            last_log_index: m.last_log_index.unwrap_or(0),
            compacted_revision: self.hub.compacted(),
            members: self.members(),
            state: match m.state {
                ServerState::Leader => "leader",
                ServerState::Follower => "follower",
                ServerState::Candidate => "candidate",
                ServerState::Learner => "learner",
                ServerState::Shutdown => "shutdown",
            }
            .into(),
        }
    }

    /// Stop Raft and background tasks. The database closes when the last
    /// handle (including open watch streams) is dropped.
    pub async fn shutdown(&self) {
        self.stop.notify_waiters();
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(id = self.config.id, error = %e, "raft shutdown");
        }
    }

    /// One step of retention on the leader: the revision to compact up to, if any.
    pub async fn retention_target(&self, now_ms: u64) -> Result<Option<u64>, StoreError> {
        let db = self.db.clone();
        let cfg = self.config.retention;
        blocking(move || retention_target(&db, &cfg, now_ms)).await
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Raft(format!("read task failed: {e}")))?
}

/// Walk the oldest events: the newest revision that the count or age bound
/// allows to drop, at most `batch` events past the compacted revision.
fn retention_target(
    db: &Db,
    cfg: &RetentionConfig,
    now_ms: u64,
) -> Result<Option<u64>, StoreError> {
    let state = AppliedState::load(db)?;
    let cutoff = cfg
        .max_age
        .map(|a| now_ms.saturating_sub(a.as_millis() as u64));
    let mut target = None;
    for (dropped, item) in db
        .db
        .iterator_cf(db.cf(CF_EVENTS), IteratorMode::Start)
        .enumerate()
    {
        let dropped = dropped as u64;
        let (k, v) = item.map_err(|source| StoreError::Io {
            step: "scanning events for retention",
            source,
        })?;
        let (rev, _) = codec::parse_event_key(&k).unwrap_or((0, 0));
        let over_count = state.event_count.saturating_sub(dropped) > cfg.max_events;
        let too_old = match cutoff {
            Some(c) => {
                let ev: Event = codec::decode(&v).map_err(|detail| StoreError::Corrupt {
                    cf: CF_EVENTS,
                    key: format!("({rev},..)"),
                    detail,
                })?;
                ev.at_ms < c
            }
            None => false,
        };
        // Stay on revision boundaries: once a revision is started it is taken whole.
        if target != Some(rev) && (!(over_count || too_old) || dropped >= cfg.batch) {
            break;
        }
        target = Some(rev);
    }
    Ok(target.filter(|t| *t > state.compacted))
}

/// The election assist's rule: call an election when no reachable voter
/// still hears a leader, this member's last log id is the greatest among
/// them in Raft's vote order (ties to the lowest id), and it can reach a
/// majority with them. Any peer with a greater last log id would refuse its
/// vote, so the assist then leaves the election to that peer.
fn should_call_election(
    me: NodeId,
    my_last_log: Option<LogId<NodeId>>,
    answers: &[(NodeId, LogPosition)],
    voters: usize,
    quiet: Duration,
) -> bool {
    let someone_hears_a_leader = answers
        .iter()
        .any(|(_, p)| (p.leader_silent_ms as u128) < quiet.as_millis());
    let someone_is_ahead = answers
        .iter()
        .any(|(id, p)| p.last_log > my_last_log || (p.last_log == my_last_log && *id < me));
    let majority = (answers.len() + 1) * 2 > voters;
    !someone_hears_a_leader && !someone_is_ahead && majority
}

/// Runs [`Member::assist_election`] every heartbeat interval.
async fn election_assist_loop(member: Weak<Member>, stop: Arc<Notify>) {
    let tick = match member.upgrade() {
        Some(m) => m.config.heartbeat,
        None => return,
    };
    loop {
        tokio::select! {
            _ = stop.notified() => return,
            _ = tokio::time::sleep(tick) => {}
        }
        let Some(m) = member.upgrade() else { return };
        m.assist_election().await;
    }
}

async fn retention_loop(member: Weak<Member>, stop: Arc<Notify>) {
    let interval = match member.upgrade() {
        Some(m) => m.config.retention.interval,
        None => return,
    };
    loop {
        tokio::select! {
            _ = stop.notified() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        let Some(m) = member.upgrade() else { return };
        if !m.is_leader() {
            continue;
        }
        match m.retention_target(crate::command::now_ms()).await {
            Ok(Some(target)) => match m.compact(target).await {
                Ok(c) => tracing::debug!(compacted = c, "retention compacted the event log"),
                Err(e) => tracing::warn!(error = %e, "retention compaction failed"),
            },
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "retention scan failed"),
        }
    }
}

#[cfg(test)]
mod election_assist_tests {
    use std::time::Duration;

    use openraft::{CommittedLeaderId, LogId};

    use super::{LogPosition, should_call_election};

    /// A last log id written by leader `leader` in `term`, at `index`.
    fn at(term: u64, leader: u64, index: u64) -> Option<LogId<u64>> {
        Some(LogId::new(CommittedLeaderId::new(term, leader), index))
    }

    fn silent(last_log: Option<LogId<u64>>) -> LogPosition {
        LogPosition {
            last_log,
            leader_silent_ms: 4000,
        }
    }

    #[test]
    fn the_most_up_to_date_log_calls_the_election() {
        let quiet = Duration::from_millis(3250);
        // Two survivors of three: the one ahead calls, the other waits.
        assert!(should_call_election(
            2,
            at(4, 1, 120),
            &[(3, silent(at(4, 1, 118)))],
            3,
            quiet
        ));
        assert!(!should_call_election(
            3,
            at(4, 1, 118),
            &[(2, silent(at(4, 1, 120)))],
            3,
            quiet
        ));
        // Equal logs: the lower id calls.
        assert!(should_call_election(
            2,
            at(4, 1, 120),
            &[(3, silent(at(4, 1, 120)))],
            3,
            quiet
        ));
        assert!(!should_call_election(
            3,
            at(4, 1, 120),
            &[(2, silent(at(4, 1, 120)))],
            3,
            quiet
        ));
        // A member that still hears the leader makes everyone stand down.
        let hearing = LogPosition {
            last_log: at(4, 1, 100),
            leader_silent_ms: 200,
        };
        assert!(!should_call_election(
            2,
            at(4, 1, 120),
            &[(3, hearing)],
            3,
            quiet
        ));
        // Alone in a minority: no election (it could not win).
        assert!(!should_call_election(2, at(4, 1, 120), &[], 3, quiet));
        // Five voters, three reachable including this one: a majority.
        assert!(should_call_election(
            1,
            at(2, 1, 50),
            &[(4, silent(at(2, 1, 40))), (5, silent(at(2, 1, 49)))],
            5,
            quiet
        ));
        // An empty log ranks below any entry.
        assert!(!should_call_election(
            1,
            None,
            &[(2, silent(at(1, 1, 1)))],
            3,
            quiet
        ));
    }

    #[test]
    fn a_longer_log_from_an_older_term_ranks_below_a_newer_term() {
        let quiet = Duration::from_millis(3250);
        // Member 3 holds a stale uncommitted tail (term 5 up to 110), member 1
        // the newer term's log (term 6 up to 103). Raft grants votes to 1, not
        // to 3: only 1 may call the election, whatever the ids.
        assert!(!should_call_election(
            3,
            at(5, 3, 110),
            &[(1, silent(at(6, 2, 103)))],
            3,
            quiet
        ));
        assert!(should_call_election(
            1,
            at(6, 2, 103),
            &[(3, silent(at(5, 3, 110)))],
            3,
            quiet
        ));
        // Same with the ids swapped.
        assert!(!should_call_election(
            1,
            at(5, 3, 110),
            &[(3, silent(at(6, 2, 103)))],
            3,
            quiet
        ));
        assert!(should_call_election(
            3,
            at(6, 2, 103),
            &[(1, silent(at(5, 3, 110)))],
            3,
            quiet
        ));
    }
}
