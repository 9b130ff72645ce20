//! The core group's (`v1`) kinds besides pods, services and volumes:
//! namespaces, config maps, secrets, service accounts, nodes, endpoints,
//! resource quotas and limit ranges (events are in `events.rs`).

use base64::Engine;
use k8s_openapi::api::core::v1 as core;
use serde_json::{Value, json};

use super::fields::{array_at, cidr, one_of, port_number, quantities, str_at, tcp_by_default};
use super::{Column, ResourceType, Strategy, Subresource};
use crate::error::Cause;
use crate::meta;

/// The core kinds of this file, in discovery order.
pub fn kinds() -> Vec<ResourceType> {
    vec![
        ResourceType::of::<core::Namespace>()
            .short_names(&["ns"])
            .subresources(&[Subresource::Status, Subresource::Finalize])
            .strategy(NamespaceStrategy),
        ResourceType::of::<core::ConfigMap>()
            .short_names(&["cm"])
            .strategy(ConfigMapStrategy),
        ResourceType::of::<core::Secret>().strategy(SecretStrategy),
        ResourceType::of::<core::ServiceAccount>()
            .short_names(&["sa"])
            .subresources(&[Subresource::Token])
            .strategy(ServiceAccountStrategy),
        ResourceType::of::<core::Node>()
            .short_names(&["no"])
            .subresources(&[Subresource::Status])
            .strategy(NodeStrategy),
        ResourceType::of::<core::Endpoints>()
            .short_names(&["ep"])
            .strategy(EndpointsStrategy),
        ResourceType::of::<core::ResourceQuota>()
            .short_names(&["quota"])
            .subresources(&[Subresource::Status])
            .strategy(ResourceQuotaStrategy),
        ResourceType::of::<core::LimitRange>()
            .short_names(&["limits"])
            .strategy(LimitRangeStrategy),
    ]
}

/// The finalizer the namespace controller clears once a terminating
/// namespace is empty.
const NAMESPACE_FINALIZER: &str = "kubernetes";

/// Namespaces: created `Active` with the `kubernetes` finalizer in
/// `spec.finalizers`, which only `/finalize` changes afterwards; the phase
/// is `Terminating` exactly while `deletionTimestamp` is set (the delete
/// verb sets both, `registry::delete`).
struct NamespaceStrategy;
impl Strategy for NamespaceStrategy {
    fn name_rule(&self) -> fn(&str) -> Option<String> {
        meta::dns1123_label
    }
    fn prepare_create(&self, obj: &mut Value) {
        obj["status"] = json!({"phase": "Active"});
        if !obj.get("spec").is_some_and(Value::is_object) {
            obj["spec"] = json!({});
        }
        let finalizers = &mut obj["spec"]["finalizers"];
        match finalizers.as_array_mut() {
            Some(list) if list.iter().any(|f| f == NAMESPACE_FINALIZER) => {}
            Some(list) => list.push(json!(NAMESPACE_FINALIZER)),
            None => *finalizers = json!([NAMESPACE_FINALIZER]),
        }
    }
    /// The main resource and `/status` keep `spec.finalizers` (`/finalize`
    /// skips this); a status without a phase is `Active`, as Kubernetes
    /// defaults it.
    fn prepare_update(&self, new: &mut Value, old: &Value) {
        match old.pointer("/spec/finalizers") {
            Some(f) => {
                if !new.get("spec").is_some_and(Value::is_object) {
                    new["spec"] = json!({});
                }
                new["spec"]["finalizers"] = f.clone();
            }
            None => {
                if let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) {
                    spec.remove("finalizers");
                }
            }
        }
        if !new.get("status").is_some_and(Value::is_object) {
            new["status"] = json!({});
        }
        if new
            .pointer("/status/phase")
            .is_none_or(|p| p.as_str().is_none_or(str::is_empty))
        {
            new["status"]["phase"] = json!("Active");
        }
    }
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut causes = Vec::new();
        for f in array_at(obj, "/spec/finalizers") {
            let f = f.as_str().unwrap_or_default();
            if let Some(msg) = meta::qualified_name(f) {
                causes.push(Cause::invalid(
                    "spec.finalizers",
                    format!("Invalid value: {f:?}: {msg}"),
                ));
            } else if !f.contains('/')
                && ![NAMESPACE_FINALIZER, "orphan", "foregroundDeletion"].contains(&f)
            {
                causes.push(Cause::invalid(
                    "spec.finalizers",
                    format!(
                        "Invalid value: {f:?}: name is neither a standard finalizer name nor is it fully qualified"
                    ),
                ));
            }
        }
        causes
    }
    fn validate_update(&self, new: &Value, _old: &Value) -> Vec<Cause> {
        let phase = new
            .pointer("/status/phase")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let deleting = new
            .pointer("/metadata/deletionTimestamp")
            .is_some_and(|d| !d.is_null());
        let rule = match (deleting, phase) {
            (false, "Active") | (true, "Terminating") => return vec![],
            (false, _) => "may only be 'Active' if `deletionTimestamp` is empty",
            (true, _) => "may only be 'Terminating' if `deletionTimestamp` is not empty",
        };
        vec![Cause::invalid(
            "status.Phase",
            format!("Invalid value: {phase:?}: {rule}"),
        )]
    }
    fn columns(&self) -> Vec<Column> {
        vec![Column::new("Status", "The status of the namespace")]
    }
    fn cells(&self, obj: &Value) -> Vec<Value> {
        vec![
            obj.pointer("/status/phase")
                .cloned()
                .unwrap_or(json!("Active")),
        ]
    }
}

