//! The kinds this server stores, one strategy each: defaults, validation and
//! the columns `kubectl get` shows. Every kind's rules live here; the generic
//! request handling lives in `api.rs`.

use base64::Engine;
use serde_json::{Value, json};

use crate::error::Cause;
use crate::meta;
use crate::rules;

/// A column of `kubectl get` output (Table `columnDefinitions`).
pub struct Column {
    pub name: &'static str,
    pub kind: &'static str,
    pub description: &'static str,
    /// 0: always shown; 1: only with `-o wide`.
    pub priority: u8,
}

/// The rules of one kind.
pub trait Strategy: Send + Sync {
    /// The rule a name must satisfy.
    fn name_rule(&self) -> fn(&str) -> Option<String> {
        meta::dns1123_subdomain
    }
    /// Fill in defaults on create (never validation).
    fn prepare_create(&self, _obj: &mut Value) {}
    /// Normalize an update (never validation).
    fn prepare_update(&self, new: &mut Value, _old: &Value) {
        self.prepare_create(new)
    }
    /// Field errors of a (prepared) object; never mutates.
    fn validate(&self, _obj: &Value) -> Vec<Cause> {
        vec![]
    }
    /// Field errors of a change (never mutates): immutable fields.
    fn validate_update(&self, _new: &Value, _old: &Value) -> Vec<Cause> {
        vec![]
    }
    /// Top-level fields of the kind besides apiVersion, kind and metadata
    /// (unknown fields are found by the typed checks in `typed.rs`; this
    /// list says which kinds have a `status`).
    fn fields(&self) -> &'static [&'static str] {
        &[]
    }
    /// Columns between NAME and AGE.
    fn columns(&self) -> Vec<Column> {
        vec![]
    }
    /// Cells for [`Strategy::columns`].
    fn cells(&self, _obj: &Value) -> Vec<Value> {
        vec![]
    }
}

/// A served resource type.
#[derive(Clone, Copy)]
pub struct ResourceType {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub strategy: &'static dyn Strategy,
}

impl ResourceType {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The store key prefix of this resource in one namespace (or all).
    pub fn prefix(&self, namespace: Option<&str>) -> String {
        let group = if self.group.is_empty() {
            "core"
        } else {
            self.group
        };
        match namespace {
            Some(ns) if self.namespaced => format!("/registry/{group}/{}/{ns}/", self.plural),
            _ => format!("/registry/{group}/{}/", self.plural),
        }
    }

    /// Whether the kind has a `status` written through `/status` only.
    pub fn has_status(&self) -> bool {
        self.strategy.fields().contains(&"status")
    }

    /// Whether the kind has a `/scale` subresource (autoscaling/v1 Scale).
    pub fn has_scale(&self) -> bool {
        self.group == "apps" && matches!(self.kind, "Deployment" | "ReplicaSet" | "StatefulSet")
    }

    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        format!("{}{name}", self.prefix(namespace))
    }
}

struct NamespaceStrategy;
impl Strategy for NamespaceStrategy {
    fn fields(&self) -> &'static [&'static str] {
        &["spec", "status"]
    }
    fn name_rule(&self) -> fn(&str) -> Option<String> {
        meta::dns1123_label
    }
    fn prepare_create(&self, obj: &mut Value) {
        if obj.pointer("/spec/finalizers").is_none() {
            obj["spec"] = json!({"finalizers": ["kubernetes"]});
        }
        if obj.pointer("/metadata/deletionTimestamp").is_none() {
            obj["status"] = json!({"phase": "Active"});
        }
    }
    fn columns(&self) -> Vec<Column> {
        vec![Column {
            name: "Status",
            kind: "string",
            description: "The status of the namespace",
            priority: 0,
        }]
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
    fn fields(&self) -> &'static [&'static str] {
        &["data", "binaryData", "immutable"]
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
        vec![Column {
            name: "Data",
            kind: "string",
            description: "Number of data entries",
            priority: 0,
        }]
    }
    fn cells(&self, obj: &Value) -> Vec<Value> {
        vec![json!(count(obj, &["data", "binaryData"]))]
    }
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
    fn fields(&self) -> &'static [&'static str] {
        &["data", "stringData", "type", "immutable"]
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
        causes.extend(rules::secret_type(obj));
        causes
    }
    fn columns(&self) -> Vec<Column> {
        vec![
            Column {
                name: "Type",
                kind: "string",
                description: "The type of the secret",
                priority: 0,
            },
            Column {
                name: "Data",
                kind: "string",
                description: "Number of data entries",
                priority: 0,
            },
        ]
    }
    fn cells(&self, obj: &Value) -> Vec<Value> {
        vec![
            obj.get("type").cloned().unwrap_or(json!("Opaque")),
            json!(count(obj, &["data"])),
        ]
    }
}

