//! The API server's certificates: a cluster CA, a serving certificate whose
//! SANs cover the addresses the server answers on, and an admin client
//! certificate; created on first start under `<data-dir>/pki` and reused
//! after. Also writes the kubeconfig that points kubectl at the server.
//! Private keys and the kubeconfig (which embeds the admin key) are created
//! owner-only (0600) from the first byte, and older ones are narrowed to 0600
//! at start. Certificates for members, nodes and users come from
//! [`issue`] (`keel certs`).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::error::ServerError;

pub mod front_proxy;
pub mod issue;
pub use issue::{
    ADMIN_GROUP, Ca, Issued, MEMBER_GROUP, NODE_GROUP, kubeconfig, member_name, subject,
};

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
    let mode = if secret { PRIVATE } else { PUBLIC };
    write_durable(path, contents.as_bytes(), mode)
}

/// Mode of private keys and kubeconfigs.
const PRIVATE: u32 = 0o600;
/// Mode of certificates.
const PUBLIC: u32 = 0o644;

/// Write `contents` to `path` readable by its owner only. See [`write_durable`].
pub fn write_private(path: &Path, contents: &[u8]) -> Result<(), ServerError> {
    write_durable(path, contents, PRIVATE)
}

/// Write `contents` to `path` with exactly `mode`, durably. The bytes go to a
/// temporary file that is created with that mode (a key is never briefly 0644
/// until a chmod, whatever the umask), synced, renamed over `path`, and the
/// directory is synced: a reader sees the old file or the whole new one, and
/// after a power cut the CA and certificates a member handed out are still
/// there instead of being regenerated (or left empty).
pub fn write_durable(path: &Path, contents: &[u8], mode: u32) -> Result<(), ServerError> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let name = path
        .file_name()
        .ok_or_else(|| ServerError::Pki(format!("{}: not a file path", path.display())))?;
    let tmp = path.with_file_name(format!(".{}.tmp", name.to_string_lossy()));
    // Left by a crash mid-write; create_new below refuses to reuse it.
    if let Err(e) = std::fs::remove_file(&tmp)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        return Err(io_err(&tmp, e));
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| io_err(&tmp, e))?;
    // The umask can only clear bits of the mode given at creation; make it
    // exactly `mode` before any content is written.
    f.set_permissions(std::fs::Permissions::from_mode(mode))
        .and_then(|()| f.write_all(contents))
        .and_then(|()| f.sync_all())
        .map_err(|e| io_err(&tmp, e))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| io_err(path, e))?;
    sync_dir(path)
}

/// Sync the directory holding `path`, so a new name in it survives a power cut.
fn sync_dir(path: &Path) -> Result<(), ServerError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(dir, e))
}

/// Narrow an existing private file to 0600 (versions before this one wrote
/// the kubeconfig 0644, and a copied key keeps whatever mode it was given).
pub fn tighten(path: &Path) -> Result<(), ServerError> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::metadata(path) {
        Ok(m) if m.permissions().mode() & 0o077 != 0 => {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(PRIVATE))
                .map_err(|e| io_err(path, e))?;
            tracing::warn!(file = %path.display(), "was readable by others: narrowed to 0600");
            Ok(())
        }
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err(path, e)),
        _ => Ok(()),
    }
}

/// The private key files of a PKI directory.
const KEY_FILES: [&str; 3] = ["ca.key", "server.key", "admin.key"];

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
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| io_err(dir, e))?;
            sync_dir(dir)?;
        }
        for f in KEY_FILES {
            tighten(&dir.join(f))?;
        }
        // Shared with `keel server --ca-dir` and `keel certs`: one creator
        // wins, and a kept key is never replaced.
        let Ca {
            cert_pem: ca_pem,
            key_pem: ca_key_pem,
        } = Ca::load_or_create(dir)?;
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

    /// Write [`Pki::kubeconfig`] to `path`, private (it holds the admin key).
    pub fn write_kubeconfig(&self, path: &Path, server: &str) -> Result<(), ServerError> {
        write_private(path, self.kubeconfig(server).as_bytes())
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

    fn mode(p: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    unsafe extern "C" {
        /// libc's umask(2): the crate has no libc dependency for one test.
        fn umask(mask: u32) -> u32;
    }

    #[test]
    fn keys_and_the_kubeconfig_are_private_under_umask_022() {
        // SAFETY: umask(2) cannot fail and touches no memory; the process-wide
        // mask is restored below (022 is the usual default anyway).
        let old = unsafe { umask(0o022) };
        let dir = tempfile::tempdir().unwrap();
        let pki_dir = dir.path().join("pki");
        let pki = Pki::load_or_create(&pki_dir, &serving_names(&[])).unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        // An older kubeconfig, world-readable: replaced by a private one.
        std::fs::write(&kubeconfig, "old").unwrap();
        assert_eq!(mode(&kubeconfig), 0o644, "the umask is 022");
        pki.write_kubeconfig(&kubeconfig, "https://127.0.0.1:6443")
            .unwrap();
        // SAFETY: as above.
        unsafe { umask(old) };
        for f in KEY_FILES {
            assert_eq!(mode(&pki_dir.join(f)), 0o600, "{f}");
        }
        assert_eq!(mode(&kubeconfig), 0o600);
        assert!(
            std::fs::read_to_string(&kubeconfig)
                .unwrap()
                .contains("client-key-data: ")
        );
        assert_eq!(
            mode(&pki_dir.join("ca.crt")),
            0o644,
            "certificates are public"
        );
        assert_eq!(mode(&pki_dir), 0o700);
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(left.is_empty(), "temporary files left: {left:?}");
    }

    #[test]
    fn existing_keys_readable_by_others_are_narrowed_at_start() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let a = Pki::load_or_create(dir.path(), &serving_names(&[])).unwrap();
        for (f, m) in KEY_FILES.iter().zip([0o644, 0o640, 0o604]) {
            std::fs::set_permissions(dir.path().join(f), std::fs::Permissions::from_mode(m))
                .unwrap();
        }
        let b = Pki::load_or_create(dir.path(), &serving_names(&[])).unwrap();
        assert_eq!(
            a.admin_key_pem, b.admin_key_pem,
            "keys are kept, not reissued"
        );
        for f in KEY_FILES {
            assert_eq!(mode(&dir.path().join(f)), 0o600, "{f}");
        }
    }
}
