//! The resourcequota controller (kube-controller-manager's
//! `resourcequota`): each ResourceQuota's `status.hard` mirrors its
//! `spec.hard`, and `status.used` says how much of each of those resources
//! its namespace uses now ([`usage`]): pods and their CPU, memory and other
//! requests and limits (per `spec.scopes` Terminating, NotTerminating,
//! BestEffort, NotBestEffort), services, node ports and load balancers,
//! claims and their storage, config maps, secrets and `count/<resource>.<group>`
//! of any listed kind. A quota is recomputed when anything it counts
//! changes in its namespace, and every five minutes (as Kubernetes'
//! resync) for the kinds it does not watch.
//!
//! Admission (refusing a create that would exceed a quota) is not here:
//! see docs/CONTROLLERS.md.

pub mod quantity;
pub mod usage;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolumeClaim, Pod, ResourceQuota, ResourceQuotaStatus, Secret, Service,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::Resource;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{Controller, watcher};

use crate::Error;
use crate::context::Context;
use usage::Scope;

/// The controller's name in metrics, events and `--controllers`.
pub const NAME: &str = "resourcequota";

/// Kubernetes' quota resync period.
const RESYNC: Duration = Duration::from_secs(300);

/// Run until the future is dropped (leadership lost).
pub async fn run(ctx: Context) -> Result<(), Error> {
    let client = ctx.client.clone();
    let controller = Controller::new(
        Api::<ResourceQuota>::all(client.clone()),
        watcher::Config::default(),
    );
    let quotas = controller.store();
    let controller = controller
        .watches(
            Api::<Pod>::all(client.clone()),
            watcher::Config::default(),
            in_namespace(quotas.clone()),
        )
        .watches(
            Api::<Service>::all(client.clone()),
            watcher::Config::default(),
            in_namespace(quotas.clone()),
        )
        .watches(
            Api::<ConfigMap>::all(client.clone()),
            watcher::Config::default(),
            in_namespace(quotas.clone()),
        )
        .watches(
            Api::<Secret>::all(client.clone()),
            watcher::Config::default(),
            in_namespace(quotas.clone()),
        )
        .watches(
            Api::<PersistentVolumeClaim>::all(client),
            watcher::Config::default(),
            in_namespace(quotas),
        );
    crate::runner::run(controller, ctx, reconcile).await;
    Ok(())
}

/// An object's change → the quotas of its namespace.
fn in_namespace<K: Resource>(
    quotas: Store<ResourceQuota>,
) -> impl Fn(K) -> Vec<ObjectRef<ResourceQuota>> + Send + Sync + 'static {
    move |obj: K| {
        let ns = obj.meta().namespace.clone();
        quotas
            .state()
            .iter()
            .filter(|q| q.metadata.namespace == ns)
            .map(|q| ObjectRef::from_obj(&**q))
            .collect()
    }
}

/// Whether any of `names` is one of `wanted`, or starts with one ending in `.`.
fn asks(names: &[String], wanted: &[&str]) -> bool {
    names.iter().any(|n| {
        wanted
            .iter()
            .any(|w| n == w || (w.ends_with('.') && n.starts_with(w)))
    })
}

/// The API resource a `count/<resource>[.<group>]` or bare object-count
/// name counts, found through discovery.
async fn counted(client: &kube::Client, name: &str) -> Option<ApiResource> {
    let what = name.strip_prefix("count/").unwrap_or(name);
    let (plural, group) = what.split_once('.').unwrap_or((what, ""));
    if group.is_empty() {
        let ar = ApiResource {
            group: String::new(),
            version: "v1".into(),
            api_version: "v1".into(),
            kind: String::new(),
            plural: plural.into(),
        };
        return Some(ar);
    }
    let g = kube::discovery::group(client, group).await.ok()?;
    g.recommended_resources()
        .into_iter()
        .map(|(ar, _)| ar)
        .find(|ar| ar.plural == plural)
}

/// Recompute one quota's status.
async fn reconcile(quota: Arc<ResourceQuota>, ctx: Context) -> Result<Action, Error> {
    let ns = quota.metadata.namespace.clone().unwrap_or_default();
    let name = quota.metadata.name.clone().unwrap_or_default();
    let hard: BTreeMap<String, Quantity> = quota
        .spec
        .as_ref()
        .and_then(|s| s.hard.clone())
        .unwrap_or_default();
    let scopes: Vec<Scope> = quota
        .spec
        .as_ref()
        .and_then(|s| s.scopes.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|s| Scope::parse(s))
        .collect();
    let names: Vec<String> = hard.keys().cloned().collect();
    let client = &ctx.client;
    let mut objects = usage::Namespace::default();
    let lp = ListParams::default();
    if asks(
        &names,
        &[
            "pods",
            "count/pods",
            "cpu",
            "memory",
            "ephemeral-storage",
            "requests.",
            "limits.",
            "hugepages-",
        ],
    ) {
        objects.pods = Api::<Pod>::namespaced(client.clone(), &ns)
            .list(&lp)
            .await?
            .items;
    }
    if asks(&names, &["services", "count/services", "services."]) {
        objects.services = Api::<Service>::namespaced(client.clone(), &ns)
            .list(&lp)
            .await?
            .items;
    }
    if asks(
        &names,
        &[
            "persistentvolumeclaims",
            "count/persistentvolumeclaims",
            "requests.storage",
        ],
    ) {
        objects.pvcs = Api::<PersistentVolumeClaim>::namespaced(client.clone(), &ns)
            .list(&lp)
            .await?
            .items;
    }
    for n in &names {
        let object_count = n.starts_with("count/")
            || matches!(
                n.as_str(),
                "configmaps" | "secrets" | "replicationcontrollers" | "resourcequotas"
            );
        let known = matches!(
            n.as_str(),
            "count/pods" | "count/services" | "count/persistentvolumeclaims"
        );
        if !object_count || known {
            continue;
        }
        let Some(ar) = counted(client, n).await else {
            continue;
        };
        let api = Api::<DynamicObject>::namespaced_with(client.clone(), &ns, &ar);
        let count = api.list(&lp).await?.items.len();
        objects.counts.insert(n.clone(), count);
    }
    let used: BTreeMap<String, Quantity> = names
        .iter()
        .filter_map(|n| Some((n.clone(), Quantity(usage::used(n, &objects, &scopes)?))))
        .collect();
    let status = ResourceQuotaStatus {
        hard: Some(hard),
        used: Some(used),
    };
    if quota.status.as_ref() != Some(&status) {
        let mut next = (*quota).clone();
        next.status = Some(status);
        // The resourceVersion read: a concurrent change makes this a 409, retried.
        Api::<ResourceQuota>::namespaced(client.clone(), &ns)
            .replace_status(&name, &PostParams::default(), &next)
            .await?;
        ctx.metrics.patched(NAME);
    }
    Ok(Action::requeue(RESYNC))
}
