//! Kubernetes' defaults and field rules for the kinds beyond pods and
//! workloads: volumes and claims, storage classes, network policies, leases,
//! RBAC, CRDs, APIServices, nodes, endpoints, quotas and limit ranges, plus
//! the shared pieces (quantities, label selectors, CIDRs, container
//! resources). `kinds.rs` wires each function into its kind's strategy.

use serde_json::{Value, json};

use crate::error::Cause;
use crate::kinds::default_at;
use crate::meta;

fn str_at<'a>(obj: &'a Value, pointer: &str) -> Option<&'a str> {
    obj.pointer(pointer).and_then(Value::as_str)
}

fn array_at<'a>(obj: &'a Value, pointer: &str) -> &'a [Value] {
    obj.pointer(pointer)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// `value` at `pointer` must be one of `supported` when present.
fn one_of(obj: &Value, pointer: &str, field: &str, supported: &[&str], causes: &mut Vec<Cause>) {
    if let Some(v) = str_at(obj, pointer)
        && !supported.contains(&v)
    {
        causes.push(Cause::not_supported(field, v, supported));
    }
}

/// A Kubernetes quantity (`500m`, `1Gi`, `2e3`, `1.5`) as a number.
pub fn parse_quantity(s: &str) -> Option<f64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '+' | '-')))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    if number.is_empty() || number == "+" || number == "-" {
        return None;
    }
    let n: f64 = number.parse().ok()?;
    let scale = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        e if e.starts_with(['e', 'E']) => 10f64.powi(e[1..].parse::<i32>().ok()?),
        _ => return None,
    };
    Some(n * scale)
}

/// Every quantity of a resource map (`{"cpu": "1", "memory": "1Gi"}`) at
/// `pointer` parses and is not negative; returns the parsed map.
fn quantities(
    obj: &Value,
    pointer: &str,
    field: &str,
    causes: &mut Vec<Cause>,
) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    for (name, q) in obj
        .pointer(pointer)
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        let text = match q {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => String::new(),
        };
        match parse_quantity(&text) {
            Some(v) if v >= 0.0 => out.push((name.clone(), v)),
            Some(_) => causes.push(Cause::invalid(
                format!("{field}[{name}]"),
                format!("Invalid value: {text:?}: must be greater than or equal to 0"),
            )),
            None => causes.push(Cause::invalid(
                format!("{field}[{name}]"),
                format!("Invalid value: {text:?}: quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"),
            )),
        }
    }
    out
}

/// A container's requests and limits parse, and no request exceeds its limit.
pub fn container_resources(c: &Value, path: &str) -> Vec<Cause> {
    let mut causes = Vec::new();
    let requests = quantities(
        c,
        "/resources/requests",
        &format!("{path}.resources.requests"),
        &mut causes,
    );
    let limits = quantities(
        c,
        "/resources/limits",
        &format!("{path}.resources.limits"),
        &mut causes,
    );
    for (name, req) in &requests {
        if let Some((_, limit)) = limits.iter().find(|(n, _)| n == name)
            && req > limit
        {
            let text = |v: &Value| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            causes.push(Cause::invalid(
                format!("{path}.resources.requests"),
                format!(
                    "Invalid value: {:?}: must be less than or equal to {name} limit of {}",
                    text(&c["resources"]["requests"][name.as_str()]),
                    text(&c["resources"]["limits"][name.as_str()])
                ),
            ));
        }
    }
    causes
}

/// A label selector: valid keys and values, known operators, values exactly
/// where the operator needs them.
pub fn selector(sel: &Value, path: &str) -> Vec<Cause> {
    let mut causes = Vec::new();
    for (k, v) in sel
        .get("matchLabels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        if let Some(m) = meta::qualified_name(k) {
            causes.push(Cause::invalid(
                format!("{path}.matchLabels"),
                format!("Invalid value: {k:?}: {m}"),
            ));
        }
        if let Some(m) = v.as_str().and_then(meta::label_value) {
            causes.push(Cause::invalid(
                format!("{path}.matchLabels"),
                format!("Invalid value: {v}: {m}"),
            ));
        }
    }
    for (i, e) in array_at(sel, "/matchExpressions").iter().enumerate() {
        let at = format!("{path}.matchExpressions[{i}]");
        match e.get("key").and_then(Value::as_str) {
            Some(k) => {
                if let Some(m) = meta::qualified_name(k) {
                    causes.push(Cause::invalid(
                        format!("{at}.key"),
                        format!("Invalid value: {k:?}: {m}"),
                    ));
                }
            }
            None => causes.push(Cause::required(format!("{at}.key"))),
        }
        let values = array_at(e, "/values");
        match e.get("operator").and_then(Value::as_str) {
            Some("In" | "NotIn") if values.is_empty() => causes.push(Cause::required_because(
                format!("{at}.values"),
                "must be specified when `operator` is 'In' or 'NotIn'",
            )),
            Some("Exists" | "DoesNotExist") if !values.is_empty() => causes.push(Cause::forbidden(
                format!("{at}.values"),
                "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            )),
            Some("In" | "NotIn" | "Exists" | "DoesNotExist") => {}
            Some(op) => causes.push(Cause::not_supported(
                format!("{at}.operator"),
                op,
                &["In", "NotIn", "Exists", "DoesNotExist"],
            )),
            None => causes.push(Cause::required(format!("{at}.operator"))),
        }
    }
    causes
}

/// `a.b.c.d/n` or an IPv6 CIDR.
fn is_cidr(s: &str) -> bool {
    let Some((ip, bits)) = s.split_once('/') else {
        return false;
    };
    let Ok(bits) = bits.parse::<u8>() else {
        return false;
    };
    match ip.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(_)) => bits <= 32,
        Ok(std::net::IpAddr::V6(_)) => bits <= 128,
        Err(_) => false,
    }
}

