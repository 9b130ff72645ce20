//! A schema's JSON read into [`Node`]s. Keywords of the wrong JSON type are
//! refused here (Kubernetes refuses them when it decodes the CRD); keywords
//! Kubernetes reads but refuses in CRD schemas (`$ref`, `id`, …) are noted
//! for the schema check to word.

use serde_json::{Map, Value};

use super::wording::invalid;
use super::{Additional, Node, Pattern, formats};
use crate::error::Cause;

/// Schemas nested deeper than this are refused rather than walked.
pub(super) const MAX_DEPTH: usize = 100;

/// The node of `raw`, found at `path` in the CRD; problems go to `causes`.
pub(super) fn parse(raw: &Value, path: &str, depth: usize, causes: &mut Vec<Cause>) -> Node {
    let mut n = Node::default();
    let Some(m) = raw.as_object() else {
        causes.push(invalid(path, raw, "must be a schema object"));
        return n;
    };
    if depth >= MAX_DEPTH {
        causes.push(invalid(
            path,
            &Value::String(String::new()),
            &format!("must not be nested more than {MAX_DEPTH} levels deep"),
        ));
        return n;
    }
    let mut r = Reader { m, path, causes };
    n.ty = r.string("type").unwrap_or_default();
    n.format = r.string("format").unwrap_or_default();
    n.nullable = r.boolean("nullable").unwrap_or(false);
    n.default = m.get("default").cloned();
    n.has_description = r.string("description").is_some_and(|s| !s.is_empty());
    n.has_title = r.string("title").is_some_and(|s| !s.is_empty());
    n.maximum = r.number("maximum");
    n.exclusive_maximum = r.boolean("exclusiveMaximum").unwrap_or(false);
    n.minimum = r.number("minimum");
    n.exclusive_minimum = r.boolean("exclusiveMinimum").unwrap_or(false);
    n.multiple_of = r.number("multipleOf");
    n.max_length = r.integer("maxLength");
    n.min_length = r.integer("minLength");
    n.max_items = r.integer("maxItems");
    n.min_items = r.integer("minItems");
    n.unique_items = r.boolean("uniqueItems").unwrap_or(false);
    n.max_properties = r.integer("maxProperties");
    n.min_properties = r.integer("minProperties");
    n.required = r.strings("required");
    n.enumeration = r.array("enum").map(<[Value]>::to_vec);
    n.pattern = r
        .string("pattern")
        .filter(|p| !p.is_empty())
        .map(|p| Pattern {
            re: regex::Regex::new(&p).ok(),
            source: p,
        });
    n.embedded = r.boolean("x-kubernetes-embedded-resource").unwrap_or(false);
    n.int_or_string = r.boolean("x-kubernetes-int-or-string").unwrap_or(false);
    match r.boolean("x-kubernetes-preserve-unknown-fields") {
        Some(true) => n.preserve_unknown = true,
        Some(false) => n.unsupported.preserve_false = true,
        None => {}
    }
    n.list_type = r.string("x-kubernetes-list-type");
    n.list_map_keys = r.strings("x-kubernetes-list-map-keys");
    n.map_type = r.string("x-kubernetes-map-type");
    if let Some(rules) = r.array("x-kubernetes-validations")
        && !rules.is_empty()
    {
        n.rule_texts = rules
            .iter()
            .map(|r| {
                r.get("rule")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            })
            .collect();
        n.raw = Some(raw.clone());
    }

    n.unsupported.id = r.string("id").is_some_and(|s| !s.is_empty());
    n.unsupported.schema = r.string("$schema").is_some_and(|s| !s.is_empty());
    n.unsupported.reference = m.get("$ref").is_some_and(|v| !v.is_null());
    n.unsupported.pattern_properties = non_empty(m.get("patternProperties"));
    n.unsupported.dependencies = non_empty(m.get("dependencies"));
    n.unsupported.additional_items = m.get("additionalItems").is_some_and(|v| !v.is_null());
    n.unsupported.definitions = non_empty(m.get("definitions"));

    let (props, causes) = (m.get("properties"), r.causes);
    if let Some(p) = props.filter(|p| !p.is_null()) {
        match p.as_object() {
            Some(p) => {
                for (k, v) in p {
                    let at = format!("{path}.properties[{k}]");
                    n.properties
                        .insert(k.clone(), parse(v, &at, depth + 1, causes));
                }
            }
            None => causes.push(invalid(
                &format!("{path}.properties"),
                p,
                "must be an object",
            )),
        }
    }
    match m.get("additionalProperties") {
        None | Some(Value::Null) => {}
        Some(Value::Bool(b)) => n.additional = Some(Additional::Bool(*b)),
        Some(v) => {
            let at = format!("{path}.additionalProperties");
            n.additional = Some(Additional::Schema(Box::new(parse(
                v,
                &at,
                depth + 1,
                causes,
            ))));
        }
    }
    match m.get("items") {
        None | Some(Value::Null) => {}
        Some(Value::Array(_)) => n.unsupported.items_array = true,
        Some(v) => {
            let at = format!("{path}.items");
            n.items = Some(Box::new(parse(v, &at, depth + 1, causes)));
        }
    }
    for (key, list) in [
        ("allOf", &mut n.all_of),
        ("anyOf", &mut n.any_of),
        ("oneOf", &mut n.one_of),
    ] {
        match m.get(key) {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) => {
                for (i, v) in items.iter().enumerate() {
                    list.push(parse(v, &format!("{path}.{key}[{i}]"), depth + 1, causes));
                }
            }
            Some(v) => causes.push(invalid(&format!("{path}.{key}"), v, "must be an array")),
        }
    }
    if let Some(v) = m.get("not").filter(|v| !v.is_null()) {
        n.not = Some(Box::new(parse(
            v,
            &format!("{path}.not"),
            depth + 1,
            causes,
        )));
    }
    n.effective_format = effective_format(&n);
    n
}

