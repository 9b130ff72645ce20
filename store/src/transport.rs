//! The member-to-member transport seam: the [`Transport`] trait (one call per
//! peer request) and what travels over it. Tests plug in their own
//! `Transport` to cut, drop or delay links; the members above it cannot tell
//! the difference. The real one is [`crate::grpc::GrpcTransport`].

use std::time::Duration;

use openraft::error::RaftError;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};

use crate::command::{Command, CommandOutcome};
use crate::error::StoreError;
use crate::{LogId, NodeId, SnapshotMeta, TypeConfig, Vote};

/// A request from one member to another.
#[derive(Debug, Serialize, Deserialize)]
pub enum PeerRequest {
    Vote(VoteRequest<TypeConfig>),
    Append(AppendEntriesRequest<TypeConfig>),
    Snapshot(SnapshotChunk),
    /// Propose this command on the receiving member (the leader).
    Forward(Command),
    /// Confirm leadership and return the index a linearizable read waits for.
    ReadIndex,
    /// Where the receiver's log ends and when it last heard from a leader
    /// (see the election assist, `member/election.rs`).
    Position,
    /// Would the receiver vote for this candidate? (Raft's pre-vote: asked
    /// before a member raises its term, so a member that cannot win, such
    /// as one cut off for a while, never disturbs a working leader.)
    /// Answered as [`PeerResponse::Vote`].
    PreVote(VoteRequest<TypeConfig>),
}

/// One piece of a snapshot on its way from the leader to a member, in
/// order from offset 0; the last one has `done` set.
#[derive(Debug, Serialize, Deserialize)]
pub struct SnapshotChunk {
    /// The sending leader's vote.
    pub vote: Vote,
    /// What the whole snapshot covers.
    pub meta: SnapshotMeta,
    /// Where `data` starts in the snapshot file.
    pub offset: u64,
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
    pub done: bool,
}

/// The answer to a [`PeerRequest`], variant for variant.
#[derive(Debug, Serialize, Deserialize)]
pub enum PeerResponse {
    Vote(Result<VoteResponse<TypeConfig>, RaftError<TypeConfig>>),
    Append(Result<AppendEntriesResponse<TypeConfig>, RaftError<TypeConfig>>),
    /// The receiver's vote, or why it refused the chunk.
    Snapshot(Result<SnapshotResponse<TypeConfig>, String>),
    Forward(Result<CommandOutcome, LeaderError>),
    ReadIndex(Result<u64, LeaderError>),
    Position(LogPosition),
}

/// A member's answer to [`PeerRequest::Position`].
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LogPosition {
    /// The id (leader term and index) of the last entry in its log: Raft
    /// compares logs by this, term first, when it grants a vote.
    pub last_log: Option<LogId>,
    /// Milliseconds since an AppendEntries (or heartbeat) last reached it.
    pub leader_silent_ms: u64,
}

/// A store error as carried back over the wire from the leader.
#[derive(Clone, Debug, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct LeaderError {
    pub kind: LeaderErrorKind,
    pub message: String,
}

/// What a follower may tell its caller about a write the leader failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LeaderErrorKind {
    /// Nothing was written and a retry may succeed (no leader, leadership moved).
    Retry,
    /// The write may have been applied (the leader's deadline passed after proposing).
    Unknown,
    /// The leader refused the request as written.
    Refused,
}

impl From<&StoreError> for LeaderError {
    fn from(e: &StoreError) -> Self {
        let kind = if e.is_outcome_unknown() {
            LeaderErrorKind::Unknown
        } else if e.is_retryable() || matches!(e, StoreError::NotLeader { .. }) {
            LeaderErrorKind::Retry
        } else {
            LeaderErrorKind::Refused
        };
        LeaderError {
            kind,
            message: e.to_string(),
        }
    }
}

impl LeaderError {
    /// The error a follower reports for the leader's answer `self`, after
    /// forwarding for `millis` ms. An unknown outcome stays unknown: calling it
    /// "no leader" would invite the client to repeat a write that may be applied.
    pub fn into_store_error(self, leader: NodeId, millis: u64) -> StoreError {
        match self.kind {
            LeaderErrorKind::Retry => {
                StoreError::NoLeader(format!("leader {leader} answered: {}", self.message))
            }
            LeaderErrorKind::Unknown => StoreError::Timeout {
                step: "waiting for the leader to commit a forwarded request",
                millis,
            },
            LeaderErrorKind::Refused => {
                StoreError::InvalidCommand(format!("leader {leader} refused: {}", self.message))
            }
        }
    }
}

/// Why a call to another member failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TransportError {
    /// The member cannot be reached; back off before retrying.
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// The call failed in flight; it may be retried at once. The receiver may
    /// have processed the request.
    #[error("network: {0}")]
    Network(String),
    /// The request is above the message size limit; it was not sent.
    #[error("too large: {0}")]
    TooLarge(String),
}

/// Delivers peer requests. The gRPC implementation is
/// [`crate::grpc::GrpcTransport`].
#[tonic::async_trait]
pub trait Transport: Send + Sync + 'static {
    async fn call(
        &self,
        target: NodeId,
        addr: &str,
        req: PeerRequest,
        timeout: Duration,
    ) -> Result<PeerResponse, TransportError>;

    /// The cluster id to send with every call from now on (a transport
    /// that cannot carry one ignores it).
    fn set_cluster_id(&self, _id: crate::ClusterId) {}
}
