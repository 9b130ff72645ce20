//! Objects read through the schema as server-side apply sees them: which
//! values are structs, granular maps, associative lists, sets or atomic
//! leaves, and the path element of each child. Built-in kinds use the
//! Kubernetes schema ([`crate::schema`]); a custom resource uses its
//! version's structural schema ([`crate::structural`]: list and map types,
//! lists atomic unless they say otherwise), and without one is read as
//! Kubernetes reads a schemaless one: objects are granular maps, lists are
//! atomic.

use std::collections::BTreeMap;

use serde_json::Value;

use super::fieldset::{self, FieldSet};
use crate::schema::{self, ListType, MapType, Node, Shape};
use crate::structural::{self, ObjectShape};

/// How deep an object is walked; deeper values are owned as one leaf.
pub const MAX_DEPTH: usize = 100;

/// The schema at one place of an object.
#[derive(Clone, Copy)]
pub enum Sch<'a> {
    Node(Node<'a>),
    /// No schema: objects are granular maps, lists atomic.
    Deduced,
    /// The root of a custom resource: deduced, but `metadata` is ObjectMeta.
    DeducedRoot,
    /// A custom resource's structural schema at this place.
    Crd(&'a structural::Node),
}

/// What a value is to apply.
#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    /// An object with named fields (never itself a member unless empty).
    Struct,
    /// An object with arbitrary keys, each key its own member.
    Map,
    /// A list whose items are identified by these key fields (each with
    /// the value an item without it has).
    Assoc(Vec<(String, Option<Value>)>),
    /// A list of distinct scalars.
    Set,
    /// Owned as a whole: scalars, atomic maps and lists, untyped values.
    Leaf,
}

/// The schema of kind `group/version/kind`, or deduced for a custom resource.
pub fn root(group: &str, version: &str, kind: &str) -> Sch<'static> {
    match schema::builtin().kind(group, version, kind) {
        Some(n) => Sch::Node(n),
        None => Sch::DeducedRoot,
    }
}

impl<'a> Sch<'a> {
    /// What `v` is here.
    pub fn kind(&self, v: &Value) -> Kind {
        let n = match self {
            // The top level of any object has named fields.
            Sch::DeducedRoot if v.is_object() => return Kind::Struct,
            Sch::Deduced | Sch::DeducedRoot => {
                return if v.is_object() { Kind::Map } else { Kind::Leaf };
            }
            Sch::Crd(n) => return crd_kind(n, v),
            Sch::Node(n) => n,
        };
        let atomic_map = n.map_type() == Some(MapType::Atomic);
        match (n.shape(), v) {
            (Shape::Object, Value::Object(_)) if !atomic_map => Kind::Struct,
            (Shape::Map, Value::Object(_)) if !atomic_map => Kind::Map,
            (Shape::List, Value::Array(_)) => {
                let keys = n.map_keys();
                match n.list_type() {
                    Some(ListType::Map) if !keys.is_empty() => {
                        Kind::Assoc(keys.iter().map(|k| (k.clone(), key_default(k))).collect())
                    }
                    Some(ListType::Set) => Kind::Set,
                    Some(_) => Kind::Leaf,
                    None => {
                        let ps = n.patch_strategy();
                        match n.merge_key() {
                            Some(k) if ps.merge => {
                                Kind::Assoc(vec![(k.to_string(), key_default(k))])
                            }
                            None if ps.merge => Kind::Set,
                            _ => Kind::Leaf,
                        }
                    }
                }
            }
            _ => Kind::Leaf,
        }
    }

    /// The schema of field (or map key) `name`.
    pub fn child(&self, name: &str) -> Sch<'a> {
        match self {
            Sch::Node(n) => match n.shape() {
                Shape::Object => n.field(name).map_or(Sch::Deduced, Sch::Node),
                Shape::Map => n.elem().map_or(Sch::Deduced, Sch::Node),
                _ => Sch::Deduced,
            },
            Sch::DeducedRoot if name == "metadata" => object_meta(),
            Sch::Crd(n) if name == "metadata" && n.is_resource() => object_meta(),
            Sch::Crd(n) => n.child(name).map_or(Sch::Deduced, Sch::Crd),
            _ => Sch::Deduced,
        }
    }

    /// The schema of a list item.
    pub fn item(&self) -> Sch<'a> {
        match self {
            Sch::Node(n) => n.elem().map_or(Sch::Deduced, Sch::Node),
            Sch::Crd(n) => n.item().map_or(Sch::Deduced, Sch::Crd),
            _ => Sch::Deduced,
        }
    }
}

fn object_meta<'a>() -> Sch<'a> {
    schema::builtin()
        .definition("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta")
        .map_or(Sch::Deduced, Sch::Node)
}

