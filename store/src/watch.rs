//! The watch hub: the state machine is its one writer, every watcher a reader.
//!
//! A watcher registers under the hub's lock and learns the last published
//! revision `H`; from then on the writer pushes it every matching event after
//! `H` through a bounded channel, and the watcher itself backfills `(start, H]`
//! from the events column family. Events are built once per entry and shared
//! (`Arc`) by all watchers. A watcher whose channel is full is cut off with a
//! reason instead of slowing the writer; it resumes by revision. Idle watchers
//! get progress notifications carrying the current revision (bookmarks).
//!
//! Watchers are indexed by prefix: publishing an event looks up the event
//! key's own prefixes (one hash lookup per distinct watched prefix length),
//! so its cost follows the watchers it reaches, not every watcher open.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::mpsc;

mod backfill;
pub(crate) use backfill::read_events_page;

use crate::Event;

use crate::db::Db;
use crate::error::StoreError;

/// What a watcher receives.
#[derive(Clone, Debug, PartialEq)]
pub enum WatchMessage {
    /// All matching events of one revision (one transaction), in operation order.
    Events {
        revision: u64,
        events: Vec<Arc<Event>>,
    },
    /// Every matching event up to `revision` has been delivered.
    Progress { revision: u64 },
}

impl WatchMessage {
    /// Append `ev` to `msgs`, in the message of its revision (events come
    /// in revision order): how backfills group what they read.
    pub(crate) fn push_event(msgs: &mut Vec<WatchMessage>, ev: Event) {
        let rev = ev.revision;
        match msgs.last_mut() {
            Some(WatchMessage::Events { revision, events }) if *revision == rev => {
                events.push(Arc::new(ev))
            }
            _ => msgs.push(WatchMessage::Events {
                revision: rev,
                events: vec![Arc::new(ev)],
            }),
        }
    }

    pub fn revision(&self) -> u64 {
        match self {
            WatchMessage::Events { revision, .. } | WatchMessage::Progress { revision } => {
                *revision
            }
        }
    }
}

/// Where a watch begins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchStart {
    /// Only changes after the watch is registered.
    Now,
    /// Every change with a revision strictly greater than this one.
    After(u64),
    /// As `After`, and below the compacted revision the member's event
    /// archive replays what retention dropped (when the member archives, the
    /// archive reaches back that far, and no key under the prefix is of the
    /// brief class); otherwise `Compacted` as for `After`.
    AfterArchived(u64),
}

/// Tunables of the hub.
#[derive(Clone, Copy, Debug)]
pub struct WatchConfig {
    /// Messages buffered per watcher before it is cut off as too slow.
    pub channel_capacity: usize,
    /// An idle watcher gets a progress notification this often.
    pub progress_interval: Duration,
    /// Events read from disk per backfill step.
    pub backfill_page: usize,
    /// Open watches this member serves at once (the Kubernetes API's and the
    /// `Kv` service's together); one more is refused with `TooManyWatches`.
    pub max_watches: usize,
}

impl Default for WatchConfig {
    fn default() -> Self {
        WatchConfig {
            channel_capacity: 1024,
            progress_interval: Duration::from_secs(5),
            backfill_page: 512,
            // The API's watches share the watch cache's one slot, so this
            // bounds `Kv` watchers: 10,000 of them plus the cache must fit.
            max_watches: 20_000,
        }
    }
}

struct Slot {
    prefix: String,
    tx: mpsc::Sender<WatchMessage>,
    /// Why the hub dropped this watcher; read by the watcher after its channel closes.
    closed: Arc<Mutex<Option<StoreError>>>,
    active: bool,
}

struct HubState {
    revision: u64,
    compacted: u64,
    next_id: u64,
    slots: HashMap<u64, Slot>,
    /// Slot ids by watched prefix.
    by_prefix: HashMap<String, Vec<u64>>,
    /// How many watched prefixes have each length (in bytes).
    lengths: BTreeMap<usize, usize>,
}

impl HubState {
    fn add(&mut self, id: u64, slot: Slot) {
        *self.lengths.entry(slot.prefix.len()).or_default() += 1;
        self.by_prefix
            .entry(slot.prefix.clone())
            .or_default()
            .push(id);
        self.slots.insert(id, slot);
    }

