//! A CRD's status as the API server keeps it, computed from the CRD and
//! the names others hold: `acceptedNames`, the `NamesAccepted`,
//! `Established` and `NonStructuralSchema` conditions, and
//! `storedVersions`. Pure functions, so every member of a cluster computes
//! the same status from the same store and writes it at most once
//! ([`super::controller`]).
//!
//! Names follow Kubernetes' naming controller: a requested name that is
//! already accepted for this CRD stays; a new one is accepted unless another
//! CRD of the group accepted it, or a built-in kind of the group serves it
//! (`PluralConflict`, `KindConflict`, …; Kubernetes' reason for the
//! condition). `Established` becomes true once every name is accepted and
//! then stays true through later name conflicts, so objects stay served
//! under the names they were accepted with. Keel adds two blockers
//! Kubernetes does not have: webhook conversion (not supported yet) and a
//! schema that is not structural (refused on write, but one may have been
//! stored before).

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::kinds::ResourceType;

/// The finalizer that holds a CRD until its objects are gone.
pub const FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

/// Names held in one API group: resource names (plural, singular, short
/// names) and kinds (kind, list kind).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Claimed {
    pub resources: BTreeSet<String>,
    pub kinds: BTreeSet<String>,
}

impl Claimed {
    /// The names built-in kinds of `group` serve.
    pub fn builtin(group: &str, builtin: &[ResourceType]) -> Claimed {
        let mut c = Claimed::default();
        for t in builtin.iter().filter(|t| t.group == group) {
            c.resources.insert(t.plural.clone());
            c.resources.insert(t.singular.clone());
            c.resources.extend(t.short_names.iter().cloned());
            c.kinds.insert(t.kind.clone());
            c.kinds.insert(format!("{}List", t.kind));
        }
        c
    }

