//! The ObjectMeta rules about deletion that every write enforces, as
//! Kubernetes' `ValidateObjectMeta`, `BeforeUpdate` and
//! `ValidateObjectMetaUpdate` do: finalizer names; an update never removes
//! or moves `deletionTimestamp` and `deletionGracePeriodSeconds` (they are
//! kept when the update leaves them out, refused when it changes them); and
//! while an object is being deleted its finalizers may only go, never come.

use std::collections::BTreeSet;

use serde_json::Value;

use super::propagation::{FOREGROUND, ORPHAN};
use crate::error::Cause;
use crate::meta;

const TIMESTAMP: &str = "deletionTimestamp";
const GRACE: &str = "deletionGracePeriodSeconds";

/// Field errors of `metadata.finalizers` (create and update): qualified
/// names, and never both `orphan` and `foregroundDeletion`.
pub fn finalizer_causes(obj: &Value) -> Vec<Cause> {
    let Some(list) = obj
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
    else {
        return vec![];
    };
    let mut causes = Vec::new();
    let names: Vec<&str> = list.iter().filter_map(Value::as_str).collect();
    for f in &names {
        if let Some(msg) = meta::qualified_name(f) {
            causes.push(Cause::invalid(
                "metadata.finalizers",
                format!("Invalid value: {f:?}: {msg}"),
            ));
        }
    }
    if names.contains(&ORPHAN) && names.contains(&FOREGROUND) {
        causes.push(Cause::invalid(
            "metadata.finalizers",
            format!(
                "Invalid value: {}: finalizer {ORPHAN} and {FOREGROUND} cannot be both set",
                go_strings(names.iter().copied())
            ),
        ));
    }
    causes
}

/// `BeforeUpdate`'s part: an update that leaves out the deletion fields
/// keeps the stored ones (a `null` counts as left out).
pub fn prepare_update(new: &mut Value, old: &Value) {
    let Some(m) = new.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    for f in [TIMESTAMP, GRACE] {
        if m.get(f).is_some_and(Value::is_null) {
            m.remove(f);
        }
    }
    if let Some(ts) = old
        .pointer("/metadata/deletionTimestamp")
        .filter(|v| !v.is_null())
    {
        m.insert(TIMESTAMP.into(), ts.clone());
    }
    if !m.contains_key(GRACE)
        && let Some(g) = old
            .pointer("/metadata/deletionGracePeriodSeconds")
            .filter(|v| !v.is_null())
    {
        m.insert(GRACE.into(), g.clone());
    }
}

/// `ValidateObjectMetaUpdate`'s part: the deletion fields are immutable,
/// and an object being deleted gets no new finalizer.
pub fn update_causes(new: &Value, old: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    for f in [TIMESTAMP, GRACE] {
        let at = format!("/metadata/{f}");
        let (n, o) = (
            new.pointer(&at).filter(|v| !v.is_null()),
            old.pointer(&at).filter(|v| !v.is_null()),
        );
        if n != o {
            let shown = n.map_or("null".to_string(), Value::to_string);
            causes.push(Cause::invalid(
                format!("metadata.{f}"),
                format!("Invalid value: {shown}: field is immutable"),
            ));
        }
    }
    if super::graceful::is_deleting(old) {
        let set = |o: &Value| -> BTreeSet<String> {
            super::propagation::finalizers(o).into_iter().collect()
        };
        let (n, o) = (set(new), set(old));
        let added: Vec<&String> = n.difference(&o).collect();
        if !added.is_empty() {
            causes.push(Cause::forbidden(
                "metadata.finalizers",
                format!(
                    "no new finalizers can be added if the object is being deleted, found new finalizers {}",
                    go_strings(added.iter().map(|s| s.as_str()))
                ),
            ));
        }
    }
    causes
}

/// A list of strings as Go's `%#v` prints a `[]string`, as Kubernetes'
/// messages show them.
fn go_strings<'a>(items: impl Iterator<Item = &'a str>) -> String {
    let quoted: Vec<String> = items.map(|s| format!("{s:?}")).collect();
    format!("[]string{{{}}}", quoted.join(", "))
}
