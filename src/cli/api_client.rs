//! A small HTTPS client of the Kubernetes API for `keel` commands that act
//! as an API client (`keel secrets rotate`, `keel history`): the server,
//! CA and client certificate of a kubeconfig context.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use base64::Engine;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

/// The API server of a kubeconfig context, over HTTPS with its client
/// certificate; one HTTP/1.1 connection per request keeps it simple.
pub struct Api {
    host: String,
    port: u16,
    tls: Arc<rustls::ClientConfig>,
}

impl Api {
    pub fn from_kubeconfig(path: &Path, context: Option<&str>) -> Result<Api> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let doc: Value = serde_saphyr::from_str(&text)
            .with_context(|| format!("{} is not a kubeconfig", path.display()))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let ctx_name = match context {
            Some(c) => c.to_string(),
            None => doc["current-context"]
                .as_str()
                .with_context(|| format!("{}: no current-context", path.display()))?
                .to_string(),
        };
        let named = |list: &str, name: &str, field: &str| -> Result<Value> {
            doc[list]
                .as_array()
                .and_then(|l| l.iter().find(|e| e["name"] == name))
                .map(|e| e[field].clone())
                .with_context(|| format!("{}: no {list} entry named {name:?}", path.display()))
        };
        let ctx = named("contexts", &ctx_name, "context")?;
        let cluster = named(
            "clusters",
            ctx["cluster"].as_str().unwrap_or_default(),
            "cluster",
        )?;
        let user = named("users", ctx["user"].as_str().unwrap_or_default(), "user")?;
        let pem = |obj: &Value, data: &str, file: &str| -> Result<Vec<u8>> {
            if let Some(d) = obj[data].as_str() {
                return base64::engine::general_purpose::STANDARD
                    .decode(d.trim())
                    .with_context(|| format!("{}: {data} is not base64", path.display()));
            }
            let f = obj[file]
                .as_str()
                .with_context(|| format!("{}: neither {data} nor {file} is set", path.display()))?;
            std::fs::read(dir.join(f)).with_context(|| format!("reading {f}"))
        };
        let ca = pem(
            &cluster,
            "certificate-authority-data",
            "certificate-authority",
        )?;
        let cert = pem(&user, "client-certificate-data", "client-certificate")?;
        let key = pem(&user, "client-key-data", "client-key")?;
        let server: hyper::Uri = cluster["server"]
            .as_str()
            .with_context(|| format!("{}: the cluster has no server", path.display()))?
            .parse()
            .context("the cluster's server is not a URL")?;
        if server.scheme_str() != Some("https") {
            bail!("{server}: only https servers are supported");
        }
        Ok(Api {
            host: server
                .host()
                .context("the server URL has no host")?
                .trim_matches(['[', ']'])
                .to_string(),
            port: server.port_u16().unwrap_or(443),
            tls: Arc::new(tls_config(&ca, &cert, &key)?),
        })
    }

    /// One request; the status and the JSON body.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Value)> {
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .with_context(|| format!("connecting to {}:{}", self.host, self.port))?;
        let name = rustls::pki_types::ServerName::try_from(self.host.clone())?;
        let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await
            .context("TLS handshake with the API server")?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", format!("{}:{}", self.host, self.port))
            .header("accept", "application/json")
            .header("user-agent", concat!("keel/", env!("CARGO_PKG_VERSION")));
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
        let resp = sender.send_request(req).await?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| json!({"message": String::from_utf8_lossy(&bytes).into_owned()}));
        Ok((status, value))
    }
}

/// Trust the kubeconfig's CA and present its client certificate.
fn tls_config(ca: &[u8], cert: &[u8], key: &[u8]) -> Result<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca) {
        roots.add(c.context("the certificate authority")?)?;
    }
    let certs = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<Vec<_>, _>>()
        .context("the client certificate")?;
    let key = PrivateKeyDer::from_pem_slice(key).context("the client key")?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)?)
}
