//! The Apply operation: merge an applied configuration into the live
//! object through the schema, make the applier own exactly what it
//! applied, remove what it stopped applying (unless someone else owns it),
//! and refuse to change fields other managers own unless forced.

use serde_json::{Value, json};

use super::conflicts::{self, Conflict};
use super::fieldset::FieldSet;
use super::managed::{self, Entry, Operation};
use super::typed::{self, Sch};
use super::{strip, without_managed_fields};
use crate::error::ApiError;
use crate::request::RequestTarget;

/// Who applies, and how.
pub struct Applier<'a> {
    pub target: &'a RequestTarget,
    pub manager: &'a str,
    /// `""` for the main resource.
    pub subresource: &'a str,
    /// Take fields others own instead of failing (`force=true`).
    pub force: bool,
    /// The time written into entries this apply touches.
    pub now: &'a str,
}

/// The manager Kubernetes names the owner of an object's fields when the
/// object has no managedFields at all when first applied to.
pub const BEFORE_FIRST_APPLY: &str = "before-first-apply";

/// `cfg` applied to `live` (`None`: the object is created): the new object
/// with its managedFields, or the conflicts with other managers.
pub fn apply(a: &Applier<'_>, live: Option<&Value>, cfg: &Value) -> Result<Value, ApiError> {
    let t = a.target;
    let s = super::schema_of(t);
    let api_version = super::api_version(t);
    let empty = json!({});
    let live_obj = without_managed_fields(live.unwrap_or(&empty));
    let mut entries = live
        .map(managed::decode)
        .transpose()
        .ok()
        .flatten()
        .unwrap_or_default();
    if let Some(l) = live
        && entries.is_empty()
    {
        // Fields set before anyone applied still have an owner, so that
        // applying a different value is a conflict.
        let mut set = managed::whole(&s, &live_obj);
        strip(&mut set, t, a.subresource);
        entries.push(Entry {
            manager: BEFORE_FIRST_APPLY.into(),
            operation: Operation::Update,
            api_version: api_version.clone(),
            subresource: a.subresource.into(),
            time: l
                .pointer("/metadata/creationTimestamp")
                .and_then(Value::as_str)
                .map(str::to_string),
            set,
        });
    }
    let mut applied = typed::applied_set(&s, cfg);
    strip(&mut applied, t, a.subresource);

    let me = Entry {
        manager: a.manager.into(),
        operation: Operation::Apply,
        api_version: api_version.clone(),
        subresource: a.subresource.into(),
        time: None,
        set: applied.clone(),
    };
    let previous = entries
        .iter()
        .position(|e| e.same_manager(&me))
        .map(|i| entries.remove(i));
    let last = previous.as_ref().map(|p| p.set.clone()).unwrap_or_default();

    let mut merged = typed::merge(&s, Some(&live_obj), cfg, 0);
    // What the applier stopped applying goes, unless someone still owns it.
    let mut owned = applied.clone();
    for e in &entries {
        owned.union_with(&e.set);
    }
    prune_unowned(&s, &mut merged, &last.difference(&applied), &owned);

    let mut cmp = typed::compare(&s, &live_obj, &merged);
    for set in [&mut cmp.added, &mut cmp.modified, &mut cmp.removed] {
        strip(set, t, a.subresource);
    }
    let changed = cmp.added.union(&cmp.modified);
    let found: Vec<Conflict> = entries
        .iter()
        .filter_map(|e| {
            let clash = e.set.intersection(&changed);
            (!clash.is_empty()).then(|| Conflict {
                manager: e.describe(),
                paths: clash.paths(),
            })
        })
        .collect();
    if !found.is_empty() && !a.force {
        // kubectl moving from client-side apply: fields its last applied
        // configuration set are not conflicts, as in Kubernetes.
        let allowed = match live {
            Some(l) if a.manager == KUBECTL => last_applied_set(&s, l, t, a.subresource),
            _ => None,
        };
        let left: Vec<Conflict> = found
            .into_iter()
            .filter_map(|mut c| {
                if let Some(allowed) = &allowed {
                    c.paths.retain(|p| !allowed.has(p));
                }
                (!c.paths.is_empty()).then_some(c)
            })
            .collect();
        if !left.is_empty() {
            return Err(conflicts::error(&left));
        }
    }
    managed::take_from_others(&mut entries, &me, &changed, &cmp.removed);

    // Applying again what is already applied changes nothing, not even
    // the time.
    let mut me = me;
    if let Some(p) = &previous
        && cmp.is_empty()
        && p.set == me.set
    {
        me.time = p.time.clone();
        me.api_version = p.api_version.clone();
    }
    entries.push(me);
    if a.manager == KUBECTL {
        keep_last_applied_current(&mut merged, cfg);
    }
    managed::encode(&mut merged, entries, a.now);
    Ok(merged)
}

