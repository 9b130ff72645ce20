//! How members talk: the [`Transport`] trait (one call per peer request), the
//! openraft network built on it, and the real gRPC transport and services.
//! Tests plug in their own `Transport` to cut, drop or delay links; the
//! members above it cannot tell the difference.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keel_proto::member as pb;
use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError,
    Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, LogId};
use serde::{Deserialize, Serialize};
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status};

use crate::codec;
use crate::command::{Command, CommandOutcome};
use crate::error::StoreError;
use crate::member::Member;
use crate::{NodeId, TypeConfig};

/// gRPC messages may be this large: above openraft's 3 MiB snapshot chunks
/// and large append batches, below anything that would exhaust memory.
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// The most entry bytes one AppendEntries carries. openraft gives an
/// AppendEntries one heartbeat interval to travel and be fsync'd by the
/// follower, so a batch must stay small enough for that, far below the
/// message limit. A larger batch is refused before it is sent, with a hint
/// that makes openraft send fewer entries; a single entry (at most
/// [`crate::command::MAX_TXN_BYTES`]) always goes alone.
pub const APPEND_BUDGET_BYTES: usize = 4 << 20;

/// An upper bound on the bytes an entry takes in an AppendEntries message.
fn entry_bytes(entry: &openraft::Entry<TypeConfig>) -> usize {
    use openraft::EntryPayload;
    const FRAMING: usize = 64;
    FRAMING
        + match &entry.payload {
            EntryPayload::Blank => 0,
            EntryPayload::Normal(cmd) => cmd.payload_bytes(),
            EntryPayload::Membership(m) => m
                .nodes()
                .map(|(_, n)| n.addr.len() + FRAMING)
                .sum::<usize>()
                .saturating_mul(2),
        }
}

/// How many leading entries fit in [`APPEND_BUDGET_BYTES`] (at least one), or
/// `None` when they all do.
fn entries_within_budget(entries: &[openraft::Entry<TypeConfig>]) -> Option<u64> {
    let mut total = 0usize;
    for (i, e) in entries.iter().enumerate() {
        total += entry_bytes(e);
        if total > APPEND_BUDGET_BYTES {
            return Some(i.max(1) as u64);
        }
    }
    None
}

/// A request from one member to another.
#[derive(Debug, Serialize, Deserialize)]
pub enum PeerRequest {
    Vote(VoteRequest<NodeId>),
    Append(AppendEntriesRequest<TypeConfig>),
    Snapshot(InstallSnapshotRequest<TypeConfig>),
    /// Propose this command on the receiving member (the leader).
    Forward(Command),
    /// Confirm leadership and return the index a linearizable read waits for.
    ReadIndex,
    /// Where the receiver's log ends and when it last heard from a leader
    /// (see `Member`'s election assist).
    Position,
}

