//! The `Available` condition of every APIService, as Kubernetes' available
//! controller keeps it: a local APIService is available (`Local`); a remote
//! one is when its address resolves ([`super::backend`]) and a GET of
//! `/apis/<group>/<version>` through the proxy's TLS, as
//! `system:kube-aggregator`, answers 2xx within [`PROBE_TIMEOUT`]
//! (`Passed`), else not (`FailedDiscoveryCheck`, `ServiceNotFound`,
//! `EndpointsNotFound`, …, with a message). Each APIService is checked every
//! [`INTERVAL`], and at once when it changes; the condition is written only
//! when its status, reason or message changes. The resource list read by
//! the check is kept for aggregated discovery.
//!
//! Every member runs this loop, as every kube-apiserver does; they read the
//! same objects and reach the same answers.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};

use super::Aggregator;
use super::registration::Registration;
use crate::http::auth::UserInfo;
use crate::kinds::Subresource;
use crate::request::{Query, RequestTarget, Verb};

/// How often every APIService is checked.
pub const INTERVAL: Duration = Duration::from_secs(3);
/// How long a check may take.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest resource list read from an extension server.
const MAX_DISCOVERY: usize = 4 << 20;

/// The condition to hold: status, reason, message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub available: bool,
    pub reason: String,
    pub message: String,
}

impl Verdict {
    fn no(reason: &str, message: String) -> Verdict {
        Verdict {
            available: false,
            reason: reason.into(),
            message,
        }
    }
}

/// The user the checks are made as.
pub fn aggregator_user() -> UserInfo {
    UserInfo {
        name: "system:kube-aggregator".into(),
        groups: vec!["system:masters".into()],
        ..UserInfo::default()
    }
}

/// Check every APIService now and every [`INTERVAL`], until the registry goes.
pub async fn run(agg: Arc<Aggregator>) {
    loop {
        if agg.registry.upgrade().is_none() {
            return;
        }
        let checks = agg.index.all().into_iter().map(|r| {
            let agg = agg.clone();
            async move { agg.check(&r).await }
        });
        futures::future::join_all(checks).await;
        tokio::select! {
            _ = tokio::time::sleep(INTERVAL) => {}
            _ = agg.index.changed.notified() => {}
        }
    }
}

impl Aggregator {
    /// Check one APIService and write its condition if it changed.
    async fn check(&self, reg: &Registration) {
        let verdict = self.verdict(reg).await;
        if let Some(conditions) = conditions(&reg.conditions, &verdict, &now()) {
            if verdict.available {
                tracing::info!(apiservice = %reg.name, "available");
            } else {
                tracing::info!(apiservice = %reg.name, reason = %verdict.reason, message = %verdict.message, "not available");
            }
            self.write_conditions(&reg.name, conditions).await;
        }
    }

    async fn verdict(&self, reg: &Registration) -> Verdict {
        if !reg.is_remote() {
            return Verdict {
                available: true,
                reason: "Local".into(),
                message: "Local APIServices are always available".into(),
            };
        }
        let Some(registry) = self.registry.upgrade() else {
            return Verdict::no("ServiceAccessError", "the server is stopping".into());
        };
        let addr = match super::backend::resolve(&registry, reg).await {
            Ok(a) => a,
            Err(u) => {
                self.forget_discovery(&reg.name);
                return Verdict::no(u.reason, u.message);
            }
        };
        let path = format!("/apis/{}/{}", reg.group, reg.version);
        let url = format!("https://{addr}{path}");
        let failed = |e: String| {
            Verdict::no(
                "FailedDiscoveryCheck",
                format!("failing or missing response from {url}: {e}"),
            )
        };
        let upstream = match self.upstream(reg, addr.clone()) {
            Ok(u) => u,
            Err(e) => return failed(e.to_string()),
        };
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        let headers = super::proxy::forward_headers(&headers, &aggregator_user(), &addr);
        let probe = async {
            let req = super::proxy::request(&Method::GET, &path, headers, Bytes::new())
                .map_err(|e| e.to_string())?;
            let resp = upstream.send(req).await.map_err(|e| e.to_string())?;
            let status = resp.status();
            if !status.is_success() {
                return Err(format!("bad status from {url}: {}", status.as_u16()));
            }
            let body = http_body_util::Limited::new(resp.into_body(), MAX_DISCOVERY)
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            Ok(serde_json::from_slice::<Value>(&body).ok())
        };
        match tokio::time::timeout(PROBE_TIMEOUT, probe).await {
            Err(_) => failed(format!("the check did not finish within {PROBE_TIMEOUT:?}")),
            Ok(Err(e)) if e.starts_with("bad status") => Verdict::no("FailedDiscoveryCheck", e),
            Ok(Err(e)) => failed(e),
            Ok(Ok(list)) => {
                if let Some(list) = list.filter(|l| l["kind"] == "APIResourceList") {
                    self.remember_discovery(&reg.name, list);
                }
                Verdict {
                    available: true,
                    reason: "Passed".into(),
                    message: "all checks passed".into(),
                }
            }
        }
    }

