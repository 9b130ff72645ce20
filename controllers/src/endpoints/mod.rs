//! The endpoints controller (kube-controller-manager's `endpoint`): for
//! every Service with a selector, an Endpoints object of the same name
//! listing the selected pods' addresses, ready ones in `addresses` and the
//! others in `notReadyAddresses`, with the ports each serves ([`plan`]).
//!
//! It reconciles a Service when it changes, when a pod it selects (or
//! selected before a label change) changes, and when its Endpoints object
//! is changed or deleted by someone else. The Endpoints it writes carry
//! the label `endpoints.kubernetes.io/managed-by: endpoint-controller`, as
//! Kubernetes 1.33 marks them; once their Service is gone they are deleted
//! (on the Service's deletion, and by a sweep after every re-list, so a
//! deletion missed while another member led is not left behind).

pub mod plan;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams, PostParams, Preconditions};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, watcher};

use crate::Error;
use crate::context::Context;
use crate::events::Involved;

/// The controller's name in metrics, events and `--controllers`.
pub const NAME: &str = "endpoints";

/// The label Kubernetes puts on the Endpoints this controller manages.
pub const MANAGED_BY: &str = "endpoints.kubernetes.io/managed-by";
const MANAGER: &str = "endpoint-controller";
/// The label on the Endpoints of a headless Service.
pub const HEADLESS: &str = "service.kubernetes.io/headless";

/// Run until the future is dropped (leadership lost).
pub async fn run(ctx: Context) -> Result<(), Error> {
    let client = ctx.client.clone();
    let controller = Controller::new(
        Api::<Service>::all(client.clone()),
        watcher::Config::default(),
    );
    let services = controller.store();
    let controller = controller
        .watches(
            Api::<Pod>::all(client.clone()),
            watcher::Config::default(),
            pod_mapper(services.clone()),
        )
        .watches(
            Api::<Endpoints>::all(client.clone()),
            watcher::Config::default().labels(&format!("{MANAGED_BY}={MANAGER}")),
            |ep: Endpoints| {
                let name = ep.metadata.name?;
                Some(ObjectRef::new(&name).within(ep.metadata.namespace.as_deref()?))
            },
        );
    let sweeper = sweep_on_service_changes(ctx.clone(), services);
    tokio::select! {
        _ = crate::runner::run(controller, ctx, reconcile) => Ok(()),
        r = sweeper => r,
    }
}

/// What each pod (namespace, name) was last mapped to, so a pod whose
/// labels changed also triggers what it matched before. Only pods that
/// match something are remembered.
pub struct LastMatched<K: kube::Resource>(Mutex<Seen<K>>);

/// (namespace, pod name) → what the pod matched.
type Seen<K> = HashMap<(String, String), Vec<ObjectRef<K>>>;

impl<K: kube::Resource> Default for LastMatched<K> {
    fn default() -> Self {
        LastMatched(Mutex::default())
    }
}

impl<K: kube::Resource<DynamicType = ()>> LastMatched<K> {
    /// Record that `pod` matches `now`; what it matches now or matched before.
    pub fn union(&self, pod: &Pod, now: Vec<ObjectRef<K>>) -> Vec<ObjectRef<K>> {
        let key = (
            pod.metadata.namespace.clone().unwrap_or_default(),
            pod.metadata.name.clone().unwrap_or_default(),
        );
        let mut last = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut all = if now.is_empty() {
            last.remove(&key).unwrap_or_default()
        } else {
            last.insert(key, now.clone()).unwrap_or_default()
        };
        all.extend(now);
        all.sort_by_key(|r| r.name.clone());
        all.dedup();
        all
    }
}

/// A pod event → the Services that select it now or selected it when last
/// seen (so a pod whose labels changed leaves its old Service too).
pub fn pod_mapper(
    services: Store<Service>,
) -> impl Fn(Pod) -> Vec<ObjectRef<Service>> + Send + Sync + 'static {
    let last = LastMatched::<Service>::default();
    move |pod: Pod| {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let now: Vec<ObjectRef<Service>> = services
            .state()
            .iter()
            .filter(|s| s.metadata.namespace.as_deref() == Some(ns.as_str()))
            .filter(|s| {
                s.spec
                    .as_ref()
                    .and_then(|sp| sp.selector.as_ref())
                    .is_some_and(|sel| plan::selects(sel, &pod))
            })
            .map(|s| ObjectRef::from_obj(&**s))
            .collect();
        last.union(&pod, now)
    }
}

/// The pods of `svc`'s namespace that its selector selects (a live list).
pub async fn selected_pods(client: &kube::Client, svc: &Service) -> Result<Vec<Pod>, Error> {
    let Some(selector) = svc.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
        return Ok(vec![]);
    };
    let ns = svc.metadata.namespace.as_deref().unwrap_or("default");
    let labels = selector
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let list = Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(&labels))
        .await?;
    Ok(list.items)
}

