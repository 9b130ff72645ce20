//! The generic registry: every verb on every kind, over a [`storage::Storage`].
//! [`Registry`] owns the served kinds and the store; one file per concern:
//! body decoding and field checks ([`decode`]), get and list ([`get`]),
//! [`create`], the one guaranteed-update path ([`update`]), the patch verb
//! ([`patch`]), [`delete`] (with the namespace lifecycle), [`watch`], the
//! status, scale, binding and finalize subresources ([`subresources`]),
//! Table rendering ([`table`]) and the cluster IPs and node ports of
//! Services ([`services`]).

pub mod storage;

mod apply;
mod create;
mod decode;
mod delete;
mod eviction;
mod get;
mod history;
mod patch;
pub mod prepared;
pub mod protobuf;
mod quota;
pub mod servable;
pub mod services;
mod stored_json;
mod subresources;
pub mod table;
#[cfg(test)]
mod tests;
pub mod token;
mod update;
pub mod watch;

use std::sync::Arc;

use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::Value;

pub use decode::MAX_BODY;

use crate::admission::{self, Admit};
use crate::error::ApiError;
use crate::http::auth::UserInfo;
use crate::kinds::{Kinds, Subresource};
use crate::request::{Query, RequestTarget, Verb};
use crate::response;
use storage::{Consistency, KeyValue, Storage, StorageError};

/// Shared by every request: the served kinds and the store they live in.
pub struct Registry {
    /// Where the objects live (the Raft member, or memory in tests).
    pub storage: Arc<dyn Storage>,
    /// The served kinds.
    pub kinds: Kinds,
    /// Watch events decoded and encoded once for all watchers.
    prepared: Arc<prepared::PreparedEvents>,
    /// The watch cache `storage` is, when it is one: watches fan out from it.
    cache: Option<Arc<storage::WatchCache>>,
    /// Admission plugins, run on every write ([`crate::admission`]).
    admission: std::sync::RwLock<Vec<Arc<dyn Admit>>>,
    /// Who requests are from ([`crate::authn`]); set once by the server ([`token`]).
    authn: std::sync::OnceLock<Arc<crate::authn::Authenticator>>,
    /// Where Services get cluster IPs and node ports ([`services`]); the
    /// defaults until the server sets them.
    services: std::sync::OnceLock<services::range::ServiceNetwork>,
}

impl Registry {
    /// The registry of `kinds` over `storage`. (`Registry::new` builds one
    /// over a store member with the built-in kinds: [`storage::MemberStorage`].)
    pub fn with_storage(storage: Arc<dyn Storage>, kinds: Kinds) -> Registry {
        Registry {
            storage,
            kinds,
            prepared: Arc::default(),
            cache: None,
            admission: Default::default(),
            authn: Default::default(),
            services: Default::default(),
        }
    }

    /// The registry of `kinds` over a watch cache of `inner`: lists and
    /// watches are served from memory ([`storage::cache`]).
    pub fn with_cache(inner: Arc<dyn Storage>, kinds: Kinds) -> Registry {
        let cache = storage::WatchCache::new(inner);
        Registry {
            storage: cache.clone(),
            kinds,
            prepared: Arc::default(),
            cache: Some(cache),
            admission: Default::default(),
            authn: Default::default(),
            services: Default::default(),
        }
    }

    /// Add an admission plugin; it runs on every later write, after those
    /// added before it.
    pub fn add_admission(&self, plugin: Arc<dyn Admit>) {
        self.admission.write().unwrap().push(plugin);
    }

    /// Run every admission plugin on one write; the first refusal wins.
    fn admit(&self, a: &admission::Attributes<'_>) -> Result<(), ApiError> {
        let plugins = self.admission.read().unwrap().clone();
        plugins.iter().try_for_each(|p| p.admit(a))
    }

    /// Run `verb` on `t` for `user`.
    pub async fn serve(
        &self,
        verb: Verb,
        t: &RequestTarget,
        q: &Query,
        headers: &HeaderMap,
        body: Bytes,
        user: &UserInfo,
    ) -> Result<Response, ApiError> {
        let table = table::requested(headers, q);
        if matches!(verb, Verb::List | Verb::Watch) {
            crate::options::validate(q, verb == Verb::Watch)?;
        }
        // A custom resource: only its selectable fields, no new objects
        // while its CRD is deleted, and a deprecated version's warning.
        if let Some(c) = &t.rt.custom {
            if matches!(verb, Verb::List | Verb::Watch | Verb::DeleteCollection) {
                c.check_field_selector(q)?;
            }
            if c.terminating && verb == Verb::Create && t.subresource.is_none() {
                return Err(ApiError::MethodNotAllowed);
            }
            if let Some(w) = &c.warning {
                let resp = self
                    .serve_verb(verb, t, q, headers, body, user, table)
                    .await;
                return resp.map(|r| response::with_warnings(r, std::slice::from_ref(w)));
            }
        }
        self.serve_verb(verb, t, q, headers, body, user, table)
            .await
    }

