//! What members replicate: a versioned [`Command`] holding a transaction of
//! key operations with per-operation preconditions, a batch of such
//! transactions (the leader's group commit), or a compaction, and the
//! [`CommandOutcome`] every member computes identically.

use serde::{Deserialize, Serialize};

use crate::error::StoreError;

/// The format version this build writes. Version 2 added
/// [`CommandBody::Batch`]; version 1 entries (no batches) still apply, so a
/// log written by an older build replays unchanged.
pub const COMMAND_VERSION: u16 = 2;

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

/// The default (and largest sensible) [`Limits::max_txn_bytes`]: the byte
/// budget of one AppendEntries message ([`crate::network::APPEND_BUDGET_BYTES`]),
/// which must reach a follower within one heartbeat interval.
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

    /// An upper bound on the bytes this command takes in a log entry or a
    /// message (its keys, values, uids and preconditions plus framing).
    pub fn payload_bytes(&self) -> usize {
        match &self.body {
            CommandBody::Txn(ops) => txn_payload_bytes(ops),
            CommandBody::Batch(txns) => {
                txns.iter().map(|ops| txn_payload_bytes(ops)).sum::<usize>() + FRAMING
            }
            CommandBody::Compact { .. } => FRAMING,
        }
    }

    /// [`Command::payload_bytes`] of a transaction of `ops`.
    pub fn txn_bytes(ops: &[Op]) -> usize {
        txn_payload_bytes(ops)
    }

    /// A batch of transactions, each already validated on its own.
    pub fn batch(txns: Vec<Vec<Op>>) -> Command {
        Command {
            version: COMMAND_VERSION,
            proposed_at_ms: now_ms(),
            body: CommandBody::Batch(txns),
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
        match &self.body {
            CommandBody::Txn(ops) => validate_txn(ops, limits)?,
            CommandBody::Batch(txns) => {
                if txns.is_empty() {
                    return Err(StoreError::InvalidCommand(
                        "a batch needs at least one transaction".into(),
                    ));
                }
                for ops in txns {
                    validate_txn(ops, limits)?;
                }
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
