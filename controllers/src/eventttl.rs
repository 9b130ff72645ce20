//! The eventttl controller: Events older than the TTL (kube-apiserver's
//! `--event-ttl`, default one hour) are deleted. Kubernetes expires them
//! with an etcd lease per event; Keel's store has no leases, so this
//! controller sweeps instead: a paged list of every Event, and a delete
//! (with uid and resourceVersion preconditions, so an event bumped in the
//! meantime stays) of each whose last occurrence is older than the TTL.
//! It sweeps every quarter TTL, at least every minute.

use std::time::Duration;

use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, DeleteParams, ListParams, Preconditions};

use crate::Error;
use crate::context::Context;

/// The controller's name in metrics, events and `--controllers`.
pub const NAME: &str = "eventttl";

/// kube-apiserver's default `--event-ttl`.
pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);

/// Events read per page of the sweep.
const PAGE: u32 = 500;

/// Run until the future is dropped (leadership lost).
pub async fn run(ctx: Context) -> Result<(), Error> {
    let ttl = ctx.settings.event_ttl;
    let every = (ttl / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
    loop {
        if let Err(e) = sweep(&ctx, ttl).await {
            tracing::debug!(error = %e, "event sweep failed; trying again next round");
        }
        tokio::time::sleep(every).await;
    }
}

/// The seconds since the epoch of the last time `ev` happened: the newest
/// of its series, its last timestamp, its event time and its creation.
pub fn last_seen(ev: &Event) -> Option<i64> {
    [
        ev.series
            .as_ref()
            .and_then(|s| s.last_observed_time.as_ref())
            .map(|t| t.0.as_second()),
        ev.last_timestamp.as_ref().map(|t| t.0.as_second()),
        ev.event_time.as_ref().map(|t| t.0.as_second()),
        ev.metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.as_second()),
    ]
    .into_iter()
    .flatten()
    .max()
}

/// Whether `ev` has expired at `now` (seconds) under `ttl`.
pub fn expired(ev: &Event, now: i64, ttl: Duration) -> bool {
    last_seen(ev).is_some_and(|t| now.saturating_sub(t) >= ttl.as_secs() as i64)
}

/// One pass over every Event.
async fn sweep(ctx: &Context, ttl: Duration) -> Result<(), Error> {
    let all = Api::<Event>::all(ctx.client.clone());
    let now = k8s_openapi::jiff::Timestamp::now().as_second();
    let mut lp = ListParams::default().limit(PAGE);
    loop {
        let page = all.list(&lp).await?;
        for ev in page.items.iter().filter(|e| expired(e, now, ttl)) {
            let (Some(ns), Some(name)) = (&ev.metadata.namespace, &ev.metadata.name) else {
                continue;
            };
            let dp = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: ev.metadata.uid.clone(),
                    resource_version: ev.metadata.resource_version.clone(),
                }),
                ..Default::default()
            };
            match Api::<Event>::namespaced(ctx.client.clone(), ns)
                .delete(name, &dp)
                .await
            {
                Ok(_) => ctx.metrics.deleted(NAME),
                // Gone already, or bumped since the list: not expired now.
                Err(e) if matches!(crate::status_code(&e), Some(404 | 409)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => lp = lp.continue_token(&token),
            None => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_expire_from_their_last_occurrence() {
        let ev: Event = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "e", "namespace": "default", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "involvedObject": {},
            "lastTimestamp": "2026-01-01T00:30:00Z"})).unwrap();
        let t0 = last_seen(&ev).unwrap();
        assert_eq!(t0, 1767227400);
        let hour = Duration::from_secs(3600);
        assert!(!expired(&ev, t0 + 3599, hour));
        assert!(expired(&ev, t0 + 3600, hour));
        let bare: Event =
            serde_json::from_value(serde_json::json!({"metadata": {}, "involvedObject": {}}))
                .unwrap();
        assert!(!expired(&bare, i64::MAX, hour), "no time: kept");
    }
}
