//! What members replicate: a versioned [`Command`] holding a transaction of
//! key operations with per-operation preconditions (and, from format 3, the
//! [`Actor`] who asked for it), a batch of such transactions (the leader's
//! group commit), or a compaction, and the [`CommandOutcome`] every member
//! computes identically.

use serde::{Deserialize, Serialize};

use crate::error::StoreError;

/// The format version this build writes. Version 2 added
/// [`CommandBody::Batch`], version 3 the transactions that name their
/// [`Actor`] ([`CommandBody::TxnBy`], [`CommandBody::BatchBy`], new variants
/// at the end so older bodies encode as before); version 1 and 2 entries
/// still apply, so a log written by an older build replays unchanged.
pub const COMMAND_VERSION: u16 = 3;

/// The first format version with [`CommandBody::TxnBy`] and
/// [`CommandBody::BatchBy`].
pub const ACTOR_COMMAND_VERSION: u16 = 3;

/// The oldest format version this build still applies.
pub const OLDEST_COMMAND_VERSION: u16 = 1;

/// One replicated command. Timestamps and uids are filled in by the proposer:
/// the state machine reads no clock, so every member applies it identically.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    /// Format version; a member refuses versions it does not understand.
    pub version: u16,
    /// Wall-clock time of the proposal (ms since the Unix epoch); events keep
    /// it so age-based retention is decided identically on every member.
    pub proposed_at_ms: u64,
    pub body: CommandBody,
}

/// How openraft's logs name a command: its kind and size, never its values.
impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.body {
            CommandBody::Txn(ops) => write!(f, "txn({} ops)", ops.len()),
            CommandBody::TxnBy(t) => write!(f, "txn({} ops)", t.ops.len()),
            CommandBody::Compact { revision } => write!(f, "compact({revision})"),
            CommandBody::Batch(txns) => write!(f, "batch({} txns)", txns.len()),
            CommandBody::BatchBy(txns) => write!(f, "batch({} txns)", txns.len()),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandBody {
    /// All operations apply, or none does.
    Txn(Vec<Op>),
    /// Drop every event with revision `<= revision` (bounded by the applied
    /// revision). Proposed by the leader's retention task.
    Compact { revision: u64 },
    /// Independent transactions committed as one log entry (group commit).
    /// Each gets its own revision, in order, and its own outcome, exactly as
    /// if each had been an entry of its own: one failing changes nothing
    /// for the others.
    Batch(Vec<Vec<Op>>),
    /// [`CommandBody::Txn`] with who asked for it (format 3): its events
    /// record the actor.
    TxnBy(Txn),
    /// [`CommandBody::Batch`] whose transactions each keep their own actor
    /// (format 3): concurrent requests of different users share an entry.
    BatchBy(Vec<Txn>),
}

/// One transaction and, when the proposer knows it, who asked for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Txn {
    pub ops: Vec<Op>,
    pub actor: Option<Actor>,
}

/// Who asked for a transaction: a user name and its groups, as the layer
/// above authenticated them. The store records it in the transaction's
/// events and gives it no meaning of its own.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Actor {
    pub user: String,
    pub groups: Vec<String>,
}

/// The most an [`Actor`] may weigh ([`Actor::bytes`]): every event of its
/// transaction repeats it.
pub const MAX_ACTOR_BYTES: usize = 64 * 1024;

impl Actor {
    pub fn new(
        user: impl Into<String>,
        groups: impl IntoIterator<Item = impl Into<String>>,
    ) -> Actor {
        Actor {
            user: user.into(),
            groups: groups.into_iter().map(Into::into).collect(),
        }
    }

    /// An upper bound on the bytes it takes encoded.
    pub fn bytes(&self) -> usize {
        self.user.len() + self.groups.iter().map(|g| g.len() + 8).sum::<usize>() + 16
    }
}

/// One operation on one key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Op {
    pub key: String,
    pub action: Action,
    /// Checked against the key's state before the transaction, all together.
    pub preconditions: Vec<Precondition>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    /// Create the key; fails if it exists. `uid` is kept for `Precondition::Uid`.
    Create {
        // Encoded as one byte string, not a sequence of u8 (same bytes on disk, far less work).
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
        uid: Option<String>,
    },
    /// Replace the key's value; fails if it does not exist.
    Update {
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
    },
    /// Delete the key; fails if it does not exist.
    Delete,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Precondition {
    /// The key does not exist.
    Absent,
    /// The key exists and was last modified at this revision.
    ModRevision(u64),
    /// The key exists and was created with this uid.
    Uid(String),
}

