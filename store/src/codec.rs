//! Byte layouts of everything Keel writes to disk or sends between members:
//! the bincode configuration, event keys (big-endian revision + operation
//! index, so RocksDB order is revision order) and the store-meta keys.

use serde::{Serialize, de::DeserializeOwned};

/// The one bincode configuration of Keel's on-disk and wire formats. Changing
/// it changes the format of every data directory: never do it in place.
pub fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Encode a value with Keel's bincode configuration.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Encoding into a Vec cannot fail for the plain data types Keel stores.
    bincode::serde::encode_to_vec(value, config()).expect("bincode encoding into a Vec")
}

/// What one byte of bincode input may claim at most once decoded: a `u64`
/// varint is one byte on the wire and eight in memory, a `u128` sixteen.
/// Strings and byte strings claim exactly their own length.
const CLAIM_PER_BYTE: usize = 16;

/// Slack on top of the proportional bound, so tiny inputs keep a usable limit.
const CLAIM_SLACK: usize = 4096;

/// The most a continuation token may claim when decoded: its prefix and its
/// last key, each at most one value limit (1.5 MiB, keys count against it),
/// rounded up to the next power of 16 (see `decode_bounded`).
pub const MAX_TOKEN_CLAIM: usize = 1 << 24;

/// Every decode is bounded by bincode's limit: a declared length can claim at
/// most `CLAIM_PER_BYTE` times the bytes actually given (and at most `max`),
/// so a forged length prefix fails with `LimitExceeded` before bincode
/// allocates, instead of asking the allocator for terabytes and aborting.
/// bincode's limit is a const generic, so the bound is rounded up to a power
/// of 16 (give `max` as a power of 16 to keep it exact): allocation stays
/// within 16 × 16 × the input size.
fn decode_bounded<T: DeserializeOwned>(
    bytes: &[u8],
    max: usize,
) -> Result<(T, usize), bincode::error::DecodeError> {
    use bincode::serde::decode_from_slice;
    let claim = bytes
        .len()
        .saturating_mul(CLAIM_PER_BYTE)
        .saturating_add(CLAIM_SLACK)
        .min(max);
    let cfg = config();
    macro_rules! tiers {
        ($($bits:literal)*) => {$(
            if claim <= 1usize << $bits {
                return decode_from_slice(bytes, cfg.with_limit::<{ 1usize << $bits }>());
            }
        )*};
    }
    tiers!(12 16 20 24 28 32 36);
    decode_from_slice(bytes, cfg.with_limit::<{ 1usize << 40 }>())
}

/// Decode the value at the start of `bytes`, ignoring what follows (the
/// first field of a larger record). Bounded like [`decode`].
pub fn decode_prefix<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    decode_bounded::<T>(bytes, usize::MAX)
        .map(|(value, _)| value)
        .map_err(|e| e.to_string())
}

/// Decode a value, requiring that all bytes are consumed. Memory is bounded
/// by the input's size (see `decode_bounded`); use [`decode_limited`] where
/// the largest valid value is known and small.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    decode_limited(bytes, usize::MAX)
}

/// [`decode`], with decoded values claiming at most `max` bytes.
pub fn decode_limited<T: DeserializeOwned>(bytes: &[u8], max: usize) -> Result<T, String> {
    let (value, used) = decode_bounded::<T>(bytes, max).map_err(|e| e.to_string())?;
    if used != bytes.len() {
        return Err(format!(
            "{} trailing bytes after a {}-byte value",
            bytes.len() - used,
            used
        ));
    }
    Ok(value)
}

/// The tag of the actor extension after an event's format-1 record.
const EVENT_ACTOR: u8 = 1;

/// The most an event's actor extension may claim when decoded (a power of
/// 16, see `decode_bounded`): well above [`crate::command::MAX_ACTOR_BYTES`].
const MAX_ACTOR_CLAIM: usize = 1 << 20;

/// An event as the events column family stores it: the format-1 record
/// (every field but the actor, in order), then, when the event has an
/// actor, the tag [`EVENT_ACTOR`] and the actor. An event written before
/// actors existed is the record alone.
pub fn encode_event(event: &crate::Event) -> Vec<u8> {
    let mut bytes = encode(event);
    if let Some(actor) = &event.actor {
        bytes.push(EVENT_ACTOR);
        bytes.extend_from_slice(&encode(&**actor));
    }
    bytes
}

