//! The member protocol over gRPC (`keel_proto::member`): the message frame,
//! the client side ([`GrpcTransport`], a [`crate::transport::Transport`]),
//! the server side ([`MemberService`]) and mutual TLS with per-service
//! authorization ([`tls`]).

pub mod client;
pub mod frame;
mod save;
pub mod server;
pub mod tls;
mod watch;

pub use client::GrpcTransport;
pub use frame::{MAX_MESSAGE_BYTES, payload, unpayload};
pub use server::{MemberService, to_status};
pub use tls::{ClientTls, PeerTls, PemIdentity};
pub use watch::EncodedOnce;
