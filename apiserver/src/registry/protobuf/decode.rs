//! Protobuf bytes → the JSON object Kubernetes' JSON encoding gives the
//! same Go value, driven by the [`schema`](super::schema) table: JSON names,
//! `omitempty` zeros left out, pointer zeros kept, inline messages merged,
//! and the special types written as their text. Bounded: nesting depth,
//! a budget of JSON values per body, and every length checked.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Map, Number, Value};

use super::schema::{Field, Scalar, Schema, Special, Type};
use super::text;
use super::wire::{self, Wire};

/// Deepest nesting of messages (and embedded objects) a body may have.
pub const MAX_DEPTH: usize = 100;

pub struct Decoder<'s> {
    pub schema: &'s Schema,
    /// JSON values still allowed: bounds what defaults can add.
    budget: usize,
}

type R<T> = Result<T, String>;

impl<'s> Decoder<'s> {
    pub fn new(schema: &'s Schema, body_len: usize) -> Self {
        Self {
            schema,
            budget: body_len.saturating_mul(2).saturating_add(4096),
        }
    }

    fn spend(&mut self) -> R<()> {
        self.budget = self
            .budget
            .checked_sub(1)
            .ok_or("it expands to too many values")?;
        Ok(())
    }

    /// Message `msg` from `buf`; `Null` for a special message that is
    /// unset (a zero Time).
    pub fn message(&mut self, msg: usize, buf: &[u8], depth: usize) -> R<Value> {
        if depth > MAX_DEPTH {
            return Err(format!("it nests deeper than {MAX_DEPTH} messages"));
        }
        self.spend()?;
        let schema = self.schema;
        let m = &schema.messages[msg];
        let on_wire = wire::fields(buf).map_err(|e| format!("{}: {e}", short(&m.name)))?;
        if let Some(s) = m.special {
            return self.special(s, msg, &on_wire, depth);
        }
        let mut slots: Vec<Option<Value>> = vec![None; m.fields.len()];
        for (number, w) in on_wire {
            let Some((i, f)) = m.field(number) else {
                continue; // unknown fields are skipped, as protobuf allows
            };
            let at = |e: String| format!("{}.{}: {e}", short(&m.name), name(f));
            match &f.ty {
                Type::Map(value) => {
                    let Wire::Bytes(entry) = w else {
                        return Err(at("a map entry must be length-delimited".into()));
                    };
                    let (k, v) = self.map_entry(value, entry, depth).map_err(at)?;
                    let slot = slots[i].get_or_insert_with(|| Value::Object(Map::new()));
                    if let Value::Object(o) = slot {
                        o.insert(k, v);
                    }
                }
                ty if f.repeated => {
                    let slot = slots[i].get_or_insert_with(|| Value::Array(Vec::new()));
                    let mut values = Vec::new();
                    match (ty, w) {
                        // A packed run of numbers.
                        (Type::Scalar(s), Wire::Bytes(b)) if packable(*s) => {
                            let mut b = b;
                            while !b.is_empty() {
                                let v = match s {
                                    Scalar::Double => {
                                        let (h, t) = b.split_at_checked(8).ok_or("truncated")?;
                                        b = t;
                                        Wire::Fixed64(u64::from_le_bytes(
                                            h.try_into().map_err(|_| "truncated")?,
                                        ))
                                    }
                                    Scalar::Float => {
                                        let (h, t) = b.split_at_checked(4).ok_or("truncated")?;
                                        b = t;
                                        Wire::Fixed32(u32::from_le_bytes(
                                            h.try_into().map_err(|_| "truncated")?,
                                        ))
                                    }
                                    _ => Wire::Varint(wire::varint(&mut b).map_err(at)?),
                                };
                                values.push(self.scalar(*s, v).map_err(at)?);
                            }
                        }
                        _ => values.push(self.value(ty, w, depth).map_err(at)?),
                    }
                    if let Value::Array(a) = slot {
                        a.extend(values.into_iter().filter(|v| !v.is_null()));
                    }
                }
                ty => {
                    let v = self.value(ty, w, depth).map_err(at)?;
                    slots[i] = Some(v);
                }
            }
        }
        let mut out = Map::new();
        for (f, slot) in m.fields.iter().zip(slots) {
            if f.inline {
                if let Some(Value::Object(o)) = slot {
                    out.extend(o);
                }
                continue;
            }
            match slot {
                Some(Value::Null) => {}
                Some(v) if f.omitempty && !f.pointer && is_zero(&v) => {}
                Some(v) => {
                    out.insert(f.json.clone(), v);
                }
                None if !f.omitempty && !f.pointer => {
                    if let Some(v) = zero(f) {
                        self.spend()?;
                        out.insert(f.json.clone(), v);
                    }
                }
                None => {}
            }
        }
        Ok(Value::Object(out))
    }