/// Decode what [`encode_event`] wrote, in either format; an unknown
/// extension tag is an error (a newer format), never ignored. Bounded like
/// [`decode`].
pub fn decode_event(bytes: &[u8]) -> Result<crate::Event, String> {
    let (mut event, used): (crate::Event, usize) =
        decode_bounded(bytes, usize::MAX).map_err(|e| e.to_string())?;
    match bytes[used..].split_first() {
        None => {}
        Some((&EVENT_ACTOR, actor)) => {
            let actor: crate::Actor = decode_limited(actor, MAX_ACTOR_CLAIM)
                .map_err(|e| format!("the event's actor: {e}"))?;
            event.actor = Some(std::sync::Arc::new(actor));
        }
        Some((tag, _)) => return Err(format!("unknown event extension {tag}")),
    }
    Ok(event)
}

/// The first fields of a stored event: which key a change touched, how and
/// where, without the values (what a pass over the archive that only needs
/// each key's last change decodes).
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
pub struct EventHead {
    pub revision: u64,
    pub op_index: u32,
    pub kind: crate::EventKind,
    pub key: String,
}

/// Decode the head of what [`encode_event`] wrote: the format-1 record
/// starts with these fields, in this order (bincode writes a struct's
/// fields one after another, with no names). Bounded like [`decode`].
pub fn decode_event_head(bytes: &[u8]) -> Result<EventHead, String> {
    decode_prefix(bytes)
}

/// Length of an event key: revision (8 bytes) and operation index (4 bytes).
pub const EVENT_KEY_LEN: usize = 12;

/// The events-CF key of operation `op` in the entry at `revision`.
pub fn event_key(revision: u64, op: u32) -> [u8; EVENT_KEY_LEN] {
    let mut k = [0u8; EVENT_KEY_LEN];
    k[..8].copy_from_slice(&revision.to_be_bytes());
    k[8..].copy_from_slice(&op.to_be_bytes());
    k
}

/// Split an events-CF key into (revision, operation index).
pub fn parse_event_key(key: &[u8]) -> Option<(u64, u32)> {
    if key.len() != EVENT_KEY_LEN {
        return None;
    }
    let rev = u64::from_be_bytes(key[..8].try_into().ok()?);
    let op = u32::from_be_bytes(key[8..].try_into().ok()?);
    Some((rev, op))
}

/// The raft-log CF key of a log index.
pub fn log_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

/// Parse a raft-log CF key.
pub fn parse_log_key(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.try_into().ok()?))
}

/// The smallest key strictly greater than every key starting with `prefix`,
/// or `None` when no such key exists (empty prefix or all 0xff).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// Keys in the raft-meta column family.
pub mod raft_meta {
    pub const VOTE: &[u8] = b"vote";
    pub const COMMITTED: &[u8] = b"committed";
    pub const LAST_PURGED: &[u8] = b"last_purged";
}

/// Keys in the store-meta column family.
pub mod store_meta {
    pub const FORMAT: &[u8] = b"format";
    pub const APPLIED: &[u8] = b"applied";
    pub const MEMBERSHIP: &[u8] = b"membership";
    pub const COMPACTED: &[u8] = b"compacted";
    pub const EVENT_COUNT: &[u8] = b"event_count";
    /// Revisions taken beyond one per entry by batch entries (absent: 0).
    pub const REVISION_OFFSET: &[u8] = b"revision_offset";
    /// The highest revision whose events this member has physically
    /// dropped by compaction or never had (a snapshot install); the event
    /// archive records a gap when this passes its position (absent: 0).
    pub const EVENTS_DELETED: &[u8] = b"events_deleted";
    /// The cluster's identity (16 bytes, see `crate::cluster_id`); absent in
    /// a directory from before ids, or of a member that has not yet been
    /// called by the cluster it joins.
    pub const CLUSTER_ID: &[u8] = b"cluster_id";
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn an_event_head_is_the_first_fields_of_the_event() {
        let kv = |v: &[u8]| crate::KeyValue {
            key: "/registry/core/pods/ns/p".into(),
            value: v.to_vec(),
            create_revision: 3,
            mod_revision: 70_000,
            version: 9,
            uid: Some("u".into()),
        };
        let event = crate::Event {
            revision: 70_000,
            op_index: 300,
            kind: crate::EventKind::Modified,
            key: "/registry/core/pods/ns/p".into(),
            value: Some(kv(b"new")),
            prev: Some(kv(b"old")),
            at_ms: 1_700_000_000_000,
            actor: None,
            wire: Default::default(),
        };
        let head = decode_event_head(&encode_event(&event)).unwrap();
        assert_eq!(
            head,
            EventHead {
                revision: 70_000,
                op_index: 300,
                kind: crate::EventKind::Modified,
                key: "/registry/core/pods/ns/p".into(),
            }
        );
        assert!(decode_event_head(&encode_event(&event)[..6]).is_err());
    }

