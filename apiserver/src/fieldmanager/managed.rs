//! `metadata.managedFields`: the entries (manager, operation, apiVersion,
//! subresource, time, FieldsV1 set) read from and written to objects, and
//! the bookkeeping of an Update operation: the writer takes the fields it
//! changed, the others lose them.

use serde_json::{Map, Value, json};

use super::fieldset::FieldSet;
use super::typed::{Comparison, Sch};

/// `Apply` or `Update`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Operation {
    Apply,
    Update,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// One entry of `managedFields`.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub manager: String,
    pub operation: Operation,
    pub api_version: String,
    /// `""` for the main resource.
    pub subresource: String,
    /// `None` until the write that touched it is finished.
    pub time: Option<String>,
    pub set: FieldSet,
}

impl Entry {
    /// Whether `other` is the same manager: entries of an applier match
    /// across API versions, those of an updater only within one.
    pub fn same_manager(&self, other: &Entry) -> bool {
        self.manager == other.manager
            && self.operation == other.operation
            && self.subresource == other.subresource
            && (self.operation == Operation::Apply || self.api_version == other.api_version)
    }

    /// The manager as conflicts name it, as Kubernetes prints it:
    /// `"mgr"`, `"mgr" with subresource "status"`, then ` using apps/v1`
    /// for an updater.
    pub fn describe(&self) -> String {
        let mut s = format!("{:?}", self.manager);
        if !self.subresource.is_empty() {
            s.push_str(&format!(" with subresource {:?}", self.subresource));
        }
        if self.operation == Operation::Update {
            s.push_str(&format!(" using {}", self.api_version));
        }
        s
    }

    fn to_value(&self) -> Value {
        let mut m = Map::new();
        m.insert("manager".into(), json!(self.manager));
        m.insert("operation".into(), json!(self.operation.as_str()));
        m.insert("apiVersion".into(), json!(self.api_version));
        if let Some(t) = &self.time {
            m.insert("time".into(), json!(t));
        }
        m.insert("fieldsType".into(), json!("FieldsV1"));
        m.insert("fieldsV1".into(), self.set.to_fields_v1());
        if !self.subresource.is_empty() {
            m.insert("subresource".into(), json!(self.subresource));
        }
        Value::Object(m)
    }

    fn from_value(v: &Value) -> Result<Entry, String> {
        let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let operation = match s("operation").as_str() {
            "Apply" => Operation::Apply,
            "Update" => Operation::Update,
            o => return Err(format!("unsupported operation {o:?}")),
        };
        match v.get("fieldsType").and_then(Value::as_str) {
            Some("FieldsV1") => {}
            other => return Err(format!("unsupported fieldsType {other:?}")),
        }
        Ok(Entry {
            manager: s("manager"),
            operation,
            api_version: s("apiVersion"),
            subresource: s("subresource"),
            time: v.get("time").and_then(Value::as_str).map(str::to_string),
            set: FieldSet::from_fields_v1(v.get("fieldsV1").unwrap_or(&json!({})))?,
        })
    }
}

/// The entries of an object's `managedFields` (none when absent).
pub fn decode(obj: &Value) -> Result<Vec<Entry>, String> {
    match obj.pointer("/metadata/managedFields") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items.iter().map(Entry::from_value).collect(),
        Some(other) => Err(format!("managedFields must be a list, got {other}")),
    }
}

/// Write `entries` into `obj` (removing `managedFields` when there are
/// none), sorted as Kubernetes sorts them: appliers first, then by time,
/// manager and apiVersion. An entry without a time (one this write
/// touched) gets `now`.
pub fn encode(obj: &mut Value, mut entries: Vec<Entry>, now: &str) {
    entries.retain(|e| !e.set.is_empty());
    for e in &mut entries {
        if e.time.is_none() {
            e.time = Some(now.to_string());
        }
    }
    entries.sort_by(|a, b| {
        (a.operation, &a.time, &a.manager, &a.api_version).cmp(&(
            b.operation,
            &b.time,
            &b.manager,
            &b.api_version,
        ))
    });
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        if entries.is_empty() {
            m.remove("managedFields");
        } else {
            m.insert(
                "managedFields".into(),
                Value::Array(entries.iter().map(Entry::to_value).collect()),
            );
        }
    }
}

/// Remove from every entry except `except` what `cmp` says was removed, and
/// what was changed (an update takes the fields it changes). Entries left
/// empty are dropped by [`encode`].
pub fn take_from_others(
    entries: &mut [Entry],
    except: &Entry,
    taken: &FieldSet,
    removed: &FieldSet,
) {
    for e in entries.iter_mut() {
        if e.same_manager(except) {
            continue;
        }
        e.set = e.set.difference(taken).difference(removed);
    }
}

/// The bookkeeping of an Update operation by `me` that changed `cmp`:
/// `me` takes the added and modified fields, everyone else loses them and
/// the removed ones.
pub fn record_update(entries: &mut Vec<Entry>, me: Entry, cmp: &Comparison) {
    let taken = cmp.added.union(&cmp.modified);
    take_from_others(entries, &me, &taken, &cmp.removed);
    if taken.is_empty() && cmp.removed.is_empty() {
        return;
    }
    match entries.iter_mut().find(|e| e.same_manager(&me)) {
        Some(e) => {
            e.set = e.set.union(&taken).difference(&cmp.removed);
            if !taken.is_empty() {
                e.time = None;
                // The entry records the version this write used.
                e.api_version = me.api_version;
            }
        }
        None => {
            let mut me = me;
            me.set = taken.difference(&cmp.removed);
            entries.push(me);
        }
    }
}

/// The set that a schema walk of the whole of `obj` gives, for a manager
/// that owns everything in it (the creator, or `before-first-apply`).
pub fn whole(s: &Sch<'_>, obj: &Value) -> FieldSet {
    let mut out = FieldSet::default();
    super::typed::insert_all(s, obj, &mut Vec::new(), false, true, &mut out);
    out
}
