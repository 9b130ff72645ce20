//! Strategic merge patch (`application/strategic-merge-patch+json`) as
//! kube-apiserver applies it to built-in kinds: maps merge, `null` removes,
//! lists merge by the merge key and patch strategy the schema gives the
//! field (others are replaced), and the directives kubectl sends are
//! carried out and never stored: `$patch: replace|delete|merge`,
//! `$retainKeys`, `$setElementOrder/<list>` and
//! `$deleteFromPrimitiveList/<list>`. The schema is reached through
//! [`Meta`], so the algorithm is tested without the Kubernetes table;
//! list ordering is in [`super::order`].

use serde_json::{Map, Value};

use super::PatchError;
use super::order;
use crate::schema::Shape;

/// How deep a patch may nest objects and lists. Recursion follows the patch,
/// so this bounds the stack whatever the stored object looks like.
pub const MAX_DEPTH: usize = 100;

const PATCH: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ORDER: &str = "$setElementOrder/";
const DELETE_PRIMITIVE: &str = "$deleteFromPrimitiveList/";

/// The `x-kubernetes-patch-strategy` of a field.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Strategy {
    /// Lists merge element by element (by the merge key, or as a set of
    /// scalars) instead of being replaced.
    pub merge: bool,
    /// The field is replaced as a whole, never merged.
    pub replace: bool,
    /// Clients send `$retainKeys` for it (the server honours `$retainKeys`
    /// wherever it appears).
    pub retain_keys: bool,
}

/// The patch metadata of one place in a kind's schema: a type together with
/// the annotations of the field that leads to it.
pub trait Meta: Copy {
    /// The node of key `key` of this object (a field of a struct, or the
    /// value of a map); `None` where the schema says nothing.
    fn child(&self, key: &str) -> Option<Self>;
    /// The node of this list's elements.
    fn item(&self) -> Option<Self>;
    /// The patch strategy of the field that leads here.
    fn strategy(&self) -> Strategy;
    /// The merge key of the list field that leads here.
    fn merge_key(&self) -> Option<&str>;
}

