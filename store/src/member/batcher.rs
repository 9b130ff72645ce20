//! Group commit: transactions proposed on this member while earlier ones are
//! still being committed wait in a queue and enter the log together as one
//! batch entry ([`CommandBody::Batch`], or [`CommandBody::BatchBy`] when any
//! names its actor), each with its own revision, its own outcome and its own
//! actor.
//!
//! openraft handles every client write as its own entry in its single
//! core task (append, replicate, commit, apply, answer), and that task, not
//! the disk or the cores, capped Keel's writes. Batching pays that per-entry
//! cost once for many transactions.
//!
//! There is no batching task: a proposer that finds a commit slot free
//! commits in its own task, so under light load a transaction is an entry of
//! its own and takes no extra hop, exactly as before. Only while every slot
//! is busy do proposers queue; whoever frees a slot next takes the whole
//! queue as one batch (in a task of its own, so that a proposer that gives
//! up cannot strand the others). All decisions are made under one lock, so a
//! queued transaction always has a committer coming.
//!
//! On a follower the same queue groups the transactions it forwards: a
//! batch goes to the leader as one call and enters the log there as one
//! entry. One call per write cost every forwarded write a peer request of
//! its own (HTTP/2 stream, TLS record, a task on the leader), and two thirds
//! of a cluster's writes arrive at followers when clients spread over the
//! members. A write another member forwarded is never forwarded again
//! ([`Route::Here`]), so a leadership change cannot bounce it between members.
//!
//! [`CommandBody::Batch`]: crate::command::CommandBody::Batch
//! [`CommandBody::BatchBy`]: crate::command::CommandBody::BatchBy

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use super::Member;
use crate::command::{Command, CommandOutcome, Txn};
use crate::error::StoreError;

/// Transactions in one batch entry at most.
const MAX_BATCH_TXNS: usize = 1024;

type Reply = oneshot::Sender<Result<CommandOutcome, StoreError>>;

/// Where a transaction may be committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Route {
    /// Here if this member leads, otherwise forwarded to the leader: a
    /// client's write.
    ToLeader,
    /// Only here: a write another member forwarded (if this member no
    /// longer leads, it fails, retryable, and its sender decides).
    Here,
}

/// A transaction waiting for a batch.
struct Pending {
    txn: Txn,
    bytes: usize,
    route: Route,
    reply: Reply,
}

/// The queue and the commit slots of one member.
pub(super) struct Batcher {
    state: Mutex<State>,
    slots: usize,
    max_bytes: usize,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Pending>,
    busy: usize,
}

impl Batcher {
    pub(super) fn new(slots: usize, max_bytes: usize) -> Batcher {
        Batcher {
            state: Mutex::new(State::default()),
            slots: slots.max(1),
            // A batch's own framing counts toward the limit a leader checks
            // a forwarded batch against.
            max_bytes: max_bytes.saturating_sub(Command::BATCH_FRAMING_BYTES),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every update under this lock is a push, a drain or a counter step:
        // a panic elsewhere leaves it consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Take up to one batch from the front of the queue.
    fn take(&self, st: &mut State) -> Vec<Pending> {
        let mut bytes = 0;
        let mut batch = Vec::new();
        while let Some(p) = st.queue.front() {
            if batch.len() == MAX_BATCH_TXNS
                || (!batch.is_empty() && bytes + p.bytes > self.max_bytes)
            {
                break;
            }
            bytes += p.bytes;
            batch.push(st.queue.pop_front().expect("front exists"));
        }
        batch
    }
}

impl Member {
    /// Commit a validated transaction through the group-commit queue.
    pub(super) async fn propose_txn(
        &self,
        txn: Txn,
        route: Route,
    ) -> Result<CommandOutcome, StoreError> {
        let bytes = Command::txn_bytes(&txn);
        // Decided under the lock; the lock is never held across an await.
        let queued = {
            let mut st = self.batcher.lock();
            if st.busy < self.batcher.slots && st.queue.is_empty() {
                st.busy += 1;
                Err(txn)
            } else {
                let (reply, answer) = oneshot::channel();
                st.queue.push_back(Pending {
                    txn,
                    bytes,
                    route,
                    reply,
                });
                // A slot is free but others are queued: commit them all.
                let batch = (st.busy < self.batcher.slots).then(|| {
                    st.busy += 1;
                    self.batcher.take(&mut st)
                });
                Ok((answer, batch))
            }
        };
        match queued {
            Err(txn) => {
                // Frees the slot (or hands it to the queue) even if this
                // future is dropped mid-commit.
                let _slot = Slot(self);
                self.commit_via(Command::txn_as(txn), route).await
            }
            Ok((answer, batch)) => {
                if let Some(batch) = batch {
                    self.spawn_committer(batch);
                }
                wait(answer, self.config.request_timeout).await
            }
        }
    }

    /// Commit `batch` in a task of its own, then keep draining the queue
    /// while it is not empty; the slot is released when it is.
    fn spawn_committer(&self, batch: Vec<Pending>) {
        let Some(me) = self.me.upgrade() else {
            for p in batch {
                let _ = p
                    .reply
                    .send(Err(StoreError::Raft("the member is shutting down".into())));
            }
            self.batcher.lock().busy -= 1;
            return;
        };
        tokio::spawn(async move {
            let _slot = Slot(&me);
            let mut batch = batch;
            loop {
                commit(&me, batch).await;
                let next = {
                    let mut st = me.batcher.lock();
                    me.batcher.take(&mut st)
                };
                if next.is_empty() {
                    return;
                }
                batch = next;
            }
        });
    }
}

/// A held commit slot: on release, a non-empty queue gets a committer (the
/// slot passes to it), otherwise the slot is freed.
struct Slot<'a>(&'a Member);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let member = self.0;
        let mut st = member.batcher.lock();
        if st.queue.is_empty() {
            st.busy -= 1;
            return;
        }
        // The slot stays busy: it passes to the committer.
        let batch = member.batcher.take(&mut st);
        drop(st);
        member.spawn_committer(batch);
    }
}