fn cidr(obj: &Value, pointer: &str, field: &str, causes: &mut Vec<Cause>) {
    if let Some(c) = str_at(obj, pointer)
        && !is_cidr(c)
    {
        causes.push(Cause::invalid(
            field,
            format!("Invalid value: {c:?}: must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"),
        ));
    }
}

fn port_number(obj: &Value, pointer: &str, field: &str, causes: &mut Vec<Cause>) {
    if let Some(n) = obj.pointer(pointer).and_then(Value::as_i64)
        && !(1..=65535).contains(&n)
    {
        causes.push(Cause::invalid(
            field,
            format!("Invalid value: {n}: must be between 1 and 65535, inclusive"),
        ));
    }
}

const ACCESS_MODES: &[&str] = &[
    "ReadWriteOnce",
    "ReadOnlyMany",
    "ReadWriteMany",
    "ReadWriteOncePod",
];

fn access_modes(obj: &Value, causes: &mut Vec<Cause>) {
    let modes = array_at(obj, "/spec/accessModes");
    if modes.is_empty() {
        causes.push(Cause::required("spec.accessModes"));
    }
    for m in modes.iter().filter_map(Value::as_str) {
        if !ACCESS_MODES.contains(&m) {
            causes.push(Cause::not_supported("spec.accessModes", m, ACCESS_MODES));
        }
    }
    if modes.len() > 1 && modes.iter().any(|m| m == "ReadWriteOncePod") {
        causes.push(Cause::forbidden(
            "spec.accessModes",
            "may not use ReadWriteOncePod with other access modes",
        ));
    }
}

fn positive_storage(obj: &Value, pointer: &str, field: &str, causes: &mut Vec<Cause>) {
    match obj.pointer(pointer).and_then(Value::as_str) {
        None => causes.push(Cause::required(field)),
        Some(q) => match parse_quantity(q) {
            Some(v) if v > 0.0 => {}
            Some(_) => causes.push(Cause::invalid(
                field,
                format!("Invalid value: {q:?}: must be greater than zero"),
            )),
            None => causes.push(Cause::invalid(
                field,
                format!("Invalid value: {q:?}: must be a quantity"),
            )),
        },
    }
}

/// The volume types a PersistentVolume may name (exactly one of them).
const PV_SOURCES: &[&str] = &[
    "awsElasticBlockStore",
    "azureDisk",
    "azureFile",
    "cephfs",
    "cinder",
    "csi",
    "fc",
    "flexVolume",
    "flocker",
    "gcePersistentDisk",
    "glusterfs",
    "hostPath",
    "iscsi",
    "local",
    "nfs",
    "photonPersistentDisk",
    "portworxVolume",
    "quobyte",
    "rbd",
    "scaleIO",
    "storageos",
    "vsphereVolume",
];

pub fn pv_defaults(obj: &mut Value) {
    default_at(
        obj,
        &["spec", "persistentVolumeReclaimPolicy"],
        json!("Retain"),
    );
    default_at(obj, &["spec", "volumeMode"], json!("Filesystem"));
    default_at(obj, &["status", "phase"], json!("Pending"));
}

fn node_selector_terms(terms: &[Value], path: &str, causes: &mut Vec<Cause>) {
    if terms.is_empty() {
        causes.push(Cause::required(path));
    }
    for (i, term) in terms.iter().enumerate() {
        for (j, e) in array_at(term, "/matchExpressions").iter().enumerate() {
            let at = format!("{path}[{i}].matchExpressions[{j}]");
            let ops = ["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"];
            match e.get("operator").and_then(Value::as_str) {
                Some(op) if ops.contains(&op) => {}
                Some(op) => causes.push(Cause::not_supported(format!("{at}.operator"), op, &ops)),
                None => causes.push(Cause::required(format!("{at}.operator"))),
            }
            if e.get("key")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                causes.push(Cause::required(format!("{at}.key")));
            }
        }
    }
}