/// Make the Service's Endpoints match its pods.
async fn reconcile(svc: Arc<Service>, ctx: Context) -> Result<Action, Error> {
    if !plan::managed(&svc) || svc.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = svc.metadata.namespace.as_deref().unwrap_or("default");
    let name = svc.metadata.name.clone().unwrap_or_default();
    let pods = selected_pods(&ctx.client, &svc).await?;
    let (subsets, truncated) = plan::subsets(&svc, &pods);
    let api = Api::<Endpoints>::namespaced(ctx.client.clone(), ns);
    let current = api.get_opt(&name).await?;
    let mut labels: BTreeMap<String, String> = svc.metadata.labels.clone().unwrap_or_default();
    labels.insert(MANAGED_BY.into(), MANAGER.into());
    let headless = svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None");
    if headless {
        labels.insert(HEADLESS.into(), String::new());
    } else {
        labels.remove(HEADLESS);
    }
    let mut annotations = current
        .as_ref()
        .and_then(|c| c.metadata.annotations.clone())
        .unwrap_or_default();
    if truncated {
        annotations.insert(plan::OVER_CAPACITY.into(), "truncated".into());
    } else {
        annotations.remove(plan::OVER_CAPACITY);
    }
    let subsets = (!subsets.is_empty()).then_some(subsets);
    match current {
        Some(cur) => {
            let same = cur.subsets == subsets
                && cur.metadata.labels.as_ref() == Some(&labels)
                && cur.metadata.annotations.clone().unwrap_or_default() == annotations;
            if same {
                return Ok(Action::await_change());
            }
            let mut next = cur.clone();
            next.subsets = subsets;
            next.metadata.labels = Some(labels);
            next.metadata.annotations = (!annotations.is_empty()).then_some(annotations);
            // resourceVersion from the read: a concurrent writer makes this a 409, retried.
            if let Err(e) = api.replace(&name, &PostParams::default(), &next).await {
                if crate::status_code(&e) != Some(409) {
                    let msg = format!("Failed to update endpoint {ns}/{name}: {e}");
                    ctx.recorder
                        .publish(
                            &Involved::of(&*svc),
                            "Warning",
                            "FailedToUpdateEndpoint",
                            &msg,
                        )
                        .await;
                }
                return Err(e.into());
            }
            ctx.metrics.patched(NAME);
        }
        None => {
            let ep = Endpoints {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(ns.to_string()),
                    labels: Some(labels),
                    annotations: (!annotations.is_empty()).then_some(annotations),
                    ..Default::default()
                },
                subsets,
            };
            match api.create(&PostParams::default(), &ep).await {
                Ok(_) => ctx.metrics.created(NAME),
                // Written by another pass meanwhile: the next pass compares.
                Err(e) if crate::status_code(&e) == Some(409) => {
                    return Ok(Action::requeue(Duration::from_millis(100)));
                }
                Err(e) => {
                    let msg = format!("Failed to create endpoint for service {ns}/{name}: {e}");
                    ctx.recorder
                        .publish(
                            &Involved::of(&*svc),
                            "Warning",
                            "FailedToCreateEndpoint",
                            &msg,
                        )
                        .await;
                    return Err(e.into());
                }
            }
        }
    }
    Ok(Action::await_change())
}

/// Delete managed Endpoints whose Service is gone: after each Service
/// deletion and after every (re-)list of the Services.
async fn sweep_on_service_changes(ctx: Context, services: Store<Service>) -> Result<(), Error> {
    let mut events = watcher(
        Api::<Service>::all(ctx.client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .boxed();
    while let Some(ev) = events.next().await {
        match ev {
            Ok(watcher::Event::Delete(svc)) => {
                let ns = svc.metadata.namespace.unwrap_or_default();
                let name = svc.metadata.name.unwrap_or_default();
                delete_orphan(&ctx, &ns, &name).await;
            }
            Ok(watcher::Event::InitDone) => {
                if services.wait_until_ready().await.is_err() {
                    return Ok(());
                }
                sweep(&ctx).await;
            }
            _ => {}
        }
    }
    Ok(())
}

/// One pass over the managed Endpoints: those without a Service go.
async fn sweep(ctx: &Context) {
    let lp = ListParams::default().labels(&format!("{MANAGED_BY}={MANAGER}"));
    let Ok(list) = Api::<Endpoints>::all(ctx.client.clone()).list(&lp).await else {
        return;
    };
    let live: HashSet<(String, String)> = match Api::<Service>::all(ctx.client.clone())
        .list(&ListParams::default())
        .await
    {
        Ok(l) => l
            .items
            .into_iter()
            .map(|s| {
                (
                    s.metadata.namespace.unwrap_or_default(),
                    s.metadata.name.unwrap_or_default(),
                )
            })
            .collect(),
        Err(_) => return,
    };
    for ep in list.items {
        let key = (
            ep.metadata.namespace.clone().unwrap_or_default(),
            ep.metadata.name.clone().unwrap_or_default(),
        );
        if !live.contains(&key) {
            delete_orphan(ctx, &key.0, &key.1).await;
        }
    }
}

/// Delete the managed Endpoints `ns/name` if no Service of that name exists
/// (a live read: the Service may have been created again).
async fn delete_orphan(ctx: &Context, ns: &str, name: &str) {
    let svc = Api::<Service>::namespaced(ctx.client.clone(), ns);
    if !matches!(svc.get_opt(name).await, Ok(None)) {
        return;
    }
    let api = Api::<Endpoints>::namespaced(ctx.client.clone(), ns);
    let Ok(Some(ep)) = api.get_opt(name).await else {
        return;
    };
    let managed = ep
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(MANAGED_BY))
        .is_some_and(|m| m == MANAGER);
    if !managed {
        return;
    }
    let dp = DeleteParams {
        preconditions: Some(Preconditions {
            uid: ep.metadata.uid.clone(),
            resource_version: ep.metadata.resource_version.clone(),
        }),
        ..Default::default()
    };
    match api.delete(name, &dp).await {
        Ok(_) => ctx.metrics.deleted(NAME),
        Err(e) => tracing::debug!(namespace = ns, name, error = %e, "endpoints not deleted"),
    }
}
