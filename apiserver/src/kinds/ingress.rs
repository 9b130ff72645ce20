//! `networking.k8s.io/v1` Ingresses and IngressClasses (the group's
//! NetworkPolicies are in `networking.rs`): Kubernetes' defaults, its
//! validation with its field paths and messages, and the columns
//! `kubectl get` prints.

use k8s_openapi::api::networking::v1 as networking;
use serde_json::{Value, json};

use super::fields::{array_at, str_at};
use super::{Column, ResourceType, Strategy, Subresource};
use crate::error::Cause;
use crate::meta;

/// The Ingress kinds of `networking.k8s.io`.
pub fn kinds() -> Vec<ResourceType> {
    vec![
        ResourceType::of::<networking::Ingress>()
            .short_names(&["ing"])
            .subresources(&[Subresource::Status])
            .strategy(IngressStrategy),
        ResourceType::of::<networking::IngressClass>().strategy(IngressClassStrategy),
    ]
}

struct IngressStrategy;
impl Strategy for IngressStrategy {
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        validate_ingress(obj)
    }
    fn columns(&self) -> Vec<Column> {
        vec![
            Column::new("Class", "The ingress class of the ingress"),
            Column::new("Hosts", "Hosts that incoming requests are matched against"),
            Column::new(
                "Address",
                "Address is a list of IP addresses or hostnames of the load balancer",
            ),
            Column::new("Ports", "Ports of TLS configurations that open"),
        ]
    }
    fn cells(&self, obj: &Value) -> Vec<Value> {
        vec![
            json!(
                str_at(obj, "/spec/ingressClassName")
                    .filter(|c| !c.is_empty())
                    .unwrap_or("<none>")
            ),
            json!(hosts(array_at(obj, "/spec/rules"))),
            json!(addresses(obj)),
            json!(if array_at(obj, "/spec/tls").is_empty() {
                "80"
            } else {
                "80, 443"
            }),
        ]
    }
}

/// Rule hosts as kubectl prints them: the first three, then how many more;
/// `*` when no rule names a host.
fn hosts(rules: &[Value]) -> String {
    const SHOWN: usize = 3;
    let list: Vec<&str> = rules
        .iter()
        .take(SHOWN)
        .filter_map(|r| str_at(r, "/host").filter(|h| !h.is_empty()))
        .collect();
    if list.is_empty() {
        return "*".into();
    }
    let joined = list.join(",");
    if rules.len() > SHOWN {
        format!("{joined} + {} more...", rules.len() - SHOWN)
    } else {
        joined
    }
}

/// The load balancer's addresses (IP, else hostname), comma-separated.
fn addresses(obj: &Value) -> String {
    array_at(obj, "/status/loadBalancer/ingress")
        .iter()
        .filter_map(|i| str_at(i, "/ip").or_else(|| str_at(i, "/hostname")))
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(",")
}

/// A DNS-1035 label (Service names): lowercase alphanumerics and '-',
/// starting with a letter.
fn dns1035_label(s: &str) -> Option<String> {
    if s.is_empty() || s.len() > 63 {
        return Some("must be no more than 63 characters".into());
    }
    let ok = s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && !s.ends_with('-');
    (!ok).then(|| "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')".into())
}

/// A port name (IANA service name): Kubernetes' rules and messages.
fn port_name(s: &str) -> Vec<&'static str> {
    let mut errs = Vec::new();
    if s.len() > 15 {
        errs.push("must be no more than 15 characters");
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        errs.push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)");
    }
    if s.contains("--") {
        errs.push("must not contain consecutive hyphens");
    }
    if !s.bytes().any(|b| b.is_ascii_lowercase()) {
        errs.push("must contain at least one letter (a-z)");
    }
    if s.starts_with('-') || s.ends_with('-') {
        errs.push("must not begin or end with a hyphen");
    }
    errs
}

/// A host: a DNS subdomain, or `*.` and one.
fn host(h: &str, field: &str, causes: &mut Vec<Cause>) {
    let msg = match h.strip_prefix("*.") {
        Some(rest) => meta::dns1123_subdomain(rest).map(|_| "a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain, which must consist of lower case alphanumeric characters, '-' or '.' and end with an alphanumeric character (e.g. '*.example.com', regex used for validation is '\\*\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')".to_string()),
        None => meta::dns1123_subdomain(h),
    };
    if let Some(m) = msg {
        causes.push(Cause::invalid(field, format!("Invalid value: {h:?}: {m}")));
    }
}

