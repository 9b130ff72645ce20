//! [`EncryptedStorage`]: the [`Storage`] between the watch cache and the
//! member. Writes of configured resources are encrypted here, before the
//! member proposes them; reads and watch events are decrypted here, so the
//! watch cache above holds plaintext in memory only.
//!
//! A value that cannot be decrypted (a key removed too early, a member
//! configured differently, damage) fails that object alone:
//! - a get, or a list or watch of its own resource, is an internal error
//!   (500) naming the storage key and the key it needs;
//! - the watch cache's feed (a list and a watch of everything under
//!   `/registry/`) leaves the object out, with an error log and
//!   `keel_encryption_decrypt_failures_total`, so one bad value does not
//!   stop every resource from being cached. The cache then lacks it: a GET
//!   (always read from the member) still reports the error.
//!
//! Reading a value written by anything but the current first provider and
//! key marks it stale ([`Storage::stale`]): an update that changes nothing
//! then writes it again, which is how `keel secrets rotate` re-encrypts.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};

use super::transformer::PREFIX;
use super::{Encryption, EncryptionError};
use crate::registry::storage::{
    Actor, Consistency, Event, EventKind, EventStream, KeyHistory, KeyValue, Preconditions,
    RangeRequest, RangeResponse, Storage, StorageError, WatchMessage,
};

pub struct EncryptedStorage {
    inner: Arc<dyn Storage>,
    core: Arc<Core>,
}

impl EncryptedStorage {
    pub fn new(inner: Arc<dyn Storage>, enc: Arc<Encryption>) -> EncryptedStorage {
        EncryptedStorage {
            inner,
            core: Arc::new(Core {
                enc,
                stale: Mutex::new(HashMap::new()),
                decrypt_failures: AtomicU64::new(0),
                encrypted_writes: AtomicU64::new(0),
            }),
        }
    }

    /// Seals `value` for `key`, hands it to `write` (the inner storage's
    /// create or update), and clears the key's stale mark once written.
    async fn write_sealed<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        write: impl FnOnce(Vec<u8>) -> BoxFuture<'a, Result<u64, StorageError>>,
    ) -> Result<u64, StorageError> {
        let value = self.core.seal(key, value).await?;
        let r = write(value).await?;
        self.core.written(key);
        Ok(r)
    }
}

/// What the storage and its watch streams share.
struct Core {
    enc: Arc<Encryption>,
    /// Keys read as stale, with the revision read: a rewrite clears them.
    stale: Mutex<HashMap<String, u64>>,
    decrypt_failures: AtomicU64,
    encrypted_writes: AtomicU64,
}

