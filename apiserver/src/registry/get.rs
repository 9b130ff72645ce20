//! Reads: get one object and list a collection (paged, with selectors,
//! as a List or a Table).

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;

use super::storage::{Consistency, RangeRequest, StorageError};
use super::{Registry, storage_error, table};
use crate::error::ApiError;
use crate::request::{Query, RequestTarget};
use crate::response;
use crate::selector::Selector;

impl Registry {
    pub(super) async fn get(
        &self,
        t: &RequestTarget,
        name: &str,
        q: &Query,
        table: Option<table::TableOpts>,
    ) -> Result<Response, ApiError> {
        let consistency = if q.get("resourceVersion").is_some_and(|rv| rv == "0") {
            Consistency::Local
        } else {
            Consistency::Linearizable
        };
        let min = crate::options::min_resource_version(q)?;
        if q.get("resourceVersionMatch").is_some_and(|m| m == "Exact") {
            return self.get_at(t, name, min, table).await;
        }
        let read = self
            .storage
            .get(&t.rt.key(t.namespace.as_deref(), name), consistency)
            .await;
        let revision = match &read {
            Ok((_, revision)) => Some(*revision),
            Err(StorageError::NotFound { revision, .. }) => *revision,
            Err(_) => None,
        };
        // A linearizable read saw every write: a newer version never existed
        // (checked before a 404, too).
        if let Some((requested, current)) =
            revision.and_then(|r| min.filter(|m| *m > r).map(|m| (m, r)))
        {
            return Err(ApiError::TooLargeResourceVersion { requested, current });
        }
        let (kv, _) = read.map_err(|e| storage_error(t, name, e))?;
        self.one_object(t, &kv, table)
    }

    /// A time-travel read (`resourceVersionMatch=Exact`, a Keel extension
    /// to GET): the object as it was at that revision, inside the retained
    /// window (older is 410 Expired, newer than the member 504/timeout as
    /// for LIST); absent then is 404.
    async fn get_at(
        &self,
        t: &RequestTarget,
        name: &str,
        revision: Option<u64>,
        table: Option<table::TableOpts>,
    ) -> Result<Response, ApiError> {
        let Some(revision) = revision else {
            return Err(ApiError::BadRequest(
                "resourceVersionMatch=Exact needs a non-zero resourceVersion".into(),
            ));
        };
        let key = t.rt.key(t.namespace.as_deref(), name);
        let mut req = RangeRequest::prefix(key.clone());
        req.revision = Some(revision);
        req.consistency = Consistency::Linearizable;
        // The key itself sorts first among the keys it prefixes.
        req.limit = 1;
        let resp = self.storage.list(req).await?;
        let Some(kv) = resp.kvs.into_iter().find(|kv| kv.key == key) else {
            return Err(storage_error(
                t,
                name,
                StorageError::NotFound {
                    key,
                    revision: Some(revision),
                },
            ));
        };
        self.one_object(t, &kv, table)
    }

    /// A GET's answer: the stored object in its served form, or a Table.
    fn one_object(
        &self,
        t: &RequestTarget,
        kv: &super::storage::KeyValue,
        table: Option<table::TableOpts>,
    ) -> Result<Response, ApiError> {
        let obj = t.rt.served(self.decode(kv)?);
        Ok(match table {
            Some(opts) => response::json(
                StatusCode::OK,
                &table::render(&t.rt, &[obj], None, None, opts),
            ),
            None => response::json(StatusCode::OK, &obj),
        })
    }