struct ServiceAccountStrategy;
impl Strategy for ServiceAccountStrategy {
    fn fields(&self) -> &'static [&'static str] {
        &[
            "secrets",
            "imagePullSecrets",
            "automountServiceAccountToken",
        ]
    }
    fn columns(&self) -> Vec<Column> {
        vec![Column {
            name: "Secrets",
            kind: "string",
            description: "Number of secrets",
            priority: 0,
        }]
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

/// How a table cell is computed from an object.
#[derive(Clone, Copy)]
pub enum Cell {
    /// The value at a JSON pointer (`<none>` when absent).
    At(&'static str),
    /// `a/b` from two JSON pointers (missing numbers count as 0).
    Ratio(&'static str, &'static str),
    /// The length of the array or map at a pointer.
    Count(&'static str),
}

/// A kind whose rules are data: its top-level fields and its columns.
pub struct Generic {
    pub fields: &'static [&'static str],
    pub columns: &'static [(&'static str, &'static str, u8, Cell)],
    /// The rule names must follow (most kinds: a DNS subdomain).
    pub names: fn(&str) -> Option<String>,
    /// Defaults applied on create and update, as Kubernetes applies them.
    pub defaults: fn(&mut Value),
    /// Field errors beyond types and metadata.
    pub validate: fn(&Value) -> Vec<Cause>,
    /// Field errors of a change from the stored object.
    pub update: fn(&Value, &Value) -> Vec<Cause>,
}

fn no_update_rules(_: &Value, _: &Value) -> Vec<Cause> {
    vec![]
}

/// Workloads: the selector never changes.
fn workload_update(new: &Value, old: &Value) -> Vec<Cause> {
    Cause::immutable(new, old, "/spec/selector", "spec.selector")
        .into_iter()
        .collect()
}

/// Jobs: selector and pod template are fixed once created.
fn job_update(new: &Value, old: &Value) -> Vec<Cause> {
    [
        Cause::immutable(new, old, "/spec/selector", "spec.selector"),
        Cause::immutable(new, old, "/spec/template", "spec.template"),
    ]
    .into_iter()
    .flatten()
    .collect()
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

/// Pods: only container images (and a first node assignment) may change in the spec.
fn pod_update(new: &Value, old: &Value) -> Vec<Cause> {
    let strip = |v: &Value| -> Value {
        let mut spec = v.get("spec").cloned().unwrap_or(Value::Null);
        for list in ["containers", "initContainers"] {
            if let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) {
                for c in cs {
                    if let Some(o) = c.as_object_mut() {
                        o.remove("image");
                    }
                }
            }
        }
        if let Some(o) = spec.as_object_mut() {
            o.remove("activeDeadlineSeconds");
            o.remove("nodeName");
        }
        spec
    };
    let mut causes = Vec::new();
    if strip(new) != strip(old) {
        causes.push(Cause::forbidden(
            "spec",
            "pod updates may not change fields other than `spec.containers[*].image`, `spec.initContainers[*].image` or `spec.activeDeadlineSeconds`",
        ));
    }
    let old_node = old
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .unwrap_or("");
    if !old_node.is_empty()
        && new
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .unwrap_or("")
            != old_node
    {
        causes.push(Cause::invalid(
            "spec.nodeName",
            "Invalid value: field is immutable once set",
        ));
    }
    causes
}

fn no_validation(_: &Value) -> Vec<Cause> {
    vec![]
}

/// Containers of a pod spec at `path` (field path prefix for errors).
fn validate_pod_spec(spec: Option<&Value>, path: &str) -> Vec<Cause> {
    let mut causes = Vec::new();
    match spec
        .and_then(|s| s.get("containers"))
        .and_then(Value::as_array)
    {
        None => causes.push(Cause::required(format!("{path}.containers"))),
        Some(cs) if cs.is_empty() => causes.push(Cause::required(format!("{path}.containers"))),
        Some(cs) => {
            let mut names = std::collections::BTreeSet::new();
            for (i, c) in cs.iter().enumerate() {
                match c.get("name").and_then(Value::as_str) {
                    Some(n) if meta::dns1123_label(n).is_none() => {
                        if !names.insert(n.to_string()) {
                            causes
                                .push(Cause::duplicate(format!("{path}.containers[{i}].name"), n));
                        }
                    }
                    Some(n) => causes.push(Cause::invalid(
                        format!("{path}.containers[{i}].name"),
                        format!("Invalid value: {n:?}: must be a DNS label"),
                    )),
                    None => causes.push(Cause::required(format!("{path}.containers[{i}].name"))),
                }
                if c.get("image")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    causes.push(Cause::required(format!("{path}.containers[{i}].image")));
                }
                causes.extend(rules::container_resources(
                    c,
                    &format!("{path}.containers[{i}]"),
                ));
            }
        }
    }
    causes
}

/// Workloads: a selector that selects the template's labels, replicas >= 0, valid containers.
fn validate_workload(obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    if obj
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .is_some_and(|r| r < 0)
    {
        causes.push(Cause::invalid(
            "spec.replicas",
            "must be greater than or equal to 0",
        ));
    }
    if let Some(sel) = obj.pointer("/spec/selector").filter(|s| s.is_object()) {
        causes.extend(rules::selector(sel, "spec.selector"));
    }
    let selector = obj
        .pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object);
    let expressions = obj
        .pointer("/spec/selector/matchExpressions")
        .and_then(Value::as_array)
        .is_some_and(|e| !e.is_empty());
    match selector {
        None if !expressions => causes.push(Cause::required("spec.selector")),
        Some(sel) => {
            let labels = obj
                .pointer("/spec/template/metadata/labels")
                .and_then(Value::as_object);
            let matched = sel
                .iter()
                .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v));
            if !matched {
                causes.push(Cause::invalid(
                    "spec.template.metadata.labels",
                    "`selector` does not match template `labels`",
                ));
            }
        }
        None => {}
    }
    causes.extend(validate_pod_spec(
        obj.pointer("/spec/template/spec"),
        "spec.template.spec",
    ));
    causes
}

