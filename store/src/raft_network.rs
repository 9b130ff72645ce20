//! openraft's network ([`RaftNetworkFactory`], [`RaftNetworkV2`]) on top of
//! a [`Transport`]: each Raft RPC becomes one peer call, append batches are
//! kept within a byte budget, and a snapshot travels as a sequence of
//! chunks read from its file (never whole in memory), which the receiver
//! writes to a file of its own ([`crate::member`]'s snapshot receiver).

use std::cmp::Ordering;
use std::future::Future;
use std::sync::Arc;

use openraft::BasicNode;
use openraft::error::{
    NetworkError, RPCError, RaftError, RemoteError, ReplicationClosed, StreamingError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use tokio::io::AsyncReadExt;

use crate::snapshot_file::SnapshotData;
use crate::transport::{PeerRequest, PeerResponse, SnapshotChunk, Transport, TransportError};
use crate::{Entry, EntryPayload, NodeId, Snapshot, TypeConfig, Vote};

/// The most entry bytes one AppendEntries carries. openraft gives an
/// AppendEntries one heartbeat interval to travel and be fsync'd by the
/// follower, so a batch must stay small enough for that on a busy machine,
/// far below the message limit; the heartbeats share its connection and
/// wait behind it. (At 4 MiB, appends to a follower of a loaded two-core
/// machine timed out again and again, and the heartbeats with them.) Of a
/// larger batch only the entries that fit are sent, answered to openraft as
/// a partial success, so it sends the rest next; a single entry (at most
/// [`crate::command::MAX_TXN_BYTES`]) always goes alone.
pub const APPEND_BUDGET_BYTES: usize = 1 << 20;

/// An upper bound on the bytes an entry takes in an AppendEntries message.
fn entry_bytes(entry: &Entry) -> usize {
    const FRAMING: usize = 64;
    FRAMING
        + match &entry.payload {
            EntryPayload::Normal(cmd) => cmd.payload_bytes(),
            EntryPayload::Blank => 0,
            // A configuration change lists the nodes' addresses.
            EntryPayload::Membership(m) => m
                .nodes()
                .map(|(_, n)| n.addr.len() + FRAMING)
                .sum::<usize>()
                .saturating_mul(2),
        }
}

/// How many leading entries fit in [`APPEND_BUDGET_BYTES`] (at least one), or
/// `None` when they all do.
fn entries_within_budget(entries: &[Entry]) -> Option<u64> {
    let mut total = 0usize;
    for (i, e) in entries.iter().enumerate() {
        total += entry_bytes(e);
        if total > APPEND_BUDGET_BYTES {
            // An entry above the budget goes alone: refusing it alone would
            // make openraft send it again for ever.
            return (entries.len() > 1).then_some(i.max(1) as u64);
        }
    }
    None
}

/// Bytes of snapshot in one chunk when openraft names no size (it passes
/// `Config::snapshot_max_chunk_size`): a chunk is one peer call, which
/// shares the connection with appends and heartbeats as an append batch does.
pub const SNAPSHOT_CHUNK_BYTES: usize = 1 << 20;

/// openraft's network factory over a [`Transport`].
pub struct NetworkFactory {
    pub transport: Arc<dyn Transport>,
}

pub struct Network {
    target: NodeId,
    addr: String,
    transport: Arc<dyn Transport>,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = Network;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Network {
        Network {
            target,
            addr: node.addr.clone(),
            transport: self.transport.clone(),
        }
    }
}

fn transport_err(e: TransportError) -> RPCError<TypeConfig> {
    match e {
        TransportError::Unreachable(_) => RPCError::Unreachable(Unreachable::new(&e)),
        TransportError::Network(_) | TransportError::TooLarge(_) => {
            RPCError::Network(NetworkError::new(&e))
        }
    }
}

fn mismatch_error(target: NodeId) -> TransportError {
    TransportError::Network(format!("member {target} answered a different request"))
}

/// Why one Raft call to a peer failed.
enum CallError {
    /// It did not get there, or no answer came back.
    Transport(TransportError),
    /// The peer answered with an error of its own (its Raft stopped).
    Remote(RaftError<TypeConfig>),
}

impl CallError {
    /// openraft 0.10's network methods return `RPCError<C>` (no remote
    /// error type): a remote's own error travels as a network error with
    /// its text.
    fn into_rpc(self, target: NodeId) -> RPCError<TypeConfig> {
        match self {
            CallError::Transport(t) => transport_err(t),
            CallError::Remote(e) => {
                RPCError::Network(NetworkError::new(&RemoteError::<TypeConfig, _>::new(
                    target, e,
                )))
            }
        }
    }
}

impl Network {
    /// One Raft RPC as one peer call: `answer` picks the reply variant that
    /// matches the request (any other is a network error).
    async fn send<R>(
        &self,
        req: PeerRequest,
        option: &RPCOption,
        answer: impl FnOnce(PeerResponse) -> Option<Result<R, RaftError<TypeConfig>>>,
    ) -> Result<R, CallError> {
        let resp = self
            .transport
            .call(self.target, &self.addr, req, option.hard_ttl())
            .await
            .map_err(CallError::Transport)?;
        match answer(resp) {
            Some(r) => r.map_err(CallError::Remote),
            None => Err(CallError::Transport(mismatch_error(self.target))),
        }
    }

    /// A vote or pre-vote request.
    async fn ask(
        &self,
        req: PeerRequest,
        option: &RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.send(req, option, |r| match r {
            PeerResponse::Vote(r) => Some(r),
            _ => None,
        })
        .await
        .map_err(|e| e.into_rpc(self.target))
    }
}

impl RaftNetworkV2<TypeConfig> for Network {
    type SnapshotData = SnapshotData;

    async fn append_entries(
        &mut self,
        mut rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        // openraft bounds a batch by entry count only; entries of up to a few
        // MiB each can exceed the message limit. Send the leading entries
        // that fit and report a partial success: openraft sends the rest
        // next. (The budget is a 64th of the message limit, so a message the
        // estimate lets through is never refused as too large.)
        let all = rpc.entries.len();
        if let Some(fit) = entries_within_budget(&rpc.entries) {
            tracing::debug!(
                peer = self.target,
                all,
                fit,
                "append batch above the byte budget: sending a part"
            );
            rpc.entries.truncate(fit as usize);
        }
        let sent = rpc.entries.len();
        let last = rpc.entries.last().map(|e| e.log_id);
        let res = self
            .send(PeerRequest::Append(rpc), &option, |r| match r {
                PeerResponse::Append(r) => Some(r),
                _ => None,
            })
            .await
            .map_err(|e| e.into_rpc(self.target))?;
        Ok(match res {
            AppendEntriesResponse::Success if sent < all => {
                AppendEntriesResponse::PartialSuccess(last)
            }
            r => r,
        })
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.ask(PeerRequest::Vote(rpc), &option).await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.ask(PeerRequest::PreVote(rpc), &option).await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + openraft::OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let Snapshot {
            meta,
            snapshot: mut data,
        } = snapshot;
        let mut cancel = std::pin::pin!(cancel);
        let size = option
            .snapshot_chunk_size()
            .unwrap_or(SNAPSHOT_CHUNK_BYTES)
            .max(1);
        let mut offset = 0u64;
        loop {
            let chunk = read_chunk(&mut data, size)
                .await
                .map_err(|e| StreamingError::Network(NetworkError::new(&e)))?;
            let done = chunk.len() < size;
            let len = chunk.len() as u64;
            let req = PeerRequest::Snapshot(SnapshotChunk {
                vote,
                meta: meta.clone(),
                offset,
                data: chunk,
                done,
            });
            let call = self
                .transport
                .call(self.target, &self.addr, req, option.hard_ttl());
            let resp = tokio::select! {
                closed = &mut cancel => return Err(StreamingError::Closed(closed)),
                resp = call => resp,
            };
            let answer = match resp {
                Ok(PeerResponse::Snapshot(r)) => r,
                Ok(_) => return Err(net(mismatch_error(self.target))),
                Err(TransportError::Unreachable(e)) => {
                    return Err(StreamingError::Unreachable(Unreachable::new(
                        &TransportError::Unreachable(e),
                    )));
                }
                Err(e) => return Err(net(e)),
            };
            let reply = answer.map_err(|e| net(TransportError::Network(e)))?;
            // The receiver answers with its vote; a higher one ends the transfer.
            if done || reply.vote.partial_cmp(&vote) == Some(Ordering::Greater) {
                return Ok(reply);
            }
            offset += len;
        }
    }
}

fn net(e: TransportError) -> StreamingError<TypeConfig> {
    StreamingError::Network(NetworkError::new(&e))
}

/// Up to `max` bytes from `data` (fewer only at its end).
async fn read_chunk(data: &mut SnapshotData, max: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; max];
    let mut filled = 0;
    while filled < max {
        let n = data.read(&mut buf[filled..]).await?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    buf.truncate(filled);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{Command, Op};

    fn entry(index: u64, value_bytes: usize) -> Entry {
        Entry {
            log_id: crate::log_id(1, 1, index),
            payload: EntryPayload::Normal(Command::txn(vec![Op::create(
                format!("/k/{index}"),
                vec![0u8; value_bytes],
            )])),
        }
    }

    #[test]
    fn a_batch_is_cut_at_the_budget_and_a_large_entry_goes_alone() {
        let small = APPEND_BUDGET_BYTES / 4;
        let fits: Vec<_> = (1..=3).map(|i| entry(i, small)).collect();
        assert_eq!(entries_within_budget(&fits), None);
        let over: Vec<_> = (1..=6).map(|i| entry(i, small)).collect();
        assert_eq!(entries_within_budget(&over), Some(3));
        // One entry above the budget: sent as it is, never refused.
        let large = [entry(1, APPEND_BUDGET_BYTES + 10)];
        assert_eq!(entries_within_budget(&large), None);
        // Leading a batch, it is sent first and alone.
        let led: Vec<_> = [APPEND_BUDGET_BYTES + 10, 10, 10]
            .iter()
            .enumerate()
            .map(|(i, b)| entry(i as u64 + 1, *b))
            .collect();
        assert_eq!(entries_within_budget(&led), Some(1));
    }
}
