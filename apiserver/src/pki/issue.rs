//! The cluster CA as an issuer: created exactly once in a directory that
//! several members may share (`keel server --ca-dir`), and the certificates
//! it hands out to members, nodes and users (`keel certs`), with their
//! kubeconfigs.

use std::path::Path;

use base64::Engine;
use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair, KeyUsagePurpose};

use super::{PRIVATE, PUBLIC, ca_params, io_err, read, sync_dir, tighten, tls_err};
use crate::error::ServerError;

/// The groups (certificate O) the member port checks: members' certificates
/// (Raft and forwarding) and administrators' (`Kv` and `Admin`; also the
/// API's authorization bypass).
pub use keel_store::grpc::tls::{ADMIN_GROUP, MEMBER_GROUP};
/// The group of node (kubelet) certificates.
pub const NODE_GROUP: &str = "system:nodes";

/// The cluster CA: its certificate and private key, PEM.
#[derive(Clone)]
pub struct Ca {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A certificate and its private key, PEM.
#[derive(Clone, Debug)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Ca {
    /// A new CA held in memory only (tests, and a second CA to prove that
    /// its certificates are refused).
    pub fn generate() -> Result<Ca, ServerError> {
        let key = KeyPair::generate().map_err(|e| tls_err("generating the CA key", e))?;
        let cert_pem = self_signed(&key)?;
        Ok(Ca {
            cert_pem,
            key_pem: key.serialize_pem(),
        })
    }

    /// The CA of `dir` (`ca.crt`, `ca.key`); an error if it has none.
    pub fn load(dir: &Path) -> Result<Ca, ServerError> {
        let key_path = dir.join("ca.key");
        let key_pem = read(&key_path)?.ok_or_else(|| {
            ServerError::Pki(format!("{}: no CA key (ca.key) here", dir.display()))
        })?;
        let cert_pem = read(&dir.join("ca.crt"))?.ok_or_else(|| {
            ServerError::Pki(format!(
                "{}: no CA certificate (ca.crt) here",
                dir.display()
            ))
        })?;
        Ok(Ca { cert_pem, key_pem })
    }