    fn remove(&mut self, id: u64) -> Option<Slot> {
        let slot = self.slots.remove(&id)?;
        if let Some(ids) = self.by_prefix.get_mut(&slot.prefix) {
            ids.retain(|i| *i != id);
            if ids.is_empty() {
                self.by_prefix.remove(&slot.prefix);
            }
        }
        if let Some(n) = self.lengths.get_mut(&slot.prefix.len()) {
            *n -= 1;
            if *n == 0 {
                self.lengths.remove(&slot.prefix.len());
            }
        }
        Some(slot)
    }

    /// Every slot whose prefix `key` starts with.
    fn matching<'a>(&'a self, key: &'a str) -> impl Iterator<Item = u64> + 'a {
        self.lengths
            .range(..=key.len())
            .filter(|(len, _)| key.is_char_boundary(**len))
            .filter_map(|(len, _)| self.by_prefix.get(&key[..*len]))
            .flatten()
            .copied()
    }
}

/// Fan-out of applied events to watchers.
pub struct WatchHub {
    db: Arc<Db>,
    config: WatchConfig,
    state: Mutex<HubState>,
    /// The member's event archive, for `WatchStart::AfterArchived`.
    archive: std::sync::OnceLock<crate::archive::ArchiveConfig>,
}

impl WatchHub {
    /// A hub at `revision` whose events at or below `compacted` are gone.
    /// Spawns the progress ticker, which ends when the hub is dropped.
    pub fn new(db: Arc<Db>, config: WatchConfig, revision: u64, compacted: u64) -> Arc<WatchHub> {
        let hub = Arc::new(WatchHub {
            db,
            config,
            state: Mutex::new(HubState {
                revision,
                compacted,
                next_id: 0,
                slots: HashMap::new(),
                by_prefix: HashMap::new(),
                lengths: BTreeMap::new(),
            }),
            archive: std::sync::OnceLock::new(),
        });
        if tokio::runtime::Handle::try_current().is_ok() {
            let weak = Arc::downgrade(&hub);
            tokio::spawn(progress_ticker(weak, config.progress_interval));
        }
        hub
    }

    /// Let watches replay from this archive (set once, at start).
    pub fn set_archive(&self, config: crate::archive::ArchiveConfig) {
        let _ = self.archive.set(config);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HubState> {
        // A poisoned hub lock means a watcher panicked mid-update; the state is
        // still consistent (every update is a single assignment), so go on.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The last revision published to watchers.
    pub fn revision(&self) -> u64 {
        self.lock().revision
    }

    pub fn compacted(&self) -> u64 {
        self.lock().compacted
    }

    pub fn watcher_count(&self) -> usize {
        self.lock().slots.len()
    }

    /// Called by the state machine after the batch holding `revision` is written.
    /// Never blocks: a watcher that cannot take the message is cut off.
    pub fn publish(&self, revision: u64, events: &[Arc<Event>]) {
        let mut st = self.lock();
        st.revision = st.revision.max(revision);
        if events.is_empty() {
            return;
        }
        // Each reached watcher's events of this revision, in operation order.
        // A revision of one event (most of them) needs no grouping: its
        // watchers come straight from the index, each once.
        let reached: Vec<(u64, Vec<Arc<Event>>)> = match events {
            [e] => st
                .matching(&e.key)
                .map(|id| (id, vec![e.clone()]))
                .collect(),
            _ => {
                let mut by_watcher: HashMap<u64, Vec<Arc<Event>>> = HashMap::new();
                for e in events {
                    for id in st.matching(&e.key) {
                        by_watcher.entry(id).or_default().push(e.clone());
                    }
                }
                by_watcher.into_iter().collect()
            }
        };
        let mut dropped = Vec::new();
        for (id, matching) in reached {
            let Some(slot) = st.slots.get_mut(&id) else {
                continue;
            };
            slot.active = true;
            match slot.tx.try_send(WatchMessage::Events {
                revision,
                events: matching,
            }) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    *slot.closed.lock().unwrap_or_else(|e| e.into_inner()) =
                        Some(StoreError::WatchDropped {
                            reason: format!(
                                "watcher fell more than {} messages behind at revision {revision}",
                                self.config.channel_capacity
                            ),
                        });
                    dropped.push(id);
                }
                Err(mpsc::error::TrySendError::Closed(_)) => dropped.push(id),
            }
        }
        for id in dropped {
            st.remove(id);
        }
    }

