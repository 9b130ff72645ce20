//! Cluster IPs and node ports of Services, unique across the cluster.
//!
//! A cluster IP is held by a `networking.k8s.io/v1` IPAddress object named
//! after the address, as Kubernetes 1.31+ holds it (`kubectl get
//! ipaddresses`); a node port by a reservation key under
//! [`NODE_PORT_PREFIX`]. Both are store creates that fail when the key
//! exists, so two members allocating at once never hand out the same
//! address: one create wins the Raft log, the other draws again. The
//! reservations are made before the Service is written and released when
//! that write fails, when the Service is removed (every path that removes
//! one calls [`Registry::release_service`]) and when an update drops them.
//! A reservation left behind by a crash between the two writes is taken
//! back the next time someone asks for that address or port, once its
//! owner does not hold it ([`STALE_AFTER`]).
//!
//! The ranges are [`range::ServiceNetwork`]; what is pure about choosing
//! an address lives there.

pub mod range;

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use serde_json::{Value, json};

use super::Registry;
use super::storage::{Consistency, KeyValue, Preconditions, RangeRequest, StorageError};
use crate::error::{ApiError, Cause};
use crate::meta;
use range::ServiceNetwork;

/// Where IPAddress objects live (the served kind's prefix).
pub const IP_PREFIX: &str = "/registry/networking.k8s.io/ipaddresses/";
/// Where node port reservations live (no served kind: Kubernetes keeps
/// them in a bitmap only the API server reads).
pub const NODE_PORT_PREFIX: &str = "/registry/keel.dev/servicenodeports/";
/// A reservation whose Service does not hold it is taken back only after
/// this many seconds, so a Service still being written keeps its own.
const STALE_AFTER: i64 = 30;
/// Draws before a dynamic allocation gives up on concurrent writers.
const ATTEMPTS: usize = 16;

/// What one call reserved, to release if the Service is not written.
#[derive(Debug, Default)]
pub struct Held {
    ips: Vec<Ipv4Addr>,
    ports: Vec<u16>,
}

/// Whether `t` is the core `services` resource.
pub fn is_service(t: &crate::request::RequestTarget) -> bool {
    t.rt.group.is_empty() && t.rt.plural == "services"
}

fn str_at<'a>(v: &'a Value, p: &str) -> &'a str {
    v.pointer(p).and_then(Value::as_str).unwrap_or("")
}

fn service_type(svc: &Value) -> &str {
    match str_at(svc, "/spec/type") {
        "" => "ClusterIP",
        t => t,
    }
}

/// Whether a Service of this type has node ports.
fn wants_node_ports(svc: &Value) -> bool {
    matches!(service_type(svc), "NodePort" | "LoadBalancer")
        && svc.pointer("/spec/allocateLoadBalancerNodePorts") != Some(&json!(false))
}

/// Whether a Service needs a health check node port (a LoadBalancer
/// with `externalTrafficPolicy: Local`).
fn wants_health_check(svc: &Value) -> bool {
    service_type(svc) == "LoadBalancer" && str_at(svc, "/spec/externalTrafficPolicy") == "Local"
}

/// The node ports `svc` holds (its ports' and its health check's).
fn node_ports(svc: &Value) -> BTreeSet<u16> {
    svc.pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| p.get("nodePort").and_then(Value::as_u64))
        .chain(
            svc.pointer("/spec/healthCheckNodePort")
                .and_then(Value::as_u64),
        )
        .filter_map(|n| u16::try_from(n).ok())
        .collect()
}