impl Core {
    fn stale_keys(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        self.stale.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `kv` with its value decrypted.
    async fn open(&self, mut kv: KeyValue) -> Result<KeyValue, EncryptionError> {
        match self.enc.transformer(&kv.key) {
            Some(t) => {
                let d = t.decrypt(&kv.key, &kv.value).await?;
                if d.stale {
                    self.stale_keys().insert(kv.key.clone(), kv.mod_revision);
                }
                kv.value = d.plaintext;
                Ok(kv)
            }
            None if kv.value.starts_with(PREFIX) => {
                Err(EncryptionError::NotConfigured { key: kv.key })
            }
            None => Ok(kv),
        }
    }

    /// `value` as it is stored under `key`.
    async fn seal(&self, key: &str, value: Vec<u8>) -> Result<Vec<u8>, StorageError> {
        match self.enc.transformer(key) {
            Some(t) => {
                let sealed = t.encrypt(key, &value).await.map_err(|e| {
                    tracing::error!("{e}");
                    failed(e)
                })?;
                self.encrypted_writes.fetch_add(1, Ordering::Relaxed);
                Ok(sealed)
            }
            None => Ok(value),
        }
    }

    /// A decryption failure, logged and counted: an error when `strict`
    /// (the caller then leaves the object out otherwise).
    fn undecryptable(&self, e: EncryptionError, strict: bool) -> Result<(), StorageError> {
        self.decrypt_failures.fetch_add(1, Ordering::Relaxed);
        tracing::error!("{e}");
        if strict { Err(failed(e)) } else { Ok(()) }
    }

    async fn open_all(
        &self,
        kvs: Vec<KeyValue>,
        strict: bool,
    ) -> Result<Vec<KeyValue>, StorageError> {
        let mut out = Vec::with_capacity(kvs.len());
        for kv in kvs {
            match self.open(kv).await {
                Ok(kv) => out.push(kv),
                Err(e) => self.undecryptable(e, strict)?,
            }
        }
        Ok(out)
    }

    /// One event with its values decrypted; `None` to leave it out. In the
    /// cache's feed an object whose new value cannot be decrypted leaves the
    /// cache: a change to it becomes a deletion without an old object (which
    /// the cache applies and sends no watcher), so the cache holds what a
    /// fresh list would, never a superseded version.
    async fn open_event(
        &self,
        ev: &Arc<Event>,
        strict: bool,
    ) -> Result<Option<Arc<Event>>, StorageError> {
        let touches = |kv: &Option<KeyValue>| {
            kv.as_ref().is_some_and(|kv| {
                self.enc.transformer(&kv.key).is_some() || kv.value.starts_with(PREFIX)
            })
        };
        if !touches(&ev.value) && !touches(&ev.prev) {
            return Ok(Some(ev.clone()));
        }
        let mut out = Event::clone(ev);
        if let Some(kv) = out.value.take() {
            match self.open(kv).await {
                Ok(kv) => out.value = Some(kv),
                Err(e) => {
                    self.undecryptable(e, strict)?;
                    if out.kind == EventKind::Added {
                        return Ok(None);
                    }
                    out.kind = EventKind::Deleted;
                    out.prev = None;
                    return Ok(Some(Arc::new(out)));
                }
            }
        }
        if let Some(kv) = out.prev.take() {
            match self.open(kv).await {
                Ok(kv) => out.prev = Some(kv),
                // A deletion still deletes; the old value is only context.
                Err(e) if out.kind == EventKind::Deleted => self.undecryptable(e, false)?,
                Err(e) => {
                    self.undecryptable(e, strict)?;
                    return Ok(None);
                }
            }
        }
        Ok(Some(Arc::new(out)))
    }

    async fn open_message(
        &self,
        msg: WatchMessage,
        strict: bool,
    ) -> Result<WatchMessage, StorageError> {
        let WatchMessage::Events { revision, events } = msg else {
            return Ok(msg);
        };
        let mut out = Vec::with_capacity(events.len());
        for ev in &events {
            if let Some(ev) = self.open_event(ev, strict).await? {
                out.push(ev);
            }
        }
        Ok(if out.is_empty() {
            // Every event left out: the watcher still learns the revision.
            WatchMessage::Progress { revision }
        } else {
            WatchMessage::Events {
                revision,
                events: out,
            }
        })
    }

    fn written(&self, key: &str) {
        self.stale_keys().remove(key);
    }
}

/// An encryption failure as the storage error the client sees (a 500 that
/// names the object's key and the key it needs).
fn failed(e: EncryptionError) -> StorageError {
    StorageError::Internal(e.to_string())
}

impl EncryptedStorage {
    /// The events of `watch`, decrypted.
    fn watch_opened<'a>(
        &'a self,
        prefix: &'a str,
        watch: BoxFuture<'a, Result<EventStream, StorageError>>,
    ) -> BoxFuture<'a, Result<EventStream, StorageError>> {
        async move {
            let strict = Encryption::within_one(prefix);
            let events = watch.await?;
            let core = self.core.clone();
            Ok(events
                .then(move |item| {
                    let core = core.clone();
                    async move { core.open_message(item?, strict).await }
                })
                .boxed())
        }
        .boxed()
    }
}

