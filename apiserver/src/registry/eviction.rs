//! `pods/{name}/eviction`: a `policy/v1` Eviction deletes a pod unless its
//! PodDisruptionBudget forbids it, as kube-apiserver's eviction REST does
//! (what `kubectl drain` posts).
//!
//! A pod that has finished, is pending or is already being deleted goes
//! without a look at budgets; so does one no budget selects. With exactly
//! one budget: a budget not yet processed at its generation, or with no
//! disruption allowed, refuses with 429 and a `DisruptionBudget` cause;
//! otherwise the budget's `disruptionsAllowed` is decremented and the pod
//! recorded in `disruptedPods` (a compare-and-swap on the budget, so two
//! evictions never spend one allowance), then the pod is deleted with the
//! Eviction's delete options. An unready pod is let go without spending an
//! allowance when the budget's `unhealthyPodEvictionPolicy` is AlwaysAllow,
//! or (IfHealthyBudget, the default) while the budget has the healthy pods
//! it needs. More than one budget is a 500, as in Kubernetes.

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::delete::DeleteOptions;
use super::storage::RangeRequest;
use super::{Registry, decode};
use crate::error::{ApiError, Cause};
use crate::http::auth::UserInfo;
use crate::kinds::Subresource;
use crate::meta;
use crate::request::{Query, RequestTarget};
use crate::response;
use crate::selector::LabelSelector;

/// Kubernetes' message for an eviction a budget forbids.
const REFUSED: &str = "Cannot evict pod as it would violate the pod's disruption budget.";

/// A budget's `spec.selector` as a label selector (`None`: selects nothing).
fn budget_selector(pdb: &Value) -> Option<LabelSelector> {
    let sel = pdb.pointer("/spec/selector").filter(|s| s.is_object())?;
    let mut parts: Vec<String> = sel
        .get("matchLabels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    for e in sel
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let key = e.get("key").and_then(Value::as_str).unwrap_or_default();
        let values: Vec<&str> = e
            .get("values")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        parts.push(match e.get("operator").and_then(Value::as_str) {
            Some("In") => format!("{key} in ({})", values.join(",")),
            Some("NotIn") => format!("{key} notin ({})", values.join(",")),
            Some("Exists") => key.to_string(),
            _ => format!("!{key}"),
        });
    }
    LabelSelector::parse(&parts.join(",")).ok()
}

/// Whether budgets are not consulted for `pod` (Kubernetes' `canIgnorePDB`).
fn ignores_budgets(pod: &Value) -> bool {
    matches!(
        pod.pointer("/status/phase").and_then(Value::as_str),
        Some("Succeeded" | "Failed" | "Pending")
    ) || pod
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|d| !d.is_null())
}

fn ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

fn int(v: &Value, p: &str) -> i64 {
    v.pointer(p).and_then(Value::as_i64).unwrap_or(0)
}

/// The budget `pdb` with one allowance spent on `pod`, or why not.
fn spend(pdb: &Value, pod: &Value, pod_name: &str) -> Result<Option<Value>, ApiError> {
    let name = pdb
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let refused = |message: String| ApiError::TooManyRequestsBecause {
        message: REFUSED.into(),
        causes: vec![Cause {
            field: String::new(),
            reason: "DisruptionBudget",
            message,
        }],
    };
    if int(pdb, "/status/observedGeneration") < int(pdb, "/metadata/generation") {
        return Err(refused(format!(
            "The disruption budget {name} is still being processed by the server."
        )));
    }
    let (healthy, desired) = (
        int(pdb, "/status/currentHealthy"),
        int(pdb, "/status/desiredHealthy"),
    );
    if !ready(pod) {
        let policy = pdb
            .pointer("/spec/unhealthyPodEvictionPolicy")
            .and_then(Value::as_str)
            .unwrap_or("IfHealthyBudget");
        if policy == "AlwaysAllow" || (healthy >= desired && desired > 0) {
            return Ok(None);
        }
    }
    let allowed = int(pdb, "/status/disruptionsAllowed");
    if allowed < 0 {
        return Err(ApiError::Forbidden {
            group: String::new(),
            resource: "pods/eviction".into(),
            name: pod_name.into(),
            reason: "pdb disruptions allowed is negative".into(),
        });
    }
    if allowed == 0 {
        return Err(refused(format!(
            "The disruption budget {name} needs {desired} healthy pods and has {healthy} currently"
        )));
    }
    let mut next = pdb.clone();
    next["status"]["disruptionsAllowed"] = json!(allowed - 1);
    if !next["status"]["disruptedPods"].is_object() {
        next["status"]["disruptedPods"] = json!({});
    }
    next["status"]["disruptedPods"][pod_name] = json!(meta::rfc3339(meta::now_secs()));
    Ok(Some(next))
}

