//! Storage: persistent volumes and claims (core `v1`) and storage classes
//! (`storage.k8s.io/v1`).

use k8s_openapi::api::{core::v1 as core, storage::v1 as storage};
use serde_json::{Value, json};

use super::columns::{self, Printed, at};
use super::fields::{array_at, default_at, one_of, parse_quantity, selector, str_at};
use super::{Column, ResourceType, Strategy, Subresource};
use crate::error::Cause;
use crate::meta;

/// The storage kinds, in discovery order.
pub fn kinds() -> Vec<ResourceType> {
    vec![
        ResourceType::of::<core::PersistentVolume>()
            .short_names(&["pv"])
            .subresources(&[Subresource::Status])
            .strategy(PersistentVolumeStrategy),
        ResourceType::of::<core::PersistentVolumeClaim>()
            .short_names(&["pvc"])
            .subresources(&[Subresource::Status])
            .strategy(PersistentVolumeClaimStrategy),
        ResourceType::of::<storage::StorageClass>()
            .short_names(&["sc"])
            .strategy(StorageClassStrategy),
    ]
}

struct PersistentVolumeStrategy;
impl Strategy for PersistentVolumeStrategy {
    fn prepare_create(&self, obj: &mut Value) {
        pv_defaults(obj)
    }
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        validate_pv(obj)
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        pv_update(new, old)
    }
    fn columns(&self) -> Vec<Column> {
        columns::columns(PV_COLUMNS)
    }
    fn cells(&self, obj: &Value) -> Vec<Value> {
        columns::cells(PV_COLUMNS, obj)
    }
}

const PV_COLUMNS: &[Printed] = &[
    at("Capacity", "Capacity", "/spec/capacity/storage"),
    at("Status", "Phase", "/status/phase"),
    at("StorageClass", "Storage class", "/spec/storageClassName"),
];

struct PersistentVolumeClaimStrategy;
impl Strategy for PersistentVolumeClaimStrategy {
    fn prepare_create(&self, obj: &mut Value) {
        pvc_defaults(obj)
    }
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        validate_pvc(obj)
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        pvc_update(new, old)
    }
    fn columns(&self) -> Vec<Column> {
        columns::columns(PVC_COLUMNS)
    }
    fn cells(&self, obj: &Value) -> Vec<Value> {
        columns::cells(PVC_COLUMNS, obj)
    }
}

const PVC_COLUMNS: &[Printed] = &[
    at("Status", "Phase", "/status/phase"),
    at("Volume", "Bound volume", "/spec/volumeName"),
    at("StorageClass", "Storage class", "/spec/storageClassName"),
];

struct StorageClassStrategy;
impl Strategy for StorageClassStrategy {
    fn prepare_create(&self, obj: &mut Value) {
        storageclass_defaults(obj)
    }
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        validate_storageclass(obj)
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        storageclass_update(new, old)
    }
    fn columns(&self) -> Vec<Column> {
        columns::columns(STORAGECLASS_COLUMNS)
    }
    fn cells(&self, obj: &Value) -> Vec<Value> {
        columns::cells(STORAGECLASS_COLUMNS, obj)
    }
}

const STORAGECLASS_COLUMNS: &[Printed] = &[
    at("Provisioner", "Provisioner", "/provisioner"),
    at("ReclaimPolicy", "Reclaim policy", "/reclaimPolicy"),
    at("VolumeBindingMode", "Binding mode", "/volumeBindingMode"),
];

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

fn pv_defaults(obj: &mut Value) {
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

fn validate_pv(obj: &Value) -> Vec<Cause> {
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
fn pv_update(new: &Value, old: &Value) -> Vec<Cause> {
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

fn pvc_defaults(obj: &mut Value) {
    default_at(obj, &["spec", "volumeMode"], json!("Filesystem"));
    default_at(obj, &["status", "phase"], json!("Pending"));
}

fn validate_pvc(obj: &Value) -> Vec<Cause> {
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
fn pvc_update(new: &Value, old: &Value) -> Vec<Cause> {
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

fn storageclass_defaults(obj: &mut Value) {
    default_at(obj, &["reclaimPolicy"], json!("Delete"));
    default_at(obj, &["volumeBindingMode"], json!("Immediate"));
}

fn validate_storageclass(obj: &Value) -> Vec<Cause> {
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

fn storageclass_update(new: &Value, old: &Value) -> Vec<Cause> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::fields::cause_fields as fields;

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
}