    /// Add the names `crd` has accepted (its `status.acceptedNames`).
    pub fn add_accepted(&mut self, crd: &Value) {
        let names = &crd["status"]["acceptedNames"];
        for k in ["plural", "singular"] {
            if let Some(n) = names
                .get(k)
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
            {
                self.resources.insert(n.into());
            }
        }
        self.resources.extend(strings(&names["shortNames"]));
        for k in ["kind", "listKind"] {
            if let Some(n) = names
                .get(k)
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
            {
                self.kinds.insert(n.into());
            }
        }
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// One status condition, without its transition time.
#[derive(Clone, Debug, PartialEq)]
pub struct Condition {
    pub kind: &'static str,
    pub status: &'static str,
    pub reason: String,
    pub message: String,
}

impl Condition {
    pub fn new(kind: &'static str, status: &'static str, reason: &str, message: &str) -> Self {
        Condition {
            kind,
            status,
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// The condition `kind` of a CRD, if set.
pub fn condition<'a>(crd: &'a Value, kind: &str) -> Option<&'a Value> {
    crd.pointer("/status/conditions")
        .and_then(Value::as_array)?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(kind))
}

/// Whether condition `kind` of a CRD is `True`.
pub fn is_true(crd: &Value, kind: &str) -> bool {
    condition(crd, kind).is_some_and(|c| c.get("status").and_then(Value::as_str) == Some("True"))
}

/// Set `c` in `status.conditions`; the transition time changes (to `now`)
/// only when the condition's status does.
pub fn set_condition(status: &mut Value, c: &Condition, now: &str) {
    if !status.is_object() {
        *status = json!({});
    }
    if !status["conditions"].is_array() {
        status["conditions"] = json!([]);
    }
    let list = status["conditions"].as_array_mut().expect("an array");
    let time = match list.iter().find(|x| x["type"] == c.kind) {
        Some(old) if old["status"] == c.status => old["lastTransitionTime"].clone(),
        _ => json!(now),
    };
    let new = json!({"type": c.kind, "status": c.status, "lastTransitionTime": time,
        "reason": c.reason, "message": c.message});
    match list.iter_mut().find(|x| x["type"] == c.kind) {
        Some(old) => *old = new,
        None => list.push(new),
    }
}

/// Remove condition `kind` from `status.conditions`.
pub fn remove_condition(status: &mut Value, kind: &str) {
    if let Some(list) = status.get_mut("conditions").and_then(Value::as_array_mut) {
        list.retain(|x| x["type"] != kind);
    }
}

/// `requested` may be used when it is already ours, or nobody else's.
fn fresh(requested: &str, accepted: &str, used: &BTreeSet<String>) -> Result<(), String> {
    if requested == accepted || !used.contains(requested) {
        Ok(())
    } else {
        Err(format!("{requested:?} is already in use"))
    }
}

/// The names of `crd` to accept given what others hold, and the
/// `NamesAccepted` condition.
pub fn accepted_names(crd: &Value, others: &Claimed) -> (Value, Condition) {
    let requested = &crd["spec"]["names"];
    let accepted = &crd["status"]["acceptedNames"];
    let mut names = if accepted.is_object() {
        accepted.clone()
    } else {
        json!({})
    };
    let mut failed: Option<(&str, String)> = None;
    let mut fail = |reason: &'static str, m: String| {
        // Kubernetes reports the last conflict found.
        failed = Some((reason, m));
    };
    for (key, reason, used) in [
        ("plural", "PluralConflict", &others.resources),
        ("singular", "SingularConflict", &others.resources),
        ("kind", "KindConflict", &others.kinds),
        ("listKind", "ListKindConflict", &others.kinds),
    ] {
        let want = str_at(requested, &format!("/{key}"));
        match fresh(want, str_at(accepted, &format!("/{key}")), used) {
            Ok(()) => names[key] = json!(want),
            Err(m) => fail(reason, m),
        }
    }
    let want_short = strings(&requested["shortNames"]);
    let have_short = strings(&accepted["shortNames"]);
    if want_short != have_short {
        let errs: Vec<String> = want_short
            .iter()
            .filter(|s| !have_short.contains(s))
            .filter_map(|s| fresh(s, "", &others.resources).err())
            .collect();
        if errs.is_empty() {
            names["shortNames"] = json!(want_short);
        } else {
            fail("ShortNamesConflict", errs.join(", "));
        }
    }
    let categories = strings(&requested["categories"]);
    if categories.is_empty() {
        if let Some(m) = names.as_object_mut() {
            m.remove("categories");
        }
    } else {
        names["categories"] = json!(categories);
    }
    if names["shortNames"].as_array().is_some_and(Vec::is_empty)
        && let Some(m) = names.as_object_mut()
    {
        m.remove("shortNames");
    }
    let cond = match failed {
        Some((reason, m)) => Condition::new("NamesAccepted", "False", reason, &m),
        None => Condition::new("NamesAccepted", "True", "NoConflicts", "no conflicts found"),
    };
    (names, cond)
}

/// Why the CRD cannot be served although its names are fine: webhook
/// conversion, or a schema that is not structural.
pub fn blocker(crd: &Value) -> Option<Condition> {
    if let Some(causes) = non_structural(crd) {
        return Some(Condition::new(
            "Established",
            "False",
            "NonStructuralSchema",
            &format!("the schema is not structural: {causes}"),
        ));
    }
    if str_at(crd, "/spec/conversion/strategy") == "Webhook" {
        return Some(Condition::new(
            "Established",
            "False",
            "WebhookConversionNotSupported",
            "spec.conversion.strategy Webhook is not supported by this server yet; use None",
        ));
    }
    None
}

/// The structural-schema errors of every version, joined; `None` when all
/// are structural.
pub fn non_structural(crd: &Value) -> Option<String> {
    let mut all = Vec::new();
    for (i, v) in crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let Some(schema) = v.pointer("/schema/openAPIV3Schema") else {
            continue;
        };
        let path = format!("spec.versions[{i}].schema.openAPIV3Schema");
        if let Err(causes) = crate::structural::Structural::new(schema, &path) {
            all.extend(
                causes
                    .into_iter()
                    .map(|c| format!("{}: {}", c.field, c.message)),
            );
        }
    }
    (!all.is_empty()).then(|| all.join("; "))
}

/// The storage version's name.
pub fn storage_version(crd: &Value) -> Option<&str> {
    crd.pointer("/spec/versions")
        .and_then(Value::as_array)?
        .iter()
        .find(|v| v.get("storage") == Some(&json!(true)))
        .and_then(|v| v.get("name"))
        .and_then(Value::as_str)
}