/// Why an operation could not apply; `current` is the key's state at the time,
/// so the API can answer a conflict with details.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("operation {op_index} on key {key} failed: {reason}")]
pub struct TxnFailure {
    pub op_index: u32,
    pub key: String,
    pub reason: FailureReason,
    pub current: Option<crate::KeyValue>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum FailureReason {
    #[error("the key already exists")]
    AlreadyExists,
    #[error("the key does not exist")]
    NotFound,
    #[error("the key was modified at revision {actual}, expected {expected}")]
    ModRevisionMismatch { expected: u64, actual: u64 },
    #[error("the key has uid {actual:?}, expected {expected}")]
    UidMismatch {
        expected: String,
        actual: Option<String>,
    },
}

/// The result of applying one log entry, identical on every member.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandOutcome {
    /// The transaction applied at this revision.
    Applied { revision: u64 },
    /// A precondition failed; nothing was written.
    Failed(TxnFailure),
    /// Events up to `compacted` are gone (it may be below the requested revision
    /// when the request was already covered).
    Compacted { compacted: u64 },
    /// Raft-internal entries (blank, membership) carry no command.
    Internal { revision: u64 },
    /// One outcome per transaction of a [`CommandBody::Batch`], in order.
    Batch(Vec<CommandOutcome>),
}

/// Limits a member enforces before it proposes a command.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_value_bytes: usize,
    pub max_ops: usize,
    /// Bound on a whole transaction ([`Command::payload_bytes`]): one log
    /// entry must fit in one replication message with room to spare.
    pub max_txn_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        // etcd's default request limit: 1.5 MiB.
        Limits {
            max_value_bytes: 1536 * 1024,
            max_ops: 1024,
            max_txn_bytes: MAX_TXN_BYTES,
        }
    }
}

/// The default (and largest sensible) [`Limits::max_txn_bytes`]: an entry
/// this large travels alone in an AppendEntries (above the batch budget,
/// `raft_network::APPEND_BUDGET_BYTES`), which must reach a follower within
/// one heartbeat interval.
pub const MAX_TXN_BYTES: usize = 4 << 20;

impl Command {
    /// A transaction stamped with the current time and this build's version.
    pub fn txn(ops: Vec<Op>) -> Command {
        Command {
            version: COMMAND_VERSION,
            proposed_at_ms: now_ms(),
            body: CommandBody::Txn(ops),
        }
    }

    pub fn compact(revision: u64) -> Command {
        Command {
            version: COMMAND_VERSION,
            proposed_at_ms: now_ms(),
            body: CommandBody::Compact { revision },
        }
    }

    /// A transaction on behalf of `actor`: the format-1 body when there is
    /// none, so an anonymous transaction encodes exactly as before.
    pub fn txn_as(txn: Txn) -> Command {
        match txn.actor {
            None => Command::txn(txn.ops),
            Some(_) => Command {
                version: COMMAND_VERSION,
                proposed_at_ms: now_ms(),
                body: CommandBody::TxnBy(txn),
            },
        }
    }

    /// An upper bound on the bytes this command takes in a log entry or a
    /// message (its keys, values, uids, preconditions and actors plus framing).
    pub fn payload_bytes(&self) -> usize {
        match &self.body {
            CommandBody::Txn(ops) => txn_payload_bytes(ops),
            CommandBody::Batch(txns) => {
                txns.iter().map(|ops| txn_payload_bytes(ops)).sum::<usize>() + FRAMING
            }
            CommandBody::TxnBy(txn) => Command::txn_bytes(txn),
            CommandBody::BatchBy(txns) => {
                txns.iter().map(Command::txn_bytes).sum::<usize>() + FRAMING
            }
            CommandBody::Compact { .. } => FRAMING,
        }
    }

    /// What a batch adds to [`Command::payload_bytes`] beyond its
    /// transactions' own bytes.
    pub const BATCH_FRAMING_BYTES: usize = FRAMING;

