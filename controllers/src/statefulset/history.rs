//! The set's ControllerRevisions through the API: orphans matching the
//! selector adopted, the update revision settled (the latest revision
//! recording the set's template; an older one renumbered for a rollback;
//! otherwise a new one, its name moved on by `collisionCount` while it is
//! taken by other data) and the current revision found from the status.

use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

use super::observe::still_ours;
use super::pods;
use super::revision::{self, Found};
use crate::Error;
use crate::context::Context;

/// Name collisions tolerated in one reconcile before giving up for now.
const MAX_COLLISIONS: i32 = 8;

/// The set's revisions as this reconcile settled them.
pub struct Revisions {
    /// Every revision the set controls, in history order.
    pub history: Vec<ControllerRevision>,
    pub current: ControllerRevision,
    pub update: ControllerRevision,
    pub collision_count: i32,
}

/// The set's history (sorted), its current and update revisions and the
/// collision count: the update revision is the revision recording the
/// set's template, made (or renumbered, for a rollback) if need be.
pub async fn settle(
    set: &StatefulSet,
    ctx: &Context,
    api: &Api<ControllerRevision>,
    sets_api: &Api<StatefulSet>,
) -> Result<Revisions, Error> {
    let uid = set.metadata.uid.clone().unwrap_or_default();
    let spec = set.spec.clone().unwrap_or_default();
    let mut history = Vec::new();
    let mut orphans = Vec::new();
    for r in api.list(&ListParams::default()).await?.items {
        let labels = r.metadata.labels.clone().unwrap_or_default();
        match pods::controller_of(r.metadata.owner_references.as_ref()) {
            Some(o) if o.uid == uid => history.push(r),
            None if pods::selector_matches(&spec.selector, &labels) => orphans.push(r),
            _ => {}
        }
    }
    if !orphans.is_empty()
        && set.metadata.deletion_timestamp.is_none()
        && still_ours(set, ctx).await?
    {
        for r in orphans {
            let mut refs = r.metadata.owner_references.clone().unwrap_or_default();
            refs.push(pods::controller_ref(set));
            let patch = json!({"metadata": {
                "resourceVersion": r.metadata.resource_version,
                "ownerReferences": refs,
            }});
            let n = r.metadata.name.clone().unwrap_or_default();
            history.push(
                api.patch(&n, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?,
            );
            ctx.metrics.patched(ctx.name);
        }
    }
    revision::sort(&mut history);
    let data = revision::template_data(set);
    let mut collision_count = set
        .status
        .as_ref()
        .and_then(|s| s.collision_count)
        .unwrap_or(0);
    let next = revision::next_number(&history);
    let update = match revision::find(&history, &data) {
        Found::Latest(i) => history[i].clone(),
        Found::Older(i) => {
            // A rollback: the old revision becomes the newest.
            let n = history[i].metadata.name.clone().unwrap_or_default();
            let patch = json!({
                "metadata": {"resourceVersion": history[i].metadata.resource_version},
                "revision": next,
            });
            let r = api
                .patch(&n, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
            ctx.metrics.patched(ctx.name);
            history[i] = r.clone();
            r
        }
        Found::New => {
            let mut tries = 0;
            loop {
                let rev = revision::new_revision(set, next, collision_count);
                match api.create(&PostParams::default(), &rev).await {
                    Ok(r) => {
                        ctx.metrics.created(ctx.name);
                        history.push(r.clone());
                        break r;
                    }
                    Err(e) if crate::status_code(&e) == Some(409) => {
                        let n = rev.metadata.name.clone().unwrap_or_default();
                        if let Some(existing) = api.get_opt(&n).await?
                            && revision::records(&existing, &data)
                        {
                            // Ours from a reconcile whose answer was lost.
                            if !history
                                .iter()
                                .any(|h| h.metadata.name == existing.metadata.name)
                            {
                                history.push(existing.clone());
                            }
                            break existing;
                        }
                        collision_count += 1;
                        tries += 1;
                        if tries >= MAX_COLLISIONS {
                            // Keep the count, so the next try starts past these names.
                            let patch = json!({"status": {"collisionCount": collision_count}});
                            let sname = set.metadata.name.clone().unwrap_or_default();
                            sets_api
                                .patch_status(
                                    &sname,
                                    &PatchParams::default(),
                                    &Patch::Merge(&patch),
                                )
                                .await?;
                            return Err(Error::Invalid(format!(
                                "controller revision names of {sname} keep colliding"
                            )));
                        }
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
    };
    revision::sort(&mut history);
    let wanted = set.status.as_ref().and_then(|s| s.current_revision.clone());
    let current = history
        .iter()
        .find(|r| r.metadata.name.is_some() && r.metadata.name == wanted)
        .cloned()
        .unwrap_or_else(|| update.clone());
    Ok(Revisions {
        history,
        current,
        update,
        collision_count,
    })
}
