//! OpenAPI v3 value validation of custom resources, as Kubernetes does it
//! with kube-openapi's validator: the checks run in its order (type,
//! `allOf`/`anyOf`/`oneOf`/`not`, string, format, number, list, enum,
//! object), each failure worded as it words it (`spec.replicas in body
//! should be less than or equal to 10`) and turned into a field error as
//! Kubernetes turns it (`Invalid value: 20: …`, `Required value`,
//! `Unsupported value`, `Too many`, …). Failures the validator does not tie
//! to a field (`"spec.x" must validate one and only one schema (oneOf)`)
//! are reported on the path given, `<nil>` for an object, as there.

use serde_json::{Map, Value, json};

use super::numbers::{Num, is_integer, number};
use super::wording::{
    go_quote, invalid, not_supported, required, too_long, too_many, type_invalid,
};
use super::{Additional, Node, formats};
use crate::error::Cause;

/// Field errors of `v` against `n`; `base` is the field path the errors
/// are under (`None`: an object, whose own errors name `<nil>`).
pub(super) fn value(n: &Node, v: &Value, base: Option<&str>) -> Vec<Cause> {
    let mut failures = Vec::new();
    node(n, v, "", &mut failures);
    let mut seen = std::collections::HashSet::new();
    failures
        .into_iter()
        .filter(|f| seen.insert(f.message.clone()))
        .map(|f| f.cause(base))
        .collect()
}

/// One failure as the validator reports it.
pub(super) struct Failure {
    kind: Kind,
    /// The validator's name of the value: `spec.replicas`, `""` for the
    /// root, `.key` for a map entry at the root.
    name: String,
    /// The value the field error prints.
    value: Value,
    message: String,
}

pub(super) enum Kind {
    Type,
    Required,
    Enum(Vec<Value>),
    TooLong(i64),
    TooMany {
        actual: i64,
        max: i64,
    },
    /// Any other failure of a field.
    Other,
    /// A failure not tied to a field.
    Unnamed,
}

impl Failure {
    pub(super) fn new(kind: Kind, name: &str, value: Value, message: String) -> Failure {
        Failure {
            kind,
            name: name.to_string(),
            value,
            message,
        }
    }

    pub(super) fn unnamed(name: &str, message: String) -> Failure {
        Failure::new(Kind::Unnamed, name, json!(""), message)
    }

