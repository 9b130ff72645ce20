//! Proposals: validated, committed through Raft on the leader, and on a
//! follower forwarded to the leader, with the outcome of a lost answer kept
//! unknown (never reported as safe to retry).

use openraft::async_runtime::WatchReceiver;
use openraft::error::{ClientWriteError, ForwardReason, RaftError};
use openraft::{BasicNode, Instant as _, ReadPolicy};

use super::Member;
use super::batcher::Route;
use super::metrics::{add, bump};
use crate::NodeId;
use crate::command::{Actor, Command, CommandBody, CommandOutcome, Op, Txn};
use crate::error::StoreError;
use crate::transport::{PeerRequest, PeerResponse, TransportError};

impl Member {
    /// Propose a command; on a follower it is forwarded to the leader. With no
    /// known leader this fails at once with a retryable error.
    pub async fn propose(&self, cmd: Command) -> Result<CommandOutcome, StoreError> {
        // Boxed: the routed proposal nests the batcher, openraft's write and
        // the forward call, and every caller's future would otherwise carry
        // that whole depth in its own type (past rustc's default recursion
        // limit in a caller with a few awaits of its own).
        let res = Box::pin(self.propose_inner(cmd)).await;
        match &res {
            Ok(CommandOutcome::Failed(_)) => bump(&self.counters.writes_failed_precondition),
            Ok(_) => bump(&self.counters.writes_applied),
            Err(_) => bump(&self.counters.writes_error),
        }
        res
    }

    async fn propose_inner(&self, cmd: Command) -> Result<CommandOutcome, StoreError> {
        cmd.validate(&self.config.limits)?;
        self.propose_routed(cmd, Route::ToLeader).await
    }

    /// A transaction goes through the group-commit queue
    /// ([`super::batcher`]), keeping its actor; anything else (a compaction,
    /// a batch a follower grouped) is an entry of its own.
    async fn propose_routed(
        &self,
        cmd: Command,
        route: Route,
    ) -> Result<CommandOutcome, StoreError> {
        match cmd.body {
            CommandBody::Txn(ops) => self.propose_txn(Txn { ops, actor: None }, route).await,
            CommandBody::TxnBy(txn) => self.propose_txn(txn, route).await,
            _ => self.commit_via(cmd, route).await,
        }
    }

    /// Commit `cmd` as one entry along `route`.
    pub(super) async fn commit_via(
        &self,
        cmd: Command,
        route: Route,
    ) -> Result<CommandOutcome, StoreError> {
        match route {
            Route::ToLeader => self.commit_or_forward(cmd).await,
            Route::Here => self.commit_local(cmd).await,
        }
    }

    /// Commit `cmd` here if this member leads, otherwise forward it to the
    /// leader as one call (a batch entry forwards whole).
    ///
    /// A follower that hears from another leader forwards at once: asking
    /// its own Raft core first would only get the same answer, at the cost
    /// of a round trip through the core's queue on every forwarded write.
    /// If that leader has meanwhile stepped down it refuses the write
    /// before proposing it, and the write takes the slow path below.
    async fn commit_or_forward(&self, cmd: Command) -> Result<CommandOutcome, StoreError> {
        if let Some((leader_id, leader_addr)) = self.leader().filter(|l| l.0 != self.config.id) {
            bump(&self.counters.forwards_direct);
            match self.forward(cmd.clone(), leader_id, &leader_addr).await {
                Err(StoreError::NotLeader { .. } | StoreError::NoLeader(_)) => {}
                r => return r,
            }
        }
        match self.commit_local(cmd.clone()).await {
            Err(StoreError::NotLeader {
                leader_id,
                leader_addr,
            }) => self.forward(cmd, leader_id, &leader_addr).await,
            r => r,
        }
    }