/// A backend: a Service (name and port name or number) or a resource.
fn backend(b: &Value, path: &str, causes: &mut Vec<Cause>) {
    let service = b.get("service").filter(|s| !s.is_null());
    let resource = b.get("resource").filter(|s| !s.is_null());
    match (service, resource) {
        (Some(_), Some(_)) => causes.push(Cause::invalid(
            path,
            "Invalid value: \"\": cannot set both resource and service backends",
        )),
        (None, Some(r)) => {
            for f in ["kind", "name"] {
                if str_at(r, &format!("/{f}")).is_none_or(str::is_empty) {
                    causes.push(Cause::required(format!("{path}.resource.{f}")));
                }
            }
        }
        (Some(s), None) => {
            match str_at(s, "/name").filter(|n| !n.is_empty()) {
                None => causes.push(Cause::required(format!("{path}.service.name"))),
                Some(n) => {
                    if let Some(m) = dns1035_label(n) {
                        causes.push(Cause::invalid(
                            format!("{path}.service.name"),
                            format!("Invalid value: {n:?}: {m}"),
                        ));
                    }
                }
            }
            let name = str_at(s, "/port/name").filter(|n| !n.is_empty());
            let number = s
                .pointer("/port/number")
                .and_then(Value::as_i64)
                .filter(|n| *n != 0);
            match (name, number) {
                (Some(_), Some(_)) => causes.push(Cause::invalid(
                    path,
                    "Invalid value: \"\": cannot set both port name & port number",
                )),
                (Some(n), None) => {
                    for m in port_name(n) {
                        causes.push(Cause::invalid(
                            format!("{path}.service.port.name"),
                            format!("Invalid value: {n:?}: {m}"),
                        ));
                    }
                }
                (None, Some(n)) if !(1..=65535).contains(&n) => causes.push(Cause::invalid(
                    format!("{path}.service.port.number"),
                    format!("Invalid value: {n}: must be between 1 and 65535, inclusive"),
                )),
                (None, Some(_)) => {}
                (None, None) => causes.push(Cause::required_because(
                    path,
                    "port name or number is required",
                )),
            }
        }
        (None, None) => causes.push(Cause::invalid(
            path,
            "Invalid value: \"\": resource or service backend is required",
        )),
    }
}

/// One HTTP path: its type, its shape for that type, and its backend.
fn http_path(p: &Value, path: &str, causes: &mut Vec<Cause>) {
    let value = str_at(p, "/path").unwrap_or("");
    let invalid = |m: String| {
        Cause::invalid(
            format!("{path}.path"),
            format!("Invalid value: {value:?}: {m}"),
        )
    };
    match str_at(p, "/pathType") {
        None => {
            // Nothing else of the path is checked without its type.
            causes.push(Cause::required_because(
                format!("{path}.pathType"),
                "pathType must be specified",
            ));
            return;
        }
        Some("Exact" | "Prefix") => {
            if !value.starts_with('/') {
                causes.push(invalid("must be an absolute path".into()));
            }
            for seq in ["//", "/./", "/../", "%2f", "%2F"] {
                if value.contains(seq) {
                    causes.push(invalid(format!("must not contain '{seq}'")));
                }
            }
            for suffix in ["/..", "/."] {
                if value.ends_with(suffix) {
                    causes.push(invalid(format!("cannot end with '{suffix}'")));
                }
            }
        }
        Some("ImplementationSpecific") => {
            if !value.is_empty() && !value.starts_with('/') {
                causes.push(invalid("must be an absolute path".into()));
            }
        }
        Some(other) => causes.push(Cause::not_supported(
            format!("{path}.pathType"),
            other,
            &["Exact", "ImplementationSpecific", "Prefix"],
        )),
    }
    match p.get("backend").filter(|b| !b.is_null()) {
        Some(b) => backend(b, &format!("{path}.backend"), causes),
        None => causes.push(Cause::invalid(
            format!("{path}.backend"),
            "Invalid value: \"\": resource or service backend is required",
        )),
    }
}

