//! A small HTTPS client of the Kubernetes API for the benchmarks: HTTP/2
//! over rustls with the admin client certificate, requests spread over a few
//! multiplexed connections (so 10,000 watches need 100 connections, not
//! 10,000), JSON in and out, and watch streams read line by line.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2::SendRequest;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};

/// Streams one connection carries before the next connection is used.
pub const STREAMS_PER_CONNECTION: usize = 100;

/// Connections to one API server.
#[derive(Clone)]
pub struct Api {
    base: String,
    senders: Arc<Vec<SendRequest<Full<Bytes>>>>,
    next: Arc<AtomicUsize>,
}

async fn connect_one(
    addr: &str,
    tls: Arc<rustls::ClientConfig>,
) -> Result<SendRequest<Full<Bytes>>> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    tcp.set_nodelay(true)?;
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h).to_string();
    let name = rustls::pki_types::ServerName::try_from(host)?;
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .context("TLS handshake")?;
    let (sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .initial_stream_window_size(1 << 20)
        .initial_connection_window_size(8 << 20)
        .handshake(TokioIo::new(stream))
        .await
        .context("HTTP/2 handshake")?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

impl Api {
    /// `connections` HTTP/2 connections to `addr` (host:port).
    pub async fn connect(
        addr: &str,
        tls: Arc<rustls::ClientConfig>,
        connections: usize,
    ) -> Result<Api> {
        let mut senders = Vec::new();
        for _ in 0..connections.max(1) {
            senders.push(connect_one(addr, tls.clone()).await?);
        }
        Ok(Api {
            base: format!("https://{addr}"),
            senders: Arc::new(senders),
            next: Arc::default(),
        })
    }

    fn sender(&self) -> SendRequest<Full<Bytes>> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.senders.len();
        self.senders[i].clone()
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        content_type: &str,
    ) -> Result<hyper::Response<hyper::body::Incoming>> {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("accept", "application/json");
        if body.is_some() {
            req = req.header("content-type", content_type);
        }
        let req = req.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
        let mut sender = self.sender();
        sender.ready().await.context("connection closed")?;
        Ok(sender.send_request(req).await?)
    }

    /// A request; the status and whole body.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Bytes)> {
        let resp = self.send(method, path, body, "application/json").await?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        Ok((status, bytes))
    }

    /// A request with a body of `content_type` (patches); the status and body.
    pub async fn call_with_type(
        &self,
        method: Method,
        path: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> Result<(StatusCode, Bytes)> {
        let resp = self.send(method, path, Some(body), content_type).await?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        Ok((status, bytes))
    }

    /// A request that must succeed (2xx); its body.
    pub async fn ok(&self, method: Method, path: &str, body: Option<Vec<u8>>) -> Result<Bytes> {
        let (status, bytes) = self.call(method.clone(), path, body).await?;
        if !status.is_success() {
            bail!(
                "{method} {path}: {status}: {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
            );
        }
        Ok(bytes)
    }

    /// A watch (or any streaming GET): the response body, read with [`Lines`].
    pub async fn stream(&self, path: &str) -> Result<Lines> {
        let resp = self.send(Method::GET, path, None, "").await?;
        if !resp.status().is_success() {
            bail!("GET {path}: {}", resp.status());
        }
        Ok(Lines {
            body: resp.into_body(),
            buf: Vec::new(),
            start: 0,
        })
    }
}

/// Newline-delimited chunks of a streaming body.
pub struct Lines {
    body: hyper::body::Incoming,
    buf: Vec<u8>,
    /// Where the first unread line starts in `buf`.
    start: usize,
}

impl Lines {
    /// The next line (without its newline); `None` when the stream ends.
    pub async fn next(&mut self) -> Result<Option<Vec<u8>>> {
        self.next_with(<[u8]>::to_vec).await
    }

    /// `f` of the next line (without its newline), read in place: watchers
    /// that only look at a line allocate nothing per event.
    pub async fn next_with<T>(&mut self, f: impl FnOnce(&[u8]) -> T) -> Result<Option<T>> {
        loop {
            if let Some(i) = memchr::memchr(b'\n', &self.buf[self.start..]) {
                let line = self.start..self.start + i;
                self.start += i + 1;
                return Ok(Some(f(&self.buf[line])));
            }
            // Only the unfinished line is kept before more is read.
            self.buf.drain(..self.start);
            self.start = 0;
            match self.body.frame().await {
                None => return Ok(None),
                Some(frame) => {
                    if let Ok(data) = frame?.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
            }
        }
    }
}
