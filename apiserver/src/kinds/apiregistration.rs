//! `apiregistration.k8s.io/v1`: API services, named `version.group`.

use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1 as apireg;
use serde_json::{Value, json};

use super::columns::{self, Printed, at};
use super::fields::{default_at, port_number, str_at};
use super::{Column, ResourceType, Strategy, Subresource};
use crate::error::Cause;

/// The `apiregistration.k8s.io` kinds.
pub fn kinds() -> Vec<ResourceType> {
    vec![
        ResourceType::of::<apireg::APIService>()
            .subresources(&[Subresource::Status])
            .strategy(ApiServiceStrategy),
    ]
}

struct ApiServiceStrategy;
impl Strategy for ApiServiceStrategy {
    fn prepare_create(&self, obj: &mut Value) {
        apiservice_defaults(obj)
    }
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        validate_apiservice(obj)
    }
    fn columns(&self) -> Vec<Column> {
        columns::columns(COLUMNS)
    }
    fn cells(&self, obj: &Value) -> Vec<Value> {
        columns::cells(COLUMNS, obj)
    }
}

const COLUMNS: &[Printed] = &[at("Service", "Backing service", "/spec/service/name")];

fn apiservice_defaults(obj: &mut Value) {
    if obj.pointer("/spec/service").is_some_and(Value::is_object) {
        default_at(obj, &["spec", "service", "port"], json!(443));
    }
}

fn validate_apiservice(obj: &Value) -> Vec<Cause> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::fields::cause_fields as fields;

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
