//! An example extension API server, for the aggregation tests: it serves
//! `wardle.example.com/v1alpha1` ([`flunders`]) over HTTPS, as a real
//! aggregated server would behind Keel:
//!
//! - its serving certificate is made at start, for the names it is given
//!   (`api.wardle.svc`), by a CA of its own whose certificate it writes out,
//!   for the APIService's `caBundle`;
//! - it trusts a request only from the front proxy: a client certificate of
//!   the `requestheader-client-ca-file` CA whose name is one of
//!   `requestheader-allowed-names` (both from the ConfigMap
//!   `kube-system/extension-apiserver-authentication`), and only then reads
//!   the user from `X-Remote-User` and `X-Remote-Group`. Anything else is a
//!   401.
//!
//! The binary `keel-example-apiserver` runs [`run`] and prints
//! `listening on ADDR` once it accepts connections.

pub mod flunders;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// How the server is started.
#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    /// DNS names of the serving certificate (`<service>.<namespace>.svc`).
    pub serving_names: Vec<String>,
    /// Where the serving CA's certificate is written.
    pub serving_ca_out: PathBuf,
    /// The front proxy's CA (`requestheader-client-ca-file`).
    pub client_ca_file: PathBuf,
    /// Names the front proxy's certificate may have (`requestheader-allowed-names`).
    pub allowed_names: Vec<String>,
}

/// The user the front proxy named.
#[derive(Clone, Debug, Default)]
pub struct RemoteUser {
    pub name: String,
    pub groups: Vec<String>,
}

/// The common name of the connection's verified client certificate.
#[derive(Clone, Debug, Default)]
struct Peer(Option<String>);

/// A CA and a serving certificate for `names` signed by it: (CA PEM,
/// certificate PEM, key PEM).
fn serving_certificate(names: &[String]) -> anyhow::Result<(String, String, String)> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name
        .push(DnType::CommonName, "wardle-serving-ca");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.clone().self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate()?;
    let mut leaf = CertificateParams::new(names.to_vec())?;
    leaf.distinguished_name
        .push(DnType::CommonName, "wardle-apiserver");
    let cert = leaf.signed_by(&key, &issuer)?;
    Ok((ca_cert.pem(), cert.pem(), key.serialize_pem()))
}

fn tls_config(cfg: &Config, cert_pem: &str, key_pem: &str) -> anyhow::Result<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    let ca = std::fs::read(&cfg.client_ca_file)
        .with_context(|| format!("reading {}", cfg.client_ca_file.display()))?;
    for c in CertificateDer::pem_slice_iter(&ca) {
        roots.add(c?)?;
    }
    // Requests without a certificate get through the handshake and are
    // refused with a 401, which tells a caller more than a TLS alert.
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider.clone())
            .allow_unauthenticated()
            .build()?;
    let certs = CertificateDer::pem_slice_iter(cert_pem.as_bytes()).collect::<Result<_, _>>()?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)?;
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tls)
}

fn unauthorized(message: &str) -> Response {
    let body = serde_json::json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "reason": "Unauthorized", "message": message, "code": 401});
    (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response()
}

fn values(h: &axum::http::HeaderMap, name: &str) -> Vec<String> {
    h.get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_string))
        .collect()
}

/// The front-proxy check: a certificate with an allowed name, then the user
/// from the identity headers.
async fn authenticate(
    axum::extract::State(allowed): axum::extract::State<Arc<Vec<String>>>,
    mut req: Request,
    next: Next,
) -> Response {
    let peer = req.extensions().get::<Peer>().cloned().unwrap_or_default();
    let Some(cn) = peer.0 else {
        return unauthorized("no front-proxy client certificate");
    };
    if !allowed.is_empty() && !allowed.contains(&cn) {
        return unauthorized(&format!(
            "client certificate {cn:?} is not an allowed front proxy"
        ));
    }
    let Some(name) = values(req.headers(), "x-remote-user").into_iter().next() else {
        return unauthorized("no X-Remote-User");
    };
    let user = RemoteUser {
        name,
        groups: values(req.headers(), "x-remote-group"),
    };
    eprintln!(
        "{} {} as {} {:?}",
        req.method(),
        req.uri(),
        user.name,
        user.groups
    );
    req.extensions_mut().insert(user);
    next.run(req).await
}

fn router(allowed: Vec<String>) -> Router {
    use flunders as f;
    let gv = format!("/apis/{}/{}", f::GROUP, f::VERSION);
    let allowed = Arc::new(allowed);
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(&gv, get(f::resource_list))
        .route(&format!("{gv}/flunders"), get(f::list_all))
        .route(
            &format!("{gv}/namespaces/{{ns}}/flunders"),
            get(f::list).post(f::create),
        )
        .route(
            &format!("{gv}/namespaces/{{ns}}/flunders/{{name}}"),
            get(f::get).delete(f::delete),
        )
        .layer(axum::middleware::from_fn_with_state(allowed, authenticate))
        .with_state(f::Store::default())
}

/// Serve until the process ends; prints `listening on ADDR` when ready.
pub async fn run(cfg: Config) -> anyhow::Result<()> {
    let (ca_pem, cert_pem, key_pem) = serving_certificate(&cfg.serving_names)?;
    std::fs::write(&cfg.serving_ca_out, &ca_pem)
        .with_context(|| format!("writing {}", cfg.serving_ca_out.display()))?;
    let acceptor =
        tokio_rustls::TlsAcceptor::from(Arc::new(tls_config(&cfg, &cert_pem, &key_pem)?));
    let listener = tokio::net::TcpListener::bind(cfg.listen).await?;
    let app = router(cfg.allowed_names.clone());
    println!("listening on {}", listener.local_addr()?);
    loop {
        let (tcp, _) = listener.accept().await?;
        let (acceptor, app) = (acceptor.clone(), app.clone());
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let cn = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| keel_store::grpc::tls::subject(c.as_ref()).ok())
                .map(|(cn, _)| cn);
            let svc =
                hyper_util::service::TowerToHyperService::new(app.layer(axum::Extension(Peer(cn))));
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), svc)
                .await;
        });
    }
}