    /// [`Command::payload_bytes`] of one transaction, its actor included.
    pub fn txn_bytes(txn: &Txn) -> usize {
        txn_payload_bytes(&txn.ops) + txn.actor.as_ref().map_or(0, Actor::bytes)
    }

    /// A batch of transactions, each already validated on its own.
    pub fn batch(txns: Vec<Vec<Op>>) -> Command {
        Command {
            version: COMMAND_VERSION,
            proposed_at_ms: now_ms(),
            body: CommandBody::Batch(txns),
        }
    }

    /// A batch of transactions that keep their actors: the format-2 body
    /// when none has one.
    pub fn batch_as(txns: Vec<Txn>) -> Command {
        if txns.iter().all(|t| t.actor.is_none()) {
            return Command::batch(txns.into_iter().map(|t| t.ops).collect());
        }
        Command {
            version: COMMAND_VERSION,
            proposed_at_ms: now_ms(),
            body: CommandBody::BatchBy(txns),
        }
    }

    /// Check a command before it enters the log: a command that would be
    /// refused must never be replicated.
    pub fn validate(&self, limits: &Limits) -> Result<(), StoreError> {
        if !(OLDEST_COMMAND_VERSION..=COMMAND_VERSION).contains(&self.version) {
            return Err(StoreError::UnsupportedCommandVersion {
                found: self.version,
                supported: COMMAND_VERSION,
            });
        }
        let batch_size = |n: usize| {
            if n == 0 {
                return Err(StoreError::InvalidCommand(
                    "a batch needs at least one transaction".into(),
                ));
            }
            Ok(())
        };
        match &self.body {
            CommandBody::Txn(ops) => validate_txn(ops, limits)?,
            CommandBody::Batch(txns) => {
                batch_size(txns.len())?;
                for ops in txns {
                    validate_txn(ops, limits)?;
                }
            }
            CommandBody::TxnBy(txn) => validate_actor_txns(self.version, [txn], limits)?,
            CommandBody::BatchBy(txns) => {
                batch_size(txns.len())?;
                validate_actor_txns(self.version, txns, limits)?;
            }
            CommandBody::Compact { .. } => return Ok(()),
        }
        let total = self.payload_bytes();
        if total > limits.max_txn_bytes {
            return Err(StoreError::InvalidCommand(format!(
                "the transaction's operations hold {total} bytes in all, above the limit of {} bytes per transaction",
                limits.max_txn_bytes
            )));
        }
        Ok(())
    }
}

/// Format-3 transactions: each checked as any other, its actor bounded.
fn validate_actor_txns<'t>(
    version: u16,
    txns: impl IntoIterator<Item = &'t Txn>,
    limits: &Limits,
) -> Result<(), StoreError> {
    if version < ACTOR_COMMAND_VERSION {
        return Err(StoreError::InvalidCommand(format!(
            "a format {version} command cannot name actors (format {ACTOR_COMMAND_VERSION} can)"
        )));
    }
    for t in txns {
        validate_txn(&t.ops, limits)?;
        if let Some(actor) = &t.actor {
            validate_actor(actor)?;
        }
    }
    Ok(())
}

/// An actor's size is bounded: every event of its transaction repeats it.
fn validate_actor(actor: &Actor) -> Result<(), StoreError> {
    if actor.bytes() > MAX_ACTOR_BYTES {
        return Err(StoreError::InvalidCommand(format!(
            "the actor {:?} with {} groups takes {} bytes, above the limit of {MAX_ACTOR_BYTES}",
            actor.user,
            actor.groups.len(),
            actor.bytes()
        )));
    }
    Ok(())
}

