//! The API server's certificates: a cluster CA, a serving certificate whose
//! SANs cover the addresses the server answers on, and an admin client
//! certificate; created on first start under `<data-dir>/pki` and reused
//! after. Also writes the kubeconfig that points kubectl at the server.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::error::ServerError;

/// PEM material of the cluster.
#[derive(Clone)]
pub struct Pki {
    pub dir: PathBuf,
    pub ca_pem: String,
    pub server_cert_pem: String,
    pub server_key_pem: String,
    pub admin_cert_pem: String,
    pub admin_key_pem: String,
}

const CA_CN: &str = "keel-ca";

fn ca_params() -> Result<CertificateParams, rcgen::Error> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.distinguished_name.push(DnType::CommonName, CA_CN);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.not_before = rcgen::date_time_ymd(2020, 1, 1);
    p.not_after = rcgen::date_time_ymd(2099, 12, 31);
    Ok(p)
}

fn io_err(path: &Path, e: std::io::Error) -> ServerError {
    ServerError::Pki(format!("{}: {e}", path.display()))
}

fn tls_err(what: &str, e: rcgen::Error) -> ServerError {
    ServerError::Pki(format!("{what}: {e}"))
}

fn read(path: &Path) -> Result<Option<String>, ServerError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(path, e)),
    }
}

fn write(path: &Path, contents: &str, secret: bool) -> Result<(), ServerError> {
    std::fs::write(path, contents).map_err(|e| io_err(path, e))?;
    if secret {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| io_err(path, e))?;
    }
    Ok(())
}

/// A leaf certificate signed by the CA.
fn leaf(
    issuer: &Issuer<'_, KeyPair>,
    cn: &str,
    org: Option<&str>,
    sans: Vec<String>,
    usage: ExtendedKeyUsagePurpose,
) -> Result<(String, String), ServerError> {
    let mut p = CertificateParams::new(sans).map_err(|e| tls_err("certificate names", e))?;
    p.distinguished_name.push(DnType::CommonName, cn);
    if let Some(o) = org {
        p.distinguished_name.push(DnType::OrganizationName, o);
    }
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    p.extended_key_usages = vec![usage];
    p.not_before = rcgen::date_time_ymd(2020, 1, 1);
    p.not_after = rcgen::date_time_ymd(2099, 12, 31);
    let key = KeyPair::generate().map_err(|e| tls_err("generating a key", e))?;
    let cert = p
        .signed_by(&key, issuer)
        .map_err(|e| tls_err("signing a certificate", e))?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Names a serving certificate must carry for these addresses.
pub fn serving_names(addrs: &[String]) -> Vec<String> {
    let mut names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "keel".to_string(),
    ];
    for a in addrs {
        if !names.contains(a) {
            names.push(a.clone());
        }
    }
    names
}

impl Pki {
    /// Load the PKI under `dir`, creating what is missing. The serving
    /// certificate is re-issued when it lacks one of `sans`.
    pub fn load_or_create(dir: &Path, sans: &[String]) -> Result<Pki, ServerError> {
        std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        let ca_crt = dir.join("ca.crt");
        let ca_key = dir.join("ca.key");
        let (ca_pem, ca_key_pem) = match (read(&ca_crt)?, read(&ca_key)?) {
            (Some(c), Some(k)) => (c, k),
            _ => {
                let key = KeyPair::generate().map_err(|e| tls_err("generating the CA key", e))?;
                let cert = ca_params()
                    .and_then(|p| p.self_signed(&key))
                    .map_err(|e| tls_err("creating the CA", e))?;
                write(&ca_key, &key.serialize_pem(), true)?;
                write(&ca_crt, &cert.pem(), false)?;
                tracing::info!(dir = %dir.display(), "created the cluster CA");
                (cert.pem(), key.serialize_pem())
            }
        };
        let key = KeyPair::from_pem(&ca_key_pem).map_err(|e| tls_err("reading ca.key", e))?;
        // The issuer is the CA's subject and key; rebuilding its parameters
        // avoids parsing the certificate back.
        let issuer = Issuer::new(ca_params().map_err(|e| tls_err("CA parameters", e))?, key);
        let names_file = dir.join("server.names");
        let have_names: Vec<String> = read(&names_file)?
            .map(|s| s.lines().map(str::to_string).collect())
            .unwrap_or_default();
        let server_crt = dir.join("server.crt");
        let server_key = dir.join("server.key");
        let covered = sans.iter().all(|s| have_names.contains(s));
        let (server_cert_pem, server_key_pem) = match (read(&server_crt)?, read(&server_key)?) {
            (Some(c), Some(k)) if covered => (c, k),
            _ => {
                let mut names = have_names.clone();
                for s in sans {
                    if !names.contains(s) {
                        names.push(s.clone());
                    }
                }
                let (c, k) = leaf(
                    &issuer,
                    "keel-apiserver",
                    None,
                    names.clone(),
                    ExtendedKeyUsagePurpose::ServerAuth,
                )?;
                write(&server_key, &k, true)?;
                write(&server_crt, &c, false)?;
                write(&names_file, &names.join("\n"), false)?;
                tracing::info!(names = ?names, "issued the serving certificate");
                (c, k)
            }
        };
        let admin_crt = dir.join("admin.crt");
        let admin_key = dir.join("admin.key");
        let (admin_cert_pem, admin_key_pem) = match (read(&admin_crt)?, read(&admin_key)?) {
            (Some(c), Some(k)) => (c, k),
            _ => {
                let (c, k) = leaf(
                    &issuer,
                    "admin",
                    Some("system:masters"),
                    vec![],
                    ExtendedKeyUsagePurpose::ClientAuth,
                )?;
                write(&admin_key, &k, true)?;
                write(&admin_crt, &c, false)?;
                (c, k)
            }
        };
        Ok(Pki {
            dir: dir.to_path_buf(),
            ca_pem,
            server_cert_pem,
            server_key_pem,
            admin_cert_pem,
            admin_key_pem,
        })
    }

