//! The watch verb, and the body of its response: the initial state as ADDED
//! events, read page by page at one pinned revision, then the store's events strictly after that
//! revision (so nothing is missed or sent twice), bookmarks, and the end at
//! the watch's deadline. Memory per watch is one page and a bounded channel,
//! however many objects the watched prefix holds. Behind the watch cache,
//! live events come from the cache's one store watch per server, each
//! encoded once for every watcher ([`WatchCache`]).

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::response::Response;
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::storage::cache::{CachedEvent, Next, Subscription, WatchCache};
use super::storage::{
    Consistency, Event, KeyValue, RangeRequest, RangeResponse, Storage, WatchMessage,
};
use super::{Registry, prepared, table};
use crate::error::ApiError;
use crate::request::{Query, RequestTarget};
use crate::response;
use crate::selector::Selector;

impl Registry {
    /// GET of a collection with `watch=true`.
    pub(super) async fn watch(
        &self,
        t: &RequestTarget,
        q: &Query,
        table: Option<table::TableOpts>,
    ) -> Result<Response, ApiError> {
        let selector = Selector::from_query(q)?;
        let bookmarks = q.get("allowWatchBookmarks").is_some_and(|v| v == "true");
        // Clamped, so the deadline cannot overflow (see watch::MAX_TIMEOUT).
        let deadline =
            tokio::time::Instant::now() + timeout(q.get("timeoutSeconds").map(String::as_str));
        let prefix = t.rt.prefix(t.namespace.as_deref());
        let rv = q
            .get("resourceVersion")
            .filter(|s| !s.is_empty() && *s != "0");
        let explicit_initial = q.get("sendInitialEvents").is_some_and(|s| s == "true");
        let send_initial = q
            .get("sendInitialEvents")
            .map(|s| s == "true")
            .unwrap_or(rv.is_none());
        // Start: an exact revision, or now with the current state as ADDED
        // events. Only the first page of that state is read here (so a store
        // error is still an HTTP status); the stream reads the rest at the
        // same revision.
        let mut initial = None;
        let start = match rv {
            Some(r) if !send_initial => {
                let rv = r
                    .parse::<u64>()
                    .map_err(|_| ApiError::BadRequest(format!("invalid resourceVersion {r:?}")))?;
                // A replica still behind `rv` afterwards refuses the watch
                // as too large (its watch says FutureRevision).
                self.storage.catch_up_to(rv).await;
                rv
            }
            // sendInitialEvents=false: changes from now on, no current state.
            None if !send_initial => self.storage.linearize().await?,
            _ => {
                let mut req = RangeRequest::prefix(prefix.clone());
                req.consistency = Consistency::Linearizable;
                req.limit = INITIAL_PAGE;
                let first = self
                    .storage
                    .list_matching(req, selector.equalities())
                    .await?;
                let revision = first.revision;
                initial = Some(first);
                revision
            }
        };
        let rt = t.rt.clone();
        let line = move |mut ev: Value| -> Bytes {
            if let Some(opts) = table {
                let obj = ev["object"].take();
                ev["object"] = table::render(&rt, &[obj], None, None, opts);
            }
            let mut s = ev.to_string();
            s.push('\n');
            Bytes::from(s)
        };
        let selected = Arc::new(selector);
        let sel = selected.clone();
        let added_line = line.clone();
        let added_rt = t.rt.clone();
        let added = move |kv: &KeyValue| -> Result<Option<Bytes>, ApiError> {
            if !sel.may_match(&kv.value) {
                return Ok(None);
            }
            let obj = prepared::stored(kv, kv.mod_revision).map_err(|e| {
                ApiError::Internal(format!("stored object {} does not decode: {e}", kv.key))
            })?;
            let obj = added_rt.served(obj);
            Ok(sel
                .matches(&obj)
                .then(|| added_line(json!({"type": "ADDED", "object": obj}))))
        };
        // From the watch cache, every watcher sent the same line shares its bytes.
        let cached_selector = selected.clone();
        let everything = cached_selector.is_empty();
        let cached_table_line = line.clone();
        let cached_rt = t.rt.clone();
        let cached = move |e: &CachedEvent| -> Option<Bytes> {
            // Served in another form than stored: converted per watcher
            // (the shared bytes are the stored form).
            if cached_rt.converts() {
                let p = served(e.prepared(), &cached_rt);
                let (kind, obj) = watch_event(&p, &cached_selector)?;
                return Some(if table.is_some() {
                    cached_table_line(json!({"type": kind, "object": obj.value.clone()}))
                } else {
                    prepared::line(kind, &obj.json)
                });
            }
            let l = e.line_for(&cached_selector, everything)?;
            if table.is_some() {
                let obj = e.object(l)?;
                Some(cached_table_line(
                    json!({"type": CachedEvent::kind(l), "object": obj.value.clone()}),
                ))
            } else {
                e.encoded(l)
            }
        };
        let prepared = self.prepared.clone();
        let event_rt = t.rt.clone();
        let event = move |e: &keel_store::Event| -> Option<Bytes> {
            let mut p = prepared.get(e);
            if event_rt.converts() {
                p = Arc::new(served(&p, &event_rt));
            }
            let (kind, obj) = watch_event(&p, &selected)?;
            Some(if table.is_some() {
                line(json!({"type": kind, "object": obj.value.clone()}))
            } else {
                prepared::line(kind, &obj.json)
            })
        };
        let body = Watch {
            storage: self.storage.clone(),
            prefix,
            start,
            initial,
            // With sendInitialEvents=true (watch-list) the initial events end
            // with a bookmark annotated k8s.io/initial-events-end.
            initial_end_bookmark: explicit_initial,
            bookmarks,
            deadline,
            kind: t.rt.kind.clone(),
            api_version: t.rt.api_version(),
            added: Box::new(added),
            event: Box::new(event),
            cache: self.cache.clone(),
            cached: Box::new(cached),
            served: served_while(&self.kinds, &t.rt),
            from_archive: q.get(FROM_ARCHIVE).is_some_and(|v| v == "true"),
        }
        .into_body();
        let mut resp = response::watch(body);
        if table.is_none() {
            resp.extensions_mut().insert(response::WatchOf {
                api_version: t.rt.api_version(),
                kind: t.rt.kind.clone(),
            });
        }
        Ok(resp)
    }
}

