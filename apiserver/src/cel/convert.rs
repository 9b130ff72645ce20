//! `self` and `oldSelf` as CEL values: a JSON value converted by its schema
//! node as Kubernetes does (integer → int, number → double, `date-time` and
//! `date` strings → timestamp, `duration` → duration, `byte` → bytes,
//! objects → maps, int-or-string and unknown fields → dynamic), and the size
//! figures the cost guard ([`super::cost`]) needs.

use std::collections::HashMap;
use std::sync::Arc;

use cel::Value as Cel;
use cel::objects::{Key, Map};
use serde_json::Value;

/// The biggest collection and string of a value, for the cost guard.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sizes {
    /// Most elements of one list or entries of one map.
    pub items: u64,
    /// Most bytes of one string.
    pub chars: u64,
}

impl Sizes {
    pub fn max(self, other: Sizes) -> Sizes {
        Sizes {
            items: self.items.max(other.items),
            chars: self.chars.max(other.chars),
        }
    }
}

/// The largest list, map and string within `value`.
pub fn sizes(value: &Value) -> Sizes {
    let mut s = Sizes::default();
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        match v {
            Value::Array(a) => {
                s.items = s.items.max(a.len() as u64);
                stack.extend(a.iter());
            }
            Value::Object(o) => {
                s.items = s.items.max(o.len() as u64);
                for (k, v) in o {
                    s.chars = s.chars.max(k.len() as u64);
                    stack.push(v);
                }
            }
            Value::String(t) => s.chars = s.chars.max(t.len() as u64),
            _ => {}
        }
    }
    s
}

/// `value` as CEL sees it under `schema` (a structural schema node; `None`
/// where the schema says nothing, e.g. under
/// `x-kubernetes-preserve-unknown-fields`).
pub fn to_cel(value: &Value, schema: Option<&Value>) -> Cel {
    let schema = schema.filter(|s| s.is_object());
    let flag = |name: &str| {
        schema
            .and_then(|s| s.get(name))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    };
    let ty = schema
        .and_then(|s| s.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("");
    match value {
        Value::Null => Cel::Null,
        Value::Bool(b) => Cel::Bool(*b),
        Value::Number(n) => {
            // `number` is always a double, even when written as `1`.
            if ty == "number" {
                return Cel::Float(n.as_f64().unwrap_or(f64::NAN));
            }
            match n.as_i64() {
                Some(i) => Cel::Int(i),
                None => match n.as_u64() {
                    Some(u) if ty == "integer" => Cel::UInt(u),
                    _ => Cel::Float(n.as_f64().unwrap_or(f64::NAN)),
                },
            }
        }
        Value::String(s) => {
            if ty == "string" && !flag("x-kubernetes-int-or-string") {
                let format = schema
                    .and_then(|s| s.get("format"))
                    .and_then(Value::as_str)
                    .unwrap_or("");
                if let Some(v) = formatted(s, format) {
                    return v;
                }
            }
            Cel::String(Arc::new(s.clone()))
        }
        Value::Array(items) => {
            let item_schema = schema.and_then(|s| s.get("items"));
            Cel::List(Arc::new(
                items.iter().map(|v| to_cel(v, item_schema)).collect(),
            ))
        }
        Value::Object(fields) => {
            let props = schema.and_then(|s| s.get("properties"));
            let additional = schema
                .and_then(|s| s.get("additionalProperties"))
                .filter(|a| a.is_object());
            let embedded = flag("x-kubernetes-embedded-resource");
            let mut map = HashMap::with_capacity(fields.len());
            for (k, v) in fields {
                let field_schema = props.and_then(|p| p.get(k)).or(additional);
                let field_schema = match (field_schema, k.as_str(), embedded) {
                    (None, "metadata", true) => None,
                    (s, _, _) => s,
                };
                map.insert(Key::String(Arc::new(k.clone())), to_cel(v, field_schema));
            }
            Cel::Map(Map { map: Arc::new(map) })
        }
    }
}

/// A string of a known `format` as the CEL type Kubernetes gives it; `None`
/// when the format has no type of its own or the string does not parse (the
/// schema's format check reports that).
fn formatted(s: &str, format: &str) -> Option<Cel> {
    match format {
        "date-time" => chrono::DateTime::parse_from_rfc3339(s)
            .ok()
            .map(Cel::Timestamp),
        "date" => {
            let day = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
            let utc = chrono::FixedOffset::east_opt(0)?;
            let at = day.and_hms_opt(0, 0, 0)?.and_local_timezone(utc).single()?;
            Some(Cel::Timestamp(at))
        }
        "duration" => parse_duration(s).map(Cel::Duration),
        "byte" => {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD
                .decode(s)
                .ok()
                .map(|b| Cel::Bytes(Arc::new(b)))
        }
        _ => None,
    }
}

/// A Go duration (`1h30m`, `-1.5s`, `300ms`, `0`), as Kubernetes' `duration`
/// format writes it.
pub fn parse_duration(s: &str) -> Option<chrono::Duration> {
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Some(chrono::Duration::zero());
    }
    if rest.is_empty() {
        return None;
    }
    let mut nanos: f64 = 0.0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let n: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        nanos += n * scale;
    }
    if !nanos.is_finite() || nanos > i64::MAX as f64 {
        return None;
    }
    let d = chrono::Duration::nanoseconds(nanos as i64);
    Some(if neg { -d } else { d })
}