/// The format the validator checks: Kubernetes drops formats it does not
/// know for the node's type before validating.
fn effective_format(n: &Node) -> String {
    if n.format.is_empty() {
        return String::new();
    }
    let ty = if n.int_or_string { "" } else { n.ty.as_str() };
    let keep = match ty {
        "" | "string" => formats::known(&n.format),
        "integer" => matches!(n.format.as_str(), "int32" | "int64"),
        "number" => matches!(n.format.as_str(), "float" | "double"),
        _ => false,
    };
    if keep {
        n.format.clone()
    } else {
        String::new()
    }
}

fn non_empty(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => false,
        Some(Value::Object(m)) => !m.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(_) => true,
    }
}

/// Typed reads of one schema object's keywords.
struct Reader<'a> {
    m: &'a Map<String, Value>,
    path: &'a str,
    causes: &'a mut Vec<Cause>,
}

impl<'a> Reader<'a> {
    fn get(&mut self, key: &str) -> Option<&'a Value> {
        self.m.get(key).filter(|v| !v.is_null())
    }

    fn wrong(&mut self, key: &str, v: &Value, what: &str) {
        self.causes.push(invalid(
            &format!("{}.{key}", self.path),
            v,
            &format!("must be {what}"),
        ));
    }

    fn string(&mut self, key: &str) -> Option<String> {
        let v = self.get(key)?;
        match v.as_str() {
            Some(s) => Some(s.to_string()),
            None => {
                self.wrong(key, v, "a string");
                None
            }
        }
    }

    fn boolean(&mut self, key: &str) -> Option<bool> {
        let v = self.get(key)?;
        match v.as_bool() {
            Some(b) => Some(b),
            None => {
                self.wrong(key, v, "a boolean");
                None
            }
        }
    }

    fn number(&mut self, key: &str) -> Option<f64> {
        let v = self.get(key)?;
        match v.as_f64() {
            Some(f) => Some(f),
            None => {
                self.wrong(key, v, "a number");
                None
            }
        }
    }

    fn integer(&mut self, key: &str) -> Option<i64> {
        let v = self.get(key)?;
        let i = v
            .as_i64()
            .or_else(|| v.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64));
        if i.is_none() {
            self.wrong(key, v, "an integer");
        }
        i
    }

    fn array(&mut self, key: &str) -> Option<&'a [Value]> {
        let v = self.get(key)?;
        match v.as_array() {
            Some(a) => Some(a.as_slice()),
            None => {
                self.wrong(key, v, "an array");
                None
            }
        }
    }

    fn strings(&mut self, key: &str) -> Vec<String> {
        let Some(items) = self.array(key) else {
            return vec![];
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, v) in items.iter().enumerate() {
            match v.as_str() {
                Some(s) => out.push(s.to_string()),
                None => self.causes.push(invalid(
                    &format!("{}.{key}[{i}]", self.path),
                    v,
                    "must be a string",
                )),
            }
        }
        out
    }
}
