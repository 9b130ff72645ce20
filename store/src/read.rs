//! Gets and ranges over the objects column family: at the current revision, or
//! at a past revision inside the retention window by undoing newer events.
//! Every read sees one RocksDB snapshot, so a page is always consistent.

use std::collections::BTreeMap;

use rocksdb::{Direction, IteratorMode, ReadOptions};
use serde::{Deserialize, Serialize};

use crate::codec::{self, store_meta};
use crate::db::{CF_EVENTS, CF_OBJECTS, CF_STORE_META, Db};
use crate::error::StoreError;
use crate::{Event, KeyValue, NodeId};

/// How fresh a read must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consistency {
    /// Reflects every write acknowledged before the read began (read index).
    Linearizable,
    /// Whatever this member has applied; no round trip.
    Local,
}

/// A range over the keys starting with `prefix`.
#[derive(Clone, Debug)]
pub struct RangeRequest {
    pub prefix: String,
    /// Maximum keys returned; 0 means no limit.
    pub limit: usize,
    /// Continue a previous range (its token fixes prefix and revision).
    pub continue_token: Option<String>,
    /// Read at this past revision instead of now.
    pub revision: Option<u64>,
    pub consistency: Consistency,
}

impl RangeRequest {
    pub fn prefix(prefix: impl Into<String>) -> RangeRequest {
        RangeRequest {
            prefix: prefix.into(),
            limit: 0,
            continue_token: None,
            revision: None,
            consistency: Consistency::Linearizable,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct RangeResponse {
    pub kvs: Vec<KeyValue>,
    /// The revision the range was read at.
    pub revision: u64,
    /// Present when more keys remain: pass it back to read the next page at
    /// the same revision.
    pub continue_token: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct ContinueToken {
    revision: u64,
    prefix: String,
    after: String,
}

impl ContinueToken {
    fn encode(&self) -> String {
        let bytes = codec::encode(self);
        let mut s = String::with_capacity(bytes.len() * 2 + 4);
        s.push_str("kc1.");
        for b in bytes {
            s.push_str(&format!("{b:02x}"));
        }
        s
    }

    fn decode(token: &str) -> Result<ContinueToken, StoreError> {
        let bad = |d: &str| StoreError::InvalidContinue(d.to_string());
        let hex = token
            .strip_prefix("kc1.")
            .ok_or_else(|| bad("unknown token format"))?;
        if hex.len() % 2 != 0 {
            return Err(bad("odd length"));
        }
        let bytes = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16))
            .collect::<Result<Vec<u8>, _>>()
            .map_err(|_| bad("not hexadecimal"))?;
        codec::decode(&bytes).map_err(|e| bad(&e))
    }
}

fn meta_u64(
    snap: &rocksdb::Snapshot<'_>,
    db: &Db,
    key: &'static [u8],
    name: &str,
) -> Result<u64, StoreError> {
    match snap
        .get_cf(db.cf(CF_STORE_META), key)
        .map_err(|source| StoreError::Io {
            step: "reading store meta",
            source,
        })? {
        None => Ok(0),
        Some(v) => codec::decode(&v).map_err(|detail| StoreError::Corrupt {
            cf: CF_STORE_META,
            key: name.into(),
            detail,
        }),
    }
}

fn applied_index(snap: &rocksdb::Snapshot<'_>, db: &Db) -> Result<u64, StoreError> {
    match snap
        .get_cf(db.cf(CF_STORE_META), store_meta::APPLIED)
        .map_err(|source| StoreError::Io {
            step: "reading the applied index",
            source,
        })? {
        None => Ok(0),
        Some(v) => codec::decode::<Option<openraft::LogId<NodeId>>>(&v)
            .map(|l| l.map(|l| l.index).unwrap_or(0))
            .map_err(|detail| StoreError::Corrupt {
                cf: CF_STORE_META,
                key: "applied".into(),
                detail,
            }),
    }
}

fn decode_kv(k: &[u8], v: &[u8]) -> Result<KeyValue, StoreError> {
    codec::decode(v).map_err(|detail| StoreError::Corrupt {
        cf: CF_OBJECTS,
        key: String::from_utf8_lossy(k).into_owned(),
        detail,
    })
}

/// The current value of `key` and the revision it was read at.
pub fn get(db: &Db, key: &str) -> Result<(Option<KeyValue>, u64), StoreError> {
    let snap = db.db.snapshot();
    let revision = applied_index(&snap, db)?;
    let kv = snap
        .get_cf(db.cf(CF_OBJECTS), key.as_bytes())
        .map_err(|source| StoreError::Io {
            step: "reading an object",
            source,
        })?
        .map(|v| decode_kv(key.as_bytes(), &v))
        .transpose()?;
    Ok((kv, revision))
}

/// The applied revision and the compacted revision.
pub fn revisions(db: &Db) -> Result<(u64, u64), StoreError> {
    let snap = db.db.snapshot();
    Ok((
        applied_index(&snap, db)?,
        meta_u64(&snap, db, store_meta::COMPACTED, "compacted")?,
    ))
}

/// Run a range request against local state.
pub fn range(db: &Db, req: &RangeRequest) -> Result<RangeResponse, StoreError> {
    let (mut at, after) = match &req.continue_token {
        Some(t) => {
            let tok = ContinueToken::decode(t)?;
            if tok.prefix != req.prefix {
                return Err(StoreError::InvalidContinue(format!(
                    "token was issued for prefix {:?}, not {:?}",
                    tok.prefix, req.prefix
                )));
            }
            (Some(tok.revision), Some(tok.after))
        }
        None => (req.revision, None),
    };
    let snap = db.db.snapshot();
    let applied = applied_index(&snap, db)?;
    let compacted = meta_u64(&snap, db, store_meta::COMPACTED, "compacted")?;
    if let Some(r) = at {
        if r > applied {
            return Err(StoreError::FutureRevision {
                requested: r,
                current: applied,
            });
        }
        if r < compacted {
            return Err(StoreError::Compacted {
                requested: r,
                compacted,
            });
        }
        if r == applied {
            at = None;
        }
    }
    let revision = at.unwrap_or(applied);
    let prefix = req.prefix.as_bytes();
    // First key to read: just after the continuation key, else the prefix itself.
    let start: Vec<u8> = match &after {
        Some(a) => {
            let mut k = a.as_bytes().to_vec();
            k.push(0);
            k
        }
        None => prefix.to_vec(),
    };
    // Keys changed after the read revision, with their value at that revision.
    let mut undo: BTreeMap<String, Option<KeyValue>> = BTreeMap::new();
    if let Some(r) = at {
        let mut ro = ReadOptions::default();
        ro.set_iterate_upper_bound(codec::event_key(applied + 1, 0).to_vec());
        let from = codec::event_key(r + 1, 0);
        for item in snap.iterator_cf_opt(
            db.cf(CF_EVENTS),
            ro,
            IteratorMode::From(&from, Direction::Forward),
        ) {
            let (k, v) = item.map_err(|source| StoreError::Io {
                step: "reading events",
                source,
            })?;
            let ev: Event = codec::decode(&v).map_err(|detail| StoreError::Corrupt {
                cf: CF_EVENTS,
                key: format!("{:?}", codec::parse_event_key(&k)),
                detail,
            })?;
            if ev.key.as_bytes() >= start.as_slice() && ev.key.starts_with(&req.prefix) {
                undo.entry(ev.key.clone()).or_insert(ev.prev);
            }
        }
    }
    let mut ro = ReadOptions::default();
    if let Some(end) = codec::prefix_end(prefix) {
        ro.set_iterate_upper_bound(end);
    }
    let mut current = snap
        .iterator_cf_opt(
            db.cf(CF_OBJECTS),
            ro,
            IteratorMode::From(&start, Direction::Forward),
        )
        .peekable();
    let mut undo_iter = undo.into_iter().peekable();
    let limit = if req.limit == 0 {
        usize::MAX
    } else {
        req.limit
    };
    let mut kvs = Vec::new();
    let mut more = false;
    loop {
        // Merge current keys with keys whose past value differs, in key order.
        let cur_key: Option<Vec<u8>> = match current.peek() {
            Some(Ok((k, _))) => Some(k.to_vec()),
            Some(Err(_)) => {
                let e = current
                    .next()
                    .expect("peeked")
                    .expect_err("peeked an error");
                return Err(StoreError::Io {
                    step: "reading objects",
                    source: e,
                });
            }
            None => None,
        };
        let undo_key = undo_iter.peek().map(|(k, _)| k.as_bytes().to_vec());
        let next: Option<KeyValue> = match (cur_key, undo_key) {
            (None, None) => break,
            (Some(c), u) if u.as_ref().is_none_or(|u| c < *u) => {
                let (k, v) = current.next().expect("peeked").expect("peeked ok");
                Some(decode_kv(&k, &v)?)
            }
            (c, Some(u)) => {
                if c.as_ref() == Some(&u) {
                    current.next();
                }
                undo_iter.next().expect("peeked").1
            }
            (Some(_), None) => unreachable!("a current key with no undo key takes the first arm"),
        };
        if let Some(kv) = next {
            if kvs.len() == limit {
                more = true;
                break;
            }
            kvs.push(kv);
        }
    }
    let continue_token = if more {
        kvs.last().map(|kv| {
            ContinueToken {
                revision,
                prefix: req.prefix.clone(),
                after: kv.key.clone(),
            }
            .encode()
        })
    } else {
        None
    };
    Ok(RangeResponse {
        kvs,
        revision,
        continue_token,
    })
}
