//! openraft's network ([`RaftNetworkFactory`], [`RaftNetwork`]) on top of a
//! [`Transport`]: each Raft RPC becomes one peer call, and append batches are
//! kept within a byte budget.

use std::sync::Arc;

use openraft::BasicNode;
use openraft::error::InstallSnapshotError;
use openraft::error::{
    NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};

use crate::transport::{PeerRequest, PeerResponse, Transport, TransportError};
use crate::{NodeId, TypeConfig};

/// The most entry bytes one AppendEntries carries. openraft gives an
/// AppendEntries one heartbeat interval to travel and be fsync'd by the
/// follower, so a batch must stay small enough for that on a busy machine,
/// far below the message limit; the heartbeats share its connection and
/// wait behind it. (At 4 MiB, appends to a follower of a loaded two-core
/// machine timed out again and again, and the heartbeats with them.) A
/// larger batch is refused before it is sent, with a hint that makes
/// openraft send fewer entries; a single entry (at most
/// [`crate::command::MAX_TXN_BYTES`]) always goes alone.
pub const APPEND_BUDGET_BYTES: usize = 1 << 20;

/// An upper bound on the bytes an entry takes in an AppendEntries message.
fn entry_bytes(entry: &openraft::Entry<TypeConfig>) -> usize {
    use openraft::EntryPayload;
    use openraft::entry::RaftPayload;
    const FRAMING: usize = 64;
    FRAMING
        + match &entry.payload {
            EntryPayload::Normal(cmd) => cmd.payload_bytes(),
            // Blank, or a configuration change listing the nodes' addresses.
            _ => entry.get_membership().map_or(0, |m| {
                m.nodes()
                    .map(|(_, n)| n.addr.len() + FRAMING)
                    .sum::<usize>()
                    .saturating_mul(2)
            }),
        }
}

/// How many leading entries fit in [`APPEND_BUDGET_BYTES`] (at least one), or
/// `None` when they all do.
fn entries_within_budget(entries: &[openraft::Entry<TypeConfig>]) -> Option<u64> {
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

type RpcErr<E = openraft::error::Infallible> = RPCError<NodeId, BasicNode, RaftError<NodeId, E>>;

fn transport_err<E: std::error::Error>(e: TransportError) -> RPCError<NodeId, BasicNode, E> {
    match e {
        TransportError::Unreachable(_) => RPCError::Unreachable(Unreachable::new(&e)),
        TransportError::Network(_) | TransportError::TooLarge(_) => {
            RPCError::Network(NetworkError::new(&e))
        }
    }
}

fn mismatch<E: std::error::Error>(target: NodeId) -> RPCError<NodeId, BasicNode, E> {
    let e = TransportError::Network(format!("member {target} answered a different request"));
    RPCError::Network(NetworkError::new(&e))
}

impl Network {
    /// One Raft RPC as one peer call: `on_err` maps a failed call, `answer`
    /// picks the reply variant that matches the request (any other is a
    /// network error), and the remote's own error comes back as `RemoteError`.
    async fn send<R, E: std::error::Error>(
        &self,
        req: PeerRequest,
        option: RPCOption,
        on_err: impl FnOnce(TransportError) -> RpcErr<E>,
        answer: impl FnOnce(PeerResponse) -> Option<Result<R, RaftError<NodeId, E>>>,
    ) -> Result<R, RpcErr<E>> {
        let resp = self
            .transport
            .call(self.target, &self.addr, req, option.hard_ttl())
            .await
            .map_err(on_err)?;
        match answer(resp) {
            Some(r) => r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e))),
            None => Err(mismatch(self.target)),
        }
    }
}

impl RaftNetwork<TypeConfig> for Network {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcErr> {
        // openraft bounds a batch by entry count only; entries of up to a few
        // MiB each can exceed the message limit, which it would retry without
        // end. PayloadTooLarge is the one error that makes it send fewer.
        let sent = rpc.entries.len() as u64;
        if let Some(fit) = entries_within_budget(&rpc.entries) {
            tracing::debug!(
                peer = self.target,
                sent,
                fit,
                "append batch above the byte budget"
            );
            return Err(RPCError::PayloadTooLarge(
                PayloadTooLarge::new_entries_hint(fit),
            ));
        }
        let on_err = |e: TransportError| match e {
            // A batch the estimate let through but the transport refused: halve it.
            TransportError::TooLarge(_) if sent > 1 => RPCError::PayloadTooLarge(
                PayloadTooLarge::new_entries_hint(sent / 2).with_source_error(&e),
            ),
            e => transport_err(e),
        };
        self.send(PeerRequest::Append(rpc), option, on_err, |r| match r {
            PeerResponse::Append(r) => Some(r),
            _ => None,
        })
        .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcErr<InstallSnapshotError>> {
        self.send(
            PeerRequest::Snapshot(rpc),
            option,
            transport_err,
            |r| match r {
                PeerResponse::Snapshot(r) => Some(r),
                _ => None,
            },
        )
        .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcErr> {
        self.send(PeerRequest::Vote(rpc), option, transport_err, |r| match r {
            PeerResponse::Vote(r) => Some(r),
            _ => None,
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{Command, Op};
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};

    fn entry(index: u64, value_bytes: usize) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
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
