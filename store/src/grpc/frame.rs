//! The frame every member-protocol message travels in: a bincode value with
//! its CRC-32, decoded with a bound on what it may claim.

use keel_proto::member as pb;
use serde::Serialize;
use tonic::Status;

use crate::codec;

/// gRPC messages may be this large: above openraft's 3 MiB snapshot chunks
/// and large append batches, below anything that would exhaust memory.
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;

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
