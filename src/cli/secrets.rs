//! `keel secrets rotate`: re-encrypt every stored Secret under the current
//! first key of the encryption configuration, online, through the API like
//! any client (the admin kubeconfig). Each Secret is read and written back
//! unchanged with its resourceVersion as precondition; the server writes a
//! value stored under an older key again even though nothing changed
//! (`Storage::stale`), which encrypts it with the first key. Afterwards the
//! old key can be removed from every member's configuration.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use base64::Engine;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

#[derive(clap::Subcommand)]
pub enum SecretsAction {
    /// Re-encrypt every Secret under the current first key (run after every
    /// member runs with the new key listed first), with progress; then the
    /// old key can be removed.
    Rotate {
        /// The admin kubeconfig of any member.
        #[arg(long, default_value = "./keel-data/kubeconfig")]
        kubeconfig: PathBuf,
        /// The kubeconfig context to use (default: its current context).
        #[arg(long)]
        context: Option<String>,
    },
}

pub async fn run(action: SecretsAction) -> Result<()> {
    match action {
        SecretsAction::Rotate {
            kubeconfig,
            context,
        } => rotate(&kubeconfig, context.as_deref()).await,
    }
}

/// Writes retried when another client changed the Secret in between.
const ATTEMPTS: usize = 5;

/// Secrets per page of the list.
const PAGE: usize = 500;

async fn rotate(kubeconfig: &Path, context: Option<&str>) -> Result<()> {
    let api = Api::from_kubeconfig(kubeconfig, context)?;
    let mut secrets = Vec::new();
    let mut cont: Option<String> = None;
    loop {
        let mut path = format!("/api/v1/secrets?limit={PAGE}");
        if let Some(c) = &cont {
            path.push_str(&format!("&continue={}", escape(c)));
        }
        let (status, page) = api.call(Method::GET, &path, None).await?;
        if status != StatusCode::OK {
            bail!("listing secrets: {status}: {}", message(&page));
        }
        secrets.extend(page["items"].as_array().cloned().unwrap_or_default());
        cont = page["metadata"]["continue"]
            .as_str()
            .filter(|c| !c.is_empty())
            .map(str::to_string);
        if cont.is_none() {
            break;
        }
    }
    let total = secrets.len();
    println!("re-encrypting {total} secrets under the current first key");
    let (mut rewritten, mut current, mut gone) = (0, 0, 0);
    for (i, secret) in secrets.into_iter().enumerate() {
        let ns = secret["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let name = secret["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let outcome = rewrite(&api, &ns, &name, secret).await?;
        match outcome {
            Outcome::Rewritten => rewritten += 1,
            Outcome::Current => current += 1,
            Outcome::Gone => gone += 1,
        }
        println!("[{}/{total}] {ns}/{name}: {}", i + 1, outcome.describe());
    }
    println!(
        "done: {rewritten} re-encrypted, {current} already under the first key, {gone} deleted meanwhile"
    );
    Ok(())
}

enum Outcome {
    Rewritten,
    Current,
    Gone,
}

impl Outcome {
    fn describe(&self) -> &'static str {
        match self {
            Outcome::Rewritten => "re-encrypted",
            Outcome::Current => "already under the first key",
            Outcome::Gone => "deleted meanwhile",
        }
    }
}

/// Write `secret` back unchanged; on a conflict read it again and retry.
async fn rewrite(api: &Api, ns: &str, name: &str, mut secret: Value) -> Result<Outcome> {
    let path = format!("/api/v1/namespaces/{}/secrets/{}", escape(ns), escape(name));
    for _ in 0..ATTEMPTS {
        secret["apiVersion"] = json!("v1");
        secret["kind"] = json!("Secret");
        let before = secret["metadata"]["resourceVersion"].clone();
        let (status, body) = api
            .call(Method::PUT, &path, Some(serde_json::to_vec(&secret)?))
            .await?;
        match status {
            StatusCode::OK if body["metadata"]["resourceVersion"] == before => {
                return Ok(Outcome::Current);
            }
            StatusCode::OK => return Ok(Outcome::Rewritten),
            StatusCode::NOT_FOUND => return Ok(Outcome::Gone),
            StatusCode::CONFLICT => {
                let (status, fresh) = api.call(Method::GET, &path, None).await?;
                match status {
                    StatusCode::OK => secret = fresh,
                    StatusCode::NOT_FOUND => return Ok(Outcome::Gone),
                    s => bail!("reading {ns}/{name}: {s}: {}", message(&fresh)),
                }
            }
            s => bail!("rewriting {ns}/{name}: {s}: {}", message(&body)),
        }
    }
    bail!("{ns}/{name} kept changing; run `keel secrets rotate` again")
}

fn message(status: &Value) -> String {
    status["message"]
        .as_str()
        .map_or_else(|| status.to_string(), str::to_string)
}

/// Percent-encode a path segment or query value.
fn escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The API server of a kubeconfig context, over HTTPS with its client
/// certificate; one HTTP/1.1 connection per request keeps it simple.
struct Api {
    host: String,
    port: u16,
    tls: Arc<rustls::ClientConfig>,
}

impl Api {
    fn from_kubeconfig(path: &Path, context: Option<&str>) -> Result<Api> {
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
    async fn call(
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
            .header("user-agent", "keel-secrets-rotate");
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
