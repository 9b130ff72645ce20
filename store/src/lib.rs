//! Keel's replicated event log: an openraft 0.10 member whose log and state
//! machine live in one RocksDB, with revisions, watches, retention and
//! snapshots. It knows keys, bytes and revisions, never Kubernetes kinds.
//!
//! # Layout
//!
//! - [`codec`]: bincode configuration and the byte layout of keys.
//! - [`command`]: the replicated [`Command`] (transactions, batches of them, compaction)
//!   and its outcome.
//! - `apply`: one apply call's entries into one RocksDB write batch.
//! - [`data_dir`]: the data directory's parts (`db/`, `snapshots/`) and moving the old
//!   flat layout into them.
//! - [`db`]: opening RocksDB with its column families and refusing untrusted data; its
//!   handle is private to the storage modules below.
//! - [`log_store`]: openraft's `RaftLogStorage` (raft log + vote, fsync'd).
//! - [`state_machine`]: openraft's `RaftStateMachine`: objects, events, applied state.
//! - [`snapshot`]: the snapshot file format (checksummed) and how it is built and installed.
//! - [`archive`]: the event archive: segments of events written before they leave the
//!   retention window, read back for point-in-time restores.
//! - [`backup`]: cluster backups (`keel snapshot save`), their summary and restoring one
//!   into a new data directory.
//! - [`snapshot_file`]: the snapshot file on disk (only moves forward) and the data handle
//!   received snapshots stream to.
//! - [`history`]: every change of one key, from the archive and the retained events.
//! - [`read`]: gets and ranges, now or at a past revision, with continuation tokens; event scans.
//! - [`replay`]: the state at a past revision, read offline from a data directory and an
//!   event archive (`keel replay`).
//! - [`watch`]: the watch hub (one writer, many readers) and the per-watcher state machine.
//! - [`transport`]: the member-to-member [`Transport`] seam and the requests it carries.
//! - [`raft_network`]: openraft's network on top of a [`Transport`].
//! - [`grpc`]: the real transport ([`GrpcTransport`]) and the gRPC services
//!   ([`MemberService`], the only code outside [`member`] that knows a [`Member`]),
//!   both over mutual TLS ([`PeerTls`]).
//! - [`member`]: a running member, one file per concern: proposals and forwarding,
//!   reads, metrics, election assist, retention, admin, serving peers.
//!
//! # Design notes: revisions and events
//!
//! The revision of a change is computed from the Raft log index of the entry
//! that made it, so it is identical on every member: every entry takes one
//! revision, except a batch entry (the leader's group commit of concurrent
//! transactions, `member/batcher.rs`), which takes one per transaction, in
//! order. The state machine keeps the running difference (the revision
//! offset), so the revision of entry `i` is `i + offset`; with no batches it
//! is the index itself. Applying the entries of one apply call writes, in one
//! RocksDB write batch, the new objects, one event per operation, the applied
//! log id and the offset. A worked example, starting from an empty store where
//! entry 1 is Raft's initial membership entry:
//!
//! ```text
//! index 2: Txn[Create a=1, Create b=1]
//!   objects: a → {value 1, create 2, mod 2, version 1}
//!            b → {value 1, create 2, mod 2, version 1}
//!   events:  (2,0) Added a    (2,1) Added b
//! index 3: Txn[Update a=2 if mod_revision == 2]
//!   objects: a → {value 2, create 2, mod 3, version 2}
//!   events:  (3,0) Modified a, prev {value 1, mod 2}
//! index 4: Txn[Delete b]
//!   objects: b removed
//!   events:  (4,0) Deleted b, prev {value 1, mod 2}
//! index 5: Txn[Update a=3 if mod_revision == 2]   → Failed(ModRevisionMismatch), nothing written
//! index 6: Compact{revision: 3}
//!   events:  (2,*) and (3,0) removed; compacted = 3; a watch from revision 2 gets Compacted
//! index 7: Batch[Txn[Create c=1], Txn[Create c=2], Txn[Create d=1]]   (revisions 7, 8, 9)
//!   objects: c → {value 1, create 7, mod 7}; d → {value 1, create 9, mod 9}
//!   outcomes: Applied 7, Failed(AlreadyExists) at 8, Applied 9; offset = 2
//!   events:  (7,0) Added c    (9,0) Added d
//! index 8: Txn[Delete d]   → revision 10
//! ```
//!
//! A range at a past revision `R` (with `compacted <= R`) reads the current
//! objects and undoes the events after `R` using each event's previous value:
//! at revision 3 above, `b` is restored from event (4,0) and `a` is current.

