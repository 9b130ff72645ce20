//! The endpointslice controller (kube-controller-manager's
//! `endpointslice`): for every Service with a selector, `discovery.k8s.io/v1`
//! EndpointSlices holding an endpoint per selected pod, with the conditions
//! ready/serving/terminating, its node and its ports, at most 100 a slice
//! ([`plan`]). Slices are named `<service>-<random>` (generateName), labelled
//! `kubernetes.io/service-name` and `endpointslice.kubernetes.io/managed-by:
//! endpointslice-controller.k8s.io`, and owned by their Service (controller
//! reference), so the garbage collector deletes them with it.
//!
//! Slices are read with a live list on each pass (not a cache), so a slice
//! this controller just created is always seen: a pass never creates twice.

pub mod plan;

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, ListParams, PostParams, Preconditions};
use kube::runtime::controller::Action;
use kube::runtime::{Controller, watcher};

use crate::Error;
use crate::context::Context;
use crate::endpoints::{self, plan as pods};
use crate::events::Involved;

/// The controller's name in metrics, events and `--controllers`.
pub const NAME: &str = "endpointslice";

/// The labels Kubernetes puts on the slices it manages.
pub const SERVICE_NAME: &str = "kubernetes.io/service-name";
pub const MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
pub const MANAGER: &str = "endpointslice-controller.k8s.io";

/// Run until the future is dropped (leadership lost).
pub async fn run(ctx: Context) -> Result<(), Error> {
    let client = ctx.client.clone();
    let controller = Controller::new(
        Api::<Service>::all(client.clone()),
        watcher::Config::default(),
    );
    let services = controller.store();
    let controller = controller
        .owns(
            Api::<EndpointSlice>::all(client.clone()),
            watcher::Config::default().labels(&format!("{MANAGED_BY}={MANAGER}")),
        )
        .watches(
            Api::<k8s_openapi::api::core::v1::Pod>::all(client),
            watcher::Config::default(),
            endpoints::pod_mapper(services),
        );
    crate::runner::run(controller, ctx, reconcile).await;
    Ok(())
}

/// The labels of `svc`'s slices: the Service's own, then Kubernetes'.
fn labels(svc: &Service) -> BTreeMap<String, String> {
    let mut l = svc.metadata.labels.clone().unwrap_or_default();
    l.insert(
        SERVICE_NAME.into(),
        svc.metadata.name.clone().unwrap_or_default(),
    );
    l.insert(MANAGED_BY.into(), MANAGER.into());
    if svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None") {
        l.insert(endpoints::HEADLESS.into(), String::new());
    } else {
        l.remove(endpoints::HEADLESS);
    }
    l
}

fn owner(svc: &Service) -> OwnerReference {
    OwnerReference {
        api_version: "v1".into(),
        kind: "Service".into(),
        name: svc.metadata.name.clone().unwrap_or_default(),
        uid: svc.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Whether `slice` is controlled by `svc` (by uid).
fn owned(slice: &EndpointSlice, svc: &Service) -> bool {
    slice
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.controller == Some(true) && Some(&o.uid) == svc.metadata.uid.as_ref())
}

/// Make the Service's slices match its pods; a failed write is reported
/// on the Service as Kubernetes reports it (`FailedToUpdateEndpointSlices`).
async fn reconcile(svc: Arc<Service>, ctx: Context) -> Result<Action, Error> {
    let out = sync(&svc, &ctx).await;
    if let Err(Error::Kube(e)) = &out
        && crate::status_code(e) != Some(409)
    {
        let ns = svc.metadata.namespace.as_deref().unwrap_or("default");
        let name = svc.metadata.name.as_deref().unwrap_or_default();
        let msg = format!("Error updating Endpoint Slices for Service {ns}/{name}: {e}");
        ctx.recorder
            .publish(
                &Involved::of(&*svc),
                "Warning",
                "FailedToUpdateEndpointSlices",
                &msg,
            )
            .await;
    }
    out
}

async fn sync(svc: &Service, ctx: &Context) -> Result<Action, Error> {
    if !pods::managed(svc) || svc.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = svc.metadata.namespace.as_deref().unwrap_or("default");
    let name = svc.metadata.name.clone().unwrap_or_default();
    let api = Api::<EndpointSlice>::namespaced(ctx.client.clone(), ns);
    let lp = ListParams::default().labels(&format!("{SERVICE_NAME}={name},{MANAGED_BY}={MANAGER}"));
    let current: Vec<EndpointSlice> = api
        .list(&lp)
        .await?
        .items
        .into_iter()
        .filter(|s| owned(s, svc))
        .collect();
    let pod_list = endpoints::selected_pods(&ctx.client, svc).await?;
    let desired: Vec<_> = pod_list
        .iter()
        .filter_map(|p| plan::endpoint(svc, p))
        .collect();
    let existing = current
        .iter()
        .map(|s| plan::Existing {
            name: s.metadata.name.clone().unwrap_or_default(),
            ports: s.ports.clone().unwrap_or_default(),
            endpoints: s.endpoints.clone(),
        })
        .collect();
    let todo = plan::plan(existing, desired, plan::MAX_ENDPOINTS);
    let want_labels = labels(svc);
    let by_name: BTreeMap<&str, &EndpointSlice> = current
        .iter()
        .filter_map(|s| Some((s.metadata.name.as_deref()?, s)))
        .collect();
    for name in &todo.delete {
        let Some(s) = by_name.get(name.as_str()) else {
            continue;
        };
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                uid: s.metadata.uid.clone(),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(name, &dp).await {
            Ok(_) => ctx.metrics.deleted(NAME),
            Err(e) if crate::status_code(&e) == Some(404) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let mut written: Vec<&str> = Vec::new();
    for u in &todo.update {
        let Some(cur) = by_name.get(u.name.as_str()) else {
            continue;
        };
        let mut next = (*cur).clone();
        next.endpoints = u.endpoints.clone();
        next.ports = (!u.ports.is_empty()).then(|| u.ports.clone());
        next.metadata.labels = Some(want_labels.clone());
        api.replace(&u.name, &PostParams::default(), &next).await?;
        ctx.metrics.patched(NAME);
        written.push(u.name.as_str());
    }
    // Slices whose endpoints did not change but whose labels did.
    for s in &current {
        let n = s.metadata.name.as_deref().unwrap_or_default();
        if written.contains(&n) || todo.delete.iter().any(|d| d == n) {
            continue;
        }
        if s.metadata.labels.as_ref() != Some(&want_labels) {
            let mut next = s.clone();
            next.metadata.labels = Some(want_labels.clone());
            api.replace(n, &PostParams::default(), &next).await?;
            ctx.metrics.patched(NAME);
        }
    }
    for (ports, eps) in todo.create {
        let slice = EndpointSlice {
            metadata: ObjectMeta {
                generate_name: Some(format!("{}-", truncate(&name))),
                namespace: Some(ns.to_string()),
                labels: Some(want_labels.clone()),
                owner_references: Some(vec![owner(svc)]),
                ..Default::default()
            },
            address_type: "IPv4".into(),
            endpoints: eps,
            ports: (!ports.is_empty()).then_some(ports),
        };
        api.create(&PostParams::default(), &slice).await?;
        ctx.metrics.created(NAME);
    }
    Ok(Action::await_change())
}

/// A generateName prefix leaves room for the random suffix (as
/// Kubernetes' `SimpleNameGenerator` cuts the base to 58 characters).
fn truncate(name: &str) -> &str {
    match name.char_indices().nth(57) {
        Some((i, _)) => &name[..i],
        None => name,
    }
}
