//! Table cells of `kubectl get`: a column read from the object by JSON
//! pointer, as most kinds print them, declared once per kind as data.

use serde_json::{Value, json};

use super::Column;

/// How a table cell is computed from an object.
#[derive(Clone, Copy)]
pub enum Cell {
    /// The value at a JSON pointer (`<none>` when absent).
    At(&'static str),
    /// `a/b` from two JSON pointers (missing numbers count as 0).
    Ratio(&'static str, &'static str),
    /// The length of the array or map at a pointer.
    Count(&'static str),
}

/// A column and the cell it shows.
pub struct Printed {
    pub name: &'static str,
    pub description: &'static str,
    /// 0: always shown; 1: only with `-o wide`.
    pub priority: u8,
    pub cell: Cell,
}

/// A column showing the value at `pointer`.
pub const fn at(name: &'static str, description: &'static str, pointer: &'static str) -> Printed {
    Printed {
        name,
        description,
        priority: 0,
        cell: Cell::At(pointer),
    }
}

/// A column showing `a/b`.
pub const fn ratio(
    name: &'static str,
    description: &'static str,
    a: &'static str,
    b: &'static str,
) -> Printed {
    Printed {
        name,
        description,
        priority: 0,
        cell: Cell::Ratio(a, b),
    }
}

/// A column showing the length of the array or map at `pointer`.
pub const fn count(
    name: &'static str,
    description: &'static str,
    pointer: &'static str,
) -> Printed {
    Printed {
        name,
        description,
        priority: 0,
        cell: Cell::Count(pointer),
    }
}

impl Printed {
    /// Shown only with `-o wide`.
    pub const fn wide(mut self) -> Printed {
        self.priority = 1;
        self
    }
}

/// The column definitions of `printed`.
pub fn columns(printed: &[Printed]) -> Vec<Column> {
    printed
        .iter()
        .map(|p| Column {
            priority: p.priority,
            ..Column::new(p.name, p.description)
        })
        .collect()
}

/// The cells of `printed` for `obj`.
pub fn cells(printed: &[Printed], obj: &Value) -> Vec<Value> {
    printed.iter().map(|p| cell(obj, p.cell)).collect()
}

/// One cell of `obj`.
pub fn cell(obj: &Value, c: Cell) -> Value {
    let num = |p: &str| obj.pointer(p).and_then(Value::as_i64).unwrap_or(0);
    match c {
        Cell::At(p) => match obj.pointer(p) {
            Some(Value::String(s)) if !s.is_empty() => json!(s),
            Some(Value::Number(n)) => json!(n),
            Some(Value::Bool(b)) => json!(b.to_string()),
            Some(v @ Value::Object(_)) => json!(v.to_string()),
            _ => json!("<none>"),
        },
        Cell::Ratio(a, b) => json!(format!("{}/{}", num(a), num(b))),
        Cell::Count(p) => json!(match obj.pointer(p) {
            Some(Value::Array(a)) => a.len(),
            Some(Value::Object(m)) => m.len(),
            _ => 0,
        }),
    }
}

/// A label selector as kubectl prints it (`metav1.FormatLabelSelector`):
/// requirements sorted by key, `k=v`, `k in (a,b)`, `k notin (a,b)`, `k`,
/// `!k`; `<none>` when it selects nothing or everything.
pub fn label_selector(selector: Option<&Value>) -> String {
    let mut requirements: Vec<(String, String)> = Vec::new();
    let labels = selector
        .and_then(|s| s.get("matchLabels"))
        .and_then(Value::as_object);
    for (k, v) in labels.into_iter().flatten() {
        requirements.push((k.clone(), format!("{k}={}", v.as_str().unwrap_or_default())));
    }
    let expressions = selector
        .and_then(|s| s.get("matchExpressions"))
        .and_then(Value::as_array);
    for e in expressions.into_iter().flatten() {
        let key = e.get("key").and_then(Value::as_str).unwrap_or_default();
        let mut values: Vec<&str> = e
            .get("values")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        values.sort_unstable();
        let text = match e.get("operator").and_then(Value::as_str) {
            Some("In") => format!("{key} in ({})", values.join(",")),
            Some("NotIn") => format!("{key} notin ({})", values.join(",")),
            Some("Exists") => key.to_string(),
            Some("DoesNotExist") => format!("!{key}"),
            _ => return "<error>".into(),
        };
        requirements.push((key.to_string(), text));
    }
    if requirements.is_empty() {
        return "<none>".into();
    }
    requirements.sort();
    let texts: Vec<String> = requirements.into_iter().map(|(_, t)| t).collect();
    texts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_render_as_kubectl_prints_them() {
        let obj = json!({"spec": {"replicas": 3, "paused": true, "selector": {"a": "b"}, "ports": [1, 2]},
            "status": {"readyReplicas": 2}, "type": ""});
        let printed = [
            at("Replicas", "", "/spec/replicas"),
            at("Paused", "", "/spec/paused"),
            at("Selector", "", "/spec/selector").wide(),
            at("Type", "", "/type"),
            ratio("Ready", "", "/status/readyReplicas", "/spec/replicas"),
            count("Ports", "", "/spec/ports"),
            count("None", "", "/spec/none"),
        ];
        assert_eq!(
            cells(&printed, &obj),
            [
                json!(3),
                json!("true"),
                json!("{\"a\":\"b\"}"),
                json!("<none>"),
                json!("2/3"),
                json!(2),
                json!(0)
            ]
        );
        assert_eq!(columns(&printed)[2].priority, 1);
    }

    #[test]
    fn selectors_print_as_kubectl_prints_them() {
        assert_eq!(label_selector(None), "<none>");
        assert_eq!(label_selector(Some(&json!({}))), "<none>");
        let sel = json!({"matchLabels": {"tier": "web", "app": "x"}, "matchExpressions": [
            {"key": "env", "operator": "In", "values": ["prod", "dev"]},
            {"key": "zone", "operator": "DoesNotExist"},
            {"key": "gpu", "operator": "Exists"},
            {"key": "os", "operator": "NotIn", "values": ["windows"]}]});
        assert_eq!(
            label_selector(Some(&sel)),
            "app=x,env in (dev,prod),gpu,os notin (windows),tier=web,!zone"
        );
    }
}