/// Apply strategic merge patch `patch` to `original` (an object of the kind
/// whose root is `meta`) and return the new object. A malformed patch
/// (a directive of the wrong shape) is [`PatchError::Malformed`] (400);
/// one that does not fit the object (a list element without its merge
/// key, a list of lists) is [`PatchError::Failed`] (422).
pub fn apply<M: Meta>(
    original: &Value,
    patch: &Value,
    meta: Option<M>,
) -> Result<Value, PatchError> {
    let Value::Object(p) = patch else {
        return Err(PatchError::Malformed(
            "a strategic merge patch must be a JSON object".into(),
        ));
    };
    let mut doc = match original {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    let mut at = Path::root();
    if merge_map(&mut doc, p, meta, &mut at)? == Outcome::Deleted {
        return Err(PatchError::Failed(
            "the patch deletes the whole object (\"$patch\": \"delete\" at the top level)".into(),
        ));
    }
    Ok(Value::Object(doc))
}

/// Where in the object the merge is, for messages and the depth limit.
struct Path {
    parts: Vec<String>,
}

impl Path {
    fn root() -> Path {
        Path { parts: Vec::new() }
    }

    fn enter(&mut self, part: &str) -> Result<(), PatchError> {
        if self.parts.len() >= MAX_DEPTH {
            return Err(PatchError::Malformed(format!(
                "the patch nests deeper than {MAX_DEPTH} levels"
            )));
        }
        self.parts.push(part.to_string());
        Ok(())
    }

    fn leave(&mut self) {
        self.parts.pop();
    }

    fn show(&self) -> String {
        if self.parts.is_empty() {
            return "<root>".into();
        }
        let mut s = String::new();
        for p in &self.parts {
            if !p.starts_with('[') && !s.is_empty() {
                s.push('.');
            }
            s.push_str(p);
        }
        s
    }
}

#[derive(Debug, PartialEq)]
enum Outcome {
    Kept,
    /// `$patch: delete`: the map goes, with the field or element holding it.
    Deleted,
}

fn is_directive(key: &str) -> bool {
    key == PATCH
        || key == RETAIN_KEYS
        || key.starts_with(SET_ORDER)
        || key.starts_with(DELETE_PRIMITIVE)
}

/// Merge map patch `patch` into `orig` in place.
fn merge_map<M: Meta>(
    orig: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    meta: Option<M>,
    at: &mut Path,
) -> Result<Outcome, PatchError> {
    match patch.get(PATCH) {
        None => {}
        Some(Value::String(d)) if d == "replace" => orig.clear(),
        Some(Value::String(d)) if d == "delete" => {
            orig.clear();
            return Ok(Outcome::Deleted);
        }
        Some(Value::String(d)) if d == "merge" => {}
        Some(other) => {
            return Err(PatchError::Malformed(format!(
                "unknown patch type: {other} in map at {}",
                at.show()
            )));
        }
    }
    if let Some(retain) = patch.get(RETAIN_KEYS) {
        retain_keys(orig, patch, retain, at)?;
    }
    // The lists a `$setElementOrder` orders are merged with it, first, so
    // that the loop below skips them.
    let mut done: Vec<&str> = Vec::new();
    for (k, order_list) in patch {
        let Some(field) = k.strip_prefix(SET_ORDER) else {
            continue;
        };
        let Value::Array(order_list) = order_list else {
            return Err(PatchError::Malformed(format!(
                "invalid patch format of setElementOrder list: {k} at {} is not a list",
                at.show()
            )));
        };
        let fmeta = meta.and_then(|m| m.child(field));
        at.enter(field)?;
        let merged = match patch.get(field) {
            Some(Value::Null) => None,
            Some(Value::Array(p)) => Some(merge_list(orig.get(field), p, fmeta, at)?),
            Some(other) => Some(clean(other, fmeta, at)?),
            None => orig.get(field).cloned(),
        };
        if let Some(Value::Array(mut list)) = merged {
            if fmeta.is_some_and(|m| m.strategy().merge) {
                let key = fmeta.and_then(|m| m.merge_key().map(str::to_string));
                let server = match orig.get(field) {
                    Some(Value::Array(a)) => a.as_slice(),
                    _ => &[],
                };
                let wanted = order::ids(order_list, key.as_deref());
                list = wanted
                    .map(|w| order::arrange(list, &w, server, key.as_deref()))
                    .map_err(|m| {
                        PatchError::Malformed(format!(
                            "invalid patch format of setElementOrder list at {}: {m}",
                            at.show()
                        ))
                    })?;
            }
            orig.insert(field.to_string(), Value::Array(list));
        } else if let Some(v) = merged {
            orig.insert(field.to_string(), v);
        } else {
            orig.remove(field);
        }
        at.leave();
        done.push(field);
    }
    for (k, v) in patch {
        if is_directive(k) || done.contains(&k.as_str()) {
            continue;
        }
        if v.is_null() {
            orig.remove(k);
            continue;
        }
        let kmeta = meta.and_then(|m| m.child(k));
        at.enter(k)?;
        let replace = kmeta.is_some_and(|m| m.strategy().replace);
        match (orig.get_mut(k), v) {
            (Some(Value::Object(o)), Value::Object(p)) if !replace => {
                if merge_map(o, p, kmeta, at)? == Outcome::Deleted {
                    orig.remove(k);
                }
            }
            (_, Value::Object(p)) => {
                let mut fresh = Map::new();
                if merge_map(&mut fresh, p, kmeta, at)? == Outcome::Deleted {
                    orig.remove(k);
                } else {
                    orig.insert(k.clone(), Value::Object(fresh));
                }
            }
            (_, Value::Array(p)) => {
                let list = if replace {
                    clean(v, kmeta, at)?
                } else {
                    merge_list(orig.get(k), p, kmeta, at)?
                };
                orig.insert(k.clone(), list);
            }
            (_, scalar) => {
                orig.insert(k.clone(), scalar.clone());
            }
        }
        at.leave();
    }
    // Removals from sets last: the same key in the set's patch list (which
    // kubectl never sends) does not bring a removed value back.
    for (k, v) in patch {
        let Some(field) = k.strip_prefix(DELETE_PRIMITIVE) else {
            continue;
        };
        let Value::Array(gone) = v else {
            return Err(PatchError::Malformed(format!(
                "invalid patch format of primitive list: {k} at {} is not a list",
                at.show()
            )));
        };
        if gone.iter().any(|g| g.is_object() || g.is_array()) {
            return Err(PatchError::Malformed(format!(
                "invalid patch format of primitive list: {k} at {} must list scalars",
                at.show()
            )));
        }
        if let Some(Value::Array(list)) = orig.get_mut(field) {
            list.retain(|x| !gone.contains(x));
        }
    }
    Ok(Outcome::Kept)
}

/// `$retainKeys`: the keys of `orig` not listed go; every key the patch sets
/// must be listed.
fn retain_keys(
    orig: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    retain: &Value,
    at: &Path,
) -> Result<(), PatchError> {
    let bad = || {
        PatchError::Malformed(format!(
            "invalid patch format of retainKeys at {}: it must be a list of field names",
            at.show()
        ))
    };
    let keys = retain
        .as_array()
        .ok_or_else(bad)?
        .iter()
        .map(|k| k.as_str().ok_or_else(bad))
        .collect::<Result<Vec<&str>, _>>()?;
    if let Some(k) = patch
        .iter()
        .find(|(k, v)| !is_directive(k) && !v.is_null() && !keys.contains(&k.as_str()))
        .map(|(k, _)| k)
    {
        return Err(PatchError::Failed(format!(
            "patch content doesn't match retainKeys list: {k:?} at {} is not in it",
            at.show()
        )));
    }
    orig.retain(|k, _| keys.contains(&k.as_str()));
    Ok(())
}

/// A value from the patch as it is stored where nothing was before: nested
/// directives carried out against nothing, nulls dropped.
fn clean<M: Meta>(v: &Value, meta: Option<M>, at: &mut Path) -> Result<Value, PatchError> {
    Ok(match v {
        Value::Object(p) => {
            let mut fresh = Map::new();
            merge_map(&mut fresh, p, meta, at)?;
            Value::Object(fresh)
        }
        Value::Array(items) => {
            if meta.is_some_and(|m| m.strategy().merge) {
                merge_list(None, items, meta, at)?
            } else {
                let item = meta.and_then(|m| m.item());
                let mut out = Vec::with_capacity(items.len());
                for (i, x) in items.iter().enumerate() {
                    at.enter(&format!("[{i}]"))?;
                    out.push(clean(x, item, at)?);
                    at.leave();
                }
                Value::Array(out)
            }
        }
        scalar => scalar.clone(),
    })
}

/// Merge list patch `patch` into the list `orig` (absent, or not a list,
/// counts as empty): replaced unless the field's strategy is merge, then
/// merged by merge key (lists of objects) or as a set (lists of scalars).
fn merge_list<M: Meta>(
    orig: Option<&Value>,
    patch: &[Value],
    meta: Option<M>,
    at: &mut Path,
) -> Result<Value, PatchError> {
    let strategy = meta.map(|m| m.strategy()).unwrap_or_default();
    if !strategy.merge || strategy.replace {
        let item = meta.and_then(|m| m.item());
        let mut out = Vec::with_capacity(patch.len());
        for (i, x) in patch.iter().enumerate() {
            at.enter(&format!("[{i}]"))?;
            out.push(clean(x, item, at)?);
            at.leave();
        }
        return Ok(Value::Array(out));
    }
    let server: &[Value] = match orig {
        Some(Value::Array(a)) => a,
        _ => &[],
    };
    if server.iter().chain(patch).any(Value::is_array) {
        return Err(PatchError::Failed(format!(
            "lists of lists are not supported (at {})",
            at.show()
        )));
    }
    let maps = server.iter().chain(patch).filter(|x| x.is_object()).count();
    if maps == 0 {
        return Ok(Value::Array(merge_scalars(server, patch)));
    }
    if maps != server.len() + patch.len() {
        return Err(PatchError::Failed(format!(
            "the elements of {} mix objects and scalars",
            at.show()
        )));
    }
    let Some(key) = meta.and_then(|m| m.merge_key().map(str::to_string)) else {
        return Err(PatchError::Failed(format!(
            "cannot merge lists without merge key for {}",
            at.show()
        )));
    };
    merge_keyed(server, patch, meta.and_then(|m| m.item()), &key, at).map(Value::Array)
}

/// A set of scalars: the server's values, then the patch's new ones, each
/// once, the patch's in its order.
fn merge_scalars(server: &[Value], patch: &[Value]) -> Vec<Value> {
    let mut merged: Vec<Value> = Vec::with_capacity(server.len() + patch.len());
    for x in server.iter().chain(patch) {
        if !merged.contains(x) {
            merged.push(x.clone());
        }
    }
    order::arrange(merged, patch, server, None)
}

/// Lists of objects merged by `key`: `$patch: delete` elements remove the
/// element with their key, a `$patch: replace` element makes the other
/// elements the whole list, and every other element merges into the one
/// with its key or is appended.
fn merge_keyed<M: Meta>(
    server: &[Value],
    patch: &[Value],
    item: Option<M>,
    key: &str,
    at: &mut Path,
) -> Result<Vec<Value>, PatchError> {
    let mut merged: Vec<Value> = server.to_vec();
    let mut plain: Vec<&Map<String, Value>> = Vec::with_capacity(patch.len());
    let mut replace = false;
    for p in patch {
        let Value::Object(p) = p else {
            continue;
        };
        match p.get(PATCH) {
            None => plain.push(p),
            Some(Value::String(d)) if d == "merge" => plain.push(p),
            Some(Value::String(d)) if d == "replace" => replace = true,
            Some(Value::String(d)) if d == "delete" => {
                let id = p.get(key).ok_or_else(|| no_key(p, key, at))?;
                merged.retain(|x| x.get(key) != Some(id));
            }
            Some(other) => {
                return Err(PatchError::Malformed(format!(
                    "unknown patch type: {other} in an element of {}",
                    at.show()
                )));
            }
        }
    }
    if replace {
        merged.clear();
    }
    for p in &plain {
        let id = p.get(key).ok_or_else(|| no_key(p, key, at))?;
        at.enter(&format!("[{key}={id}]"))?;
        let mut stripped = (*p).clone();
        stripped.remove(PATCH);
        match merged.iter().position(|x| x.get(key) == Some(id)) {
            Some(i) => {
                let Value::Object(o) = &mut merged[i] else {
                    unreachable!("only objects carry a merge key")
                };
                merge_map(o, &stripped, item, at)?;
            }
            None => merged.push(clean(&Value::Object(stripped), item, at)?),
        }
        at.leave();
    }
    let wanted: Vec<Value> = plain.iter().filter_map(|p| p.get(key).cloned()).collect();
    Ok(order::arrange(merged, &wanted, server, Some(key)))
}

fn no_key(p: &Map<String, Value>, key: &str, at: &Path) -> PatchError {
    PatchError::Failed(format!(
        "map: {} does not contain declared merge key: {key} (at {})",
        Value::Object(p.clone()),
        at.show()
    ))
}

/// The Kubernetes schema table drives strategic merge of built-in kinds.
impl Meta for crate::schema::Node<'_> {
    fn child(&self, key: &str) -> Option<Self> {
        match self.shape() {
            Shape::Object => self.field(key),
            Shape::Map => self.elem(),
            _ => None,
        }
    }
    fn item(&self) -> Option<Self> {
        match self.shape() {
            Shape::List => self.elem(),
            _ => None,
        }
    }
    fn strategy(&self) -> Strategy {
        let s = self.patch_strategy();
        Strategy {
            merge: s.merge,
            replace: s.replace,
            retain_keys: s.retain_keys,
        }
    }
    fn merge_key(&self) -> Option<&str> {
        crate::schema::Node::merge_key(self)
    }
}