/// Jobs: valid containers and a restart policy of OnFailure or Never.
fn validate_job(obj: &Value) -> Vec<Cause> {
    let mut causes = validate_pod_spec(obj.pointer("/spec/template/spec"), "spec.template.spec");
    match obj
        .pointer("/spec/template/spec/restartPolicy")
        .and_then(Value::as_str)
    {
        Some("OnFailure") | Some("Never") | None => {}
        Some(other) => causes.push(Cause::not_supported(
            "spec.template.spec.restartPolicy",
            other,
            &["OnFailure", "Never"],
        )),
    }
    causes
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

fn no_defaults(_: &mut Value) {}

/// Set `obj[path]` to `value` where it is missing (path as JSON pointer tokens).
pub(crate) fn default_at(obj: &mut Value, path: &[&str], value: Value) {
    let mut cur = obj;
    for (i, key) in path.iter().enumerate() {
        if !cur.is_object() {
            return;
        }
        if i == path.len() - 1 {
            if cur.get(*key).is_none_or(Value::is_null) {
                cur[*key] = value;
            }
            return;
        }
        if cur.get(*key).is_none_or(Value::is_null) {
            cur[*key] = json!({});
        }
        cur = &mut cur[*key];
    }
}

/// Defaults of a pod template's spec (the parts controllers and kubectl read).
fn pod_spec_defaults(spec: &mut Value) {
    default_at(spec, &["restartPolicy"], json!("Always"));
    default_at(spec, &["terminationGracePeriodSeconds"], json!(30));
    default_at(spec, &["dnsPolicy"], json!("ClusterFirst"));
    default_at(spec, &["schedulerName"], json!("default-scheduler"));
    default_at(spec, &["securityContext"], json!({}));
    if let Some(cs) = spec.get_mut("containers").and_then(Value::as_array_mut) {
        for c in cs {
            default_at(
                c,
                &["terminationMessagePath"],
                json!("/dev/termination-log"),
            );
            default_at(c, &["terminationMessagePolicy"], json!("File"));
            let latest = c
                .get("image")
                .and_then(Value::as_str)
                .is_some_and(|i| !i.contains(':') || i.ends_with(":latest"));
            default_at(
                c,
                &["imagePullPolicy"],
                json!(if latest { "Always" } else { "IfNotPresent" }),
            );
        }
    }
}

fn template_defaults(obj: &mut Value) {
    if let Some(spec) = obj.pointer_mut("/spec/template/spec") {
        pod_spec_defaults(spec);
    }
}

fn deployment_defaults(obj: &mut Value) {
    default_at(obj, &["spec", "replicas"], json!(1));
    default_at(
        obj,
        &["spec", "strategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}),
    );
    default_at(obj, &["spec", "revisionHistoryLimit"], json!(10));
    default_at(obj, &["spec", "progressDeadlineSeconds"], json!(600));
    template_defaults(obj);
}

fn replicaset_defaults(obj: &mut Value) {
    default_at(obj, &["spec", "replicas"], json!(1));
    template_defaults(obj);
}

fn statefulset_defaults(obj: &mut Value) {
    default_at(obj, &["spec", "replicas"], json!(1));
    default_at(obj, &["spec", "podManagementPolicy"], json!("OrderedReady"));
    default_at(
        obj,
        &["spec", "updateStrategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}),
    );
    default_at(obj, &["spec", "revisionHistoryLimit"], json!(10));
    default_at(
        obj,
        &["spec", "persistentVolumeClaimRetentionPolicy"],
        json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
    );
    template_defaults(obj);
}

fn daemonset_defaults(obj: &mut Value) {
    default_at(
        obj,
        &["spec", "updateStrategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}),
    );
    default_at(obj, &["spec", "revisionHistoryLimit"], json!(10));
    template_defaults(obj);
}

fn job_defaults(obj: &mut Value) {
    default_at(obj, &["spec", "parallelism"], json!(1));
    default_at(obj, &["spec", "completions"], json!(1));
    default_at(obj, &["spec", "backoffLimit"], json!(6));
    default_at(obj, &["spec", "completionMode"], json!("NonIndexed"));
    default_at(obj, &["spec", "suspend"], json!(false));
    if let Some(spec) = obj.pointer_mut("/spec/template/spec") {
        default_at(spec, &["restartPolicy"], json!("Never"));
        pod_spec_defaults(spec);
    }
}

fn service_defaults(obj: &mut Value) {
    default_at(obj, &["spec", "type"], json!("ClusterIP"));
    default_at(obj, &["spec", "sessionAffinity"], json!("None"));
    if let Some(spec) = obj.get_mut("spec") {
        rules::tcp_by_default(spec);
    }
    if let Some(ports) = obj.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
        for p in ports {
            if let Some(port) = p.get("port").cloned() {
                default_at(p, &["targetPort"], port);
            }
        }
    }
}

fn cell(obj: &Value, c: Cell) -> Value {
    let num = |p: &str| obj.pointer(p).and_then(Value::as_i64).unwrap_or(0);
    match c {
        Cell::At(p) => match obj.pointer(p) {
            Some(Value::String(s)) if !s.is_empty() => json!(s),
            Some(Value::Number(n)) => json!(n),
            Some(Value::Bool(b)) => json!(b.to_string()),
            Some(v @ Value::Object(_)) => json!(v.to_string()),
            _ => json!("<none>"),
        },
        Cell::Ratio(a, b) => json!(format!("{}/{}", num(a), num(b))),
        Cell::Count(p) => json!(match obj.pointer(p) {
            Some(Value::Array(a)) => a.len(),
            Some(Value::Object(m)) => m.len(),
            _ => 0,
        }),
    }
}

impl Strategy for Generic {
    fn prepare_create(&self, obj: &mut Value) {
        (self.defaults)(obj)
    }
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        (self.validate)(obj)
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        (self.update)(new, old)
    }
    fn name_rule(&self) -> fn(&str) -> Option<String> {
        self.names
    }
    fn fields(&self) -> &'static [&'static str] {
        self.fields
    }
    fn columns(&self) -> Vec<Column> {
        self.columns
            .iter()
            .map(|(name, description, priority, _)| Column {
                name,
                kind: "string",
                description,
                priority: *priority,
            })
            .collect()
    }
    fn cells(&self, obj: &Value) -> Vec<Value> {
        self.columns
            .iter()
            .map(|(_, _, _, c)| cell(obj, *c))
            .collect()
    }
}

/// Pods: containers are required; READY counts ready containers.
struct PodStrategy;
impl Strategy for PodStrategy {
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        pod_update(new, old)
    }
    fn fields(&self) -> &'static [&'static str] {
        &["spec", "status"]
    }
    fn prepare_create(&self, obj: &mut Value) {
        if obj.pointer("/status/phase").is_none() {
            obj["status"] = json!({"phase": "Pending"});
        }
        if let Some(spec) = obj.get_mut("spec") {
            pod_spec_defaults(spec);
        }
    }
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        validate_pod_spec(obj.get("spec"), "spec")
    }
    fn columns(&self) -> Vec<Column> {
        vec![
            Column {
                name: "Ready",
                kind: "string",
                description: "Ready containers",
                priority: 0,
            },
            Column {
                name: "Status",
                kind: "string",
                description: "Pod phase",
                priority: 0,
            },
            Column {
                name: "Restarts",
                kind: "string",
                description: "Container restarts",
                priority: 0,
            },
            Column {
                name: "IP",
                kind: "string",
                description: "Pod IP",
                priority: 1,
            },
            Column {
                name: "Node",
                kind: "string",
                description: "Node the pod runs on",
                priority: 1,
            },
        ]
    }
    fn cells(&self, obj: &Value) -> Vec<Value> {
        let total = obj
            .pointer("/spec/containers")
            .and_then(Value::as_array)
            .map(Vec::len)
            .unwrap_or(0);
        let statuses = obj
            .pointer("/status/containerStatuses")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let ready = statuses
            .iter()
            .filter(|s| s.get("ready") == Some(&json!(true)))
            .count();
        let restarts: i64 = statuses
            .iter()
            .filter_map(|s| s.get("restartCount").and_then(Value::as_i64))
            .sum();
        vec![
            json!(format!("{ready}/{total}")),
            cell(obj, Cell::At("/status/phase")),
            json!(restarts),
            cell(obj, Cell::At("/status/podIP")),
            cell(obj, Cell::At("/spec/nodeName")),
        ]
    }
}

