//! A JSON object → the protobuf bytes of its message, driven by the
//! [`schema`](super::schema) table: the inverse of [`super::decode`].
//! Fields the table does not know are left out (as Kubernetes' protobuf
//! has no place for them); a value of the wrong JSON type is an error, so
//! the caller can answer JSON instead.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::Value;

use super::decode::{MAX_DEPTH, short};
use super::schema::{Field, Scalar, Schema, Special, Type};
use super::text;
use super::wire::{put_bytes, put_key, put_uint};

type R<T> = Result<T, String>;

pub struct Encoder<'s> {
    pub schema: &'s Schema,
}

impl Encoder<'_> {
    /// `v` as message `msg`.
    pub fn message(&self, msg: usize, v: &Value, depth: usize) -> R<Vec<u8>> {
        if depth > MAX_DEPTH {
            return Err(format!("nested deeper than {MAX_DEPTH} messages"));
        }
        let m = &self.schema.messages[msg];
        let mut out = Vec::new();
        if let Some(s) = m.special {
            self.special(s, msg, v, depth, &mut out)
                .map_err(|e| format!("{}: {e}", short(&m.name)))?;
            return Ok(out);
        }
        let Value::Object(o) = v else {
            return Err(format!("{}: not an object", short(&m.name)));
        };
        for f in &m.fields {
            let at = |e: String| format!("{}.{}: {e}", short(&m.name), f.json);
            if f.inline {
                if let Type::Message(i) = f.ty {
                    let b = self.message(i, v, depth + 1)?;
                    if !b.is_empty() {
                        put_bytes(&mut out, f.number, &b);
                    }
                }
                continue;
            }
            let Some(value) = o.get(&f.json).filter(|v| !v.is_null()) else {
                continue;
            };
            self.field(f, value, depth, &mut out).map_err(at)?;
        }
        Ok(out)
    }

    fn field(&self, f: &Field, v: &Value, depth: usize, out: &mut Vec<u8>) -> R<()> {
        match &f.ty {
            Type::Map(value) => {
                let Value::Object(entries) = v else {
                    return Err("not an object".into());
                };
                let mut keys: Vec<&String> = entries.keys().collect();
                keys.sort();
                for k in keys {
                    let mut entry = Vec::new();
                    put_bytes(&mut entry, 1, k.as_bytes());
                    self.one(value, 2, &entries[k], depth, &mut entry)?;
                    put_bytes(out, f.number, &entry);
                }
                Ok(())
            }
            ty if f.repeated => {
                let Value::Array(items) = v else {
                    return Err("not an array".into());
                };
                for item in items.iter().filter(|i| !i.is_null()) {
                    self.one(ty, f.number, item, depth, out)?;
                }
                Ok(())
            }
            ty => self.one(ty, f.number, v, depth, out),
        }
    }

    /// One value of type `ty` as field `number`.
    fn one(&self, ty: &Type, number: u32, v: &Value, depth: usize, out: &mut Vec<u8>) -> R<()> {
        match ty {
            Type::Scalar(s) => scalar(*s, number, v, out),
            Type::Message(m) => {
                let b = self.message(*m, v, depth + 1)?;
                put_bytes(out, number, &b);
                Ok(())
            }
            Type::Map(_) => Err("a map cannot nest in a map".into()),
        }
    }

    fn special(&self, s: Special, msg: usize, v: &Value, depth: usize, out: &mut Vec<u8>) -> R<()> {
        let schema_msg = || {
            let m = &self.schema.messages[msg];
            [1, 2]
                .into_iter()
                .find_map(|n| match m.field(n)?.1.ty {
                    Type::Message(i) => Some(i),
                    _ => None,
                })
                .ok_or_else(|| "the table lacks a schema message".to_string())
        };
        let json_bytes = |v: &Value| serde_json::to_vec(v).map_err(|e| e.to_string());
        match (s, v) {
            (Special::Time | Special::MicroTime, Value::String(t)) => {
                let (secs, nanos) = text::parse_time(t)?;
                put_uint(out, 1, secs as u64);
                put_uint(out, 2, nanos as i64 as u64);
            }
            (Special::Duration, Value::String(d)) => {
                put_uint(out, 1, text::parse_duration(d)? as u64);
            }
            (Special::Quantity, Value::String(q)) => put_bytes(out, 1, q.as_bytes()),
            (Special::Quantity, Value::Number(n)) => put_bytes(out, 1, n.to_string().as_bytes()),
            (Special::IntOrString, Value::Number(n)) => {
                let i = n.as_i64().ok_or("not an integer")?;
                put_uint(out, 1, 0);
                put_uint(out, 2, i as i32 as i64 as u64);
            }
            (Special::IntOrString, Value::String(t)) => {
                put_uint(out, 1, 1);
                put_bytes(out, 3, t.as_bytes());
            }
            (Special::FieldsV1 | Special::Json | Special::RawExtension, v) => {
                put_bytes(out, 1, &json_bytes(v)?);
            }
            (Special::List, Value::Array(items)) => {
                let f = self.schema.messages[msg]
                    .fields
                    .first()
                    .ok_or("the table lacks the list's items")?;
                for i in items {
                    self.one(&f.ty, 1, i, depth, out)?;
                }
            }
            (Special::OrArray, Value::Array(items)) => {
                let m = schema_msg()?;
                for i in items {
                    put_bytes(out, 2, &self.message(m, i, depth + 1)?);
                }
            }
            (Special::OrArray | Special::OrStringArray, Value::Object(_)) => {
                put_bytes(out, 1, &self.message(schema_msg()?, v, depth + 1)?);
            }
            (Special::OrBool, Value::Bool(b)) => put_uint(out, 1, u64::from(*b)),
            (Special::OrBool, Value::Object(_)) => {
                put_uint(out, 1, 1);
                put_bytes(out, 2, &self.message(schema_msg()?, v, depth + 1)?);
            }
            (Special::OrStringArray, Value::Array(items)) => {
                for i in items {
                    scalar(Scalar::String, 2, i, out)?;
                }
            }
            (s, v) => return Err(format!("{v} does not fit a {s:?}")),
        }
        Ok(())
    }
}

fn scalar(s: Scalar, number: u32, v: &Value, out: &mut Vec<u8>) -> R<()> {
    let bad = || format!("{v} is not a {s:?}");
    match s {
        Scalar::String => put_bytes(out, number, v.as_str().ok_or_else(bad)?.as_bytes()),
        Scalar::Bytes => {
            let b = B64
                .decode(v.as_str().ok_or_else(bad)?)
                .map_err(|e| format!("not base64: {e}"))?;
            put_bytes(out, number, &b);
        }
        Scalar::Bool => put_uint(out, number, u64::from(v.as_bool().ok_or_else(bad)?)),
        Scalar::Int32 | Scalar::Int64 => {
            let i = v.as_i64().ok_or_else(bad)?;
            let i = if s == Scalar::Int32 {
                i32::try_from(i).map_err(|_| bad())? as i64
            } else {
                i
            };
            put_uint(out, number, i as u64);
        }
        Scalar::Uint32 | Scalar::Uint64 => put_uint(out, number, v.as_u64().ok_or_else(bad)?),
        Scalar::Double => {
            put_key(out, number, 1);
            out.extend_from_slice(&v.as_f64().ok_or_else(bad)?.to_le_bytes());
        }
        Scalar::Float => {
            put_key(out, number, 5);
            out.extend_from_slice(&(v.as_f64().ok_or_else(bad)? as f32).to_le_bytes());
        }
    }
    Ok(())
}