mod apply;
pub mod archive;
pub mod backup;
pub mod cluster_id;
pub mod codec;
pub mod command;
pub mod data_dir;
pub mod db;
pub mod error;
pub mod grpc;
pub mod history;
pub mod log_store;
pub mod member;
pub mod raft_network;
pub mod read;
pub mod replay;
pub mod snapshot;
pub mod snapshot_file;
pub mod state_machine;
pub mod transport;
pub mod watch;

use serde::{Deserialize, Serialize};

pub use cluster_id::ClusterId;
pub use command::{
    Action, Actor, Command, CommandBody, CommandOutcome, Limits, Op, Precondition, Txn,
};
pub use error::StoreError;
pub use grpc::{ClientTls, GrpcTransport, MemberService, PeerTls, PemIdentity};
pub use member::{Member, MemberConfig, MemberInfo, MemberStatus, RetentionConfig};
pub use read::{Consistency, RangeRequest, RangeResponse};
pub use transport::{PeerRequest, PeerResponse, Transport, TransportError};
pub use watch::{WatchMessage, WatchStart, WatchStream};

/// A member's id.
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// openraft type configuration of a Keel store member.
    pub TypeConfig:
        D = Command,
        R = CommandOutcome,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        AsyncRuntime = openraft::TokioRuntime,
);

/// The id of a Raft log entry: the leader (term and member) that proposed
/// it, and its index.
pub type LogId = openraft::type_config::alias::LogIdOf<TypeConfig>;
/// The leader part of a [`LogId`]: term and member.
pub type CommittedLeaderId = openraft::type_config::alias::CommittedLeaderIdOf<TypeConfig>;
/// A member's vote: whom it backs in which term, and whether a quorum did.
pub type Vote = openraft::type_config::alias::VoteOf<TypeConfig>;
/// One Raft log entry.
pub type Entry = openraft::type_config::alias::EntryOf<TypeConfig>;
/// What an entry carries: nothing (a new leader's first), a command, or a
/// membership.
pub type EntryPayload = openraft::EntryPayload<Command, NodeId, openraft::BasicNode>;
/// The cluster's voters and learners with their addresses.
pub type Membership = openraft::Membership<NodeId, openraft::BasicNode>;
/// A membership and the log id of the entry that set it.
pub type StoredMembership = openraft::type_config::alias::StoredMembershipOf<TypeConfig>;
/// What a snapshot covers: the last log id in it and the membership then.
pub type SnapshotMeta = openraft::type_config::alias::SnapshotMetaOf<TypeConfig>;
/// A snapshot: what it covers and its file.
pub type Snapshot =
    openraft::type_config::alias::SnapshotOf<TypeConfig, snapshot_file::SnapshotData>;

/// A log id made of its parts.
pub fn log_id(term: u64, node_id: NodeId, index: u64) -> LogId {
    LogId::new(CommittedLeaderId { term, node_id }, index)
}

pub type Raft = openraft::Raft<TypeConfig, state_machine::StateMachine>;

/// A key's current value and its revisions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    pub key: String,
    /// Encoded as one byte string (bincode writes the same bytes as for a
    /// `Vec<u8>` sequence, without a call per byte).
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
    /// Revision of the operation that created the key.
    pub create_revision: u64,
    /// Revision of the key's last change.
    pub mod_revision: u64,
    /// Number of writes since creation (1 after create).
    pub version: u64,
    /// The uid given at creation, for uid preconditions.
    pub uid: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    Added,
    Modified,
    Deleted,
}

/// One change to one key, as stored in the events column family and sent to
/// watchers. Stored by [`codec::encode_event`]: its serde form is the
/// format-1 record, without the actor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub revision: u64,
    /// Position of the operation inside its transaction.
    pub op_index: u32,
    pub kind: EventKind,
    pub key: String,
    /// The key after the change (`None` for `Deleted`).
    pub value: Option<KeyValue>,
    /// The key before the change (`None` for `Added`).
    pub prev: Option<KeyValue>,
    /// The proposer's wall-clock time, used for age-based retention.
    pub at_ms: u64,
    /// Who asked for the transaction that made it, when its proposer said
    /// (format-3 commands); shared by the events of one transaction. Stored
    /// as an extension after the format-1 record ([`codec::encode_event`]),
    /// so events written before actors existed decode with `None`.
    #[serde(skip)]
    pub actor: Option<std::sync::Arc<Actor>>,
    /// The event's `Kv.Watch` encoding, made by the first watcher it is sent
    /// to and shared by the others (a revision fanned out to a thousand
    /// watchers is encoded once). A cache, not part of the event.
    #[serde(skip)]
    pub wire: grpc::EncodedOnce,
}
