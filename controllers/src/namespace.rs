//! The namespace controller: a namespace with a deletionTimestamp and the
//! `kubernetes` finalizer is emptied, every namespaced resource that
//! discovery lists (custom resources too) deleted in the background, the
//! objects' own finalizers waited for, and the conditions Kubernetes sets
//! kept on its status; once nothing is left, `kubernetes` is removed from
//! `spec.finalizers` through `PUT /api/v1/namespaces/{name}/finalize`,
//! and the API server removes the namespace.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, NamespaceCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use serde_json::Value;
use tokio::task::JoinSet;

use crate::discovery::{self, ResourceInfo};
use crate::metrics::Metrics;
use crate::queue::Queue;
use crate::raw;
use crate::{Error, status_code};

/// The controller's name in metrics.
pub const NAME: &str = "namespace";
/// The finalizer this controller owns.
pub const FINALIZER: &str = "kubernetes";
/// How soon to look again at a namespace whose content is still going.
const REMAINING_RETRY: Duration = Duration::from_secs(1);

/// Run the controller until the future is dropped (leadership lost).
pub async fn run(client: Client, metrics: Arc<Metrics>) -> Result<(), Error> {
    let queue: Queue<String> = Queue::default();
    let mut tasks = JoinSet::new();
    tasks.spawn(worker(client.clone(), metrics.clone(), queue.clone()));
    let api: Api<Namespace> = Api::all(client);
    let stream = watcher::watcher(api, watcher::Config::default()).default_backoff();
    futures::pin_mut!(stream);
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(Event::Apply(ns) | Event::InitApply(ns)) => {
                if ns.metadata.deletion_timestamp.is_some()
                    && let Some(name) = ns.metadata.name
                {
                    queue.add(name);
                    metrics.queue_depth(NAME, queue.len());
                }
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "namespace controller: watch failed, retrying"),
        }
    }
    Ok(())
}

async fn worker(client: Client, metrics: Arc<Metrics>, queue: Queue<String>) {
    loop {
        let name = queue.next().await;
        metrics.queue_depth(NAME, queue.len());
        let result = process(&client, &name).await;
        metrics.reconciled(NAME, result.is_ok());
        match result {
            Ok(None) => queue.forget(&name),
            Ok(Some(after)) => {
                queue.forget(&name);
                queue.add_after(name, after);
            }
            Err(e) => {
                tracing::info!(namespace = %name, error = %e, "namespace deletion not finished, retrying");
                queue.retry(name);
            }
        }
    }
}

/// What one pass over a terminating namespace found.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Findings {
    /// Group versions discovery could not read, with the error.
    pub discovery_failures: Vec<(String, String)>,
    /// Group versions whose names did not parse.
    pub unparsable: Vec<String>,
    /// Deletes or lists that failed, one message each.
    pub delete_failures: Vec<String>,
    /// Objects still there, by group resource (`configmaps`, `widgets.example.com`).
    pub remaining: BTreeMap<String, usize>,
    /// Finalizers still on those objects, with how many carry each.
    pub finalizers: BTreeMap<String, usize>,
}

impl Findings {
    /// Whether the namespace may be finalized now.
    pub fn done(&self) -> bool {
        self.discovery_failures.is_empty()
            && self.unparsable.is_empty()
            && self.delete_failures.is_empty()
            && self.remaining.is_empty()
    }
}

/// The five conditions Kubernetes' namespace controller reports, with its
/// reasons and messages.
pub fn conditions(f: &Findings) -> Vec<(String, bool, String, String)> {
    let c = |t: &str, on: bool, reason: &str, message: String| {
        (t.to_string(), on, reason.to_string(), message)
    };
    let join = |items: Vec<String>| items.join(", ");
    vec![
        if f.discovery_failures.is_empty() {
            c(
                "NamespaceDeletionDiscoveryFailure",
                false,
                "ResourcesDiscovered",
                "All resources successfully discovered".into(),
            )
        } else {
            c(
                "NamespaceDeletionDiscoveryFailure",
                true,
                "DiscoveryFailed",
                format!(
                    "Discovery failed for some groups, {} failing: {}",
                    f.discovery_failures.len(),
                    join(
                        f.discovery_failures
                            .iter()
                            .map(|(gv, e)| format!(
                                "unable to retrieve the complete list of server APIs: {gv}: {e}"
                            ))
                            .collect()
                    )
                ),
            )
        },
        if f.unparsable.is_empty() {
            c(
                "NamespaceDeletionGroupVersionParsingFailure",
                false,
                "ParsedGroupVersions",
                "All legacy kube types successfully parsed".into(),
            )
        } else {
            c(
                "NamespaceDeletionGroupVersionParsingFailure",
                true,
                "GroupVersionParsingFailed",
                format!(
                    "Failed to parse some group versions: {}",
                    join(f.unparsable.clone())
                ),
            )
        },
        if f.delete_failures.is_empty() {
            c(
                "NamespaceDeletionContentFailure",
                false,
                "ContentDeleted",
                "All content successfully deleted, may be waiting on finalization".into(),
            )
        } else {
            c(
                "NamespaceDeletionContentFailure",
                true,
                "ContentDeletionFailed",
                format!(
                    "Failed to delete all resource types, {} remaining: {}",
                    f.delete_failures.len(),
                    join(f.delete_failures.clone())
                ),
            )
        },
        if f.remaining.is_empty() {
            c(
                "NamespaceContentRemaining",
                false,
                "ContentRemoved",
                "All content successfully removed".into(),
            )
        } else {
            c(
                "NamespaceContentRemaining",
                true,
                "SomeResourcesRemain",
                format!(
                    "Some resources are remaining: {}",
                    join(
                        f.remaining
                            .iter()
                            .map(|(r, n)| format!("{r} has {n} resource instances"))
                            .collect()
                    )
                ),
            )
        },
        if f.finalizers.is_empty() {
            c(
                "NamespaceFinalizersRemaining",
                false,
                "ContentHasNoFinalizers",
                "All content-preserving finalizers finished".into(),
            )
        } else {
            c(
                "NamespaceFinalizersRemaining",
                true,
                "SomeFinalizersRemain",
                format!(
                    "Some content in the namespace has finalizers remaining: {}",
                    join(
                        f.finalizers
                            .iter()
                            .map(|(r, n)| format!("{r} in {n} resource instances"))
                            .collect()
                    )
                ),
            )
        },
    ]
}