async fn wait(
    answer: oneshot::Receiver<Result<CommandOutcome, StoreError>>,
    timeout: std::time::Duration,
) -> Result<CommandOutcome, StoreError> {
    match tokio::time::timeout(timeout, answer).await {
        Ok(Ok(res)) => res,
        Ok(Err(_)) => Err(StoreError::Raft("the proposal queue has stopped".into())),
        // Queued, and perhaps committed since: the outcome is unknown.
        Err(_) => Err(StoreError::Timeout {
            step: "committing a write",
            millis: timeout.as_millis() as u64,
        }),
    }
}

/// Commit one batch and answer each of its transactions. Writes that may
/// be forwarded and writes that may not go as separate batches (they mix
/// only while leadership moves).
async fn commit(member: &Arc<Member>, batch: Vec<Pending>) {
    let (to_leader, here): (Vec<_>, Vec<_>) =
        batch.into_iter().partition(|p| p.route == Route::ToLeader);
    tokio::join!(
        commit_group(member, to_leader, Route::ToLeader),
        commit_group(member, here, Route::Here)
    );
}

/// Commit transactions of one route as one entry (a single one as itself).
async fn commit_group(member: &Member, mut batch: Vec<Pending>, route: Route) {
    if batch.len() <= 1 {
        if let Some(p) = batch.pop() {
            let res = member.commit_via(Command::txn_as(p.txn), route).await;
            let _ = p.reply.send(res);
        }
        return;
    }
    let (txns, replies): (Vec<_>, Vec<_>) = batch.into_iter().map(|p| (p.txn, p.reply)).unzip();
    let n = txns.len();
    match member.commit_via(Command::batch_as(txns), route).await {
        Ok(CommandOutcome::Batch(outcomes)) if outcomes.len() == n => {
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                let _ = reply.send(Ok(outcome));
            }
        }
        Ok(other) => {
            for reply in replies {
                let _ = reply.send(Err(StoreError::Raft(format!(
                    "a batch of {n} transactions got the outcome {other:?}"
                ))));
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(same_error(&e)));
            }
        }
    }
}

/// A copy of a commit error for each transaction of the batch: the variants
/// callers act on (redirect, retry, outcome unknown) keep their meaning.
fn same_error(e: &StoreError) -> StoreError {
    match e {
        StoreError::NotLeader {
            leader_id,
            leader_addr,
        } => StoreError::NotLeader {
            leader_id: *leader_id,
            leader_addr: leader_addr.clone(),
        },
        StoreError::NoLeader(s) => StoreError::NoLeader(s.clone()),
        StoreError::Timeout { step, millis } => StoreError::Timeout {
            step,
            millis: *millis,
        },
        StoreError::Transport { target, detail } => StoreError::Transport {
            target: *target,
            detail: detail.clone(),
        },
        StoreError::InvalidCommand(s) => StoreError::InvalidCommand(s.clone()),
        other => StoreError::Raft(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_keep_the_variant_callers_act_on() {
        let e = same_error(&StoreError::NotLeader {
            leader_id: 2,
            leader_addr: "127.0.0.1:1".into(),
        });
        assert!(
            matches!(e, StoreError::NotLeader { leader_id: 2, ref leader_addr } if leader_addr == "127.0.0.1:1")
        );
        let e = same_error(&StoreError::Timeout {
            step: "committing a write",
            millis: 5,
        });
        assert!(matches!(
            e,
            StoreError::Timeout {
                step: "committing a write",
                millis: 5
            }
        ));
        assert!(matches!(
            same_error(&StoreError::NoLeader("x".into())),
            StoreError::NoLeader(ref s) if s == "x"
        ));
        // A forwarded batch that never reached the leader is safe to retry.
        let e = same_error(&StoreError::Transport {
            target: 3,
            detail: "unreachable".into(),
        });
        assert!(e.is_retryable() && !e.is_outcome_unknown(), "{e:?}");
        assert!(matches!(
            same_error(&StoreError::InvalidCommand("too big".into())),
            StoreError::InvalidCommand(ref s) if s == "too big"
        ));
    }

    #[test]
    fn a_batch_stops_at_its_byte_budget_but_never_empty() {
        let b = Batcher::new(1, 100);
        let mut st = State::default();
        for bytes in [60, 60, 500, 10] {
            let (reply, _) = oneshot::channel();
            st.queue.push_back(Pending {
                txn: Txn {
                    ops: vec![],
                    actor: None,
                },
                bytes,
                route: Route::ToLeader,
                reply,
            });
        }
        let sizes = |v: Vec<Pending>| v.iter().map(|p| p.bytes).collect::<Vec<_>>();
        assert_eq!(sizes(b.take(&mut st)), vec![60]);
        assert_eq!(sizes(b.take(&mut st)), vec![60]);
        // Alone above the budget: still taken, or it would wait forever.
        assert_eq!(sizes(b.take(&mut st)), vec![500]);
        assert_eq!(sizes(b.take(&mut st)), vec![10]);
        assert!(b.take(&mut st).is_empty());
    }
}
