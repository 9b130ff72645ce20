//! Services (`v1`): types, ports and node ports, a cluster IP that never
//! changes once set, allocated values an update keeps, and the columns
//! kubectl prints. The addresses themselves come from `registry::services`.

use k8s_openapi::api::core::v1 as core;
use serde_json::{Value, json};

use super::columns;
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
    fn prepare_update(&self, new: &mut Value, old: &Value) {
        service_defaults(new);
        keep_allocated(new, old);
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        service_update(new, old)
    }
    fn columns(&self) -> Vec<Column> {
        vec![
            Column::new("Type", "The type of the service"),
            Column::new("Cluster-IP", "The cluster IP of the service"),
            Column::new("External-IP", "The external IP of the service"),
            Column::new("Port(s)", "The ports of the service"),
            Column::new("Selector", "The selector of the service").wide(),
        ]
    }
    fn cells(&self, obj: &Value) -> Vec<Value> {
        let kind = obj
            .pointer("/spec/type")
            .and_then(Value::as_str)
            .unwrap_or("ClusterIP");
        let selector = match obj.pointer("/spec/selector").and_then(Value::as_object) {
            Some(m) if !m.is_empty() => m
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(","),
            _ => "<none>".into(),
        };
        vec![
            json!(kind),
            columns::cell(obj, columns::Cell::At("/spec/clusterIP")),
            json!(external_ip(obj, kind)),
            json!(ports_cell(obj)),
            json!(selector),
        ]
    }
}

/// kubectl's EXTERNAL-IP: the external name, or the load balancer's
/// ingress and the external IPs (`<pending>` for a load balancer without
/// any), else `<none>`.
fn external_ip(obj: &Value, kind: &str) -> String {
    let strs = |p: &str| -> Vec<String> {
        obj.pointer(p)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect()
    };
    let external = strs("/spec/externalIPs");
    match kind {
        "ExternalName" => obj
            .pointer("/spec/externalName")
            .and_then(Value::as_str)
            .unwrap_or("<none>")
            .to_string(),
        "LoadBalancer" => {
            let mut all: Vec<String> = obj
                .pointer("/status/loadBalancer/ingress")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|i| {
                    i.get("ip")
                        .or_else(|| i.get("hostname"))
                        .and_then(Value::as_str)
                        .map(str::to_string)
                })
                .collect();
            all.extend(external);
            if all.is_empty() {
                "<pending>".into()
            } else {
                all.join(",")
            }
        }
        _ if !external.is_empty() => external.join(","),
        _ => "<none>".into(),
    }
}

/// kubectl's PORT(S): `port[:nodePort]/protocol`, comma-separated.
fn ports_cell(obj: &Value) -> String {
    let ports: Vec<String> = obj
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|p| {
            let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
            let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
            match p.get("nodePort").and_then(Value::as_i64) {
                Some(np) if np > 0 => format!("{port}:{np}/{proto}"),
                _ => format!("{port}/{proto}"),
            }
        })
        .collect();
    if ports.is_empty() {
        "<none>".into()
    } else {
        ports.join(",")
    }
}

/// An update that leaves out what the server allocated keeps it (as
/// Kubernetes' `patchAllocatedValues`): the cluster IPs and families while
/// the Service still has a cluster IP, and each port's node port (matched
/// by port and protocol) while it is still a NodePort Service.
fn keep_allocated(new: &mut Value, old: &Value) {
    let kind = |v: &Value| {
        v.pointer("/spec/type")
            .and_then(Value::as_str)
            .unwrap_or("ClusterIP")
            .to_string()
    };
    let (was, now) = (kind(old), kind(new));
    if !new.get("spec").is_some_and(Value::is_object) {
        return;
    }
    if was != "ExternalName" && now != "ExternalName" {
        for f in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
            let missing = new["spec"].get(f).is_none_or(|v| {
                v.is_null() || v.as_str() == Some("") || v.as_array().is_some_and(Vec::is_empty)
            });
            if missing && let Some(v) = old.pointer(&format!("/spec/{f}")) {
                new["spec"][f] = v.clone();
            }
        }
    }
    let local = |v: &Value| {
        v.pointer("/spec/externalTrafficPolicy")
            .and_then(Value::as_str)
            == Some("Local")
    };
    if was == "LoadBalancer"
        && now == "LoadBalancer"
        && local(old)
        && local(new)
        && new
            .pointer("/spec/healthCheckNodePort")
            .is_none_or(Value::is_null)
        && let Some(hc) = old.pointer("/spec/healthCheckNodePort")
    {
        new["spec"]["healthCheckNodePort"] = hc.clone();
    }
    let node_ports = |k: &str| matches!(k, "NodePort" | "LoadBalancer");
    if !(node_ports(&was) && node_ports(&now)) {
        return;
    }
    let olds: Vec<Value> = old
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if let Some(ports) = new.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
        for p in ports {
            if p.get("nodePort").is_some_and(|n| !n.is_null()) {
                continue;
            }
            let same = olds.iter().find(|o| {
                o.get("port") == p.get("port")
                    && o.get("protocol").and_then(Value::as_str).unwrap_or("TCP")
                        == p.get("protocol").and_then(Value::as_str).unwrap_or("TCP")
            });
            if let Some(np) = same.and_then(|o| o.get("nodePort")) {
                p["nodePort"] = np.clone();
            }
        }
    }
}

