//! `keel replay`: the state of a data directory at a past revision (undone
//! through its events and an event archive), exported offline as a
//! Kubernetes List in JSON or YAML: everything, or one namespace or kind,
//! optionally ready for `kubectl apply` into a live cluster (docs/DR.md).

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use keel_store::replay;
use serde_json::Value;

#[derive(clap::Args)]
pub struct ReplayArgs {
    /// The data directory to read (a stopped member's, a copy, or one built
    /// by `keel restore`); it is opened read-only.
    #[arg(long, default_value = "./keel-data")]
    pub data_dir: PathBuf,
    /// The event archive (the member's --archive-dir), needed for a revision
    /// below the data directory's compacted revision.
    #[arg(long)]
    pub archive: Option<PathBuf>,
    /// The revision (resourceVersion) to export; default: the directory's own.
    #[arg(long)]
    pub to_revision: Option<u64>,
    /// Only this namespace (its objects and the Namespace itself).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Only this kind (`ConfigMap`) or resource (`configmaps`).
    #[arg(long)]
    pub kind: Option<String>,
    /// `json` or `yaml`.
    #[arg(short = 'o', long, default_value = "yaml")]
    pub output: String,
    /// Objects ready for `kubectl apply` into a live cluster: resourceVersion,
    /// uid, timestamps, managedFields and status removed, and objects a
    /// controller owns left out (their controller makes them again).
    #[arg(long)]
    pub for_apply: bool,
    /// The encryption configuration the Secrets were written with (the
    /// member's `<data-dir>/pki/encryption-config.yaml` is used when present).
    #[arg(long)]
    pub encryption_config: Option<PathBuf>,
}

/// `/registry/<group>/<resource>/[<namespace>/]<name>`.
fn key_parts(key: &str) -> Option<(&str, Option<&str>)> {
    let parts: Vec<&str> = key.trim_start_matches('/').split('/').collect();
    match parts.as_slice() {
        ["registry", _, resource, ns, _] => Some((resource, Some(ns))),
        ["registry", _, resource, _] => Some((resource, None)),
        _ => None,
    }
}

