//! The `kms` provider (KMS v2 envelope encryption): values are encrypted
//! with AES-256-GCM-SIV under a data-encryption key (DEK) that Keel
//! generates, and only the DEK goes to the plugin, which wraps it with a key
//! that never leaves the KMS (Vault, CyberArk Conjur, a cloud KMS). One DEK
//! serves a server's writes from its first encrypted write on: it is wrapped
//! once, and replaced after [`DEK_WRITES`] writes or when the plugin's
//! `Status` reports another key id (checked at most every
//! [`STATUS_EVERY`]). Unwrapped DEKs are cached by their wrapped bytes, so a
//! read calls the plugin once per DEK, not per value.
//!
//! After the `k8s:enc:kms:v2:<name>:` prefix a value is an [`Envelope`]
//! (protobuf): the sealed data, the wrapped DEK, and the key id and
//! annotations the plugin answered with, which its Decrypt needs back.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use keel_proto::kms_v2 as pb;
use keel_proto::kms_v2::key_management_service_client::KeyManagementServiceClient;
use keel_proto::prost::Message;
use tonic::transport::{Channel, Endpoint};

use super::EncryptionError;
use super::aesgcmsiv::{AesKey, random_secret};
use super::config::KmsConfig;

/// Writes one DEK encrypts before a new one is made: far below the 2^32
/// random nonces per key that keep AES-GCM-SIV's collision odds negligible.
pub const DEK_WRITES: u64 = 1 << 24;

/// How often the plugin's current key id is asked while writing.
pub const STATUS_EVERY: Duration = Duration::from_secs(60);

/// Unwrapped DEKs kept; the cache starts over when full.
const CACHE_LIMIT: usize = 4096;

/// What follows the prefix of a value.
#[derive(Clone, PartialEq, Message)]
pub struct Envelope {
    #[prost(bytes = "vec", tag = "1")]
    pub encrypted_data: Vec<u8>,
    #[prost(string, tag = "2")]
    pub key_id: String,
    #[prost(bytes = "vec", tag = "3")]
    pub encrypted_dek: Vec<u8>,
    #[prost(map = "string, bytes", tag = "4")]
    pub annotations: HashMap<String, Vec<u8>>,
}

/// The DEK writes use now.
struct Dek {
    key: Arc<AesKey>,
    wrapped: Vec<u8>,
    key_id: String,
    annotations: HashMap<String, Vec<u8>>,
    writes: AtomicU64,
    /// When the plugin last confirmed `key_id` is current.
    checked: Mutex<Instant>,
}

pub struct Kms {
    config: KmsConfig,
    channel: OnceLock<Channel>,
    current: tokio::sync::Mutex<Option<Arc<Dek>>>,
    unwrapped: Mutex<HashMap<Vec<u8>, Arc<AesKey>>>,
    /// Held while asking the plugin to unwrap, so that readers missing the
    /// cache at once (the watch cache's first list and a client's GET)
    /// make one call, not one each.
    unwrapping: tokio::sync::Mutex<()>,
    calls: AtomicU64,
}

impl Kms {
    pub fn new(config: KmsConfig) -> Kms {
        Kms {
            config,
            channel: OnceLock::new(),
            current: tokio::sync::Mutex::new(None),
            unwrapped: Mutex::new(HashMap::new()),
            unwrapping: tokio::sync::Mutex::new(()),
            calls: AtomicU64::new(0),
        }
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    fn error(&self, detail: impl std::fmt::Display) -> EncryptionError {
        EncryptionError::Kms {
            name: self.config.name.clone(),
            socket: self.config.socket.clone(),
            detail: detail.to_string(),
        }
    }

    /// A client of the plugin; the connection is made on first use and
    /// again after it breaks (a plugin restarted), so start-up does not
    /// wait for the plugin.
    fn client(&self) -> KeyManagementServiceClient<Channel> {
        let channel = self.channel.get_or_init(|| {
            let socket = self.config.socket.clone();
            Endpoint::from_static("http://kms.invalid")
                .connect_timeout(self.config.timeout)
                .timeout(self.config.timeout)
                .connect_with_connector_lazy(tower::service_fn(move |_: tonic::transport::Uri| {
                    let socket = socket.clone();
                    async move {
                        let s = tokio::net::UnixStream::connect(socket).await?;
                        Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(s))
                    }
                }))
        });
        KeyManagementServiceClient::new(channel.clone())
    }