/// The (IPv4) cluster IPs `svc` holds.
fn cluster_ips(svc: &Value) -> BTreeSet<Ipv4Addr> {
    let mut ips: BTreeSet<Ipv4Addr> = svc
        .pointer("/spec/clusterIPs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str()?.parse().ok())
        .collect();
    ips.extend(str_at(svc, "/spec/clusterIP").parse::<Ipv4Addr>().ok());
    ips
}

fn invalid(name: &str, causes: Vec<Cause>) -> ApiError {
    ApiError::Invalid {
        group: String::new(),
        kind: "Service".into(),
        name: name.into(),
        causes,
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

/// The field errors of `svc`'s requested addresses and ports against
/// `net` that need no store read: an address that is not one, or outside
/// the range; a node port outside the range; families this cluster does
/// not serve. Run on create and on every update.
pub fn range_causes(net: &ServiceNetwork, svc: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let ip = str_at(svc, "/spec/clusterIP");
    let first = svc
        .pointer("/spec/clusterIPs/0")
        .and_then(Value::as_str)
        .unwrap_or("");
    if !ip.is_empty() && !first.is_empty() && ip != first {
        causes.push(Cause::invalid(
            "spec.clusterIPs[0]",
            format!("Invalid value: {first:?}: must match `clusterIP` when set"),
        ));
    }
    let ip = if ip.is_empty() { first } else { ip };
    if !ip.is_empty() && ip != "None" {
        match ip.parse::<std::net::IpAddr>() {
            Err(_) => causes.push(Cause::invalid(
                "spec.clusterIPs[0]",
                format!("Invalid value: {ip:?}: must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"),
            )),
            Ok(std::net::IpAddr::V6(_)) => causes.push(Cause::invalid(
                "spec.clusterIPs[0]",
                format!("Invalid value: {ip:?}: IPv6 is not configured on this cluster"),
            )),
            Ok(std::net::IpAddr::V4(v4)) if net.cidr.index(v4).is_none() => causes.push(
                Cause::invalid(
                    "spec.clusterIPs",
                    format!(
                        "Invalid value: []string{{{ip:?}}}: failed to allocate IP {ip}: the provided IP ({ip}) is not in the valid range. The range of valid IPs is {}",
                        net.cidr
                    ),
                ),
            ),
            Ok(_) => {}
        }
    }
    if ip == "None" && matches!(service_type(svc), "NodePort" | "LoadBalancer") {
        causes.push(Cause::invalid(
            "spec.clusterIPs[0]",
            format!(
                "Invalid value: \"None\": may not be set to 'None' for {} services",
                service_type(svc)
            ),
        ));
    }
    for (i, f) in svc
        .pointer("/spec/ipFamilies")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        if f != "IPv4" {
            causes.push(Cause::invalid(
                format!("spec.ipFamilies[{i}]"),
                format!("Invalid value: {f}: not configured on this cluster"),
            ));
        }
    }
    if str_at(svc, "/spec/ipFamilyPolicy") == "RequireDualStack" {
        causes.push(Cause::invalid(
            "spec.ipFamilyPolicy",
            "Invalid value: \"RequireDualStack\": this cluster is not configured for dual-stack services",
        ));
    }
    if let Some(hc) = svc
        .pointer("/spec/healthCheckNodePort")
        .and_then(Value::as_i64)
    {
        let range = i64::from(*net.node_ports.start())..=i64::from(*net.node_ports.end());
        if !wants_health_check(svc) {
            causes.push(Cause::invalid(
                "spec.healthCheckNodePort",
                format!("Invalid value: {hc}: may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'"),
            ));
        } else if !range.contains(&hc) {
            causes.push(Cause::invalid(
                "spec.healthCheckNodePort",
                format!(
                    "Invalid value: {hc}: provided port is not in the valid range. The range of valid ports is {}-{}",
                    net.node_ports.start(),
                    net.node_ports.end()
                ),
            ));
        }
    }
    for (i, p) in svc
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        if let Some(np) = p.get("nodePort").and_then(Value::as_i64)
            && !(i64::from(*net.node_ports.start())..=i64::from(*net.node_ports.end()))
                .contains(&np)
        {
            causes.push(Cause::invalid(
                format!("spec.ports[{i}].nodePort"),
                format!(
                    "Invalid value: {np}: provided port is not in the valid range. The range of valid ports is {}-{}",
                    net.node_ports.start(),
                    net.node_ports.end()
                ),
            ));
        }
    }
    causes
}

/// The family fields Kubernetes fills on a Service that has cluster IPs
/// (or is headless): single-stack IPv4 here.
fn fill_families(svc: &mut Value) {
    if svc.pointer("/spec/ipFamilies").is_none_or(Value::is_null) {
        svc["spec"]["ipFamilies"] = json!(["IPv4"]);
    }
    if svc
        .pointer("/spec/ipFamilyPolicy")
        .is_none_or(Value::is_null)
    {
        svc["spec"]["ipFamilyPolicy"] = json!("SingleStack");
    }
}

impl Registry {
    /// The ranges Services draw from.
    pub fn service_network(&self) -> ServiceNetwork {
        self.services.get().cloned().unwrap_or_default()
    }

    /// Set the ranges (once, at start: `--service-cluster-ip-range`,
    /// `--service-node-port-range`). False if already set.
    pub fn set_service_network(&self, net: ServiceNetwork) -> bool {
        self.services.set(net).is_ok()
    }

    /// Reserve what a new Service `svc` needs and write it into `svc`: a
    /// cluster IP (the one asked for, or a free one), the family fields,
    /// and a node port for each port of a NodePort or LoadBalancer Service.
    /// A refusal releases whatever this call had reserved.
    pub async fn allocate_service(
        &self,
        svc: &mut Value,
        actor: &keel_store::Actor,
    ) -> Result<Held, ApiError> {
        let net = self.service_network();
        let ns = str_at(svc, "/metadata/namespace").to_string();
        let name = str_at(svc, "/metadata/name").to_string();
        let causes = range_causes(&net, svc);
        if !causes.is_empty() {
            return Err(invalid(&name, causes));
        }
        let mut held = Held::default();
        match self
            .allocate_into(&net, svc, &ns, &name, actor, &mut held)
            .await
        {
            Ok(()) => Ok(held),
            Err(e) => {
                self.release(held, &ns, &name).await;
                Err(e)
            }
        }
    }

    async fn allocate_into(
        &self,
        net: &ServiceNetwork,
        svc: &mut Value,
        ns: &str,
        name: &str,
        actor: &keel_store::Actor,
        held: &mut Held,
    ) -> Result<(), ApiError> {
        if service_type(svc) != "ExternalName" {
            let asked = match str_at(svc, "/spec/clusterIP") {
                "" => svc
                    .pointer("/spec/clusterIPs/0")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                ip => ip.to_string(),
            };
            let ip = match asked.as_str() {
                "None" => None,
                "" => Some(self.reserve_free_ip(net, ns, name, actor).await?),
                ip => {
                    let ip: Ipv4Addr = ip.parse().map_err(|_| {
                        ApiError::Internal(format!("cluster IP {ip:?} passed validation"))
                    })?;
                    if !self
                        .reserve(&ip_key(ip), ip_object(ip, ns, name), actor)
                        .await?
                    {
                        return Err(invalid(
                            name,
                            vec![Cause::invalid(
                                "spec.clusterIPs",
                                format!(
                                    "Invalid value: []string{{\"{ip}\"}}: failed to allocate IP {ip}: provided IP is already allocated"
                                ),
                            )],
                        ));
                    }
                    Some(ip)
                }
            };
            let shown = ip.map_or("None".to_string(), |ip| ip.to_string());
            if let Some(ip) = ip {
                held.ips.push(ip);
            }
            svc["spec"]["clusterIP"] = json!(shown);
            svc["spec"]["clusterIPs"] = json!([shown]);
            fill_families(svc);
        }
        if !wants_node_ports(svc) && !wants_health_check(svc) {
            return Ok(());
        }
        // Ports asked for by number first, so a dynamic one never takes them.
        let asked = node_ports(svc);
        for (i, port) in asked.iter().enumerate() {
            if !self
                .reserve(&port_key(*port), port_object(*port, ns, name), actor)
                .await?
            {
                let at = svc
                    .pointer("/spec/ports")
                    .and_then(Value::as_array)
                    .and_then(|ps| {
                        ps.iter()
                            .position(|p| p.get("nodePort") == Some(&json!(port)))
                    });
                let field = match at {
                    Some(at) => format!("spec.ports[{at}].nodePort"),
                    None if svc.pointer("/spec/healthCheckNodePort") == Some(&json!(port)) => {
                        "spec.healthCheckNodePort".to_string()
                    }
                    None => format!("spec.ports[{i}].nodePort"),
                };
                return Err(invalid(
                    name,
                    vec![Cause::invalid(
                        field,
                        format!("Invalid value: {port}: provided port is already allocated"),
                    )],
                ));
            }
            held.ports.push(*port);
        }
        let count = svc
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        for i in 0..count {
            if !wants_node_ports(svc)
                || svc["spec"]["ports"][i]
                    .get("nodePort")
                    .is_some_and(|n| !n.is_null())
            {
                continue;
            }
            let port = self.reserve_free_port(net, ns, name, actor).await?;
            held.ports.push(port);
            svc["spec"]["ports"][i]["nodePort"] = json!(port);
        }
        if wants_health_check(svc)
            && svc
                .pointer("/spec/healthCheckNodePort")
                .is_none_or(Value::is_null)
        {
            let port = self.reserve_free_port(net, ns, name, actor).await?;
            held.ports.push(port);
            svc["spec"]["healthCheckNodePort"] = json!(port);
        }
        Ok(())
    }

    /// Create the reservation `key` as `value`; false if it is held by a
    /// live owner. One that its owner no longer holds is taken back.
    async fn reserve(
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
    async fn reserve_free_ip(
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
    async fn reserve_free_port(
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
        for _ in 0..super::storage::MAX_UPDATE_ATTEMPTS {
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

fn ip_key(ip: Ipv4Addr) -> String {
    format!("{IP_PREFIX}{ip}")
}

fn port_key(port: u16) -> String {
    format!("{NODE_PORT_PREFIX}{port}")
}

/// The IPAddress object that holds `ip` for Service `ns/name`, as
/// Kubernetes' allocator writes it.
fn ip_object(ip: Ipv4Addr, ns: &str, name: &str) -> Value {
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
fn port_object(port: u16, ns: &str, name: &str) -> Value {
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

#[cfg(test)]
mod tests;
