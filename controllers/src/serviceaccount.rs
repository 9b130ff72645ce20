//! The serviceaccount controller (kube-controller-manager's
//! `serviceaccount`): every namespace has a ServiceAccount `default`,
//! created when the namespace appears and again whenever it is deleted,
//! except in a namespace being deleted. It reconciles a namespace when the
//! namespace changes and when its `default` account changes or goes.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, watcher};

use crate::Error;
use crate::context::Context;

/// The controller's name in metrics, events and `--controllers`.
pub const NAME: &str = "serviceaccount";

/// The account every namespace gets.
pub const DEFAULT: &str = "default";

/// Run until the future is dropped (leadership lost).
pub async fn run(ctx: Context) -> Result<(), Error> {
    let client = ctx.client.clone();
    let controller = Controller::new(
        Api::<Namespace>::all(client.clone()),
        watcher::Config::default(),
    )
    .watches(
        Api::<ServiceAccount>::all(client),
        watcher::Config::default().fields(&format!("metadata.name={DEFAULT}")),
        |sa: ServiceAccount| {
            (sa.metadata.name.as_deref() == Some(DEFAULT))
                .then(|| ObjectRef::new(sa.metadata.namespace.as_deref().unwrap_or_default()))
        },
    );
    crate::runner::run(controller, ctx, reconcile).await;
    Ok(())
}

/// Whether `ns` is being deleted (nothing new may be created in it).
fn terminating(ns: &Namespace) -> bool {
    ns.metadata.deletion_timestamp.is_some()
        || ns.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating")
}

async fn reconcile(ns: Arc<Namespace>, ctx: Context) -> Result<Action, Error> {
    if terminating(&ns) {
        return Ok(Action::await_change());
    }
    let name = ns.metadata.name.clone().unwrap_or_default();
    let api = Api::<ServiceAccount>::namespaced(ctx.client.clone(), &name);
    if api.get_opt(DEFAULT).await?.is_some() {
        return Ok(Action::await_change());
    }
    let sa = ServiceAccount {
        metadata: ObjectMeta {
            name: Some(DEFAULT.into()),
            namespace: Some(name.clone()),
            ..Default::default()
        },
        ..Default::default()
    };
    match api.create(&PostParams::default(), &sa).await {
        Ok(_) => ctx.metrics.created(NAME),
        // Someone else (the API server's own loop, another pass) made it;
        // a namespace that began terminating refuses it (403): both fine.
        Err(e) if matches!(crate::status_code(&e), Some(409 | 403)) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminating_namespaces_get_no_account() {
        let active: Namespace = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "a"}, "status": {"phase": "Active"}}))
        .unwrap();
        assert!(!terminating(&active));
        let going: Namespace = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "a"}, "status": {"phase": "Terminating"}}))
        .unwrap();
        assert!(terminating(&going));
    }
}
