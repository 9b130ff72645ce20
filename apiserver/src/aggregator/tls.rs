//! TLS towards extension servers: the server's certificate is verified
//! against the APIService's `caBundle` for the name
//! `<service>.<namespace>.svc` (whatever address it was reached at), or not
//! at all with `insecureSkipTLSVerify`; an APIService with neither trusts
//! the cluster CA. The proxy presents the front-proxy client certificate
//! ([`crate::pki::front_proxy`]) either way.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use super::registration::Registration;

/// Why no TLS configuration could be built for an APIService.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("spec.caBundle holds no usable certificate: {0}")]
    CaBundle(String),
    #[error("the front-proxy client certificate: {0}")]
    ClientCert(String),
}

/// The proxy's client identity and the trust used without a caBundle.
pub struct Identity {
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    cluster_ca: Vec<CertificateDer<'static>>,
}

impl Identity {
    pub fn new(cert_pem: &str, key_pem: &str, cluster_ca_pem: &str) -> Result<Identity, TlsError> {
        let err = |e: rustls::pki_types::pem::Error| TlsError::ClientCert(e.to_string());
        Ok(Identity {
            certs: CertificateDer::pem_slice_iter(cert_pem.as_bytes())
                .collect::<Result<_, _>>()
                .map_err(err)?,
            key: PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(err)?,
            cluster_ca: CertificateDer::pem_slice_iter(cluster_ca_pem.as_bytes())
                .collect::<Result<_, _>>()
                .map_err(err)?,
        })
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates of a caBundle: PEM, or one DER certificate.
fn bundle(ca: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(ca)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::CaBundle(e.to_string()))?;
    if !pem.is_empty() {
        return Ok(pem);
    }
    if ca.first() == Some(&0x30) {
        return Ok(vec![CertificateDer::from(ca.to_vec())]);
    }
    Err(TlsError::CaBundle("no PEM certificate in it".into()))
}

/// The client configuration for `reg`'s extension server (HTTP/1.1 only:
/// watches and upgrades are simplest to pass through on it).
pub fn client_config(
    id: &Identity,
    reg: &Registration,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let p = provider();
    let builder = rustls::ClientConfig::builder_with_provider(p.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::ClientCert(e.to_string()))?;
    let builder = if reg.insecure_skip_tls_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(p)))
    } else {
        let mut roots = rustls::RootCertStore::empty();
        let trusted = if reg.ca_bundle.is_empty() {
            id.cluster_ca.clone()
        } else {
            bundle(&reg.ca_bundle)?
        };
        for c in trusted {
            roots
                .add(c)
                .map_err(|e| TlsError::CaBundle(e.to_string()))?;
        }
        builder.with_root_certificates(roots)
    };
    let mut cfg = builder
        .with_client_auth_cert(id.certs.clone(), id.key.clone_key())
        .map_err(|e| TlsError::ClientCert(e.to_string()))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// The name the server certificate is verified for.
pub fn server_name(reg: &Registration) -> ServerName<'static> {
    let dns = reg
        .service
        .as_ref()
        .map(|s| s.dns_name())
        .unwrap_or_else(|| "localhost".into());
    ServerName::try_from(dns)
        .unwrap_or_else(|_| ServerName::try_from("invalid.svc").expect("a valid DNS name"))
}

/// `insecureSkipTLSVerify`: any server certificate is accepted; the
/// handshake's signatures are still checked, so the session is at least
/// with the holder of the certificate's key.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
