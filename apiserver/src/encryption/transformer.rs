//! One resource's providers in order: the first encrypts every write, each
//! decrypts the values it wrote. The prefix of a stored value names the
//! provider and key that wrote it (`k8s:enc:<provider>:<version>:<name>:`,
//! as in kube-apiserver); a value without one was stored unencrypted (JSON,
//! so it starts with `{`).

use std::sync::Arc;

use super::EncryptionError;
use super::aesgcmsiv::AesKey;
use super::config::ProviderConfig;
use super::kms::Kms;

/// What every encrypted value starts with.
pub const PREFIX: &[u8] = b"k8s:enc:";

pub enum Provider {
    Identity,
    /// Its keys in order; the first encrypts.
    AesGcmSiv(Vec<AesKey>),
    Kms(Arc<Kms>),
}

impl Provider {
    pub fn new(p: &ProviderConfig) -> Provider {
        match p {
            ProviderConfig::Identity => Provider::Identity,
            ProviderConfig::AesGcmSiv(keys) => Provider::AesGcmSiv(
                keys.iter()
                    .map(|(n, s)| AesKey::new(n.clone(), *s))
                    .collect(),
            ),
            ProviderConfig::Kms(k) => Provider::Kms(Arc::new(Kms::new(k.clone()))),
        }
    }

    /// `aesgcmsiv key "k1"`, for logs and messages.
    fn describe(&self) -> String {
        match self {
            Provider::Identity => "identity".into(),
            Provider::AesGcmSiv(keys) => format!("aesgcmsiv key {:?}", keys[0].name),
            Provider::Kms(k) => format!("kms plugin {:?}", k.name()),
        }
    }
}

/// A plaintext read back, and whether it was stored under anything but the
/// current first provider and key (a rewrite would re-encrypt it).
#[derive(Debug, PartialEq, Eq)]
pub struct Decrypted {
    pub plaintext: Vec<u8>,
    pub stale: bool,
}

pub struct Transformer {
    providers: Vec<Provider>,
}

impl Transformer {
    /// At least one provider (the configuration guarantees it).
    pub fn new(providers: Vec<Provider>) -> Transformer {
        assert!(
            !providers.is_empty(),
            "a resource has at least one provider"
        );
        Transformer { providers }
    }

    /// What writes are encrypted with.
    pub fn writer(&self) -> String {
        self.providers[0].describe()
    }

    /// `plaintext` as stored under `key` by the first provider.
    pub async fn encrypt(&self, key: &str, plaintext: &[u8]) -> Result<Vec<u8>, EncryptionError> {
        match &self.providers[0] {
            Provider::Identity => Ok(plaintext.to_vec()),
            Provider::AesGcmSiv(keys) => {
                let k = &keys[0];
                let mut out = format!("k8s:enc:aesgcmsiv:v1:{}:", k.name).into_bytes();
                out.extend_from_slice(&k.seal(plaintext, key.as_bytes()));
                Ok(out)
            }
            Provider::Kms(kms) => {
                let mut out = format!("k8s:enc:kms:v2:{}:", kms.name()).into_bytes();
                out.extend_from_slice(&kms.encrypt(key, plaintext).await?);
                Ok(out)
            }
        }
    }

    /// The plaintext of the value stored under `key`, by whichever listed
    /// provider and key wrote it.
    pub async fn decrypt(&self, key: &str, stored: &[u8]) -> Result<Decrypted, EncryptionError> {
        let Some(rest) = stored.strip_prefix(PREFIX) else {
            return match self
                .providers
                .iter()
                .position(|p| matches!(p, Provider::Identity))
            {
                Some(i) => Ok(Decrypted {
                    plaintext: stored.to_vec(),
                    stale: i != 0,
                }),
                None => Err(EncryptionError::Unencrypted { key: key.into() }),
            };
        };
        let malformed = |detail: &str| EncryptionError::Malformed {
            key: key.into(),
            detail: detail.into(),
        };
        let mut parts = rest.splitn(4, |b| *b == b':');
        let (Some(kind), Some(version), Some(name), Some(body)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed("the k8s:enc: prefix is incomplete"));
        };
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let (kind, version, name) = (text(kind), text(version), text(name));
        for (i, p) in self.providers.iter().enumerate() {
            match (p, kind.as_str(), version.as_str()) {
                (Provider::AesGcmSiv(keys), "aesgcmsiv", "v1") => {
                    if let Some((j, k)) = keys.iter().enumerate().find(|(_, k)| k.name == name) {
                        let plaintext = k.open(body, key.as_bytes()).ok_or_else(|| {
                            EncryptionError::Decrypt {
                                key: key.into(),
                                provider: kind.clone(),
                                name: name.clone(),
                            }
                        })?;
                        return Ok(Decrypted {
                            plaintext,
                            stale: i != 0 || j != 0,
                        });
                    }
                }
                (Provider::Kms(kms), "kms", "v2") if kms.name() == name => {
                    let (plaintext, old_key) = kms.decrypt(key, body).await?;
                    return Ok(Decrypted {
                        plaintext,
                        stale: i != 0 || old_key,
                    });
                }
                _ => {}
            }
        }
        Err(EncryptionError::UnknownKey {
            key: key.into(),
            provider: format!("{kind}:{version}"),
            name,
        })
    }
}