pub fn validate_pv(obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    if obj.pointer("/spec/capacity").is_none() {
        causes.push(Cause::required("spec.capacity"));
    } else {
        positive_storage(
            obj,
            "/spec/capacity/storage",
            "spec.capacity[storage]",
            &mut causes,
        );
    }
    access_modes(obj, &mut causes);
    one_of(
        obj,
        "/spec/persistentVolumeReclaimPolicy",
        "spec.persistentVolumeReclaimPolicy",
        &["Delete", "Recycle", "Retain"],
        &mut causes,
    );
    one_of(
        obj,
        "/spec/volumeMode",
        "spec.volumeMode",
        &["Block", "Filesystem"],
        &mut causes,
    );
    let sources: Vec<&str> = PV_SOURCES
        .iter()
        .copied()
        .filter(|s| obj["spec"].get(*s).is_some_and(|v| !v.is_null()))
        .collect();
    match sources.as_slice() {
        [] => causes.push(Cause::required_because(
            "spec",
            "must specify a volume type",
        )),
        [_] => {}
        [_, more @ ..] => causes.push(Cause::forbidden(
            format!("spec.{}", more[0]),
            "may not specify more than 1 volume type",
        )),
    }
    for (source, required) in [
        ("hostPath", &["path"][..]),
        ("local", &["path"][..]),
        ("nfs", &["server", "path"][..]),
        ("csi", &["driver", "volumeHandle"][..]),
        ("iscsi", &["targetPortal", "iqn"][..]),
    ] {
        if let Some(s) = obj["spec"].get(source).filter(|v| v.is_object()) {
            for f in required {
                if s.get(*f).and_then(Value::as_str).is_none_or(str::is_empty) {
                    causes.push(Cause::required(format!("spec.{source}.{f}")));
                }
            }
        }
    }
    let affinity = obj.pointer("/spec/nodeAffinity/required/nodeSelectorTerms");
    if sources.contains(&"local") && affinity.is_none() {
        causes.push(Cause::required_because(
            "spec.nodeAffinity",
            "Local volume requires node affinity",
        ));
    }
    if obj.pointer("/spec/nodeAffinity/required").is_some() {
        node_selector_terms(
            array_at(obj, "/spec/nodeAffinity/required/nodeSelectorTerms"),
            "spec.nodeAffinity.required.nodeSelectorTerms",
            &mut causes,
        );
    }
    causes
}

/// A volume keeps its source, mode and node affinity once created.
pub fn pv_update(new: &Value, old: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let source = |v: &Value| -> Vec<(String, Value)> {
        PV_SOURCES
            .iter()
            .filter_map(|s| v["spec"].get(*s).map(|x| (s.to_string(), x.clone())))
            .collect()
    };
    if source(new) != source(old) {
        causes.push(Cause::forbidden(
            "spec.persistentvolumesource",
            "spec.persistentvolumesource is immutable after creation",
        ));
    }
    causes.extend(Cause::immutable(
        new,
        old,
        "/spec/volumeMode",
        "spec.volumeMode",
    ));
    if old.pointer("/spec/nodeAffinity").is_some() {
        causes.extend(Cause::immutable(
            new,
            old,
            "/spec/nodeAffinity",
            "spec.nodeAffinity",
        ));
    }
    causes
}

pub fn pvc_defaults(obj: &mut Value) {
    default_at(obj, &["spec", "volumeMode"], json!("Filesystem"));
    default_at(obj, &["status", "phase"], json!("Pending"));
}

pub fn validate_pvc(obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    access_modes(obj, &mut causes);
    positive_storage(
        obj,
        "/spec/resources/requests/storage",
        "spec.resources[storage]",
        &mut causes,
    );
    one_of(
        obj,
        "/spec/volumeMode",
        "spec.volumeMode",
        &["Block", "Filesystem"],
        &mut causes,
    );
    if let Some(sel) = obj.pointer("/spec/selector").filter(|s| s.is_object()) {
        causes.extend(selector(sel, "spec.selector"));
    }
    causes
}

/// A claim's spec is fixed except its storage request (which may only grow),
/// its volume (set once, when bound) and its volume attributes class.
pub fn pvc_update(new: &Value, old: &Value) -> Vec<Cause> {
    let strip = |v: &Value| {
        let mut spec = v.get("spec").cloned().unwrap_or(Value::Null);
        if let Some(o) = spec.as_object_mut() {
            o.remove("volumeAttributesClassName");
            if old.pointer("/spec/volumeName").is_none() {
                o.remove("volumeName");
            }
            if let Some(r) = o.get_mut("resources").and_then(Value::as_object_mut) {
                r.remove("requests");
            }
        }
        spec
    };
    let mut causes = Vec::new();
    if strip(new) != strip(old) {
        causes.push(Cause::forbidden(
            "spec",
            "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims",
        ));
    }
    let storage =
        |v: &Value| str_at(v, "/spec/resources/requests/storage").and_then(parse_quantity);
    if let (Some(n), Some(o)) = (storage(new), storage(old))
        && n < o
    {
        causes.push(Cause::forbidden(
            "spec.resources.requests.storage",
            "field can not be less than previous value",
        ));
    }
    causes
}

