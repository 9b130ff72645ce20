//! The member protocol over gRPC (`keel_proto::member`): the message frame,
//! the client side ([`GrpcTransport`], a [`crate::transport::Transport`]) and
//! the server side ([`MemberService`]).

pub mod client;
pub mod frame;
pub mod server;

pub use client::GrpcTransport;
pub use frame::{MAX_MESSAGE_BYTES, payload, unpayload};
pub use server::{MemberService, to_status};
