//! Reads through a member: linearizable ones wait for the leader's read
//! index (asked over the transport on a follower), local ones read what this
//! member has applied. Concurrent reads share read-index rounds
//! ([`super::read_rounds`]). The storage side is `crate::read`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use openraft::ReadPolicy;
use openraft::error::{LinearizableReadError, RaftError};

use super::metrics::bump;
use super::read_rounds::Rounds;
use super::{Member, blocking};
use crate::error::StoreError;
use crate::read::{self, Consistency, RangeRequest, RangeResponse};
use crate::transport::{PeerRequest, PeerResponse};
use crate::watch::{WatchStart, WatchStream};
use crate::{Event, KeyValue};

impl Member {
    /// On the leader: confirm leadership with a quorum; the index to wait for.
    /// A confirmation round that a busy quorum did not answer in time is
    /// tried again until the request deadline: it says nothing about the
    /// request, so failing it (as a refusal) would fail a read, or a write's
    /// read, that the next round serves.
    pub(super) async fn read_index_local(&self) -> Result<u64, StoreError> {
        let t = self.config.request_timeout;
        let deadline = tokio::time::Instant::now() + t;
        loop {
            bump(&self.counters.read_index_confirmations);
            match tokio::time::timeout_at(
                deadline,
                self.raft.get_read_log_id(ReadPolicy::ReadIndex),
            )
            .await
            {
                Err(_) => {
                    return Err(StoreError::Timeout {
                        step: "confirming leadership for a read",
                        millis: t.as_millis() as u64,
                    });
                }
                Ok(Ok((read, _applied))) => return Ok(read.index()),
                Ok(Err(RaftError::APIError(LinearizableReadError::ForwardToLeader(f)))) => {
                    return Err(self.not_leader(f.leader_id, f.leader_node));
                }
                Ok(Err(RaftError::APIError(LinearizableReadError::QuorumNotEnough(e)))) => {
                    if tokio::time::Instant::now() + self.config.heartbeat >= deadline {
                        // Retryable: nothing was read or written.
                        return Err(StoreError::NoLeader(format!(
                            "member {} could not confirm its leadership with a quorum: {e}",
                            self.config.id
                        )));
                    }
                    tracing::debug!(error = %e, "read index: quorum did not answer, trying again");
                    bump(&self.counters.read_index_retries);
                    tokio::time::sleep(self.config.heartbeat / 4).await;
                }
                Ok(Err(e)) => return Err(StoreError::Raft(e.to_string())),
            }
        }
    }

    /// The leader's read index for a member that asked for it, from a
    /// round shared with the other members' requests.
    pub(super) async fn read_index_for_peer(&self) -> Result<u64, StoreError> {
        self.read_index_in_round(peer_rounds, local_round).await
    }

    /// Wait until this member has applied everything committed before now;
    /// the revision it has reached.
    pub async fn linearize(&self) -> Result<u64, StoreError> {
        let index = self.read_index_in_round(own_rounds, any_round).await?;
        let t = self.config.request_timeout;
        self.raft
            .wait(Some(t))
            .applied_index_at_least(Some(index), "linearizable read")
            .await
            .map_err(|_| StoreError::Timeout {
                step: "applying up to the read index",
                millis: t.as_millis() as u64,
            })?;
        // The revision, not the index: batch entries take several revisions.
        // Everything committed before the read index is applied, so this
        // covers every change acknowledged before the read began.
        Ok(self.hub.revision())
    }

    /// The read index: confirmed here on the leader, asked of the leader
    /// on a follower.
    async fn read_index_any(&self) -> Result<u64, StoreError> {
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

    /// The applied and compacted revisions of this member.
    pub fn revisions(&self) -> Result<(u64, u64), StoreError> {
        read::revisions(&self.db)
    }

    /// Every event this member retains, in order (for tests and tooling).
    pub fn events(&self) -> Result<Vec<Event>, StoreError> {
        read::events(&self.db)
    }
}

type RoundFuture = Pin<Box<dyn Future<Output = Result<u64, StoreError>> + Send>>;

/// The rounds of this member's own linearizable reads.
fn own_rounds(m: &Member) -> &Rounds {
    &m.read_rounds
}

/// The rounds of other members' read index requests (leader only).
fn peer_rounds(m: &Member) -> &Rounds {
    &m.peer_read_rounds
}

fn any_round(m: Arc<Member>) -> RoundFuture {
    Box::pin(async move { m.read_index_any().await })
}

fn local_round(m: Arc<Member>) -> RoundFuture {
    Box::pin(async move { m.read_index_local().await })
}