fn config_key_causes(obj: &Value, field: &str, causes: &mut Vec<Cause>) {
    if let Some(m) = obj.get(field) {
        match m.as_object() {
            Some(m) => {
                for k in m.keys() {
                    let ok = !k.is_empty()
                        && k.len() <= 253
                        && k.chars()
                            .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c));
                    if !ok {
                        causes.push(Cause::invalid(
                            format!("{field}[{k}]"),
                            format!("Invalid value: {k:?}: a valid config key must consist of alphanumeric characters, '-', '_' or '.'"),
                        ));
                    }
                }
            }
            None if m.is_null() => {}
            None => causes.push(Cause::invalid(field, "must be a map")),
        }
    }
}

fn count(obj: &Value, fields: &[&str]) -> usize {
    fields
        .iter()
        .filter_map(|f| obj.get(*f)?.as_object().map(|m| m.len()))
        .sum()
}

struct ConfigMapStrategy;
impl Strategy for ConfigMapStrategy {
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        data_update(new, old)
    }
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut causes = Vec::new();
        config_key_causes(obj, "data", &mut causes);
        config_key_causes(obj, "binaryData", &mut causes);
        if let Some(m) = obj.get("data").and_then(Value::as_object) {
            for (k, v) in m {
                if !v.is_string() {
                    causes.push(Cause::invalid(format!("data[{k}]"), "must be a string"));
                }
            }
        }
        causes
    }
    fn columns(&self) -> Vec<Column> {
        vec![Column::new("Data", "Number of data entries")]
    }
    fn cells(&self, obj: &Value) -> Vec<Value> {
        vec![json!(count(obj, &["data", "binaryData"]))]
    }
}

/// ConfigMaps and Secrets marked `immutable` keep their data, and stay immutable.
fn data_update(new: &Value, old: &Value) -> Vec<Cause> {
    if old.get("immutable") != Some(&json!(true)) {
        return vec![];
    }
    let mut causes = Vec::new();
    for f in ["data", "binaryData"] {
        if new.get(f) != old.get(f) {
            causes.push(Cause::forbidden(
                f,
                "field is immutable when `immutable` is set",
            ));
        }
    }
    if new.get("immutable") != Some(&json!(true)) {
        causes.push(Cause::forbidden(
            "immutable",
            "field is immutable when `immutable` is set",
        ));
    }
    causes
}

