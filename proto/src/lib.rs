//! gRPC services between Keel members: Raft replication, forwarding a client
//! command to the leader, and member administration. Generated at build time.

/// `keel.member`: the messages, and clients of the Raft, Client, Admin and
/// Kv services.
pub mod member {
    tonic::include_proto!("keel.member");
}

/// The `keel.member` servers, on [`member`]'s messages, except that
/// `Kv.Watch` sends [`wire::WatchReply`] (events encoded once, shared by
/// every watcher).
pub mod member_server {
    include!(concat!(env!("OUT_DIR"), "/wire/keel.member.rs"));
}

pub mod wire;

/// `v2`: Kubernetes' KMS v2 plugin API (`v2.KeyManagementService`), which
/// wraps the data keys of secrets encrypted at rest.
pub mod kms_v2 {
    tonic::include_proto!("v2");
}

/// The protobuf runtime the messages are generated for, so a user (the fuzz
/// harness) decodes them with the same `prost::Message` as the services.
pub use prost;
