//! Mutual TLS on the member port. Every connection presents a certificate
//! from the cluster CA (or gets no further than the handshake), and each
//! call checks the group (subject O) of the certificate it came with:
//! Raft and the member-to-member `Client` service need [`MEMBER_GROUP`],
//! `Kv` and `Admin` need [`ADMIN_GROUP`]. The store reads only PEM and
//! group names; who issues the certificates is the caller's business.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig};
use tonic::{Request, Status};

/// The group (certificate O) of member certificates.
pub const MEMBER_GROUP: &str = "system:keel-members";
/// The group of administrators' client certificates.
pub const ADMIN_GROUP: &str = "system:masters";

/// A handshake not finished in this time is dropped: a client that opens a
/// connection and says nothing must not hold a task forever.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A certificate chain and its private key, PEM.
#[derive(Clone)]
pub struct PemIdentity {
    pub cert_pem: String,
    pub key_pem: String,
}

/// What a client of the member port needs: the CA it trusts the server's
/// certificate by, and the certificate it presents.
#[derive(Clone)]
pub struct ClientTls {
    pub ca_pem: String,
    pub identity: PemIdentity,
}

impl ClientTls {
    /// `ca.crt`, `<name>.crt` and `<name>.key` of `dir` (a member's `pki/`
    /// holds `admin` and `member`).
    pub fn from_dir(dir: &Path, name: &str) -> std::io::Result<ClientTls> {
        Self::from_files(
            &dir.join("ca.crt"),
            &dir.join(format!("{name}.crt")),
            &dir.join(format!("{name}.key")),
        )
    }

    /// The CA, certificate and key from these PEM files.
    pub fn from_files(ca: &Path, cert: &Path, key: &Path) -> std::io::Result<ClientTls> {
        let read = |p: &Path| {
            std::fs::read_to_string(p)
                .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", p.display())))
        };
        Ok(ClientTls {
            ca_pem: read(ca)?,
            identity: PemIdentity {
                cert_pem: read(cert)?,
                key_pem: read(key)?,
            },
        })
    }

    /// tonic's client TLS settings: verify the member against the CA (its
    /// certificate names the host dialled), present our certificate.
    pub fn config(&self) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca_pem))
            .identity(Identity::from_pem(
                &self.identity.cert_pem,
                &self.identity.key_pem,
            ))
            .timeout(HANDSHAKE_TIMEOUT)
    }

    /// An endpoint for the member at `addr` (`host:port`) over mutual TLS.
    pub fn endpoint(&self, addr: &str) -> Result<Endpoint, tonic::transport::Error> {
        Endpoint::from_shared(format!("https://{addr}"))?.tls_config(self.config())
    }
}

/// A member's TLS material: the CA, its member certificate (served, and
/// presented to other members), and an administrator's certificate with
/// which a follower passes `Admin` calls it has authorized on to the leader.
#[derive(Clone)]
pub struct PeerTls {
    pub ca_pem: String,
    pub member: PemIdentity,
    pub admin: PemIdentity,
}

impl PeerTls {
    /// How this member calls other members.
    pub fn as_member(&self) -> ClientTls {
        ClientTls {
            ca_pem: self.ca_pem.clone(),
            identity: self.member.clone(),
        }
    }

    /// How this member passes an administrator's call on to the leader.
    pub fn as_admin(&self) -> ClientTls {
        ClientTls {
            ca_pem: self.ca_pem.clone(),
            identity: self.admin.clone(),
        }
    }

    /// The server side: serve the member certificate and require a client
    /// certificate from the CA on every connection.
    pub fn server_config(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(Identity::from_pem(
                &self.member.cert_pem,
                &self.member.key_pem,
            ))
            .client_ca_root(Certificate::from_pem(&self.ca_pem))
            .client_auth_optional(false)
            .timeout(HANDSHAKE_TIMEOUT)
    }
}

/// Who may make a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Another member: Raft and forwarding.
    Member,
    /// An administrator: `Kv` and `Admin`.
    Admin,
}