struct SecretStrategy;
impl Strategy for SecretStrategy {
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        let mut causes = data_update(new, old);
        if new.get("type") != old.get("type") {
            causes.push(Cause::invalid(
                "type",
                format!("Invalid value: {}: field is immutable", new["type"]),
            ));
        }
        causes
    }
    fn prepare_create(&self, obj: &mut Value) {
        if obj
            .get("type")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            obj["type"] = json!("Opaque");
        }
        // stringData is write-only: it is merged into data, base64-encoded.
        if let Some(Value::Object(sd)) = obj.as_object_mut().and_then(|o| o.remove("stringData")) {
            if !obj.get("data").is_some_and(Value::is_object) {
                obj["data"] = json!({});
            }
            for (k, v) in sd {
                let s = v.as_str().unwrap_or_default().to_string();
                obj["data"][k] = json!(base64::engine::general_purpose::STANDARD.encode(s));
            }
        }
    }
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut causes = Vec::new();
        config_key_causes(obj, "data", &mut causes);
        if let Some(m) = obj.get("data").and_then(Value::as_object) {
            for (k, v) in m {
                let ok = v
                    .as_str()
                    .is_some_and(|s| base64::engine::general_purpose::STANDARD.decode(s).is_ok());
                if !ok {
                    causes.push(Cause::invalid(
                        format!("data[{k}]"),
                        "must be base64-encoded bytes",
                    ));
                }
            }
        }
        causes.extend(secret_type(obj));
        causes
    }
    fn columns(&self) -> Vec<Column> {
        vec![
            Column::new("Type", "The type of the secret"),
            Column::new("Data", "Number of data entries"),
        ]
    }
    fn cells(&self, obj: &Value) -> Vec<Value> {
        vec![
            obj.get("type").cloned().unwrap_or(json!("Opaque")),
            json!(count(obj, &["data"])),
        ]
    }
}

/// Secrets of the well-known types carry the keys their type promises.
fn secret_type(obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let has = |k: &str| obj.get("data").and_then(|d| d.get(k)).is_some();
    let require = |keys: &[&str], causes: &mut Vec<Cause>| {
        for k in keys {
            if !has(k) {
                causes.push(Cause::required(format!("data[{k}]")));
            }
        }
    };
    match str_at(obj, "/type").unwrap_or("Opaque") {
        "kubernetes.io/tls" => require(&["tls.crt", "tls.key"], &mut causes),
        "kubernetes.io/dockerconfigjson" => require(&[".dockerconfigjson"], &mut causes),
        "kubernetes.io/dockercfg" => require(&[".dockercfg"], &mut causes),
        "kubernetes.io/ssh-auth" => require(&["ssh-privatekey"], &mut causes),
        "kubernetes.io/basic-auth" if !has("username") && !has("password") => causes.push(
            Cause::required_because("data[username]", "either username or password is required"),
        ),
        "kubernetes.io/service-account-token"
            if str_at(
                obj,
                "/metadata/annotations/kubernetes.io~1service-account.name",
            )
            .is_none_or(str::is_empty) =>
        {
            causes.push(Cause::required(
                "metadata.annotations[kubernetes.io/service-account.name]",
            ))
        }
        _ => {}
    }
    causes
}

struct ServiceAccountStrategy;
impl Strategy for ServiceAccountStrategy {
    fn columns(&self) -> Vec<Column> {
        vec![Column::new("Secrets", "Number of secrets")]
    }
    fn cells(&self, obj: &Value) -> Vec<Value> {
        vec![json!(
            obj.get("secrets")
                .and_then(Value::as_array)
                .map(Vec::len)
                .unwrap_or(0)
        )]
    }
}

