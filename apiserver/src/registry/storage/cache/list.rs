//! A LIST answered from the watch cache as a streamed body: the cache's
//! objects are encoded a chunk at a time as the client reads, so a LIST of
//! 150,000 pods never holds the whole response (or a copy of every value)
//! in memory. Its bytes are those of the registry's own LIST.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::Response;
use futures::StreamExt;
use serde_json::json;

use super::Object;
use crate::error::ApiError;
use crate::registry::Registry;
use crate::registry::storage::RangeRequest;
use crate::registry::{prepared, stored_json};
use crate::request::RequestTarget;
use crate::response;
use crate::selector::Selector;

/// Bytes of encoded objects per chunk of the body (small in unit tests,
/// so that their lists cross chunk boundaries).
const CHUNK: usize = if cfg!(test) { 2048 } else { 256 * 1024 };

impl Registry {
    /// The LIST of `req` from the watch cache, `None` when the cache cannot
    /// answer it (the caller reads the storage). `min` is the
    /// resourceVersion the answer must not be older than.
    pub(in crate::registry) async fn list_from_cache(
        &self,
        t: &RequestTarget,
        req: &RangeRequest,
        selector: &Selector,
        min: Option<u64>,
    ) -> Result<Option<Response>, ApiError> {
        let Some(cache) = &self.cache else {
            return Ok(None);
        };
        let Some((objects, revision)) = cache.objects(req, &selector.equalities()).await? else {
            return Ok(None);
        };
        if let Some(requested) = min.filter(|r| *r > revision) {
            return Err(ApiError::TooLargeResourceVersion {
                requested,
                current: revision,
            });
        }
        // Known before the first byte: the objects that do not decode
        // (and that the selector's prefilter would not skip) are named in a
        // Warning header, as the registry's LIST names them.
        let mut warnings = Vec::new();
        for o in objects.iter().filter(|o| !o.decodes()) {
            if selector.may_match(&o.kv.value)
                && let Err(e) = self.decode(&o.kv)
            {
                warnings.push(format!("skipped: {e}"));
            }
        }
        let meta = json!({"resourceVersion": revision.to_string()});
        let head = json!({"kind": format!("{}List", t.rt.kind), "apiVersion": t.rt.api_version(), "metadata": meta})
            .to_string();
        // `head` is an object: reopen it to append the items.
        let mut open = head.as_bytes()[..head.len() - 1].to_vec();
        open.extend_from_slice(b",\"items\":[");
        let items = Items {
            objects,
            next: 0,
            count: 0,
            selector: Arc::new(selector.clone()),
            rt: t.rt.clone(),
        };
        let body = futures::stream::once(async move { Ok(Bytes::from(open)) })
            .chain(futures::stream::unfold(Some(items), |items| async move {
                let mut items = items?;
                let chunk = items.chunk();
                Some((chunk, (items.next < items.objects.len()).then_some(items)))
            }))
            .chain(futures::stream::once(async {
                Ok(Bytes::from_static(b"]}"))
            }));
        let resp = Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from_stream(body))
            .map_err(|e| ApiError::Internal(format!("building a list response: {e}")))?;
        Ok(Some(response::with_warnings(resp, &warnings)))
    }
}

/// The objects of a streamed LIST still to encode.
struct Items {
    objects: Vec<Arc<Object>>,
    next: usize,
    /// Items encoded so far (a comma goes before every one after the first).
    count: usize,
    selector: Arc<Selector>,
    /// Objects are served in its form ([`crate::kinds::conversion`]).
    rt: Arc<crate::kinds::ResourceType>,
}

impl Items {
    /// The next chunk of encoded, selected items.
    fn chunk(&mut self) -> Result<Bytes, std::io::Error> {
        let mut buf = Vec::with_capacity(CHUNK + 4096);
        // Every object as stored: written from its bytes, not decoded.
        let verbatim = self.selector.is_empty() && !self.rt.converts();
        while self.next < self.objects.len() && buf.len() < CHUNK {
            let o = &self.objects[self.next];
            self.next += 1;
            if !o.decodes() || !self.selector.may_match(&o.kv.value) {
                continue;
            }
            if verbatim {
                let before = buf.len();
                if self.count > 0 {
                    buf.push(b',');
                }
                if stored_json::write_with_resource_version(
                    &o.kv.value,
                    o.kv.mod_revision,
                    &mut buf,
                ) {
                    self.count += 1;
                    continue;
                }
                buf.truncate(before);
            }
            let Ok(obj) = prepared::stored(&o.kv, o.kv.mod_revision) else {
                continue;
            };
            let obj = self.rt.served(obj);
            if !self.selector.matches(&obj) {
                continue;
            }
            if self.count > 0 {
                buf.push(b',');
            }
            self.count += 1;
            serde_json::to_writer(&mut buf, &obj).map_err(std::io::Error::other)?;
        }
        Ok(Bytes::from(buf))
    }
}
