//! The CRD controller every API server member runs: it lists and watches
//! the stored CRDs (from the registry's storage, as the RBAC index does),
//! and after each change
//!
//! 1. computes each CRD's status ([`super::status::desired`]) in creation
//!    order, so that of two CRDs asking for one name the older gets it;
//! 2. serves the CRDs that status says are `Established` (one kind per
//!    served version, rebuilt when the CRD changes, swapped into the kind
//!    table at once), and stops serving the others — before writing the
//!    status, so a client that reads `Established` finds the kind here;
//! 3. writes the statuses that differ from the stored ones: every member
//!    computes the same status from the same store, so a status is written
//!    once and the others find nothing to do;
//! 4. starts the cleanup of CRDs being deleted ([`super::cleanup`]).
//!
//! Started before the first request, it also serves the CRDs stored
//! before a restart as soon as its first list returns.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, header};
use futures::StreamExt;
use serde_json::Value;

use super::{cleanup, resource, status};
use crate::error::ApiError;
use crate::http::auth::UserInfo;
use crate::kinds::{ResourceType, Subresource};
use crate::registry::Registry;
use crate::registry::storage::{Consistency, RangeRequest, StorageError, WatchMessage};
use crate::request::{Query, RequestTarget, Verb};

/// Pause after a failed list or watch (no leader yet, a watch cut off).
const RETRY: Duration = Duration::from_millis(200);

/// The CRD kind's group, version and plural.
pub const CRD: (&str, &str, &str) = ("apiextensions.k8s.io", "v1", "customresourcedefinitions");

/// The field manager of the server's own CRD writes, as in Kubernetes.
const MANAGER: &str = "kube-apiserver";

/// Serve the stored CRDs for as long as the registry's storage runs.
pub fn start(registry: &Arc<Registry>) {
    let Some(rt) = registry.kinds.find(CRD.0, CRD.1, CRD.2) else {
        return;
    };
    let c = Controller {
        registry: registry.clone(),
        builtin: crate::kinds::builtin(),
        crd_rt: rt,
        crds: BTreeMap::new(),
        served: HashMap::new(),
        cleanups: Arc::default(),
    };
    tokio::spawn(c.run());
}

/// A served kind's group, version and plural.
type KindKey = (String, String, String);

struct Controller {
    registry: Arc<Registry>,
    /// The built-in kinds, whose names CRDs of their groups may not take.
    builtin: Vec<ResourceType>,
    crd_rt: Arc<ResourceType>,
    /// The stored CRDs by name, as last seen.
    crds: BTreeMap<String, Value>,
    /// Served CRDs: the resourceVersion the kinds were built from, and the
    /// kinds.
    served: HashMap<String, (String, Vec<KindKey>)>,
    /// CRDs whose cleanup runs on this member.
    cleanups: Arc<Mutex<HashSet<String>>>,
}

impl Controller {
    async fn run(mut self) {
        let prefix = self.crd_rt.prefix(None);
        let storage = self.registry.storage.clone();
        let mut at: Option<u64> = None;
        while storage.is_running() {
            let after = match at {
                Some(rev) => rev,
                None => match self.list(&prefix).await {
                    Ok(rev) => rev,
                    Err(e) => {
                        tracing::debug!(error = %e, "CRD controller: list failed, retrying");
                        tokio::time::sleep(RETRY).await;
                        continue;
                    }
                },
            };
            at = Some(after);
            self.reconcile().await;
            let mut stream = match storage.watch(&prefix, after).await {
                Ok(s) => s,
                Err(e) => {
                    if matches!(
                        e,
                        StorageError::Compacted { .. } | StorageError::FutureRevision { .. }
                    ) {
                        at = None;
                    }
                    tracing::debug!(error = %e, "CRD controller: watch failed, retrying");
                    tokio::time::sleep(RETRY).await;
                    continue;
                }
            };
            while let Some(msg) = stream.next().await {
                match msg {
                    Ok(WatchMessage::Events { revision, events }) => {
                        for e in events {
                            let name = e.key.rsplit('/').next().unwrap_or("").to_string();
                            match e
                                .value
                                .as_ref()
                                .map(|kv| crate::registry::prepared::stored(kv, kv.mod_revision))
                            {
                                Some(Ok(obj)) => {
                                    self.crds.insert(name, obj);
                                }
                                Some(Err(err)) => {
                                    tracing::warn!(crd = %name, error = %err, "a stored CRD does not decode");
                                    self.crds.remove(&name);
                                }
                                None => {
                                    self.crds.remove(&name);
                                }
                            }
                        }
                        at = Some(revision);
                        self.reconcile().await;
                    }
                    Ok(WatchMessage::Progress { revision }) => at = Some(revision.max(after)),
                    Err(e) => {
                        if matches!(e, StorageError::Compacted { .. }) {
                            at = None;
                        }
                        tracing::debug!(error = %e, "CRD controller: watch ended, resuming");
                        break;
                    }
                }
            }
            tokio::time::sleep(RETRY).await;
        }
    }