    fn map_entry(&mut self, value: &Type, entry: &[u8], depth: usize) -> R<(String, Value)> {
        let mut key = String::new();
        let mut val = None;
        for (n, w) in wire::fields(entry)? {
            match n {
                1 => match self.scalar(Scalar::String, w)? {
                    Value::String(s) => key = s,
                    _ => return Err("a map key must be a string".into()),
                },
                2 => val = Some(self.value(value, w, depth)?),
                _ => {}
            }
        }
        let val = match val {
            Some(v) => v,
            None => match value {
                Type::Scalar(s) => zero_scalar(*s),
                Type::Message(m) => self.message(*m, &[], depth + 1)?,
                Type::Map(_) => Value::Object(Map::new()),
            },
        };
        Ok((key, val))
    }

    fn value(&mut self, ty: &Type, w: Wire<'_>, depth: usize) -> R<Value> {
        match ty {
            Type::Scalar(s) => self.scalar(*s, w),
            Type::Message(m) => match w {
                Wire::Bytes(b) => self.message(*m, b, depth + 1),
                _ => Err("a message must be length-delimited".into()),
            },
            Type::Map(_) => Err("a map cannot nest in a map".into()),
        }
    }

    fn scalar(&mut self, s: Scalar, w: Wire<'_>) -> R<Value> {
        self.spend()?;
        Ok(match (s, w) {
            (Scalar::Bool, Wire::Varint(v)) => Value::Bool(v != 0),
            (Scalar::Int32, Wire::Varint(v)) => Value::from(v as i64 as i32),
            (Scalar::Int64, Wire::Varint(v)) => Value::from(v as i64),
            (Scalar::Uint32, Wire::Varint(v)) => Value::from(v as u32),
            (Scalar::Uint64, Wire::Varint(v)) => Value::from(v),
            (Scalar::Double, Wire::Fixed64(v)) => number(f64::from_bits(v))?,
            (Scalar::Float, Wire::Fixed32(v)) => number(f64::from(f32::from_bits(v)))?,
            (Scalar::String, Wire::Bytes(b)) => Value::String(
                std::str::from_utf8(b)
                    .map_err(|_| "a string is not UTF-8")?
                    .to_string(),
            ),
            (Scalar::Bytes, Wire::Bytes(b)) => Value::String(B64.encode(b)),
            (s, w) => return Err(format!("wrong wire type for a {s:?}: {}", wire_name(&w))),
        })
    }

