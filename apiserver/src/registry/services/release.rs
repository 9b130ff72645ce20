//! Giving reservations back: what a failed write held, what a removed
//! Service held, and what an update dropped (with the node ports an
//! update to NodePort still lacks allocated in a second write).

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::reserve::{ip_key, port_key, port_object};
use super::{Held, cluster_ips, node_ports, str_at, wants_health_check, wants_node_ports};
use crate::error::ApiError;
use crate::registry::Registry;
use crate::registry::storage::{
    Consistency, KeyValue, MAX_UPDATE_ATTEMPTS, Preconditions, StorageError,
};

impl Registry {
    /// Release what `held` reserved for `ns/name` (best effort: a failure
    /// leaves a reservation the next asker takes back).
    pub async fn release(&self, held: Held, ns: &str, name: &str) {
        let keys = held
            .ips
            .into_iter()
            .map(ip_key)
            .chain(held.ports.into_iter().map(port_key));
        for key in keys {
            self.release_key(&key, ns, name).await;
        }
    }

    /// Delete the reservation `key` if `ns/name` holds it.
    async fn release_key(&self, key: &str, ns: &str, name: &str) {
        let Ok((kv, _)) = self.storage.get(key, Consistency::Linearizable).await else {
            return;
        };
        let Some(uid) = owned_by(&kv, ns, name) else {
            return;
        };
        let actor = keel_store::Actor {
            user: "system:apiserver".into(),
            groups: vec!["system:masters".into()],
        };
        if let Err(e) = self
            .storage
            .delete(key, Preconditions::uid(uid), &actor)
            .await
        {
            tracing::debug!(key, error = %e, "reservation not released");
        }
    }

    /// A Service was removed: its cluster IP and node ports are free again.
    pub async fn release_service(&self, svc: &Value) {
        let (ns, name) = (
            str_at(svc, "/metadata/namespace"),
            str_at(svc, "/metadata/name"),
        );
        let held = Held {
            ips: cluster_ips(svc).into_iter().collect(),
            ports: node_ports(svc).into_iter().collect(),
        };
        self.release(held, ns, name).await;
    }

    /// A Service was updated from `old` to `new`: node ports it no longer
    /// has are released, new ones reserved, and ports a NodePort Service
    /// still lacks (a type changed to NodePort) allocated and written.
    pub async fn after_service_update(&self, old: &Value, new: &Value, actor: &keel_store::Actor) {
        let (ns, name) = (
            str_at(new, "/metadata/namespace"),
            str_at(new, "/metadata/name"),
        );
        let before = node_ports(old);
        let keep = if wants_node_ports(new) || wants_health_check(new) {
            node_ports(new)
        } else {
            BTreeSet::new()
        };
        let dropped = Held {
            ips: cluster_ips(old)
                .difference(&cluster_ips(new))
                .copied()
                .collect(),
            ports: before.difference(&keep).copied().collect(),
        };
        self.release(dropped, ns, name).await;
        for port in keep.difference(&before) {
            match self
                .reserve(&port_key(*port), port_object(*port, ns, name), actor)
                .await
            {
                Ok(true) => {}
                Ok(false) => tracing::warn!(
                    namespace = ns,
                    service = name,
                    port,
                    "node port set by an update is held by another Service"
                ),
                Err(e) => {
                    tracing::warn!(namespace = ns, service = name, port, error = %e, "node port set by an update not reserved")
                }
            }
        }
        if wants_node_ports(new)
            && let Err(e) = self.fill_node_ports(ns, name, actor).await
        {
            tracing::warn!(namespace = ns, service = name, error = %e, "node ports not allocated");
        }
    }

    /// Give every port of the NodePort Service `ns/name` that has none a
    /// node port (a second write after an update changed its type).
    async fn fill_node_ports(
        &self,
        ns: &str,
        name: &str,
        actor: &keel_store::Actor,
    ) -> Result<(), ApiError> {
        let Some(rt) = self.kinds.find("", "v1", "services") else {
            return Ok(());
        };
        let key = rt.key(Some(ns), name);
        let net = self.service_network();
        for _ in 0..MAX_UPDATE_ATTEMPTS {
            let (kv, _) = self.storage.get(&key, Consistency::Linearizable).await?;
            let mut svc: Value = serde_json::from_slice(&kv.value).map_err(|e| {
                ApiError::Internal(format!("stored Service {key} does not decode: {e}"))
            })?;
            if !wants_node_ports(&svc) {
                return Ok(());
            }
            let missing: Vec<usize> = svc["spec"]["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
                .filter(|(_, p)| p.get("nodePort").is_none_or(Value::is_null))
                .map(|(i, _)| i)
                .collect();
            if missing.is_empty() {
                return Ok(());
            }
            let mut held = Held::default();
            for i in &missing {
                let port = match self.reserve_free_port(&net, ns, name, actor).await {
                    Ok(p) => p,
                    Err(e) => {
                        self.release(held, ns, name).await;
                        return Err(e);
                    }
                };
                held.ports.push(port);
                svc["spec"]["ports"][*i]["nodePort"] = json!(port);
            }
            if let Some(m) = svc["metadata"].as_object_mut() {
                m.remove("resourceVersion");
            }
            let pre = Preconditions::mod_revision(kv.mod_revision);
            match self
                .storage
                .update(&key, svc.to_string().into_bytes(), pre, actor)
                .await
            {
                Ok(_) => return Ok(()),
                Err(StorageError::Conflict { .. }) => self.release(held, ns, name).await,
                Err(e) => {
                    self.release(held, ns, name).await;
                    return Err(e.into());
                }
            }
        }
        Ok(())
    }
}

/// The uid of the reservation at `kv` if `ns/name` holds it.
fn owned_by(kv: &KeyValue, ns: &str, name: &str) -> Option<String> {
    let r: Value = serde_json::from_slice(&kv.value).ok()?;
    let p = r.pointer("/spec/parentRef")?;
    (str_at(p, "/namespace") == ns && str_at(p, "/name") == name)
        .then(|| str_at(&r, "/metadata/uid").to_string())
}