struct NodeStrategy;
impl Strategy for NodeStrategy {
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        validate_node(obj)
    }
    /// As kubectl prints nodes: NAME STATUS ROLES AGE VERSION, and with
    /// `-o wide` the addresses, OS image, kernel and container runtime.
    fn columns(&self) -> Vec<Column> {
        vec![
            Column::new("Status", "The status of the node"),
            Column::new("Roles", "The roles of the node"),
            Column::new("Age", "Time since creation."),
            Column::new("Version", "Kubelet Version reported by the node."),
            Column::new("Internal-IP", "List of internal IPs for the node.").wide(),
            Column::new("External-IP", "List of external IPs for the node.").wide(),
            Column::new("OS-Image", "OS image reported by the node.").wide(),
            Column::new("Kernel-Version", "Kernel version reported by the node.").wide(),
            Column::new(
                "Container-Runtime",
                "Container runtime and version reported by the node.",
            )
            .wide(),
        ]
    }
    fn cells(&self, obj: &Value) -> Vec<Value> {
        let info = |k: &str| {
            json!(
                obj.pointer(&format!("/status/nodeInfo/{k}"))
                    .and_then(Value::as_str)
                    .unwrap_or("")
            )
        };
        vec![
            json!(node_status(obj)),
            json!(node_roles(obj)),
            json!(meta::age(str_at(obj, "/metadata/creationTimestamp"))),
            info("kubeletVersion"),
            json!(node_address(obj, "InternalIP")),
            json!(node_address(obj, "ExternalIP")),
            info("osImage"),
            info("kernelVersion"),
            info("containerRuntimeVersion"),
        ]
    }
}

/// `Ready`, `NotReady` or `Unknown` (no Ready condition), then
/// `SchedulingDisabled` for a cordoned node, as kubectl prints them.
fn node_status(obj: &Value) -> String {
    let ready = array_at(obj, "/status/conditions")
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"))
        .map(|c| c.get("status").and_then(Value::as_str) == Some("True"));
    let mut status = vec![match ready {
        Some(true) => "Ready",
        Some(false) => "NotReady",
        None => "Unknown",
    }];
    if obj.pointer("/spec/unschedulable") == Some(&json!(true)) {
        status.push("SchedulingDisabled");
    }
    status.join(",")
}

/// The roles of `node-role.kubernetes.io/<role>` and `kubernetes.io/role`
/// labels, sorted, or `<none>`.
fn node_roles(obj: &Value) -> String {
    let mut roles = std::collections::BTreeSet::new();
    if let Some(labels) = obj.pointer("/metadata/labels").and_then(Value::as_object) {
        for (k, v) in labels {
            if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
                if !role.is_empty() {
                    roles.insert(role.to_string());
                }
            } else if k == "kubernetes.io/role"
                && let Some(v) = v.as_str().filter(|v| !v.is_empty())
            {
                roles.insert(v.to_string());
            }
        }
    }
    if roles.is_empty() {
        return "<none>".into();
    }
    roles.into_iter().collect::<Vec<_>>().join(",")
}

/// The node's first address of `type_`, or `<none>`.
fn node_address(obj: &Value, type_: &str) -> String {
    array_at(obj, "/status/addresses")
        .iter()
        .find(|a| a.get("type").and_then(Value::as_str) == Some(type_))
        .and_then(|a| a.get("address").and_then(Value::as_str))
        .unwrap_or("<none>")
        .to_string()
}

fn validate_node(obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    cidr(obj, "/spec/podCIDR", "spec.podCIDR", &mut causes);
    for (i, _) in array_at(obj, "/spec/podCIDRs").iter().enumerate() {
        cidr(
            obj,
            &format!("/spec/podCIDRs/{i}"),
            &format!("spec.podCIDRs[{i}]"),
            &mut causes,
        );
    }
    for (i, t) in array_at(obj, "/spec/taints").iter().enumerate() {
        let at = format!("spec.taints[{i}]");
        match str_at(t, "/key") {
            None | Some("") => causes.push(Cause::required(format!("{at}.key"))),
            Some(k) => {
                if let Some(m) = meta::qualified_name(k) {
                    causes.push(Cause::invalid(
                        format!("{at}.key"),
                        format!("Invalid value: {k:?}: {m}"),
                    ));
                }
            }
        }
        let effects = ["NoSchedule", "PreferNoSchedule", "NoExecute"];
        match str_at(t, "/effect") {
            Some(e) if effects.contains(&e) => {}
            None | Some("") => causes.push(Cause::required(format!("{at}.effect"))),
            Some(e) => causes.push(Cause::not_supported(format!("{at}.effect"), e, &effects)),
        }
    }
    causes
}

