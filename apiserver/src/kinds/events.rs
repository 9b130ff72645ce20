//! `events.k8s.io/v1`: events in their newer shape (the core group's
//! `v1` Event is in `core.rs`).

use k8s_openapi::api::events::v1 as events;
use serde_json::Value;

use super::columns::{self, Printed, at};
use super::{Column, ResourceType, Strategy};

/// The `events.k8s.io` kinds.
pub fn kinds() -> Vec<ResourceType> {
    vec![
        ResourceType::of::<events::Event>()
            .short_names(&["ev"])
            .strategy(EventStrategy),
    ]
}

/// Events: no rules beyond their type.
struct EventStrategy;
impl Strategy for EventStrategy {
    fn columns(&self) -> Vec<Column> {
        columns::columns(COLUMNS)
    }
    fn cells(&self, obj: &Value) -> Vec<Value> {
        columns::cells(COLUMNS, obj)
    }
}

const COLUMNS: &[Printed] = &[
    at("Type", "Event type", "/type"),
    at("Reason", "Reason", "/reason"),
    at("Object", "Regarding", "/regarding/name"),
    at("Note", "Note", "/note"),
];