    pub(super) async fn list(
        &self,
        t: &RequestTarget,
        q: &Query,
        table: Option<table::TableOpts>,
    ) -> Result<Response, ApiError> {
        let selector = Selector::from_query(q)?;
        let limit: usize = match q.get("limit") {
            Some(l) => l
                .parse()
                .map_err(|_| ApiError::BadRequest(format!("invalid limit {l:?}")))?,
            None => 0,
        };
        let rv = q.get("resourceVersion").filter(|s| !s.is_empty());
        let rv_num = crate::options::min_resource_version(q)?;
        let cont = q.get("continue").filter(|s| !s.is_empty()).cloned();
        if cont.is_some() && rv_num.is_some() {
            return Err(ApiError::BadRequest(
                "specifying resource version is not allowed when using continue".into(),
            ));
        }
        let exact = crate::options::list_is_exact(q, limit, rv_num);
        let mut req = RangeRequest::prefix(t.rt.prefix(t.namespace.as_deref()));
        req.consistency = if rv.is_some_and(|r| r == "0") {
            Consistency::Local
        } else {
            Consistency::Linearizable
        };
        req.revision = if exact { rv_num } else { None };
        req.continue_token = cont;
        req.limit = limit;
        // Behind the watch cache, most LISTs stream from memory.
        if table.is_none()
            && let Some(resp) = self.list_from_cache(t, &req, &selector, rv_num).await?
        {
            return Ok(resp);
        }
        // Tables need every object at once; plain lists encode each object
        // as soon as it is read and keep only the bytes, so a LIST of many
        // objects never holds them all as JSON values.
        let mut items = Vec::new();
        let mut encoded: Vec<u8> = Vec::new();
        let mut count = 0usize;
        // Objects that do not decode are left out and named in a Warning, so
        // one bad value does not hide every other object of the kind.
        let mut warnings = Vec::new();
        let continued = req.continue_token.is_some();
        let (revision, token) = loop {
            req.limit = if limit == 0 { 0 } else { limit - count };
            let resp = self.storage.list_matching(req.clone(), selector.equalities()).await.map_err(|e| match e {
                StorageError::Compacted { .. } if continued => ApiError::Expired(
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.".into(),
                ),
                e => e.into(),
            })?;
            if table.is_none() {
                let bytes: usize = resp.kvs.iter().map(|kv| kv.value.len() + 40).sum();
                encoded.reserve(bytes);
            }
            for kv in &resp.kvs {
                if !selector.may_match(&kv.value) {
                    continue;
                }
                let obj = match self.decode(kv) {
                    Ok(obj) => t.rt.served(obj),
                    Err(e) => {
                        warnings.push(format!("skipped: {e}"));
                        continue;
                    }
                };
                if selector.matches(&obj) {
                    count += 1;
                    if table.is_some() {
                        items.push(obj);
                    } else {
                        if count > 1 {
                            encoded.push(b',');
                        }
                        serde_json::to_writer(&mut encoded, &obj)
                            .map_err(|e| ApiError::Internal(format!("encoding a list: {e}")))?;
                    }
                }
            }
            let token = resp.continue_token;
            if token.is_none() || (limit > 0 && count >= limit) {
                break (resp.revision, token);
            }
            // Later pages continue at the first page's revision (the token pins it).
            req.continue_token = token;
            req.revision = None;
        };
        // Not older than the resourceVersion asked for: a linearizable read
        // saw every write, so a newer version never existed.
        if let Some(requested) = rv_num.filter(|r| !exact && *r > revision) {
            return Err(ApiError::TooLargeResourceVersion {
                requested,
                current: revision,
            });
        }
        if let Some(opts) = table {
            return Ok(response::with_warnings(
                response::json(
                    StatusCode::OK,
                    &table::render(&t.rt, &items, Some(revision), token.as_deref(), opts),
                ),
                &warnings,
            ));
        }
        let mut meta = json!({"resourceVersion": revision.to_string()});
        if let Some(tok) = token {
            meta["continue"] = json!(tok);
        }
        let head = json!({"kind": format!("{}List", t.rt.kind), "apiVersion": t.rt.api_version(), "metadata": meta})
            .to_string();
        let mut body = Vec::with_capacity(head.len() + encoded.len() + 16);
        // `head` is an object: reopen it to append the items.
        body.extend_from_slice(&head.as_bytes()[..head.len() - 1]);
        body.extend_from_slice(b",\"items\":[");
        body.extend_from_slice(&encoded);
        drop(encoded);
        body.extend_from_slice(b"]}");
        Ok(response::with_warnings(
            response::json_bytes(StatusCode::OK, body),
            &warnings,
        ))
    }
}
