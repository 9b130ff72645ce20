//! The `Kv.Watch` reply stream: a store watch turned into gRPC replies, with
//! everything a watcher has pending when it is polled merged into one reply.
//!
//! At many watchers the per-message cost (a reply built, encoded, framed and
//! written per watcher per revision) is what makes a busy member fall
//! behind; a watcher that is behind has several revisions waiting, and
//! sending them as one reply makes the cost per event fall exactly when it
//! matters, as etcd's watch responses do. The stream is polled by the
//! connection itself (no task per watcher), and dropping it, as the server
//! does when the client resets the stream, frees the hub's slot.

use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};

use keel_proto::member as pb;
use keel_proto::prost::Message;
use keel_proto::prost::bytes::Bytes;
use keel_proto::wire::WatchReply;
use tokio_stream::Stream;
use tonic::Status;

use super::server::{kv_to_pb, to_status};
use crate::error::StoreError;
use crate::{Event, EventKind, WatchMessage, WatchStream};

/// Events merged into one reply at most.
const MAX_REPLY_EVENTS: usize = 1024;
/// Bytes of encoded events merged into one reply at most (far below the
/// encoding limit, so one reply never fails to encode).
const MAX_REPLY_BYTES: usize = 4 << 20;

type Item = Result<WatchReply, Status>;
type NextFuture = Pin<Box<dyn Future<Output = (Option<Next>, WatchStream)> + Send>>;
type Next = Result<WatchMessage, StoreError>;

/// The replies of one watch.
pub(super) struct Replies {
    state: State,
}

enum State {
    /// Waiting for the watch's next message (it may read a backfill page).
    Waiting(NextFuture),
    /// A message taken while merging that could not join the reply sent.
    Holding(Box<WatchStream>, Next),
    Done,
}

fn next_of(mut stream: WatchStream) -> NextFuture {
    Box::pin(async move {
        let next = stream.next().await;
        (next, stream)
    })
}

impl Replies {
    pub(super) fn new(stream: WatchStream) -> Replies {
        Replies {
            state: State::Waiting(next_of(stream)),
        }
    }
}

fn event_to_pb(e: &Event) -> pb::Event {
    pb::Event {
        kind: match e.kind {
            EventKind::Added => pb::event::Kind::Added,
            EventKind::Modified => pb::event::Kind::Modified,
            EventKind::Deleted => pb::event::Kind::Deleted,
        } as i32,
        // A deleted key is reported with its key and the deletion revision.
        kv: Some(
            e.value
                .clone()
                .map(kv_to_pb)
                .unwrap_or_else(|| pb::KeyValue {
                    key: e.key.clone(),
                    mod_revision: e.revision,
                    ..Default::default()
                }),
        ),
        prev: e.prev.clone().map(kv_to_pb),
        op_index: e.op_index,
        actor: e.actor.as_ref().map(|a| pb::Actor {
            user: a.user.clone(),
            groups: a.groups.clone(),
        }),
    }
}

/// An event's encoded `keel.member.Event`, made once ([`Event::wire`]).
/// A clone starts empty, so an event copied and then changed is never sent
/// with the encoding of the original.
#[derive(Default)]
pub struct EncodedOnce(OnceLock<Bytes>);

impl Clone for EncodedOnce {
    fn clone(&self) -> Self {
        EncodedOnce::default()
    }
}

/// A cache is no part of what an event is.
impl PartialEq for EncodedOnce {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for EncodedOnce {}

impl std::fmt::Debug for EncodedOnce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = if self.0.get().is_some() {
            "encoded"
        } else {
            "not encoded"
        };
        f.write_str(state)
    }
}

/// `e` as the bytes of a `keel.member.Event`, shared with every other reply
/// that carries it.
fn encoded(e: &Event) -> Bytes {
    e.wire
        .0
        .get_or_init(|| Bytes::from(event_to_pb(e).encode_to_vec()))
        .clone()
}

/// One message as a reply of its own.
fn watch_reply(msg: &WatchMessage) -> WatchReply {
    match msg {
        WatchMessage::Progress { revision } => WatchReply {
            revision: *revision,
            events: vec![],
            progress: true,
        },
        WatchMessage::Events { revision, events } => WatchReply {
            revision: *revision,
            progress: false,
            events: events.iter().map(|e| encoded(e)).collect(),
        },
    }
}

