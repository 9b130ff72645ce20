//! Store events decoded and encoded once for every API watcher that
//! receives them. Without this, each of N watchers of a kind parses the
//! event's object (and its previous version) from JSON and serializes it
//! again; with it, watchers share the parsed objects (for their selectors)
//! and the encoded object (copied into their line). The cache keeps the most
//! recent events; a watcher that lags further behind prepares its own copy.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use keel_store::{Event, KeyValue};
use serde_json::{Value, json};

/// Events kept: enough for every watcher that keeps up with a burst.
const KEEP: usize = 4096;

/// One object of an event: parsed (for selectors and tables) and encoded.
pub struct Object {
    pub value: Value,
    pub json: String,
}

/// An event's object after the change and before it, at the event's revision.
pub struct Prepared {
    pub new: Option<Object>,
    pub old: Option<Object>,
}

/// A stored object with `metadata.resourceVersion` set to `revision`, or why
/// it cannot be served: not JSON, or not an object (indexing a non-object
/// `Value` mutably panics, and anyone can store any bytes with `keel kv`).
pub fn stored(kv: &KeyValue, revision: u64) -> Result<Value, String> {
    let mut value: Value = serde_json::from_slice(&kv.value).map_err(|e| e.to_string())?;
    let meta = value
        .as_object_mut()
        .ok_or("not a JSON object")?
        .entry("metadata")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .ok_or("metadata is not a JSON object")?;
    meta.insert("resourceVersion".into(), json!(revision.to_string()));
    Ok(value)
}

fn object(kv: &KeyValue, revision: u64) -> Option<Object> {
    let value = stored(kv, revision).ok()?;
    let json = value.to_string();
    Some(Object { value, json })
}

impl Prepared {
    fn of(e: &Event) -> Prepared {
        Prepared {
            new: e.value.as_ref().and_then(|kv| object(kv, e.revision)),
            old: e.prev.as_ref().and_then(|kv| object(kv, e.revision)),
        }
    }
}

/// Recent events by (revision, position in the transaction).
#[derive(Default)]
pub struct PreparedEvents {
    recent: Mutex<BTreeMap<(u64, u32), Arc<Prepared>>>,
}

impl PreparedEvents {
    /// The prepared form of `e`, made once.
    pub fn get(&self, e: &Event) -> Arc<Prepared> {
        let key = (e.revision, e.op_index);
        if let Some(p) = self.recent.lock().unwrap().get(&key) {
            return p.clone();
        }
        // Prepared outside the lock; two watchers racing here both prepare
        // it, and the first one stored wins.
        let p = Arc::new(Prepared::of(e));
        let mut recent = self.recent.lock().unwrap();
        let p = recent.entry(key).or_insert(p).clone();
        while recent.len() > KEEP {
            recent.pop_first();
        }
        p
    }
}

/// A watch line `{"type":T,"object":O}` from an already encoded object.
pub fn line(kind: &str, object_json: &str) -> Bytes {
    let mut s = String::with_capacity(object_json.len() + kind.len() + 24);
    s.push_str("{\"type\":\"");
    s.push_str(kind);
    s.push_str("\",\"object\":");
    s.push_str(object_json);
    s.push_str("}\n");
    Bytes::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(rev: u64, value: &str, prev: Option<&str>) -> Event {
        let kv = |v: &str| KeyValue {
            key: "/registry/core/configmaps/default/a".into(),
            value: v.as_bytes().to_vec(),
            create_revision: 1,
            mod_revision: rev,
            version: 1,
            uid: None,
        };
        Event {
            revision: rev,
            op_index: 0,
            kind: if prev.is_some() {
                keel_store::EventKind::Modified
            } else {
                keel_store::EventKind::Added
            },
            key: "/registry/core/configmaps/default/a".into(),
            value: Some(kv(value)),
            prev: prev.map(kv),
            at_ms: 0,
            actor: None,
            wire: Default::default(),
        }
    }

    #[test]
    fn events_are_prepared_once_and_lines_are_valid_json() {
        let cache = PreparedEvents::default();
        let e = event(
            7,
            r#"{"metadata":{"name":"a"},"data":{"k":"v"}}"#,
            Some(r#"{"metadata":{"name":"a"}}"#),
        );
        let a = cache.get(&e);
        let b = cache.get(&e);
        assert!(
            Arc::ptr_eq(&a, &b),
            "the second watcher reuses the first's work"
        );
        let new = a.new.as_ref().unwrap();
        assert_eq!(new.value["metadata"]["resourceVersion"], "7");
        assert_eq!(
            a.old.as_ref().unwrap().value["metadata"]["resourceVersion"],
            "7"
        );
        let l = line("MODIFIED", &new.json);
        let parsed: Value = serde_json::from_slice(&l[..l.len() - 1]).unwrap();
        assert_eq!(parsed["type"], "MODIFIED");
        assert_eq!(parsed["object"]["data"]["k"], "v");
        assert!(l.ends_with(b"\n"));
    }

    #[test]
    fn stored_values_that_are_not_objects_are_refused_not_panicked_on() {
        for bad in ["5", "\"x\"", "[1]", r#"{"metadata":"x"}"#, "{bad"] {
            let e = event(3, bad, Some(bad));
            assert!(stored(e.value.as_ref().unwrap(), 3).is_err(), "{bad}");
            let p = PreparedEvents::default().get(&e);
            assert!(p.new.is_none() && p.old.is_none(), "{bad}");
        }
        let kv = event(3, r#"{"kind":"ConfigMap"}"#, None).value.unwrap();
        assert_eq!(stored(&kv, 9).unwrap()["metadata"]["resourceVersion"], "9");
    }

    #[test]
    fn the_cache_keeps_only_recent_events() {
        let cache = PreparedEvents::default();
        for rev in 1..=(KEEP as u64 + 10) {
            cache.get(&event(rev, r#"{"metadata":{}}"#, None));
        }
        let recent = cache.recent.lock().unwrap();
        assert_eq!(recent.len(), KEEP);
        assert_eq!(recent.keys().next(), Some(&(11, 0)));
    }
}