    /// Send `cmd` to the leader to commit; its outcome, or why the leader's
    /// answer did not come back (then the outcome is unknown).
    async fn forward(
        &self,
        cmd: Command,
        leader_id: NodeId,
        leader_addr: &str,
    ) -> Result<CommandOutcome, StoreError> {
        let writes = match &cmd.body {
            CommandBody::Batch(t) => t.len(),
            CommandBody::BatchBy(t) => t.len(),
            _ => 1,
        };
        add(&self.counters.writes_forwarded, writes as u64);
        bump(&self.counters.forward_calls);
        let started = std::time::Instant::now();
        let millis = || started.elapsed().as_millis() as u64;
        let resp = self
            .transport
            .call(
                leader_id,
                leader_addr,
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
            PeerResponse::Forward(r) => r.map_err(|e| e.into_store_error(leader_id, millis())),
            other => Err(StoreError::Transport {
                target: leader_id,
                detail: format!("unexpected answer {other:?}"),
            }),
        }
    }

    /// Apply a transaction; a failed precondition becomes `StoreError::Precondition`.
    pub async fn txn(&self, ops: Vec<Op>) -> Result<u64, StoreError> {
        self.txn_as(Txn { ops, actor: None }).await
    }

    /// [`Member::txn`] on behalf of an actor, whom its events name.
    pub async fn txn_by(&self, ops: Vec<Op>, actor: Actor) -> Result<u64, StoreError> {
        self.txn_as(Txn {
            ops,
            actor: Some(actor),
        })
        .await
    }

    async fn txn_as(&self, txn: Txn) -> Result<u64, StoreError> {
        match self.propose(Command::txn_as(txn)).await? {
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

    /// Commit on this member if it leads, never forwarding: a write another
    /// member forwarded here.
    pub(super) async fn propose_local(&self, cmd: Command) -> Result<CommandOutcome, StoreError> {
        self.propose_routed(cmd, Route::Here).await
    }

    /// Propose one log entry through Raft on this member.
    pub(super) async fn commit_local(&self, cmd: Command) -> Result<CommandOutcome, StoreError> {
        let t = self.config.request_timeout;
        let deadline = tokio::time::Instant::now() + t;
        self.renew_lapsed_lease(deadline).await;
        match tokio::time::timeout_at(deadline, self.raft.client_write(cmd)).await {
            Err(_) => Err(StoreError::Timeout {
                step: "committing a write",
                millis: t.as_millis() as u64,
            }),
            Ok(Ok(resp)) => Ok(resp.data),
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))))
                if f.reason == ForwardReason::LeaseExpired =>
            {
                // Nothing was proposed: retryable.
                Err(StoreError::NoLeader(format!(
                    "member {} leads, but no quorum has answered it within its lease",
                    self.config.id
                )))
            }
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
                Err(self.not_leader(f.leader_id, f.leader_node))
            }
            Ok(Err(e)) => Err(StoreError::Raft(e.to_string())),
        }
    }

    /// A leader takes writes only while a quorum answered it within its
    /// lease (the maximum election timeout; openraft 0.10 refuses them
    /// otherwise, so that a leader cut off from the others stops taking
    /// writes it could never commit). A leader just elected, or one whose
    /// followers were slow to answer, first confirms its leadership with a
    /// quorum, which renews the lease, rather than refuse the write.
    async fn renew_lapsed_lease(&self, deadline: tokio::time::Instant) {
        let m = self.raft.metrics().borrow_watched().clone();
        if m.current_leader != Some(self.config.id)
            || m.membership_config.membership().voter_ids().count() < 2
        {
            return;
        }
        let lease = self.config.election_timeout.1;
        if m.last_quorum_acked.is_some_and(|t| t.elapsed() < lease) {
            return;
        }
        bump(&self.counters.lease_renewals);
        let _ = tokio::time::timeout_at(
            deadline,
            self.raft.ensure_linearizable(ReadPolicy::ReadIndex),
        )
        .await;
    }

    pub(super) fn not_leader(&self, id: Option<NodeId>, node: Option<BasicNode>) -> StoreError {
        match (self.heard_leader(id), node) {
            (Some(leader_id), Some(n)) if leader_id != self.config.id => StoreError::NotLeader {
                leader_id,
                leader_addr: n.addr,
            },
            _ => StoreError::NoLeader(format!("member {} knows no leader", self.config.id)),
        }
    }
}
