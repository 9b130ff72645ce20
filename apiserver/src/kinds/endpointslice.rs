//! `discovery.k8s.io/v1` EndpointSlices: Kubernetes' validation (address
//! type fixed at creation, addresses of that type, at most 1000 endpoints
//! and 100 ports) and the columns `kubectl get endpointslices` prints.
//! The endpointslice controller writes them for Services; anyone may.

use k8s_openapi::api::discovery::v1 as discovery;
use serde_json::{Value, json};

use super::fields::{array_at, one_of, str_at, tcp_by_default};
use super::{Column, ResourceType, Strategy};
use crate::error::Cause;
use crate::meta;

/// The most endpoints and ports one slice may hold (Kubernetes' limits).
const MAX_ENDPOINTS: usize = 1000;
const MAX_PORTS: usize = 20000;
const MAX_ADDRESSES: usize = 100;

/// The `discovery.k8s.io` kinds.
pub fn kinds() -> Vec<ResourceType> {
    vec![ResourceType::of::<discovery::EndpointSlice>().strategy(EndpointSliceStrategy)]
}

struct EndpointSliceStrategy;
impl Strategy for EndpointSliceStrategy {
    fn prepare_create(&self, obj: &mut Value) {
        tcp_by_default(obj);
    }
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        validate_slice(obj)
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        Cause::immutable(new, old, "/addressType", "addressType")
            .into_iter()
            .collect()
    }
    fn columns(&self) -> Vec<Column> {
        vec![
            Column::new("AddressType", "The type of addresses of this slice"),
            Column::new("Ports", "The ports of this slice"),
            Column::new("Endpoints", "The addresses of this slice's endpoints"),
        ]
    }
    fn cells(&self, obj: &Value) -> Vec<Value> {
        vec![
            json!(str_at(obj, "/addressType").unwrap_or("<none>")),
            json!(ports_cell(obj)),
            json!(endpoints_cell(obj)),
        ]
    }
}

/// The first three of `items`, then `+ N more...`; `<unset>` when empty
/// (kubectl's `listWithMoreString`).
fn first_three(items: Vec<String>) -> String {
    let n = items.len();
    if n == 0 {
        return "<unset>".into();
    }
    let shown = items.into_iter().take(3).collect::<Vec<_>>().join(",");
    if n > 3 {
        format!("{shown} + {} more...", n - 3)
    } else {
        shown
    }
}

fn ports_cell(obj: &Value) -> String {
    first_three(
        array_at(obj, "/ports")
            .iter()
            .map(
                |p| match (p.get("port").and_then(Value::as_i64), str_at(p, "/name")) {
                    (Some(n), _) => n.to_string(),
                    (None, Some(name)) if !name.is_empty() => name.to_string(),
                    _ => "*".into(),
                },
            )
            .collect(),
    )
}

fn endpoints_cell(obj: &Value) -> String {
    first_three(
        array_at(obj, "/endpoints")
            .iter()
            .flat_map(|e| array_at(e, "/addresses"))
            .filter_map(|a| a.as_str().map(str::to_string))
            .collect(),
    )
}

/// Whether `a` is an address of `kind` (IPv4, IPv6 or FQDN).
fn address_error(kind: &str, a: &str) -> Option<String> {
    match kind {
        "IPv4" => a
            .parse::<std::net::Ipv4Addr>()
            .is_err()
            .then(|| "must be a valid IPv4 address".to_string()),
        "IPv6" => a
            .parse::<std::net::Ipv6Addr>()
            .is_err()
            .then(|| "must be a valid IPv6 address".to_string()),
        _ => meta::dns1123_subdomain(a),
    }
}

