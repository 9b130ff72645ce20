//! Serving the requests of other members: Raft's RPCs, forwarded writes,
//! read-index confirmations and the election assist's position queries.
//! Snapshot chunks are taken by `snapshot_in.rs`.

use super::Member;
use crate::transport::{LeaderError, PeerRequest, PeerResponse};

impl Member {
    /// Serve a request from another member.
    pub async fn handle(&self, req: PeerRequest) -> PeerResponse {
        match req {
            PeerRequest::Vote(r) => PeerResponse::Vote(self.raft.vote(r).await),
            PeerRequest::PreVote(r) => PeerResponse::Vote(self.raft.pre_vote(r).await),
            PeerRequest::Append(r) => {
                *self.last_append.lock().unwrap() = std::time::Instant::now();
                PeerResponse::Append(self.raft.append_entries(r).await)
            }
            PeerRequest::Snapshot(chunk) => {
                *self.last_append.lock().unwrap() = std::time::Instant::now();
                PeerResponse::Snapshot(self.receive_snapshot_chunk(chunk).await)
            }
            PeerRequest::Forward(cmd) => {
                let res = match cmd.validate(&self.config.limits) {
                    Ok(()) => self.propose_local(cmd).await,
                    Err(e) => Err(e),
                };
                PeerResponse::Forward(res.map_err(|e| LeaderError::from(&e)))
            }
            PeerRequest::ReadIndex => PeerResponse::ReadIndex(
                self.read_index_for_peer()
                    .await
                    .map_err(|e| LeaderError::from(&e)),
            ),
            PeerRequest::Position => PeerResponse::Position(self.position()),
        }
    }
}
