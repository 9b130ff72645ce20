//! [`Storage`] in memory, for registry unit tests that run in milliseconds:
//! a map of keys, a revision counter, the retained events, and a broadcast of
//! new events to watchers. It keeps the member's semantics the registry relies
//! on: revisions grow by one per write, lists page with continue tokens
//! pinned to the first page's revision, reads and watches at a past revision
//! (`Compacted` below the retained events, `FutureRevision` above the head),
//! and typed `NotFound`/`AlreadyExists`/`Conflict`. Tests can also make the
//! next call fail, or slip a write in before the next conditional one.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use tokio::sync::broadcast;

use super::{
    Actor, Consistency, Event, EventKind, EventStream, KeyValue, Preconditions, RangeRequest,
    RangeResponse, Storage, StorageError, WatchMessage,
};

/// Messages a watcher may fall behind by before it is cut off, as the
/// member's hub cuts off a slow watcher.
const WATCH_BUFFER: usize = 1024;

/// A write to run just before the next conditional update or delete.
type Interference = Box<dyn FnOnce(&MemoryStorage) + Send>;

struct State {
    revision: u64,
    compacted: u64,
    objects: BTreeMap<String, KeyValue>,
    /// Every event after `compacted`, in revision order.
    log: Vec<Arc<Event>>,
}

/// Storage in a map; see the module documentation.
pub struct MemoryStorage {
    state: Mutex<State>,
    events: broadcast::Sender<WatchMessage>,
    fail_next: Mutex<Option<StorageError>>,
    before_next_write: Mutex<Option<Interference>>,
}

