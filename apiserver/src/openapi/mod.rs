//! OpenAPI: `/openapi/v3` lists one document per group-version, each served
//! at `/openapi/v3/<path>?hash=…`, and `/openapi/v2` is one Swagger 2.0
//! document, as JSON or as the gnostic protobuf kubectl ≤1.31 reads
//! ([`crate::gnostic`]).
//!
//! The built-in kinds' documents are built once ([`builtin`]). Each
//! established CustomResourceDefinition adds its served versions ([`crd`],
//! [`schema`]): the stored CRDs are read at every request, and the
//! documents are built again only when they changed (the cache is keyed by
//! each CRD's key, revision and bytes), so a change is visible at the next
//! request, with no watch to fall behind.
//!
//! Caching follows kube-apiserver, since kubectl keeps these documents in
//! its disk cache: every answer has an ETag (`If-None-Match` gets 304); a
//! document's URL carries its hash, so a changed CRD changes the URL in the
//! index; a request with the current hash may be cached for good, and one
//! with a stale hash is redirected to the current URL.

mod builtin;
mod crd;
mod schema;
mod v2;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::error::ApiError;
use crate::registry::Registry;
use crate::registry::storage::{KeyValue, RangeRequest};

/// A served document: its bytes and their hash (the ETag and `?hash=`).
#[derive(Debug)]
pub struct Doc {
    body: Bytes,
    hash: String,
}

impl Doc {
    fn new(body: Vec<u8>) -> Doc {
        let hash = hash(&body);
        Doc {
            body: body.into(),
            hash,
        }
    }

    fn json(v: &Value) -> Doc {
        Doc::new(v.to_string().into_bytes())
    }
}

/// A stable hash of a document's bytes (FNV-1a), for its ETag and URL.
fn hash(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016X}")
}

/// What identifies the stored CRDs a [`Published`] was built from: each
/// one's key, revision and a hash of its bytes (the bytes too, since two
/// servers in one process may hold different CRDs at equal revisions).
type Fingerprint = Vec<(String, u64, String)>;

/// The documents served for one set of stored CRDs.
struct Published {
    crds: Fingerprint,
    /// v3 documents by group-version path (`api/v1`, `apis/apps/v1`).
    v3: BTreeMap<String, Arc<Doc>>,
    /// The `/openapi/v3` index of [`Published::v3`].
    index: Doc,
    /// The custom resource versions, for the v2 document.
    custom: Vec<crd::CrVersion>,
    /// `/openapi/v2` as JSON and as protobuf, built at its first request.
    v2: OnceLock<Arc<(Doc, Doc)>>,
}

/// The built-in kinds' v3 documents, serialized once.
fn builtin_v3() -> &'static BTreeMap<String, Arc<Doc>> {
    static DOCS: OnceLock<BTreeMap<String, Arc<Doc>>> = OnceLock::new();
    DOCS.get_or_init(|| {
        builtin::documents()
            .iter()
            .map(|(p, d)| (p.clone(), Arc::new(Doc::json(d))))
            .collect()
    })
}

/// The built-in kinds' v2 document, serialized and encoded once.
fn builtin_v2() -> Arc<(Doc, Doc)> {
    static DOC: OnceLock<Arc<(Doc, Doc)>> = OnceLock::new();
    DOC.get_or_init(|| Arc::new(encode_v2(builtin::swagger())))
        .clone()
}

fn encode_v2(doc: &Value) -> (Doc, Doc) {
    (Doc::json(doc), Doc::new(crate::gnostic::encode(doc)))
}

/// The `/openapi/v3` index: each document's URL with its hash.
fn index_of(docs: &BTreeMap<String, Arc<Doc>>) -> Doc {
    let paths: Map<String, Value> = docs
        .iter()
        .map(|(p, doc)| {
            let url = format!("/openapi/v3/{p}?hash={}", doc.hash);
            (p.clone(), json!({"serverRelativeURL": url}))
        })
        .collect();
    Doc::json(&json!({"paths": paths}))
}

impl Published {
    /// The documents with the served versions of `crds` (stored objects).
    fn build(fingerprint: Fingerprint, crds: &[KeyValue]) -> Published {
        let custom: Vec<crd::CrVersion> = crds
            .iter()
            .filter_map(|kv| match serde_json::from_slice::<Value>(&kv.value) {
                Ok(v) => Some(v),
                Err(e) => {
                    tracing::warn!(key = %kv.key, error = %e, "a stored CRD does not decode; not published");
                    None
                }
            })
            .flat_map(|crd| crd::versions(&crd))
            .collect();
        let mut v3 = builtin_v3().clone();
        let mut extended: BTreeMap<&str, Value> = BTreeMap::new();
        for cr in &custom {
            let doc = extended.entry(cr.gv_path.as_str()).or_insert_with(|| {
                builtin::documents()
                    .get(&cr.gv_path)
                    .cloned()
                    .unwrap_or_else(|| {
                        json!({
                            "openapi": "3.0.0",
                            "info": {"title": "Kubernetes CRD Swagger", "version": "v0.1.0"},
                            "paths": {},
                            "components": {"schemas": {}},
                        })
                    })
            });
            merge(&mut doc["paths"], &cr.v3_paths);
            merge(&mut doc["components"]["schemas"], &cr.v3_schemas);
        }
        for (path, doc) in extended {
            v3.insert(path.to_string(), Arc::new(Doc::json(&doc)));
        }
        Published {
            crds: fingerprint,
            index: index_of(&v3),
            v3,
            custom,
            v2: OnceLock::new(),
        }
    }