    fn cause(self, base: Option<&str>) -> Cause {
        let trimmed = self.name.strip_prefix('.').unwrap_or(&self.name);
        let field = match (&self.kind, base) {
            (Kind::Unnamed, b) => b.unwrap_or("").to_string(),
            (_, b) if trimmed.is_empty() => b.unwrap_or("").to_string(),
            (_, Some(b)) => format!("{b}.{trimmed}"),
            (_, None) => trimmed.to_string(),
        };
        match self.kind {
            Kind::Required => required(&field, ""),
            Kind::Enum(values) => {
                let values: Vec<String> = values
                    .iter()
                    .map(|v| match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect();
                not_supported(&field, &self.value, &values)
            }
            Kind::TooLong(max) => too_long(&field, max),
            Kind::TooMany { actual, max } => too_many(&field, actual, max),
            Kind::Type => type_invalid(&field, &self.value, &self.message),
            Kind::Other | Kind::Unnamed => invalid(&field, &self.value, &self.message),
        }
    }
}

/// The name of field `key` of the object named `name`.
fn field_name(name: &str, key: &str) -> String {
    if name.is_empty() {
        key.to_string()
    } else {
        format!("{name}.{key}")
    }
}

/// The types a node accepts.
pub(super) fn types(n: &Node) -> Vec<&str> {
    if n.int_or_string {
        vec!["integer", "string"]
    } else if n.ty.is_empty() {
        vec![]
    } else {
        vec![n.ty.as_str()]
    }
}

fn type_failure(name: &str, type_name: &str, got: &str) -> Failure {
    Failure::new(
        Kind::Type,
        name,
        json!(got),
        format!(
            "{name} in body must be of type {type_name}: {}",
            go_quote(got)
        ),
    )
}

fn node(n: &Node, v: &Value, name: &str, out: &mut Vec<Failure>) {
    if v.is_null() {
        let t = types(n);
        if !t.is_empty() && !n.nullable {
            out.push(type_failure(name, &t.join(","), "null"));
        }
        enumeration(n, v, name, out);
        return;
    }
    type_check(n, v, name, out);
    composition(n, v, name, out);
    if let Value::String(s) = v {
        string(n, s, name, out);
        let f = &n.effective_format;
        if !f.is_empty() && formats::known(f) && !formats::valid(f, s) {
            out.push(Failure::new(
                Kind::Type,
                name,
                v.clone(),
                format!("{name} in body must be of type {f}: {}", go_quote(s)),
            ));
        }
    }
    if let Some(num) = Num::of(v) {
        number(n, num, v, name, out);
    }
    if let Value::Array(items) = v {
        list(n, items, name, out);
    }
    enumeration(n, v, name, out);
    if let Value::Object(m) = v {
        object(n, m, name, out);
    }
}

/// The value's JSON type (and the format of numbers) as the validator
/// infers it.
fn info(v: &Value) -> (&'static str, &'static str) {
    match v {
        Value::Bool(_) => ("boolean", ""),
        Value::String(_) => ("string", ""),
        Value::Number(n) if n.as_i64().is_some() => ("integer", "int64"),
        Value::Number(_) => ("number", "float64"),
        Value::Array(_) => ("array", ""),
        Value::Object(_) => ("object", ""),
        Value::Null => ("", ""),
    }
}

fn type_check(n: &Node, v: &Value, name: &str, out: &mut Vec<Failure>) {
    let t = types(n);
    let format = n.effective_format.as_str();
    if t.is_empty() && format.is_empty() {
        return;
    }
    let (sch, fmt) = info(v);
    let float_int = sch == "number"
        && Num::of(v).is_some_and(|x| is_integer(x.f64()))
        && t.contains(&"integer");
    let int_float = sch == "integer" && t.contains(&"number");
    let text_or_list = v.is_string() || v.is_array();
    if !(text_or_list
        || format.is_empty()
        || t.contains(&sch)
        || fmt == format
        || float_int
        || int_float)
    {
        out.push(type_failure(name, format, fmt));
        return;
    }
    if !(t.contains(&"number") || t.contains(&"integer") || format.is_empty()) && text_or_list {
        return;
    }
    if !(t.contains(&sch) || float_int || int_float) {
        out.push(type_failure(name, &t.join(","), sch));
    }
}

/// `allOf`, `anyOf`, `oneOf` and `not`.
fn composition(n: &Node, v: &Value, name: &str, out: &mut Vec<Failure>) {
    let run = |s: &Node| {
        let mut r = Vec::new();
        node(s, v, name, &mut r);
        r
    };
    let quoted = go_quote(name);
    if !n.any_of.is_empty() {
        let mut best: Option<Vec<Failure>> = None;
        let mut ok = false;
        for s in &n.any_of {
            let r = run(s);
            if r.is_empty() {
                ok = true;
                break;
            }
            if best.as_ref().is_none_or(|b| r.len() < b.len()) {
                best = Some(r);
            }
        }
        if !ok {
            out.push(Failure::unnamed(
                name,
                format!("{quoted} must validate at least one schema (anyOf)"),
            ));
            out.extend(best.unwrap_or_default());
        }
    }
    if !n.one_of.is_empty() {
        let mut best: Option<Vec<Failure>> = None;
        let mut valid = 0;
        for s in &n.one_of {
            let r = run(s);
            if r.is_empty() {
                valid += 1;
            } else if valid == 0 && best.as_ref().is_none_or(|b| r.len() < b.len()) {
                best = Some(r);
            }
        }
        if valid != 1 {
            let more = if valid == 0 {
                "Found none valid".to_string()
            } else {
                format!("Found {valid} valid alternatives")
            };
            out.push(Failure::unnamed(
                name,
                format!("{quoted} must validate one and only one schema (oneOf). {more}"),
            ));
            if valid == 0 {
                out.extend(best.unwrap_or_default());
            }
        }
    }
    if !n.all_of.is_empty() {
        let mut valid = 0;
        for s in &n.all_of {
            let r = run(s);
            if r.is_empty() {
                valid += 1;
            }
            out.extend(r);
        }
        if valid != n.all_of.len() {
            let more = if valid == 0 { ". None validated" } else { "" };
            out.push(Failure::unnamed(
                name,
                format!("{quoted} must validate all the schemas (allOf){more}"),
            ));
        }
    }
    if let Some(not) = &n.not
        && run(not).is_empty()
    {
        out.push(Failure::unnamed(
            name,
            format!("{quoted} must not validate the schema (not)"),
        ));
    }
}

/// Length and pattern; the validator stops at the first failure.
fn string(n: &Node, s: &str, name: &str, out: &mut Vec<Failure>) {
    let len = s.chars().count() as i64;
    let value = || json!(s);
    if let Some(max) = n.max_length
        && len > max
    {
        out.push(Failure::new(
            Kind::TooLong(max),
            name,
            value(),
            format!("{name} in body should be at most {max} chars long"),
        ));
        return;
    }
    if let Some(min) = n.min_length
        && len < min
    {
        out.push(Failure::new(
            Kind::Other,
            name,
            value(),
            format!("{name} in body should be at least {min} chars long"),
        ));
        return;
    }
    if let Some(p) = &n.pattern
        && let Some(re) = &p.re
        && !re.is_match(s)
    {
        out.push(Failure::new(
            Kind::Other,
            name,
            value(),
            format!("{name} in body should match '{}'", p.source),
        ));
    }
}

fn list(n: &Node, items: &[Value], name: &str, out: &mut Vec<Failure>) {
    if let Some(s) = &n.items {
        for (i, item) in items.iter().enumerate() {
            node(s, item, &format!("{name}[{i}]"), out);
        }
    }
    let size = items.len() as i64;
    if let Some(min) = n.min_items
        && size < min
    {
        out.push(Failure::new(
            Kind::Other,
            name,
            json!(size),
            format!("{name} in body should have at least {min} items"),
        ));
    }
    if let Some(max) = n.max_items
        && size > max
    {
        out.push(Failure::new(
            Kind::TooMany { actual: size, max },
            name,
            json!(size),
            format!("{name} in body should have at most {max} items"),
        ));
    }
    if n.unique_items {
        let dup = items
            .iter()
            .enumerate()
            .any(|(i, a)| items[..i].iter().any(|b| same(a, b)));
        if dup {
            out.push(Failure::new(
                Kind::Other,
                name,
                json!(""),
                format!("{name} in body shouldn't contain duplicates"),
            ));
        }
    }
}

/// Equality as the validator compares values: numbers by value.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x == y,
            _ => x.as_f64() == y.as_f64(),
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, a)| y.get(k).is_some_and(|b| same(a, b)))
        }
        _ => a == b,
    }
}