pub fn storageclass_defaults(obj: &mut Value) {
    default_at(obj, &["reclaimPolicy"], json!("Delete"));
    default_at(obj, &["volumeBindingMode"], json!("Immediate"));
}

pub fn validate_storageclass(obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    match str_at(obj, "/provisioner") {
        None | Some("") => causes.push(Cause::required("provisioner")),
        Some(p) => {
            if let Some(m) = meta::qualified_name(p) {
                causes.push(Cause::invalid(
                    "provisioner",
                    format!("Invalid value: {p:?}: {m}"),
                ));
            }
        }
    }
    one_of(
        obj,
        "/reclaimPolicy",
        "reclaimPolicy",
        &["Delete", "Retain"],
        &mut causes,
    );
    one_of(
        obj,
        "/volumeBindingMode",
        "volumeBindingMode",
        &["Immediate", "WaitForFirstConsumer"],
        &mut causes,
    );
    causes
}

pub fn storageclass_update(new: &Value, old: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    for f in ["parameters", "provisioner", "reclaimPolicy"] {
        if new.get(f) != old.get(f) {
            causes.push(Cause::forbidden(
                f,
                format!("updates to {f} are forbidden."),
            ));
        }
    }
    causes.extend(Cause::immutable(
        new,
        old,
        "/volumeBindingMode",
        "volumeBindingMode",
    ));
    causes
}

/// Policy types default to Ingress, plus Egress when egress rules exist.
pub fn networkpolicy_defaults(obj: &mut Value) {
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

/// Ports under `ports` of `holder` get protocol TCP where they name none.
pub fn tcp_by_default(holder: &mut Value) {
    if let Some(ports) = holder.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports {
            default_at(p, &["protocol"], json!("TCP"));
        }
    }
}

pub fn validate_networkpolicy(obj: &Value) -> Vec<Cause> {
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

pub fn validate_lease(obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    if let Some(d) = obj
        .pointer("/spec/leaseDurationSeconds")
        .and_then(Value::as_i64)
        && d <= 0
    {
        causes.push(Cause::invalid(
            "spec.leaseDurationSeconds",
            format!("Invalid value: {d}: must be greater than 0"),
        ));
    }
    if let Some(t) = obj
        .pointer("/spec/leaseTransitions")
        .and_then(Value::as_i64)
        && t < 0
    {
        causes.push(Cause::invalid(
            "spec.leaseTransitions",
            format!("Invalid value: {t}: must be greater than or equal to 0"),
        ));
    }
    causes
}

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

fn rules(obj: &Value, namespaced: bool) -> Vec<Cause> {
    let mut causes = Vec::new();
    for (i, r) in array_at(obj, "/rules").iter().enumerate() {
        let at = format!("rules[{i}]");
        if array_at(r, "/verbs").is_empty() {
            causes.push(Cause::required_because(
                format!("{at}.verbs"),
                "verbs must contain at least one value",
            ));
        }
        let urls = array_at(r, "/nonResourceURLs");
        let resources = array_at(r, "/resources");
        if !urls.is_empty() {
            if namespaced {
                causes.push(Cause::invalid(
                    format!("{at}.nonResourceURLs"),
                    "Invalid value: namespaced rules cannot apply to non-resource URLs",
                ));
            } else if !resources.is_empty() || !array_at(r, "/apiGroups").is_empty() {
                causes.push(Cause::invalid(
                    format!("{at}.nonResourceURLs"),
                    "Invalid value: rules cannot apply to both regular resources and non-resource URLs",
                ));
            }
            continue;
        }
        if r.get("apiGroups")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty)
        {
            causes.push(Cause::required_because(
                format!("{at}.apiGroups"),
                "resource rules must supply at least one api group",
            ));
        }
        if resources.is_empty() {
            causes.push(Cause::required_because(
                format!("{at}.resources"),
                "resource rules must supply at least one resource",
            ));
        }
    }
    causes
}

pub fn validate_role(obj: &Value) -> Vec<Cause> {
    rules(obj, true)
}

pub fn validate_clusterrole(obj: &Value) -> Vec<Cause> {
    let mut causes = rules(obj, false);
    if let Some(agg) = obj.get("aggregationRule").filter(|a| a.is_object()) {
        for (i, s) in array_at(agg, "/clusterRoleSelectors").iter().enumerate() {
            causes.extend(selector(
                s,
                &format!("aggregationRule.clusterRoleSelectors[{i}]"),
            ));
        }
    }
    causes
}