/// For a custom resource, whether its kind is still served: its watches end
/// when its CRD stops being served, as kube-apiserver ends them when it
/// tears down the CRD's storage. Built-in kinds are always served.
fn served_while(
    kinds: &crate::kinds::Kinds,
    rt: &Arc<crate::kinds::ResourceType>,
) -> Option<Box<StillServed>> {
    rt.custom.as_ref()?;
    let (kinds, rt) = (kinds.clone(), rt.clone());
    Some(Box::new(move || {
        kinds.find(&rt.group, &rt.version, &rt.plural).is_some()
    }))
}

/// How often a custom resource's watch checks that its kind is still served.
const SERVED_CHECK: Duration = Duration::from_secs(1);

/// A prepared store event in the form `rt` serves ([`crate::kinds::conversion`]).
fn served(p: &prepared::Prepared, rt: &crate::kinds::ResourceType) -> prepared::Prepared {
    let convert = |o: &Option<prepared::Object>| {
        o.as_ref().map(|o| {
            let value = rt.served(o.value.clone());
            let json = value.to_string();
            prepared::Object { value, json }
        })
    };
    prepared::Prepared {
        new: convert(&p.new),
        old: convert(&p.old),
    }
}

/// The type of watch event a prepared store event is for this watcher,
/// with the object to send, or `None` when neither version matches.
fn watch_event<'a>(
    p: &'a prepared::Prepared,
    selector: &Selector,
) -> Option<(&'static str, &'a prepared::Object)> {
    let new_match = p.new.as_ref().is_some_and(|o| selector.matches(&o.value));
    let old_match = p.old.as_ref().is_some_and(|o| selector.matches(&o.value));
    // An object leaving the selection is DELETED for this watcher, entering it ADDED.
    match (&p.new, new_match, old_match) {
        (Some(o), true, true) => Some(("MODIFIED", o)),
        (Some(o), true, false) => Some(("ADDED", o)),
        (Some(o), false, true) => Some(("DELETED", o)),
        (None, _, true) => p.old.as_ref().map(|o| ("DELETED", o)),
        _ => None,
    }
}

/// Objects read per page of a watch's initial state.
pub const INITIAL_PAGE: usize = 500;

/// How long a watch lasts without `timeoutSeconds` (or with 0), as
/// kube-apiserver's default minimum request timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

/// The longest a watch lasts: a larger `timeoutSeconds` is clamped to this
/// (a deadline of `now + u64::MAX` seconds does not exist). Clients re-watch
/// from their last resourceVersion when a watch ends, so a day costs nothing.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// The duration of a watch from its `timeoutSeconds` parameter: unset, 0 or
/// not a number gives the default, and anything above the cap the cap.
pub fn timeout(param: Option<&str>) -> Duration {
    match param.and_then(|s| s.parse::<u64>().ok()) {
        None | Some(0) => DEFAULT_TIMEOUT,
        Some(secs) => Duration::from_secs(secs).min(MAX_TIMEOUT),
    }
}