    /// The CA of `dir`, created if it has none. Safe when several processes
    /// start at once on one directory: the key is linked into place with a
    /// link that fails if another process got there first, so exactly one
    /// key is ever created and every caller returns it. `ca.crt` is derived
    /// from the key when missing; two processes deriving it at once write
    /// certificates with the same subject and key, so each verifies the
    /// same leaves.
    pub fn load_or_create(dir: &Path) -> Result<Ca, ServerError> {
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| io_err(dir, e))?;
        }
        let key_path = dir.join("ca.key");
        tighten(&key_path)?;
        let (key_pem, created) = match read(&key_path)? {
            Some(k) => (k, false),
            None => create_key_once(&key_path)?,
        };
        let key = KeyPair::from_pem(&key_pem).map_err(|e| tls_err("reading ca.key", e))?;
        let crt_path = dir.join("ca.crt");
        // A certificate left beside a key this call just created is another
        // CA's (its key was lost): replaced.
        let cert_pem = match read(&crt_path)?.filter(|_| !created) {
            Some(c) => c,
            None => {
                let c = self_signed(&key)?;
                publish(&crt_path, &c, PUBLIC, false)?;
                tracing::info!(dir = %dir.display(), "wrote the cluster CA certificate");
                c
            }
        };
        Ok(Ca { cert_pem, key_pem })
    }

    fn issuer(&self) -> Result<Issuer<'static, KeyPair>, ServerError> {
        let key = KeyPair::from_pem(&self.key_pem).map_err(|e| tls_err("reading ca.key", e))?;
        // The issuer is the CA's subject and key; rebuilding its parameters
        // avoids parsing the certificate back.
        Ok(Issuer::new(
            ca_params().map_err(|e| tls_err("CA parameters", e))?,
            key,
        ))
    }

    /// A member's certificate, for both ends of member-port connections:
    /// CN `keel-member-<id>`, O [`MEMBER_GROUP`], names `hosts` (its peer
    /// address's host, and whatever else peers dial it by).
    pub fn issue_member(&self, id: u64, hosts: &[String]) -> Result<Issued, ServerError> {
        self.sign(
            &member_name(id),
            &[MEMBER_GROUP.to_string()],
            hosts.to_vec(),
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        )
    }

    /// A client certificate for user `name` in `groups` (CN and O, as the
    /// API reads them).
    pub fn issue_user(&self, name: &str, groups: &[String]) -> Result<Issued, ServerError> {
        if name.is_empty() {
            return Err(ServerError::Pki("a user certificate needs a name".into()));
        }
        self.sign(
            name,
            groups,
            vec![],
            vec![ExtendedKeyUsagePurpose::ClientAuth],
        )
    }

    /// A node's client certificate: `system:node:<name>` in [`NODE_GROUP`],
    /// the identity the Node authorizer knows.
    pub fn issue_node(&self, name: &str) -> Result<Issued, ServerError> {
        if name.is_empty() {
            return Err(ServerError::Pki("a node certificate needs a name".into()));
        }
        self.issue_user(&format!("system:node:{name}"), &[NODE_GROUP.to_string()])
    }

    fn sign(
        &self,
        cn: &str,
        groups: &[String],
        sans: Vec<String>,
        usages: Vec<ExtendedKeyUsagePurpose>,
    ) -> Result<Issued, ServerError> {
        let mut p = CertificateParams::new(sans).map_err(|e| tls_err("certificate names", e))?;
        p.distinguished_name.push(DnType::CommonName, cn);
        for g in groups {
            p.distinguished_name
                .push(DnType::OrganizationName, g.as_str());
        }
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        p.extended_key_usages = usages;
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2099, 12, 31);
        let key = KeyPair::generate().map_err(|e| tls_err("generating a key", e))?;
        let issuer = self.issuer()?;
        let cert = p
            .signed_by(&key, &issuer)
            .map_err(|e| tls_err("signing a certificate", e))?;
        let cert_pem = if groups.len() > 1 {
            // rcgen keeps one value per attribute type; Kubernetes reads
            // one group per O, so the subject is written here and signed again.
            let der = many_o::replace(cert.der(), &many_o::encode(cn, groups), issuer.key())?;
            many_o::pem(&der)
        } else {
            cert.pem()
        };
        Ok(Issued {
            cert_pem,
            key_pem: key.serialize_pem(),
        })
    }
}

/// A certificate subject with several O values: rcgen's distinguished name
/// holds one value per attribute type, so the subject is encoded here and
/// the certificate it signed is re-signed with that subject in place.
mod many_o {
    use rcgen::{KeyPair, SigningKey};

    use crate::error::ServerError;

    fn err(what: &str) -> ServerError {
        ServerError::Pki(format!("rewriting a certificate subject: {what}"))
    }

    /// A DER length.
    fn len(n: usize) -> Vec<u8> {
        if n < 0x80 {
            return vec![n as u8];
        }
        let bytes: Vec<u8> = n
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        let mut out = vec![0x80 | bytes.len() as u8];
        out.extend(bytes);
        out
    }