/// What `v` is under a custom resource's schema node: objects by their
/// properties or additionalProperties (granular unless
/// `x-kubernetes-map-type: atomic`), lists by `x-kubernetes-list-type`,
/// with the key defaults of list-map items.
fn crd_kind(n: &structural::Node, v: &Value) -> Kind {
    match v {
        Value::Object(_) if n.map_type() == MapType::Atomic => Kind::Leaf,
        Value::Object(_) => match n.object_shape() {
            ObjectShape::Struct => Kind::Struct,
            ObjectShape::Map => Kind::Map,
        },
        Value::Array(_) => match n.list_type() {
            ListType::Map if !n.list_map_keys().is_empty() => Kind::Assoc(
                n.list_map_keys()
                    .iter()
                    .map(|k| (k.clone(), n.key_default(k).cloned()))
                    .collect(),
            ),
            ListType::Set => Kind::Set,
            _ => Kind::Leaf,
        },
        _ => Kind::Leaf,
    }
}

/// Values Kubernetes defaults in list map keys, so an applied item without
/// them names the same item as the defaulted live one.
fn key_default(key: &str) -> Option<Value> {
    (key == "protocol").then(|| Value::String("TCP".into()))
}

/// The path element of item `i` (`item`) of a list of kind `kind`.
pub fn item_element(kind: &Kind, i: usize, item: &Value) -> String {
    match kind {
        Kind::Assoc(keys) => {
            let mut found = BTreeMap::new();
            for (k, default) in keys {
                let v = item.get(k).filter(|v| !v.is_null()).cloned();
                if let Some(v) = v.or_else(|| default.clone()) {
                    found.insert(k.clone(), v);
                }
            }
            if found.is_empty() {
                format!("i:{i}")
            } else {
                fieldset::key(&found)
            }
        }
        Kind::Set => fieldset::value(item),
        _ => format!("i:{i}"),
    }
}

/// The children of `v` (of kind `kind`) by path element, each with its
/// schema and whether it is an entry (a map key or a list item: a member of
/// its own, unlike a struct field).
pub fn children<'v, 'a>(
    s: &Sch<'a>,
    kind: &Kind,
    v: &'v Value,
) -> Vec<(String, Sch<'a>, &'v Value, bool)> {
    match (kind, v) {
        (Kind::Struct | Kind::Map, Value::Object(m)) => m
            .iter()
            .map(|(k, c)| (fieldset::field(k), s.child(k), c, *kind == Kind::Map))
            .collect(),
        (Kind::Assoc(_) | Kind::Set, Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, c)| (item_element(kind, i, c), s.item(), c, true))
            .collect(),
        _ => Vec::new(),
    }
}

fn is_empty_container(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// Insert every path of `v` at `path` into `out`. `entry`: `v` is a map
/// entry or list item, a member of its own. `containers`: granular maps and
/// lists are members too (a field an update adds; an apply owns only what
/// it lists).
pub fn insert_all(
    s: &Sch<'_>,
    v: &Value,
    path: &mut Vec<String>,
    entry: bool,
    containers: bool,
    out: &mut FieldSet,
) {
    let kind = s.kind(v);
    let is_root = path.is_empty();
    let member = match kind {
        Kind::Leaf => true,
        Kind::Struct => entry || is_empty_container(v),
        _ => entry || containers || is_empty_container(v),
    };
    if member && !is_root {
        out.insert(path);
    }
    if path.len() >= MAX_DEPTH {
        return;
    }
    for (pe, cs, c, e) in children(s, &kind, v) {
        path.push(pe);
        insert_all(&cs, c, path, e, containers, out);
        path.pop();
    }
}

/// The set an applier owns by applying `v`: every leaf, map entry and list
/// item it lists.
pub fn applied_set(s: &Sch<'_>, v: &Value) -> FieldSet {
    let mut out = FieldSet::default();
    insert_all(s, v, &mut Vec::new(), false, false, &mut out);
    out
}

/// What changed from `old` to `new`.
#[derive(Debug, Default)]
pub struct Comparison {
    pub added: FieldSet,
    pub modified: FieldSet,
    pub removed: FieldSet,
}

impl Comparison {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.modified.is_empty() && self.removed.is_empty()
    }
}

/// Compare two versions of an object.
pub fn compare(s: &Sch<'_>, old: &Value, new: &Value) -> Comparison {
    let mut c = Comparison::default();
    cmp(s, old, new, &mut Vec::new(), &mut c);
    c
}