    /// A kubeconfig for the admin user against `server` (https://host:port).
    pub fn kubeconfig(&self, server: &str) -> String {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: keel\n  cluster:\n    server: {server}\n    certificate-authority-data: {}\nusers:\n- name: admin\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\ncontexts:\n- name: keel\n  context:\n    cluster: keel\n    user: admin\n    namespace: default\ncurrent-context: keel\n",
            b64(&self.ca_pem),
            b64(&self.admin_cert_pem),
            b64(&self.admin_key_pem)
        )
    }

    /// rustls server configuration: serving certificate, client certificates
    /// verified against the CA when presented (requests without one are
    /// anonymous), ALPN h2 and http/1.1.
    pub fn server_config(&self) -> Result<rustls::ServerConfig, ServerError> {
        let (certs, key) = identity(&self.server_cert_pem, &self.server_key_pem, "server")?;
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            self.roots()?.into(),
            provider.clone(),
        )
        .allow_unauthenticated()
        .build()
        .map_err(|e| pki_err("client verifier", e))?;
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| pki_err("TLS versions", e))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs, key)
            .map_err(|e| pki_err("serving certificate", e))?;
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(cfg)
    }

    /// rustls client configuration of the admin user: trusts the cluster CA,
    /// presents the admin certificate, offers h2 then http/1.1 (for tools
    /// such as `keel bench`).
    pub fn client_config(&self) -> Result<rustls::ClientConfig, ServerError> {
        let (certs, key) = identity(&self.admin_cert_pem, &self.admin_key_pem, "admin")?;
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| pki_err("TLS versions", e))?
            .with_root_certificates(self.roots()?)
            .with_client_auth_cert(certs, key)
            .map_err(|e| pki_err("admin certificate", e))?;
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(cfg)
    }

    /// The cluster CA as a rustls trust store.
    fn roots(&self) -> Result<rustls::RootCertStore, ServerError> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(self.ca_pem.as_bytes()) {
            roots
                .add(c.map_err(|e| pki_err("ca.crt", e))?)
                .map_err(|e| pki_err("ca.crt", e))?;
        }
        Ok(roots)
    }
}

fn pki_err(what: &str, e: impl std::fmt::Display) -> ServerError {
    ServerError::Pki(format!("{what}: {e}"))
}

/// A certificate chain and its key from `<name>.crt` and `<name>.key` PEM.
fn identity(
    cert_pem: &str,
    key_pem: &str,
    name: &str,
) -> Result<
    (
        Vec<rustls::pki_types::CertificateDer<'static>>,
        rustls::pki_types::PrivateKeyDer<'static>,
    ),
    ServerError,
> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| pki_err(&format!("{name}.crt"), e))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| pki_err(&format!("{name}.key"), e))?;
    Ok((certs, key))
}

/// Whether `s` is an IP address (for SAN bookkeeping).
pub fn is_ip(s: &str) -> bool {
    s.parse::<IpAddr>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_then_reused_and_reissued_for_new_names() {
        let dir = tempfile::tempdir().unwrap();
        let a = Pki::load_or_create(dir.path(), &serving_names(&["127.0.0.1".into()])).unwrap();
        let b = Pki::load_or_create(dir.path(), &serving_names(&["127.0.0.1".into()])).unwrap();
        assert_eq!(a.ca_pem, b.ca_pem);
        assert_eq!(a.server_cert_pem, b.server_cert_pem);
        let c = Pki::load_or_create(dir.path(), &serving_names(&["10.1.2.3".into()])).unwrap();
        assert_eq!(a.ca_pem, c.ca_pem, "the CA is kept");
        assert_ne!(
            a.server_cert_pem, c.server_cert_pem,
            "a new name re-issues the serving certificate"
        );
        assert_eq!(a.admin_cert_pem, c.admin_cert_pem);
        c.server_config().unwrap();
        assert!(
            c.kubeconfig("https://127.0.0.1:6443")
                .contains("certificate-authority-data: ")
        );
        assert!(is_ip("10.1.2.3") && !is_ip("localhost"));
    }
}