const SPEC_STATUS: &[&str] = &["spec", "status"];
const READY: Cell = Cell::Ratio("/status/readyReplicas", "/spec/replicas");
const ALL: &[&str] = &["all"];

macro_rules! generic {
    ($fields:expr, [$($col:expr),* $(,)?]) => {
        &Generic { fields: $fields, names: meta::dns1123_subdomain, columns: &[$($col),*], defaults: no_defaults, validate: no_validation, update: no_update_rules }
    };
    ($fields:expr, $defaults:expr, $validate:expr, [$($col:expr),* $(,)?]) => {
        &Generic { fields: $fields, names: meta::dns1123_subdomain, columns: &[$($col),*], defaults: $defaults, validate: $validate, update: no_update_rules }
    };
    ($fields:expr, $defaults:expr, $validate:expr, $update:expr, [$($col:expr),* $(,)?]) => {
        &Generic { fields: $fields, names: meta::dns1123_subdomain, columns: &[$($col),*], defaults: $defaults, validate: $validate, update: $update }
    };
    (names: $names:expr, $fields:expr, $defaults:expr, $validate:expr, $update:expr, [$($col:expr),* $(,)?]) => {
        &Generic { fields: $fields, names: $names, columns: &[$($col),*], defaults: $defaults, validate: $validate, update: $update }
    };
}