/// `status.storedVersions` with the current storage version added.
pub fn add_stored_version(status: &mut Value, crd_spec_holder: &Value) {
    let Some(v) = storage_version(crd_spec_holder) else {
        return;
    };
    if !status.is_object() {
        *status = json!({});
    }
    let mut stored = strings(&status["storedVersions"]);
    if !stored.iter().any(|s| s == v) {
        stored.push(v.to_string());
    }
    status["storedVersions"] = json!(stored);
}

/// The status `crd` should have, `others` holding the names of the other
/// CRDs of its group and its group's built-in kinds, at time `now`.
pub fn desired(crd: &Value, others: &Claimed, now: &str) -> Value {
    let mut status = crd.get("status").cloned().unwrap_or_else(|| json!({}));
    if !status.is_object() {
        status = json!({});
    }
    let (names, names_cond) = accepted_names(crd, others);
    status["acceptedNames"] = names;
    set_condition(&mut status, &names_cond, now);
    let was_established = is_true(crd, "Established");
    let established = match blocker(crd) {
        Some(b) => b,
        None if names_cond.status == "True" || was_established => {
            let old = condition(crd, "Established").filter(|_| was_established);
            match old {
                Some(c) => Condition::new(
                    "Established",
                    "True",
                    str_at(c, "/reason"),
                    str_at(c, "/message"),
                ),
                None => Condition::new(
                    "Established",
                    "True",
                    "InitialNamesAccepted",
                    "the initial names have been accepted",
                ),
            }
        }
        None => Condition::new(
            "Established",
            "False",
            "NotAccepted",
            "not all names are accepted",
        ),
    };
    set_condition(&mut status, &established, now);
    match non_structural(crd) {
        Some(m) => set_condition(
            &mut status,
            &Condition::new("NonStructuralSchema", "True", "Violations", &m),
            now,
        ),
        None => remove_condition(&mut status, "NonStructuralSchema"),
    }
    add_stored_version(&mut status, crd);
    status
}

