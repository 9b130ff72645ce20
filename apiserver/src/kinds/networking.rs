//! `networking.k8s.io/v1`: network policies (peers, ports and CIDRs, and the
//! policy types Kubernetes infers from the rules present), and the
//! IPAddresses that hold Services' cluster IPs.

use k8s_openapi::api::networking::v1 as networking;
use serde_json::{Value, json};

use super::columns::{self, Printed, at};
use super::fields::{array_at, cidr, one_of, port_number, selector, str_at, tcp_by_default};
use super::{Column, ResourceType, Strategy, Subresource};
use crate::error::Cause;

/// The `networking.k8s.io` kinds.
pub fn kinds() -> Vec<ResourceType> {
    vec![
        ResourceType::of::<networking::NetworkPolicy>()
            .short_names(&["netpol"])
            .subresources(&[Subresource::Status])
            .strategy(NetworkPolicyStrategy),
        ResourceType::of::<networking::IPAddress>()
            .short_names(&["ip"])
            .strategy(IpAddressStrategy),
    ]
}

/// IPAddresses: the API server writes one per Service cluster IP
/// (`registry::services`); its name is the address, in canonical form,
/// and it names its parent.
struct IpAddressStrategy;
impl Strategy for IpAddressStrategy {
    fn name_rule(&self) -> fn(&str) -> Option<String> {
        |name| match name.parse::<std::net::IpAddr>() {
            Ok(ip) if ip.to_string() == name => None,
            Ok(ip) => Some(format!("must be in canonical form ({ip:?})")),
            Err(_) => Some("must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)".into()),
        }
    }
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut causes = Vec::new();
        match obj.pointer("/spec/parentRef").filter(|p| p.is_object()) {
            None => causes.push(Cause::required("spec.parentRef")),
            Some(p) => {
                for f in ["resource", "name"] {
                    if str_at(p, &format!("/{f}")).is_none_or(str::is_empty) {
                        causes.push(Cause::required(format!("spec.parentRef.{f}")));
                    }
                }
            }
        }
        causes
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        Cause::immutable(new, old, "/spec/parentRef", "spec.parentRef")
            .into_iter()
            .collect()
    }
    fn columns(&self) -> Vec<Column> {
        vec![Column::new(
            "ParentRef",
            "The object this address is assigned to",
        )]
    }
    fn cells(&self, obj: &Value) -> Vec<Value> {
        // kubectl: lower-case `resource.group`, then namespace and name.
        let Some(p) = obj.pointer("/spec/parentRef").filter(|p| p.is_object()) else {
            return vec![json!("<none>")];
        };
        let mut out = str_at(p, "/resource").unwrap_or_default().to_lowercase();
        if let Some(g) = str_at(p, "/group").filter(|g| !g.is_empty()) {
            out = format!("{out}.{}", g.to_lowercase());
        }
        if let Some(ns) = str_at(p, "/namespace").filter(|n| !n.is_empty()) {
            out = format!("{out}/{ns}");
        }
        vec![json!(format!(
            "{out}/{}",
            str_at(p, "/name").unwrap_or_default()
        ))]
    }
}

struct NetworkPolicyStrategy;
impl Strategy for NetworkPolicyStrategy {
    fn prepare_create(&self, obj: &mut Value) {
        networkpolicy_defaults(obj)
    }
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        validate_networkpolicy(obj)
    }
    fn columns(&self) -> Vec<Column> {
        columns::columns(COLUMNS)
    }
    fn cells(&self, obj: &Value) -> Vec<Value> {
        columns::cells(COLUMNS, obj)
    }
}

const COLUMNS: &[Printed] = &[at("Pod-Selector", "Selected pods", "/spec/podSelector")];

/// Policy types default to Ingress, plus Egress when egress rules exist.
fn networkpolicy_defaults(obj: &mut Value) {
    if obj.pointer("/spec/policyTypes").is_none()
        && let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut)
    {
        let mut types = vec![json!("Ingress")];
        if spec
            .get("egress")
            .and_then(Value::as_array)
            .is_some_and(|e| !e.is_empty())
        {
            types.push(json!("Egress"));
        }
        spec.insert("policyTypes".into(), Value::Array(types));
    }
    for rules in ["ingress", "egress"] {
        if let Some(rs) = obj
            .pointer_mut(&format!("/spec/{rules}"))
            .and_then(Value::as_array_mut)
        {
            rs.iter_mut().for_each(tcp_by_default);
        }
    }
}