    /// [`Registry::serve`] once the kind's own checks passed.
    #[allow(clippy::too_many_arguments)]
    async fn serve_verb(
        &self,
        verb: Verb,
        t: &RequestTarget,
        q: &Query,
        headers: &HeaderMap,
        body: Bytes,
        user: &UserInfo,
        table: Option<table::TableOpts>,
    ) -> Result<Response, ApiError> {
        let name = t.name.as_deref().unwrap_or_default();
        let managed;
        let q = if matches!(verb, Verb::Create | Verb::Update | Verb::Patch) {
            crate::fieldmanager::check_manager(q)?;
            managed = crate::fieldmanager::request_query(q, headers, t);
            &managed
        } else {
            q
        };
        match (verb, t.subresource) {
            (Verb::Create, Some(Subresource::Token)) => {
                self.create_token(t, name, headers, &body, user).await
            }
            (Verb::Create, None) if t.rt.create_only && t.rt.group == crate::authn::GROUP => {
                crate::authn::review::create(self, t, headers, &body, user).await
            }
            (_, None) if t.rt.create_only => Err(ApiError::MethodNotAllowed),
            (Verb::Create, Some(Subresource::Binding)) => self.bind(t, name, q, body, user).await,
            (Verb::Create, Some(Subresource::Eviction)) => self.evict(t, name, q, body, user).await,
            (Verb::Get, Some(Subresource::Scale)) => self.get_scale(t, name).await,
            (Verb::Update, Some(Subresource::Scale)) => {
                self.scale(t, name, q, false, headers, body, user).await
            }
            (Verb::Patch, Some(Subresource::Scale)) => {
                self.scale(t, name, q, true, headers, body, user).await
            }
            (Verb::Get, _) => self.get(t, name, q, table).await,
            (Verb::List, _) => self.list(t, q, table).await,
            (Verb::Watch, _) => self.watch(t, q, table).await,
            (Verb::Create, _) => self.create(t, q, headers, body, user).await,
            (Verb::Update, _) => self.update(t, name, q, headers, body, user).await,
            (Verb::Patch, _) => self.patch(t, name, q, headers, body, user).await,
            (Verb::Delete, _) => self.delete(t, name, q, body, user).await,
            (Verb::DeleteCollection, _) => self.delete_collection(t, q, body, user).await,
        }
    }

    /// A stored object; one that is not a JSON object (or whose `metadata`
    /// is not one), written around the API, is a 500 naming its key. Decoded
    /// as watch events decode it ([`prepared::stored`]).
    fn decode(&self, kv: &KeyValue) -> Result<Value, ApiError> {
        prepared::stored(kv, kv.mod_revision).map_err(|e| {
            ApiError::Internal(format!("stored object {} does not decode: {e}", kv.key))
        })
    }

    /// The object `name` now (a linearizable read, in the served form), or `NotFound`.
    async fn current(&self, t: &RequestTarget, name: &str) -> Result<(KeyValue, Value), ApiError> {
        let (kv, _) = self
            .storage
            .get(
                &t.rt.key(t.namespace.as_deref(), name),
                Consistency::Linearizable,
            )
            .await
            .map_err(|e| storage_error(t, name, e))?;
        let obj = t.rt.served(self.decode(&kv)?);
        Ok((kv, obj))
    }
}

/// The one mapping of a storage answer about object `name` of `t` to the
/// wire: the typed outcomes name the resource, everything else maps as the
/// storage error does on its own ([`crate::error`]).
fn storage_error(t: &RequestTarget, name: &str, e: StorageError) -> ApiError {
    match e {
        StorageError::NotFound { .. } => not_found(t, name),
        StorageError::AlreadyExists { .. } => ApiError::AlreadyExists {
            group: t.rt.group.clone(),
            resource: t.rt.plural.clone(),
            name: name.into(),
        },
        StorageError::Conflict { .. } => conflict(t, name),
        e => e.into(),
    }
}

fn not_found(t: &RequestTarget, name: &str) -> ApiError {
    ApiError::NotFound {
        group: t.rt.group.clone(),
        resource: t.rt.plural.clone(),
        name: name.into(),
    }
}

/// A write based on an object that has changed since (a resourceVersion
/// precondition, or contention that outlasted the retries).
fn conflict(t: &RequestTarget, name: &str) -> ApiError {
    ApiError::Conflict {
        group: t.rt.group.clone(),
        resource: t.rt.plural.clone(),
        name: name.into(),
        message: "the object has been modified; please apply your changes to the latest version and try again".into(),
    }
}