    /// A request id for the plugin's logs.
    fn uid(&self) -> String {
        format!(
            "keel-{}-{}",
            std::process::id(),
            self.calls.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// The envelope of `plaintext` stored under `key`.
    pub async fn encrypt(&self, key: &str, plaintext: &[u8]) -> Result<Vec<u8>, EncryptionError> {
        let dek = self.current_dek().await?;
        Ok(Envelope {
            encrypted_data: dek.key.seal(plaintext, key.as_bytes()),
            key_id: dek.key_id.clone(),
            encrypted_dek: dek.wrapped.clone(),
            annotations: dek.annotations.clone(),
        }
        .encode_to_vec())
    }

    /// The plaintext of an envelope, and whether the plugin's key that
    /// wrapped its DEK is no longer the one it encrypts with now.
    pub async fn decrypt(
        &self,
        key: &str,
        body: &[u8],
    ) -> Result<(Vec<u8>, bool), EncryptionError> {
        let env = Envelope::decode(body).map_err(|e| EncryptionError::Malformed {
            key: key.into(),
            detail: format!("not a KMS v2 envelope: {e}"),
        })?;
        let dek = match self.cached(&env.encrypted_dek) {
            Some(k) => k,
            None => self.unwrap_dek(&env).await?,
        };
        let plaintext = dek
            .open(&env.encrypted_data, key.as_bytes())
            .ok_or_else(|| EncryptionError::Decrypt {
                key: key.into(),
                provider: "kms".into(),
                name: self.config.name.clone(),
            })?;
        let stale = match self.current.try_lock() {
            Ok(cur) => cur.as_ref().is_some_and(|d| d.key_id != env.key_id),
            // A new DEK is being made: not knowing is not stale.
            Err(_) => false,
        };
        Ok((plaintext, stale))
    }

    fn cached(&self, wrapped: &[u8]) -> Option<Arc<AesKey>> {
        self.lock_cache().get(wrapped).cloned()
    }

    /// The DEK of `env`, from the plugin; one call at a time, and none when
    /// a call just made put it in the cache.
    async fn unwrap_dek(&self, env: &Envelope) -> Result<Arc<AesKey>, EncryptionError> {
        let _one = self.unwrapping.lock().await;
        if let Some(k) = self.cached(&env.encrypted_dek) {
            return Ok(k);
        }
        let reply = self
            .client()
            .decrypt(pb::DecryptRequest {
                ciphertext: env.encrypted_dek.clone(),
                uid: self.uid(),
                key_id: env.key_id.clone(),
                annotations: env.annotations.clone(),
            })
            .await
            .map_err(|s| self.error(format!("Decrypt failed: {}", s.message())))?
            .into_inner();
        let secret: [u8; 32] = reply.plaintext.try_into().map_err(|p: Vec<u8>| {
            self.error(format!(
                "Decrypt returned {} bytes, expected a 32-byte key",
                p.len()
            ))
        })?;
        let k = Arc::new(AesKey::new("dek", secret));
        self.remember(env.encrypted_dek.clone(), k.clone());
        Ok(k)
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, HashMap<Vec<u8>, Arc<AesKey>>> {
        self.unwrapped.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn remember(&self, wrapped: Vec<u8>, key: Arc<AesKey>) {
        let mut cache = self.lock_cache();
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(wrapped, key);
    }

    /// The DEK to write with: the current one, or a new one wrapped by the
    /// plugin when there is none, it has done its writes, or the plugin's
    /// key changed.
    async fn current_dek(&self) -> Result<Arc<Dek>, EncryptionError> {
        let mut cur = self.current.lock().await;
        if let Some(d) = cur.as_ref()
            && d.writes.fetch_add(1, Ordering::Relaxed) < DEK_WRITES
            && self.key_unchanged(d).await
        {
            return Ok(d.clone());
        }
        let secret = random_secret();
        let reply = self
            .client()
            .encrypt(pb::EncryptRequest {
                plaintext: secret.to_vec(),
                uid: self.uid(),
            })
            .await
            .map_err(|s| self.error(format!("Encrypt failed: {}", s.message())))?
            .into_inner();
        if reply.ciphertext.is_empty() || reply.key_id.is_empty() {
            return Err(self.error("Encrypt answered without a ciphertext or a key id"));
        }
        let key = Arc::new(AesKey::new("dek", secret));
        self.remember(reply.ciphertext.clone(), key.clone());
        let dek = Arc::new(Dek {
            key,
            wrapped: reply.ciphertext,
            key_id: reply.key_id,
            annotations: reply.annotations,
            writes: AtomicU64::new(1),
            checked: Mutex::new(Instant::now()),
        });
        tracing::info!(plugin = %self.config.name, key_id = %dek.key_id, "KMS: new data-encryption key");
        *cur = Some(dek.clone());
        Ok(dek)
    }

    /// Whether the plugin still encrypts with the key that wrapped `d`
    /// (asked at most every [`STATUS_EVERY`]; a plugin that cannot answer
    /// keeps the DEK in use).
    async fn key_unchanged(&self, d: &Dek) -> bool {
        {
            let mut checked = d.checked.lock().unwrap_or_else(|e| e.into_inner());
            if checked.elapsed() < STATUS_EVERY {
                return true;
            }
            *checked = Instant::now();
        }
        match self.client().status(pb::StatusRequest {}).await {
            Ok(s) => {
                let s = s.into_inner();
                s.key_id.is_empty() || s.key_id == d.key_id
            }
            Err(e) => {
                tracing::warn!(plugin = %self.config.name, "KMS Status failed: {}", e.message());
                true
            }
        }
    }
}
