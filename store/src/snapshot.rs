//! The snapshot format: a header, the objects and retained events as raw
//! column-family records, and a CRC-32 over the body. Building reads one
//! consistent RocksDB snapshot; installing verifies everything before it
//! replaces a single byte of state.
//!
//! ```text
//! "KEELSNAP" | format u32 BE | body length u64 BE | body (bincode SnapshotBody) | crc32 u32 BE
//! ```

use openraft::{SnapshotMeta, StoredMembership};
use serde::{Deserialize, Serialize};

use crate::codec;
use crate::error::StoreError;
use crate::{KeyValue, NodeId};

const MAGIC: &[u8; 8] = b"KEELSNAP";
const SNAPSHOT_FORMAT: u32 = 1;
const HEADER_LEN: usize = 8 + 4 + 8;

/// Everything a member needs to take over another member's state.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SnapshotBody {
    pub meta: SnapshotMeta<NodeId, openraft::BasicNode>,
    pub compacted: u64,
    pub event_count: u64,
    /// Objects-CF records (key, encoded KeyValue).
    pub objects: Vec<(Vec<u8>, Vec<u8>)>,
    /// Events-CF records (event key, encoded Event).
    pub events: Vec<(Vec<u8>, Vec<u8>)>,
}

impl SnapshotBody {
    pub fn membership(&self) -> &StoredMembership<NodeId, openraft::BasicNode> {
        &self.meta.last_membership
    }

    /// Serialize with header and checksum.
    pub fn to_bytes(&self) -> Vec<u8> {
        let body = codec::encode(self);
        let mut out = Vec::with_capacity(HEADER_LEN + body.len() + 4);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&SNAPSHOT_FORMAT.to_be_bytes());
        out.extend_from_slice(&(body.len() as u64).to_be_bytes());
        out.extend_from_slice(&body);
        out.extend_from_slice(&crc32fast::hash(&body).to_be_bytes());
        out
    }

    /// The body of a snapshot file after checking its magic, format,
    /// length and checksum.
    fn checked_body(bytes: &[u8]) -> Result<&[u8], StoreError> {
        let bad = |what: String| StoreError::Snapshot(what);
        if bytes.len() < HEADER_LEN + 4 {
            return Err(bad(format!(
                "{} bytes is shorter than a snapshot header",
                bytes.len()
            )));
        }
        if &bytes[..8] != MAGIC {
            return Err(bad("missing KEELSNAP magic at offset 0".into()));
        }
        let format = u32::from_be_bytes(bytes[8..12].try_into().expect("4 bytes"));
        if format != SNAPSHOT_FORMAT {
            return Err(bad(format!(
                "snapshot format {format}, this build reads {SNAPSHOT_FORMAT}"
            )));
        }
        let len = u64::from_be_bytes(bytes[12..20].try_into().expect("8 bytes")) as usize;
        if bytes.len() != HEADER_LEN + len + 4 {
            return Err(bad(format!(
                "truncated or padded: header announces a {len}-byte body, file has {} bytes",
                bytes.len()
            )));
        }
        let body = &bytes[HEADER_LEN..HEADER_LEN + len];
        let want = u32::from_be_bytes(bytes[HEADER_LEN + len..].try_into().expect("4 bytes"));
        let got = crc32fast::hash(body);
        if want != got {
            return Err(bad(format!(
                "checksum mismatch: body crc32 is {got:#010x}, trailer says {want:#010x}"
            )));
        }
        Ok(body)
    }

    /// Only the metadata of a snapshot file (its first field), after the
    /// same header and checksum checks as [`SnapshotBody::from_bytes`]:
    /// answering "which snapshot is current" must not decode every record.
    pub fn meta_from_bytes(
        bytes: &[u8],
    ) -> Result<SnapshotMeta<NodeId, openraft::BasicNode>, StoreError> {
        let body = Self::checked_body(bytes)?;
        codec::decode_prefix(body)
            .map_err(|e| StoreError::Snapshot(format!("metadata does not decode: {e}")))
    }

    /// Parse and verify a snapshot; every record is checked so a bad snapshot
    /// is refused as a whole.
    pub fn from_bytes(bytes: &[u8]) -> Result<SnapshotBody, StoreError> {
        let bad = |what: String| StoreError::Snapshot(what);
        let body = Self::checked_body(bytes)?;
        let parsed: SnapshotBody =
            codec::decode(body).map_err(|e| bad(format!("body does not decode: {e}")))?;
        for (k, v) in &parsed.objects {
            let kv: KeyValue = codec::decode(v).map_err(|e| {
                bad(format!(
                    "object {} does not decode: {e}",
                    String::from_utf8_lossy(k)
                ))
            })?;
            if kv.key.as_bytes() != k.as_slice() {
                return Err(bad(format!(
                    "object record {} holds key {}",
                    String::from_utf8_lossy(k),
                    kv.key
                )));
            }
        }
        for (k, v) in &parsed.events {
            let (rev, op) = codec::parse_event_key(k)
                .ok_or_else(|| bad(format!("event key of {} bytes", k.len())))?;
            let ev: crate::Event = codec::decode(v)
                .map_err(|e| bad(format!("event ({rev},{op}) does not decode: {e}")))?;
            if ev.revision != rev || ev.op_index != op {
                return Err(bad(format!(
                    "event record ({rev},{op}) holds ({},{})",
                    ev.revision, ev.op_index
                )));
            }
        }
        Ok(parsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SnapshotBody {
        let kv = KeyValue {
            key: "a".into(),
            value: b"1".to_vec(),
            create_revision: 2,
            mod_revision: 2,
            version: 1,
            uid: None,
        };
        SnapshotBody {
            meta: SnapshotMeta::default(),
            compacted: 0,
            event_count: 0,
            objects: vec![(b"a".to_vec(), codec::encode(&kv))],
            events: vec![],
        }
    }

    #[test]
    fn roundtrip_and_every_flipped_byte_is_caught() {
        let bytes = sample().to_bytes();
        let back = SnapshotBody::from_bytes(&bytes).unwrap();
        assert_eq!(back.objects, sample().objects);
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            assert!(
                matches!(SnapshotBody::from_bytes(&bad), Err(StoreError::Snapshot(_))),
                "flipping byte {i} went unnoticed"
            );
        }
        let err = SnapshotBody::from_bytes(&bytes[..bytes.len() - 3]).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
    }

    #[test]
    fn the_metadata_alone_reads_the_same_and_is_checked() {
        let mut body = sample();
        body.meta.snapshot_id = "7-3".into();
        body.meta.last_log_id = Some(openraft::LogId::new(
            openraft::CommittedLeaderId::new(2, 1),
            9,
        ));
        let bytes = body.to_bytes();
        let meta = SnapshotBody::meta_from_bytes(&bytes).unwrap();
        assert_eq!(meta, SnapshotBody::from_bytes(&bytes).unwrap().meta);
        assert_eq!(meta.snapshot_id, "7-3");
        let mut bad = bytes.clone();
        let last = bad.len() - 6;
        bad[last] ^= 0x40;
        assert!(SnapshotBody::meta_from_bytes(&bad).is_err());
    }
}
