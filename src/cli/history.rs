//! `keel history KIND/NAME [-n NS]`: every change of one object the cluster
//! still knows (its event archive and retained events), with revision,
//! time, operation, user and what changed from the version before, read
//! from the API's `keel.dev` history endpoint through a kubeconfig like any
//! client.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use hyper::{Method, StatusCode};
use serde_json::Value;

use super::api_client::Api;

#[derive(clap::Args)]
pub struct HistoryArgs {
    /// The object: `kind/name` (`configmap/settings`, `deployments.apps/web`).
    pub object: String,
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    #[arg(long, default_value = "./keel-data/kubeconfig")]
    pub kubeconfig: PathBuf,
    #[arg(long)]
    pub context: Option<String>,
    /// `text` (changes as field diffs) or `json` (the API's ObjectHistory).
    #[arg(short = 'o', long, default_value = "text")]
    pub output: String,
}

/// A served resource: group, version, plural, namespaced.
struct Resource {
    group: String,
    version: String,
    plural: String,
    namespaced: bool,
}

async fn get(api: &Api, path: &str) -> Result<Value> {
    let (status, body) = api.call(Method::GET, path, None).await?;
    if status != StatusCode::OK {
        bail!(
            "GET {path}: {} {}",
            status,
            body["message"].as_str().unwrap_or_default()
        );
    }
    Ok(body)
}

/// Find `kind` (a plural, singular, kind, short name, or `plural.group`)
/// through discovery, as kubectl does.
async fn resolve(api: &Api, kind: &str) -> Result<Resource> {
    let kind = kind.to_ascii_lowercase();
    let (want, want_group) = match kind.split_once('.') {
        Some((k, g)) => (k.to_string(), Some(g.to_string())),
        None => (kind.clone(), None),
    };
    let mut lists = vec![(String::new(), "v1".to_string())];
    let groups = get(api, "/apis").await?;
    for g in groups["groups"].as_array().into_iter().flatten() {
        if let (Some(name), Some(v)) = (
            g["name"].as_str(),
            g["preferredVersion"]["version"].as_str(),
        ) {
            lists.push((name.to_string(), v.to_string()));
        }
    }
    for (group, version) in lists {
        if want_group.as_ref().is_some_and(|w| *w != group) {
            continue;
        }
        let path = if group.is_empty() {
            "/api/v1".to_string()
        } else {
            format!("/apis/{group}/{version}")
        };
        let Ok(list) = get(api, &path).await else {
            continue;
        };
        for r in list["resources"].as_array().into_iter().flatten() {
            let name = r["name"].as_str().unwrap_or_default();
            if name.contains('/') {
                continue;
            }
            let matches = name == want
                || r["singularName"].as_str() == Some(want.as_str())
                || r["kind"].as_str().map(str::to_ascii_lowercase).as_deref()
                    == Some(want.as_str())
                || r["shortNames"]
                    .as_array()
                    .is_some_and(|s| s.iter().any(|n| n.as_str() == Some(want.as_str())));
            if matches {
                return Ok(Resource {
                    group: group.clone(),
                    version: version.clone(),
                    plural: name.to_string(),
                    namespaced: r["namespaced"].as_bool().unwrap_or(false),
                });
            }
        }
    }
    bail!("the server has no resource type {kind:?}")
}

pub async fn run(args: HistoryArgs) -> Result<()> {
    let (kind, name) = args
        .object
        .split_once('/')
        .with_context(|| format!("{:?} is not kind/name", args.object))?;
    let api = Api::from_kubeconfig(&args.kubeconfig, args.context.as_deref())?;
    let r = resolve(&api, kind).await?;
    let group = if r.group.is_empty() {
        "core"
    } else {
        r.group.as_str()
    };
    let scope = if r.namespaced {
        format!("namespaces/{}/", args.namespace)
    } else {
        String::new()
    };
    let path = format!(
        "/apis/keel.dev/v1/history/{group}/{}/{scope}{}/{name}",
        r.version, r.plural
    );
    let h = get(&api, &path).await?;
    if args.output == "json" {
        println!("{}", serde_json::to_string_pretty(&h)?);
        return Ok(());
    }
    print_text(&h);
    Ok(())
}

fn print_text(h: &Value) {
    let items = h["items"].as_array().cloned().unwrap_or_default();
    println!(
        "history from revision {} to {} ({} changes)",
        h["from"].as_str().unwrap_or("?"),
        h["metadata"]["resourceVersion"].as_str().unwrap_or("?"),
        items.len()
    );
    for g in h["gaps"].as_array().into_iter().flatten() {
        println!(
            "gap: revisions {} to {} unknown: {}",
            g["from"].as_str().unwrap_or("?"),
            g["to"].as_str().unwrap_or("?"),
            g["reason"].as_str().unwrap_or("")
        );
    }
    println!("{:<12} {:<24} {:<9} USER", "REVISION", "TIME", "OPERATION");
    let mut before = Value::Null;
    for item in &items {
        println!(
            "{:<12} {:<24} {:<9} {}",
            item["revision"].as_str().unwrap_or("?"),
            item["time"].as_str().unwrap_or("?"),
            item["operation"].as_str().unwrap_or("?"),
            item["user"].as_str().unwrap_or("-")
        );
        let object = &item["object"];
        if item["operation"] == "Update" {
            let mut lines = Vec::new();
            diff("", &before, object, &mut lines);
            for l in lines {
                println!("    {l}");
            }
        }
        before = if item["operation"] == "Delete" {
            Value::Null
        } else {
            object.clone()
        };
    }
}

/// Fields that change on every write and say nothing of the change.
fn noise(path: &str) -> bool {
    matches!(
        path,
        "metadata.resourceVersion" | "metadata.managedFields" | "metadata.generation"
    )
}

/// What changed from `a` to `b`, one line per field: `+` added, `-`
/// removed, `~` changed (values as JSON).
pub fn diff(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    if noise(path) {
        return;
    }
    let join = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, va) in x {
                match y.get(k) {
                    Some(vb) => diff(&join(k), va, vb, out),
                    None if !noise(&join(k)) => out.push(format!("- {}: {va}", join(k))),
                    None => {}
                }
            }
            for (k, vb) in y {
                if !x.contains_key(k) && !noise(&join(k)) {
                    out.push(format!("+ {}: {vb}", join(k)));
                }
            }
        }
        _ if a == b => {}
        _ => out.push(format!("~ {path}: {a} -> {b}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_names_each_changed_field() {
        let a = serde_json::json!({"metadata": {"resourceVersion": "1", "labels": {"a": "1"}}, "data": {"x": "1", "y": "2"}});
        let b = serde_json::json!({"metadata": {"resourceVersion": "2", "labels": {"a": "1", "b": "2"}}, "data": {"x": "9"}});
        let mut out = Vec::new();
        diff("", &a, &b, &mut out);
        assert_eq!(
            out,
            vec![
                "~ data.x: \"1\" -> \"9\"",
                "- data.y: \"2\"",
                "+ metadata.labels.b: \"2\"",
            ]
        );
    }
}