    /// Read every CRD; the revision read at.
    async fn list(&mut self, prefix: &str) -> Result<u64, StorageError> {
        let mut req = RangeRequest::prefix(prefix.to_string());
        req.consistency = Consistency::Linearizable;
        let mut crds = BTreeMap::new();
        let mut revision = None;
        loop {
            let resp = self.registry.storage.list(req.clone()).await?;
            revision.get_or_insert(resp.revision);
            for kv in &resp.kvs {
                let name = kv.key.rsplit('/').next().unwrap_or("").to_string();
                match crate::registry::prepared::stored(kv, kv.mod_revision) {
                    Ok(obj) => {
                        crds.insert(name, obj);
                    }
                    Err(e) => {
                        tracing::warn!(crd = %name, error = %e, "a stored CRD does not decode")
                    }
                }
            }
            match resp.continue_token {
                Some(t) => {
                    req.continue_token = Some(t);
                    req.revision = None;
                }
                None => break,
            }
        }
        self.crds = crds;
        Ok(revision.unwrap_or_default())
    }

    async fn reconcile(&mut self) {
        let (view, writes) = self.desired();
        // Served before its status says so: a client that sees
        // `Established` finds the kind on this member.
        self.serve(&view);
        self.write_statuses(writes).await;
        self.start_cleanups();
    }

    /// The CRDs with the status each should have (older CRDs claim names
    /// first), and those whose stored status differs.
    fn desired(&self) -> (BTreeMap<String, Value>, Vec<Value>) {
        let now = crate::meta::rfc3339(crate::meta::now_secs());
        let mut order: Vec<(String, String)> = self
            .crds
            .iter()
            .map(|(name, c)| {
                let created = c
                    .pointer("/metadata/creationTimestamp")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                (created, name.clone())
            })
            .collect();
        order.sort();
        // The status each CRD will have: later ones see the names earlier
        // ones claim in this round.
        let mut view = self.crds.clone();
        let mut writes = Vec::new();
        for (_, name) in order {
            let Some(crd) = view.get(&name) else { continue };
            let group = crd
                .pointer("/spec/group")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let mut others = status::Claimed::builtin(&group, &self.builtin);
            for (other, c) in &view {
                if *other != name
                    && c.pointer("/spec/group").and_then(Value::as_str) == Some(&group)
                {
                    others.add_accepted(c);
                }
            }
            let desired = status::desired(crd, &others, &now);
            if crd.get("status") != Some(&desired) {
                let mut next = crd.clone();
                next["status"] = desired;
                writes.push(next.clone());
                view.insert(name, next);
            }
        }
        (view, writes)
    }

    /// Write the statuses `desired` found wrong.
    async fn write_statuses(&self, writes: Vec<Value>) {
        for crd in writes {
            let name = crd["metadata"]["name"].as_str().unwrap_or("").to_string();
            match write_status(&self.registry, &self.crd_rt, &crd).await {
                Ok(()) => tracing::info!(crd = %name, "CRD status written"),
                // Changed meanwhile: the watch brings the new one, and this
                // runs again.
                Err(ApiError::Conflict { .. } | ApiError::NotFound { .. }) => {}
                Err(e) => tracing::warn!(crd = %name, error = %e, "cannot write a CRD's status"),
            }
        }
    }