    /// A DER element: tag, length, content.
    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        out.extend(len(content.len()));
        out.extend_from_slice(content);
        out
    }

    /// The size of the element at the start of `b` (header and content).
    fn element(b: &[u8]) -> Result<usize, ServerError> {
        let first = *b.get(1).ok_or_else(|| err("truncated"))?;
        let (header, content) = if first < 0x80 {
            (2, first as usize)
        } else {
            let n = (first & 0x7f) as usize;
            let bytes = b.get(2..2 + n).ok_or_else(|| err("truncated length"))?;
            (
                2 + n,
                bytes.iter().fold(0usize, |acc, x| (acc << 8) | *x as usize),
            )
        };
        let total = header + content;
        (total <= b.len())
            .then_some(total)
            .ok_or_else(|| err("element past the end"))
    }

    /// The content of the element at the start of `b`.
    fn content(b: &[u8]) -> Result<&[u8], ServerError> {
        let total = element(b)?;
        let header = if b[1] < 0x80 {
            2
        } else {
            2 + (b[1] & 0x7f) as usize
        };
        Ok(&b[header..total])
    }

    /// `CN=cn, O=g1, O=g2, …` as a DER Name (one RDN per attribute, UTF8String).
    pub fn encode(cn: &str, groups: &[String]) -> Vec<u8> {
        const CN: [u8; 3] = [0x55, 0x04, 0x03];
        const O: [u8; 3] = [0x55, 0x04, 0x0a];
        let rdn = |oid: &[u8], value: &str| {
            let mut atv = tlv(0x06, oid);
            atv.extend(tlv(0x0c, value.as_bytes()));
            tlv(0x31, &tlv(0x30, &atv))
        };
        let mut seq = rdn(&CN, cn);
        for g in groups {
            seq.extend(rdn(&O, g));
        }
        tlv(0x30, &seq)
    }

    /// `cert` with its subject replaced by `subject`, signed again by `key`
    /// (the key that signed it, so the signature algorithm stays).
    pub fn replace(cert: &[u8], subject: &[u8], key: &KeyPair) -> Result<Vec<u8>, ServerError> {
        let outer = content(cert)?;
        let tbs_len = element(outer)?;
        let (tbs, rest) = outer.split_at(tbs_len);
        let fields = content(tbs)?;
        // version [0], serial, signature, issuer, validity, then the subject.
        let mut at = 0;
        for _ in 0..5 {
            at += element(&fields[at..])?;
        }
        let subject_len = element(&fields[at..])?;
        let mut new_fields = fields[..at].to_vec();
        new_fields.extend_from_slice(subject);
        new_fields.extend_from_slice(&fields[at + subject_len..]);
        let new_tbs = tlv(0x30, &new_fields);
        let alg_len = element(rest)?;
        let signature = key.sign(&new_tbs).map_err(|e| err(&e.to_string()))?;
        let mut bits = vec![0u8];
        bits.extend(signature);
        let mut body = new_tbs;
        body.extend_from_slice(&rest[..alg_len]);
        body.extend(tlv(0x03, &bits));
        Ok(tlv(0x30, &body))
    }

    /// PEM of a DER certificate.
    pub fn pem(der: &[u8]) -> String {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
        for line in b64.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(line).unwrap_or_default());
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----\n");
        out
    }
}

/// The common name of member `id`'s certificate.
pub fn member_name(id: u64) -> String {
    format!("keel-member-{id}")
}

fn self_signed(key: &KeyPair) -> Result<String, ServerError> {
    ca_params()
        .and_then(|p| p.self_signed(key))
        .map(|c| c.pem())
        .map_err(|e| tls_err("creating the CA", e))
}

/// Generate a CA key and link it to `path` unless another process did first;
/// returns the key that is there afterwards, and whether this call made it.
fn create_key_once(path: &Path) -> Result<(String, bool), ServerError> {
    let key = KeyPair::generate()
        .map_err(|e| tls_err("generating the CA key", e))?
        .serialize_pem();
    if publish(path, &key, PRIVATE, true)? {
        tracing::info!(file = %path.display(), "created the cluster CA key");
        return Ok((key, true));
    }
    let theirs =
        read(path)?.ok_or_else(|| ServerError::Pki(format!("{}: vanished", path.display())))?;
    Ok((theirs, false))
}