    fn special(
        &mut self,
        s: Special,
        msg: usize,
        wire: &[(u32, Wire<'_>)],
        depth: usize,
    ) -> R<Value> {
        let last = |n: u32| wire.iter().rev().find(|(k, _)| *k == n).map(|(_, w)| *w);
        let int = |n: u32| -> R<i64> {
            match last(n) {
                None => Ok(0),
                Some(Wire::Varint(v)) => Ok(v as i64),
                Some(w) => Err(format!("field {n}: wrong wire type {}", wire_name(&w))),
            }
        };
        let bytes = |n: u32| -> R<Option<&[u8]>> {
            match last(n) {
                None => Ok(None),
                Some(Wire::Bytes(b)) => Ok(Some(b)),
                Some(w) => Err(format!("field {n}: wrong wire type {}", wire_name(&w))),
            }
        };
        let string = |n: u32| -> R<String> {
            let b = bytes(n)?.unwrap_or_default();
            std::str::from_utf8(b)
                .map(str::to_string)
                .map_err(|_| format!("field {n}: a string is not UTF-8"))
        };
        let json = |b: Option<&[u8]>| -> R<Value> {
            match b {
                None | Some([]) => Ok(Value::Null),
                Some(b) => serde_json::from_slice(b).map_err(|e| format!("embedded JSON: {e}")),
            }
        };
        // The schema messages these specials hold (JSONSchemaProps).
        let schema = self.schema;
        let schema_msg = || {
            let m = &schema.messages[msg];
            [1, 2]
                .into_iter()
                .find_map(|n| match m.field(n)?.1.ty {
                    Type::Message(i) => Some(i),
                    _ => None,
                })
                .ok_or_else(|| "the table lacks a schema message".to_string())
        };
        match s {
            Special::Time | Special::MicroTime => {
                let (secs, nanos) = (int(1)?, int(2)? as i32);
                if secs == 0 && nanos == 0 {
                    return Ok(Value::Null);
                }
                Ok(Value::String(text::format_time(
                    secs,
                    nanos,
                    s == Special::MicroTime,
                )?))
            }
            Special::Duration => Ok(Value::String(text::format_duration(int(1)?))),
            Special::Quantity => Ok(Value::String(string(1)?)),
            Special::IntOrString => Ok(if int(1)? == 1 {
                Value::String(string(3)?)
            } else {
                Value::from(int(2)? as i32)
            }),
            Special::FieldsV1 | Special::Json => json(bytes(1)?),
            Special::RawExtension => match bytes(1)? {
                Some(b) if b.starts_with(super::MAGIC) => {
                    let (_, _, v) = super::decode_envelope_with(self, b, depth + 1, None)?;
                    Ok(v)
                }
                b => json(b),
            },
            Special::List => {
                let f = self.schema.messages[msg].fields.first().cloned();
                let mut out = Vec::new();
                if let Some(Field {
                    ty: Type::Scalar(sc),
                    ..
                }) = f
                {
                    for (n, w) in wire {
                        if *n == 1 {
                            out.push(self.scalar(sc, *w)?);
                        }
                    }
                }
                Ok(Value::Array(out))
            }
            Special::OrArray => {
                let item = schema_msg()?;
                let many: Vec<&[u8]> = wire
                    .iter()
                    .filter_map(|(n, w)| match (n, w) {
                        (2, Wire::Bytes(b)) => Some(*b),
                        _ => None,
                    })
                    .collect();
                if !many.is_empty() {
                    let mut out = Vec::new();
                    for b in many {
                        out.push(self.message(item, b, depth + 1)?);
                    }
                    return Ok(Value::Array(out));
                }
                match bytes(1)? {
                    Some(b) => self.message(item, b, depth + 1),
                    None => Ok(Value::Null),
                }
            }
            Special::OrBool => match bytes(2)? {
                Some(b) => self.message(schema_msg()?, b, depth + 1),
                None => Ok(Value::Bool(int(1)? != 0)),
            },
            Special::OrStringArray => match bytes(1)? {
                Some(b) => self.message(schema_msg()?, b, depth + 1),
                None => {
                    let mut out = Vec::new();
                    for (n, w) in wire {
                        if *n == 2 {
                            out.push(self.scalar(Scalar::String, *w)?);
                        }
                    }
                    Ok(Value::Array(out))
                }
            },
        }
    }
}

fn packable(s: Scalar) -> bool {
    !matches!(s, Scalar::String | Scalar::Bytes)
}

fn number(f: f64) -> R<Value> {
    // Whole numbers as integers, as a JSON body holding them parses.
    if f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0 {
        return Ok(Value::from(f as i64));
    }
    Number::from_f64(f)
        .map(Value::Number)
        .ok_or_else(|| format!("{f} is not a JSON number"))
}

fn is_zero(v: &Value) -> bool {
    match v {
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(_) => false,
        Value::Null => true,
    }
}

/// What Go's JSON writes for an unset field that is not `omitempty`.
fn zero(f: &Field) -> Option<Value> {
    if f.repeated {
        return Some(Value::Array(Vec::new()));
    }
    match &f.ty {
        Type::Scalar(s) => Some(zero_scalar(*s)),
        Type::Map(_) => Some(Value::Object(Map::new())),
        Type::Message(_) => None,
    }
}

fn zero_scalar(s: Scalar) -> Value {
    match s {
        Scalar::String | Scalar::Bytes => Value::String(String::new()),
        Scalar::Bool => Value::Bool(false),
        _ => Value::from(0),
    }
}

fn wire_name(w: &Wire<'_>) -> &'static str {
    match w {
        Wire::Varint(_) => "varint",
        Wire::Fixed64(_) => "fixed64",
        Wire::Bytes(_) => "length-delimited",
        Wire::Fixed32(_) => "fixed32",
    }
}

fn name(f: &Field) -> &str {
    if f.json.is_empty() {
        "(inline)"
    } else {
        &f.json
    }
}

/// `k8s.io.api.core.v1.Pod` → `v1.Pod`, for messages.
pub fn short(full: &str) -> &str {
    let mut parts = full.rsplitn(3, '.');
    let _ = (parts.next(), parts.next());
    parts.next().map_or(full, |head| &full[head.len() + 1..])
}