impl Storage for EncryptedStorage {
    fn get<'a>(
        &'a self,
        key: &'a str,
        consistency: Consistency,
    ) -> BoxFuture<'a, Result<(KeyValue, u64), StorageError>> {
        async move {
            let (kv, revision) = self.inner.get(key, consistency).await?;
            let kv = self.core.open(kv).await.map_err(|e| {
                self.core.decrypt_failures.fetch_add(1, Ordering::Relaxed);
                failed(e)
            })?;
            Ok((kv, revision))
        }
        .boxed()
    }

    fn history<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<KeyHistory, StorageError>> {
        async move {
            let mut h = self.inner.history(key).await?;
            for change in &mut h.changes {
                for kv in [&mut change.value, &mut change.prev].into_iter().flatten() {
                    *kv = self.core.open(kv.clone()).await.map_err(failed)?;
                }
            }
            Ok(h)
        }
        .boxed()
    }

    fn list(&self, req: RangeRequest) -> BoxFuture<'_, Result<RangeResponse, StorageError>> {
        async move {
            let strict = Encryption::within_one(&req.prefix);
            let mut r = self.inner.list(req).await?;
            r.kvs = self
                .core
                .open_all(std::mem::take(&mut r.kvs), strict)
                .await?;
            Ok(r)
        }
        .boxed()
    }

    fn list_matching(
        &self,
        req: RangeRequest,
        fields: Vec<(String, String)>,
    ) -> BoxFuture<'_, Result<RangeResponse, StorageError>> {
        async move {
            let strict = Encryption::within_one(&req.prefix);
            let mut r = self.inner.list_matching(req, fields).await?;
            r.kvs = self
                .core
                .open_all(std::mem::take(&mut r.kvs), strict)
                .await?;
            Ok(r)
        }
        .boxed()
    }

    fn create<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        uid: Option<String>,
        actor: &'a Actor,
    ) -> BoxFuture<'a, Result<u64, StorageError>> {
        self.write_sealed(key, value, move |v| self.inner.create(key, v, uid, actor))
            .boxed()
    }

    fn update<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        preconditions: Preconditions,
        actor: &'a Actor,
    ) -> BoxFuture<'a, Result<u64, StorageError>> {
        self.write_sealed(key, value, move |v| {
            self.inner.update(key, v, preconditions, actor)
        })
        .boxed()
    }

    fn delete<'a>(
        &'a self,
        key: &'a str,
        preconditions: Preconditions,
        actor: &'a Actor,
    ) -> BoxFuture<'a, Result<u64, StorageError>> {
        async move {
            let r = self.inner.delete(key, preconditions, actor).await?;
            self.core.written(key);
            Ok(r)
        }
        .boxed()
    }

    fn watch<'a>(
        &'a self,
        prefix: &'a str,
        after: u64,
    ) -> BoxFuture<'a, Result<EventStream, StorageError>> {
        self.watch_opened(prefix, self.inner.watch(prefix, after))
    }

    fn watch_archived<'a>(
        &'a self,
        prefix: &'a str,
        after: u64,
    ) -> BoxFuture<'a, Result<EventStream, StorageError>> {
        self.watch_opened(prefix, self.inner.watch_archived(prefix, after))
    }

    fn linearize(&self) -> BoxFuture<'_, Result<u64, StorageError>> {
        self.inner.linearize()
    }

    fn catch_up_to(&self, revision: u64) -> BoxFuture<'_, ()> {
        self.inner.catch_up_to(revision)
    }

    fn request_progress(&self, prefix: &str) {
        self.inner.request_progress(prefix)
    }

    fn stale(&self, kv: &KeyValue) -> bool {
        self.core.stale_keys().get(&kv.key) == Some(&kv.mod_revision)
    }

    fn ready(&self) -> BoxFuture<'_, bool> {
        self.inner.ready()
    }

    fn is_running(&self) -> bool {
        self.inner.is_running()
    }

    fn render_metrics(&self) -> String {
        let mut out = self.inner.render_metrics();
        out.push_str(&format!(
            "# HELP keel_encryption_decrypt_failures_total Stored values that could not be decrypted (reads and watch events).\n\
             # TYPE keel_encryption_decrypt_failures_total counter\nkeel_encryption_decrypt_failures_total {}\n\
             # HELP keel_encryption_writes_total Values encrypted before being written.\n\
             # TYPE keel_encryption_writes_total counter\nkeel_encryption_writes_total {}\n",
            self.core.decrypt_failures.load(Ordering::Relaxed),
            self.core.encrypted_writes.load(Ordering::Relaxed),
        ));
        out
    }
}