fn cmp(s: &Sch<'_>, old: &Value, new: &Value, path: &mut Vec<String>, c: &mut Comparison) {
    let (ko, kn) = (s.kind(old), s.kind(new));
    if ko != kn || kn == Kind::Leaf || path.len() >= MAX_DEPTH {
        if old != new && !path.is_empty() {
            c.modified.insert(path);
        }
        return;
    }
    let olds: BTreeMap<String, (Sch<'_>, &Value, bool)> = children(s, &ko, old)
        .into_iter()
        .map(|(pe, cs, v, e)| (pe, (cs, v, e)))
        .collect();
    let news = children(s, &kn, new);
    for (pe, cs, nv, e) in &news {
        path.push(pe.clone());
        match olds.get(pe) {
            Some((_, ov, _)) => cmp(cs, ov, nv, path, c),
            None => insert_all(cs, nv, path, *e, true, &mut c.added),
        }
        path.pop();
    }
    for (pe, (cs, ov, e)) in &olds {
        if !news.iter().any(|(n, ..)| n == pe) {
            path.push(pe.clone());
            insert_all(cs, ov, path, *e, true, &mut c.removed);
            // The place itself went, whatever it was.
            c.removed.insert(path);
            path.pop();
        }
    }
}

/// `cfg` merged into `live`: fields and map entries are merged one by one,
/// associative list items by key and set items by value; everything else
/// (scalars, atomic maps and lists) is replaced. A null in `cfg` removes
/// the field.
pub fn merge(s: &Sch<'_>, live: Option<&Value>, cfg: &Value, depth: usize) -> Value {
    let kind = s.kind(cfg);
    let live = live.filter(|l| s.kind(l) == kind);
    if depth >= MAX_DEPTH {
        return cfg.clone();
    }
    match (&kind, cfg) {
        (Kind::Struct | Kind::Map, Value::Object(m)) => {
            let mut out = live.and_then(Value::as_object).cloned().unwrap_or_default();
            for (k, c) in m {
                if c.is_null() {
                    out.remove(k);
                    continue;
                }
                let merged = merge(&s.child(k), out.get(k), c, depth + 1);
                out.insert(k.clone(), merged);
            }
            Value::Object(out)
        }
        (Kind::Assoc(_) | Kind::Set, Value::Array(items)) => {
            let mut out: Vec<Value> = live.and_then(Value::as_array).cloned().unwrap_or_default();
            let item_s = s.item();
            for (i, c) in items.iter().enumerate() {
                let pe = item_element(&kind, i, c);
                let at = out
                    .iter()
                    .enumerate()
                    .position(|(j, l)| item_element(&kind, j, l) == pe);
                match at {
                    Some(j) if kind == Kind::Set => out[j] = c.clone(),
                    Some(j) => out[j] = merge(&item_s, Some(&out[j]), c, depth + 1),
                    None => out.push(merge(&item_s, None, c, depth + 1)),
                }
            }
            Value::Array(out)
        }
        _ => cfg.clone(),
    }
}

/// Remove from `v` every place that `remove` has as a member and nothing in
/// `keep` has at or below it; where something below is kept, the place
/// stays and only what is not kept goes.
pub fn prune(s: &Sch<'_>, v: &mut Value, remove: &FieldSet, keep: Option<&FieldSet>, depth: usize) {
    if remove.children.is_empty() || depth >= MAX_DEPTH {
        return;
    }
    let kind = s.kind(v);
    let empty = FieldSet::default();
    let gone = |pe: &str| -> Option<bool> {
        let r = remove.children.get(pe)?;
        let k = keep.and_then(|k| k.children.get(pe)).unwrap_or(&empty);
        Some(r.member && k.is_empty())
    };
    match (&kind, v) {
        (Kind::Struct | Kind::Map, Value::Object(m)) => {
            let names: Vec<String> = m.keys().cloned().collect();
            for name in names {
                let pe = fieldset::field(&name);
                match gone(&pe) {
                    Some(true) => {
                        m.remove(&name);
                    }
                    Some(false) => {
                        if let Some(c) = m.get_mut(&name) {
                            prune(
                                &s.child(&name),
                                c,
                                &remove.children[&pe],
                                keep.and_then(|k| k.children.get(&pe)),
                                depth + 1,
                            );
                        }
                    }
                    None => {}
                }
            }
        }
        (Kind::Assoc(_) | Kind::Set, Value::Array(items)) => {
            let item_s = s.item();
            let mut out = Vec::with_capacity(items.len());
            for (i, mut item) in std::mem::take(items).into_iter().enumerate() {
                let pe = item_element(&kind, i, &item);
                match gone(&pe) {
                    Some(true) => continue,
                    Some(false) => prune(
                        &item_s,
                        &mut item,
                        &remove.children[&pe],
                        keep.and_then(|k| k.children.get(&pe)),
                        depth + 1,
                    ),
                    None => {}
                }
                out.push(item);
            }
            *items = out;
        }
        _ => {}
    }
}
