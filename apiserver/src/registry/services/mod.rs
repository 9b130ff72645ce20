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
//! an address lives there. This module allocates a new Service's
//! addresses; `validate` checks what it asks for against the ranges,
//! `reserve` holds the store keys and `release` gives them back.

pub mod range;
mod release;
mod reserve;
mod validate;

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use serde_json::{Value, json};

use super::Registry;
use crate::error::{ApiError, Cause};
use range::ServiceNetwork;
use reserve::{ip_key, ip_object, port_key, port_object};
pub use validate::range_causes;

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
}

#[cfg(test)]
mod tests;
