//! The real [`Transport`]: gRPC over HTTP/2, one lazily connected channel per peer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keel_proto::member as pb;
use tonic::transport::Channel;
use tonic::{Request, Status};

use super::frame::{MAX_MESSAGE_BYTES, payload, unpayload};
use super::tls::ClientTls;
use crate::NodeId;
use crate::transport::{PeerRequest, PeerResponse, Transport, TransportError};

/// The real transport: gRPC over HTTP/2 and mutual TLS, presenting this
/// member's certificate, with one lazily connected channel per peer.
pub struct GrpcTransport {
    tls: ClientTls,
    channels: Mutex<HashMap<String, Channel>>,
    /// Sent with every call (see [`crate::cluster_id`]), once known.
    cluster_id: Mutex<Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>>,
}

impl GrpcTransport {
    /// A transport that calls other members as `tls` (the member's own
    /// certificate; see [`super::tls::PeerTls::as_member`]).
    pub fn new(tls: ClientTls) -> Arc<GrpcTransport> {
        Arc::new(GrpcTransport {
            tls,
            channels: Mutex::default(),
            cluster_id: Mutex::default(),
        })
    }

    fn channel(&self, addr: &str) -> Result<Channel, TransportError> {
        let mut map = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = map.get(addr) {
            return Ok(c.clone());
        }
        let ch = self
            .tls
            .endpoint(addr)
            .map_err(|e| TransportError::Unreachable(format!("bad address {addr}: {e}")))?
            .connect_timeout(Duration::from_secs(1))
            .tcp_nodelay(true)
            .connect_lazy();
        map.insert(addr.to_string(), ch.clone());
        Ok(ch)
    }
}

/// What tonic says of a message above its encode or decode limit.
const MESSAGE_TOO_LARGE: &str = "message length too large";

fn status_err(target: NodeId, s: Status) -> TransportError {
    match s.code() {
        tonic::Code::Unavailable => {
            TransportError::Unreachable(format!("member {target}: {}", s.message()))
        }
        // tonic's answer to a message above the encode or decode limit (on
        // either side): the request was never processed. The same codes also
        // come from HTTP/2 itself (a GOAWAY with ENHANCE_YOUR_CALM is
        // ResourceExhausted): that is a failed call, not a smaller batch.
        tonic::Code::OutOfRange | tonic::Code::ResourceExhausted
            if s.message().contains(MESSAGE_TOO_LARGE) =>
        {
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
        if let Some(id) = self
            .cluster_id
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            request
                .metadata_mut()
                .insert(crate::cluster_id::METADATA_KEY, id);
        }
        let fut = async {
            match req {
                PeerRequest::Vote(_)
                | PeerRequest::PreVote(_)
                | PeerRequest::Append(_)
                | PeerRequest::Snapshot(_) => {
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

    fn set_cluster_id(&self, id: crate::ClusterId) {
        let value = id
            .to_string()
            .parse()
            .expect("hex digits are a valid metadata value");
        *self.cluster_id.lock().unwrap_or_else(|e| e.into_inner()) = Some(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_message_over_the_limit_is_too_large() {
        let over = Status::out_of_range(
            "Error, decoded message length too large: found 70000000 bytes, the limit is: 67108864 bytes",
        );
        assert!(matches!(status_err(2, over), TransportError::TooLarge(_)));
        let encoded = Status::resource_exhausted(
            "Error, encoded message length too large: found 9 bytes, the limit is: 8 bytes",
        );
        assert!(matches!(
            status_err(2, encoded),
            TransportError::TooLarge(_)
        ));
        // HTTP/2's GOAWAY(ENHANCE_YOUR_CALM): the connection went, the batch
        // was fine.
        let calm = Status::resource_exhausted("h2 protocol error: http2 error");
        assert!(matches!(status_err(2, calm), TransportError::Network(_)));
    }
}