    proptest! {
        #[test]
        fn event_key_roundtrips(rev in any::<u64>(), op in any::<u32>()) {
            prop_assert_eq!(parse_event_key(&event_key(rev, op)), Some((rev, op)));
        }

        #[test]
        fn event_key_order_is_revision_order(a in any::<(u64, u32)>(), b in any::<(u64, u32)>()) {
            prop_assert_eq!(event_key(a.0, a.1).cmp(&event_key(b.0, b.1)), a.cmp(&b));
        }

        #[test]
        fn log_key_roundtrips_and_orders(a in any::<u64>(), b in any::<u64>()) {
            prop_assert_eq!(parse_log_key(&log_key(a)), Some(a));
            prop_assert_eq!(log_key(a).cmp(&log_key(b)), a.cmp(&b));
        }

        #[test]
        fn prefix_end_bounds_every_key_with_the_prefix(
            prefix in proptest::collection::vec(any::<u8>(), 0..6),
            suffix in proptest::collection::vec(any::<u8>(), 0..6),
            other in proptest::collection::vec(any::<u8>(), 0..8),
        ) {
            let mut key = prefix.clone();
            key.extend_from_slice(&suffix);
            match prefix_end(&prefix) {
                Some(end) => {
                    prop_assert!(key < end);
                    // Anything at or past the end does not start with the prefix.
                    if other >= end { prop_assert!(!other.starts_with(&prefix)); }
                }
                None => prop_assert!(prefix.iter().all(|b| *b == 0xff)),
            }
        }
    }

    #[test]
    fn parse_rejects_wrong_lengths() {
        assert_eq!(parse_event_key(&[0; 11]), None);
        assert_eq!(parse_log_key(&[0; 7]), None);
    }

    /// `serde_bytes` fields keep the format of plain `Vec<u8>` fields, so data
    /// written before the switch still decodes.
    #[test]
    fn byte_strings_encode_like_byte_sequences() {
        #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
        struct Plain {
            v: Vec<u8>,
        }
        #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
        struct Bytes {
            #[serde(with = "serde_bytes")]
            v: Vec<u8>,
        }
        for len in [0usize, 1, 250, 251, 1024, 70_000] {
            let v: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let plain = encode(&Plain { v: v.clone() });
            assert_eq!(plain, encode(&Bytes { v: v.clone() }), "length {len}");
            assert_eq!(decode::<Bytes>(&plain).unwrap(), Bytes { v });
        }
    }

    /// An event stored before actors existed (its bytes built by hand) still
    /// decodes, with no actor; one with an actor round-trips; damage to the
    /// extension is an error, never a wrong actor.
    #[test]
    fn events_decode_in_both_formats() {
        // revision 9, op 0, Modified (1), key "k", value None, prev None, at 5.
        let old = [9u8, 0, 1, 1, b'k', 0, 0, 5];
        let ev = decode_event(&old).unwrap();
        assert_eq!(
            (
                ev.revision,
                ev.kind,
                ev.key.as_str(),
                ev.at_ms,
                ev.actor.clone()
            ),
            (9, crate::EventKind::Modified, "k", 5, None)
        );
        assert_eq!(encode_event(&ev), old);
        let mut with = ev.clone();
        with.actor = Some(std::sync::Arc::new(crate::Actor::new("alice", ["dev"])));
        let bytes = encode_event(&with);
        assert_eq!(&bytes[..old.len()], old);
        assert_eq!(decode_event(&bytes).unwrap(), with);
        // The format-1 prefix still reads as the record (range undo reads it so).
        assert_eq!(decode_prefix::<crate::Event>(&bytes).unwrap(), ev);
        let mut unknown = old.to_vec();
        unknown.push(7);
        assert!(decode_event(&unknown).unwrap_err().contains("extension 7"));
        assert!(decode_event(&bytes[..bytes.len() - 1]).is_err());
        // A forged group count is refused before anything is allocated.
        let mut forged = old.to_vec();
        forged.extend_from_slice(&[
            EVENT_ACTOR,
            0,
            0xfd,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
            0x7f,
        ]);
        assert!(decode_event(&forged).is_err());
    }

    #[test]
    fn decode_rejects_trailing_bytes() {
        let mut bytes = encode(&7u64);
        bytes.push(0);
        assert!(decode::<u64>(&bytes).unwrap_err().contains("trailing"));
    }
}
