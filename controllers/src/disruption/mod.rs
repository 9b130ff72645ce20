//! The disruption controller (kube-controller-manager's `disruption`):
//! each PodDisruptionBudget's status says how many of its pods are
//! expected, how many must stay healthy, how many are healthy and how many
//! may be disrupted now ([`plan`]), with the `DisruptionAllowed` condition
//! (`SufficientPods` / `InsufficientPods`, `SyncFailed` when the expected
//! count cannot be found) and `observedGeneration`. For percentages and
//! `maxUnavailable` the expected count is the replicas wanted by the pods'
//! controllers (ReplicaSet, or the Deployment that owns it; StatefulSet;
//! ReplicationController). A budget is recomputed when it changes and when
//! a pod it selects (or selected) changes.
//!
//! The eviction subresource that consults budgets is not served yet (see
//! docs/CONTROLLERS.md).

pub mod plan;

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{Controller, watcher};

use crate::Error;
use crate::context::Context;
use crate::endpoints::plan as pods;
use crate::events::Involved;
use plan::Budget;

/// The controller's name in metrics, events and `--controllers`.
pub const NAME: &str = "disruption";

/// The condition Kubernetes reports on a budget.
pub const CONDITION: &str = "DisruptionAllowed";

/// How long an evicted pod that is not yet being deleted counts as
/// disrupted (Kubernetes' `DeletionTimeout`).
const DELETION_TIMEOUT_SECS: i64 = 120;

/// Run until the future is dropped (leadership lost).
pub async fn run(ctx: Context) -> Result<(), Error> {
    let client = ctx.client.clone();
    let controller = Controller::new(
        Api::<PodDisruptionBudget>::all(client.clone()),
        watcher::Config::default(),
    );
    let budgets = controller.store();
    let controller = controller.watches(
        Api::<Pod>::all(client),
        watcher::Config::default(),
        pod_mapper(budgets),
    );
    crate::runner::run(controller, ctx, reconcile).await;
    Ok(())
}

/// Whether `labels` satisfy `sel` (`matchLabels` and `matchExpressions`).
pub fn selects(sel: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let labels_ok = sel
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let exprs_ok = sel.match_expressions.iter().flatten().all(|e| {
        let values = e.values.as_deref().unwrap_or(&[]);
        let have = labels.get(&e.key);
        match e.operator.as_str() {
            "In" => have.is_some_and(|v| values.contains(v)),
            "NotIn" => have.is_none_or(|v| !values.contains(v)),
            "Exists" => have.is_some(),
            "DoesNotExist" => have.is_none(),
            _ => false,
        }
    });
    labels_ok && exprs_ok
}

/// `sel` as a `labelSelector` query (`a=b,k in (x,y),!gone`).
pub fn selector_query(sel: &LabelSelector) -> String {
    let mut parts: Vec<String> = sel
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for e in sel.match_expressions.iter().flatten() {
        let values = e.values.as_deref().unwrap_or(&[]).join(",");
        parts.push(match e.operator.as_str() {
            "In" => format!("{} in ({values})", e.key),
            "NotIn" => format!("{} notin ({values})", e.key),
            "Exists" => e.key.clone(),
            _ => format!("!{}", e.key),
        });
    }
    parts.join(",")
}

/// A pod event → the budgets selecting it now or when last seen.
fn pod_mapper(
    budgets: Store<PodDisruptionBudget>,
) -> impl Fn(Pod) -> Vec<ObjectRef<PodDisruptionBudget>> + Send + Sync + 'static {
    let last = crate::endpoints::LastMatched::<PodDisruptionBudget>::default();
    move |pod: Pod| {
        let ns = pod.metadata.namespace.clone();
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        let now: Vec<_> = budgets
            .state()
            .iter()
            .filter(|b| b.metadata.namespace == ns)
            .filter(|b| {
                b.spec
                    .as_ref()
                    .and_then(|s| s.selector.as_ref())
                    .is_some_and(|s| selects(s, &labels))
            })
            .map(|b| ObjectRef::from_obj(&**b))
            .collect();
        last.union(&pod, now)
    }
}

