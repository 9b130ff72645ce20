//! The Table columns of a custom resource version: its
//! `additionalPrinterColumns`, or Age alone when it declares none, as
//! kube-apiserver prints custom resources. Cells are typed as the column
//! says (`integer`, `number`, `boolean`, `string`, `date` shown as an age);
//! a path that selects nothing is a `null` cell, which kubectl prints
//! blank.

use serde_json::{Value, json};

use super::jsonpath::JsonPath;
use crate::error::Cause;
use crate::kinds::Column;
use crate::meta;

/// The column types a CRD may declare.
pub const TYPES: &[&str] = &["integer", "number", "string", "boolean", "date"];

/// One printer column, its path parsed.
#[derive(Clone, Debug)]
pub struct PrinterColumn {
    pub column: Column,
    path: JsonPath,
}

/// The columns of one CRD version (`spec.versions[i]`): declared ones with
/// a path that parses, or the default Age column.
pub fn columns_of(version: &Value) -> Vec<PrinterColumn> {
    let declared = version
        .get("additionalPrinterColumns")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty());
    let Some(declared) = declared else {
        return vec![PrinterColumn {
            column: Column {
                name: "Age".into(),
                kind: "date".into(),
                format: String::new(),
                description: "Time since creation.".into(),
                priority: 0,
            },
            path: JsonPath::parse(".metadata.creationTimestamp").expect("a valid path"),
        }];
    };
    declared
        .iter()
        .filter_map(|c| {
            let s = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            let path = JsonPath::parse(&s("jsonPath")).ok()?;
            Some(PrinterColumn {
                column: Column {
                    name: s("name"),
                    kind: s("type"),
                    format: s("format"),
                    description: s("description"),
                    priority: c
                        .get("priority")
                        .and_then(Value::as_i64)
                        .map_or(0, |p| p.clamp(0, 255) as u8),
                },
                path,
            })
        })
        .collect()
}

/// The cell of `col` for `obj`.
pub fn cell(col: &PrinterColumn, obj: &Value) -> Value {
    let Some(v) = col.path.first(obj) else {
        return Value::Null;
    };
    match col.column.kind.as_str() {
        "integer" => match v {
            Value::Number(n) => n
                .as_i64()
                .or_else(|| n.as_f64().map(|f| f as i64))
                .map_or(Value::Null, |i| json!(i)),
            _ => Value::Null,
        },
        "number" => v.as_f64().map_or(Value::Null, |f| json!(f)),
        "boolean" => v.as_bool().map_or(Value::Null, |b| json!(b)),
        "date" => match v.as_str() {
            Some(s) if meta::parse_rfc3339(s).is_some() => json!(meta::age(Some(s))),
            Some(_) => json!("<invalid>"),
            None => Value::Null,
        },
        // `string`: the value as kubectl's JSONPath printer shows it.
        _ => match v {
            Value::String(s) => json!(s),
            Value::Null => Value::Null,
            other => json!(other.to_string()),
        },
    }
}

/// Field errors of one version's `additionalPrinterColumns` (`at` is the
/// version's field path).
pub fn validate(version: &Value, at: &str) -> Vec<Cause> {
    let mut causes = Vec::new();
    let cols = version
        .get("additionalPrinterColumns")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut names = std::collections::BTreeSet::new();
    for (i, c) in cols.iter().enumerate() {
        let f = format!("{at}.additionalPrinterColumns[{i}]");
        match c.get("name").and_then(Value::as_str) {
            None | Some("") => causes.push(Cause::required(format!("{f}.name"))),
            Some(n) if !names.insert(n) => causes.push(Cause::duplicate(format!("{f}.name"), n)),
            Some(_) => {}
        }
        match c.get("type").and_then(Value::as_str) {
            None | Some("") => causes.push(Cause::required(format!("{f}.type"))),
            Some(t) if !TYPES.contains(&t) => {
                causes.push(Cause::not_supported(format!("{f}.type"), t, TYPES))
            }
            Some(_) => {}
        }
        match c.get("jsonPath").and_then(Value::as_str) {
            None | Some("") => causes.push(Cause::required(format!("{f}.jsonPath"))),
            Some(p) => {
                if let Err(e) = JsonPath::parse(p) {
                    causes.push(Cause::invalid(
                        format!("{f}.jsonPath"),
                        format!("Invalid value: {p:?}: {e}"),
                    ));
                }
            }
        }
    }
    causes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_columns_are_typed_and_missing_values_are_null() {
        let version = json!({"additionalPrinterColumns": [
            {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
            {"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"},
            {"name": "Ratio", "type": "number", "format": "float", "jsonPath": ".spec.ratio", "priority": 1},
            {"name": "On", "type": "boolean", "jsonPath": ".spec.on"},
            {"name": "Size", "type": "string", "jsonPath": ".spec.size"},
            {"name": "Started", "type": "date", "jsonPath": ".status.started"},
            {"name": "Missing", "type": "string", "jsonPath": ".status.nothing"}]});
        let cols = columns_of(&version);
        let names: Vec<&str> = cols.iter().map(|c| c.column.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "Replicas", "Ready", "Ratio", "On", "Size", "Started", "Missing"
            ]
        );
        assert_eq!(cols[2].column.priority, 1);
        assert_eq!(cols[2].column.format, "float");
        let started = meta::rfc3339(meta::now_secs() - 300);
        let obj = json!({"spec": {"replicas": 3.0, "ratio": 2, "on": true, "size": {"a": 1}},
            "status": {"started": started, "conditions": [{"type": "Ready", "status": "True"}]}});
        let cells: Vec<Value> = cols.iter().map(|c| cell(c, &obj)).collect();
        assert_eq!(
            cells,
            [
                json!(3),
                json!("True"),
                json!(2.0),
                json!(true),
                json!("{\"a\":1}"),
                json!("5m"),
                Value::Null
            ]
        );
        // The wrong type is an empty cell, not an error.
        let odd = json!({"spec": {"replicas": "three"}, "status": {"started": "yesterday"}});
        assert_eq!(cell(&cols[0], &odd), Value::Null);
        assert_eq!(cell(&cols[5], &odd), json!("<invalid>"));
    }

    #[test]
    fn without_declared_columns_age_is_shown() {
        let cols = columns_of(&json!({"name": "v1"}));
        assert_eq!(cols.len(), 1);
        assert_eq!(
            (cols[0].column.name.as_str(), cols[0].column.kind.as_str()),
            ("Age", "date")
        );
        let obj =
            json!({"metadata": {"creationTimestamp": meta::rfc3339(meta::now_secs() - 7200)}});
        assert_eq!(cell(&cols[0], &obj), json!("2h"));
    }

    #[test]
    fn bad_columns_are_named() {
        let version = json!({"additionalPrinterColumns": [
            {"name": "A", "type": "text", "jsonPath": ".spec.a"},
            {"name": "A", "type": "string", "jsonPath": "spec.a"},
            {"type": "string"}]});
        let causes = validate(&version, "spec.versions[0]");
        let fields: Vec<&str> = causes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "spec.versions[0].additionalPrinterColumns[0].type",
                "spec.versions[0].additionalPrinterColumns[1].name",
                "spec.versions[0].additionalPrinterColumns[1].jsonPath",
                "spec.versions[0].additionalPrinterColumns[2].name",
                "spec.versions[0].additionalPrinterColumns[2].jsonPath",
            ]
        );
    }
}
