//! Object history, a Keel extension: every change of one object the store
//! still knows (its event archive and retained events), each with its
//! revision, time, operation, user and the object as it was, served as
//! `GET /apis/keel.dev/v1/history/{group}/{version}/[namespaces/{ns}/]{resource}/{name}`
//! (`core` for the core group) to anyone who may `get` the object. `keel
//! history` is its client.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::{Registry, storage_error};
use crate::error::ApiError;
use crate::request::RequestTarget;
use crate::response;

fn rfc3339(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

impl Registry {
    /// The history of object `name` of `t` (already authorized for `get`).
    pub async fn history(&self, t: &RequestTarget, name: &str) -> Result<Response, ApiError> {
        let key = t.rt.key(t.namespace.as_deref(), name);
        let h = self
            .storage
            .history(&key)
            .await
            .map_err(|e| storage_error(t, name, e))?;
        let mut items = Vec::with_capacity(h.changes.len());
        for c in &h.changes {
            let (operation, shown) = match c.kind {
                keel_store::EventKind::Added => ("Create", &c.value),
                keel_store::EventKind::Modified => ("Update", &c.value),
                keel_store::EventKind::Deleted => ("Delete", &c.prev),
            };
            let object = match shown {
                Some(kv) => t.rt.served(self.decode(kv)?),
                None => Value::Null,
            };
            items.push(json!({
                "revision": c.revision.to_string(),
                "time": rfc3339(c.at_ms),
                "operation": operation,
                "user": c.actor.as_ref().map(|a| a.user.clone()),
                "groups": c.actor.as_ref().map(|a| a.groups.clone()).unwrap_or_default(),
                "object": object,
            }));
        }
        let gaps: Vec<Value> = h
            .gaps
            .iter()
            .map(|(from, to, reason)| {
                json!({"from": (from + 1).to_string(), "to": to.to_string(), "reason": reason})
            })
            .collect();
        Ok(response::json(
            StatusCode::OK,
            &json!({
                "apiVersion": "keel.dev/v1",
                "kind": "ObjectHistory",
                "metadata": {"resourceVersion": h.revision.to_string()},
                "target": {
                    "apiVersion": t.rt.api_version(),
                    "kind": t.rt.kind,
                    "namespace": t.namespace,
                    "name": name,
                },
                "from": h.from.to_string(),
                "gaps": gaps,
                "items": items,
            }),
        ))
    }
}