/// The JSON line of an ADDED event for a stored object, `None` when the
/// watch's selectors exclude it.
pub type AddedLine = dyn Fn(&KeyValue) -> Result<Option<Bytes>, ApiError> + Send + Sync;
/// The JSON line of a store event for this watcher, `None` when neither the
/// object nor its previous version is selected.
pub type EventLine = dyn Fn(&Event) -> Option<Bytes> + Send + Sync;
/// [`EventLine`] for an event from the watch cache, with shared bytes.
pub type CachedLine = dyn Fn(&CachedEvent) -> Option<Bytes> + Send + Sync;

/// Events (and bookmarks) a watcher from the cache is sent in one write
/// when it has that many pending.
const MAX_BATCH: usize = 256;

/// One watch, ready to stream.
pub struct Watch {
    pub storage: Arc<dyn Storage>,
    pub prefix: String,
    /// Live events strictly after this revision are sent.
    pub start: u64,
    /// The first page of the initial state, read at `start`; its continue
    /// token (pinned to `start`) reads the rest.
    pub initial: Option<RangeResponse>,
    /// After the initial state, a bookmark annotated
    /// `k8s.io/initial-events-end` (watch-list, `sendInitialEvents=true`).
    pub initial_end_bookmark: bool,
    /// Whether progress notifications become BOOKMARK events.
    pub bookmarks: bool,
    pub deadline: tokio::time::Instant,
    /// `kind` and `apiVersion` of bookmark objects.
    pub kind: String,
    pub api_version: String,
    pub added: Box<AddedLine>,
    pub event: Box<EventLine>,
    /// Where live events come from when it can serve them (else `storage`).
    pub cache: Option<Arc<WatchCache>>,
    pub cached: Box<CachedLine>,
    /// `Some` for a kind that may stop being served (a custom resource):
    /// the watch ends once it returns false.
    pub served: Option<Box<StillServed>>,
    /// `keelFromArchive=true` (a Keel opt-in): below the retained window,
    /// the member's event archive replays instead of a 410.
    pub from_archive: bool,
}

/// The query parameter of the opt-in (docs/DR.md, "Watching from the archive").
pub const FROM_ARCHIVE: &str = "keelFromArchive";

/// Whether a watch's kind is still served.
pub type StillServed = dyn Fn() -> bool + Send + Sync;

type Sink = mpsc::Sender<Result<Bytes, std::io::Error>>;

fn json_line(v: &Value) -> Bytes {
    let mut s = v.to_string();
    s.push('\n');
    Bytes::from(s)
}

impl Watch {
    /// Start streaming; the stream ends at the deadline, on an error (sent
    /// as an ERROR event), or when the client goes away.
    pub fn into_body(mut self) -> Body {
        let (tx, rx) = mpsc::channel(256);
        let deadline = self.deadline;
        let served = self.served.take();
        let prefix = self.prefix.clone();
        tokio::spawn(async move {
            let unserved = async {
                let Some(still) = served else {
                    return std::future::pending().await;
                };
                let mut tick = tokio::time::interval(SERVED_CHECK);
                loop {
                    tick.tick().await;
                    if !still() {
                        return;
                    }
                }
            };
            tokio::select! {
                _ = tokio::time::timeout_at(deadline, self.run(&tx)) => {}
                () = unserved => {
                    tracing::debug!("watch of {prefix} ended: its kind is no longer served");
                }
            }
        });
        response::streamed(rx)
    }

