//! The front-proxy identity of API aggregation ([`crate::aggregator`]): a CA
//! of its own (`front-proxy-ca.{crt,key}`) and the client certificate the
//! API server presents to extension API servers
//! (`front-proxy-client.{crt,key}`, CN [`CLIENT_NAME`]). Kept apart from the
//! cluster CA on purpose: an extension server trusts every certificate of
//! this CA to assert any user in `X-Remote-User`, which no ordinary client
//! certificate of the cluster CA may do. Created on first start under
//! `<data-dir>/pki`, reused after; published to extension servers in the
//! ConfigMap `kube-system/extension-apiserver-authentication`.

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use super::{PRIVATE, PUBLIC, read, tls_err, write_durable};
use crate::error::ServerError;

/// The common name of the proxy's client certificate: what
/// `requestheader-allowed-names` lists.
pub const CLIENT_NAME: &str = "front-proxy-client";

const CA_CN: &str = "keel-front-proxy-ca";

/// The front-proxy CA's certificate and the proxy's client identity, PEM.
#[derive(Clone)]
pub struct FrontProxy {
    pub ca_pem: String,
    pub client_cert_pem: String,
    pub client_key_pem: String,
}

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

impl FrontProxy {
    /// The front-proxy CA and client certificate of `dir`, created when
    /// missing. A client certificate is issued again when the CA was.
    pub fn load_or_create(dir: &Path) -> Result<FrontProxy, ServerError> {
        let (ca_crt, ca_key) = (
            dir.join("front-proxy-ca.crt"),
            dir.join("front-proxy-ca.key"),
        );
        let (cl_crt, cl_key) = (
            dir.join("front-proxy-client.crt"),
            dir.join("front-proxy-client.key"),
        );
        for k in [&ca_key, &cl_key] {
            super::tighten(k)?;
        }
        let (ca_pem, ca_key_pem, new_ca) = match (read(&ca_crt)?, read(&ca_key)?) {
            (Some(c), Some(k)) => (c, k, false),
            _ => {
                let key = KeyPair::generate().map_err(|e| tls_err("front-proxy CA key", e))?;
                let cert = ca_params()
                    .and_then(|p| p.self_signed(&key))
                    .map_err(|e| tls_err("front-proxy CA", e))?;
                let (c, k) = (cert.pem(), key.serialize_pem());
                write_durable(&ca_key, k.as_bytes(), PRIVATE)?;
                write_durable(&ca_crt, c.as_bytes(), PUBLIC)?;
                tracing::info!(dir = %dir.display(), "created the front-proxy CA");
                (c, k, true)
            }
        };
        let existing = match (read(&cl_crt)?, read(&cl_key)?) {
            (Some(c), Some(k)) if !new_ca => Some((c, k)),
            _ => None,
        };
        let (client_cert_pem, client_key_pem) = match existing {
            Some(pair) => pair,
            None => {
                let key =
                    KeyPair::from_pem(&ca_key_pem).map_err(|e| tls_err("front-proxy-ca.key", e))?;
                let issuer =
                    Issuer::new(ca_params().map_err(|e| tls_err("CA parameters", e))?, key);
                let mut p = CertificateParams::new(Vec::<String>::new())
                    .map_err(|e| tls_err("certificate names", e))?;
                p.distinguished_name.push(DnType::CommonName, CLIENT_NAME);
                p.key_usages = vec![
                    KeyUsagePurpose::DigitalSignature,
                    KeyUsagePurpose::KeyEncipherment,
                ];
                p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
                p.not_before = rcgen::date_time_ymd(2020, 1, 1);
                p.not_after = rcgen::date_time_ymd(2099, 12, 31);
                let key = KeyPair::generate().map_err(|e| tls_err("generating a key", e))?;
                let cert = p
                    .signed_by(&key, &issuer)
                    .map_err(|e| tls_err("signing the front-proxy client", e))?;
                let (c, k) = (cert.pem(), key.serialize_pem());
                write_durable(&cl_key, k.as_bytes(), PRIVATE)?;
                write_durable(&cl_crt, c.as_bytes(), PUBLIC)?;
                (c, k)
            }
        };
        Ok(FrontProxy {
            ca_pem,
            client_cert_pem,
            client_key_pem,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_with_a_client_named_front_proxy_client() {
        let dir = tempfile::tempdir().unwrap();
        let a = FrontProxy::load_or_create(dir.path()).unwrap();
        let b = FrontProxy::load_or_create(dir.path()).unwrap();
        assert_eq!(a.ca_pem, b.ca_pem);
        assert_eq!(a.client_cert_pem, b.client_cert_pem);
        let (cn, groups) = super::super::subject(&a.client_cert_pem).unwrap();
        assert_eq!((cn.as_str(), groups.len()), (CLIENT_NAME, 0));
        // Not the cluster CA: its certificates must not assert users.
        let cluster = super::super::Ca::load_or_create(dir.path()).unwrap();
        assert_ne!(cluster.cert_pem, a.ca_pem);
        use std::os::unix::fs::PermissionsExt;
        for k in ["front-proxy-ca.key", "front-proxy-client.key"] {
            let mode = std::fs::metadata(dir.path().join(k))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{k}");
        }
    }
}