fn validate_networkpolicy(obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    if let Some(sel) = obj.pointer("/spec/podSelector") {
        causes.extend(selector(sel, "spec.podSelector"));
    }
    let types = array_at(obj, "/spec/policyTypes");
    if types.len() > 2 {
        causes.push(Cause::invalid(
            "spec.policyTypes",
            "Invalid value: may not specify more than two policyTypes",
        ));
    }
    for (i, t) in types.iter().enumerate() {
        let t = t.as_str().unwrap_or_default();
        if !["Ingress", "Egress"].contains(&t) {
            causes.push(Cause::not_supported(
                format!("spec.policyTypes[{i}]"),
                t,
                &["Ingress", "Egress"],
            ));
        }
    }
    for (rules, peers) in [("ingress", "from"), ("egress", "to")] {
        for (i, rule) in array_at(obj, &format!("/spec/{rules}")).iter().enumerate() {
            let at = format!("spec.{rules}[{i}]");
            for (j, p) in array_at(rule, "/ports").iter().enumerate() {
                let pat = format!("{at}.ports[{j}]");
                one_of(
                    p,
                    "/protocol",
                    &format!("{pat}.protocol"),
                    &["TCP", "UDP", "SCTP"],
                    &mut causes,
                );
                port_number(p, "/port", &format!("{pat}.port"), &mut causes);
                if let Some(end) = p.get("endPort").and_then(Value::as_i64) {
                    match p.get("port") {
                        Some(Value::Number(n)) if n.as_i64().is_some_and(|n| n <= end) => {}
                        Some(Value::Number(_)) => causes.push(Cause::invalid(
                            format!("{pat}.endPort"),
                            format!(
                                "Invalid value: {end}: must be greater than or equal to `port`"
                            ),
                        )),
                        _ => causes.push(Cause::required_because(
                            format!("{pat}.endPort"),
                            "may not be specified when `port` is not a number",
                        )),
                    }
                }
            }
            for (j, peer) in array_at(rule, &format!("/{peers}")).iter().enumerate() {
                let pat = format!("{at}.{peers}[{j}]");
                let selectors = ["podSelector", "namespaceSelector"]
                    .iter()
                    .filter(|k| peer.get(**k).is_some())
                    .count();
                let block = peer.get("ipBlock").filter(|b| b.is_object());
                if selectors == 0 && block.is_none() {
                    causes.push(Cause::required_because(pat.clone(), "must specify a peer"));
                }
                if selectors > 0 && block.is_some() {
                    causes.push(Cause::forbidden(
                        pat.clone(),
                        "may not specify both ipBlock and another peer",
                    ));
                }
                for s in ["podSelector", "namespaceSelector"] {
                    if let Some(sel) = peer.get(s) {
                        causes.extend(selector(sel, &format!("{pat}.{s}")));
                    }
                }
                if let Some(b) = block {
                    match str_at(b, "/cidr") {
                        None => causes.push(Cause::required(format!("{pat}.ipBlock.cidr"))),
                        Some(_) => cidr(b, "/cidr", &format!("{pat}.ipBlock.cidr"), &mut causes),
                    }
                    for (k, _) in array_at(b, "/except").iter().enumerate() {
                        cidr(
                            b,
                            &format!("/except/{k}"),
                            &format!("{pat}.ipBlock.except[{k}]"),
                            &mut causes,
                        );
                    }
                }
            }
        }
    }
    causes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::fields::cause_fields as fields;

    #[test]
    fn network_policies_default_their_types() {
        let mut np = json!({"spec": {"podSelector": {}, "egress": [{"ports": [{"port": 53}]}]}});
        networkpolicy_defaults(&mut np);
        assert_eq!(np["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
        assert_eq!(np["spec"]["egress"][0]["ports"][0]["protocol"], "TCP");
        assert!(validate_networkpolicy(&np).is_empty());
        let bad = json!({"spec": {"podSelector": {}, "policyTypes": ["Sideways"],
            "ingress": [{"from": [{}, {"ipBlock": {"cidr": "10.0.0.0/33"}, "podSelector": {}}],
                         "ports": [{"port": "http", "endPort": 90}]}]}});
        assert_eq!(
            fields(&validate_networkpolicy(&bad)),
            [
                "spec.policyTypes[0]",
                "spec.ingress[0].ports[0].endPort",
                "spec.ingress[0].from[0]",
                "spec.ingress[0].from[1]",
                "spec.ingress[0].from[1].ipBlock.cidr",
            ]
        );
    }

    #[test]
    fn ip_addresses_are_named_by_their_address_and_name_their_parent() {
        let rule = IpAddressStrategy.name_rule();
        assert_eq!(rule("10.96.0.1"), None);
        assert!(rule("10.96.0.01").is_some() && rule("web").is_some());
        let ip = json!({"spec": {"parentRef": {"group": "", "resource": "services",
            "namespace": "default", "name": "web"}}});
        assert!(IpAddressStrategy.validate(&ip).is_empty());
        assert_eq!(
            IpAddressStrategy.cells(&ip),
            [json!("services/default/web")]
        );
        assert_eq!(
            fields(
                &IpAddressStrategy
                    .validate(&json!({"spec": {"parentRef": {"resource": "services"}}}))
            ),
            ["spec.parentRef.name"]
        );
    }
}