    fn bookmark(&self, revision: u64, initial_end: bool) -> Bytes {
        let mut meta = json!({"resourceVersion": revision.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        json_line(&json!({"type": "BOOKMARK", "object": {
            "kind": self.kind, "apiVersion": self.api_version, "metadata": meta,
        }}))
    }

    async fn run(mut self, tx: &Sink) {
        let send = |b: Bytes| async move { tx.send(Ok(b)).await.is_ok() };
        let error = |e: ApiError| json_line(&json!({"type": "ERROR", "object": e.status()}));
        if let Some(first) = self.initial.take() {
            if let Err(e) = self.send_initial(first, tx).await {
                let _ = send(error(e)).await;
                return;
            }
            if tx.is_closed() {
                return;
            }
            if self.initial_end_bookmark && !send(self.bookmark(self.start, true)).await {
                return;
            }
        }
        if let Some(cache) = &self.cache
            && let Some(sub) = cache.subscribe(&self.prefix, self.start).await
        {
            return self.fan_out(sub, tx).await;
        }
        // What the cache cannot serve is asked of the storage under it
        // directly (the cache would only ask again).
        let storage = self.cache.as_ref().map_or(&self.storage, |c| c.inner());
        // A watch that starts at a revision just read may briefly find it
        // "in the future": the storage's watch retries for a moment.
        let stream = if self.from_archive {
            storage.watch_archived(&self.prefix, self.start).await
        } else {
            storage.watch(&self.prefix, self.start).await
        };
        let mut stream = match stream {
            Ok(s) => s,
            Err(e) => {
                let _ = send(error(e.into())).await;
                return;
            }
        };
        loop {
            let msg = tokio::select! {
                m = stream.next() => m,
                _ = tx.closed() => return,
            };
            let lines = match msg {
                None => return,
                Some(Err(e)) => {
                    let _ = send(error(e.into())).await;
                    return;
                }
                Some(Ok(WatchMessage::Progress { revision })) if self.bookmarks => {
                    vec![self.bookmark(revision, false)]
                }
                Some(Ok(WatchMessage::Progress { .. })) => vec![],
                Some(Ok(WatchMessage::Events { events, .. })) => {
                    events.iter().filter_map(|e| (self.event)(e)).collect()
                }
            };
            for l in lines {
                if !send(l).await {
                    return;
                }
            }
        }
    }

    /// Live events from the watch cache: everything pending is sent as one
    /// write. The watch ends silently when the cache cuts it off (too slow)
    /// or re-lists, as kube-apiserver's do: the client watches again from
    /// the last revision it saw.
    async fn fan_out(&self, mut sub: Subscription, tx: &Sink) {
        loop {
            let first = tokio::select! {
                n = sub.next() => n,
                _ = tx.closed() => return,
            };
            let mut lines = Vec::new();
            let mut next = Some(first);
            let mut taken = 0;
            let mut end = false;
            while let Some(n) = next {
                match n {
                    Next::Event(e) => lines.extend((self.cached)(&e)),
                    Next::Progress(r) if self.bookmarks => lines.push(self.bookmark(r, false)),
                    Next::Progress(_) => {}
                    Next::End(why) => {
                        tracing::debug!("watch of {} ended: {why}", self.prefix);
                        end = true;
                        break;
                    }
                }
                taken += 1;
                next = (taken < MAX_BATCH).then(|| sub.try_next()).flatten();
            }
            let chunk = match lines.len() {
                0 => None,
                1 => lines.pop(),
                _ => {
                    let mut buf = Vec::with_capacity(lines.iter().map(Bytes::len).sum());
                    for l in &lines {
                        buf.extend_from_slice(l);
                    }
                    Some(Bytes::from(buf))
                }
            };
            if let Some(c) = chunk
                && tx.send(Ok(c)).await.is_err()
            {
                return;
            }
            if end {
                return;
            }
        }
    }

    /// Send the initial state as ADDED events, one page in memory at a time.
    /// Every page after the first continues at the first page's revision,
    /// so the state is one snapshot even while writes go on.
    async fn send_initial(&self, first: RangeResponse, tx: &Sink) -> Result<(), ApiError> {
        let mut page = first;
        loop {
            for kv in &page.kvs {
                if let Some(line) = (self.added)(kv)?
                    && tx.send(Ok(line)).await.is_err()
                {
                    // The client is gone: nothing more to send.
                    return Ok(());
                }
            }
            let Some(token) = page.continue_token.take() else {
                return Ok(());
            };
            let mut req = RangeRequest::prefix(self.prefix.clone());
            req.limit = INITIAL_PAGE;
            req.continue_token = Some(token);
            page = self.storage.list(req).await?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_are_clamped_and_never_overflow_a_deadline() {
        assert_eq!(timeout(None), DEFAULT_TIMEOUT);
        assert_eq!(timeout(Some("0")), DEFAULT_TIMEOUT);
        assert_eq!(timeout(Some("-1")), DEFAULT_TIMEOUT);
        assert_eq!(timeout(Some("7")), Duration::from_secs(7));
        for huge in ["18446744073709551615", "86401", "9223372036854775808"] {
            let t = timeout(Some(huge));
            assert_eq!(t, MAX_TIMEOUT, "{huge}");
            // What the old code did with the raw value, and panicked on.
            let _ = tokio::time::Instant::now() + t;
            let _ = std::time::Instant::now() + t;
        }
    }
}