fn enumeration(n: &Node, v: &Value, name: &str, out: &mut Vec<Failure>) {
    let Some(values) = n.enumeration.as_ref().filter(|e| !e.is_empty()) else {
        return;
    };
    // A null is never one of the values, as in Kubernetes.
    if !v.is_null() && values.iter().any(|e| same(v, e)) {
        return;
    }
    out.push(Failure::new(
        Kind::Enum(values.clone()),
        name,
        v.clone(),
        format!(
            "{name} in body should be one of {}",
            Value::Array(values.clone())
        ),
    ));
}

fn object(n: &Node, m: &Map<String, Value>, name: &str, out: &mut Vec<Failure>) {
    let size = m.len() as i64;
    if let Some(min) = n.min_properties
        && size < min
    {
        out.push(Failure::new(
            Kind::Other,
            name,
            json!(size),
            format!("{name} in body should have at least {min} properties"),
        ));
    }
    if let Some(max) = n.max_properties
        && size > max
    {
        out.push(Failure::new(
            Kind::TooMany { actual: size, max },
            name,
            json!(size),
            format!("{name} in body should have at most {max} properties"),
        ));
    }
    match &n.additional {
        Some(Additional::Bool(false)) => {
            for k in m.keys().filter(|k| !n.properties.contains_key(*k)) {
                out.push(Failure::new(
                    Kind::Other,
                    name,
                    json!(k),
                    format!("{name}.{k} in body is a forbidden property"),
                ));
            }
        }
        Some(Additional::Schema(s)) => {
            for (k, c) in m.iter().filter(|(k, _)| !n.properties.contains_key(*k)) {
                node(s, c, &format!("{name}.{k}"), out);
            }
        }
        _ => {}
    }
    for (k, p) in &n.properties {
        if let Some(c) = m.get(k) {
            node(p, c, &field_name(name, k), out);
        }
    }
    for k in &n.required {
        if !m.contains_key(k) {
            out.push(Failure::new(
                Kind::Required,
                &format!("{name}.{k}"),
                Value::Null,
                format!("{name}.{k} in body is required"),
            ));
        }
    }
}