/// The role reference's group and each subject's group, where Kubernetes
/// fills them in.
pub fn binding_defaults(obj: &mut Value) {
    if obj.get("roleRef").is_some_and(Value::is_object) {
        default_at(obj, &["roleRef", "apiGroup"], json!(RBAC_GROUP));
    }
    if let Some(subjects) = obj.get_mut("subjects").and_then(Value::as_array_mut) {
        for s in subjects {
            let group = match s.get("kind").and_then(Value::as_str) {
                Some("User" | "Group") => RBAC_GROUP,
                _ => "",
            };
            default_at(s, &["apiGroup"], json!(group));
        }
    }
}

fn binding(obj: &Value, cluster: bool) -> Vec<Cause> {
    let mut causes = Vec::new();
    let kinds: &[&str] = if cluster {
        &["ClusterRole"]
    } else {
        &["Role", "ClusterRole"]
    };
    match obj.get("roleRef").filter(|r| r.is_object()) {
        None => causes.push(Cause::required("roleRef")),
        Some(r) => {
            if str_at(r, "/apiGroup") != Some(RBAC_GROUP) {
                causes.push(Cause::not_supported(
                    "roleRef.apiGroup",
                    str_at(r, "/apiGroup").unwrap_or(""),
                    &[RBAC_GROUP],
                ));
            }
            match str_at(r, "/kind") {
                Some(k) if kinds.contains(&k) => {}
                k => causes.push(Cause::not_supported("roleRef.kind", k.unwrap_or(""), kinds)),
            }
            match str_at(r, "/name") {
                None | Some("") => causes.push(Cause::required("roleRef.name")),
                Some(n) => {
                    if let Some(m) = meta::path_segment(n) {
                        causes.push(Cause::invalid(
                            "roleRef.name",
                            format!("Invalid value: {n:?}: {m}"),
                        ));
                    }
                }
            }
        }
    }
    for (i, s) in array_at(obj, "/subjects").iter().enumerate() {
        let at = format!("subjects[{i}]");
        let name = str_at(s, "/name").unwrap_or("");
        if name.is_empty() {
            causes.push(Cause::required(format!("{at}.name")));
        }
        let group = str_at(s, "/apiGroup").unwrap_or("");
        match str_at(s, "/kind") {
            Some("ServiceAccount") => {
                if !group.is_empty() {
                    causes.push(Cause::not_supported(format!("{at}.apiGroup"), group, &[""]));
                }
                if !name.is_empty()
                    && let Some(m) = meta::dns1123_subdomain(name)
                {
                    causes.push(Cause::invalid(
                        format!("{at}.name"),
                        format!("Invalid value: {name:?}: {m}"),
                    ));
                }
                if cluster && str_at(s, "/namespace").is_none_or(str::is_empty) {
                    causes.push(Cause::required(format!("{at}.namespace")));
                }
            }
            Some("User" | "Group") => {
                if group != RBAC_GROUP {
                    causes.push(Cause::not_supported(
                        format!("{at}.apiGroup"),
                        group,
                        &[RBAC_GROUP],
                    ));
                }
            }
            k => causes.push(Cause::not_supported(
                format!("{at}.kind"),
                k.unwrap_or(""),
                &["ServiceAccount", "User", "Group"],
            )),
        }
    }
    causes
}

pub fn validate_rolebinding(obj: &Value) -> Vec<Cause> {
    binding(obj, false)
}

pub fn validate_clusterrolebinding(obj: &Value) -> Vec<Cause> {
    binding(obj, true)
}

/// A binding's role never changes: Kubernetes makes users delete and recreate.
pub fn binding_update(new: &Value, old: &Value) -> Vec<Cause> {
    if new.get("roleRef") != old.get("roleRef") {
        return vec![Cause::invalid(
            "roleRef",
            "Invalid value: cannot change roleRef",
        )];
    }
    vec![]
}

/// Singular name, list kind and conversion strategy where they are missing.
pub fn crd_defaults(obj: &mut Value) {
    if let Some(kind) = str_at(obj, "/spec/names/kind").map(str::to_string) {
        default_at(
            obj,
            &["spec", "names", "singular"],
            json!(kind.to_lowercase()),
        );
        default_at(
            obj,
            &["spec", "names", "listKind"],
            json!(format!("{kind}List")),
        );
    }
    if obj.get("spec").is_some_and(Value::is_object) {
        default_at(obj, &["spec", "conversion", "strategy"], json!("None"));
    }
}

fn dns_label_at(obj: &Value, pointer: &str, field: &str, causes: &mut Vec<Cause>) {
    match str_at(obj, pointer) {
        None | Some("") => causes.push(Cause::required(field)),
        Some(v) => {
            if let Some(m) = meta::dns1123_label(v) {
                causes.push(Cause::invalid(field, format!("Invalid value: {v:?}: {m}")));
            }
        }
    }
}