    /// Send every watcher of exactly `prefix` a progress notification at the
    /// current revision (etcd's `RequestProgress`). Publishing happens under
    /// the same lock, so it arrives after every event up to that revision: a
    /// watcher learns it is current even when the latest revisions had no
    /// event for it (a failed transaction, a new leader's first entry).
    pub fn request_progress(&self, prefix: &str) {
        let st = self.lock();
        let revision = st.revision;
        for id in st.by_prefix.get(prefix).into_iter().flatten() {
            if let Some(slot) = st.slots.get(id) {
                // A full channel already carries newer news.
                let _ = slot.tx.try_send(WatchMessage::Progress { revision });
            }
        }
    }

    pub fn set_compacted(&self, compacted: u64) {
        let mut st = self.lock();
        st.compacted = st.compacted.max(compacted);
    }

    /// The state was replaced (snapshot installed): every watcher is cut off and
    /// resumes from its last revision against the new state.
    pub fn reset(&self, revision: u64, compacted: u64) {
        let mut st = self.lock();
        st.revision = revision;
        st.compacted = compacted;
        st.by_prefix.clear();
        st.lengths.clear();
        for (_, slot) in st.slots.drain() {
            *slot.closed.lock().unwrap_or_else(|e| e.into_inner()) =
                Some(StoreError::WatchDropped {
                    reason: format!("state replaced by a snapshot at revision {revision}"),
                });
        }
    }

    /// Start a watch on every key beginning with `prefix`.
    pub fn watch(
        self: &Arc<Self>,
        prefix: impl Into<String>,
        start: WatchStart,
    ) -> Result<WatchStream, StoreError> {
        let prefix = prefix.into();
        // Whether the archive may replay below the compacted revision,
        // decided before the hub's lock (it reads the archive's index).
        let archive = match start {
            WatchStart::AfterArchived(r) => self.archive.get().filter(|a| {
                crate::archive::backfill::covers_prefix(a, &prefix)
                    && crate::archive::backfill::starts_by(&a.dir, r)
            }),
            _ => None,
        }
        .map(|a| a.dir.clone());
        let (tx, rx) = mpsc::channel(self.config.channel_capacity);
        let closed = Arc::new(Mutex::new(None));
        let mut st = self.lock();
        if st.slots.len() >= self.config.max_watches {
            // Watchers whose stream was dropped between two publishes still
            // hold a slot until the next publish or tick notices.
            let gone: Vec<u64> = st
                .slots
                .iter()
                .filter(|(_, slot)| slot.tx.is_closed())
                .map(|(id, _)| *id)
                .collect();
            for id in gone {
                st.remove(id);
            }
            if st.slots.len() >= self.config.max_watches {
                return Err(StoreError::TooManyWatches {
                    limit: self.config.max_watches,
                });
            }
        }
        let head = st.revision;
        let from = match start {
            WatchStart::Now => head,
            WatchStart::After(r) | WatchStart::AfterArchived(r) => {
                if r < st.compacted && archive.is_none() {
                    return Err(StoreError::Compacted {
                        requested: r,
                        compacted: st.compacted,
                    });
                }
                if r > head {
                    return Err(StoreError::FutureRevision {
                        requested: r,
                        current: head,
                    });
                }
                r
            }
        };
        let id = st.next_id;
        st.next_id += 1;
        st.add(
            id,
            Slot {
                prefix: prefix.clone(),
                tx,
                closed: closed.clone(),
                active: false,
            },
        );
        drop(st);
        Ok(WatchStream {
            db: self.db.clone(),
            prefix,
            page: self.config.backfill_page,
            backfill: (from < head).then_some((from, head)),
            buffered: VecDeque::new(),
            live: rx,
            closed,
            archive,
            last_revision: from,
            failed: false,
            slot: Some((Arc::downgrade(self), id)),
        })
    }

    fn tick(&self) {
        let mut st = self.lock();
        let revision = st.revision;
        let mut dropped = Vec::new();
        for (id, slot) in st.slots.iter_mut() {
            if std::mem::take(&mut slot.active) {
                continue;
            }
            // A full channel already carries newer news; a closed one is gone.
            if let Err(mpsc::error::TrySendError::Closed(_)) =
                slot.tx.try_send(WatchMessage::Progress { revision })
            {
                dropped.push(*id);
            }
        }
        for id in dropped {
            st.remove(id);
        }
    }
}