macro_rules! rt {
    ($group:expr, $kind:expr, $plural:expr, $singular:expr, $ns:expr, $short:expr, $cats:expr, $strategy:expr) => {
        ResourceType {
            group: $group,
            version: "v1",
            kind: $kind,
            plural: $plural,
            singular: $singular,
            namespaced: $ns,
            short_names: $short,
            categories: $cats,
            strategy: $strategy,
        }
    };
}

/// Every resource type this server serves.
pub fn all() -> &'static [ResourceType] {
    static ALL_TYPES: std::sync::OnceLock<Vec<ResourceType>> = std::sync::OnceLock::new();
    ALL_TYPES.get_or_init(|| TYPES.iter().chain(MORE).copied().collect())
}

static TYPES: &[ResourceType] = &[
    ResourceType {
        group: "",
        version: "v1",
        kind: "Namespace",
        plural: "namespaces",
        singular: "namespace",
        namespaced: false,
        short_names: &["ns"],
        categories: &[],
        strategy: &NamespaceStrategy,
    },
    ResourceType {
        group: "",
        version: "v1",
        kind: "ConfigMap",
        plural: "configmaps",
        singular: "configmap",
        namespaced: true,
        short_names: &["cm"],
        categories: &[],
        strategy: &ConfigMapStrategy,
    },
    ResourceType {
        group: "",
        version: "v1",
        kind: "Secret",
        plural: "secrets",
        singular: "secret",
        namespaced: true,
        short_names: &[],
        categories: &[],
        strategy: &SecretStrategy,
    },
    ResourceType {
        group: "",
        version: "v1",
        kind: "ServiceAccount",
        plural: "serviceaccounts",
        singular: "serviceaccount",
        namespaced: true,
        short_names: &["sa"],
        categories: &[],
        strategy: &ServiceAccountStrategy,
    },
];

