//! `WatchReply` as the `Kv.Watch` server sends it: its events already
//! encoded, so one encoding of an event is shared by every watcher it goes to.
//!
//! On the wire an embedded message and a `bytes` field of the same number
//! are the same thing (a length-delimited field), so a reply whose field 2
//! holds encoded `Event`s is the `WatchReply` of `member.proto` byte for
//! byte, and every client decodes it with the generated
//! [`crate::member::WatchReply`]. The server's `Kv` service is generated
//! with this type in place of that one (see `build.rs`).

use prost::bytes::{Buf, BufMut, Bytes};
use prost::encoding::{self, DecodeContext, WireType};

/// A `keel.member.WatchReply` whose `events` are encoded `keel.member.Event`s.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WatchReply {
    /// The revision of the last event (or of the progress notification).
    pub revision: u64,
    /// Each an encoded `Event` (`prost::Message::encode_to_vec` of
    /// [`crate::member::Event`]).
    pub events: Vec<Bytes>,
    pub progress: bool,
}

impl prost::Message for WatchReply {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        if self.revision != 0 {
            encoding::uint64::encode(1, &self.revision, buf);
        }
        encoding::bytes::encode_repeated(2, &self.events, buf);
        if self.progress {
            encoding::bool::encode(3, &self.progress, buf);
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        match tag {
            1 => encoding::uint64::merge(wire_type, &mut self.revision, buf, ctx),
            2 => encoding::bytes::merge_repeated(wire_type, &mut self.events, buf, ctx),
            3 => encoding::bool::merge(wire_type, &mut self.progress, buf, ctx),
            _ => encoding::skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        (if self.revision != 0 {
            encoding::uint64::encoded_len(1, &self.revision)
        } else {
            0
        }) + encoding::bytes::encoded_len_repeated(2, &self.events)
            + if self.progress {
                encoding::bool::encoded_len(3, &self.progress)
            } else {
                0
            }
    }

    fn clear(&mut self) {
        *self = WatchReply::default();
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::member as pb;

    fn event(rev: u64, key: &str, value: &[u8]) -> pb::Event {
        pb::Event {
            kind: pb::event::Kind::Modified as i32,
            kv: Some(pb::KeyValue {
                key: key.into(),
                value: value.to_vec(),
                mod_revision: rev,
                ..Default::default()
            }),
            prev: Some(pb::KeyValue {
                key: key.into(),
                value: b"before".to_vec(),
                mod_revision: rev - 1,
                ..Default::default()
            }),
            op_index: 3,
            actor: Some(pb::Actor {
                user: "alice".into(),
                groups: vec!["ops".into()],
            }),
        }
    }

    #[test]
    fn a_reply_of_encoded_events_is_the_generated_reply_byte_for_byte() {
        let events = vec![event(7, "/a/1", b"one"), event(8, "/a/2", &[0u8; 300])];
        for (revision, progress, events) in [
            (8, false, events.clone()),
            (9, true, vec![]),
            (0, false, vec![]),
        ] {
            let generated = pb::WatchReply {
                revision,
                events: events.clone(),
                progress,
            };
            let wire = WatchReply {
                revision,
                events: events
                    .iter()
                    .map(|e| Bytes::from(e.encode_to_vec()))
                    .collect(),
                progress,
            };
            assert_eq!(wire.encoded_len(), generated.encoded_len());
            assert_eq!(wire.encode_to_vec(), generated.encode_to_vec());
            assert_eq!(
                pb::WatchReply::decode(wire.encode_to_vec().as_slice()).unwrap(),
                generated
            );
            assert_eq!(
                WatchReply::decode(generated.encode_to_vec().as_slice()).unwrap(),
                wire
            );
        }
    }
}