fn validate_ingress(obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let rules = array_at(obj, "/spec/rules");
    let default = obj.pointer("/spec/defaultBackend").filter(|b| !b.is_null());
    match default {
        Some(b) => backend(b, "spec.defaultBackend", &mut causes),
        None if rules.is_empty() => causes.push(Cause::invalid(
            "spec",
            "Invalid value: []networking.IngressRule(nil): either `defaultBackend` or `rules` must be specified",
        )),
        None => {}
    }
    for (i, r) in rules.iter().enumerate() {
        let at = format!("spec.rules[{i}]");
        if let Some(h) = str_at(r, "/host").filter(|h| !h.is_empty()) {
            if h.parse::<std::net::IpAddr>().is_ok() {
                causes.push(Cause::invalid(
                    format!("{at}.host"),
                    format!("Invalid value: {h:?}: must be a DNS name, not an IP address"),
                ));
            } else {
                host(h, &format!("{at}.host"), &mut causes);
            }
        }
        if let Some(http) = r.get("http").filter(|h| !h.is_null()) {
            let paths = array_at(http, "/paths");
            if paths.is_empty() {
                causes.push(Cause::required(format!("{at}.http.paths")));
            }
            for (j, p) in paths.iter().enumerate() {
                http_path(p, &format!("{at}.http.paths[{j}]"), &mut causes);
            }
        }
    }
    for (i, t) in array_at(obj, "/spec/tls").iter().enumerate() {
        for (j, h) in array_at(t, "/hosts").iter().enumerate() {
            host(
                h.as_str().unwrap_or(""),
                &format!("spec.tls[{i}].hosts[{j}]"),
                &mut causes,
            );
        }
    }
    if let Some(c) = str_at(obj, "/spec/ingressClassName")
        && let Some(m) = meta::dns1123_subdomain(c)
    {
        causes.push(Cause::invalid(
            "spec.ingressClassName",
            format!("Invalid value: {c:?}: {m}"),
        ));
    }
    causes
}

struct IngressClassStrategy;
impl Strategy for IngressClassStrategy {
    fn prepare_create(&self, obj: &mut Value) {
        // Parameters name a cluster-scoped object unless they say otherwise.
        if let Some(p) = obj
            .pointer_mut("/spec/parameters")
            .filter(|p| p.is_object())
            && p.get("scope").is_none_or(Value::is_null)
        {
            p["scope"] = json!("Cluster");
        }
    }
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        validate_ingressclass(obj)
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        Cause::immutable(new, old, "/spec/controller", "spec.controller")
            .into_iter()
            .collect()
    }
    fn columns(&self) -> Vec<Column> {
        vec![
            Column::new("Controller", "Controller that implements the class"),
            Column::new(
                "Parameters",
                "A reference to a resource with additional parameters",
            ),
        ]
    }
    fn cells(&self, obj: &Value) -> Vec<Value> {
        let params = obj
            .pointer("/spec/parameters")
            .filter(|p| p.is_object())
            .map(|p| {
                let kind = str_at(p, "/kind").unwrap_or("");
                let kind = match str_at(p, "/apiGroup") {
                    Some(g) => format!("{kind}.{g}"),
                    None => kind.to_string(),
                };
                format!("{kind}/{}", str_at(p, "/name").unwrap_or(""))
            });
        vec![
            json!(str_at(obj, "/spec/controller").unwrap_or("")),
            json!(params.unwrap_or_else(|| "<none>".into())),
        ]
    }
}

/// Longest `spec.controller`.
const CONTROLLER_LIMIT: usize = 250;