/// The checks every transaction passes before it enters the log, alone or
/// in a batch.
fn validate_txn(ops: &[Op], limits: &Limits) -> Result<(), StoreError> {
    if ops.is_empty() {
        return Err(StoreError::InvalidCommand(
            "a transaction needs at least one operation".into(),
        ));
    }
    if ops.len() > limits.max_ops {
        return Err(StoreError::InvalidCommand(format!(
            "{} operations in one transaction, the limit is {}",
            ops.len(),
            limits.max_ops
        )));
    }
    let mut seen = std::collections::BTreeSet::new();
    for op in ops {
        if op.key.is_empty() {
            return Err(StoreError::InvalidCommand(
                "an operation has an empty key".into(),
            ));
        }
        if !seen.insert(op.key.as_str()) {
            return Err(StoreError::InvalidCommand(format!(
                "key {} appears twice in one transaction",
                op.key
            )));
        }
        let size = match &op.action {
            Action::Create { value, .. } | Action::Update { value } => value.len(),
            Action::Delete => 0,
        };
        if size + op.key.len() > limits.max_value_bytes {
            return Err(StoreError::ValueTooLarge {
                key: op.key.clone(),
                size: size + op.key.len(),
                limit: limits.max_value_bytes,
            });
        }
    }
    Ok(())
}

impl Op {
    pub fn create(key: impl Into<String>, value: impl Into<Vec<u8>>) -> Op {
        Op {
            key: key.into(),
            action: Action::Create {
                value: value.into(),
                uid: None,
            },
            preconditions: vec![],
        }
    }

    pub fn update(key: impl Into<String>, value: impl Into<Vec<u8>>) -> Op {
        Op {
            key: key.into(),
            action: Action::Update {
                value: value.into(),
            },
            preconditions: vec![],
        }
    }

    pub fn delete(key: impl Into<String>) -> Op {
        Op {
            key: key.into(),
            action: Action::Delete,
            preconditions: vec![],
        }
    }

    pub fn with_uid(mut self, uid: impl Into<String>) -> Op {
        if let Action::Create { uid: u, .. } = &mut self.action {
            *u = Some(uid.into());
        }
        self
    }

    pub fn if_mod_revision(mut self, revision: u64) -> Op {
        self.preconditions.push(Precondition::ModRevision(revision));
        self
    }

    pub fn if_uid(mut self, uid: impl Into<String>) -> Op {
        self.preconditions.push(Precondition::Uid(uid.into()));
        self
    }
}

const FRAMING: usize = 32;

/// An upper bound on the bytes one transaction's operations take.
fn txn_payload_bytes(ops: &[Op]) -> usize {
    ops.iter()
        .map(|op| {
            let action = match &op.action {
                Action::Create { value, uid } => value.len() + uid.as_ref().map_or(0, |u| u.len()),
                Action::Update { value } => value.len(),
                Action::Delete => 0,
            };
            let preconditions: usize = op
                .preconditions
                .iter()
                .map(|p| match p {
                    Precondition::Uid(u) => u.len() + FRAMING,
                    _ => FRAMING,
                })
                .sum();
            op.key.len() + action + preconditions + FRAMING
        })
        .sum::<usize>()
        + FRAMING
}

