//! The checks of a Service's requested cluster IP, families and node
//! ports against the configured ranges, made before any reservation
//! (on create and on every update) because they need no store read.

use serde_json::Value;

use super::range::ServiceNetwork;
use super::{service_type, str_at, wants_health_check};
use crate::error::Cause;

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