impl Role {
    fn group(self) -> &'static str {
        match self {
            Role::Member => MEMBER_GROUP,
            Role::Admin => ADMIN_GROUP,
        }
    }
}

/// Refuse `req` unless its connection's verified certificate is in the
/// group `role` needs. The handshake already proved the certificate comes
/// from the CA; this reads who it names.
pub fn authorize<T>(req: &Request<T>, role: Role) -> Result<(), Status> {
    let certs = req
        .peer_certs()
        .ok_or_else(|| Status::unauthenticated("no client certificate"))?;
    let leaf = certs
        .first()
        .ok_or_else(|| Status::unauthenticated("no client certificate"))?;
    let named = known_subject(leaf)
        .map_err(|e| Status::unauthenticated(format!("unreadable client certificate: {e}")))?;
    let (cn, groups) = &*named;
    if groups.iter().any(|g| g == role.group()) {
        return Ok(());
    }
    Err(Status::permission_denied(format!(
        "{cn:?} (groups {groups:?}) may not call this service: it needs a certificate in group {:?}",
        role.group()
    )))
}

/// The CN and O of the caller's verified certificate, as the actor of its
/// writes; `None` when it has none that parses.
pub fn caller<T>(req: &Request<T>) -> Option<crate::Actor> {
    let certs = req.peer_certs()?;
    let named = known_subject(certs.first()?).ok()?;
    let (user, groups) = (*named).clone();
    Some(crate::Actor { user, groups })
}

/// A certificate's CN and O values.
type Subject = (String, Vec<String>);

/// Subjects of the certificates seen lately, by their DER. Every call on
/// the member port names its caller, and parsing the certificate for each
/// one cost about 2 % of a loaded member's CPU. A cluster's certificates
/// are few (members, administrators, API servers); the map is emptied
/// when it reaches [`SUBJECTS_AT_MOST`], so no caller can grow it for good.
static SUBJECTS: std::sync::LazyLock<RwLock<HashMap<Vec<u8>, Arc<Subject>>>> =
    std::sync::LazyLock::new(Default::default);
const SUBJECTS_AT_MOST: usize = 1024;

/// [`subject`], parsed once per certificate (keyed by all of its bytes, so
/// two certificates never share an entry).
fn known_subject(der: &[u8]) -> Result<Arc<Subject>, String> {
    let read = SUBJECTS.read().unwrap_or_else(PoisonError::into_inner);
    if let Some(known) = read.get(der) {
        return Ok(known.clone());
    }
    drop(read);
    let parsed = Arc::new(subject(der)?);
    let mut known = SUBJECTS.write().unwrap_or_else(PoisonError::into_inner);
    if known.len() >= SUBJECTS_AT_MOST {
        known.clear();
    }
    known.insert(der.to_vec(), parsed.clone());
    Ok(parsed)
}

/// The CN and O values of a DER certificate's subject: the user and groups
/// the member port and the API read from a client certificate.
pub fn subject(der: &[u8]) -> Result<Subject, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| e.to_string())?;
    let s = cert.subject();
    let cn = s
        .iter_common_name()
        .find_map(|a| a.as_str().ok())
        .unwrap_or_default()
        .to_string();
    let groups = s
        .iter_organization()
        .filter_map(|a| a.as_str().ok().map(str::to_string))
        .collect();
    Ok((cn, groups))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn certificate(cn: &str, group: &str) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::default();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, group);
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn a_certificate_is_parsed_once_and_never_taken_for_another() {
        let alice = certificate("alice", ADMIN_GROUP);
        let bob = certificate("bob", MEMBER_GROUP);
        let first = known_subject(&alice).unwrap();
        assert_eq!(*first, ("alice".to_string(), vec![ADMIN_GROUP.to_string()]));
        assert!(
            Arc::ptr_eq(&first, &known_subject(&alice).unwrap()),
            "parsed again"
        );
        assert_eq!(
            *known_subject(&bob).unwrap(),
            ("bob".to_string(), vec![MEMBER_GROUP.to_string()])
        );
        assert!(known_subject(b"not a certificate").is_err());
    }
}