/// Add `msg` to `reply` if it fits: events after events only (a progress
/// notification goes in a reply of its own), within the size bounds.
/// The bound is counted on the shared encodings: reading the event itself
/// again would touch the cache line its reference count shares, which every
/// watcher's queue writes.
fn merge(reply: &mut WatchReply, bytes: &mut usize, msg: &WatchMessage) -> bool {
    let WatchMessage::Events { revision, events } = msg else {
        return false;
    };
    if reply.progress || reply.events.len() + events.len() > MAX_REPLY_EVENTS {
        return false;
    }
    let more: Vec<Bytes> = events.iter().map(|e| encoded(e)).collect();
    let size: usize = more.iter().map(Bytes::len).sum();
    if *bytes + size > MAX_REPLY_BYTES {
        return false;
    }
    *bytes += size;
    reply.revision = *revision;
    reply.events.extend(more);
    true
}

impl Replies {
    /// A reply starting with `first`, extended with whatever else the watch
    /// has ready; the state it leaves behind is the next poll's.
    fn reply(&mut self, mut stream: WatchStream, first: Next) -> Item {
        let first = match first {
            Ok(m) => m,
            Err(e) => {
                self.state = State::Done;
                return Err(to_status(&e));
            }
        };
        let mut reply = watch_reply(&first);
        let mut bytes = reply.events.iter().map(Bytes::len).sum();
        while !reply.progress {
            match stream.try_next() {
                None => break,
                Some(Ok(msg)) if merge(&mut reply, &mut bytes, &msg) => {}
                Some(held) => {
                    self.state = State::Holding(Box::new(stream), held);
                    return Ok(reply);
                }
            }
        }
        self.state = State::Waiting(next_of(stream));
        Ok(reply)
    }
}

