//! Reservations in the store: one key per cluster IP (an IPAddress
//! object) or node port, created only if absent so concurrent allocators
//! never share one, and taken back when left behind by a crash.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use serde_json::{Value, json};

use super::range::{self, ServiceNetwork};
use super::{ATTEMPTS, IP_PREFIX, NODE_PORT_PREFIX, STALE_AFTER, cluster_ips, node_ports, str_at};
use crate::error::ApiError;
use crate::meta;
use crate::registry::Registry;
use crate::registry::storage::{Consistency, Preconditions, RangeRequest, StorageError};

impl Registry {
    /// Create the reservation `key` as `value`; false if it is held by a
    /// live owner. One that its owner no longer holds is taken back.
    pub(super) async fn reserve(
        &self,
        key: &str,
        value: Value,
        actor: &keel_store::Actor,
    ) -> Result<bool, ApiError> {
        for _ in 0..2 {
            let uid = value
                .pointer("/metadata/uid")
                .and_then(Value::as_str)
                .map(String::from);
            match self
                .storage
                .create(key, value.to_string().into_bytes(), uid, actor)
                .await
            {
                Ok(_) => return Ok(true),
                Err(StorageError::AlreadyExists { .. }) => {
                    if !self.take_back_stale(key, actor).await? {
                        return Ok(false);
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(false)
    }

    /// A free cluster IP, reserved for `ns/name`.
    pub(super) async fn reserve_free_ip(
        &self,
        net: &ServiceNetwork,
        ns: &str,
        name: &str,
        actor: &keel_store::Actor,
    ) -> Result<Ipv4Addr, ApiError> {
        let mut used: BTreeSet<u32> = self
            .reserved_names(IP_PREFIX)
            .await?
            .iter()
            .filter_map(|n| net.cidr.index(n.parse().ok()?))
            .collect();
        for _ in 0..ATTEMPTS {
            let Some(i) = range::pick_free(net.cidr.usable(), net.cidr.lower_band(), &used, draw())
            else {
                break;
            };
            let ip = net.cidr.nth(i);
            if self
                .reserve(&ip_key(ip), ip_object(ip, ns, name), actor)
                .await?
            {
                return Ok(ip);
            }
            used.insert(i);
        }
        Err(ApiError::Internal(
            "failed to allocate a serviceIP: range is full".into(),
        ))
    }

    /// A free node port, reserved for `ns/name`.
    pub(super) async fn reserve_free_port(
        &self,
        net: &ServiceNetwork,
        ns: &str,
        name: &str,
        actor: &keel_store::Actor,
    ) -> Result<u16, ApiError> {
        let lo = *net.node_ports.start();
        let size = u32::from(*net.node_ports.end() - lo) + 1;
        let mut used: BTreeSet<u32> = self
            .reserved_names(NODE_PORT_PREFIX)
            .await?
            .iter()
            .filter_map(|n| n.parse::<u16>().ok())
            .filter(|p| net.node_ports.contains(p))
            .map(|p| u32::from(p - lo))
            .collect();
        for _ in 0..ATTEMPTS {
            let Some(i) = range::pick_free(size, 0, &used, draw()) else {
                break;
            };
            let port = lo + i as u16;
            if self
                .reserve(&port_key(port), port_object(port, ns, name), actor)
                .await?
            {
                return Ok(port);
            }
            used.insert(i);
        }
        Err(ApiError::Internal(
            "failed to allocate a nodePort: range is full".into(),
        ))
    }

    /// The names (last key segments) of the reservations under `prefix`.
    async fn reserved_names(&self, prefix: &str) -> Result<Vec<String>, ApiError> {
        let mut names = Vec::new();
        let mut req = RangeRequest::prefix(prefix);
        loop {
            let resp = self.storage.list(req.clone()).await?;
            names.extend(
                resp.kvs
                    .iter()
                    .filter_map(|kv| kv.key.strip_prefix(prefix).map(String::from)),
            );
            match resp.continue_token {
                Some(token) => {
                    req.continue_token = Some(token);
                    req.revision = None;
                }
                None => return Ok(names),
            }
        }
    }

    /// Whether the reservation at `key` was left behind (its Service is
    /// gone or holds something else, and it is older than [`STALE_AFTER`]);
    /// if so it is deleted and true returned.
    async fn take_back_stale(
        &self,
        key: &str,
        actor: &keel_store::Actor,
    ) -> Result<bool, ApiError> {
        let kv = match self.storage.get(key, Consistency::Linearizable).await {
            Ok((kv, _)) => kv,
            Err(StorageError::NotFound { .. }) => return Ok(true),
            Err(e) => return Err(e.into()),
        };
        let Ok(r) = serde_json::from_slice::<Value>(&kv.value) else {
            return Ok(false);
        };
        let age = meta::parse_rfc3339(str_at(&r, "/metadata/creationTimestamp"))
            .map_or(i64::MAX, |t| meta::now_secs() - t);
        if age < STALE_AFTER || self.owner_holds(key, &r).await? {
            return Ok(false);
        }
        tracing::info!(key, "taking back a reservation its Service does not hold");
        let pre = Preconditions::uid(str_at(&r, "/metadata/uid"));
        match self.storage.delete(key, pre, actor).await {
            Ok(_) | Err(StorageError::NotFound { .. }) => Ok(true),
            Err(StorageError::Conflict { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether the Service a reservation names holds what it reserves.
    async fn owner_holds(&self, key: &str, r: &Value) -> Result<bool, ApiError> {
        let Some(rt) = self.kinds.find("", "v1", "services") else {
            return Ok(true);
        };
        let parent = r.pointer("/spec/parentRef").unwrap_or(&Value::Null);
        let svc_key = rt.key(Some(str_at(parent, "/namespace")), str_at(parent, "/name"));
        let svc = match self.storage.get(&svc_key, Consistency::Linearizable).await {
            Ok((kv, _)) => serde_json::from_slice::<Value>(&kv.value).unwrap_or_default(),
            Err(StorageError::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        let name = str_at(r, "/metadata/name");
        Ok(if key.starts_with(IP_PREFIX) {
            name.parse().is_ok_and(|ip| cluster_ips(&svc).contains(&ip))
        } else {
            name.parse().is_ok_and(|p| node_ports(&svc).contains(&p))
        })
    }
}

/// A random number from the OS-seeded hasher (no RNG crate needed for a
/// starting point of a scan).
fn draw() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(meta::now_secs() as u64);
    h.finish() as u32
}

pub(super) fn ip_key(ip: Ipv4Addr) -> String {
    format!("{IP_PREFIX}{ip}")
}

pub(super) fn port_key(port: u16) -> String {
    format!("{NODE_PORT_PREFIX}{port}")
}

/// The IPAddress object that holds `ip` for Service `ns/name`, as
/// Kubernetes' allocator writes it.
pub(super) fn ip_object(ip: Ipv4Addr, ns: &str, name: &str) -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IPAddress",
        "metadata": {
            "name": ip.to_string(),
            "uid": meta::new_uid(),
            "generation": 1,
            "creationTimestamp": meta::rfc3339(meta::now_secs()),
            "labels": {
                "ipaddress.kubernetes.io/ip-family": "IPv4",
                "ipaddress.kubernetes.io/managed-by": "ipallocator.k8s.io",
            },
        },
        "spec": {"parentRef": {"group": "", "resource": "services", "namespace": ns, "name": name}},
    })
}

/// The reservation of node port `port` for Service `ns/name` (shaped as
/// an object, though no kind serves it, so tools that read keys decode it).
pub(super) fn port_object(port: u16, ns: &str, name: &str) -> Value {
    json!({
        "apiVersion": "keel.dev/v1",
        "kind": "NodePortReservation",
        "metadata": {
            "name": port.to_string(),
            "uid": meta::new_uid(),
            "creationTimestamp": meta::rfc3339(meta::now_secs()),
        },
        "spec": {"parentRef": {"group": "", "resource": "services", "namespace": ns, "name": name}},
    })
}
