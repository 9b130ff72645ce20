//! Events, in one store behind both of their APIs, as Kubernetes serves
//! them: the core group's `v1` Event is the stored form, and
//! `events.k8s.io/v1` serves the same objects with its field names
//! ([`Conversion`]): the same names, resourceVersions, watches and field
//! selectors (in each version's field names) under both. Creation through
//! `events.k8s.io/v1` is validated strictly, as Kubernetes does for the
//! newer API; the core API keeps its lenient rules.

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::events::v1 as events;
use serde_json::Value;

use super::columns::{self, Printed, at};
use super::conversion::{Conversion, rename, with_api_version};
use super::fields::str_at;
use super::{Column, ResourceType, Strategy};
use crate::error::Cause;
use crate::meta;

/// Both Event kinds; the core one is listed with the core group.
pub fn kinds() -> Vec<ResourceType> {
    vec![
        ResourceType::of::<core::Event>()
            .short_names(&["ev"])
            .strategy(EventStrategy { api: Api::Core }),
        ResourceType::of::<events::Event>()
            .short_names(&["ev"])
            .stored_as(EVENTS_V1)
            .strategy(EventStrategy { api: Api::Events }),
    ]
}

/// `events.k8s.io/v1` stored as core `v1`.
pub const EVENTS_V1: Conversion = Conversion {
    stored_group: "",
    to_stored: to_core,
    from_stored: from_core,
};

/// (events.k8s.io/v1 name, core v1 name) of the fields that differ; the
/// rest (`reason`, `action`, `type`, `related`, `reportingInstance`,
/// `eventTime`, `series`, `metadata`) are the same in both.
const RENAMED: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

/// An `events.k8s.io/v1` Event as a core `v1` Event.
pub fn to_core(obj: Value) -> Value {
    with_api_version(rename(obj, RENAMED, true), "v1")
}

/// A core `v1` Event as an `events.k8s.io/v1` Event.
pub fn from_core(obj: Value) -> Value {
    with_api_version(rename(obj, RENAMED, false), "events.k8s.io/v1")
}

#[derive(Clone, Copy, PartialEq)]
enum Api {
    Core,
    Events,
}

struct EventStrategy {
    api: Api,
}

impl Strategy for EventStrategy {
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        match self.api {
            Api::Core => validate_core(obj),
            Api::Events => validate_events(obj),
        }
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        if self.api == Api::Core {
            return vec![];
        }
        // The newer API's events change only their series (and metadata).
        [
            "regarding",
            "reason",
            "note",
            "deprecatedSource",
            "deprecatedFirstTimestamp",
            "deprecatedLastTimestamp",
            "deprecatedCount",
            "type",
            "eventTime",
            "action",
            "related",
            "reportingController",
            "reportingInstance",
        ]
        .iter()
        .filter_map(|f| Cause::immutable(new, old, &format!("/{f}"), f))
        .collect()
    }
    fn columns(&self) -> Vec<Column> {
        columns::columns(COLUMNS)
    }
    fn cells(&self, obj: &Value) -> Vec<Value> {
        // One printer for both versions, as in Kubernetes: over the stored form.
        let core = match self.api {
            Api::Core => obj.clone(),
            Api::Events => to_core(obj.clone()),
        };
        columns::cells(COLUMNS, &core)
    }
}

const COLUMNS: &[Printed] = &[
    at("Type", "Type of this event (Normal, Warning)", "/type"),
    at("Reason", "Why the action was taken", "/reason"),
    at(
        "Object",
        "The object this event is about",
        "/involvedObject/name",
    ),
    at("Message", "A human-readable description", "/message"),
];

/// Longest `reportingInstance`, `action` and `reason` (Kubernetes' limits).
const FIELD_LIMIT: usize = 128;
/// Longest `note` of a new-style event.
const NOTE_LIMIT: usize = 1024;

fn len_at(obj: &Value, f: &str) -> usize {
    str_at(obj, &format!("/{f}")).map_or(0, str::len)
}

