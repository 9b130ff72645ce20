//! gRPC services between Keel members: Raft replication, forwarding a client
//! command to the leader, and member administration. Generated at build time.

/// `keel.member`: the Raft, Client and Admin services.
pub mod member {
    tonic::include_proto!("keel.member");
}

/// `v2`: Kubernetes' KMS v2 plugin API (`v2.KeyManagementService`), which
/// wraps the data keys of secrets encrypted at rest.
pub mod kms_v2 {
    tonic::include_proto!("v2");
}

/// The protobuf runtime the messages are generated for, so a user (the fuzz
/// harness) decodes them with the same `prost::Message` as the services.
pub use prost;
