//! Test support: the two-way strategic merge patch old → new computed the
//! way kubectl computes it (`edit`, `apply` without a last-applied
//! annotation): changed keys, `null` for removed ones, `$retainKeys` where
//! the field's strategy asks for it, and for merging lists the changed or
//! added elements, `$patch: delete` for removed objects,
//! `$deleteFromPrimitiveList` for removed scalars and `$setElementOrder`
//! for the new order. The property test applies it with the server's
//! code and expects `new` back.

use serde_json::{Map, Value, json};

use super::strategic::Meta;

/// The patch that turns object `old` into object `new`.
pub fn diff<M: Meta>(old: &Value, new: &Value, meta: Option<M>) -> Value {
    let empty = Map::new();
    let o = old.as_object().unwrap_or(&empty);
    let n = new.as_object().unwrap_or(&empty);
    Value::Object(diff_maps(o, n, meta, false))
}

fn diff_maps<M: Meta>(
    o: &Map<String, Value>,
    n: &Map<String, Value>,
    meta: Option<M>,
    retain: bool,
) -> Map<String, Value> {
    let mut p = Map::new();
    for (k, nv) in n {
        let km = meta.and_then(|m| m.child(k));
        let strategy = km.map(|m| m.strategy()).unwrap_or_default();
        match (o.get(k), nv) {
            (Some(ov), _) if ov == nv => {}
            (Some(Value::Object(om)), Value::Object(nm)) if !strategy.replace => {
                let sub = diff_maps(om, nm, km, strategy.retain_keys);
                if !sub.is_empty() {
                    p.insert(k.clone(), Value::Object(sub));
                }
            }
            (Some(Value::Array(ol)), Value::Array(nl)) if strategy.merge => {
                diff_lists(k, ol, nl, km, &mut p);
            }
            _ => {
                p.insert(k.clone(), nv.clone());
            }
        }
    }
    for k in o.keys() {
        if !n.contains_key(k) {
            p.insert(k.clone(), Value::Null);
        }
    }
    if retain && !p.is_empty() {
        let mut keys: Vec<&String> = n
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, _)| k)
            .collect();
        keys.sort();
        p.insert("$retainKeys".into(), json!(keys));
    }
    p
}

fn diff_lists<M: Meta>(
    field: &str,
    o: &[Value],
    n: &[Value],
    meta: Option<M>,
    p: &mut Map<String, Value>,
) {
    let strategy = meta.map(|m| m.strategy()).unwrap_or_default();
    let mut changes = Vec::new();
    let order: Vec<Value>;
    match meta.as_ref().and_then(|m| m.merge_key()) {
        Some(key) if n.iter().chain(o).all(Value::is_object) => {
            let id = |x: &Value| x.get(key).cloned().unwrap_or(Value::Null);
            let item = meta.and_then(|m| m.item());
            for ne in n {
                match o.iter().find(|oe| id(oe) == id(ne)) {
                    None => changes.push(ne.clone()),
                    Some(oe) if oe == ne => {}
                    Some(oe) => {
                        let (om, nm) = (oe.as_object().unwrap(), ne.as_object().unwrap());
                        let mut sub = diff_maps(om, nm, item, strategy.retain_keys);
                        sub.insert(key.to_string(), id(ne));
                        changes.push(Value::Object(sub));
                    }
                }
            }
            for oe in o {
                if !n.iter().any(|ne| id(ne) == id(oe)) {
                    changes.push(json!({key: id(oe), "$patch": "delete"}));
                }
            }
            order = n.iter().map(|ne| json!({key: id(ne)})).collect();
        }
        _ => {
            let gone: Vec<Value> = o.iter().filter(|x| !n.contains(x)).cloned().collect();
            changes = n.iter().filter(|x| !o.contains(x)).cloned().collect();
            if !gone.is_empty() {
                p.insert(
                    format!("$deleteFromPrimitiveList/{field}"),
                    Value::Array(gone),
                );
            }
            order = n.to_vec();
        }
    }
    if !changes.is_empty() {
        p.insert(field.to_string(), Value::Array(changes));
    }
    if !order.is_empty() {
        p.insert(format!("$setElementOrder/{field}"), Value::Array(order));
    }
}
