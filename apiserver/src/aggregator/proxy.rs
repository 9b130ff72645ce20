//! One request to an extension server: a TLS connection to its address, the
//! client's request passed on as it came (method, path, query, headers and
//! body) with the front-proxy identity headers in place of anything the
//! client claimed, and the answer handed back as the server gave it, its
//! body streamed (a watch flows through event by event). A server that
//! cannot be reached is a 503 `ServiceUnavailable`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;

use crate::http::auth::UserInfo;

/// How long a connection and its TLS handshake may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub const REMOTE_USER: &str = "x-remote-user";
pub const REMOTE_UID: &str = "x-remote-uid";
pub const REMOTE_GROUP: &str = "x-remote-group";
pub const REMOTE_EXTRA: &str = "x-remote-extra-";

/// Why an extension server gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("dial tcp {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("dial tcp {0}: i/o timeout")]
    Timeout(String),
    #[error("tls: {0}")]
    Tls(std::io::Error),
    #[error("{0}")]
    Http(#[from] hyper::Error),
    #[error("{0}")]
    Request(#[from] axum::http::Error),
}

/// Where one request goes: an address, and how to trust what answers there.
pub struct Upstream {
    pub addr: String,
    pub tls: Arc<rustls::ClientConfig>,
    pub server_name: ServerName<'static>,
}

impl Upstream {
    /// Send `req` (its URI is the path and query) over a new connection;
    /// the response, whose body streams from the connection.
    pub async fn send(&self, req: Request<Full<Bytes>>) -> Result<Response<Incoming>, ProxyError> {
        let connect = async {
            let tcp = tokio::net::TcpStream::connect(&self.addr)
                .await
                .map_err(|source| ProxyError::Connect {
                    addr: self.addr.clone(),
                    source,
                })?;
            let _ = tcp.set_nodelay(true);
            tokio_rustls::TlsConnector::from(self.tls.clone())
                .connect(self.server_name.clone(), tcp)
                .await
                .map_err(ProxyError::Tls)
        };
        let tls = tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .map_err(|_| ProxyError::Timeout(self.addr.clone()))??;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        // Runs until the response body is read to its end or dropped (a
        // client that stops watching closes the upstream connection too).
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "extension server connection ended");
            }
        });
        Ok(sender.send_request(req).await?)
    }
}

/// Headers that describe one connection, not the request: never passed on.
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
    )
}

/// Whether the client's header would claim an identity (or carry a
/// credential meant for this server): dropped before the request goes on.
fn identity_header(name: &HeaderName) -> bool {
    let n = name.as_str();
    n == REMOTE_USER
        || n == REMOTE_UID
        || n == REMOTE_GROUP
        || n.starts_with(REMOTE_EXTRA)
        || n == "authorization"
        || n.starts_with("impersonate-")
}

/// An extra's key as a header name suffix: characters a header name may
/// not hold (and `%`) percent-encoded, as Kubernetes encodes them.
fn escape_key(key: &str) -> String {
    let mut out = String::new();
    for b in key.bytes() {
        let legal = b.is_ascii_alphanumeric() || b"!#$&'*+-.^_`|~".contains(&b);
        if legal {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The headers sent upstream: the client's, less the per-connection and
/// identity ones, plus `user` in the front-proxy headers and `host`.
pub fn forward_headers(client: &HeaderMap, user: &UserInfo, host: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (name, value) in client {
        if !hop_by_hop(name) && !identity_header(name) {
            h.append(name.clone(), value.clone());
        }
    }
    let mut set = |name: &str, value: &str| {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            h.append(n, v);
        }
    };
    set(REMOTE_USER, &user.name);
    if !user.uid.is_empty() {
        set(REMOTE_UID, &user.uid);
    }
    for g in &user.groups {
        set(REMOTE_GROUP, g);
    }
    for (k, values) in &user.extra {
        for v in values {
            set(&format!("{REMOTE_EXTRA}{}", escape_key(k)), v);
        }
    }
    set(header::HOST.as_str(), host);
    h
}

/// The upstream request for `method` on `path_and_query`.
pub fn request(
    method: &Method,
    path_and_query: &str,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Request<Full<Bytes>>, ProxyError> {
    let mut req = Request::builder()
        .method(method.clone())
        .uri(path_and_query)
        .body(Full::new(body))?;
    *req.headers_mut() = headers;
    Ok(req)
}

/// The extension server's response as ours: status, headers (less the
/// per-connection ones) and the body, streamed.
pub fn response(resp: Response<Incoming>) -> Response<Body> {
    let (mut parts, body) = resp.into_parts();
    let names: Vec<HeaderName> = parts
        .headers
        .keys()
        .filter(|n| hop_by_hop(n))
        .cloned()
        .collect();
    for n in names {
        parts.headers.remove(n);
    }
    parts.extensions.insert(Proxied);
    Response::from_parts(parts, Body::new(body))
}

/// Marks a response that came from an extension server: it goes back as
/// it came, never re-encoded (as protobuf) on the way.
#[derive(Clone, Copy, Debug)]
pub struct Proxied;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_cannot_claim_an_identity_and_the_user_is_asserted() {
        let mut client = HeaderMap::new();
        for (k, v) in [
            ("x-remote-user", "root"),
            ("X-Remote-Group", "system:masters"),
            ("x-remote-extra-scopes", "all"),
            ("authorization", "Bearer secret"),
            ("connection", "keep-alive"),
            ("accept", "application/json"),
            ("host", "keel:6443"),
        ] {
            client.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        let user = UserInfo {
            name: "alice".into(),
            uid: "u-1".into(),
            groups: vec!["dev".into(), "system:authenticated".into()],
            extra: [(
                "scopes.example.com/a b".to_string(),
                vec!["x".to_string(), "y".to_string()],
            )]
            .into_iter()
            .collect(),
        };
        let h = forward_headers(&client, &user, "127.0.0.1:9443");
        let all =
            |n: &str| -> Vec<&str> { h.get_all(n).iter().map(|v| v.to_str().unwrap()).collect() };
        assert_eq!(all("x-remote-user"), ["alice"]);
        assert_eq!(all("x-remote-uid"), ["u-1"]);
        assert_eq!(all("x-remote-group"), ["dev", "system:authenticated"]);
        assert_eq!(all("x-remote-extra-scopes.example.com%2fa%20b"), ["x", "y"]);
        assert!(all("x-remote-extra-scopes").is_empty());
        assert!(all("authorization").is_empty() && all("connection").is_empty());
        assert_eq!(all("accept"), ["application/json"]);
        assert_eq!(all("host"), ["127.0.0.1:9443"]);
    }
}