fn validate_slice(obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let types = ["IPv4", "IPv6", "FQDN"];
    let kind = match str_at(obj, "/addressType") {
        None | Some("") => {
            causes.push(Cause::required("addressType"));
            ""
        }
        Some(k) if !types.contains(&k) => {
            causes.push(Cause::not_supported("addressType", k, &types));
            ""
        }
        Some(k) => k,
    };
    let endpoints = array_at(obj, "/endpoints");
    if endpoints.len() > MAX_ENDPOINTS {
        causes.push(Cause::invalid(
            "endpoints",
            format!(
                "Too many: {}: must have at most {MAX_ENDPOINTS} items",
                endpoints.len()
            ),
        ));
    }
    for (i, e) in endpoints.iter().enumerate() {
        let at = format!("endpoints[{i}]");
        let addresses = array_at(e, "/addresses");
        if addresses.is_empty() {
            causes.push(Cause::required(format!("{at}.addresses")));
        } else if addresses.len() > MAX_ADDRESSES {
            causes.push(Cause::invalid(
                format!("{at}.addresses"),
                format!(
                    "Too many: {}: must have at most {MAX_ADDRESSES} items",
                    addresses.len()
                ),
            ));
        }
        for (j, a) in addresses.iter().enumerate() {
            let a = a.as_str().unwrap_or_default();
            if let Some(m) = address_error(kind, a).filter(|_| !kind.is_empty()) {
                causes.push(Cause::invalid(
                    format!("{at}.addresses[{j}]"),
                    format!("Invalid value: {a:?}: {m}"),
                ));
            }
        }
        if let Some(h) = str_at(e, "/hostname")
            && let Some(m) = meta::dns1123_label(h)
        {
            causes.push(Cause::invalid(
                format!("{at}.hostname"),
                format!("Invalid value: {h:?}: {m}"),
            ));
        }
        if let Some(n) = str_at(e, "/nodeName")
            && let Some(m) = meta::dns1123_subdomain(n)
        {
            causes.push(Cause::invalid(
                format!("{at}.nodeName"),
                format!("Invalid value: {n:?}: {m}"),
            ));
        }
    }
    let ports = array_at(obj, "/ports");
    if ports.len() > MAX_PORTS {
        causes.push(Cause::invalid(
            "ports",
            format!(
                "Too many: {}: must have at most {MAX_PORTS} items",
                ports.len()
            ),
        ));
    }
    let mut names = std::collections::BTreeSet::new();
    for (i, p) in ports.iter().enumerate() {
        let at = format!("ports[{i}]");
        let name = str_at(p, "/name").unwrap_or("");
        if !name.is_empty()
            && let Some(m) = meta::dns1123_label(name)
        {
            causes.push(Cause::invalid(
                format!("{at}.name"),
                format!("Invalid value: {name:?}: {m}"),
            ));
        }
        if !names.insert(name) {
            causes.push(Cause::duplicate(format!("{at}.name"), name));
        }
        one_of(
            p,
            "/protocol",
            &format!("{at}.protocol"),
            &["TCP", "UDP", "SCTP"],
            &mut causes,
        );
        if let Some(n) = p.get("port").and_then(Value::as_i64)
            && !(0..=65535).contains(&n)
        {
            causes.push(Cause::invalid(
                format!("{at}.port"),
                format!("Invalid value: {n}: must be between 0 and 65535, inclusive"),
            ));
        }
    }
    causes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::fields::cause_fields as fields;

    #[test]
    fn slices_are_validated_as_kubernetes_validates_them() {
        let mut ok = json!({"addressType": "IPv4",
            "endpoints": [{"addresses": ["10.0.0.1"], "conditions": {"ready": true}, "nodeName": "n1"}],
            "ports": [{"name": "http", "port": 80}]});
        EndpointSliceStrategy.prepare_create(&mut ok);
        assert_eq!(ok["ports"][0]["protocol"], "TCP");
        assert!(validate_slice(&ok).is_empty());
        let bad = json!({"addressType": "IPv4",
            "endpoints": [{"addresses": ["fe80::1"]}, {"addresses": [], "hostname": "A_b"}],
            "ports": [{"name": "x", "port": 70000, "protocol": "ICMP"}, {"name": "x"}]});
        assert_eq!(
            fields(&validate_slice(&bad)),
            [
                "endpoints[0].addresses[0]",
                "endpoints[1].addresses",
                "endpoints[1].hostname",
                "ports[0].protocol",
                "ports[0].port",
                "ports[1].name",
            ]
        );
        assert_eq!(fields(&validate_slice(&json!({}))), ["addressType"]);
        let changed = json!({"addressType": "IPv6"});
        assert_eq!(
            fields(&EndpointSliceStrategy.validate_update(&changed, &ok)),
            ["addressType"]
        );
    }

    #[test]
    fn columns_print_as_kubectl_prints_them() {
        let s = json!({"addressType": "IPv4",
            "endpoints": [{"addresses": ["10.0.0.1"]}, {"addresses": ["10.0.0.2"]},
                          {"addresses": ["10.0.0.3"]}, {"addresses": ["10.0.0.4", "10.0.0.5"]}],
            "ports": [{"port": 80}, {"name": "named"}, {}]});
        assert_eq!(
            EndpointSliceStrategy.cells(&s),
            [
                json!("IPv4"),
                json!("80,named,*"),
                json!("10.0.0.1,10.0.0.2,10.0.0.3 + 2 more...")
            ]
        );
        let empty = json!({"addressType": "IPv4"});
        assert_eq!(
            EndpointSliceStrategy.cells(&empty),
            [json!("IPv4"), json!("<unset>"), json!("<unset>")]
        );
    }
}
