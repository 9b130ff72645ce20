//! The `customresourcecleanup.apiextensions.k8s.io` finalizer, as
//! Kubernetes' CRD finalizer runs it: a CRD being deleted is marked
//! `Terminating` (instance deletion in progress), every object of it is
//! deleted through the registry (so their own finalizers hold them), and
//! once none is left the finalizer goes, the CRD with it, and the
//! controller stops serving its kinds. A CRD that was never established has
//! no objects and is let go at once.

use std::time::Duration;

use serde_json::{Value, json};

use super::controller::{self, apiserver};
use super::status::{self, Condition, FINALIZER};
use crate::error::ApiError;
use crate::kinds::ResourceType;
use crate::registry::Registry;
use crate::registry::storage::{Consistency, RangeRequest};
use crate::request::{Query, RequestTarget, Verb};

/// How often the remaining objects are counted.
const POLL: Duration = Duration::from_millis(500);

/// After this long with objects left, the condition says so.
const REPORT_AFTER: Duration = Duration::from_secs(5);

/// Run the cleanup of CRD `name` until it is gone, or no longer being
/// deleted with the finalizer.
pub async fn run(registry: &Registry, crd_rt: &std::sync::Arc<ResourceType>, name: &str) {
    let started = tokio::time::Instant::now();
    let mut deleted = false;
    loop {
        match step(registry, crd_rt, name, &mut deleted, started).await {
            Ok(true) => return,
            Ok(false) => {}
            Err(e) => tracing::debug!(crd = %name, error = %e, "CRD cleanup: retrying"),
        }
        tokio::time::sleep(POLL).await;
    }
}

/// One round; `Ok(true)` when there is nothing more to do.
async fn step(
    registry: &Registry,
    crd_rt: &std::sync::Arc<ResourceType>,
    name: &str,
    deleted: &mut bool,
    started: tokio::time::Instant,
) -> Result<bool, ApiError> {
    let Some(crd) = controller::read(registry, crd_rt, name).await? else {
        return Ok(true);
    };
    let deleting = crd
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|d| !d.is_null());
    let finalizers: Vec<Value> = crd
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if !deleting || !finalizers.iter().any(|f| f == FINALIZER) {
        return Ok(true);
    }
    let rt = registry
        .kinds
        .all()
        .into_iter()
        .find(|t| t.custom.as_ref().is_some_and(|c| c.crd == name));
    let done = match rt {
        None if status::is_true(&crd, "Established") => {
            // Served, but not yet on this member: its controller catches up.
            return Ok(false);
        }
        None => Condition::new(
            "Terminating",
            "False",
            "NeverEstablished",
            "resource was never established",
        ),
        Some(rt) => {
            set_terminating(
                registry,
                crd_rt,
                &crd,
                Condition::new(
                    "Terminating",
                    "True",
                    "InstanceDeletionInProgress",
                    "CustomResource deletion is in progress",
                ),
            )
            .await?;
            if !*deleted {
                if let Err(e) = delete_all(registry, &rt).await {
                    let crd = controller::read(registry, crd_rt, name)
                        .await?
                        .unwrap_or(crd);
                    set_terminating(
                        registry,
                        crd_rt,
                        &crd,
                        Condition::new(
                            "Terminating",
                            "True",
                            "InstanceDeletionFailed",
                            &format!("could not issue all deletes: {e}"),
                        ),
                    )
                    .await?;
                    return Err(e);
                }
                *deleted = true;
            }
            let left = count(registry, &rt).await?;
            if left > 0 {
                if started.elapsed() >= REPORT_AFTER {
                    let crd = controller::read(registry, crd_rt, name)
                        .await?
                        .unwrap_or(crd);
                    set_terminating(
                        registry,
                        crd_rt,
                        &crd,
                        Condition::new(
                            "Terminating",
                            "True",
                            "InstanceDeletionCheck",
                            &format!(
                                "could not confirm zero CustomResources remaining: {left} left"
                            ),
                        ),
                    )
                    .await?;
                }
                return Ok(false);
            }
            Condition::new(
                "Terminating",
                "False",
                "InstanceDeletionCompleted",
                "removed all instances",
            )
        }
    };
    let crd = controller::read(registry, crd_rt, name)
        .await?
        .unwrap_or(crd);
    set_terminating(registry, crd_rt, &crd, done).await?;
    // The finalizer goes last; the resourceVersion makes it a precondition.
    let crd = match controller::read(registry, crd_rt, name).await? {
        Some(c) => c,
        None => return Ok(true),
    };
    let rest: Vec<&Value> = finalizers.iter().filter(|f| *f != FINALIZER).collect();
    let patch = json!({"metadata": {"finalizers": rest,
        "resourceVersion": crd["metadata"]["resourceVersion"]}});
    match controller::patch(registry, crd_rt, name, &patch).await {
        Ok(()) | Err(ApiError::NotFound { .. }) => {
            tracing::info!(crd = %name, "custom resources cleaned up; the CRD goes");
            Ok(true)
        }
        Err(e) => Err(e),
    }
}

/// Write condition `c` into the CRD's status, unless it is there already.
async fn set_terminating(
    registry: &Registry,
    crd_rt: &std::sync::Arc<ResourceType>,
    crd: &Value,
    c: Condition,
) -> Result<(), ApiError> {
    let now = crate::meta::rfc3339(crate::meta::now_secs());
    let mut status = crd.get("status").cloned().unwrap_or_else(|| json!({}));
    status::set_condition(&mut status, &c, &now);
    if crd.get("status") == Some(&status) {
        return Ok(());
    }
    let mut next = crd.clone();
    next["status"] = status;
    controller::write_status(registry, crd_rt, &next).await
}

/// DELETE every object of the CRD, in every namespace, as a delete of
/// the collection.
async fn delete_all(
    registry: &Registry,
    rt: &std::sync::Arc<ResourceType>,
) -> Result<(), ApiError> {
    let t = RequestTarget {
        rt: rt.clone(),
        namespace: None,
        name: None,
        subresource: None,
    };
    registry
        .serve(
            Verb::DeleteCollection,
            &t,
            &Query::new(),
            &Default::default(),
            Default::default(),
            &apiserver(),
        )
        .await
        .map(|_| ())
}

/// How many objects of the CRD are left.
async fn count(registry: &Registry, rt: &ResourceType) -> Result<usize, ApiError> {
    let mut req = RangeRequest::prefix(rt.prefix(None));
    req.consistency = Consistency::Linearizable;
    let resp = registry.storage.list(req).await?;
    Ok(resp.kvs.len())
}