/// The rules every event meets (Kubernetes' legacy event validation), over
/// the stored (core) form; `names` gives each field's name in the version
/// the request used.
fn legacy(core: &Value, names: impl Fn(&'static str) -> &'static str) -> Vec<Cause> {
    let mut causes = Vec::new();
    let ns = str_at(core, "/metadata/namespace").unwrap_or("");
    let involved_ns = str_at(core, "/involvedObject/namespace").unwrap_or("");
    let involved = format!("{}.namespace", names("involvedObject"));
    let mismatch = || {
        Cause::invalid(
            involved.clone(),
            format!("Invalid value: {involved_ns:?}: does not match event.namespace"),
        )
    };
    let event_time = str_at(core, "/eventTime").is_some_and(|t| !t.is_empty());
    if !event_time {
        let ok = if involved_ns.is_empty() {
            ns.is_empty() || ns == "default"
        } else {
            ns == involved_ns
        };
        if !ok {
            causes.push(mismatch());
        }
        return causes;
    }
    if involved_ns.is_empty() && ns != "default" && ns != "kube-system" {
        causes.push(mismatch());
    }
    let controller = names("reportingComponent");
    match str_at(core, "/reportingComponent").filter(|c| !c.is_empty()) {
        None => causes.push(Cause::required(controller)),
        Some(c) => {
            if let Some(m) = meta::qualified_name(c) {
                causes.push(Cause::invalid(
                    controller,
                    format!("Invalid value: {c:?}: {m}"),
                ));
            }
        }
    }
    for f in ["reportingInstance", "action", "reason"] {
        match len_at(core, f) {
            0 => causes.push(Cause::required(f)),
            n if n > FIELD_LIMIT => causes.push(Cause::invalid(
                f,
                format!("Invalid value: \"\": can have at most {FIELD_LIMIT} characters"),
            )),
            _ => {}
        }
    }
    if len_at(core, "message") > NOTE_LIMIT {
        causes.push(Cause::invalid(
            names("message"),
            format!("Invalid value: \"\": can have at most {NOTE_LIMIT} characters"),
        ));
    }
    causes
}

fn validate_core(obj: &Value) -> Vec<Cause> {
    legacy(obj, |f| f)
}

/// Creation and updates through `events.k8s.io/v1`: the legacy rules, an
/// event time, a known type, a series with a count of at least 2, and none
/// of the deprecated fields.
fn validate_events(obj: &Value) -> Vec<Cause> {
    let served = |core: &'static str| -> &'static str {
        RENAMED
            .iter()
            .find(|(_, c)| *c == core)
            .map_or(core, |(s, _)| *s)
    };
    let mut causes = legacy(&to_core(obj.clone()), served);
    if str_at(obj, "/eventTime").is_none_or(str::is_empty) {
        causes.push(Cause::required("eventTime"));
    }
    let t = str_at(obj, "/type").unwrap_or("");
    if t != "Normal" && t != "Warning" {
        causes.push(Cause::invalid(
            "type",
            format!("Invalid value: \"\": has invalid value: {t}"),
        ));
    }
    if let Some(series) = obj.get("series").filter(|s| !s.is_null()) {
        if series.get("count").and_then(Value::as_i64).unwrap_or(0) < 2 {
            causes.push(Cause::invalid(
                "series.count",
                "Invalid value: \"\": should be at least 2",
            ));
        }
        if str_at(series, "/lastObservedTime").is_none_or(str::is_empty) {
            causes.push(Cause::required("series.lastObservedTime"));
        }
    }
    for f in [
        "deprecatedFirstTimestamp",
        "deprecatedLastTimestamp",
        "deprecatedCount",
    ] {
        if obj
            .get(f)
            .is_some_and(|v| !v.is_null() && *v != 0)
        {
            causes.push(Cause::invalid(f, "Invalid value: \"\": needs to be unset"));
        }
    }
    let source = obj.get("deprecatedSource");
    if ["component", "host"].iter().any(|k| {
        source
            .and_then(|s| s.get(*k))
            .and_then(Value::as_str)
            .is_some_and(|v| !v.is_empty())
    }) {
        causes.push(Cause::invalid(
            "deprecatedSource",
            "Invalid value: \"\": needs to be unset",
        ));
    }
    causes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::fields::cause_fields as fields;
    use serde_json::json;

    fn new_style() -> Value {
        json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "e", "namespace": "default"},
            "eventTime": "2026-01-01T00:00:00.000000Z", "type": "Warning", "reason": "Failed",
            "action": "Pulling", "note": "no such image", "reportingController": "example.com/ctl",
            "reportingInstance": "ctl-1", "regarding": {"kind": "Pod", "name": "p", "namespace": "default"},
            "related": {"kind": "Node", "name": "n"},
            "series": {"count": 3, "lastObservedTime": "2026-01-01T00:01:00.000000Z"}})
    }

    #[test]
    fn every_field_survives_both_conversions() {
        let served = new_style();
        let core = to_core(served.clone());
        assert_eq!(core["apiVersion"], "v1");
        assert_eq!(core["involvedObject"]["name"], "p");
        assert_eq!(core["message"], "no such image");
        assert_eq!(core["reportingComponent"], "example.com/ctl");
        assert_eq!(core["series"]["count"], 3);
        assert!(core.get("note").is_none() && core.get("regarding").is_none());
        assert_eq!(from_core(core), served);

        let old_style = json!({"apiVersion": "v1", "kind": "Event",
            "metadata": {"name": "o", "namespace": "default"}, "involvedObject": {"kind": "Pod", "name": "p"},
            "reason": "Started", "message": "started", "source": {"component": "kubelet", "host": "n1"},
            "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "2026-01-01T00:00:05Z",
            "count": 4, "type": "Normal"});
        let served = from_core(old_style.clone());
        assert_eq!(served["apiVersion"], "events.k8s.io/v1");
        assert_eq!(served["deprecatedSource"]["component"], "kubelet");
        assert_eq!(served["deprecatedFirstTimestamp"], "2026-01-01T00:00:00Z");
        assert_eq!(served["deprecatedLastTimestamp"], "2026-01-01T00:00:05Z");
        assert_eq!(served["deprecatedCount"], 4);
        assert_eq!(served["regarding"]["name"], "p");
        assert_eq!(served["note"], "started");
        assert_eq!(to_core(served), old_style);
    }

    #[test]
    fn the_newer_api_validates_strictly() {
        assert!(validate_events(&new_style()).is_empty());
        let mut bad = new_style();
        for f in [
            "eventTime",
            "reportingController",
            "action",
            "reportingInstance",
        ] {
            bad.as_object_mut().unwrap().remove(f);
        }
        bad["type"] = json!("Odd");
        bad["deprecatedCount"] = json!(2);
        bad["series"]["count"] = json!(1);
        assert_eq!(
            fields(&validate_events(&bad)),
            ["eventTime", "type", "series.count", "deprecatedCount"]
        );
        let mut old_ns = new_style();
        old_ns["eventTime"] = json!("2026-01-01T00:00:00.000000Z");
        old_ns
            .as_object_mut()
            .unwrap()
            .remove("reportingController");
        assert_eq!(fields(&validate_events(&old_ns)), ["reportingController"]);
        // The core API accepts an event with only the old fields.
        let core = json!({"metadata": {"name": "o", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "p"}, "reason": "R"});
        assert!(validate_core(&core).is_empty());
        let elsewhere = json!({"metadata": {"name": "o", "namespace": "a"},
            "involvedObject": {"kind": "Pod", "name": "p", "namespace": "b"}});
        assert_eq!(
            fields(&validate_core(&elsewhere)),
            ["involvedObject.namespace"]
        );
    }

    #[test]
    fn only_the_series_of_a_new_style_event_changes() {
        let s = EventStrategy { api: Api::Events };
        let old = new_style();
        let mut new = old.clone();
        new["series"]["count"] = json!(4);
        assert!(s.validate_update(&new, &old).is_empty());
        new["note"] = json!("other");
        assert_eq!(fields(&s.validate_update(&new, &old)), ["note"]);
        let core = EventStrategy { api: Api::Core };
        assert!(core.validate_update(&new, &old).is_empty());
        assert_eq!(s.cells(&old)[2], "p");
    }
}