pub fn validate_crd(obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let group = str_at(obj, "/spec/group").unwrap_or("");
    if group.is_empty() {
        causes.push(Cause::required("spec.group"));
    } else if meta::dns1123_subdomain(group).is_some() || !group.contains('.') {
        causes.push(Cause::invalid(
            "spec.group",
            format!("Invalid value: {group:?}: should be a domain with at least one dot"),
        ));
    }
    dns_label_at(obj, "/spec/names/plural", "spec.names.plural", &mut causes);
    if str_at(obj, "/spec/names/singular").is_some() {
        dns_label_at(
            obj,
            "/spec/names/singular",
            "spec.names.singular",
            &mut causes,
        );
    }
    match str_at(obj, "/spec/names/kind") {
        None | Some("") => causes.push(Cause::required("spec.names.kind")),
        Some(k) if !k.chars().all(|c| c.is_ascii_alphanumeric()) => {
            causes.push(Cause::invalid(
                "spec.names.kind",
                format!("Invalid value: {k:?}: may have mixed case, but should otherwise match: ^[a-z]([-a-z0-9]*[a-z0-9])?$"),
            ))
        }
        Some(_) => {}
    }
    let plural = str_at(obj, "/spec/names/plural").unwrap_or("");
    let name = str_at(obj, "/metadata/name").unwrap_or("");
    if !plural.is_empty() && !group.is_empty() && name != format!("{plural}.{group}") {
        causes.push(Cause::invalid(
            "metadata.name",
            format!("Invalid value: {name:?}: must be spec.names.plural+\".\"+spec.group"),
        ));
    }
    match str_at(obj, "/spec/scope") {
        Some("Namespaced" | "Cluster") => {}
        None => causes.push(Cause::required("spec.scope")),
        Some(s) => causes.push(Cause::not_supported(
            "spec.scope",
            s,
            &["Cluster", "Namespaced"],
        )),
    }
    let versions = array_at(obj, "/spec/versions");
    let mut seen = std::collections::BTreeSet::new();
    for (i, v) in versions.iter().enumerate() {
        let at = format!("spec.versions[{i}]");
        dns_label_at(v, "/name", &format!("{at}.name"), &mut causes);
        if let Some(n) = str_at(v, "/name")
            && !seen.insert(n)
        {
            causes.push(Cause::duplicate(format!("{at}.name"), n));
        }
        match v.pointer("/schema/openAPIV3Schema") {
            None => causes.push(Cause::required_because(
                format!("{at}.schema.openAPIV3Schema"),
                "schemas are required",
            )),
            Some(s) => match s.get("type").and_then(Value::as_str) {
                Some("object") => {}
                t => causes.push(Cause::not_supported(
                    format!("{at}.schema.openAPIV3Schema.type"),
                    t.unwrap_or(""),
                    &["object"],
                )),
            },
        }
        if v.pointer("/subresources/scale")
            .is_some_and(Value::is_object)
        {
            for f in ["specReplicasPath", "statusReplicasPath"] {
                if str_at(v, &format!("/subresources/scale/{f}")).is_none() {
                    causes.push(Cause::required(format!("{at}.subresources.scale.{f}")));
                }
            }
        }
    }
    let storage = versions
        .iter()
        .filter(|v| v.get("storage") == Some(&json!(true)))
        .count();
    if storage != 1 {
        causes.push(Cause::invalid(
            "spec.versions",
            "Invalid value: must have exactly one version marked as storage version",
        ));
    }
    if !versions.is_empty()
        && !versions
            .iter()
            .any(|v| v.get("served") == Some(&json!(true)))
    {
        causes.push(Cause::invalid(
            "spec.versions",
            "Invalid value: must have at least one version marked as served",
        ));
    }
    causes
}

pub fn crd_update(new: &Value, old: &Value) -> Vec<Cause> {
    [
        Cause::immutable(new, old, "/spec/group", "spec.group"),
        Cause::immutable(new, old, "/spec/scope", "spec.scope"),
        Cause::immutable(new, old, "/spec/names/plural", "spec.names.plural"),
    ]
    .into_iter()
    .flatten()
    .collect()
}

pub fn apiservice_defaults(obj: &mut Value) {
    if obj.pointer("/spec/service").is_some_and(Value::is_object) {
        default_at(obj, &["spec", "service", "port"], json!(443));
    }
}