    /// `/openapi/v2`: the built-in document with the custom resources'
    /// definitions and paths.
    fn v2(&self) -> Arc<(Doc, Doc)> {
        if self.custom.is_empty() {
            return builtin_v2();
        }
        self.v2
            .get_or_init(|| {
                let mut doc = builtin::swagger().clone();
                for cr in &self.custom {
                    merge(&mut doc["definitions"], &cr.v2_definitions);
                    merge(&mut doc["paths"], &cr.v2_paths);
                }
                Arc::new(encode_v2(&doc))
            })
            .clone()
    }
}

/// Add `entries` to the object `into`. A custom resource's own kinds and
/// paths replace what was there; the Kubernetes types they share
/// (ObjectMeta, …) are already there in the same form.
fn merge(into: &mut Value, entries: &Map<String, Value>) {
    if let Value::Object(m) = into {
        for (k, v) in entries {
            m.insert(k.clone(), v.clone());
        }
    }
}

/// Every stored CustomResourceDefinition, read now (linearizably).
async fn stored_crds(registry: &Registry) -> Result<Vec<KeyValue>, ApiError> {
    let Some(t) = registry
        .kinds
        .find("apiextensions.k8s.io", "v1", "customresourcedefinitions")
    else {
        return Ok(vec![]);
    };
    let mut req = RangeRequest::prefix(t.prefix(None));
    let mut kvs = Vec::new();
    loop {
        let page = registry.storage.list(req.clone()).await?;
        kvs.extend(page.kvs);
        match page.continue_token {
            Some(token) => req.continue_token = Some(token),
            None => return Ok(kvs),
        }
    }
}

/// The documents for the CRDs stored now: the last ones built when the
/// CRDs are the same, else built again.
async fn published(registry: &Registry) -> Result<Arc<Published>, ApiError> {
    // One slot: the server serves one set of CRDs at a time.
    static LAST: Mutex<Option<Arc<Published>>> = Mutex::new(None);
    let crds = stored_crds(registry).await?;
    let fingerprint: Fingerprint = crds
        .iter()
        .map(|kv| (kv.key.clone(), kv.mod_revision, hash(&kv.value)))
        .collect();
    if let Some(p) = LAST.lock().unwrap_or_else(PoisonError::into_inner).as_ref()
        && p.crds == fingerprint
    {
        return Ok(p.clone());
    }
    let p = Arc::new(Published::build(fingerprint, &crds));
    *LAST.lock().unwrap_or_else(PoisonError::into_inner) = Some(p.clone());
    Ok(p)
}

/// `doc` as the answer to a request with `headers`: 304 when the client
/// holds it already (`If-None-Match`), else the bytes with their ETag.
/// `immutable`: asked for by its hash, so it may be cached for good.
fn respond(
    doc: &Doc,
    content_type: &'static str,
    headers: &HeaderMap,
    immutable: bool,
) -> Response {
    let etag = format!("\"{}\"", doc.hash);
    let held = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == etag || t == "*");
    let mut r = if held {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, content_type)], doc.body.clone()).into_response()
    };
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    // The content depends on Accept (JSON or protobuf).
    h.insert(header::VARY, HeaderValue::from_static("Accept"));
    if immutable {
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, immutable, max-age=31536000"),
        );
    }
    r
}

/// `GET /openapi/v3`: the index.
pub async fn v3_index(registry: &Registry, headers: &HeaderMap) -> Result<Response, ApiError> {
    let p = published(registry).await?;
    Ok(respond(&p.index, "application/json", headers, false))
}

/// `GET /openapi/v3/<gv>[?hash=…]`: one group-version's document. A hash
/// that is not the document's current one (the index a client holds is
/// older than a CRD change) is redirected to the current URL.
pub async fn v3_document(
    registry: &Registry,
    gv: &str,
    hash: Option<&str>,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let p = published(registry).await?;
    let doc = p.v3.get(gv).ok_or(ApiError::NoRoute)?;
    match hash {
        Some(h) if h != doc.hash => {
            let location = format!("/openapi/v3/{gv}?hash={}", doc.hash);
            let mut r = StatusCode::MOVED_PERMANENTLY.into_response();
            if let Ok(v) = HeaderValue::from_str(&location) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            Ok(r)
        }
        Some(_) => Ok(respond(doc, "application/json", headers, true)),
        None => Ok(respond(doc, "application/json", headers, false)),
    }
}

/// `GET /openapi/v2`: as the gnostic protobuf when Accept asks for it (with
/// the Content-Type Go's mime parser reads: kubectl's `@` form is not one),
/// else as JSON.
pub async fn v2_document(registry: &Registry, headers: &HeaderMap) -> Result<Response, ApiError> {
    let protobuf = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("protobuf"));
    let p = published(registry).await?;
    let docs = p.v2();
    Ok(if protobuf {
        respond(
            &docs.1,
            "application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
            headers,
            false,
        )
    } else {
        respond(&docs.0, "application/json", headers, false)
    })
}

#[cfg(test)]
mod tests;
