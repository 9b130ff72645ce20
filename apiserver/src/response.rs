//! Building responses: JSON bodies, `Warning` headers and streamed bodies
//! (watches). Errors become responses in one place only, [`crate::error`].

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// `v` as an `application/json` body.
pub fn json(code: StatusCode, v: &Value) -> Response {
    json_bytes(code, v.to_string().into_bytes())
}

/// Already encoded JSON as an `application/json` body.
pub fn json_bytes(code: StatusCode, body: Vec<u8>) -> Response {
    (code, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Add `Warning` headers, as kubectl prints them.
pub fn with_warnings(mut r: Response, warnings: &[String]) -> Response {
    for w in warnings {
        if let Ok(v) = HeaderValue::from_str(&format!("299 - {w:?}")) {
            r.headers_mut().append("warning", v);
        }
    }
    r
}

/// A body of chunks sent through a channel: it ends when every sender is
/// dropped, and the senders see the channel closed when the client goes.
pub fn streamed(rx: mpsc::Receiver<Result<Bytes, std::io::Error>>) -> Body {
    Body::from_stream(ReceiverStream::new(rx))
}

/// Marks a watch whose events carry objects of one kind (not Tables), so
/// that [`crate::registry::protobuf::negotiate`] may send them as protobuf.
#[derive(Clone, Debug)]
pub struct WatchOf {
    pub api_version: String,
    pub kind: String,
}

/// The response of a watch: newline-separated JSON events, never cached.
pub fn watch(body: Body) -> Response {
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-cache, private")
        .body(body)
        .expect("static response parts")
}
