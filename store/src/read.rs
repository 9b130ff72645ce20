//! Gets and ranges over the objects column family: at the current revision, or
//! at a past revision inside the retention window by undoing newer events.
//! Every read sees one RocksDB snapshot, so a page is always consistent.

use std::collections::BTreeMap;

use rocksdb::{Direction, IteratorMode, ReadOptions};
use serde::{Deserialize, Serialize};

use crate::codec::{self, store_meta};
use crate::db::{CF_EVENTS, CF_OBJECTS, CF_STORE_META, Db};
use crate::error::StoreError;
use crate::{Event, KeyValue};

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

    /// Parse a token from a client. Anything this store did not issue is
    /// `InvalidContinue`: the hex is read byte by byte (a multi-byte character
    /// is "not hexadecimal", never a split char), and the bincode decode is
    /// bounded, so a forged length cannot make it allocate.
    fn decode(token: &str) -> Result<ContinueToken, StoreError> {
        let bad = |d: &str| StoreError::InvalidContinue(d.to_string());
        let hex = token
            .strip_prefix("kc1.")
            .ok_or_else(|| bad("unknown token format"))?
            .as_bytes();
        if hex.len() % 2 != 0 {
            return Err(bad("odd length"));
        }
        if hex.len() / 2 > MAX_TOKEN_BYTES {
            return Err(bad("longer than any token this store issues"));
        }
        let nibble = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
        let bytes = hex
            .chunks_exact(2)
            .map(|p| Some((nibble(p[0])? << 4) | nibble(p[1])?))
            .collect::<Option<Vec<u8>>>()
            .ok_or_else(|| bad("not hexadecimal"))?;
        let tok: ContinueToken =
            codec::decode_limited(&bytes, codec::MAX_TOKEN_CLAIM).map_err(|e| bad(&e))?;
        if !tok.after.starts_with(&tok.prefix) {
            return Err(bad("its last key is outside its prefix"));
        }
        Ok(tok)
    }
}

/// The longest encoded token this store issues: a prefix and a key, each at
/// most one value limit (keys count against it), and a revision.
const MAX_TOKEN_BYTES: usize = 2 * 1536 * 1024 + 32;

/// Every key of a range, read page by page (all at the first page's
/// revision) and gathered: for callers that need the whole set at once and
/// accept holding it. A `limit` applies to the total.
pub async fn range_all(
    member: &crate::Member,
    mut req: RangeRequest,
) -> Result<RangeResponse, StoreError> {
    let total = req.limit;
    let mut first = member.range(req.clone()).await?;
    while let Some(token) = first.continue_token.take() {
        if total != 0 && first.kvs.len() >= total {
            first.continue_token = Some(token);
            break;
        }
        req.limit = if total == 0 {
            0
        } else {
            total - first.kvs.len()
        };
        req.continue_token = Some(token);
        req.revision = None;
        let page = member.range(req.clone()).await?;
        first.kvs.extend(page.kvs);
        first.continue_token = page.continue_token;
    }
    Ok(first)
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

/// The revision of the last change applied in `snap`: the applied index plus
/// the revisions batch entries took beyond one each (written in the same
/// batch, so the two always agree).
fn applied_index(snap: &rocksdb::Snapshot<'_>, db: &Db) -> Result<u64, StoreError> {
    let index = match snap
        .get_cf(db.cf(CF_STORE_META), store_meta::APPLIED)
        .map_err(|source| StoreError::Io {
            step: "reading the applied index",
            source,
        })? {
        None => 0,
        Some(v) => codec::decode::<Option<crate::LogId>>(&v)
            .map(|l| l.map(|l| l.index).unwrap_or(0))
            .map_err(|detail| StoreError::Corrupt {
                cf: CF_STORE_META,
                key: "applied".into(),
                detail,
            })?,
    };
    Ok(index + meta_u64(snap, db, store_meta::REVISION_OFFSET, "revision_offset")?)
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

/// One retained event as stored: its revision at hand, the event itself
/// decoded only when asked (a scan that looks at revisions only skips it).
pub struct StoredEvent<'a> {
    pub revision: u64,
    key: &'a [u8],
    value: &'a [u8],
}

impl StoredEvent<'_> {
    pub fn decode(&self) -> Result<Event, StoreError> {
        codec::decode_event(self.value).map_err(|detail| StoreError::Corrupt {
            cf: CF_EVENTS,
            key: format!("{:?}", codec::parse_event_key(self.key)),
            detail,
        })
    }
}