fn validate_ingressclass(obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    match str_at(obj, "/spec/controller").filter(|c| !c.is_empty()) {
        None => causes.push(Cause::required("spec.controller")),
        Some(c) if c.len() > CONTROLLER_LIMIT => causes.push(Cause::invalid(
            "spec.controller",
            format!("Too long: may not be more than {CONTROLLER_LIMIT} bytes"),
        )),
        Some(c) => {
            // A domain-prefixed path (`example.com/ingress-controller`).
            let ok = c
                .split_once('/')
                .is_some_and(|(d, p)| meta::dns1123_subdomain(d).is_none() && !p.is_empty());
            if !ok {
                causes.push(Cause::invalid(
                    "spec.controller",
                    format!("Invalid value: {c:?}: must be a domain-prefixed path (such as \"acme.io/foo\")"),
                ));
            }
        }
    }
    if let Some(p) = obj.pointer("/spec/parameters").filter(|p| p.is_object()) {
        let at = "spec.parameters";
        for f in ["kind", "name"] {
            if str_at(p, &format!("/{f}")).is_none_or(str::is_empty) {
                causes.push(Cause::required(format!("{at}.{f}")));
            }
        }
        let ns = str_at(p, "/namespace");
        match str_at(p, "/scope") {
            Some("Namespace") if ns.is_none_or(str::is_empty) => {
                causes.push(Cause::required_because(
                    format!("{at}.namespace"),
                    "`parameters.scope` is set to 'Namespace'",
                ))
            }
            Some("Cluster") if ns.is_some() => causes.push(Cause::forbidden(
                format!("{at}.namespace"),
                "`parameters.scope` is set to 'Cluster'",
            )),
            Some("Cluster" | "Namespace") | None => {}
            Some(s) => causes.push(Cause::not_supported(
                format!("{at}.scope"),
                s,
                &["Cluster", "Namespace"],
            )),
        }
    }
    causes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::fields::cause_fields as fields;

    fn ingress(spec: Value) -> Value {
        json!({"metadata": {"name": "web", "namespace": "default"}, "spec": spec})
    }

    #[test]
    fn ingresses_are_validated_as_kubernetes_does() {
        let ok = ingress(
            json!({"ingressClassName": "nginx", "rules": [{"host": "foo.com", "http": {"paths": [
            {"path": "/bar", "pathType": "Exact", "backend": {"service": {"name": "svc1", "port": {"number": 8080}}}},
            {"path": "/x", "pathType": "Prefix", "backend": {"service": {"name": "svc2", "port": {"name": "http"}}}}]}}],
            "tls": [{"hosts": ["foo.com", "*.foo.com"], "secretName": "cert"}]}),
        );
        assert!(
            validate_ingress(&ok).is_empty(),
            "{:?}",
            validate_ingress(&ok)
        );
        assert_eq!(fields(&validate_ingress(&ingress(json!({})))), ["spec"]);
        let bad = ingress(
            json!({"defaultBackend": {"service": {"name": "1svc"}}, "rules": [
            {"host": "10.0.0.1", "http": {"paths": [
                {"path": "a//b", "backend": {"service": {"name": "s", "port": {"number": 70000}}}},
                {"path": "/a/..", "pathType": "Prefix", "backend": {"resource": {"kind": "Bucket"}}},
                {"path": "/", "pathType": "Regex", "backend": {}}]}},
            {"host": "*.*.com", "http": {"paths": []}}],
            "tls": [{"hosts": ["Bad_Host"]}]}),
        );
        assert_eq!(
            fields(&validate_ingress(&bad)),
            [
                "spec.defaultBackend.service.name",
                "spec.defaultBackend",
                "spec.rules[0].host",
                "spec.rules[0].http.paths[0].pathType",
                "spec.rules[0].http.paths[1].path",
                "spec.rules[0].http.paths[1].backend.resource.name",
                "spec.rules[0].http.paths[2].pathType",
                "spec.rules[0].http.paths[2].backend",
                "spec.rules[1].host",
                "spec.rules[1].http.paths",
                "spec.tls[0].hosts[0]",
            ]
        );
        let msgs: Vec<String> = validate_ingress(&bad)
            .into_iter()
            .map(|c| c.message)
            .collect();
        assert!(
            msgs.contains(&"Invalid value: \"/a/..\": cannot end with '/..'".to_string()),
            "{msgs:?}"
        );
        assert!(msgs.contains(&"Required value: pathType must be specified".to_string()));
        assert!(msgs.contains(&"Required value: port name or number is required".to_string()));
    }

    #[test]
    fn ingress_columns_are_kubectls() {
        let ing = ingress(
            json!({"rules": [{"host": "a.com"}, {}, {"host": "c.com"}, {"host": "d.com"}],
            "tls": [{"hosts": ["a.com"]}]}),
        );
        let mut ing = ing;
        ing["status"] =
            json!({"loadBalancer": {"ingress": [{"ip": "10.0.0.5"}, {"hostname": "lb.example"}]}});
        assert_eq!(
            IngressStrategy.cells(&ing),
            [
                json!("<none>"),
                json!("a.com,c.com + 1 more..."),
                json!("10.0.0.5,lb.example"),
                json!("80, 443")
            ]
        );
        assert_eq!(hosts(&[json!({"http": {}})]), "*");
        assert_eq!(IngressStrategy.columns().len(), 4);
    }

    #[test]
    fn ingress_classes_default_scope_and_keep_their_controller() {
        let mut c = json!({"metadata": {"name": "nginx"}, "spec": {"controller": "k8s.io/ingress-nginx",
            "parameters": {"apiGroup": "k8s.example.com", "kind": "IngressParameters", "name": "external-lb"}}});
        IngressClassStrategy.prepare_create(&mut c);
        assert_eq!(c["spec"]["parameters"]["scope"], "Cluster");
        assert!(validate_ingressclass(&c).is_empty());
        assert_eq!(
            IngressClassStrategy.cells(&c),
            [
                json!("k8s.io/ingress-nginx"),
                json!("IngressParameters.k8s.example.com/external-lb")
            ]
        );
        let mut changed = c.clone();
        changed["spec"]["controller"] = json!("example.com/other");
        assert_eq!(
            fields(&IngressClassStrategy.validate_update(&changed, &c)),
            ["spec.controller"]
        );
        let bad = json!({"spec": {"controller": "nginx", "parameters": {"kind": "P", "name": "p", "scope": "Namespace"}}});
        assert_eq!(
            fields(&validate_ingressclass(&bad)),
            ["spec.controller", "spec.parameters.namespace"]
        );
        assert_eq!(
            fields(&validate_ingressclass(&json!({"spec": {}}))),
            ["spec.controller"]
        );
    }
}
