//! The ConfigMap `kube-system/extension-apiserver-authentication`, from
//! which extension servers learn whom to trust, as kube-apiserver publishes
//! it: `client-ca-file` (the cluster CA), `requestheader-client-ca-file`
//! (the front-proxy CA), `requestheader-allowed-names` (the proxy's
//! certificate name) and the names of the identity headers. Each member
//! adds its own CAs to what is there (members may have front-proxy CAs of
//! their own), so every member's proxy is trusted; it checks again every
//! [`RECHECK`], so a deleted ConfigMap comes back.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, header};
use serde_json::{Value, json};

use super::available::aggregator_user;
use crate::error::ApiError;
use crate::registry::Registry;
use crate::registry::storage::Consistency;
use crate::request::{Query, RequestTarget, Verb};

pub const NAMESPACE: &str = "kube-system";
pub const NAME: &str = "extension-apiserver-authentication";

const RECHECK: Duration = Duration::from_secs(60);
const RETRY: Duration = Duration::from_secs(1);

/// The keys holding PEM bundles; the others hold JSON lists of strings.
const BUNDLES: [&str; 2] = ["client-ca-file", "requestheader-client-ca-file"];

/// What this member publishes.
pub fn ours(cluster_ca: &str, front_proxy_ca: &str) -> BTreeMap<String, String> {
    let list = |v: &[&str]| serde_json::to_string(v).unwrap_or_default();
    BTreeMap::from([
        ("client-ca-file".into(), cluster_ca.to_string()),
        (
            "requestheader-client-ca-file".into(),
            front_proxy_ca.to_string(),
        ),
        (
            "requestheader-allowed-names".into(),
            list(&[crate::pki::front_proxy::CLIENT_NAME]),
        ),
        (
            "requestheader-username-headers".into(),
            list(&["X-Remote-User"]),
        ),
        ("requestheader-uid-headers".into(), list(&["X-Remote-Uid"])),
        (
            "requestheader-group-headers".into(),
            list(&["X-Remote-Group"]),
        ),
        (
            "requestheader-extra-headers-prefix".into(),
            list(&["X-Remote-Extra-"]),
        ),
    ])
}

/// The PEM blocks of a bundle, each as written.
fn blocks(pem: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in pem.lines().map(str::trim).filter(|l| !l.is_empty()) {
        cur.push_str(line);
        cur.push('\n');
        if line.starts_with("-----END ") {
            out.push(std::mem::take(&mut cur));
        }
    }
    out
}

/// `have` (the ConfigMap's data) with `ours` added: bundles and lists as
/// unions, nothing removed. `None` when nothing needs adding.
pub fn merged(
    have: &BTreeMap<String, String>,
    ours: &BTreeMap<String, String>,
) -> Option<BTreeMap<String, String>> {
    let mut out = have.clone();
    for (k, v) in ours {
        let new = match have.get(k) {
            None => v.clone(),
            Some(old) if BUNDLES.contains(&k.as_str()) => {
                let mut all = blocks(old);
                for b in blocks(v) {
                    if !all.contains(&b) {
                        all.push(b);
                    }
                }
                all.concat()
            }
            Some(old) => {
                let mut all: Vec<String> = serde_json::from_str(old).unwrap_or_default();
                for item in serde_json::from_str::<Vec<String>>(v).unwrap_or_default() {
                    if !all.contains(&item) {
                        all.push(item);
                    }
                }
                serde_json::to_string(&all).unwrap_or_default()
            }
        };
        out.insert(k.clone(), new);
    }
    (out != *have).then_some(out)
}

/// Keep the ConfigMap holding `data` until the registry goes.
pub async fn run(registry: Weak<Registry>, data: BTreeMap<String, String>) {
    loop {
        let Some(r) = registry.upgrade() else { return };
        let pause = match ensure(&r, &data).await {
            Ok(()) => RECHECK,
            Err(e) => {
                tracing::debug!(error = %e, "extension-apiserver-authentication: trying again");
                RETRY
            }
        };
        drop(r);
        tokio::time::sleep(pause).await;
    }
}

async fn ensure(registry: &Registry, data: &BTreeMap<String, String>) -> Result<(), ApiError> {
    let Some(rt) = registry.kinds.find("", "v1", "configmaps") else {
        return Ok(());
    };
    let key = rt.key(Some(NAMESPACE), NAME);
    let have: Option<BTreeMap<String, String>> =
        match registry.storage.get(&key, Consistency::Linearizable).await {
            Ok((kv, _)) => serde_json::from_slice::<Value>(&kv.value)
                .ok()
                .map(|o| serde_json::from_value(o["data"].clone()).unwrap_or_default()),
            Err(crate::registry::storage::StorageError::NotFound { .. }) => None,
            Err(e) => return Err(e.into()),
        };
    let mut target = RequestTarget {
        rt,
        namespace: Some(NAMESPACE.into()),
        name: None,
        subresource: None,
    };
    let user = aggregator_user();
    match have {
        // The namespace may not exist yet: NotFound, tried again.
        None => {
            let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": NAME, "namespace": NAMESPACE}, "data": data});
            registry.create_object(&target, cm, false, &user).await?;
            tracing::info!("published {NAMESPACE}/{NAME}");
        }
        Some(have) => {
            let Some(new) = merged(&have, data) else {
                return Ok(());
            };
            target.name = Some(NAME.into());
            let mut headers = HeaderMap::new();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/merge-patch+json"),
            );
            let q: Query = [("fieldManager".to_string(), "kube-apiserver".to_string())].into();
            let body = json!({"data": new}).to_string();
            registry
                .serve(Verb::Patch, &target, &q, &headers, body.into(), &user)
                .await?;
            tracing::info!("added this member's CAs to {NAMESPACE}/{NAME}");
        }
    }
    Ok(())
}

/// Start publishing (a task).
pub fn start(registry: &Arc<Registry>, data: BTreeMap<String, String>) {
    tokio::spawn(run(Arc::downgrade(registry), data));
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    const B: &str = "-----BEGIN CERTIFICATE-----\nBBBB\n-----END CERTIFICATE-----\n";

    #[test]
    fn members_add_their_cas_and_names_without_removing_others() {
        let first = ours(A, A);
        assert_eq!(
            first["requestheader-allowed-names"],
            r#"["front-proxy-client"]"#
        );
        assert_eq!(
            first["requestheader-username-headers"],
            r#"["X-Remote-User"]"#
        );
        let empty = BTreeMap::new();
        let have = merged(&empty, &first).unwrap();
        assert_eq!(
            merged(&have, &first),
            None,
            "nothing to add the second time"
        );
        let second = ours(A, B);
        let both = merged(&have, &second).unwrap();
        assert_eq!(both["requestheader-client-ca-file"], format!("{A}{B}"));
        assert_eq!(both["client-ca-file"], A);
        assert_eq!(
            both["requestheader-allowed-names"],
            r#"["front-proxy-client"]"#
        );
        let mut other = both.clone();
        other.insert(
            "requestheader-allowed-names".into(),
            r#"["aggregator"]"#.into(),
        );
        let names = merged(&other, &second).unwrap();
        assert_eq!(
            names["requestheader-allowed-names"],
            r#"["aggregator","front-proxy-client"]"#
        );
    }
}