struct EndpointsStrategy;
impl Strategy for EndpointsStrategy {
    fn prepare_create(&self, obj: &mut Value) {
        endpoints_defaults(obj)
    }
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        validate_endpoints(obj)
    }
    fn columns(&self) -> Vec<Column> {
        vec![Column::new(
            "Endpoints",
            "Endpoints is the list of endpoints in the service",
        )]
    }
    fn cells(&self, obj: &Value) -> Vec<Value> {
        vec![json!(endpoints_cell(obj))]
    }
}

/// kubectl's ENDPOINTS: the first three `ip:port` (or bare IPs of a
/// subset without ports) of the ready addresses, then `+ N more...`;
/// `<none>` without subsets.
fn endpoints_cell(obj: &Value) -> String {
    let subsets = array_at(obj, "/subsets");
    if subsets.is_empty() {
        return "<none>".into();
    }
    let mut all = Vec::new();
    for s in subsets {
        let ips: Vec<&str> = array_at(s, "/addresses")
            .iter()
            .filter_map(|a| str_at(a, "/ip"))
            .collect();
        let ports = array_at(s, "/ports");
        if ports.is_empty() {
            all.extend(ips.iter().map(|ip| ip.to_string()));
        }
        for p in ports {
            let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
            all.extend(ips.iter().map(|ip| match ip.contains(':') {
                true => format!("[{ip}]:{port}"),
                false => format!("{ip}:{port}"),
            }));
        }
    }
    let shown = all.iter().take(3).cloned().collect::<Vec<_>>().join(",");
    if all.len() > 3 {
        format!("{shown} + {} more...", all.len() - 3)
    } else {
        shown
    }
}

fn endpoints_defaults(obj: &mut Value) {
    if let Some(subsets) = obj.get_mut("subsets").and_then(Value::as_array_mut) {
        subsets.iter_mut().for_each(tcp_by_default);
    }
}

fn validate_endpoints(obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    for (i, s) in array_at(obj, "/subsets").iter().enumerate() {
        for list in ["addresses", "notReadyAddresses"] {
            for (j, a) in array_at(s, &format!("/{list}")).iter().enumerate() {
                let field = format!("subsets[{i}].{list}[{j}].ip");
                match str_at(a, "/ip") {
                    None | Some("") => causes.push(Cause::required(field)),
                    Some(ip) if ip.parse::<std::net::IpAddr>().is_err() => {
                        causes.push(Cause::invalid(
                            field,
                            format!("Invalid value: {ip:?}: must be a valid IP address"),
                        ))
                    }
                    Some(_) => {}
                }
            }
        }
        for (j, p) in array_at(s, "/ports").iter().enumerate() {
            let at = format!("subsets[{i}].ports[{j}]");
            port_number(p, "/port", &format!("{at}.port"), &mut causes);
            one_of(
                p,
                "/protocol",
                &format!("{at}.protocol"),
                &["TCP", "UDP", "SCTP"],
                &mut causes,
            );
        }
    }
    causes
}

struct ResourceQuotaStrategy;
impl Strategy for ResourceQuotaStrategy {
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        validate_resourcequota(obj)
    }
}

fn validate_resourcequota(obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    quantities(obj, "/spec/hard", "spec.hard", &mut causes);
    let scopes = [
        "Terminating",
        "NotTerminating",
        "BestEffort",
        "NotBestEffort",
        "PriorityClass",
        "CrossNamespacePodAffinity",
    ];
    for (i, s) in array_at(obj, "/spec/scopes").iter().enumerate() {
        let s = s.as_str().unwrap_or("");
        if !scopes.contains(&s) {
            causes.push(Cause::not_supported(
                format!("spec.scopes[{i}]"),
                s,
                &scopes,
            ));
        }
    }
    causes
}

