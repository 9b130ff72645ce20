//! Secrets encrypted at rest: values of the configured resources are
//! encrypted by the API server BEFORE a write is proposed, so the Raft log,
//! RocksDB's files and snapshots only ever hold ciphertext, and decrypted on
//! every read and watch event. The configuration is Kubernetes'
//! `EncryptionConfiguration` ([`config`]); providers are `aesgcmsiv`
//! ([`aesgcmsiv`]), `kms` v2 plugins ([`kms`]) and `identity`; the first of
//! a resource's providers encrypts and every one decrypts ([`transformer`]).
//! [`storage::EncryptedStorage`] is the seam, a [`Storage`] between the
//! watch cache and the member. Without a file the server writes a default
//! one ([`default`]), so secrets are encrypted unless configured otherwise.
//!
//! [`Storage`]: crate::registry::storage::Storage

pub mod aesgcmsiv;
pub mod config;
pub mod default;
pub mod kms;
pub mod storage;
#[cfg(test)]
mod tests;
pub mod transformer;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use config::EncryptionConfig;
pub use storage::EncryptedStorage;
pub use transformer::Transformer;

/// Everything encryption fails with. Configuration errors refuse start-up;
/// the others fail the one object they concern (a 500 naming its key).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncryptionError {
    /// A missing, unreadable or invalid configuration (or key) file.
    #[error("{path}: {message}")]
    Config { path: String, message: String },
    /// The value names a key the configuration does not list (removed
    /// before every value was rotated off it, or a member configured
    /// differently).
    #[error(
        "cannot decrypt {key}: it was encrypted with {provider} key {name:?}, which the encryption configuration does not list"
    )]
    UnknownKey {
        key: String,
        provider: String,
        name: String,
    },
    /// The key is listed but does not open the value: another key under
    /// the same name, or the value was altered.
    #[error(
        "cannot decrypt {key} with {provider} key {name:?}: wrong key, or the stored value was altered"
    )]
    Decrypt {
        key: String,
        provider: String,
        name: String,
    },
    /// Stored unencrypted while `identity` is not one of the resource's providers.
    #[error("{key} is stored unencrypted and identity is not a provider of its resource")]
    Unencrypted { key: String },
    /// Stored encrypted while its resource is not in the configuration.
    #[error("{key} is stored encrypted but its resource is not in the encryption configuration")]
    NotConfigured { key: String },
    #[error("malformed encrypted value of {key}: {detail}")]
    Malformed { key: String, detail: String },
    /// The KMS plugin failed or could not be reached.
    #[error("KMS plugin {name:?} (unix://{socket}): {detail}")]
    Kms {
        name: String,
        socket: String,
        detail: String,
    },
}

/// The loaded configuration: for each configured key prefix, in the file's
/// order, the providers of its resource.
pub struct Encryption {
    rules: Vec<(String, Arc<Transformer>)>,
    /// The file it came from, for logs.
    pub source: PathBuf,
}

impl Encryption {
    /// The configuration in `file`, or without one the data directory's
    /// default ([`default`]), written first if missing. An error names the
    /// file and refuses start-up.
    pub fn load(file: Option<&Path>, data_dir: &Path) -> Result<Encryption, EncryptionError> {
        let path = match file {
            Some(f) => f.to_path_buf(),
            None => default::ensure(data_dir)?,
        };
        let cfg = config::load(&path)?;
        Ok(Encryption::new(&cfg, path))
    }

    pub fn new(cfg: &EncryptionConfig, source: PathBuf) -> Encryption {
        let mut rules = Vec::new();
        for rule in &cfg.rules {
            let t = Arc::new(Transformer::new(
                rule.providers
                    .iter()
                    .map(transformer::Provider::new)
                    .collect(),
            ));
            for (_, prefix) in &rule.resources {
                rules.push((prefix.clone(), t.clone()));
            }
        }
        Encryption { rules, source }
    }

    /// The providers of the resource `key` belongs to; `None` when it is not
    /// configured (stored as is). The first rule that covers it wins.
    pub fn transformer(&self, key: &str) -> Option<&Arc<Transformer>> {
        self.rules
            .iter()
            .find(|(p, _)| key.starts_with(p.as_str()))
            .map(|(_, t)| t)
    }

    /// Whether everything under `prefix` lies in one resource
    /// (`/registry/<group>/<plural>/...`): a list or watch a client asked
    /// for, which an undecryptable object fails, rather than the watch
    /// cache's feed of everything, which leaves it out (a `*.*` rule covers
    /// the feed's prefix too, so coverage alone cannot tell them apart).
    pub fn within_one(prefix: &str) -> bool {
        prefix.split('/').filter(|s| !s.is_empty()).count() >= 3
    }

    /// What each configured prefix is written with, for the start-up log.
    pub fn summary(&self) -> Vec<String> {
        self.rules
            .iter()
            .map(|(p, t)| format!("{p}* -> {}", t.writer()))
            .collect()
    }
}