    /// Serve the CRDs of `view` that are established, and only them.
    fn serve(&mut self, view: &BTreeMap<String, Value>) {
        let kinds = &self.registry.kinds;
        let gone: Vec<String> = self
            .served
            .keys()
            .filter(|n| !view.get(*n).is_some_and(status::is_served))
            .cloned()
            .collect();
        for name in gone {
            if let Some((_, keys)) = self.served.remove(&name) {
                let _ = kinds.replace(&keys, vec![]);
                tracing::info!(crd = %name, "custom resources no longer served");
            }
        }
        for (name, crd) in view {
            if !status::is_served(crd) {
                continue;
            }
            let rv = crd
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            if self.served.get(name).is_some_and(|(r, _)| *r == rv) {
                continue;
            }
            let old = self
                .served
                .get(name)
                .map(|(_, k)| k.clone())
                .unwrap_or_default();
            match resource::resource_types(crd) {
                Ok(types) => {
                    let keys: Vec<KindKey> = types
                        .iter()
                        .map(|t| (t.group.clone(), t.version.clone(), t.plural.clone()))
                        .collect();
                    match kinds.replace(&old, types) {
                        Ok(()) => {
                            if old.is_empty() {
                                tracing::info!(crd = %name, "custom resources served");
                            }
                            self.served.insert(name.clone(), (rv, keys));
                        }
                        Err(e) => {
                            tracing::warn!(crd = %name, error = %e, "cannot serve a CRD");
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(crd = %name, error = %e, "cannot serve a CRD");
                    let _ = kinds.replace(&old, vec![]);
                    self.served.remove(name);
                }
            }
        }
    }

    /// Start the cleanup of each CRD being deleted that still has its
    /// finalizer, once per member.
    fn start_cleanups(&self) {
        for (name, crd) in &self.crds {
            let deleting = crd
                .pointer("/metadata/deletionTimestamp")
                .is_some_and(|d| !d.is_null());
            let held = crd
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .is_some_and(|f| f.iter().any(|x| x == status::FINALIZER));
            if !deleting || !held {
                continue;
            }
            let mut running = self.cleanups.lock().unwrap_or_else(|p| p.into_inner());
            if running.insert(name.clone()) {
                let (registry, rt, name, set) = (
                    self.registry.clone(),
                    self.crd_rt.clone(),
                    name.clone(),
                    self.cleanups.clone(),
                );
                tokio::spawn(async move {
                    cleanup::run(&registry, &rt, &name).await;
                    set.lock().unwrap_or_else(|p| p.into_inner()).remove(&name);
                });
            }
        }
    }
}

/// The identity of the server's own writes.
pub fn apiserver() -> UserInfo {
    UserInfo {
        name: "system:apiserver".into(),
        groups: vec!["system:masters".into()],
        ..UserInfo::default()
    }
}

fn json_headers(ct: &'static str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    h
}

fn manager() -> Query {
    Query::from([("fieldManager".to_string(), MANAGER.to_string())])
}

/// PUT `crd`'s status; its resourceVersion is the precondition.
pub async fn write_status(
    registry: &Registry,
    rt: &Arc<ResourceType>,
    crd: &Value,
) -> Result<(), ApiError> {
    let name = crd["metadata"]["name"].as_str().unwrap_or("").to_string();
    let t = RequestTarget {
        rt: rt.clone(),
        namespace: None,
        name: Some(name),
        subresource: Some(Subresource::Status),
    };
    registry
        .serve(
            Verb::Update,
            &t,
            &manager(),
            &json_headers("application/json"),
            Bytes::from(crd.to_string()),
            &apiserver(),
        )
        .await
        .map(|_| ())
}

/// A JSON merge patch of the CRD itself (not its status).
pub async fn patch(
    registry: &Registry,
    rt: &Arc<ResourceType>,
    name: &str,
    body: &Value,
) -> Result<(), ApiError> {
    let t = RequestTarget {
        rt: rt.clone(),
        namespace: None,
        name: Some(name.to_string()),
        subresource: None,
    };
    registry
        .serve(
            Verb::Patch,
            &t,
            &manager(),
            &json_headers("application/merge-patch+json"),
            Bytes::from(body.to_string()),
            &apiserver(),
        )
        .await
        .map(|_| ())
}

/// The CRD `name` now, `None` when it is gone.
pub async fn read(
    registry: &Registry,
    rt: &ResourceType,
    name: &str,
) -> Result<Option<Value>, ApiError> {
    match registry
        .storage
        .get(&rt.key(None, name), Consistency::Linearizable)
        .await
    {
        Ok((kv, _)) => crate::registry::prepared::stored(&kv, kv.mod_revision)
            .map(Some)
            .map_err(|e| ApiError::Internal(format!("the CRD {name} does not decode: {e}"))),
        Err(StorageError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}