impl Stream for Replies {
    type Item = Item;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Item>> {
        let this = self.get_mut();
        match std::mem::replace(&mut this.state, State::Done) {
            State::Done => Poll::Ready(None),
            State::Holding(stream, held) => Poll::Ready(Some(this.reply(*stream, held))),
            State::Waiting(mut fut) => match fut.as_mut().poll(cx) {
                Poll::Pending => {
                    this.state = State::Waiting(fut);
                    Poll::Pending
                }
                Poll::Ready((None, _)) => Poll::Ready(None),
                Poll::Ready((Some(first), stream)) => Poll::Ready(Some(this.reply(stream, first))),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio_stream::StreamExt;

    use super::*;
    use crate::db::Db;
    use crate::watch::{WatchConfig, WatchHub, WatchStart};

    fn added(revision: u64, key: &str) -> Arc<Event> {
        Arc::new(Event {
            revision,
            op_index: 0,
            kind: EventKind::Added,
            key: key.into(),
            value: Some(crate::KeyValue {
                key: key.into(),
                value: b"v".to_vec(),
                create_revision: revision,
                mod_revision: revision,
                version: 1,
                uid: None,
            }),
            prev: None,
            at_ms: 0,
            actor: None,
            wire: Default::default(),
        })
    }

    /// A hub on a fresh database; the directory lives as long as the hub is used.
    fn hub(config: WatchConfig) -> (tempfile::TempDir, Arc<WatchHub>) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        (dir, WatchHub::new(db, config, 0, 0))
    }

    /// The reply as every client decodes it.
    fn decoded(reply: &WatchReply) -> pb::WatchReply {
        pb::WatchReply::decode(reply.encode_to_vec().as_slice()).unwrap()
    }

    fn revisions(reply: &WatchReply) -> Vec<u64> {
        decoded(reply)
            .events
            .iter()
            .map(|e| e.kv.as_ref().unwrap().mod_revision)
            .collect()
    }

    #[tokio::test]
    async fn a_watcher_behind_gets_what_is_pending_in_one_reply() {
        let (_dir, hub) = hub(WatchConfig::default());
        let mut replies = Replies::new(hub.watch("/a/", WatchStart::Now).unwrap());
        for rev in 1..=3 {
            hub.publish(rev, &[added(rev, &format!("/a/{rev}"))]);
        }
        hub.publish(4, &[added(4, "/b/other")]);
        hub.request_progress("/a/");
        hub.publish(5, &[added(5, "/a/5"), added(5, "/a/6")]);

        let first = replies.next().await.unwrap().unwrap();
        assert_eq!((first.revision, first.progress), (3, false));
        assert_eq!(revisions(&first), [1, 2, 3]);
        // A progress notification is never merged into events.
        let progress = replies.next().await.unwrap().unwrap();
        assert_eq!((progress.revision, progress.progress), (4, true));
        assert!(progress.events.is_empty());
        let last = replies.next().await.unwrap().unwrap();
        assert_eq!((last.revision, revisions(&last)), (5, vec![5, 5]));

        // Nothing pending: the next reply waits for the next revision.
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(50), replies.next());
        assert!(waiting.await.is_err(), "a reply with nothing in it");
        hub.publish(6, &[added(6, "/a/7")]);
        let next = replies.next().await.unwrap().unwrap();
        assert_eq!((next.revision, revisions(&next)), (6, vec![6]));
    }

    #[tokio::test]
    async fn every_watcher_of_an_event_sends_one_shared_encoding_of_it() {
        let (_dir, hub) = hub(WatchConfig::default());
        let mut one = Replies::new(hub.watch("/a/", WatchStart::Now).unwrap());
        let mut two = Replies::new(hub.watch("/a/", WatchStart::Now).unwrap());
        let mut event = (*added(1, "/a/1")).clone();
        event.prev = event.value.clone();
        event.actor = Some(Arc::new(crate::Actor {
            user: "alice".into(),
            groups: vec!["ops".into()],
        }));
        let event = Arc::new(event);
        hub.publish(1, std::slice::from_ref(&event));

        let (a, b) = (
            one.next().await.unwrap().unwrap(),
            two.next().await.unwrap().unwrap(),
        );
        assert_eq!(a.events.len(), 1);
        assert_eq!(
            a.events[0].as_ptr(),
            b.events[0].as_ptr(),
            "each reply encoded the event again"
        );
        assert_eq!(decoded(&a).events, [event_to_pb(&event)]);
        assert_eq!(decoded(&a), decoded(&b));
    }

    #[test]
    fn a_copy_of_an_event_is_encoded_from_what_it_holds() {
        let original = added(1, "/a/1");
        let sent = encoded(&original);
        let mut copy = (*original).clone();
        copy.value.as_mut().unwrap().value = b"changed".to_vec();
        let copy_sent = pb::Event::decode(encoded(&copy)).unwrap();
        assert_eq!(copy_sent.kv.unwrap().value, b"changed");
        assert_eq!(pb::Event::decode(sent).unwrap(), event_to_pb(&original));
    }

    #[tokio::test]
    async fn a_merged_reply_stays_within_its_bounds() {
        let (_dir, hub) = hub(WatchConfig {
            channel_capacity: 2 * MAX_REPLY_EVENTS,
            ..WatchConfig::default()
        });
        let mut replies = Replies::new(hub.watch("/a/", WatchStart::Now).unwrap());
        let n = MAX_REPLY_EVENTS as u64 + 10;
        for rev in 1..=n {
            hub.publish(rev, &[added(rev, &format!("/a/{rev}"))]);
        }
        let first = replies.next().await.unwrap().unwrap();
        assert_eq!(first.events.len(), MAX_REPLY_EVENTS);
        assert_eq!(first.revision, MAX_REPLY_EVENTS as u64);
        let rest = replies.next().await.unwrap().unwrap();
        assert_eq!(
            revisions(&rest),
            (MAX_REPLY_EVENTS as u64 + 1..=n).collect::<Vec<_>>()
        );
    }

    #[tokio::test]
    async fn a_merged_reply_stays_within_its_byte_bound() {
        let (_dir, hub) = hub(WatchConfig::default());
        let mut replies = Replies::new(hub.watch("/a/", WatchStart::Now).unwrap());
        // Each event encodes to a little over 1 MiB: three fit in 4 MiB.
        for rev in 1..=5 {
            let mut e = (*added(rev, &format!("/a/{rev}"))).clone();
            e.value.as_mut().unwrap().value = vec![b'x'; 1 << 20];
            hub.publish(rev, &[Arc::new(e)]);
        }
        let first = replies.next().await.unwrap().unwrap();
        assert_eq!(revisions(&first), [1, 2, 3]);
        assert!(
            first.encoded_len() <= MAX_REPLY_BYTES + 64,
            "{}",
            first.encoded_len()
        );
        let rest = replies.next().await.unwrap().unwrap();
        assert_eq!(revisions(&rest), [4, 5]);
    }

    #[tokio::test]
    async fn a_dropped_watcher_ends_after_what_it_was_sent() {
        let (_dir, hub) = hub(WatchConfig {
            channel_capacity: 2,
            ..WatchConfig::default()
        });
        let mut replies = Replies::new(hub.watch("/a/", WatchStart::Now).unwrap());
        for rev in 1..=3 {
            hub.publish(rev, &[added(rev, &format!("/a/{rev}"))]);
        }
        let first = replies.next().await.unwrap().unwrap();
        assert_eq!(revisions(&first), [1, 2]);
        let err = replies.next().await.unwrap().unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unavailable, "{err}");
        assert!(err.message().contains("behind"), "{err}");
        assert!(replies.next().await.is_none());
        assert_eq!(hub.watcher_count(), 0);
    }
}