struct LimitRangeStrategy;
impl Strategy for LimitRangeStrategy {
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        validate_limitrange(obj)
    }
}

fn validate_limitrange(obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let types = ["Pod", "Container", "PersistentVolumeClaim"];
    for (i, l) in array_at(obj, "/spec/limits").iter().enumerate() {
        let at = format!("spec.limits[{i}]");
        match str_at(l, "/type") {
            Some(t) if types.contains(&t) => {}
            None | Some("") => causes.push(Cause::required(format!("{at}.type"))),
            Some(t) => causes.push(Cause::not_supported(format!("{at}.type"), t, &types)),
        }
        for f in [
            "max",
            "min",
            "default",
            "defaultRequest",
            "maxLimitRequestRatio",
        ] {
            quantities(l, &format!("/{f}"), &format!("{at}.{f}"), &mut causes);
        }
    }
    causes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::fields::cause_fields as fields;

    #[test]
    fn typed_secrets_carry_their_keys() {
        let tls = json!({"type": "kubernetes.io/tls", "data": {"tls.crt": "eA=="}});
        assert_eq!(fields(&secret_type(&tls)), ["data[tls.key]"]);
        let sa = json!({"type": "kubernetes.io/service-account-token", "metadata": {
            "annotations": {"kubernetes.io/service-account.name": "default"}}});
        assert!(secret_type(&sa).is_empty());
        assert!(secret_type(&json!({"type": "Opaque"})).is_empty());
    }

    #[test]
    fn nodes_print_as_kubectl_prints_them() {
        let node = json!({
            "metadata": {"name": "n", "labels": {
                "node-role.kubernetes.io/control-plane": "",
                "node-role.kubernetes.io/worker": "",
                "kubernetes.io/role": "edge",
                "kubernetes.io/hostname": "n"}},
            "spec": {"unschedulable": true},
            "status": {
                "conditions": [{"type": "MemoryPressure", "status": "False"},
                               {"type": "Ready", "status": "Unknown"}],
                "addresses": [{"type": "InternalIP", "address": "10.0.0.7"}],
                "nodeInfo": {"kubeletVersion": "v1.33.0", "osImage": "Debian",
                             "kernelVersion": "6.1", "containerRuntimeVersion": "containerd://2.0"}}
        });
        let cells = NodeStrategy.cells(&node);
        assert_eq!(cells[0], "NotReady,SchedulingDisabled");
        assert_eq!(cells[1], "control-plane,edge,worker");
        assert_eq!(cells[3], "v1.33.0");
        assert_eq!(
            cells[4..],
            [
                json!("10.0.0.7"),
                json!("<none>"),
                json!("Debian"),
                json!("6.1"),
                json!("containerd://2.0")
            ]
        );
        assert_eq!(NodeStrategy.columns().len(), cells.len());
        let bare = json!({"metadata": {"name": "m"}});
        assert_eq!(
            NodeStrategy.cells(&bare)[..2],
            [json!("Unknown"), json!("<none>")]
        );
        let ready = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        assert_eq!(NodeStrategy.cells(&ready)[0], "Ready");
    }

    #[test]
    fn endpoints_print_as_kubectl_prints_them() {
        let ep = json!({"subsets": [
            {"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}], "notReadyAddresses": [{"ip": "10.0.0.9"}],
             "ports": [{"port": 80}, {"port": 443}]}]});
        assert_eq!(
            EndpointsStrategy.cells(&ep),
            [json!("10.0.0.1:80,10.0.0.2:80,10.0.0.1:443 + 1 more...")]
        );
        assert_eq!(EndpointsStrategy.cells(&json!({})), [json!("<none>")]);
        let headless = json!({"subsets": [{"addresses": [{"ip": "10.0.0.1"}]}]});
        assert_eq!(EndpointsStrategy.cells(&headless), [json!("10.0.0.1")]);
    }
}
