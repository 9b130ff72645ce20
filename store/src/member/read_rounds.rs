//! Read-index rounds shared by concurrent linearizable reads. A round is
//! one leadership confirmation with a quorum (on a follower, one call that
//! asks the leader for its read index). A read joins the next round that
//! starts after it arrived, so it still sees every write acknowledged
//! before it began, and each member has at most one round of a kind in
//! flight. Without this, every read was a heartbeat to every follower: at a
//! few thousand reads a second (controllers' GETs and consistent LISTs) the
//! confirmations timed out, their reset streams made the peers' HTTP/2
//! servers close the connections, heartbeats failed with them, and the
//! leader lost its leadership over and over.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::oneshot;

use super::Member;
use crate::error::StoreError;

/// One round: the read index, or why there is none.
pub(super) type Round =
    fn(Arc<Member>) -> Pin<Box<dyn Future<Output = Result<u64, StoreError>> + Send>>;

/// Which of the member's [`Rounds`] a round belongs to.
pub(super) type Pick = fn(&Member) -> &Rounds;

/// Reads waiting for the next round of one kind.
#[derive(Default)]
pub(super) struct Rounds {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// A task is running rounds for this kind.
    running: bool,
    /// Reads that arrived since the current round started.
    waiting: Vec<oneshot::Sender<Result<u64, RoundError>>>,
}

impl Rounds {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A round's failure, shared by every read of the round; it becomes the
/// same [`StoreError`] for each of them.
#[derive(Clone, Debug)]
enum RoundError {
    NotLeader { leader_id: u64, leader_addr: String },
    NoLeader(String),
    Timeout { step: &'static str, millis: u64 },
    Transport { target: u64, detail: String },
    Raft(String),
    InvalidCommand(String),
}

impl From<&StoreError> for RoundError {
    fn from(e: &StoreError) -> RoundError {
        match e {
            StoreError::NotLeader {
                leader_id,
                leader_addr,
            } => RoundError::NotLeader {
                leader_id: *leader_id,
                leader_addr: leader_addr.clone(),
            },
            StoreError::Timeout { step, millis } => RoundError::Timeout {
                step,
                millis: *millis,
            },
            StoreError::Transport { target, detail } => RoundError::Transport {
                target: *target,
                detail: detail.clone(),
            },
            StoreError::Raft(m) => RoundError::Raft(m.clone()),
            StoreError::InvalidCommand(m) => RoundError::InvalidCommand(m.clone()),
            // Nothing was read: whatever else went wrong, trying again is safe.
            other => RoundError::NoLeader(other.to_string()),
        }
    }
}

impl From<RoundError> for StoreError {
    fn from(e: RoundError) -> StoreError {
        match e {
            RoundError::NotLeader {
                leader_id,
                leader_addr,
            } => StoreError::NotLeader {
                leader_id,
                leader_addr,
            },
            RoundError::NoLeader(m) => StoreError::NoLeader(m),
            RoundError::Timeout { step, millis } => StoreError::Timeout { step, millis },
            RoundError::Transport { target, detail } => StoreError::Transport { target, detail },
            RoundError::Raft(m) => StoreError::Raft(m),
            RoundError::InvalidCommand(m) => StoreError::InvalidCommand(m),
        }
    }
}

impl Member {
    /// The read index from the next round of `pick`'s kind that starts
    /// after this call; a task runs rounds while reads are waiting.
    pub(super) async fn read_index_in_round(
        &self,
        pick: Pick,
        round: Round,
    ) -> Result<u64, StoreError> {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut st = pick(self).lock();
            st.waiting.push(tx);
            !std::mem::replace(&mut st.running, true)
        };
        if start {
            match self.me.upgrade() {
                Some(me) => {
                    tokio::spawn(drive(me, pick, round));
                }
                // Shutting down: nobody can run the round.
                None => {
                    let mut st = pick(self).lock();
                    st.running = false;
                    st.waiting.clear();
                }
            }
        }
        match rx.await {
            Ok(r) => r.map_err(StoreError::from),
            Err(_) => Err(StoreError::NoLeader(format!(
                "member {}: the read index round ended without an answer",
                self.config.id
            ))),
        }
    }
}

/// Run rounds until no read is waiting: each round serves every read that
/// arrived before it started.
async fn drive(me: Arc<Member>, pick: Pick, round: Round) {
    let mut guard = Driving {
        member: me.clone(),
        pick,
        done: false,
    };
    loop {
        let batch = {
            let mut st = pick(&me).lock();
            if st.waiting.is_empty() {
                st.running = false;
                break;
            }
            std::mem::take(&mut st.waiting)
        };
        let out = round(me.clone()).await.map_err(|e| RoundError::from(&e));
        for tx in batch {
            let _ = tx.send(out.clone());
        }
    }
    guard.done = true;
}

/// Frees the kind for a new driver if [`drive`] ends early (a panic): the
/// waiting reads fail as retryable instead of waiting for ever.
struct Driving {
    member: Arc<Member>,
    pick: Pick,
    done: bool,
}

impl Drop for Driving {
    fn drop(&mut self) {
        if !self.done {
            let mut st = (self.pick)(&self.member).lock();
            st.running = false;
            st.waiting.clear();
        }
    }
}