pub fn validate_apiservice(obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let version = str_at(obj, "/spec/version").unwrap_or("");
    let group = str_at(obj, "/spec/group").unwrap_or("");
    if version.is_empty() {
        causes.push(Cause::required("spec.version"));
    }
    let name = str_at(obj, "/metadata/name").unwrap_or("");
    if !version.is_empty() && name != format!("{version}.{group}") {
        causes.push(Cause::invalid(
            "metadata.name",
            format!("Invalid value: {name:?}: must be spec.version+\".\"+spec.group"),
        ));
    }
    let min = obj
        .pointer("/spec/groupPriorityMinimum")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if !(1..=20000).contains(&min) {
        causes.push(Cause::invalid(
            "spec.groupPriorityMinimum",
            format!("Invalid value: {min}: must be positive and less than 20000"),
        ));
    }
    let prio = obj
        .pointer("/spec/versionPriority")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if !(1..=1000).contains(&prio) {
        causes.push(Cause::invalid(
            "spec.versionPriority",
            format!("Invalid value: {prio}: must be positive and less than 1000"),
        ));
    }
    let insecure = obj.pointer("/spec/insecureSkipTLSVerify") == Some(&json!(true));
    let ca = str_at(obj, "/spec/caBundle").is_some_and(|c| !c.is_empty());
    match obj.pointer("/spec/service").filter(|s| s.is_object()) {
        Some(s) => {
            for f in ["namespace", "name"] {
                if str_at(s, &format!("/{f}")).is_none_or(str::is_empty) {
                    causes.push(Cause::required(format!("spec.service.{f}")));
                }
            }
            port_number(s, "/port", "spec.service.port", &mut causes);
            if insecure && ca {
                causes.push(Cause::invalid(
                    "spec.insecureSkipTLSVerify",
                    "Invalid value: true: may not be true if caBundle is present",
                ));
            }
        }
        None => {
            if insecure {
                causes.push(Cause::invalid(
                    "spec.insecureSkipTLSVerify",
                    "Invalid value: true: must not be set if service is not set",
                ));
            }
            if ca {
                causes.push(Cause::invalid(
                    "spec.caBundle",
                    "Invalid value: must not be set if service is not set",
                ));
            }
        }
    }
    causes
}