fn service_defaults(obj: &mut Value) {
    default_at(obj, &["spec", "type"], json!("ClusterIP"));
    default_at(obj, &["spec", "sessionAffinity"], json!("None"));
    let kind = obj
        .pointer("/spec/type")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if kind != "ExternalName" {
        default_at(obj, &["spec", "internalTrafficPolicy"], json!("Cluster"));
    }
    if kind == "NodePort" || kind == "LoadBalancer" {
        default_at(obj, &["spec", "externalTrafficPolicy"], json!("Cluster"));
    }
    if kind == "LoadBalancer" {
        default_at(obj, &["spec", "allocateLoadBalancerNodePorts"], json!(true));
    }
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
                // The node port range is the server's (`registry::services`).
                if p.get("nodePort").and_then(Value::as_i64).is_some()
                    && (kind == "ClusterIP" || kind == "ExternalName")
                {
                    causes.push(Cause::forbidden(
                        format!("spec.ports[{i}].nodePort"),
                        "may not be used when `type` is 'ClusterIP'",
                    ));
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
    let external = new.pointer("/spec/type").and_then(Value::as_str) == Some("ExternalName");
    if !was.is_empty() && was != now && !(external && now.is_empty()) {
        return vec![Cause::invalid(
            "spec.clusterIPs[0]",
            format!("Invalid value: {now:?}: may not change once set"),
        )];
    }
    vec![]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_keep_what_the_server_allocated() {
        let old = json!({"spec": {"type": "NodePort", "clusterIP": "10.96.0.9",
            "clusterIPs": ["10.96.0.9"], "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
            "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080},
                      {"port": 53, "protocol": "UDP", "nodePort": 30053}]}});
        // A replace from a manifest that never had them.
        let mut new = json!({"spec": {"type": "NodePort",
            "ports": [{"port": 53, "protocol": "UDP"}, {"port": 80}, {"port": 81}]}});
        ServiceStrategy.prepare_update(&mut new, &old);
        assert_eq!(new["spec"]["clusterIP"], "10.96.0.9");
        assert_eq!(new["spec"]["clusterIPs"], json!(["10.96.0.9"]));
        assert_eq!(new["spec"]["ports"][0]["nodePort"], 30053);
        assert_eq!(new["spec"]["ports"][1]["nodePort"], 30080);
        assert!(new["spec"]["ports"][2].get("nodePort").is_none());
        assert!(service_update(&new, &old).is_empty());
        // Back to ClusterIP: no node ports carried; the IP stays.
        let mut plain = json!({"spec": {"type": "ClusterIP", "ports": [{"port": 80}]}});
        ServiceStrategy.prepare_update(&mut plain, &old);
        assert!(plain["spec"]["ports"][0].get("nodePort").is_none());
        assert_eq!(plain["spec"]["clusterIP"], "10.96.0.9");
        // A changed IP is refused; ExternalName drops it.
        let moved = json!({"spec": {"clusterIP": "10.96.0.10"}});
        assert_eq!(service_update(&moved, &old)[0].field, "spec.clusterIPs[0]");
        let mut ext = json!({"spec": {"type": "ExternalName", "externalName": "example.com"}});
        ServiceStrategy.prepare_update(&mut ext, &old);
        assert!(ext["spec"].get("clusterIP").is_none());
        assert!(service_update(&ext, &old).is_empty());
    }

    #[test]
    fn columns_print_as_kubectl_prints_them() {
        let svc = json!({"spec": {"type": "NodePort", "clusterIP": "10.96.0.9",
            "selector": {"app": "web", "tier": "fe"},
            "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080}, {"port": 53, "protocol": "UDP"}]}});
        assert_eq!(
            ServiceStrategy.cells(&svc),
            [
                json!("NodePort"),
                json!("10.96.0.9"),
                json!("<none>"),
                json!("80:30080/TCP,53/UDP"),
                json!("app=web,tier=fe")
            ]
        );
        let lb = json!({"spec": {"type": "LoadBalancer", "clusterIP": "None"}});
        assert_eq!(
            ServiceStrategy.cells(&lb),
            [
                json!("LoadBalancer"),
                json!("None"),
                json!("<pending>"),
                json!("<none>"),
                json!("<none>")
            ]
        );
        let ext = json!({"spec": {"type": "ExternalName", "externalName": "db.example.com"}});
        assert_eq!(
            ServiceStrategy.cells(&ext)[1..3],
            [json!("<none>"), json!("db.example.com")]
        );
    }
}