    /// Write `conditions` as the APIService's `status.conditions`.
    async fn write_conditions(&self, name: &str, conditions: Vec<Value>) {
        let Some(registry) = self.registry.upgrade() else {
            return;
        };
        let Some(rt) = registry
            .kinds
            .find("apiregistration.k8s.io", "v1", "apiservices")
        else {
            return;
        };
        let target = RequestTarget {
            rt,
            namespace: None,
            name: Some(name.to_string()),
            subresource: Some(Subresource::Status),
        };
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/merge-patch+json"),
        );
        let q: Query = [("fieldManager".to_string(), "kube-aggregator".to_string())].into();
        let body = json!({"status": {"conditions": conditions}}).to_string();
        let user = aggregator_user();
        if let Err(e) = registry
            .serve(Verb::Patch, &target, &q, &headers, body.into(), &user)
            .await
        {
            tracing::debug!(apiservice = name, error = %e, "cannot write the Available condition");
        }
    }
}

/// The current time as Kubernetes writes it (RFC 3339, seconds).
fn now() -> String {
    crate::meta::rfc3339(crate::meta::now_secs())
}

/// `current` with the `Available` condition set to `v`, or `None` when it
/// already says that. The transition time moves only when the status does.
pub fn conditions(current: &[Value], v: &Verdict, now: &str) -> Option<Vec<Value>> {
    let status = if v.available { "True" } else { "False" };
    let old = current.iter().find(|c| c["type"] == "Available");
    if let Some(o) = old
        && o["status"] == status
        && o["reason"] == v.reason.as_str()
        && o["message"] == v.message.as_str()
    {
        return None;
    }
    let since = old
        .filter(|o| o["status"] == status)
        .and_then(|o| o["lastTransitionTime"].as_str())
        .unwrap_or(now);
    let cond = json!({
        "type": "Available", "status": status, "lastTransitionTime": since,
        "reason": v.reason, "message": v.message,
    });
    let mut out: Vec<Value> = current
        .iter()
        .filter(|c| c["type"] != "Available")
        .cloned()
        .collect();
    out.push(cond);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_condition_changes_only_when_the_verdict_does() {
        let yes = Verdict {
            available: true,
            reason: "Passed".into(),
            message: "all checks passed".into(),
        };
        let first = conditions(&[], &yes, "2026-01-01T00:00:00Z").unwrap();
        assert_eq!(first.len(), 1);
        assert_eq!(first[0]["status"], "True");
        assert_eq!(conditions(&first, &yes, "2026-01-01T00:01:00Z"), None);
        let no = Verdict::no("FailedDiscoveryCheck", "failing or missing response".into());
        let down = conditions(&first, &no, "2026-01-01T00:02:00Z").unwrap();
        assert_eq!(
            (
                down[0]["status"].as_str(),
                down[0]["reason"].as_str(),
                down[0]["lastTransitionTime"].as_str()
            ),
            (
                Some("False"),
                Some("FailedDiscoveryCheck"),
                Some("2026-01-01T00:02:00Z")
            )
        );
        // Another reason, still False: the transition time stays.
        let gone = Verdict::no("EndpointsNotFound", "cannot find endpoints".into());
        let other = [json!({"type": "Other", "status": "True"}), down[0].clone()];
        let next = conditions(&other, &gone, "2026-01-01T00:03:00Z").unwrap();
        assert_eq!(next[0]["type"], "Other", "other conditions are kept");
        assert_eq!(next[1]["lastTransitionTime"], "2026-01-01T00:02:00Z");
        assert_eq!(next[1]["reason"], "EndpointsNotFound");
    }
}