/// Visit the retained events, oldest first, while `visit` returns true.
/// `step` names the scan in an I/O error.
pub fn scan_events(
    db: &Db,
    step: &'static str,
    visit: impl FnMut(StoredEvent<'_>) -> Result<bool, StoreError>,
) -> Result<(), StoreError> {
    scan_events_from(db, 0, step, visit)
}

/// [`scan_events`] from revision `from` on (events below a compaction that
/// the archive has not taken yet stay on disk; retention skips them).
pub fn scan_events_from(
    db: &Db,
    from: u64,
    step: &'static str,
    mut visit: impl FnMut(StoredEvent<'_>) -> Result<bool, StoreError>,
) -> Result<(), StoreError> {
    let mut ro = rocksdb::ReadOptions::default();
    ro.set_iterate_lower_bound(codec::event_key(from, 0).to_vec());
    for item in db
        .db
        .iterator_cf_opt(db.cf(CF_EVENTS), ro, IteratorMode::Start)
    {
        let (key, value) = item.map_err(|source| StoreError::Io { step, source })?;
        let revision = codec::parse_event_key(&key).map_or(0, |(rev, _)| rev);
        let event = StoredEvent {
            revision,
            key: &key,
            value: &value,
        };
        if !visit(event)? {
            break;
        }
    }
    Ok(())
}

/// Every retained event, oldest first.
pub fn events(db: &Db) -> Result<Vec<Event>, StoreError> {
    let mut out = Vec::new();
    let from = crate::state_machine::AppliedState::load(db)?.compacted + 1;
    scan_events_from(db, from, "reading events", |e| {
        out.push(e.decode()?);
        Ok(true)
    })?;
    Ok(out)
}

/// A page holds at most about this many bytes of keys, values and per-key
/// overhead, whatever its key limit: a range without a limit (or with a huge
/// one) comes back in pages linked by continuation tokens, so no request
/// builds a whole prefix in memory. A single key above it is still returned.
pub const MAX_PAGE_BYTES: usize = 16 << 20;

/// The memory a returned key costs beyond its key, value and uid bytes.
const KV_OVERHEAD: usize = 96;

fn kv_cost(kv: &KeyValue) -> usize {
    kv.key.len() + kv.value.len() + kv.uid.as_ref().map_or(0, String::len) + KV_OVERHEAD
}

/// The first fields of a stored [`Event`]: enough to skip an event without
/// decoding its values.
#[derive(Deserialize)]
struct EventHead {
    _revision: u64,
    _op_index: u32,
    _kind: crate::EventKind,
    key: String,
}

/// The keys under a prefix that changed after a past read revision, with
/// their value at that revision, from the smallest key at or after the page
/// start. Bounded by [`MAX_PAGE_BYTES`]: once over it, the largest keys are
/// dropped and `horizon` (the smallest dropped key) marks where the set stops
/// being complete, so the page ends before it.
#[derive(Default)]
struct Undo {
    entries: BTreeMap<String, Option<KeyValue>>,
    horizon: Option<String>,
}

impl Undo {
    fn collect(
        snap: &rocksdb::Snapshot<'_>,
        db: &Db,
        r: u64,
        applied: u64,
        prefix: &str,
        start: &[u8],
    ) -> Result<Undo, StoreError> {
        let mut undo = Undo::default();
        let mut bytes = 0usize;
        let cost = |k: &str, prev: &Option<KeyValue>| k.len() + prev.as_ref().map_or(0, kv_cost);
        let mut ro = ReadOptions::default();
        ro.set_iterate_upper_bound(codec::event_key(applied.saturating_add(1), 0).to_vec());
        let from = codec::event_key(r.saturating_add(1), 0);
        for item in snap.iterator_cf_opt(
            db.cf(CF_EVENTS),
            ro,
            IteratorMode::From(&from, Direction::Forward),
        ) {
            let (k, v) = item.map_err(|source| StoreError::Io {
                step: "reading events",
                source,
            })?;
            let corrupt = |detail| StoreError::Corrupt {
                cf: CF_EVENTS,
                key: format!("{:?}", codec::parse_event_key(&k)),
                detail,
            };
            let head: EventHead = codec::decode_prefix(&v).map_err(corrupt)?;
            let key = head.key;
            if key.as_bytes() < start
                || !key.starts_with(prefix)
                || undo.horizon.as_ref().is_some_and(|h| key >= *h)
                || undo.entries.contains_key(&key)
            {
                // Only the first event after `r` holds the value at `r`.
                continue;
            }
            let ev: Event = codec::decode_event(&v).map_err(corrupt)?;
            bytes += cost(&ev.key, &ev.prev);
            undo.entries.insert(ev.key, ev.prev);
            while bytes > MAX_PAGE_BYTES && undo.entries.len() > 1 {
                if let Some((k, prev)) = undo.entries.pop_last() {
                    bytes -= cost(&k, &prev);
                    undo.horizon = Some(k);
                }
            }
        }
        Ok(undo)
    }
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
    let undo = match at {
        Some(r) => Undo::collect(&snap, db, r, applied, &req.prefix, &start)?,
        None => Undo::default(),
    };
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
    let horizon = undo.horizon;
    let mut undo_iter = undo.entries.into_iter().peekable();
    let limit = if req.limit == 0 {
        usize::MAX
    } else {
        req.limit
    };
    let mut kvs = Vec::new();
    let mut page_bytes = 0usize;
    // The last key this page accounted for (returned, or absent at the read
    // revision): the next page starts after it.
    let mut last_key: Option<String> = None;
    let mut more = false;
    loop {
        // Merge current keys with keys whose past value differs, in key order.
        let cur_key: Option<Vec<u8>> = match current.peek() {
            Some(Ok((k, _))) => Some(k.to_vec()),
            Some(Err(e)) => {
                return Err(StoreError::Io {
                    step: "reading objects",
                    source: e.clone(),
                });
            }
            None => None,
        };
        let undo_key = undo_iter.peek().map(|(k, _)| k.as_bytes().to_vec());
        let key = match (&cur_key, &undo_key) {
            (None, None) => break,
            (Some(c), Some(u)) => c.min(u).clone(),
            (Some(k), None) | (None, Some(k)) => k.clone(),
        };
        // Past the horizon the undo set is incomplete: end the page there.
        if horizon
            .as_ref()
            .is_some_and(|h| key.as_slice() >= h.as_bytes())
        {
            more = true;
            break;
        }
        let from_undo = undo_key.as_ref() == Some(&key);
        let next: Option<KeyValue> = if from_undo {
            // The key changed after the read revision: its past value wins.
            // (Taken even if the page ends here: the next page rebuilds it.)
            undo_iter.next().and_then(|(_, prev)| prev)
        } else {
            match current.peek() {
                Some(Ok((k, v))) => Some(decode_kv(k, v)?),
                _ => None,
            }
        };
        if let Some(kv) = &next {
            if kvs.len() == limit || (page_bytes >= MAX_PAGE_BYTES && !kvs.is_empty()) {
                more = true;
                break;
            }
            page_bytes += kv_cost(kv);
        }
        if cur_key.as_ref() == Some(&key) {
            current.next();
        }
        last_key = Some(String::from_utf8_lossy(&key).into_owned());
        kvs.extend(next);
    }
    let continue_token = match (more, last_key) {
        (true, Some(after)) => Some(
            ContinueToken {
                revision,
                prefix: req.prefix.clone(),
                after,
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