impl Default for MemoryStorage {
    fn default() -> Self {
        MemoryStorage::new()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl MemoryStorage {
    /// An empty storage at revision 1 (as a store whose first entry is Raft's
    /// membership), so the first write is revision 2.
    pub fn new() -> MemoryStorage {
        MemoryStorage {
            state: Mutex::new(State {
                revision: 1,
                compacted: 0,
                objects: BTreeMap::new(),
                log: Vec::new(),
            }),
            events: broadcast::channel(WATCH_BUFFER).0,
            fail_next: Mutex::new(None),
            before_next_write: Mutex::new(None),
        }
    }

    /// The current revision.
    pub fn revision(&self) -> u64 {
        lock(&self.state).revision
    }

    /// Write `value` at `key` whatever is there (created if absent): a write
    /// from around the registry, or another client's, naming no actor.
    /// Returns its revision.
    pub fn put(&self, key: &str, value: impl Into<Vec<u8>>) -> u64 {
        let mut st = lock(&self.state);
        self.commit(&mut st, key, Some(value.into()), None, None)
    }

    /// The retained events, oldest first (what history shows).
    pub fn events(&self) -> Vec<Arc<Event>> {
        lock(&self.state).log.clone()
    }

    /// Delete `key` if it is there, unconditionally (another client's
    /// delete). Returns the revision of the delete.
    pub fn remove(&self, key: &str) -> Option<u64> {
        let mut st = lock(&self.state);
        st.objects
            .contains_key(key)
            .then(|| self.commit(&mut st, key, None, None, None))
    }

    /// Drop the events up to `revision`: reads and watches before it are
    /// then `Compacted`.
    pub fn compact(&self, revision: u64) {
        let mut st = lock(&self.state);
        let revision = revision.min(st.revision);
        if revision > st.compacted {
            st.compacted = revision;
            st.log.retain(|e| e.revision > revision);
        }
    }

    /// Tell every watcher that it has seen everything up to now (a bookmark).
    pub fn progress(&self) {
        let st = lock(&self.state);
        let _ = self.events.send(WatchMessage::Progress {
            revision: st.revision,
        });
    }

    /// The next call, whatever its verb, fails with `e`.
    pub fn fail_next(&self, e: StorageError) {
        *lock(&self.fail_next) = Some(e);
    }

    /// Run `write` just before the next conditional update or delete applies,
    /// as a concurrent client racing a read-modify-write.
    pub fn before_next_write(&self, write: impl FnOnce(&MemoryStorage) + Send + 'static) {
        *lock(&self.before_next_write) = Some(Box::new(write));
    }

    fn injected(&self) -> Result<(), StorageError> {
        match lock(&self.fail_next).take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn interfere(&self) {
        let write = lock(&self.before_next_write).take();
        if let Some(write) = write {
            write(self);
        }
    }

    /// Apply one change (`None` deletes) at the next revision, by `actor`,
    /// and publish it.
    fn commit(
        &self,
        st: &mut State,
        key: &str,
        value: Option<Vec<u8>>,
        uid: Option<String>,
        actor: Option<&Actor>,
    ) -> u64 {
        st.revision += 1;
        let revision = st.revision;
        let prev = st.objects.get(key).cloned();
        let next = value.map(|value| KeyValue {
            key: key.to_string(),
            value,
            create_revision: prev.as_ref().map_or(revision, |p| p.create_revision),
            mod_revision: revision,
            version: prev.as_ref().map_or(1, |p| p.version + 1),
            uid: prev.as_ref().map_or(uid, |p| p.uid.clone()),
        });
        let kind = match (&prev, &next) {
            (None, _) => EventKind::Added,
            (Some(_), Some(_)) => EventKind::Modified,
            (Some(_), None) => EventKind::Deleted,
        };
        match &next {
            Some(kv) => st.objects.insert(key.to_string(), kv.clone()),
            None => st.objects.remove(key),
        };
        let event = Arc::new(Event {
            revision,
            op_index: 0,
            kind,
            key: key.to_string(),
            value: next,
            prev,
            at_ms: keel_store::command::now_ms(),
            actor: actor.map(|a| Arc::new(a.clone())),
            wire: Default::default(),
        });
        st.log.push(event.clone());
        // No receiver is not an error: nobody watches.
        let _ = self.events.send(WatchMessage::Events {
            revision,
            events: vec![event],
        });
        revision
    }

    /// A conditional update (`Some`) or delete (`None`) of an existing key.
    fn change(
        &self,
        key: &str,
        value: Option<Vec<u8>>,
        pre: &Preconditions,
        actor: &Actor,
    ) -> Result<u64, StorageError> {
        self.injected()?;
        self.interfere();
        let mut st = lock(&self.state);
        let current = st.objects.get(key).ok_or_else(|| StorageError::NotFound {
            key: key.to_string(),
            revision: None,
        })?;
        if let Some(detail) = pre.violated_by(current) {
            return Err(StorageError::Conflict {
                key: key.to_string(),
                detail,
            });
        }
        Ok(self.commit(&mut st, key, value, None, Some(actor)))
    }

    fn range(&self, req: &RangeRequest) -> Result<RangeResponse, StorageError> {
        self.injected()?;
        let (at, after) = match &req.continue_token {
            Some(t) => {
                let tok = Token::decode(t)?;
                if tok.prefix != req.prefix {
                    return Err(StorageError::InvalidContinue(format!(
                        "token was issued for prefix {:?}, not {:?}",
                        tok.prefix, req.prefix
                    )));
                }
                (Some(tok.revision), Some(tok.after))
            }
            None => (req.revision, None),
        };
        let st = lock(&self.state);
        let revision = at.unwrap_or(st.revision);
        if revision > st.revision {
            return Err(StorageError::FutureRevision {
                requested: revision,
                current: st.revision,
            });
        }
        if revision < st.compacted {
            return Err(StorageError::Compacted {
                requested: revision,
                compacted: st.compacted,
            });
        }
        // The keys at `revision`: today's, with every later change undone.
        let mut keys: BTreeMap<&str, &KeyValue> = st
            .objects
            .range(req.prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&req.prefix))
            .map(|(k, v)| (k.as_str(), v))
            .collect();
        for e in st.log.iter().rev().take_while(|e| e.revision > revision) {
            if !e.key.starts_with(&req.prefix) {
                continue;
            }
            match &e.prev {
                Some(prev) => keys.insert(e.key.as_str(), prev),
                None => keys.remove(e.key.as_str()),
            };
        }
        let limit = if req.limit == 0 {
            usize::MAX
        } else {
            req.limit
        };
        let mut rest = keys
            .into_iter()
            .filter(|(k, _)| after.as_deref().is_none_or(|a| *k > a))
            .map(|(_, kv)| kv.clone());
        let kvs: Vec<KeyValue> = rest.by_ref().take(limit).collect();
        let continue_token = match (rest.next(), kvs.last()) {
            (Some(_), Some(last)) => Some(
                Token {
                    revision,
                    prefix: req.prefix.clone(),
                    after: last.key.clone(),
                }
                .encode(),
            ),
            _ => None,
        };
        Ok(RangeResponse {
            kvs,
            revision,
            continue_token,
        })
    }

    fn subscribe(&self, prefix: &str, after: u64) -> Result<EventStream, StorageError> {
        self.injected()?;
        // Under the lock, so no event falls between the backlog and the live ones.
        let st = lock(&self.state);
        if after < st.compacted {
            return Err(StorageError::Compacted {
                requested: after,
                compacted: st.compacted,
            });
        }
        if after > st.revision {
            return Err(StorageError::FutureRevision {
                requested: after,
                current: st.revision,
            });
        }
        let backlog: Vec<Result<WatchMessage, StorageError>> = st
            .log
            .iter()
            .filter(|e| e.revision > after && e.key.starts_with(prefix))
            .map(|e| {
                Ok(WatchMessage::Events {
                    revision: e.revision,
                    events: vec![e.clone()],
                })
            })
            .collect();
        let rx = self.events.subscribe();
        drop(st);
        let prefix = prefix.to_string();
        let live = futures::stream::unfold(Some(rx), move |rx| {
            let prefix = prefix.clone();
            async move {
                let mut rx = rx?;
                loop {
                    match rx.recv().await {
                        Ok(WatchMessage::Events { revision, events }) => {
                            let events: Vec<_> = events
                                .into_iter()
                                .filter(|e| e.key.starts_with(&prefix))
                                .collect();
                            if !events.is_empty() {
                                let msg = WatchMessage::Events { revision, events };
                                return Some((Ok(msg), Some(rx)));
                            }
                        }
                        Ok(progress) => return Some((Ok(progress), Some(rx))),
                        // Cut off, as the hub cuts off a slow watcher; the stream ends after.
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            let e = StorageError::Unavailable(format!(
                                "watch closed: the watcher fell {n} messages behind"
                            ));
                            return Some((Err(e), None));
                        }
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                }
            }
        });
        Ok(futures::stream::iter(backlog).chain(live).boxed())
    }
}

/// Where a list continues: the first page's revision, its prefix, and the
/// last key returned.
#[derive(serde::Serialize, serde::Deserialize)]
struct Token {
    revision: u64,
    prefix: String,
    after: String,
}

impl Token {
    fn encode(&self) -> String {
        let json = serde_json::to_vec(self).expect("a token encodes");
        let hex: String = json.iter().map(|b| format!("{b:02x}")).collect();
        format!("km1.{hex}")
    }

    fn decode(token: &str) -> Result<Token, StorageError> {
        let bad = |d: &str| StorageError::InvalidContinue(d.to_string());
        let hex = token
            .strip_prefix("km1.")
            .ok_or_else(|| bad("unknown token format"))?
            .as_bytes();
        let nibble = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
        let bytes = hex
            .chunks(2)
            .map(|p| match p {
                [h, l] => Some((nibble(*h)? << 4) | nibble(*l)?),
                _ => None,
            })
            .collect::<Option<Vec<u8>>>()
            .ok_or_else(|| bad("not hexadecimal"))?;
        serde_json::from_slice(&bytes).map_err(|e| bad(&e.to_string()))
    }
}

impl Storage for MemoryStorage {
    fn get<'a>(
        &'a self,
        key: &'a str,
        _consistency: Consistency,
    ) -> BoxFuture<'a, Result<(KeyValue, u64), StorageError>> {
        let res = self.injected().and_then(|()| {
            let st = lock(&self.state);
            match st.objects.get(key) {
                Some(kv) => Ok((kv.clone(), st.revision)),
                None => Err(StorageError::NotFound {
                    key: key.to_string(),
                    revision: Some(st.revision),
                }),
            }
        });
        futures::future::ready(res).boxed()
    }

