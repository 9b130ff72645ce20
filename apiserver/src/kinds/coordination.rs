//! `coordination.k8s.io/v1`: leases, the locks of leader election.

use k8s_openapi::api::coordination::v1 as coordination;
use serde_json::Value;

use super::columns::{self, Printed, at};
use super::{Column, ResourceType, Strategy};
use crate::error::Cause;

/// The `coordination.k8s.io` kinds.
pub fn kinds() -> Vec<ResourceType> {
    vec![ResourceType::of::<coordination::Lease>().strategy(LeaseStrategy)]
}

struct LeaseStrategy;
impl Strategy for LeaseStrategy {
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        validate_lease(obj)
    }
    fn columns(&self) -> Vec<Column> {
        columns::columns(COLUMNS)
    }
    fn cells(&self, obj: &Value) -> Vec<Value> {
        columns::cells(COLUMNS, obj)
    }
}

const COLUMNS: &[Printed] = &[at("Holder", "Holder identity", "/spec/holderIdentity")];

fn validate_lease(obj: &Value) -> Vec<Cause> {
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
