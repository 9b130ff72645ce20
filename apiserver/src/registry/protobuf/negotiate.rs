//! Protobuf responses, negotiated in one place: a layer that, when the
//! request's `Accept` prefers `application/vnd.kubernetes.protobuf` (as
//! client-go sends `application/vnd.kubernetes.protobuf, application/json`),
//! re-encodes each JSON answer of a built-in kind — an object, a List, a
//! Status error — as a `k8s\0` body, and each watch of a built-in kind as
//! length-prefixed `WatchEvent` frames. Everything else (custom resources,
//! Tables, discovery, kinds without a protobuf message) stays JSON, as
//! Kubernetes does.

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use futures::StreamExt;
use serde_json::{Value, json};

use super::{MEDIA_TYPE, encode_object, encode_watch_event, schema};
use crate::response::WatchOf;

/// The content type of a protobuf watch.
pub const WATCH_MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf;stream=watch";

/// Largest JSON answer re-encoded (beyond it the JSON goes out as it is).
const MAX_REENCODE: usize = 512 << 20;

/// Whether `Accept` puts protobuf (not as a Table or other view) first.
pub fn wants_protobuf(headers: &HeaderMap) -> bool {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let mut best: Option<(f32, bool)> = None;
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or("").to_ascii_lowercase();
        let mut q = 1.0f32;
        let mut view = false;
        for p in parts {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            match k.trim() {
                "q" => q = v.trim().parse().unwrap_or(0.0),
                "as" | "g" | "v" => view = true,
                _ => {}
            }
        }
        let proto = match media.as_str() {
            MEDIA_TYPE => !view,
            "application/json" | "application/*" | "*/*" | "application/yaml" => false,
            _ => continue,
        };
        if q > 0.0 && best.is_none_or(|(bq, _)| q > bq) {
            best = Some((q, proto));
        }
    }
    best.is_some_and(|(_, proto)| proto)
}

/// The layer.
pub async fn layer(req: Request, next: Next) -> Response {
    let proto = wants_protobuf(req.headers());
    let resp = next.run(req).await;
    // An extension server's answer goes back as it came.
    if !proto
        || resp
            .extensions()
            .get::<crate::aggregator::proxy::Proxied>()
            .is_some()
    {
        return resp;
    }
    let json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.split(';').next().unwrap_or("").trim() == "application/json");
    if !json {
        return resp;
    }
    if let Some(of) = resp.extensions().get::<WatchOf>().cloned() {
        let known = schema::schema().is_ok_and(|s| s.kind(&of.api_version, &of.kind).is_some());
        return if known { watch(resp) } else { resp };
    }
    let (mut parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_REENCODE).await else {
        // Too large to re-encode, and the body is spent: say so.
        parts.headers.remove(header::CONTENT_LENGTH);
        return Response::from_parts(parts, Body::from("response too large to re-encode"));
    };
    let encoded = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|v| encode_object(&v));
    match encoded {
        Some(pb) => {
            parts.headers.remove(header::CONTENT_LENGTH);
            parts
                .headers
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(MEDIA_TYPE));
            Response::from_parts(parts, Body::from(pb))
        }
        None => Response::from_parts(parts, Body::from(bytes)),
    }
}

/// A JSON watch stream (one event a line) as protobuf frames.
fn watch(resp: Response) -> Response {
    let (mut parts, body) = resp.into_parts();
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(WATCH_MEDIA_TYPE),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    let mut pending: Vec<u8> = Vec::new();
    let frames = body.into_data_stream().map(move |chunk| {
        let chunk = chunk?;
        pending.extend_from_slice(&chunk);
        let mut out = Vec::new();
        while let Some(i) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=i).collect();
            out.extend(frame(&line[..i]));
        }
        Ok::<_, axum::Error>(Bytes::from(out))
    });
    Response::from_parts(parts, Body::from_stream(frames))
}

/// One JSON event line as a frame; an event that has no protobuf form
/// becomes an ERROR event, so the stream stays one format.
fn frame(line: &[u8]) -> Vec<u8> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return Vec::new();
    }
    serde_json::from_slice::<Value>(line)
        .ok()
        .and_then(|ev| encode_watch_event(&ev))
        .or_else(|| {
            encode_watch_event(&json!({
                "type": "ERROR",
                "object": {"kind": "Status", "apiVersion": "v1", "metadata": {},
                    "status": "Failure", "code": 500, "reason": "InternalError",
                    "message": "a watch event could not be encoded as protobuf"},
            }))
        })
        .unwrap_or_default()
}