    fn list(&self, req: RangeRequest) -> BoxFuture<'_, Result<RangeResponse, StorageError>> {
        futures::future::ready(self.range(&req)).boxed()
    }

    fn create<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        uid: Option<String>,
        actor: &'a Actor,
    ) -> BoxFuture<'a, Result<u64, StorageError>> {
        let res = self.injected().and_then(|()| {
            let mut st = lock(&self.state);
            if st.objects.contains_key(key) {
                return Err(StorageError::AlreadyExists {
                    key: key.to_string(),
                });
            }
            Ok(self.commit(&mut st, key, Some(value), uid, Some(actor)))
        });
        futures::future::ready(res).boxed()
    }

    fn update<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        preconditions: Preconditions,
        actor: &'a Actor,
    ) -> BoxFuture<'a, Result<u64, StorageError>> {
        futures::future::ready(self.change(key, Some(value), &preconditions, actor)).boxed()
    }

    fn delete<'a>(
        &'a self,
        key: &'a str,
        preconditions: Preconditions,
        actor: &'a Actor,
    ) -> BoxFuture<'a, Result<u64, StorageError>> {
        futures::future::ready(self.change(key, None, &preconditions, actor)).boxed()
    }

    fn watch<'a>(
        &'a self,
        prefix: &'a str,
        after: u64,
    ) -> BoxFuture<'a, Result<EventStream, StorageError>> {
        futures::future::ready(self.subscribe(prefix, after)).boxed()
    }

    fn linearize(&self) -> BoxFuture<'_, Result<u64, StorageError>> {
        let res = self.injected().map(|()| self.revision());
        futures::future::ready(res).boxed()
    }

    fn catch_up_to(&self, _revision: u64) -> BoxFuture<'_, ()> {
        // One replica: it has everything there is.
        futures::future::ready(()).boxed()
    }

    fn ready(&self) -> BoxFuture<'_, bool> {
        futures::future::ready(true).boxed()
    }

    fn is_running(&self) -> bool {
        true
    }

    fn render_metrics(&self) -> String {
        String::new()
    }
}
