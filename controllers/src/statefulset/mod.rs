//! The statefulset controller, as kube-controller-manager's: pods with
//! stable names `<set>-<ordinal>` created and deleted in order
//! (`OrderedReady`) or all at once (`Parallel`), their claims from
//! `volumeClaimTemplates` kept or deleted by the set's
//! `persistentVolumeClaimRetentionPolicy`, each template version recorded
//! as a ControllerRevision, and rolling updates (`partition`,
//! `maxUnavailable`) or `OnDelete`.
//!
//! Layout: [`pods`] builds pods and claims and reads their state,
//! [`revision`] handles revision data, names and history, [`plan`] decides
//! (pure, table-tested; `sim_tests` runs it against a simulated cluster
//! with injected API failures); through the API, `observe` reads the
//! set's pods (adopting and releasing), `history` settles its revisions
//! and `sync` runs one reconcile. The controller watches StatefulSets and the pods and revisions
//! they control; a set is reconciled whenever any of them changes.

mod history;
mod observe;
pub mod plan;
pub mod pods;
pub mod revision;
mod sync;

#[cfg(test)]
mod sim_tests;

use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::runtime::{Controller, watcher};

use crate::Error;
use crate::context::Context;

/// The controller's name in metrics, events and `--controllers`.
pub const NAME: &str = "statefulset";

/// Run until the future is dropped (leadership lost).
pub async fn run(ctx: Context) -> Result<(), Error> {
    let client = ctx.client.clone();
    let controller = Controller::new(
        Api::<StatefulSet>::all(client.clone()),
        watcher::Config::default(),
    )
    // Only pods carrying a StatefulSet's pod-name label: a large cluster's
    // other pods are not streamed to this controller at all.
    .owns(
        Api::<Pod>::all(client.clone()),
        watcher::Config::default().labels(pods::POD_NAME_LABEL),
    )
    .owns(
        Api::<ControllerRevision>::all(client),
        watcher::Config::default(),
    );
    crate::runner::run(controller, ctx, |set, ctx| async move {
        sync::reconcile(&set, &ctx).await
    })
    .await;
    Ok(())
}