fn budget(pdb: &PodDisruptionBudget) -> Budget {
    let spec = pdb.spec.as_ref();
    match (
        spec.and_then(|s| s.max_unavailable.clone()),
        spec.and_then(|s| s.min_available.clone()),
    ) {
        (Some(m), _) => Budget::MaxUnavailable(m),
        (None, Some(m)) => Budget::MinAvailable(m),
        (None, None) => Budget::Empty,
    }
}

/// The replicas the controllers of `matched` pods want, and the pods
/// that have no controller (left out, as Kubernetes leaves them out).
async fn expected_scale(
    client: &kube::Client,
    ns: &str,
    matched: &[Pod],
) -> Result<(i32, Vec<String>), String> {
    let mut seen: BTreeMap<String, i32> = BTreeMap::new();
    let mut unmanaged = Vec::new();
    for pod in matched {
        let Some(owner) = pod
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true))
        else {
            unmanaged.push(pod.metadata.name.clone().unwrap_or_default());
            continue;
        };
        if seen.contains_key(&owner.uid) {
            continue;
        }
        let err = |e: kube::Error| e.to_string();
        let (uid, replicas) = match (owner.api_version.as_str(), owner.kind.as_str()) {
            ("apps/v1", "ReplicaSet") => {
                let rs = Api::<ReplicaSet>::namespaced(client.clone(), ns)
                    .get(&owner.name)
                    .await
                    .map_err(err)?;
                let deploy = rs
                    .metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .find(|o| o.controller == Some(true) && o.kind == "Deployment")
                    .cloned();
                match deploy {
                    Some(d) => {
                        let dep = Api::<Deployment>::namespaced(client.clone(), ns)
                            .get(&d.name)
                            .await
                            .map_err(err)?;
                        (d.uid, dep.spec.and_then(|s| s.replicas).unwrap_or(1))
                    }
                    None => (
                        owner.uid.clone(),
                        rs.spec.and_then(|s| s.replicas).unwrap_or(1),
                    ),
                }
            }
            ("apps/v1", "StatefulSet") => {
                let s = Api::<StatefulSet>::namespaced(client.clone(), ns)
                    .get(&owner.name)
                    .await
                    .map_err(err)?;
                (
                    owner.uid.clone(),
                    s.spec.and_then(|s| s.replicas).unwrap_or(1),
                )
            }
            ("v1", "ReplicationController") => {
                let rc = Api::<ReplicationController>::namespaced(client.clone(), ns)
                    .get(&owner.name)
                    .await
                    .map_err(err)?;
                (
                    owner.uid.clone(),
                    rc.spec.and_then(|s| s.replicas).unwrap_or(1),
                )
            }
            (_, kind) => {
                return Err(format!(
                    "found no controllers for pod {:?}: {kind} {:?} has no scale this controller reads",
                    pod.metadata.name.clone().unwrap_or_default(),
                    owner.name
                ));
            }
        };
        seen.insert(owner.uid.clone(), 0);
        seen.insert(uid, replicas);
    }
    Ok((seen.values().sum(), unmanaged))
}

