//! One watcher's place in its resource's event sequence: the ring's events
//! after its start first, then the live broadcast, filtered to its prefix
//! (its namespace). Falling more than the broadcast's buffer behind ends it,
//! so a slow watcher never holds the others back.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};

use super::event::CachedEvent;
use super::store::Msg;

/// What a watcher gets next.
pub enum Next {
    Event(Arc<CachedEvent>),
    /// Everything up to this revision was sent (a bookmark).
    Progress(u64),
    /// The watch is over (cut off as too slow, or the cache re-listed);
    /// the client watches again from its last revision.
    End(String),
}

pub struct Subscription {
    /// Events strictly after this revision are sent.
    after: u64,
    /// The newest revision sent (or the start), so bookmarks never go back.
    seen: u64,
    prefix: String,
    backlog: VecDeque<Arc<CachedEvent>>,
    rx: broadcast::Receiver<Msg>,
}

fn ended(e: RecvError) -> Next {
    Next::End(match e {
        RecvError::Lagged(n) => format!("the watcher fell {n} events behind and was cut off"),
        RecvError::Closed => "the watch cache listed the store again".into(),
    })
}

impl Subscription {
    pub(super) fn new(
        prefix: &str,
        after: u64,
        backlog: VecDeque<Arc<CachedEvent>>,
        rx: broadcast::Receiver<Msg>,
    ) -> Subscription {
        Subscription {
            after,
            seen: after,
            prefix: prefix.to_string(),
            backlog,
            rx,
        }
    }

    /// The revision the watch started after.
    pub fn start(&self) -> u64 {
        self.after
    }

    fn accept(&mut self, msg: Msg) -> Option<Next> {
        match msg {
            Msg::Event(e) if e.revision() > self.after && e.key().starts_with(&self.prefix) => {
                self.seen = self.seen.max(e.revision());
                Some(Next::Event(e))
            }
            Msg::Event(_) => None,
            // Repeated at the same revision, as the store repeats progress
            // to an idle watcher; never behind what was sent.
            Msg::Progress(r) if r >= self.seen => {
                self.seen = r;
                Some(Next::Progress(r))
            }
            Msg::Progress(_) => None,
            Msg::Reset => Some(ended(RecvError::Closed)),
        }
    }

    fn take_backlog(&mut self) -> Option<Next> {
        let e = self.backlog.pop_front()?;
        self.seen = self.seen.max(e.revision());
        Some(Next::Event(e))
    }

    /// The next event or bookmark, waiting for one.
    pub async fn next(&mut self) -> Next {
        if let Some(n) = self.take_backlog() {
            return n;
        }
        loop {
            match self.rx.recv().await {
                Ok(msg) => {
                    if let Some(n) = self.accept(msg) {
                        return n;
                    }
                }
                Err(e) => return ended(e),
            }
        }
    }

    /// The next event or bookmark if one is ready now (to batch what a
    /// watcher has pending into one write).
    pub fn try_next(&mut self) -> Option<Next> {
        if let Some(n) = self.take_backlog() {
            return Some(n);
        }
        loop {
            match self.rx.try_recv() {
                Ok(msg) => {
                    if let Some(n) = self.accept(msg) {
                        return Some(n);
                    }
                }
                Err(TryRecvError::Empty) => return None,
                Err(TryRecvError::Lagged(n)) => return Some(ended(RecvError::Lagged(n))),
                Err(TryRecvError::Closed) => return Some(ended(RecvError::Closed)),
            }
        }
    }
}