static MORE: &[ResourceType] = &[
    rt!("", "Pod", "pods", "pod", true, &["po"], ALL, &PodStrategy),
    rt!(
        "",
        "Node",
        "nodes",
        "node",
        false,
        &["no"],
        &[],
        generic!(
            SPEC_STATUS,
            no_defaults,
            rules::validate_node,
            [(
                "Version",
                "Kubelet version",
                0,
                Cell::At("/status/nodeInfo/kubeletVersion")
            ),]
        )
    ),
    rt!(
        "",
        "Service",
        "services",
        "service",
        true,
        &["svc"],
        ALL,
        generic!(
            SPEC_STATUS,
            service_defaults,
            validate_service,
            service_update,
            [
                ("Type", "Service type", 0, Cell::At("/spec/type")),
                ("Cluster-IP", "Cluster IP", 0, Cell::At("/spec/clusterIP")),
                ("Ports", "Number of ports", 0, Cell::Count("/spec/ports")),
                ("Selector", "Pod selector", 1, Cell::At("/spec/selector")),
            ]
        )
    ),
    rt!(
        "",
        "Endpoints",
        "endpoints",
        "endpoints",
        true,
        &["ep"],
        &[],
        generic!(
            &["subsets"],
            rules::endpoints_defaults,
            rules::validate_endpoints,
            [("Subsets", "Number of subsets", 0, Cell::Count("/subsets")),]
        )
    ),
    rt!(
        "",
        "Event",
        "events",
        "event",
        true,
        &["ev"],
        &[],
        generic!(
            &[
                "involvedObject",
                "reason",
                "message",
                "source",
                "firstTimestamp",
                "lastTimestamp",
                "count",
                "type",
                "eventTime",
                "series",
                "action",
                "related",
                "reportingComponent",
                "reportingInstance",
            ],
            [
                ("Type", "Event type", 0, Cell::At("/type")),
                ("Reason", "Reason", 0, Cell::At("/reason")),
                (
                    "Object",
                    "Involved object",
                    0,
                    Cell::At("/involvedObject/name")
                ),
                ("Message", "Message", 0, Cell::At("/message")),
            ]
        )
    ),
    rt!(
        "",
        "PersistentVolume",
        "persistentvolumes",
        "persistentvolume",
        false,
        &["pv"],
        &[],
        generic!(
            SPEC_STATUS,
            rules::pv_defaults,
            rules::validate_pv,
            rules::pv_update,
            [
                (
                    "Capacity",
                    "Capacity",
                    0,
                    Cell::At("/spec/capacity/storage")
                ),
                ("Status", "Phase", 0, Cell::At("/status/phase")),
                (
                    "StorageClass",
                    "Storage class",
                    0,
                    Cell::At("/spec/storageClassName")
                ),
            ]
        )
    ),
    rt!(
        "",
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        "persistentvolumeclaim",
        true,
        &["pvc"],
        &[],
        generic!(
            SPEC_STATUS,
            rules::pvc_defaults,
            rules::validate_pvc,
            rules::pvc_update,
            [
                ("Status", "Phase", 0, Cell::At("/status/phase")),
                ("Volume", "Bound volume", 0, Cell::At("/spec/volumeName")),
                (
                    "StorageClass",
                    "Storage class",
                    0,
                    Cell::At("/spec/storageClassName")
                ),
            ]
        )
    ),
    rt!(
        "",
        "ResourceQuota",
        "resourcequotas",
        "resourcequota",
        true,
        &["quota"],
        &[],
        generic!(SPEC_STATUS, no_defaults, rules::validate_resourcequota, [])
    ),
    rt!(
        "",
        "LimitRange",
        "limitranges",
        "limitrange",
        true,
        &["limits"],
        &[],
        generic!(&["spec"], no_defaults, rules::validate_limitrange, [])
    ),
    rt!(
        "apps",
        "Deployment",
        "deployments",
        "deployment",
        true,
        &["deploy"],
        ALL,
        generic!(
            SPEC_STATUS,
            deployment_defaults,
            validate_workload,
            workload_update,
            [
                ("Ready", "Ready replicas", 0, READY),
                (
                    "Up-to-date",
                    "Updated replicas",
                    0,
                    Cell::At("/status/updatedReplicas")
                ),
                (
                    "Available",
                    "Available replicas",
                    0,
                    Cell::At("/status/availableReplicas")
                ),
            ]
        )
    ),
    rt!(
        "apps",
        "ReplicaSet",
        "replicasets",
        "replicaset",
        true,
        &["rs"],
        ALL,
        generic!(
            SPEC_STATUS,
            replicaset_defaults,
            validate_workload,
            workload_update,
            [
                ("Desired", "Desired replicas", 0, Cell::At("/spec/replicas")),
                (
                    "Current",
                    "Current replicas",
                    0,
                    Cell::At("/status/replicas")
                ),
                (
                    "Ready",
                    "Ready replicas",
                    0,
                    Cell::At("/status/readyReplicas")
                ),
            ]
        )
    ),
    rt!(
        "apps",
        "StatefulSet",
        "statefulsets",
        "statefulset",
        true,
        &["sts"],
        ALL,
        generic!(
            SPEC_STATUS,
            statefulset_defaults,
            validate_workload,
            workload_update,
            [("Ready", "Ready replicas", 0, READY),]
        )
    ),
    rt!(
        "apps",
        "DaemonSet",
        "daemonsets",
        "daemonset",
        true,
        &["ds"],
        ALL,
        generic!(
            SPEC_STATUS,
            daemonset_defaults,
            validate_workload,
            workload_update,
            [
                (
                    "Desired",
                    "Desired pods",
                    0,
                    Cell::At("/status/desiredNumberScheduled")
                ),
                (
                    "Current",
                    "Current pods",
                    0,
                    Cell::At("/status/currentNumberScheduled")
                ),
                ("Ready", "Ready pods", 0, Cell::At("/status/numberReady")),
            ]
        )
    ),
    rt!(
        "apps",
        "ControllerRevision",
        "controllerrevisions",
        "controllerrevision",
        true,
        &[],
        &[],
        generic!(
            &["data", "revision"],
            [("Revision", "Revision", 0, Cell::At("/revision")),]
        )
    ),
    rt!(
        "batch",
        "Job",
        "jobs",
        "job",
        true,
        &[],
        ALL,
        generic!(
            SPEC_STATUS,
            job_defaults,
            validate_job,
            job_update,
            [(
                "Completions",
                "Succeeded/desired",
                0,
                Cell::Ratio("/status/succeeded", "/spec/completions")
            ),]
        )
    ),
    rt!(
        "coordination.k8s.io",
        "Lease",
        "leases",
        "lease",
        true,
        &[],
        &[],
        generic!(
            &["spec"],
            no_defaults,
            rules::validate_lease,
            [(
                "Holder",
                "Holder identity",
                0,
                Cell::At("/spec/holderIdentity")
            ),]
        )
    ),
    rt!(
        "networking.k8s.io",
        "NetworkPolicy",
        "networkpolicies",
        "networkpolicy",
        true,
        &["netpol"],
        &[],
        generic!(
            SPEC_STATUS,
            rules::networkpolicy_defaults,
            rules::validate_networkpolicy,
            [(
                "Pod-Selector",
                "Selected pods",
                0,
                Cell::At("/spec/podSelector")
            ),]
        )
    ),
    rt!(
        "storage.k8s.io",
        "StorageClass",
        "storageclasses",
        "storageclass",
        false,
        &["sc"],
        &[],
        generic!(
            &[
                "provisioner",
                "parameters",
                "reclaimPolicy",
                "mountOptions",
                "allowVolumeExpansion",
                "volumeBindingMode",
                "allowedTopologies",
            ],
            rules::storageclass_defaults,
            rules::validate_storageclass,
            rules::storageclass_update,
            [
                ("Provisioner", "Provisioner", 0, Cell::At("/provisioner")),
                (
                    "ReclaimPolicy",
                    "Reclaim policy",
                    0,
                    Cell::At("/reclaimPolicy")
                ),
                (
                    "VolumeBindingMode",
                    "Binding mode",
                    0,
                    Cell::At("/volumeBindingMode")
                ),
            ]
        )
    ),
    rt!(
        "rbac.authorization.k8s.io",
        "Role",
        "roles",
        "role",
        true,
        &[],
        &[],
        generic!(
            names: meta::path_segment,
            &["rules"],
            no_defaults,
            rules::validate_role,
            no_update_rules,
            []
        )
    ),
    rt!(
        "rbac.authorization.k8s.io",
        "ClusterRole",
        "clusterroles",
        "clusterrole",
        false,
        &[],
        &[],
        generic!(
            names: meta::path_segment,
            &["rules", "aggregationRule"],
            no_defaults,
            rules::validate_clusterrole,
            no_update_rules,
            []
        )
    ),
    rt!(
        "rbac.authorization.k8s.io",
        "RoleBinding",
        "rolebindings",
        "rolebinding",
        true,
        &[],
        &[],
        generic!(
            names: meta::path_segment,
            &["subjects", "roleRef"],
            rules::binding_defaults,
            rules::validate_rolebinding,
            rules::binding_update,
            [("Role", "Bound role", 0, Cell::At("/roleRef/name")),]
        )
    ),
    rt!(
        "rbac.authorization.k8s.io",
        "ClusterRoleBinding",
        "clusterrolebindings",
        "clusterrolebinding",
        false,
        &[],
        &[],
        generic!(
            names: meta::path_segment,
            &["subjects", "roleRef"],
            rules::binding_defaults,
            rules::validate_clusterrolebinding,
            rules::binding_update,
            [("Role", "Bound role", 0, Cell::At("/roleRef/name")),]
        )
    ),
    rt!(
        "apiextensions.k8s.io",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        "customresourcedefinition",
        false,
        &["crd", "crds"],
        &[],
        generic!(
            SPEC_STATUS,
            rules::crd_defaults,
            rules::validate_crd,
            rules::crd_update,
            [
                ("Group", "API group", 1, Cell::At("/spec/group")),
                ("Scope", "Scope", 1, Cell::At("/spec/scope")),
            ]
        )
    ),
    rt!(
        "apiregistration.k8s.io",
        "APIService",
        "apiservices",
        "apiservice",
        false,
        &[],
        &[],
        generic!(
            SPEC_STATUS,
            rules::apiservice_defaults,
            rules::validate_apiservice,
            [(
                "Service",
                "Backing service",
                0,
                Cell::At("/spec/service/name")
            ),]
        )
    ),
    rt!(
        "events.k8s.io",
        "Event",
        "events",
        "event",
        true,
        &["ev"],
        &[],
        generic!(
            &[
                "eventTime",
                "series",
                "reportingController",
                "reportingInstance",
                "action",
                "reason",
                "regarding",
                "related",
                "note",
                "type",
                "deprecatedSource",
                "deprecatedFirstTimestamp",
                "deprecatedLastTimestamp",
                "deprecatedCount",
            ],
            [
                ("Type", "Event type", 0, Cell::At("/type")),
                ("Reason", "Reason", 0, Cell::At("/reason")),
                ("Object", "Regarding", 0, Cell::At("/regarding/name")),
                ("Note", "Note", 0, Cell::At("/note")),
            ]
        )
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    /// Field validation relies on every served kind having a Kubernetes type.
    #[test]
    fn every_served_kind_has_a_typed_check() {
        for t in all() {
            assert!(
                crate::typed::check_for(t.group, t.kind).is_some(),
                "{}/{} has no typed check",
                t.group,
                t.kind
            );
        }
    }
}