impl Registry {
    /// POST `pods/{name}/eviction` (see the module notes).
    pub(super) async fn evict(
        &self,
        t: &RequestTarget,
        name: &str,
        q: &Query,
        body: Bytes,
        user: &UserInfo,
    ) -> Result<Response, ApiError> {
        let eviction = decode::json_body(&body)?;
        if let Some(n) = eviction.pointer("/metadata/name").and_then(Value::as_str)
            && !n.is_empty()
            && n != name
        {
            return Err(ApiError::BadRequest(
                "name in URL does not match name in Eviction object".into(),
            ));
        }
        let opts_body = eviction
            .get("deleteOptions")
            .filter(|o| o.is_object())
            .map(|o| o.to_string())
            .unwrap_or_default();
        let opts = DeleteOptions::from_request(opts_body.as_bytes(), &Query::new())?;
        let main = t.main();
        let (_, pod) = self.current(&main, name).await?;
        if !ignores_budgets(&pod) {
            self.spend_budget(t, name, &pod, q, user).await?;
        }
        self.delete_object(&main, name, &opts, user).await?;
        Ok(response::json(
            StatusCode::CREATED,
            &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
        ))
    }

    /// Find the pod's budget and spend an allowance on it, or refuse.
    async fn spend_budget(
        &self,
        t: &RequestTarget,
        name: &str,
        pod: &Value,
        q: &Query,
        user: &UserInfo,
    ) -> Result<(), ApiError> {
        let Some(rt) = self.kinds.find("policy", "v1", "poddisruptionbudgets") else {
            return Ok(());
        };
        let labels = meta::labels(pod);
        let list = self
            .storage
            .list(RangeRequest::prefix(rt.prefix(t.namespace.as_deref())))
            .await?;
        let mut budgets = Vec::new();
        for kv in &list.kvs {
            let pdb = self.decode(kv)?;
            if budget_selector(&pdb).is_some_and(|s| s.matches(&labels)) {
                budgets.push(pdb);
            }
        }
        let pdb = match budgets.as_slice() {
            [] => return Ok(()),
            [one] => one,
            _ => {
                return Err(ApiError::Internal(
                    "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.".into(),
                ));
            }
        };
        let pdb_name = pdb
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let target = RequestTarget {
            rt,
            namespace: t.namespace.clone(),
            name: Some(pdb_name.clone()),
            subresource: Some(Subresource::Status),
        };
        // Read-modify-write of the budget's status: a concurrent eviction
        // makes this redo the check on the budget it left.
        let mut spent = true;
        let result = self
            .guaranteed_update(&target, &pdb_name, q, user, |_, current| {
                match spend(current, pod, name)? {
                    Some(next) => Ok(next),
                    None => {
                        spent = false;
                        Ok(current.clone())
                    }
                }
            })
            .await;
        result.map(|_| {
            tracing::debug!(pod = name, budget = %pdb_name, spent, "eviction allowed");
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pdb(allowed: i64, healthy: i64, desired: i64) -> Value {
        json!({"metadata": {"name": "web", "generation": 1},
            "spec": {"selector": {"matchLabels": {"app": "web"}}},
            "status": {"observedGeneration": 1, "disruptionsAllowed": allowed,
                "currentHealthy": healthy, "desiredHealthy": desired}})
    }

    fn pod(ready: bool) -> Value {
        json!({"metadata": {"labels": {"app": "web"}}, "status": {"phase": "Running",
            "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}})
    }

    #[test]
    fn an_eviction_spends_one_allowance_or_is_refused() {
        let next = spend(&pdb(1, 2, 1), &pod(true), "web-0").unwrap().unwrap();
        assert_eq!(next["status"]["disruptionsAllowed"], 0);
        assert!(next["status"]["disruptedPods"]["web-0"].is_string());
        match spend(&next, &pod(true), "web-1") {
            Err(ApiError::TooManyRequestsBecause { message, causes }) => {
                assert_eq!(message, REFUSED);
                assert_eq!(
                    causes[0].message,
                    "The disruption budget web needs 1 healthy pods and has 2 currently"
                );
            }
            other => panic!("{other:?}"),
        }
        // An unready pod goes free while the budget is healthy enough.
        assert!(
            spend(&pdb(0, 1, 1), &pod(false), "web-2")
                .unwrap()
                .is_none()
        );
        assert!(spend(&pdb(0, 0, 1), &pod(false), "web-2").is_err());
        // A budget not yet processed refuses.
        let mut stale = pdb(1, 2, 1);
        stale["metadata"]["generation"] = json!(2);
        assert!(spend(&stale, &pod(true), "web-0").is_err());
        assert!(
            budget_selector(&stale)
                .unwrap()
                .matches(&meta::labels(&pod(true)))
        );
        assert!(ignores_budgets(&json!({"status": {"phase": "Pending"}})));
    }
}