/// Whether the CRD's objects are served: established by its stored
/// status, and nothing (now) blocks it.
pub fn is_served(crd: &Value) -> bool {
    is_true(crd, "Established") && blocker(crd).is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd(plural: &str, kind: &str, short: &[&str]) -> Value {
        json!({"metadata": {"name": format!("{plural}.example.com")}, "spec": {
            "group": "example.com", "scope": "Namespaced",
            "names": {"plural": plural, "singular": kind.to_lowercase(), "kind": kind,
                      "listKind": format!("{kind}List"), "shortNames": short, "categories": ["all"]},
            "versions": [{"name": "v1", "served": true, "storage": true,
                          "schema": {"openAPIV3Schema": {"type": "object"}}}]}})
    }

    fn cond<'a>(status: &'a Value, kind: &str) -> (&'a str, &'a str) {
        let c = status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == kind)
            .unwrap_or_else(|| panic!("no {kind} in {status}"));
        (c["status"].as_str().unwrap(), c["reason"].as_str().unwrap())
    }

    #[test]
    fn a_fresh_crd_is_accepted_and_established() {
        let c = crd("widgets", "Widget", &["wd"]);
        let status = desired(&c, &Claimed::default(), "2026-01-01T00:00:00Z");
        assert_eq!(cond(&status, "NamesAccepted"), ("True", "NoConflicts"));
        assert_eq!(
            cond(&status, "Established"),
            ("True", "InitialNamesAccepted")
        );
        assert_eq!(
            status["acceptedNames"],
            json!({"plural": "widgets", "singular": "widget", "kind": "Widget",
                   "listKind": "WidgetList", "shortNames": ["wd"], "categories": ["all"]})
        );
        assert_eq!(status["storedVersions"], json!(["v1"]));
        // Computed again later, nothing changes (times included).
        let mut stored = c.clone();
        stored["status"] = status.clone();
        assert_eq!(
            desired(&stored, &Claimed::default(), "2026-02-02T00:00:00Z"),
            status
        );
    }

    #[test]
    fn names_another_crd_or_a_builtin_kind_holds_conflict() {
        let mut first = crd("widgets", "Widget", &["wd"]);
        first["status"] = desired(&first, &Claimed::default(), "t0");
        let mut held = Claimed::default();
        held.add_accepted(&first);
        // Same short name and kind in the same group.
        let second = crd("gadgets", "Widget", &["wd", "gd"]);
        let status = desired(&second, &held, "t1");
        assert_eq!(cond(&status, "NamesAccepted").0, "False");
        assert_eq!(cond(&status, "Established"), ("False", "NotAccepted"));
        assert_eq!(status["acceptedNames"]["plural"], "gadgets");
        assert!(status["acceptedNames"].get("kind").is_none());
        assert!(status["acceptedNames"].get("shortNames").is_none());
        let (names, _) = accepted_names(&crd("gadgets", "Gadget", &["wd"]), &held);
        assert_eq!(names["kind"], "Gadget");
        let (_, c) = accepted_names(&crd("gadgets", "Gadget", &["wd"]), &held);
        assert_eq!(c.reason, "ShortNamesConflict");
        assert!(
            c.message.contains("\"wd\" is already in use"),
            "{}",
            c.message
        );

        // A built-in kind of the group: networking.k8s.io's ingresses.
        let builtin = crate::kinds::builtin();
        let mut ing = crd("ingresses", "Thing", &[]);
        ing["spec"]["group"] = json!("networking.k8s.io");
        let (_, c) = accepted_names(&ing, &Claimed::builtin("networking.k8s.io", &builtin));
        assert_eq!((c.status, c.reason.as_str()), ("False", "PluralConflict"));
        // Another group is free to use the same names.
        let (_, c) = accepted_names(
            &crd("ingresses", "Ingress", &[]),
            &Claimed::builtin("example.com", &builtin),
        );
        assert_eq!(c.status, "True");
    }

    #[test]
    fn established_stays_through_later_conflicts_but_not_through_blockers() {
        let mut c = crd("widgets", "Widget", &[]);
        c["status"] = desired(&c, &Claimed::default(), "t0");
        assert!(is_served(&c));
        // A new short name that is taken: names not accepted, still served.
        c["spec"]["names"]["shortNames"] = json!(["taken"]);
        let mut held = Claimed::default();
        held.resources.insert("taken".into());
        let status = desired(&c, &held, "t1");
        assert_eq!(cond(&status, "NamesAccepted").0, "False");
        assert_eq!(
            cond(&status, "Established"),
            ("True", "InitialNamesAccepted")
        );
        // Webhook conversion: accepted, not served, and says why.
        let mut w = crd("widgets", "Widget", &[]);
        w["spec"]["conversion"] = json!({"strategy": "Webhook"});
        w["status"] = desired(&w, &Claimed::default(), "t0");
        assert_eq!(
            cond(&w["status"], "Established"),
            ("False", "WebhookConversionNotSupported")
        );
        assert_eq!(cond(&w["status"], "NamesAccepted").0, "True");
        assert!(!is_served(&w));
    }

    #[test]
    fn conditions_keep_their_time_until_their_status_changes() {
        let mut status = json!({});
        set_condition(&mut status, &Condition::new("A", "True", "R", "m"), "t0");
        set_condition(&mut status, &Condition::new("A", "True", "R2", "m2"), "t1");
        assert_eq!(status["conditions"][0]["lastTransitionTime"], "t0");
        assert_eq!(status["conditions"][0]["reason"], "R2");
        set_condition(&mut status, &Condition::new("A", "False", "R3", "m3"), "t2");
        assert_eq!(status["conditions"][0]["lastTransitionTime"], "t2");
        remove_condition(&mut status, "A");
        assert_eq!(status["conditions"], json!([]));
    }

    #[test]
    fn stored_versions_only_grow() {
        let mut c = crd("widgets", "Widget", &[]);
        let mut status = json!({"storedVersions": ["v1beta1"]});
        add_stored_version(&mut status, &c);
        assert_eq!(status["storedVersions"], json!(["v1beta1", "v1"]));
        c["spec"]["versions"][0]["storage"] = json!(false);
        add_stored_version(&mut status, &c);
        assert_eq!(status["storedVersions"], json!(["v1beta1", "v1"]));
    }
}