/// The manager `kubectl apply --server-side` uses.
const KUBECTL: &str = "kubectl";

/// The annotation client-side `kubectl apply` keeps its configuration in.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The fields `obj`'s last-applied configuration sets, if it has one.
fn last_applied_set(s: &Sch<'_>, obj: &Value, t: &RequestTarget, sub: &str) -> Option<FieldSet> {
    let text = obj
        .pointer("/metadata/annotations")?
        .get(LAST_APPLIED)?
        .as_str()?;
    let cfg: Value = serde_json::from_str(text).ok()?;
    let mut set = typed::applied_set(s, &cfg);
    strip(&mut set, t, sub);
    Some(set)
}

/// An object that still has the last-applied annotation gets the applied
/// configuration in it, so a later client-side `kubectl apply` computes
/// its patch from what was last applied (Kubernetes does the same for
/// the `kubectl` manager).
fn keep_last_applied_current(obj: &mut Value, cfg: &Value) {
    let has = obj
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(LAST_APPLIED))
        .is_some();
    if !has {
        return;
    }
    let mut applied = cfg.clone();
    if let Some(a) = applied
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    {
        a.remove(LAST_APPLIED);
    }
    obj["metadata"]["annotations"][LAST_APPLIED] = Value::String(applied.to_string());
}

fn prune_unowned(s: &Sch<'_>, obj: &mut Value, remove: &FieldSet, keep: &FieldSet) {
    typed::prune(s, obj, remove, Some(keep), 0);
}

/// Checks of an applied configuration before it is applied to `t`: an
/// object of `t`'s kind named `name`, without managedFields. Fills in the
/// name when the configuration has none.
pub fn check_config(t: &RequestTarget, name: &str, cfg: &mut Value) -> Result<(), ApiError> {
    if !cfg.is_object() {
        return Err(ApiError::BadRequest(
            "the applied configuration must be an object".into(),
        ));
    }
    let want = super::api_version(t);
    match cfg.get("apiVersion").and_then(Value::as_str) {
        Some(v) if v == want => {}
        Some(v) => {
            return Err(ApiError::BadRequest(format!(
                "the API version in the data ({v}) does not match the expected API version ({want})"
            )));
        }
        None => {
            return Err(ApiError::BadRequest(
                "error decoding YAML: Object 'apiVersion' is missing".into(),
            ));
        }
    }
    match cfg.get("kind").and_then(Value::as_str) {
        Some(k) if k == t.rt.kind => {}
        Some(k) => {
            return Err(ApiError::BadRequest(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                t.rt.kind
            )));
        }
        None => {
            return Err(ApiError::BadRequest(
                "error decoding YAML: Object 'Kind' is missing".into(),
            ));
        }
    }
    if !cfg.get("metadata").is_some_and(Value::is_object) {
        cfg["metadata"] = json!({});
    }
    if cfg
        .pointer("/metadata/managedFields")
        .is_some_and(|m| !m.is_null())
    {
        return Err(ApiError::BadRequest(
            "metadata.managedFields must be nil".into(),
        ));
    }
    match cfg.pointer("/metadata/name").and_then(Value::as_str) {
        None | Some("") => cfg["metadata"]["name"] = json!(name),
        Some(n) if n == name => {}
        Some(n) => {
            return Err(ApiError::BadRequest(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )));
        }
    }
    Ok(())
}