/// Recompute one budget's status.
async fn reconcile(pdb: Arc<PodDisruptionBudget>, ctx: Context) -> Result<Action, Error> {
    let ns = pdb.metadata.namespace.clone().unwrap_or_default();
    let name = pdb.metadata.name.clone().unwrap_or_default();
    let involved = Involved::of(&*pdb);
    let matched: Vec<Pod> = match pdb.spec.as_ref().and_then(|s| s.selector.as_ref()) {
        None => vec![],
        Some(sel) => {
            let lp = ListParams::default().labels(&selector_query(sel));
            Api::<Pod>::namespaced(ctx.client.clone(), &ns)
                .list(&lp)
                .await?
                .items
        }
    };
    if matched.is_empty() {
        ctx.recorder
            .publish(&involved, "Normal", "NoPods", "No matching pods found")
            .await;
    }
    // Pods evicted lately that are not being deleted yet: not healthy, for
    // two minutes at most (Kubernetes' DeletionTimeout).
    let now = k8s_openapi::jiff::Timestamp::now();
    let disrupted: BTreeMap<String, Time> = pdb
        .status
        .as_ref()
        .and_then(|s| s.disrupted_pods.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|(name, at)| {
            now.as_second() - at.0.as_second() < DELETION_TIMEOUT_SECS
                && matched.iter().any(|p| {
                    p.metadata.name.as_deref() == Some(name.as_str()) && !pods::terminating(p)
                })
        })
        .collect();
    let healthy = matched
        .iter()
        .filter(|p| !pods::terminating(p) && pods::ready(p))
        .filter(|p| !disrupted.contains_key(p.metadata.name.as_deref().unwrap_or_default()))
        .count() as i32;
    let b = budget(&pdb);
    let scale = if plan::needs_scale(&b) {
        match expected_scale(&ctx.client, &ns, &matched).await {
            Ok((n, unmanaged)) => {
                if !unmanaged.is_empty() {
                    ctx.recorder.publish(&involved, "Warning", "UnmanagedPods", &format!(
                        "Pods selected by this PodDisruptionBudget (selector: {}) were found to be unmanaged. As a result, the status of the PDB cannot be calculated correctly, which may result in undefined behavior. To account for these pods please set \".spec.minAvailable\" field of the PDB to an integer value.",
                        pdb.spec.as_ref().and_then(|s| s.selector.as_ref()).map(selector_query).unwrap_or_default()
                    )).await;
                }
                Ok(Some(n))
            }
            Err(e) => Err(e),
        }
    } else {
        Ok(None)
    };
    let counts = scale.and_then(|s| plan::counts(&b, matched.len() as i32, healthy, s));
    let generation = pdb.metadata.generation;
    let old = pdb.status.clone().unwrap_or_default();
    let (counts, status, reason, message) = match counts {
        Ok(c) if c.disruptions_allowed > 0 => (c, "True", "SufficientPods", String::new()),
        Ok(c) => (c, "False", "InsufficientPods", String::new()),
        Err(e) => {
            ctx.recorder
                .publish(
                    &involved,
                    "Warning",
                    "CalculateExpectedPodCountFailed",
                    &format!("Failed to calculate the number of expected pods: {e}"),
                )
                .await;
            // Fail safe, as Kubernetes: nothing may be disrupted.
            let c = plan::Counts {
                expected: old.expected_pods,
                desired_healthy: old.desired_healthy,
                current_healthy: old.current_healthy,
                disruptions_allowed: 0,
            };
            (c, "False", "SyncFailed", e)
        }
    };
    let previous = old
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == CONDITION)
        .cloned();
    let transition = match &previous {
        Some(p) if p.status == status => p.last_transition_time.clone(),
        _ => Time(k8s_openapi::jiff::Timestamp::now()),
    };
    let condition = Condition {
        type_: CONDITION.into(),
        status: status.into(),
        reason: reason.into(),
        message,
        observed_generation: generation,
        last_transition_time: transition,
    };
    let next_status = PodDisruptionBudgetStatus {
        current_healthy: counts.current_healthy,
        desired_healthy: counts.desired_healthy,
        expected_pods: counts.expected,
        disruptions_allowed: counts.disruptions_allowed,
        observed_generation: generation,
        disrupted_pods: (!disrupted.is_empty()).then_some(disrupted),
        conditions: Some(vec![condition]),
    };
    if pdb.status.as_ref() != Some(&next_status) {
        let mut next = (*pdb).clone();
        next.status = Some(next_status);
        Api::<PodDisruptionBudget>::namespaced(ctx.client.clone(), &ns)
            .replace_status(&name, &PostParams::default(), &next)
            .await?;
        ctx.metrics.patched(NAME);
    }
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_match_and_print_as_kubernetes_writes_them() {
        let sel: LabelSelector = serde_json::from_value(serde_json::json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["fe", "be"]},
                                 {"key": "canary", "operator": "DoesNotExist"}]}))
        .unwrap();
        let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert!(selects(&sel, &labels(&[("app", "web"), ("tier", "fe")])));
        assert!(!selects(&sel, &labels(&[("app", "web"), ("tier", "db")])));
        assert!(!selects(
            &sel,
            &labels(&[("app", "web"), ("tier", "fe"), ("canary", "1")])
        ));
        assert_eq!(selector_query(&sel), "app=web,tier in (fe,be),!canary");
        assert!(
            selects(&LabelSelector::default(), &labels(&[])),
            "empty selects all"
        );
    }
}