/// Milliseconds since the Unix epoch (proposer side only; never in apply).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_rejects_unknown_version_and_big_values() {
        let limits = Limits::default();
        let mut cmd = Command::txn(vec![Op::create("a", b"x".to_vec())]);
        cmd.validate(&limits).unwrap();
        cmd.version = 9;
        assert!(matches!(
            cmd.validate(&limits),
            Err(StoreError::UnsupportedCommandVersion { found: 9, .. })
        ));
        let big = Command::txn(vec![Op::create(
            "big",
            vec![0u8; limits.max_value_bytes + 1],
        )]);
        let err = big.validate(&limits).unwrap_err();
        assert!(
            matches!(err, StoreError::ValueTooLarge { ref key, .. } if key == "big"),
            "{err}"
        );
        let dup = Command::txn(vec![Op::create("a", b"1".to_vec()), Op::delete("a")]);
        assert!(matches!(
            dup.validate(&limits),
            Err(StoreError::InvalidCommand(_))
        ));
        assert!(matches!(
            Command::txn(vec![]).validate(&limits),
            Err(StoreError::InvalidCommand(_))
        ));
    }

    /// Entries written before actors existed, as their bytes were: a
    /// format-1 transaction and a format-2 batch still decode (and apply,
    /// see `store/tests/single.rs`), and a transaction with no actor still
    /// encodes its body exactly so.
    #[test]
    fn commands_written_before_actors_still_decode() {
        // version 1, at 5 ms, Txn (variant 0), 1 op: key "a", Create (0)
        // value "x" uid None, no preconditions.
        let v1 = [1u8, 5, 0, 1, 1, b'a', 0, 1, b'x', 0, 0];
        let cmd: Command = crate::codec::decode(&v1).unwrap();
        assert_eq!(cmd.version, 1);
        assert_eq!(cmd.proposed_at_ms, 5);
        assert_eq!(
            cmd.body,
            CommandBody::Txn(vec![Op::create("a", b"x".to_vec())])
        );
        cmd.validate(&Limits::default()).unwrap();
        // version 2, Batch (variant 2) of two txns: [Delete "a"], [Update "b" = "y" if mod 7].
        let v2 = [
            2u8, 5, 2, 2, 1, 1, b'a', 2, 0, 1, 1, b'b', 1, 1, b'y', 1, 1, 7,
        ];
        let cmd: Command = crate::codec::decode(&v2).unwrap();
        assert_eq!(
            cmd.body,
            CommandBody::Batch(vec![
                vec![Op::delete("a")],
                vec![Op::update("b", b"y".to_vec()).if_mod_revision(7)],
            ])
        );
        cmd.validate(&Limits::default()).unwrap();
        let mut now = Command::txn_as(Txn {
            ops: vec![Op::create("a", b"x".to_vec())],
            actor: None,
        });
        now.version = 1;
        now.proposed_at_ms = 5;
        assert_eq!(crate::codec::encode(&now), v1);
    }

    #[test]
    fn actors_travel_in_format_3_and_are_bounded() {
        let limits = Limits::default();
        let alice = Actor::new("alice", ["dev", "system:authenticated"]);
        let txn = |actor: Option<Actor>| Txn {
            ops: vec![Op::create("k", b"v".to_vec())],
            actor,
        };
        let cmd = Command::txn_as(txn(Some(alice.clone())));
        assert_eq!(cmd.body, CommandBody::TxnBy(txn(Some(alice.clone()))));
        cmd.validate(&limits).unwrap();
        let back: Command = crate::codec::decode(&crate::codec::encode(&cmd)).unwrap();
        assert_eq!(back, cmd);
        assert!(cmd.payload_bytes() >= crate::codec::encode(&cmd).len());
        // A batch keeps each transaction's actor; with none, the old body.
        let batch = Command::batch_as(vec![txn(Some(alice.clone())), txn(None)]);
        assert!(
            matches!(&batch.body, CommandBody::BatchBy(t) if t[0].actor == Some(alice.clone()) && t[1].actor.is_none())
        );
        assert!(matches!(
            Command::batch_as(vec![txn(None), txn(None)]).body,
            CommandBody::Batch(_)
        ));
        // An older format cannot carry actors.
        let mut old = cmd.clone();
        old.version = 2;
        assert!(matches!(
            old.validate(&limits),
            Err(StoreError::InvalidCommand(ref m)) if m.contains("actors")
        ));
        let heavy = Actor::new("h", (0..MAX_ACTOR_BYTES / 8).map(|i| format!("g{i}")));
        assert!(matches!(
            Command::txn_as(txn(Some(heavy))).validate(&limits),
            Err(StoreError::InvalidCommand(ref m)) if m.contains("actor")
        ));
    }

    #[test]
    fn validate_bounds_a_transactions_total_bytes() {
        let limits = Limits::default();
        // Each value is within its own limit; together they are not.
        let value = vec![7u8; limits.max_value_bytes - 16];
        let n = limits.max_txn_bytes / value.len() + 1;
        let ops: Vec<Op> = (0..n)
            .map(|i| Op::create(format!("k{i}"), value.clone()))
            .collect();
        let cmd = Command::txn(ops);
        assert!(cmd.payload_bytes() > limits.max_txn_bytes);
        let err = cmd.validate(&limits).unwrap_err();
        assert!(
            matches!(err, StoreError::InvalidCommand(ref m) if m.contains("per transaction")),
            "{err}"
        );
        // One fewer fits, and the bound covers the encoded size.
        let ops: Vec<Op> = (0..n - 1)
            .map(|i| Op::create(format!("k{i}"), value.clone()))
            .collect();
        let cmd = Command::txn(ops);
        cmd.validate(&limits).unwrap();
        assert!(crate::codec::encode(&cmd).len() <= cmd.payload_bytes());
    }
}
