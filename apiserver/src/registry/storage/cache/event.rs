//! One store event as the watch cache hands it to every watcher of its
//! resource: decoded once (for selectors) and encoded once per watch event
//! type, so a thousand watchers share one `Bytes` line instead of a thousand
//! copies. Both are made lazily, by the first watcher that needs them.

use std::sync::{Arc, OnceLock};

use axum::body::Bytes;
use keel_store::{Event, KeyValue};

use crate::registry::prepared::{self, Object, Prepared};
use crate::selector::Selector;

/// Which object of an event a watcher is sent, and as what.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Line {
    /// The new object, entering the watcher's selection (or created).
    Added,
    /// The new object, still selected.
    Modified,
    /// The new object, leaving the watcher's selection.
    Left,
    /// The object before a delete (or before it left the selection).
    Deleted,
}

impl Line {
    fn slot(self) -> usize {
        self as usize
    }

    fn kind(self) -> &'static str {
        match self {
            Line::Added => "ADDED",
            Line::Modified => "MODIFIED",
            Line::Left | Line::Deleted => "DELETED",
        }
    }
}

/// A store event with its shared decoded and encoded forms.
pub struct CachedEvent {
    pub event: Arc<Event>,
    prepared: OnceLock<Prepared>,
    lines: [OnceLock<Bytes>; 4],
}

fn object(kv: &KeyValue, revision: u64) -> Option<Object> {
    let value = prepared::stored(kv, revision).ok()?;
    let json = value.to_string();
    Some(Object { value, json })
}

impl CachedEvent {
    pub fn new(event: Arc<Event>) -> CachedEvent {
        CachedEvent {
            event,
            prepared: OnceLock::new(),
            lines: Default::default(),
        }
    }

    pub fn revision(&self) -> u64 {
        self.event.revision
    }

    pub fn key(&self) -> &str {
        &self.event.key
    }

    /// Both objects with `metadata.resourceVersion` set to the event's
    /// revision; one that does not decode is `None` (and never sent).
    pub fn prepared(&self) -> &Prepared {
        self.prepared.get_or_init(|| {
            let e = &self.event;
            Prepared {
                new: e.value.as_ref().and_then(|kv| object(kv, e.revision)),
                old: e.prev.as_ref().and_then(|kv| object(kv, e.revision)),
            }
        })
    }

    /// What a watcher with `selector` is sent, `None` when neither version
    /// is selected. An object leaving the selection is DELETED for this
    /// watcher, entering it ADDED (as the registry's uncached watch does).
    pub fn line_for(&self, selector: &Selector, everything: bool) -> Option<Line> {
        let p = self.prepared();
        let matches = |o: &Option<Object>| {
            o.as_ref()
                .is_some_and(|o| everything || selector.matches(&o.value))
        };
        match (p.new.is_some(), matches(&p.new), matches(&p.old)) {
            (true, true, true) => Some(Line::Modified),
            (true, true, false) => Some(Line::Added),
            (true, false, true) => Some(Line::Left),
            (false, _, true) => Some(Line::Deleted),
            _ => None,
        }
    }

    /// The object of `line`, decoded.
    pub fn object(&self, line: Line) -> Option<&Object> {
        let p = self.prepared();
        match line {
            Line::Deleted => p.old.as_ref(),
            _ => p.new.as_ref(),
        }
    }

    /// The JSON line `{"type":…,"object":…}` of `line`, encoded once and
    /// shared by every watcher sent it.
    pub fn encoded(&self, line: Line) -> Option<Bytes> {
        let object = self.object(line)?;
        Some(
            self.lines[line.slot()]
                .get_or_init(|| prepared::line(line.kind(), &object.json))
                .clone(),
        )
    }

    /// The watch event type of `line`.
    pub fn kind(line: Line) -> &'static str {
        line.kind()
    }
}
