//! `meta.k8s.io/v1` Tables, what `kubectl get` asks for: NAME, the kind's
//! columns with AGE before the `-o wide` ones, and each row's object as asked by `includeObject`.

use axum::http::{HeaderMap, header};
use serde_json::{Value, json};

use crate::kinds::ResourceType;
use crate::meta;
use crate::request::Query;

/// How the client wants Table rows.
#[derive(Clone, Copy, Debug)]
pub struct TableOpts {
    include_object: IncludeObject,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum IncludeObject {
    None,
    Metadata,
    Object,
}

/// The table the request asks for (`Accept: …;as=Table`, `includeObject`),
/// `None` for plain objects.
pub fn requested(headers: &HeaderMap, q: &Query) -> Option<TableOpts> {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    accept.contains("as=Table").then(|| TableOpts {
        include_object: match q.get("includeObject").map(String::as_str) {
            Some("None") => IncludeObject::None,
            Some("Object") => IncludeObject::Object,
            _ => IncludeObject::Metadata,
        },
    })
}

/// A Table of objects of one kind.
pub fn render(
    rt: &ResourceType,
    objs: &[Value],
    revision: Option<u64>,
    cont: Option<&str>,
    opts: TableOpts,
) -> Value {
    let mut cols = vec![
        json!({"name": "Name", "type": "string", "format": "name", "description": "Name must be unique within a namespace.", "priority": 0}),
    ];
    let columns = rt.strategy.columns();
    // A kind that places AGE itself (priority classes print a column after
    // it) declares it among its columns and fills its cell.
    // Custom resources print exactly their printer columns (the default
    // ones end with Age).
    let own_age = rt.custom.is_some() || columns.iter().any(|c| c.name == "Age");
    // Kubernetes prints AGE after the always-shown columns and before the
    // `-o wide` ones (pods: ... RESTARTS AGE IP NODE).
    let age_at = 1 + columns
        .iter()
        .position(|c| c.priority > 0)
        .unwrap_or(columns.len());
    for c in columns {
        cols.push(json!({"name": c.name, "type": c.kind, "format": c.format, "description": c.description, "priority": c.priority}));
    }
    if !own_age {
        cols.insert(
            age_at,
            json!({"name": "Age", "type": "string", "format": "", "description": "Time since creation.", "priority": 0}),
        );
    }
    let rows: Vec<Value> = objs
        .iter()
        .map(|o| {
            let mut cells = vec![o.pointer("/metadata/name").cloned().unwrap_or(json!(""))];
            cells.extend(rt.strategy.cells(o));
            let age = json!(meta::age(
                o.pointer("/metadata/creationTimestamp")
                    .and_then(Value::as_str)
            ));
            if !own_age {
                cells.insert(age_at.min(cells.len()), age);
            }
            let mut row = json!({"cells": cells});
            match opts.include_object {
                IncludeObject::None => {}
                IncludeObject::Metadata => {
                    row["object"] = json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]});
                }
                IncludeObject::Object => row["object"] = o.clone(),
            }
            row
        })
        .collect();
    let mut meta = json!({});
    if let Some(r) = revision {
        meta["resourceVersion"] = json!(r.to_string());
    }
    if let Some(c) = cont {
        meta["continue"] = json!(c);
    }
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta, "columnDefinitions": cols, "rows": rows})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::Kinds;

    fn names(table: &Value) -> Vec<&str> {
        table["columnDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect()
    }

    #[test]
    fn age_comes_before_the_wide_columns_in_definitions_and_cells() {
        let kinds = Kinds::builtin();
        let pods = kinds.find("", "v1", "pods").unwrap();
        let pod = json!({"metadata": {"name": "p", "creationTimestamp": "2020-01-01T00:00:00Z"},
            "spec": {"nodeName": "n1", "containers": [{"name": "c"}]}, "status": {"podIP": "10.0.0.9"}});
        let table = render(
            &pods,
            &[pod],
            None,
            None,
            TableOpts {
                include_object: IncludeObject::None,
            },
        );
        let cols = names(&table);
        let age = cols.iter().position(|c| *c == "Age").unwrap();
        assert_eq!(cols[age + 1..age + 3], ["IP", "Node"], "{cols:?}");
        let cells = table["rows"][0]["cells"].as_array().unwrap();
        assert_eq!(cells.len(), cols.len());
        assert_eq!(cells[age + 1], "10.0.0.9");
        assert_eq!(cells[age + 2], "n1");
        // A kind without wide columns still ends with AGE.
        let cms = kinds.find("", "v1", "configmaps").unwrap();
        assert_eq!(
            names(&render(
                &cms,
                &[],
                None,
                None,
                TableOpts {
                    include_object: IncludeObject::None
                }
            ))
            .last(),
            Some(&"Age")
        );
    }
}
