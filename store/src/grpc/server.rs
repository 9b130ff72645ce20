//! Serves the member protocol (Raft, Client, Kv, Admin) for one [`Member`]:
//! the one place outside `member/` that knows the member.

use std::sync::Arc;

use keel_proto::member as pb;
use keel_proto::member_server as pbs;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use super::frame::{MAX_MESSAGE_BYTES, payload, unpayload};
use super::tls::{PeerTls, Role, authorize, caller};
use crate::error::StoreError;
use crate::member::{Member, MemberInfo};
use crate::transport::PeerRequest;

/// Streams a caller may reset before this server accepted them, per
/// connection, before HTTP/2 closes the connection (hyper's default is 20,
/// against "rapid reset" floods). Every timed-out Raft call resets its
/// stream, so a busy leader's peers passed 20 and lost the connection, with
/// the heartbeats on it. Callers here are members and administrators with
/// certificates.
const PEER_RESET_STREAMS: usize = 4096;

/// Serves the member protocol (Raft, Client, Kv, Admin) for one member,
/// over mutual TLS: Raft and Client calls need a member's certificate, Kv
/// and Admin an administrator's (see [`super::tls`]).
#[derive(Clone)]
pub struct MemberService {
    member: Arc<Member>,
    tls: Arc<PeerTls>,
}

impl MemberService {
    pub fn new(member: Arc<Member>, tls: PeerTls) -> MemberService {
        MemberService {
            member,
            tls: Arc::new(tls),
        }
    }

    /// A tonic router with all four services behind mutual TLS, limits
    /// raised for snapshot chunks.
    pub fn router(self) -> Result<tonic::transport::server::Router, tonic::transport::Error> {
        Ok(tonic::transport::Server::builder()
            .tls_config(self.tls.server_config())?
            .tcp_nodelay(true)
            .http2_max_pending_accept_reset_streams(Some(PEER_RESET_STREAMS))
            .add_service(
                pbs::raft_server::RaftServer::new(self.clone())
                    .max_decoding_message_size(MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(MAX_MESSAGE_BYTES),
            )
            .add_service(
                pbs::client_server::ClientServer::new(self.clone())
                    .max_decoding_message_size(MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(MAX_MESSAGE_BYTES),
            )
            .add_service(
                pbs::kv_server::KvServer::new(self.clone())
                    .max_decoding_message_size(MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(MAX_MESSAGE_BYTES),
            )
            .add_service(pbs::admin_server::AdminServer::new(self)))
    }

    /// A call from another member: Raft, forwarding, read index, position.
    async fn serve(
        &self,
        req: Request<pb::RaftPayload>,
    ) -> Result<Response<pb::RaftPayload>, Status> {
        authorize(&req, Role::Member)?;
        let caller = req
            .metadata()
            .get(crate::cluster_id::METADATA_KEY)
            .map(|v| v.to_str().unwrap_or("(not text)"));
        self.member.admit_peer(caller).map_err(|e| to_status(&e))?;
        let peer_req: PeerRequest = unpayload(req.get_ref())?;
        let resp = self.member.handle(peer_req).await;
        Ok(Response::new(payload(&resp)))
    }
}

#[tonic::async_trait]
impl pbs::raft_server::Raft for MemberService {
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
impl pbs::client_server::Client for MemberService {
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
        | StoreError::Busy(_)
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
        StoreError::Membership(_) | StoreError::WrongCluster(_) => Code::FailedPrecondition,
        StoreError::Snapshot(_) => Code::DataLoss,
        StoreError::OpenDb { .. }
        | StoreError::DataDir { .. }
        | StoreError::Corrupt { .. }
        | StoreError::FormatVersion { .. }
        | StoreError::Io { .. }
        | StoreError::Restore(_)
        | StoreError::Archive(_)
        | StoreError::Raft(_) => Code::Internal,
    };
    Status::new(code, e.to_string())
}

fn admin_status(e: StoreError) -> Status {
    to_status(&e)
}

fn members_reply(members: Vec<MemberInfo>) -> pb::MembershipReply {
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
                // The caller was authorized here; the leader sees this
                // member's administrator certificate.
                let ch = self
                    .tls
                    .as_admin()
                    .endpoint(&addr)
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
impl pbs::admin_server::Admin for MemberService {
    async fn add_member(
        &self,
        req: Request<pb::AddMemberRequest>,
    ) -> Result<Response<pb::MembershipReply>, Status> {
        authorize(&req, Role::Admin)?;
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
        authorize(&req, Role::Admin)?;
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
        req: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusReply>, Status> {
        authorize(&req, Role::Admin)?;
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
            cluster_id: s.cluster_id.map(|id| id.to_string()).unwrap_or_default(),
        }))
    }

    type SaveStream = super::save::SaveStream;

    async fn save(
        &self,
        req: Request<pb::SaveRequest>,
    ) -> Result<Response<Self::SaveStream>, Status> {
        authorize(&req, Role::Admin)?;
        Ok(Response::new(super::save::stream(self.member.clone())))
    }
}

pub(super) fn kv_to_pb(kv: crate::KeyValue) -> pb::KeyValue {
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

type WatchReplyStream = std::pin::Pin<
    Box<dyn tokio_stream::Stream<Item = Result<keel_proto::wire::WatchReply, Status>> + Send>,
>;

#[tonic::async_trait]
impl pbs::kv_server::Kv for MemberService {
    async fn txn(&self, req: Request<pb::TxnRequest>) -> Result<Response<pb::TxnReply>, Status> {
        authorize(&req, Role::Admin)?;
        // The administrator's certificate is who the events name.
        let actor = caller(&req);
        let ops = req
            .into_inner()
            .ops
            .into_iter()
            .map(op_from_pb)
            .collect::<Result<Vec<_>, _>>()?;
        let revision = match actor {
            Some(actor) => self.member.txn_by(ops, actor).await,
            None => self.member.txn(ops).await,
        }
        .map_err(|e| to_status(&e))?;
        Ok(Response::new(pb::TxnReply { revision }))
    }

    async fn range(
        &self,
        req: Request<pb::RangeRequest>,
    ) -> Result<Response<pb::RangeReply>, Status> {
        authorize(&req, Role::Admin)?;
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
        authorize(&req, Role::Admin)?;
        let r = req.into_inner();
        let start = match r.after_revision {
            // Below the retained window, the member's archive replays.
            Some(rev) => crate::WatchStart::AfterArchived(rev),
            None => crate::WatchStart::Now,
        };
        let stream = self
            .member
            .watch(r.prefix, start)
            .map_err(|e| to_status(&e))?;
        Ok(Response::new(Box::pin(super::watch::Replies::new(stream))))
    }
}