/// Write `contents` (mode `mode`, synced) under a name no other writer uses,
/// then move it to `path`: with `exclusive`, by a hard link that fails when
/// `path` exists (false: someone else's file is there); otherwise by a
/// rename over whatever is there. The shared `write_durable` uses one
/// temporary name per target, which concurrent writers would trample.
fn publish(path: &Path, contents: &str, mode: u32, exclusive: bool) -> Result<bool, ServerError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| io_err(&tmp, e))?;
    f.write_all(contents.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| io_err(&tmp, e))?;
    drop(f);
    let placed = if exclusive {
        let linked = std::fs::hard_link(&tmp, path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
            Err(e) => return Err(io_err(path, e)),
        }
    } else {
        std::fs::rename(&tmp, path).map_err(|e| io_err(path, e))?;
        true
    };
    sync_dir(path)?;
    Ok(placed)
}

/// A kubeconfig for `user` holding `issued` against `server`
/// (`https://host:port`), trusting `ca_pem`.
pub fn kubeconfig(server: &str, ca_pem: &str, user: &str, issued: &Issued) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    // The name is quoted: user names such as `system:node:a` hold colons.
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: keel\n  cluster:\n    server: {server}\n    certificate-authority-data: {}\nusers:\n- name: \"{user}\"\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\ncontexts:\n- name: keel\n  context:\n    cluster: keel\n    user: \"{user}\"\n    namespace: default\ncurrent-context: keel\n",
        b64(ca_pem),
        b64(&issued.cert_pem),
        b64(&issued.key_pem)
    )
}

/// The CN and the O values of a PEM certificate's subject: the user and
/// groups the API and the member port read from it.
pub fn subject(cert_pem: &str) -> Result<(String, Vec<String>), ServerError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
        .map_err(|e| ServerError::Pki(format!("certificate PEM: {e}")))?;
    keel_store::grpc::tls::subject(&der).map_err(|e| ServerError::Pki(format!("certificate: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn many_creators_at_once_agree_on_one_ca() {
        let dir = tempfile::tempdir().unwrap();
        let ca_dir = dir.path().join("ca");
        let keys: Vec<String> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|_| s.spawn(|| Ca::load_or_create(&ca_dir).unwrap().key_pem))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(keys.iter().all(|k| k == &keys[0]), "one key for all");
        assert_eq!(Ca::load(&ca_dir).unwrap().key_pem, keys[0]);
        let left: Vec<_> = std::fs::read_dir(&ca_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(left.is_empty(), "temporary files left: {left:?}");
    }

    #[test]
    fn a_missing_certificate_is_derived_from_the_kept_key() {
        let dir = tempfile::tempdir().unwrap();
        let a = Ca::load_or_create(dir.path()).unwrap();
        std::fs::remove_file(dir.path().join("ca.crt")).unwrap();
        let b = Ca::load_or_create(dir.path()).unwrap();
        assert_eq!(a.key_pem, b.key_pem, "the key is never replaced");
        // A certificate whose key is gone is not kept beside a new key.
        std::fs::remove_file(dir.path().join("ca.key")).unwrap();
        let c = Ca::load_or_create(dir.path()).unwrap();
        assert_ne!(c.key_pem, a.key_pem);
        assert_ne!(
            c.cert_pem, b.cert_pem,
            "the old CA's certificate is replaced"
        );
    }

    #[test]
    fn issued_subjects_carry_user_and_groups() {
        let ca = Ca::generate().unwrap();
        let u = ca
            .issue_user("alice", &["dev".into(), "ops".into()])
            .unwrap();
        assert_eq!(
            subject(&u.cert_pem).unwrap(),
            ("alice".into(), vec!["dev".into(), "ops".into()])
        );
        let n = ca.issue_node("n1").unwrap();
        assert_eq!(
            subject(&n.cert_pem).unwrap(),
            ("system:node:n1".into(), vec![NODE_GROUP.into()])
        );
        let m = ca.issue_member(3, &["127.0.0.1".into()]).unwrap();
        assert_eq!(
            subject(&m.cert_pem).unwrap(),
            ("keel-member-3".into(), vec![MEMBER_GROUP.into()])
        );
        assert!(
            kubeconfig("https://127.0.0.1:6443", &ca.cert_pem, "alice", &u)
                .contains("user: \"alice\"")
        );
    }
}