/// One pass over namespace `name`; `Ok(Some(d))`: look again after `d`.
async fn process(client: &Client, name: &str) -> Result<Option<Duration>, Error> {
    let api: Api<Namespace> = Api::all(client.clone());
    let Some(ns) = api.get_opt(name).await? else {
        return Ok(None);
    };
    if ns.metadata.deletion_timestamp.is_none() || !has_finalizer(&ns) {
        return Ok(None);
    }
    let mut findings = Findings::default();
    match discovery::discover(client).await {
        Ok(resources) => {
            findings.discovery_failures = resources.failed.clone();
            findings.unparsable = resources.unparsable.clone();
            let targets: Vec<&Arc<ResourceInfo>> = resources
                .preferred
                .iter()
                .filter(|r| {
                    r.namespaced
                        && r.supports("list")
                        && (r.supports("delete") || r.supports("deletecollection"))
                })
                .collect();
            for r in &targets {
                if let Err(e) = delete_all(client, r, name).await {
                    findings
                        .delete_failures
                        .push(format!("{}: {e}", r.group_resource()));
                }
            }
            for r in &targets {
                match raw_list(client, r, name).await {
                    Ok(items) if items.is_empty() => {}
                    Ok(items) => {
                        findings.remaining.insert(r.group_resource(), items.len());
                        for i in &items {
                            for f in raw::finalizers(i) {
                                *findings.finalizers.entry(f).or_default() += 1;
                            }
                        }
                    }
                    Err(e) => findings
                        .delete_failures
                        .push(format!("{}: {e}", r.group_resource())),
                }
            }
        }
        Err(e) => findings
            .discovery_failures
            .push(("/api, /apis".into(), e.to_string())),
    }
    update_status(&api, name, &findings).await?;
    if !findings.discovery_failures.is_empty()
        || !findings.unparsable.is_empty()
        || !findings.delete_failures.is_empty()
    {
        return Err(Error::Invalid(format!(
            "namespace {name}: {:?}",
            conditions(&findings)
                .into_iter()
                .filter(|c| c.1)
                .map(|c| c.3)
                .collect::<Vec<_>>()
        )));
    }
    if !findings.remaining.is_empty() {
        return Ok(Some(REMAINING_RETRY));
    }
    finalize(&api, name).await?;
    Ok(None)
}

fn has_finalizer(ns: &Namespace) -> bool {
    ns.spec
        .as_ref()
        .and_then(|s| s.finalizers.as_ref())
        .is_some_and(|f| f.iter().any(|x| x == FINALIZER))
}

