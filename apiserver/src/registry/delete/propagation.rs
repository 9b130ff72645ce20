//! Which garbage-collection finalizers a DELETE leaves on its object (the
//! generic store's `deletionFinalizersForGarbageCollection`, and the
//! namespace store's own variant). `orphan` asks the garbage collector to
//! orphan the dependents before the object goes; `foregroundDeletion` asks
//! it to delete them first. Every kind Keel serves defaults to Background
//! (Keel serves only the API versions whose default is not Orphan), so with
//! no policy in the options a finalizer already on the object decides.

use serde_json::Value;

use super::options::{DeleteOptions, Policy};

/// Finalizer asking the garbage collector to orphan the dependents.
pub const ORPHAN: &str = "orphan";
/// Finalizer asking the garbage collector to delete the dependents first.
pub const FOREGROUND: &str = "foregroundDeletion";

/// The object's `metadata.finalizers` (strings only).
pub fn finalizers(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|f| {
            f.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Whether the dependents are orphaned: the options decide, else a
/// finalizer already present, else the kind's default (Background: no).
fn orphans(opts: &DeleteOptions, current: &[String]) -> bool {
    if let Some(o) = opts.orphan_dependents {
        return o;
    }
    if let Some(p) = opts.policy() {
        return p == Policy::Orphan;
    }
    current
        .iter()
        .find_map(|f| match f.as_str() {
            ORPHAN => Some(true),
            FOREGROUND => Some(false),
            _ => None,
        })
        .unwrap_or(false)
}

/// Whether the dependents are deleted first. `orphanDependents: false`
/// means Background here (only the namespace store reads it as Foreground).
fn foreground(opts: &DeleteOptions, current: &[String]) -> bool {
    if opts.orphan_dependents.is_some() {
        return false;
    }
    if let Some(p) = opts.policy() {
        return p == Policy::Foreground;
    }
    current
        .iter()
        .find_map(|f| match f.as_str() {
            FOREGROUND => Some(true),
            ORPHAN => Some(false),
            _ => None,
        })
        .unwrap_or(false)
}

/// The finalizers the object should have after this DELETE, or `None` when
/// they stay as they are (compared as sets, as Kubernetes does). Other
/// finalizers keep their order; the GC ones are appended.
pub fn after_delete(opts: &DeleteOptions, current: &[String]) -> Option<Vec<String>> {
    let mut next: Vec<String> = current
        .iter()
        .filter(|f| *f != ORPHAN && *f != FOREGROUND)
        .cloned()
        .collect();
    if orphans(opts, current) {
        next.push(ORPHAN.into());
    }
    if foreground(opts, current) {
        next.push(FOREGROUND.into());
    }
    (!same_set(current, &next)).then_some(next)
}

/// The namespace store's rule, applied on a namespace's first DELETE: an
/// explicit `orphanDependents` decides both finalizers (false means
/// Foreground), else an explicit policy, else whatever the namespace has.
pub fn namespace_after_delete(opts: &DeleteOptions, current: &[String]) -> Option<Vec<String>> {
    let has = |f: &str| current.iter().any(|c| c == f);
    let want_orphan = match (opts.orphan_dependents, opts.policy()) {
        (Some(o), _) => o,
        (None, Some(p)) => p == Policy::Orphan,
        (None, None) => has(ORPHAN),
    };
    let want_foreground = match (opts.orphan_dependents, opts.policy()) {
        (Some(o), _) => !o,
        (None, Some(p)) => p == Policy::Foreground,
        (None, None) => has(FOREGROUND),
    };
    let mut next: Vec<String> = current
        .iter()
        .filter(|f| (*f != ORPHAN || want_orphan) && (*f != FOREGROUND || want_foreground))
        .cloned()
        .collect();
    for (f, want) in [(ORPHAN, want_orphan), (FOREGROUND, want_foreground)] {
        if want && !has(f) {
            next.push(f.into());
        }
    }
    (!same_set(current, &next)).then_some(next)
}

fn same_set(a: &[String], b: &[String]) -> bool {
    use std::collections::BTreeSet;
    a.iter().collect::<BTreeSet<_>>() == b.iter().collect::<BTreeSet<_>>()
}
