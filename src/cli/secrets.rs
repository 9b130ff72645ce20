//! `keel secrets rotate`: re-encrypt every stored Secret under the current
//! first key of the encryption configuration, online, through the API like
//! any client (the admin kubeconfig). Each Secret is read and written back
//! unchanged with its resourceVersion as precondition; the server writes a
//! value stored under an older key again even though nothing changed
//! (`Storage::stale`), which encrypts it with the first key. Afterwards the
//! old key can be removed from every member's configuration.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use hyper::{Method, StatusCode};
use serde_json::{Value, json};

use super::api_client::Api;

#[derive(clap::Subcommand)]
pub enum SecretsAction {
    /// Re-encrypt every Secret under the current first key (run after every
    /// member runs with the new key listed first), with progress; then the
    /// old key can be removed.
    Rotate {
        /// The admin kubeconfig of any member.
        #[arg(long, default_value = "./keel-data/kubeconfig")]
        kubeconfig: PathBuf,
        /// The kubeconfig context to use (default: its current context).
        #[arg(long)]
        context: Option<String>,
    },
}

pub async fn run(action: SecretsAction) -> Result<()> {
    match action {
        SecretsAction::Rotate {
            kubeconfig,
            context,
        } => rotate(&kubeconfig, context.as_deref()).await,
    }
}

/// Writes retried when another client changed the Secret in between.
const ATTEMPTS: usize = 5;

/// Secrets per page of the list.
const PAGE: usize = 500;

async fn rotate(kubeconfig: &Path, context: Option<&str>) -> Result<()> {
    let api = Api::from_kubeconfig(kubeconfig, context)?;
    let mut secrets = Vec::new();
    let mut cont: Option<String> = None;
    loop {
        let mut path = format!("/api/v1/secrets?limit={PAGE}");
        if let Some(c) = &cont {
            path.push_str(&format!("&continue={}", escape(c)));
        }
        let (status, page) = api.call(Method::GET, &path, None).await?;
        if status != StatusCode::OK {
            bail!("listing secrets: {status}: {}", message(&page));
        }
        secrets.extend(page["items"].as_array().cloned().unwrap_or_default());
        cont = page["metadata"]["continue"]
            .as_str()
            .filter(|c| !c.is_empty())
            .map(str::to_string);
        if cont.is_none() {
            break;
        }
    }
    let total = secrets.len();
    println!("re-encrypting {total} secrets under the current first key");
    let (mut rewritten, mut current, mut gone) = (0, 0, 0);
    for (i, secret) in secrets.into_iter().enumerate() {
        let ns = secret["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let name = secret["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let outcome = rewrite(&api, &ns, &name, secret).await?;
        match outcome {
            Outcome::Rewritten => rewritten += 1,
            Outcome::Current => current += 1,
            Outcome::Gone => gone += 1,
        }
        println!("[{}/{total}] {ns}/{name}: {}", i + 1, outcome.describe());
    }
    println!(
        "done: {rewritten} re-encrypted, {current} already under the first key, {gone} deleted meanwhile"
    );
    Ok(())
}

enum Outcome {
    Rewritten,
    Current,
    Gone,
}

impl Outcome {
    fn describe(&self) -> &'static str {
        match self {
            Outcome::Rewritten => "re-encrypted",
            Outcome::Current => "already under the first key",
            Outcome::Gone => "deleted meanwhile",
        }
    }
}

/// Write `secret` back unchanged; on a conflict read it again and retry.
async fn rewrite(api: &Api, ns: &str, name: &str, mut secret: Value) -> Result<Outcome> {
    let path = format!("/api/v1/namespaces/{}/secrets/{}", escape(ns), escape(name));
    for _ in 0..ATTEMPTS {
        secret["apiVersion"] = json!("v1");
        secret["kind"] = json!("Secret");
        let before = secret["metadata"]["resourceVersion"].clone();
        let (status, body) = api
            .call(Method::PUT, &path, Some(serde_json::to_vec(&secret)?))
            .await?;
        match status {
            StatusCode::OK if body["metadata"]["resourceVersion"] == before => {
                return Ok(Outcome::Current);
            }
            StatusCode::OK => return Ok(Outcome::Rewritten),
            StatusCode::NOT_FOUND => return Ok(Outcome::Gone),
            StatusCode::CONFLICT => {
                let (status, fresh) = api.call(Method::GET, &path, None).await?;
                match status {
                    StatusCode::OK => secret = fresh,
                    StatusCode::NOT_FOUND => return Ok(Outcome::Gone),
                    s => bail!("reading {ns}/{name}: {s}: {}", message(&fresh)),
                }
            }
            s => bail!("rewriting {ns}/{name}: {s}: {}", message(&body)),
        }
    }
    bail!("{ns}/{name} kept changing; run `keel secrets rotate` again")
}

fn message(status: &Value) -> String {
    status["message"]
        .as_str()
        .map_or_else(|| status.to_string(), str::to_string)
}

/// Percent-encode a path segment or query value.
fn escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
