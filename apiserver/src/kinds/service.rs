//! Services (`v1`): types, ports and node ports, and a cluster IP that never
//! changes once set.

use k8s_openapi::api::core::v1 as core;
use serde_json::{Value, json};

use super::columns::{self, Printed, at, count};
use super::fields::{default_at, tcp_by_default};
use super::{Column, ResourceType, Strategy, Subresource};
use crate::error::Cause;
use crate::meta;

/// Services, with `/status`.
pub fn kinds() -> Vec<ResourceType> {
    vec![
        ResourceType::of::<core::Service>()
            .short_names(&["svc"])
            .categories(&["all"])
            .subresources(&[Subresource::Status])
            .strategy(ServiceStrategy),
    ]
}

struct ServiceStrategy;
impl Strategy for ServiceStrategy {
    fn prepare_create(&self, obj: &mut Value) {
        service_defaults(obj)
    }
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        validate_service(obj)
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        service_update(new, old)
    }
    fn columns(&self) -> Vec<Column> {
        columns::columns(COLUMNS)
    }
    fn cells(&self, obj: &Value) -> Vec<Value> {
        columns::cells(COLUMNS, obj)
    }
}

const COLUMNS: &[Printed] = &[
    at("Type", "Service type", "/spec/type"),
    at("Cluster-IP", "Cluster IP", "/spec/clusterIP"),
    count("Ports", "Number of ports", "/spec/ports"),
    at("Selector", "Pod selector", "/spec/selector").wide(),
];

fn service_defaults(obj: &mut Value) {
    default_at(obj, &["spec", "type"], json!("ClusterIP"));
    default_at(obj, &["spec", "sessionAffinity"], json!("None"));
    if let Some(spec) = obj.get_mut("spec") {
        tcp_by_default(spec);
    }
    if let Some(ports) = obj.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
        for p in ports {
            if let Some(port) = p.get("port").cloned() {
                default_at(p, &["targetPort"], port);
            }
        }
    }
}

/// Services: ports in range, required unless headless or ExternalName.
fn validate_service(obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let kind = obj
        .pointer("/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP");
    let types = ["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"];
    if !types.contains(&kind) {
        causes.push(Cause::not_supported(
            "spec.type",
            kind,
            &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
        ));
    }
    if kind == "ExternalName"
        && obj
            .pointer("/spec/externalName")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
    {
        causes.push(Cause::required("spec.externalName"));
    }
    if let Some(sel) = obj.pointer("/spec/selector").and_then(Value::as_object) {
        for (k, v) in sel {
            if let Some(m) =
                meta::qualified_name(k).or_else(|| v.as_str().and_then(meta::label_value))
            {
                causes.push(Cause::invalid(
                    "spec.selector",
                    format!("Invalid value: {k:?}: {m}"),
                ));
            }
        }
    }
    let headless = obj.pointer("/spec/clusterIP").and_then(Value::as_str) == Some("None");
    match obj.pointer("/spec/ports").and_then(Value::as_array) {
        Some(ports) if !ports.is_empty() => {
            let mut names = std::collections::BTreeSet::new();
            for (i, p) in ports.iter().enumerate() {
                match p.get("name").and_then(Value::as_str) {
                    None | Some("") if ports.len() > 1 => {
                        causes.push(Cause::required(format!("spec.ports[{i}].name")))
                    }
                    Some(n) if !n.is_empty() && !names.insert(n) => {
                        causes.push(Cause::duplicate(format!("spec.ports[{i}].name"), n))
                    }
                    _ => {}
                }
                if let Some(proto) = p.get("protocol").and_then(Value::as_str)
                    && !["TCP", "UDP", "SCTP"].contains(&proto)
                {
                    causes.push(Cause::not_supported(
                        format!("spec.ports[{i}].protocol"),
                        proto,
                        &["SCTP", "TCP", "UDP"],
                    ));
                }
                if let Some(np) = p.get("nodePort").and_then(Value::as_i64) {
                    if kind == "ClusterIP" || kind == "ExternalName" {
                        causes.push(Cause::forbidden(
                            format!("spec.ports[{i}].nodePort"),
                            "may not be used when `type` is 'ClusterIP'",
                        ));
                    } else if !(30000..=32767).contains(&np) {
                        causes.push(Cause::invalid(
                            format!("spec.ports[{i}].nodePort"),
                            format!("Invalid value: {np}: provided port is not in the valid range. The range of valid ports is 30000-32767"),
                        ));
                    }
                }
                match p.get("port").and_then(Value::as_i64) {
                    Some(n) if (1..=65535).contains(&n) => {}
                    Some(n) => causes.push(Cause::invalid(
                        format!("spec.ports[{i}].port"),
                        format!("Invalid value: {n}: must be between 1 and 65535, inclusive"),
                    )),
                    None => causes.push(Cause::required(format!("spec.ports[{i}].port"))),
                }
            }
        }
        _ if kind == "ExternalName" || headless => {}
        _ => causes.push(Cause::required("spec.ports")),
    }
    causes
}

/// Services keep their cluster IP once one is set.
fn service_update(new: &Value, old: &Value) -> Vec<Cause> {
    let ip = |v: &Value| {
        v.pointer("/spec/clusterIP")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let (was, now) = (ip(old), ip(new));
    if !was.is_empty() && was != now {
        return vec![Cause::invalid(
            "spec.clusterIPs[0]",
            format!("Invalid value: {now:?}: may not change once set"),
        )];
    }
    vec![]
}