/// Delete every object of `r` in namespace `ns`, in the background (their
/// dependents are the garbage collector's).
async fn delete_all(client: &Client, r: &ResourceInfo, ns: &str) -> Result<(), Error> {
    let url = raw::api(client, r, Some(ns)).resource_url().to_string();
    if r.supports("deletecollection") {
        let req = kube::core::Request::new(&url)
            .delete_collection(&DeleteParams::background(), &ListParams::default())
            .map_err(|e| Error::Invalid(e.to_string()))?;
        match client.request_text(req).await {
            Ok(_) => return Ok(()),
            // Not offered after all: one by one below.
            Err(e) if matches!(status_code(&e), Some(404 | 405)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    for item in raw_list(client, r, ns).await? {
        let m = &item["metadata"];
        let (Some(name), Some(uid)) = (
            m.get("name").and_then(Value::as_str),
            m.get("uid").and_then(Value::as_str),
        ) else {
            continue;
        };
        if m.get("deletionTimestamp").is_some() {
            continue;
        }
        raw::delete(
            client,
            r,
            Some(ns),
            name,
            uid,
            None,
            kube::api::PropagationPolicy::Background,
        )
        .await?;
    }
    Ok(())
}

/// The objects of `r` in namespace `ns`, as JSON.
async fn raw_list(client: &Client, r: &ResourceInfo, ns: &str) -> Result<Vec<Value>, Error> {
    let url = raw::api(client, r, Some(ns)).resource_url().to_string();
    let mut items = Vec::new();
    let mut lp = ListParams::default().limit(500);
    loop {
        let req = kube::core::Request::new(&url)
            .list(&lp)
            .map_err(|e| Error::Invalid(e.to_string()))?;
        let page: Value = client.request(req).await?;
        if let Some(a) = page.get("items").and_then(Value::as_array) {
            items.extend(a.iter().cloned());
        }
        match page
            .pointer("/metadata/continue")
            .and_then(Value::as_str)
            .filter(|c| !c.is_empty())
        {
            Some(c) => lp.continue_token = Some(c.to_string()),
            None => return Ok(items),
        }
    }
}

/// Write the conditions (and phase Terminating) when they changed.
async fn update_status(api: &Api<Namespace>, name: &str, f: &Findings) -> Result<(), Error> {
    for _ in 0..3 {
        let Some(mut ns) = api.get_opt(name).await? else {
            return Ok(());
        };
        let now = Time(Timestamp::now());
        let status = ns.status.get_or_insert_with(Default::default);
        let mut conds = status.conditions.clone().unwrap_or_default();
        let mut changed = status.phase.as_deref() != Some("Terminating");
        for (type_, on, reason, message) in conditions(f) {
            let s = if on { "True" } else { "False" };
            match conds.iter_mut().find(|c| c.type_ == type_) {
                Some(c)
                    if c.status == s
                        && c.reason.as_deref() == Some(reason.as_str())
                        && c.message.as_deref() == Some(message.as_str()) => {}
                Some(c) => {
                    if c.status != s {
                        c.last_transition_time = Some(now.clone());
                    }
                    c.status = s.to_string();
                    c.reason = Some(reason);
                    c.message = Some(message);
                    changed = true;
                }
                None => {
                    conds.push(NamespaceCondition {
                        type_,
                        status: s.to_string(),
                        reason: Some(reason),
                        message: Some(message),
                        last_transition_time: Some(now.clone()),
                    });
                    changed = true;
                }
            }
        }
        if !changed {
            return Ok(());
        }
        status.conditions = Some(conds);
        status.phase = Some("Terminating".to_string());
        match api.replace_status(name, &PostParams::default(), &ns).await {
            Ok(_) => return Ok(()),
            Err(e) if status_code(&e) == Some(409) => continue,
            Err(e) if status_code(&e) == Some(404) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::Invalid(format!(
        "namespace {name}: its status kept changing"
    )))
}

/// Remove `kubernetes` from `spec.finalizers` through the finalize subresource.
async fn finalize(api: &Api<Namespace>, name: &str) -> Result<(), Error> {
    let Some(mut ns) = api.get_opt(name).await? else {
        return Ok(());
    };
    if let Some(f) = ns.spec.as_mut().and_then(|s| s.finalizers.as_mut()) {
        f.retain(|x| x != FINALIZER);
    }
    match api
        .replace_subresource("finalize", name, &PostParams::default(), &ns)
        .await
    {
        Ok(_) => {
            tracing::info!(namespace = %name, "namespace emptied and finalized");
            Ok(())
        }
        Err(e) if status_code(&e) == Some(404) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_say_what_remains_as_kubernetes_words_it() {
        let mut f = Findings::default();
        let c = conditions(&f);
        assert_eq!(c.len(), 5);
        assert!(c.iter().all(|c| !c.1));
        assert!(f.done());
        assert_eq!(c[3].2, "ContentRemoved");
        f.remaining.insert("configmaps".into(), 2);
        f.remaining.insert("widgets.example.com".into(), 1);
        f.finalizers.insert("example.com/keep".into(), 1);
        let c = conditions(&f);
        assert!(!f.done());
        assert_eq!(
            (c[3].0.as_str(), c[3].1, c[3].2.as_str(), c[3].3.as_str()),
            (
                "NamespaceContentRemaining",
                true,
                "SomeResourcesRemain",
                "Some resources are remaining: configmaps has 2 resource instances, widgets.example.com has 1 resource instances"
            )
        );
        assert_eq!(
            c[4].3,
            "Some content in the namespace has finalizers remaining: example.com/keep in 1 resource instances"
        );
        f.delete_failures.push("pods: forbidden".into());
        f.discovery_failures
            .push(("example.com/v1".into(), "503".into()));
        let c = conditions(&f);
        assert_eq!((c[0].1, c[0].2.as_str()), (true, "DiscoveryFailed"));
        assert_eq!((c[2].1, c[2].2.as_str()), (true, "ContentDeletionFailed"));
        assert_eq!(
            c[2].3,
            "Failed to delete all resource types, 1 remaining: pods: forbidden"
        );
    }
}