pub fn validate_node(obj: &Value) -> Vec<Cause> {
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

pub fn endpoints_defaults(obj: &mut Value) {
    if let Some(subsets) = obj.get_mut("subsets").and_then(Value::as_array_mut) {
        subsets.iter_mut().for_each(tcp_by_default);
    }
}

pub fn validate_endpoints(obj: &Value) -> Vec<Cause> {
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

/// Secrets of the well-known types carry the keys their type promises.
pub fn secret_type(obj: &Value) -> Vec<Cause> {
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

pub fn validate_resourcequota(obj: &Value) -> Vec<Cause> {
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

pub fn validate_limitrange(obj: &Value) -> Vec<Cause> {
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

    fn fields(causes: &[Cause]) -> Vec<&str> {
        causes.iter().map(|c| c.field.as_str()).collect()
    }

    #[test]
    fn quantities_parse_like_kubernetes() {
        assert_eq!(parse_quantity("1Gi"), Some(1073741824.0));
        assert_eq!(parse_quantity("500m"), Some(0.5));
        assert_eq!(parse_quantity("2e3"), Some(2000.0));
        assert_eq!(parse_quantity("1.5"), Some(1.5));
        assert_eq!(parse_quantity("10k"), Some(10000.0));
        assert_eq!(parse_quantity("1GB"), None);
        assert_eq!(parse_quantity("Gi"), None);
        assert_eq!(parse_quantity(""), None);
    }

    #[test]
    fn requests_may_not_exceed_limits() {
        let c = json!({"resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}});
        let causes = container_resources(&c, "spec.containers[0]");
        assert_eq!(fields(&causes), ["spec.containers[0].resources.requests"]);
        assert!(causes[0].message.contains("cpu limit of 1"), "{causes:?}");
        let bad = json!({"resources": {"limits": {"memory": "lots"}}});
        assert_eq!(
            fields(&container_resources(&bad, "c")),
            ["c.resources.limits[memory]"]
        );
    }

    #[test]
    fn selectors_check_operators_and_values() {
        let sel = json!({"matchLabels": {"a b": "x"}, "matchExpressions": [
            {"key": "k", "operator": "In"},
            {"key": "k", "operator": "Exists", "values": ["v"]},
            {"key": "k", "operator": "Maybe"},
        ]});
        assert_eq!(
            fields(&selector(&sel, "spec.selector")),
            [
                "spec.selector.matchLabels",
                "spec.selector.matchExpressions[0].values",
                "spec.selector.matchExpressions[1].values",
                "spec.selector.matchExpressions[2].operator",
            ]
        );
    }

    #[test]
    fn volumes_need_capacity_modes_and_one_source() {
        let mut pv = json!({"spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "hostPath": {"path": "/d"}}});
        pv_defaults(&mut pv);
        assert_eq!(pv["spec"]["persistentVolumeReclaimPolicy"], "Retain");
        assert_eq!(pv["status"]["phase"], "Pending");
        assert!(validate_pv(&pv).is_empty());
        let empty = json!({"spec": {}});
        assert_eq!(
            fields(&validate_pv(&empty)),
            ["spec.capacity", "spec.accessModes", "spec"]
        );
        let two = json!({"spec": {"capacity": {"storage": "0"}, "accessModes": ["ReadWriteOncePod", "ReadOnlyMany"],
            "local": {"path": "/x"}, "nfs": {"server": "s", "path": "/"}}});
        assert_eq!(
            fields(&validate_pv(&two)),
            [
                "spec.capacity[storage]",
                "spec.accessModes",
                "spec.nfs",
                "spec.nodeAffinity"
            ]
        );
        let mut moved = pv.clone();
        moved["spec"]["hostPath"]["path"] = json!("/elsewhere");
        assert_eq!(
            fields(&pv_update(&moved, &pv)),
            ["spec.persistentvolumesource"]
        );
    }

    #[test]
    fn claims_grow_but_keep_their_spec() {
        let mut pvc = json!({"spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}});
        pvc_defaults(&mut pvc);
        assert!(validate_pvc(&pvc).is_empty());
        assert_eq!(
            fields(&validate_pvc(&json!({"spec": {}}))),
            ["spec.accessModes", "spec.resources[storage]"]
        );
        let mut bigger = pvc.clone();
        bigger["spec"]["resources"]["requests"]["storage"] = json!("2Gi");
        bigger["spec"]["volumeName"] = json!("pv-1");
        assert!(pvc_update(&bigger, &pvc).is_empty());
        let mut smaller = pvc.clone();
        smaller["spec"]["resources"]["requests"]["storage"] = json!("1Mi");
        assert_eq!(
            fields(&pvc_update(&smaller, &pvc)),
            ["spec.resources.requests.storage"]
        );
        let mut modes = pvc.clone();
        modes["spec"]["accessModes"] = json!(["ReadOnlyMany"]);
        assert_eq!(fields(&pvc_update(&modes, &pvc)), ["spec"]);
        let mut rebound = bigger.clone();
        rebound["spec"]["volumeName"] = json!("pv-2");
        assert_eq!(fields(&pvc_update(&rebound, &bigger)), ["spec"]);
    }

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
    fn rbac_rules_bindings_and_defaults() {
        let role = json!({"rules": [{"verbs": [], "resources": ["pods"]}, {"verbs": ["get"], "nonResourceURLs": ["/x"]}]});
        assert_eq!(
            fields(&validate_role(&role)),
            [
                "rules[0].verbs",
                "rules[0].apiGroups",
                "rules[1].nonResourceURLs"
            ]
        );
        let cr = json!({"rules": [{"verbs": ["get"], "nonResourceURLs": ["/healthz"]}]});
        assert!(validate_clusterrole(&cr).is_empty());
        let mut rb = json!({"roleRef": {"kind": "Role", "name": "r"},
            "subjects": [{"kind": "User", "name": "alice"}, {"kind": "ServiceAccount", "name": "b"}]});
        binding_defaults(&mut rb);
        assert_eq!(rb["roleRef"]["apiGroup"], RBAC_GROUP);
        assert_eq!(rb["subjects"][0]["apiGroup"], RBAC_GROUP);
        assert_eq!(rb["subjects"][1]["apiGroup"], "");
        assert!(validate_rolebinding(&rb).is_empty());
        assert_eq!(
            fields(&validate_clusterrolebinding(&rb)),
            ["roleRef.kind", "subjects[1].namespace"]
        );
        let mut changed = rb.clone();
        changed["roleRef"]["name"] = json!("other");
        assert_eq!(fields(&binding_update(&changed, &rb)), ["roleRef"]);
    }

    #[test]
    fn crds_name_their_group_and_one_storage_version() {
        let mut crd = json!({"metadata": {"name": "widgets.example.com"}, "spec": {
            "group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "kind": "Widget"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                          "schema": {"openAPIV3Schema": {"type": "object"}}}]}});
        crd_defaults(&mut crd);
        assert_eq!(crd["spec"]["names"]["singular"], "widget");
        assert_eq!(crd["spec"]["names"]["listKind"], "WidgetList");
        assert!(validate_crd(&crd).is_empty(), "{:?}", validate_crd(&crd));
        let mut bad = crd.clone();
        bad["metadata"]["name"] = json!("gadgets.example.com");
        bad["spec"]["versions"][0]["storage"] = json!(false);
        bad["spec"]["versions"][0]["schema"] = json!(null);
        assert_eq!(
            fields(&validate_crd(&bad)),
            [
                "metadata.name",
                "spec.versions[0].schema.openAPIV3Schema",
                "spec.versions"
            ]
        );
    }

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
    fn apiservices_are_named_version_dot_group() {
        let mut svc = json!({"metadata": {"name": "v1beta1.metrics.k8s.io"}, "spec": {
            "group": "metrics.k8s.io", "version": "v1beta1", "groupPriorityMinimum": 100,
            "versionPriority": 100, "service": {"namespace": "kube-system", "name": "metrics"}}});
        apiservice_defaults(&mut svc);
        assert_eq!(svc["spec"]["service"]["port"], 443);
        assert!(validate_apiservice(&svc).is_empty());
        svc["metadata"]["name"] = json!("v1.metrics.k8s.io");
        svc["spec"]["versionPriority"] = json!(0);
        assert_eq!(
            fields(&validate_apiservice(&svc)),
            ["metadata.name", "spec.versionPriority"]
        );
    }
}