/// The answer to a [`PeerRequest`], variant for variant.
#[derive(Debug, Serialize, Deserialize)]
pub enum PeerResponse {
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    Append(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Snapshot(Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>),
    Forward(Result<CommandOutcome, LeaderError>),
    ReadIndex(Result<u64, LeaderError>),
    Position(LogPosition),
}

/// A member's answer to [`PeerRequest::Position`].
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LogPosition {
    /// The id (leader term and index) of the last entry in its log: Raft
    /// compares logs by this, term first, when it grants a vote.
    pub last_log: Option<LogId<NodeId>>,
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

/// Delivers peer requests. The gRPC implementation is [`GrpcTransport`].
#[tonic::async_trait]
pub trait Transport: Send + Sync + 'static {
    async fn call(
        &self,
        target: NodeId,
        addr: &str,
        req: PeerRequest,
        timeout: Duration,
    ) -> Result<PeerResponse, TransportError>;
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
        let resp = self
            .transport
            .call(
                self.target,
                &self.addr,
                PeerRequest::Append(rpc),
                option.hard_ttl(),
            )
            .await
            .map_err(|e| match e {
                // A batch the estimate let through but the transport refused: halve it.
                TransportError::TooLarge(_) if sent > 1 => RPCError::PayloadTooLarge(
                    PayloadTooLarge::new_entries_hint(sent / 2).with_source_error(&e),
                ),
                e => transport_err(e),
            })?;
        match resp {
            PeerResponse::Append(r) => {
                r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            _ => Err(mismatch(self.target)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcErr<InstallSnapshotError>> {
        let resp = self
            .transport
            .call(
                self.target,
                &self.addr,
                PeerRequest::Snapshot(rpc),
                option.hard_ttl(),
            )
            .await
            .map_err(transport_err)?;
        match resp {
            PeerResponse::Snapshot(r) => {
                r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            _ => Err(mismatch(self.target)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcErr> {
        let resp = self
            .transport
            .call(
                self.target,
                &self.addr,
                PeerRequest::Vote(rpc),
                option.hard_ttl(),
            )
            .await
            .map_err(transport_err)?;
        match resp {
            PeerResponse::Vote(r) => {
                r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            _ => Err(mismatch(self.target)),
        }
    }
}

/// Frame a value with its checksum.
pub fn payload<T: Serialize>(value: &T) -> pb::RaftPayload {
    let data = codec::encode(value);
    pb::RaftPayload {
        crc32: crc32fast::hash(&data),
        data,
    }
}

/// Verify a frame's checksum and decode it.
pub fn unpayload<T: serde::de::DeserializeOwned>(p: &pb::RaftPayload) -> Result<T, Status> {
    let got = crc32fast::hash(&p.data);
    if got != p.crc32 {
        return Err(Status::data_loss(format!(
            "payload checksum mismatch: {} bytes hash to {got:#010x}, sender said {:#010x}",
            p.data.len(),
            p.crc32
        )));
    }
    // Bounded (see `codec::decode`): anyone who reaches the member port can
    // send a payload, and a forged length must fail here, not in the allocator.
    codec::decode_limited(&p.data, MAX_PAYLOAD_CLAIM)
        .map_err(|e| Status::invalid_argument(format!("payload does not decode: {e}")))
}

/// The most a decoded peer payload may claim: a message is at most
/// [`MAX_MESSAGE_BYTES`] and decodes to at most 16 times that.
const MAX_PAYLOAD_CLAIM: usize = 1 << 30;

/// The real transport: gRPC over HTTP/2 with one lazily connected channel per peer.
#[derive(Default)]
pub struct GrpcTransport {
    channels: Mutex<HashMap<String, Channel>>,
}

impl GrpcTransport {
    pub fn new() -> Arc<GrpcTransport> {
        Arc::new(GrpcTransport::default())
    }

    fn channel(&self, addr: &str) -> Result<Channel, TransportError> {
        let mut map = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = map.get(addr) {
            return Ok(c.clone());
        }
        let ch = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| TransportError::Unreachable(format!("bad address {addr}: {e}")))?
            .connect_timeout(Duration::from_secs(1))
            .tcp_nodelay(true)
            .connect_lazy();
        map.insert(addr.to_string(), ch.clone());
        Ok(ch)
    }
}

fn status_err(target: NodeId, s: Status) -> TransportError {
    match s.code() {
        tonic::Code::Unavailable => {
            TransportError::Unreachable(format!("member {target}: {}", s.message()))
        }
        // tonic's answer to a message above the encode or decode limit (on
        // either side): the request was never processed.
        tonic::Code::OutOfRange | tonic::Code::ResourceExhausted => {
            TransportError::TooLarge(format!("member {target}: {}", s.message()))
        }
        _ => TransportError::Network(format!("member {target}: {:?}: {}", s.code(), s.message())),
    }
}

#[tonic::async_trait]
impl Transport for GrpcTransport {
    async fn call(
        &self,
        target: NodeId,
        addr: &str,
        req: PeerRequest,
        timeout: Duration,
    ) -> Result<PeerResponse, TransportError> {
        let ch = self.channel(addr)?;
        let mut request = Request::new(payload(&req));
        request.set_timeout(timeout);
        let fut = async {
            match req {
                PeerRequest::Vote(_) | PeerRequest::Append(_) | PeerRequest::Snapshot(_) => {
                    let mut c = pb::raft_client::RaftClient::new(ch)
                        .max_decoding_message_size(MAX_MESSAGE_BYTES)
                        .max_encoding_message_size(MAX_MESSAGE_BYTES);
                    match req {
                        PeerRequest::Vote(_) => c.vote(request).await,
                        PeerRequest::Append(_) => c.append_entries(request).await,
                        _ => c.install_snapshot(request).await,
                    }
                }
                // The payload names the request; Position travels on ReadIndex's method.
                PeerRequest::Forward(_) | PeerRequest::ReadIndex | PeerRequest::Position => {
                    let mut c = pb::client_client::ClientClient::new(ch)
                        .max_decoding_message_size(MAX_MESSAGE_BYTES)
                        .max_encoding_message_size(MAX_MESSAGE_BYTES);
                    if matches!(req, PeerRequest::Forward(_)) {
                        c.forward(request).await
                    } else {
                        c.read_index(request).await
                    }
                }
            }
        };
        let resp = tokio::time::timeout(timeout, fut)
            .await
            .map_err(|_| {
                TransportError::Network(format!("member {target}: no answer within {timeout:?}"))
            })?
            .map_err(|s| status_err(target, s))?;
        unpayload(resp.get_ref()).map_err(|s| status_err(target, s))
    }
}

/// Serves the member protocol (Raft, Client, Admin) for one member.
#[derive(Clone)]
pub struct MemberService {
    member: Arc<Member>,
}

impl MemberService {
    pub fn new(member: Arc<Member>) -> MemberService {
        MemberService { member }
    }

    /// A tonic router with all three services, limits raised for snapshot chunks.
    pub fn router(self) -> tonic::transport::server::Router {
        tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .add_service(
                pb::raft_server::RaftServer::new(self.clone())
                    .max_decoding_message_size(MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(MAX_MESSAGE_BYTES),
            )
            .add_service(
                pb::client_server::ClientServer::new(self.clone())
                    .max_decoding_message_size(MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(MAX_MESSAGE_BYTES),
            )
            .add_service(
                pb::kv_server::KvServer::new(self.clone())
                    .max_decoding_message_size(MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(MAX_MESSAGE_BYTES),
            )
            .add_service(pb::admin_server::AdminServer::new(self))
    }

    async fn serve(
        &self,
        req: Request<pb::RaftPayload>,
    ) -> Result<Response<pb::RaftPayload>, Status> {
        let peer_req: PeerRequest = unpayload(req.get_ref())?;
        let resp = self.member.handle(peer_req).await;
        Ok(Response::new(payload(&resp)))
    }
}

#[tonic::async_trait]
impl pb::raft_server::Raft for MemberService {
    async fn vote(
        &self,
        req: Request<pb::RaftPayload>,
    ) -> Result<Response<pb::RaftPayload>, Status> {
        self.serve(req).await
    }
    async fn append_entries(
        &self,
        req: Request<pb::RaftPayload>,
    ) -> Result<Response<pb::RaftPayload>, Status> {
        self.serve(req).await
    }
    async fn install_snapshot(
        &self,
        req: Request<pb::RaftPayload>,
    ) -> Result<Response<pb::RaftPayload>, Status> {
        self.serve(req).await
    }
}

#[tonic::async_trait]
impl pb::client_server::Client for MemberService {
    async fn forward(
        &self,
        req: Request<pb::RaftPayload>,
    ) -> Result<Response<pb::RaftPayload>, Status> {
        self.serve(req).await
    }
    async fn read_index(
        &self,
        req: Request<pb::RaftPayload>,
    ) -> Result<Response<pb::RaftPayload>, Status> {
        self.serve(req).await
    }
}

/// The one mapping from store errors to gRPC status codes.
pub fn to_status(e: &StoreError) -> Status {
    use tonic::Code;
    let code = match e {
        StoreError::NoLeader(_)
        | StoreError::NotLeader { .. }
        | StoreError::Timeout { .. }
        | StoreError::Transport { .. }
        | StoreError::WatchDropped { .. } => Code::Unavailable,
        StoreError::Precondition(_) => Code::FailedPrecondition,
        StoreError::Compacted { .. } | StoreError::FutureRevision { .. } => Code::OutOfRange,
        StoreError::UnsupportedCommandVersion { .. }
        | StoreError::ValueTooLarge { .. }
        | StoreError::InvalidCommand(_)
        | StoreError::InvalidContinue(_) => Code::InvalidArgument,
        StoreError::TooManyWatches { .. } => Code::ResourceExhausted,
        StoreError::Membership(_) => Code::FailedPrecondition,
        StoreError::Snapshot(_) => Code::DataLoss,
        StoreError::OpenDb { .. }
        | StoreError::Corrupt { .. }
        | StoreError::FormatVersion { .. }
        | StoreError::Io { .. }
        | StoreError::Raft(_) => Code::Internal,
    };
    Status::new(code, e.to_string())
}

fn admin_status(e: StoreError) -> Status {
    to_status(&e)
}

fn members_reply(members: Vec<crate::member::MemberInfo>) -> pb::MembershipReply {
    pb::MembershipReply {
        members: members
            .into_iter()
            .map(|m| pb::Member {
                id: m.id,
                addr: m.addr,
                voter: m.voter,
            })
            .collect(),
    }
}

impl MemberService {
    /// Admin calls go to the leader; a follower passes them on.
    async fn leader_admin(&self) -> Result<Option<pb::admin_client::AdminClient<Channel>>, Status> {
        match self.member.leader() {
            Some((id, _)) if id == self.member.id() => Ok(None),
            Some((_, addr)) => {
                let ch = Endpoint::from_shared(format!("http://{addr}"))
                    .map_err(|e| Status::internal(e.to_string()))?
                    .connect()
                    .await
                    .map_err(|e| {
                        Status::unavailable(format!("cannot reach the leader at {addr}: {e}"))
                    })?;
                Ok(Some(pb::admin_client::AdminClient::new(ch)))
            }
            None => Err(Status::unavailable("no leader is known (retry)")),
        }
    }
}

#[tonic::async_trait]
impl pb::admin_server::Admin for MemberService {
    async fn add_member(
        &self,
        req: Request<pb::AddMemberRequest>,
    ) -> Result<Response<pb::MembershipReply>, Status> {
        if let Some(mut leader) = self.leader_admin().await? {
            return leader.add_member(req.into_inner()).await;
        }
        let r = req.into_inner();
        let members = self
            .member
            .add_member(r.id, r.addr)
            .await
            .map_err(admin_status)?;
        Ok(Response::new(members_reply(members)))
    }

    async fn remove_member(
        &self,
        req: Request<pb::RemoveMemberRequest>,
    ) -> Result<Response<pb::MembershipReply>, Status> {
        if let Some(mut leader) = self.leader_admin().await? {
            return leader.remove_member(req.into_inner()).await;
        }
        let members = self
            .member
            .remove_member(req.into_inner().id)
            .await
            .map_err(admin_status)?;
        Ok(Response::new(members_reply(members)))
    }

    async fn status(
        &self,
        _req: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusReply>, Status> {
        let s = self.member.status();
        Ok(Response::new(pb::StatusReply {
            id: s.id,
            leader: s.leader.unwrap_or(0),
            term: s.term,
            applied_index: s.applied_index,
            last_log_index: s.last_log_index,
            compacted_revision: s.compacted_revision,
            members: members_reply(s.members).members,
            state: s.state,
        }))
    }
}

fn kv_to_pb(kv: crate::KeyValue) -> pb::KeyValue {
    pb::KeyValue {
        key: kv.key,
        value: kv.value,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        uid: kv.uid.unwrap_or_default(),
    }
}

fn op_from_pb(o: pb::Operation) -> Result<crate::Op, Status> {
    use crate::command::{Action, Precondition};
    let action = match pb::operation::Kind::try_from(o.kind) {
        Ok(pb::operation::Kind::Create) => Action::Create {
            value: o.value,
            uid: (!o.uid.is_empty()).then_some(o.uid),
        },
        Ok(pb::operation::Kind::Update) => Action::Update { value: o.value },
        Ok(pb::operation::Kind::Delete) => Action::Delete,
        Err(_) => {
            return Err(Status::invalid_argument(format!(
                "unknown operation kind {}",
                o.kind
            )));
        }
    };
    let mut preconditions = Vec::new();
    if o.if_absent {
        preconditions.push(Precondition::Absent);
    }
    if let Some(r) = o.if_mod_revision {
        preconditions.push(Precondition::ModRevision(r));
    }
    if let Some(u) = o.if_uid {
        preconditions.push(Precondition::Uid(u));
    }
    Ok(crate::Op {
        key: o.key,
        action,
        preconditions,
    })
}

fn watch_reply(msg: crate::WatchMessage) -> pb::WatchReply {
    match msg {
        crate::WatchMessage::Progress { revision } => pb::WatchReply {
            revision,
            events: vec![],
            progress: true,
        },
        crate::WatchMessage::Events { revision, events } => pb::WatchReply {
            revision,
            progress: false,
            events: events
                .iter()
                .map(|e| pb::Event {
                    kind: match e.kind {
                        crate::EventKind::Added => pb::event::Kind::Added,
                        crate::EventKind::Modified => pb::event::Kind::Modified,
                        crate::EventKind::Deleted => pb::event::Kind::Deleted,
                    } as i32,
                    // A deleted key is reported with its key and the deletion revision.
                    kv: Some(
                        e.value
                            .clone()
                            .map(kv_to_pb)
                            .unwrap_or_else(|| pb::KeyValue {
                                key: e.key.clone(),
                                mod_revision: e.revision,
                                ..Default::default()
                            }),
                    ),
                    prev: e.prev.clone().map(kv_to_pb),
                    op_index: e.op_index,
                })
                .collect(),
        },
    }
}

type WatchReplyStream =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::WatchReply, Status>> + Send>>;

#[tonic::async_trait]
impl pb::kv_server::Kv for MemberService {
    async fn txn(&self, req: Request<pb::TxnRequest>) -> Result<Response<pb::TxnReply>, Status> {
        let ops = req
            .into_inner()
            .ops
            .into_iter()
            .map(op_from_pb)
            .collect::<Result<Vec<_>, _>>()?;
        let revision = self.member.txn(ops).await.map_err(|e| to_status(&e))?;
        Ok(Response::new(pb::TxnReply { revision }))
    }

    async fn range(
        &self,
        req: Request<pb::RangeRequest>,
    ) -> Result<Response<pb::RangeReply>, Status> {
        let r = req.into_inner();
        let resp = self
            .member
            .range(crate::RangeRequest {
                prefix: r.prefix,
                limit: r.limit as usize,
                continue_token: (!r.continue_token.is_empty()).then_some(r.continue_token),
                revision: (r.revision != 0).then_some(r.revision),
                consistency: if r.serializable {
                    crate::Consistency::Local
                } else {
                    crate::Consistency::Linearizable
                },
            })
            .await
            .map_err(|e| to_status(&e))?;
        Ok(Response::new(pb::RangeReply {
            kvs: resp.kvs.into_iter().map(kv_to_pb).collect(),
            revision: resp.revision,
            continue_token: resp.continue_token.unwrap_or_default(),
        }))
    }

    type WatchStream = WatchReplyStream;

    async fn watch(
        &self,
        req: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let r = req.into_inner();
        let start = match r.after_revision {
            Some(rev) => crate::WatchStart::After(rev),
            None => crate::WatchStart::Now,
        };
        let mut stream = self
            .member
            .watch(r.prefix, start)
            .map_err(|e| to_status(&e))?;
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                // A client that went away ends the watch at once, freeing its
                // place under the hub's watch cap.
                let item = tokio::select! {
                    item = stream.next() => item,
                    () = tx.closed() => return,
                };
                let Some(item) = item else { return };
                let out = item.map(watch_reply).map_err(|e| to_status(&e));
                let end = out.is_err();
                if tx.send(out).await.is_err() || end {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}
