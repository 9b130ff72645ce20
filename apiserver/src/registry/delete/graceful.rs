//! Marking an object for deletion, as kube-apiserver's `BeforeDelete` and
//! `markAsDeleting` do. Pods are the one kind deleted gracefully: a pod on
//! a node gets `deletionTimestamp = now + grace` and stays until its node
//! confirms with a DELETE of grace 0; a later DELETE may shorten the grace,
//! never lengthen it. Any other object held by finalizers is marked with
//! `deletionTimestamp = now` and `deletionGracePeriodSeconds = 0`. Marking
//! bumps `metadata.generation` of objects that have one.

use serde_json::{Value, json};

use super::options::DeleteOptions;
use crate::error::ApiError;
use crate::meta;
use crate::request::RequestTarget;

/// What `BeforeDelete` decided for one object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Before {
    /// Not deleted gracefully: the object goes now, unless finalizers hold it.
    NotGraceful,
    /// Marked (or re-marked with a shorter grace) with this grace period.
    Graceful { period: i64 },
    /// Already terminating with a grace period this request does not
    /// shorten: nothing changes, finalizers included.
    Pending,
}

/// Whether objects of `t` are deleted gracefully (pods).
pub fn is_graceful(t: &RequestTarget) -> bool {
    t.rt.group.is_empty() && t.rt.plural == "pods"
}

/// The options' preconditions against `obj`, with `BeforeDelete`'s wording
/// (its resource is the kind, as Kubernetes words it).
pub fn check_preconditions(
    t: &RequestTarget,
    name: &str,
    obj: &Value,
    opts: &DeleteOptions,
) -> Result<(), ApiError> {
    let conflict = |message: String| ApiError::Conflict {
        group: t.rt.group.clone(),
        resource: t.rt.kind.clone(),
        name: name.into(),
        message,
    };
    let uid = str_at(obj, "/metadata/uid");
    if let Some(want) = opts.uid().filter(|u| *u != uid) {
        return Err(conflict(format!(
            "the UID in the precondition ({want}) does not match the UID in record ({uid}). The object might have been deleted and then recreated"
        )));
    }
    let rv = str_at(obj, "/metadata/resourceVersion");
    if let Some(want) = opts.resource_version().filter(|r| *r != rv) {
        return Err(conflict(format!(
            "the ResourceVersion in the precondition ({want}) does not match the ResourceVersion in record ({rv}). The object might have been modified"
        )));
    }
    Ok(())
}

fn str_at<'a>(obj: &'a Value, pointer: &str) -> &'a str {
    obj.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn int_at(obj: &Value, pointer: &str) -> Option<i64> {
    obj.pointer(pointer).and_then(Value::as_i64)
}

/// Whether the object is marked for deletion.
pub fn is_deleting(obj: &Value) -> bool {
    obj.pointer("/metadata/deletionTimestamp")
        .is_some_and(|d| !d.is_null())
}

/// `BeforeDelete` on `obj` (the stored object, changed in place when it is
/// marked) at `now` (seconds): see [`Before`].
pub fn before_delete(t: &RequestTarget, obj: &mut Value, opts: &DeleteOptions, now: i64) -> Before {
    // A negative grace is read as one second, in the options and stored.
    let asked = opts.grace_period_seconds.map(|g| if g < 0 { 1 } else { g });
    if int_at(obj, "/metadata/deletionGracePeriodSeconds").is_some_and(|g| g < 0) {
        obj["metadata"]["deletionGracePeriodSeconds"] = json!(1);
    }
    if !is_graceful(t) {
        return Before::NotGraceful;
    }
    if is_deleting(obj) {
        let current = int_at(obj, "/metadata/deletionGracePeriodSeconds").unwrap_or(0);
        // Marked with no grace left (or a write between the mark and the
        // removal failed): it goes now.
        if current == 0 {
            return Before::NotGraceful;
        }
        let Some(period) = asked.filter(|p| *p < current) else {
            return Before::Pending;
        };
        let at = obj
            .pointer("/metadata/deletionTimestamp")
            .and_then(Value::as_str)
            .and_then(meta::parse_rfc3339)
            .unwrap_or(now + current);
        obj["metadata"]["deletionTimestamp"] = json!(meta::rfc3339(at - current + period));
        obj["metadata"]["deletionGracePeriodSeconds"] = json!(period);
        return Before::Graceful { period };
    }
    let period = pod_grace(obj, asked);
    obj["metadata"]["deletionTimestamp"] = json!(meta::rfc3339(now + period));
    obj["metadata"]["deletionGracePeriodSeconds"] = json!(period);
    bump_generation(obj);
    Before::Graceful { period }
}

/// The pod strategy's `CheckGracefulDelete`: the grace asked for, else the
/// pod's `terminationGracePeriodSeconds`; none for a pod no node runs (not
/// scheduled) or one that has finished.
fn pod_grace(pod: &Value, asked: Option<i64>) -> i64 {
    let mut period = asked
        .or_else(|| int_at(pod, "/spec/terminationGracePeriodSeconds"))
        .unwrap_or(0);
    if str_at(pod, "/spec/nodeName").is_empty() {
        period = 0;
    }
    if matches!(str_at(pod, "/status/phase"), "Succeeded" | "Failed") {
        period = 0;
    }
    if period < 0 { 1 } else { period }
}

fn bump_generation(obj: &mut Value) {
    if let Some(g) = int_at(obj, "/metadata/generation").filter(|g| *g > 0) {
        obj["metadata"]["generation"] = json!(g + 1);
    }
}

/// `markAsDeleting`: an object held by finalizers is marked now (or kept at
/// an earlier mark) with no grace; the generation goes up on the first mark.
pub fn mark_as_deleting(obj: &mut Value, now: i64) {
    let existing = obj
        .pointer("/metadata/deletionTimestamp")
        .and_then(Value::as_str)
        .map(|s| meta::parse_rfc3339(s).unwrap_or(i64::MAX));
    if existing.is_none() {
        bump_generation(obj);
    }
    if existing.is_none_or(|at| at > now) {
        obj["metadata"]["deletionTimestamp"] = json!(meta::rfc3339(now));
    }
    obj["metadata"]["deletionGracePeriodSeconds"] = json!(0);
}

/// The generic store's `ShouldDeleteDuringUpdate`, with the namespace
/// store's addition: a write that leaves an object being deleted without
/// finalizers removes it, unless it is a pod still in its grace period
/// (its node's DELETE removes it) or a namespace with `spec.finalizers`.
pub fn should_delete_during_update(t: &RequestTarget, new: &Value, old: &Value) -> bool {
    let no_finalizers = |o: &Value, p: &str| {
        o.pointer(p)
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty)
    };
    if !no_finalizers(new, "/metadata/finalizers") || !is_deleting(old) {
        return false;
    }
    if super::namespace::is_namespace(t) && !no_finalizers(new, "/spec/finalizers") {
        return false;
    }
    int_at(old, "/metadata/deletionGracePeriodSeconds").is_none_or(|g| g == 0)
}