pub async fn run(args: ReplayArgs) -> Result<()> {
    if args.output != "json" && args.output != "yaml" {
        bail!("-o must be json or yaml, not {:?}", args.output);
    }
    let config = args.encryption_config.clone().or_else(|| {
        let p = keel_apiserver::encryption::default::path(&args.data_dir);
        p.exists().then_some(p)
    });
    let encryption = match &config {
        Some(f) => Some(
            keel_apiserver::encryption::Encryption::load(Some(f), &args.data_dir)
                .with_context(|| format!("loading {}", f.display()))?,
        ),
        None => None,
    };
    let mut stored = Vec::new();
    let (dir, archive, to) = (
        args.data_dir.clone(),
        args.archive.clone(),
        args.to_revision,
    );
    let state = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        let s = replay::state_at(&dir, archive.as_deref(), to, |kv| {
            out.push(kv.clone());
            Ok(())
        });
        s.map(|s| (s, out))
    })
    .await?
    .with_context(|| format!("replaying {}", args.data_dir.display()))?;
    let (state, kvs) = state;
    for kv in kvs {
        let Some((resource, ns)) = key_parts(&kv.key) else {
            continue;
        };
        if let Some(want) = &args.namespace {
            let is_ns = resource == "namespaces" && kv.key.ends_with(&format!("/{want}"));
            if ns != Some(want.as_str()) && !is_ns {
                continue;
            }
        }
        let bytes = if kv.value.starts_with(b"k8s:enc:") {
            let Some(t) = encryption.as_ref().and_then(|e| e.transformer(&kv.key)) else {
                bail!(
                    "{} is stored encrypted: give --encryption-config (the cluster's encryption configuration)",
                    kv.key
                );
            };
            t.decrypt(&kv.key, &kv.value)
                .await
                .with_context(|| format!("decrypting {}", kv.key))?
                .plaintext
        } else {
            kv.value.clone()
        };
        let mut obj: Value = serde_json::from_slice(&bytes)
            .with_context(|| format!("{} does not hold a JSON object", kv.key))?;
        if let Some(k) = &args.kind {
            let kind = obj["kind"].as_str().unwrap_or("");
            if !kind.eq_ignore_ascii_case(k) && !resource.eq_ignore_ascii_case(k) {
                continue;
            }
        }
        if args.for_apply {
            let owned = obj["metadata"]["ownerReferences"]
                .as_array()
                .is_some_and(|o| o.iter().any(|r| r["controller"] == true));
            if owned {
                continue;
            }
            if let Some(m) = obj["metadata"].as_object_mut() {
                for f in [
                    "resourceVersion",
                    "uid",
                    "creationTimestamp",
                    "deletionTimestamp",
                    "deletionGracePeriodSeconds",
                    "managedFields",
                    "generation",
                    "selfLink",
                ] {
                    m.remove(f);
                }
            }
            if let Some(o) = obj.as_object_mut() {
                o.remove("status");
            }
        } else {
            obj["metadata"]["resourceVersion"] = Value::String(kv.mod_revision.to_string());
        }
        stored.push(obj);
    }
    // Namespaces first, so that applying the list creates each before its
    // objects.
    stored.sort_by_key(|o| o["kind"] != "Namespace");
    eprintln!(
        "state at revision {} ({} objects; {} changes undone; the directory is at revision {}, compacted at {})",
        state.revision,
        stored.len(),
        state.undone,
        state.current,
        state.compacted
    );
    let list = serde_json::json!({
        "apiVersion": "v1",
        "kind": "List",
        "metadata": {"resourceVersion": state.revision.to_string()},
        "items": stored,
    });
    let mut out = std::io::stdout().lock();
    if args.output == "json" {
        serde_json::to_writer_pretty(&mut out, &list)?;
        writeln!(out)?;
    } else {
        let mut text = String::new();
        yaml(&list, 0, &mut text);
        out.write_all(text.as_bytes())?;
    }
    Ok(())
}

/// YAML block style for a JSON value. Keys and strings are written as JSON
/// strings, which YAML reads as double-quoted scalars: nothing is lost.
fn yaml(v: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, val) in m {
                out.push_str(&pad);
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                nested(val, indent, out);
            }
        }
        Value::Array(a) if !a.is_empty() => {
            for val in a {
                out.push_str(&pad);
                out.push('-');
                match val {
                    Value::Object(m) if !m.is_empty() => {
                        // The first key on the dash's line, the rest below it.
                        let mut inner = String::new();
                        yaml(val, indent + 2, &mut inner);
                        out.push(' ');
                        out.push_str(inner.trim_start());
                    }
                    _ => nested(val, indent, out),
                }
            }
        }
        scalar => {
            out.push_str(&pad);
            out.push_str(&scalar.to_string());
            out.push('\n');
        }
    }
}

fn nested(val: &Value, indent: usize, out: &mut String) {
    match val {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            yaml(val, indent + 2, out);
        }
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            yaml(val, indent + 2, out);
        }
        scalar => {
            out.push(' ');
            out.push_str(&scalar.to_string());
            out.push('\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_reads_back_as_the_same_json() {
        let v = serde_json::json!({
            "a": {"b": [1, "two: x", {"c": null, "d": [true, []]}, {}], "e": "multi\nline \"q\""},
            "f": [], "g": {}, "h": -1.5, "i": [[1, 2], {"j": 1}],
        });
        let mut text = String::new();
        yaml(&v, 0, &mut text);
        let back: Value = serde_saphyr::from_str(&text).unwrap();
        assert_eq!(back, v, "{text}");
    }

    #[test]
    fn keys_name_their_resource_and_namespace() {
        assert_eq!(
            key_parts("/registry/core/configmaps/team/a"),
            Some(("configmaps", Some("team")))
        );
        assert_eq!(
            key_parts("/registry/core/namespaces/team"),
            Some(("namespaces", None))
        );
        assert_eq!(key_parts("/other"), None);
    }
}