async fn progress_ticker(hub: Weak<WatchHub>, every: Duration) {
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval.tick().await;
    loop {
        interval.tick().await;
        match hub.upgrade() {
            Some(hub) => hub.tick(),
            None => return,
        }
    }
}

/// One watcher: first replays `(start, H]` from disk, then live messages.
pub struct WatchStream {
    db: Arc<Db>,
    prefix: String,
    page: usize,
    /// Remaining backfill range `(from, until]`, if any.
    backfill: Option<(u64, u64)>,
    buffered: VecDeque<WatchMessage>,
    live: mpsc::Receiver<WatchMessage>,
    closed: Arc<Mutex<Option<StoreError>>>,
    /// The archive the backfill reads what the member no longer holds from.
    archive: Option<std::path::PathBuf>,
    last_revision: u64,
    failed: bool,
    /// The hub slot to free when the stream is dropped, so the watch cap
    /// counts open streams only.
    slot: Option<(Weak<WatchHub>, u64)>,
}

impl Drop for WatchStream {
    fn drop(&mut self) {
        if let Some((hub, id)) = self.slot.take()
            && let Some(hub) = hub.upgrade()
        {
            hub.lock().remove(id);
        }
    }
}

impl std::fmt::Debug for WatchStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchStream")
            .field("prefix", &self.prefix)
            .field("backfill", &self.backfill)
            .field("last_revision", &self.last_revision)
            .finish_non_exhaustive()
    }
}

impl WatchStream {
    /// The revision of the last message returned (or the start revision).
    pub fn last_revision(&self) -> u64 {
        self.last_revision
    }

    /// The next message; `None` after an error has been returned once.
    pub async fn next(&mut self) -> Option<Result<WatchMessage, StoreError>> {
        if self.failed {
            return None;
        }
        loop {
            if let Some(msg) = self.buffered.pop_front() {
                self.last_revision = msg.revision();
                return Some(Ok(msg));
            }
            if let Some((from, until)) = self.backfill {
                match self.read_page(from, until).await {
                    Ok((msgs, next)) => {
                        self.buffered.extend(msgs);
                        self.backfill = (next < until).then_some((next, until));
                        continue;
                    }
                    Err(e) => {
                        self.failed = true;
                        return Some(Err(e));
                    }
                }
            }
            return match self.live.recv().await {
                Some(msg) => {
                    self.last_revision = msg.revision();
                    Some(Ok(msg))
                }
                None => Some(Err(self.closed_reason())),
            };
        }
    }

    /// The next message if one is ready without waiting or reading the disk
    /// (`None` while a backfill page is still to be read), so a sender can
    /// batch what a watcher has pending.
    pub fn try_next(&mut self) -> Option<Result<WatchMessage, StoreError>> {
        if self.failed {
            return None;
        }
        if let Some(msg) = self.buffered.pop_front() {
            self.last_revision = msg.revision();
            return Some(Ok(msg));
        }
        if self.backfill.is_some() {
            return None;
        }
        match self.live.try_recv() {
            Ok(msg) => {
                self.last_revision = msg.revision();
                Some(Ok(msg))
            }
            Err(mpsc::error::TryRecvError::Empty) => None,
            Err(mpsc::error::TryRecvError::Disconnected) => Some(Err(self.closed_reason())),
        }
    }

    fn closed_reason(&mut self) -> StoreError {
        self.failed = true;
        let reason = self.closed.lock().unwrap_or_else(|e| e.into_inner()).take();
        reason.unwrap_or(StoreError::WatchDropped {
            reason: "the member is shutting down".into(),
        })
    }

    /// Read events in `(from, until]` up to about one page, ending on a revision
    /// boundary so a transaction is never split. Returns the messages and the
    /// last revision covered.
    async fn read_page(
        &self,
        from: u64,
        until: u64,
    ) -> Result<(Vec<WatchMessage>, u64), StoreError> {
        let db = self.db.clone();
        let prefix = self.prefix.clone();
        let page = self.page;
        let archive = self.archive.clone();
        tokio::task::spawn_blocking(move || {
            read_events_page(&db, &prefix, from, until, page, archive.as_deref())
        })
        .await
        .map_err(|e| StoreError::Raft(format!("backfill task failed: {e}")))?
    }
}
