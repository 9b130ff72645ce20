//! The rollout steps a sync takes once its replica sets are claimed:
//! RollingUpdate, Recreate, or only a proportional resize, each through
//! `Sync::scale`, then the cleanup of old revisions past the limit.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, PostParams, Preconditions};
use kube::core::Selector;

use super::plan::{self, Rs};
use super::{OLD_PODS_RETRY, Sync, created, progress, replicas_of, revision, view};
use crate::replicaset::pods;
use crate::{Error, status_code};

impl Sync {
    /// Resize replica set `i` to `size`, its replica annotations brought
    /// up to date; an event when the size changes. Whether it changed.
    async fn scale(&mut self, i: usize, size: i32) -> Result<bool, Error> {
        let t = self.target()?;
        let rs = &self.sets[i];
        let was = replicas_of(rs);
        let ann = rs.metadata.annotations.clone().unwrap_or_default();
        let (desired, max) = (
            t.replicas.to_string(),
            (t.replicas + t.max_surge).to_string(),
        );
        let ann_ok =
            ann.get(revision::DESIRED) == Some(&desired) && ann.get(revision::MAX) == Some(&max);
        if was == size && ann_ok {
            return Ok(false);
        }
        let mut obj = rs.clone();
        let a = obj.metadata.annotations.get_or_insert_with(BTreeMap::new);
        a.insert(revision::DESIRED.into(), desired);
        a.insert(revision::MAX.into(), max);
        obj.spec.get_or_insert_with(Default::default).replicas = Some(size);
        let name = obj.metadata.name.clone().unwrap_or_default();
        self.sets[i] = self
            .rs_api
            .replace(&name, &PostParams::default(), &obj)
            .await?;
        self.ctx.metrics.patched(self.ctx.name);
        if was != size {
            let dir = if size > was { "up" } else { "down" };
            self.record_scaling(&format!(
                "Scaled {dir} replica set {name} from {was} to {size}"
            ))
            .await;
        }
        Ok(was != size)
    }

    /// A RollingUpdate step (Kubernetes' `rolloutRolling`).
    pub(super) async fn rolling(&mut self) -> Result<(), Error> {
        let Some(n) = self.new_rs(true).await? else {
            return Ok(());
        };
        let t = self.target()?;
        let new_view = view(&self.sets[n]);
        if new_view.replicas != t.replicas {
            let size = if new_view.replicas > t.replicas {
                t.replicas
            } else {
                let all: Vec<Rs> = self.sets.iter().map(view).collect();
                plan::new_rs_replicas(&t, &all, &new_view)
            };
            if self.scale(n, size).await? {
                return self.rollout_status(Some(n)).await;
            }
        }
        let (_, old) = self.split();
        let old_views: Vec<Rs> = old.iter().map(|i| view(&self.sets[*i])).collect();
        let changes = plan::scale_down_old(&t, &old_views, &view(&self.sets[n]));
        if !changes.is_empty() {
            for (name, size) in changes {
                if let Some(i) = self.index_of(&name) {
                    self.scale(i, size).await?;
                }
            }
            return self.rollout_status(Some(n)).await;
        }
        self.cleanup_if_complete(Some(n)).await?;
        self.rollout_status(Some(n)).await
    }

    /// A Recreate step: old replica sets to zero, wait for their pods to
    /// be gone, then the new one at full size.
    pub(super) async fn recreate(&mut self) -> Result<(), Error> {
        let new = self.new_rs(false).await?;
        let (_, old) = self.split();
        let mut scaled = false;
        for i in old.clone() {
            if replicas_of(&self.sets[i]) > 0 {
                scaled |= self.scale(i, 0).await?;
            }
        }
        if scaled {
            return self.rollout_status(new).await;
        }
        if self.old_pods_running(&old).await? {
            self.requeue = Some(OLD_PODS_RETRY);
            return self.rollout_status(new).await;
        }
        let n = match new {
            Some(n) => n,
            None => match self.new_rs(true).await? {
                Some(n) => n,
                None => return Ok(()),
            },
        };
        let want = self.replicas();
        self.scale(n, want).await?;
        self.cleanup_if_complete(Some(n)).await?;
        self.rollout_status(Some(n)).await
    }

    /// Whether pods of the old replica sets still run (or still exist and
    /// have not finished), read fresh from the API.
    async fn old_pods_running(&self, old: &[usize]) -> Result<bool, Error> {
        if old.iter().any(|i| {
            self.sets[*i]
                .status
                .as_ref()
                .is_some_and(|s| s.replicas > 0)
        }) {
            return Ok(true);
        }
        let uids: Vec<String> = old
            .iter()
            .filter_map(|i| self.sets[*i].metadata.uid.clone())
            .collect();
        if uids.is_empty() {
            return Ok(false);
        }
        let selector = self
            .d
            .spec
            .as_ref()
            .map(|s| s.selector.clone())
            .unwrap_or_default();
        let sel = Selector::try_from(selector).map_err(|e| Error::Invalid(e.to_string()))?;
        let ns = self.d.metadata.namespace.clone().unwrap_or_default();
        let list = Api::<Pod>::namespaced(self.ctx.client.clone(), &ns)
            .list(&ListParams::default().labels_from(&sel))
            .await?;
        Ok(list.items.iter().any(|p| {
            pods::controller_of(&p.metadata).is_some_and(|r| uids.contains(&r.uid))
                && !matches!(
                    p.status.as_ref().and_then(|s| s.phase.as_deref()),
                    Some("Succeeded" | "Failed")
                )
        }))
    }

    /// Only resize (paused, or resized mid-rollout): Kubernetes' `sync`.
    pub(super) async fn scale_only(&mut self, paused: bool) -> Result<(), Error> {
        let new = self.new_rs(false).await?;
        let (_, old) = self.split();
        let t = self.target()?;
        let new_view = new.map(|i| view(&self.sets[i]));
        let old_views: Vec<Rs> = old.iter().map(|i| view(&self.sets[*i])).collect();
        let status_replicas = self.d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0);
        let sizes = plan::proportional(
            &t,
            new_view.as_ref(),
            &old_views,
            status_replicas,
            self.is_rolling(),
        );
        for (name, size) in sizes {
            if let Some(i) = self.index_of(&name) {
                self.scale(i, size).await?;
            }
        }
        if paused {
            self.cleanup_if_complete(new).await?;
        }
        self.write_status().await
    }

    /// Delete old replica sets beyond revisionHistoryLimit once the
    /// rollout is complete.
    async fn cleanup_if_complete(&mut self, new: Option<usize>) -> Result<(), Error> {
        let t = self.target()?;
        let refs: Vec<&ReplicaSet> = self.sets.iter().collect();
        let status = progress::calculate(
            &self.d,
            &refs,
            new.map(|i| &self.sets[i]),
            t.max_unavailable,
            Timestamp::now(),
        );
        if !progress::complete(&self.d, &status) {
            return Ok(());
        }
        let Some(limit) = self.d.spec.as_ref().and_then(|s| s.revision_history_limit) else {
            return Ok(());
        };
        let (_, old) = self.split();
        let olds: Vec<revision::Old> = old
            .iter()
            .map(|i| &self.sets[*i])
            .filter(|rs| rs.metadata.deletion_timestamp.is_none())
            .map(|rs| revision::Old {
                name: rs.metadata.name.clone().unwrap_or_default(),
                revision: revision::revision(rs.metadata.annotations.as_ref()),
                created: created(&rs.metadata).0,
                idle: rs.status.as_ref().is_none_or(|s| s.replicas == 0)
                    && replicas_of(rs) == 0
                    && rs.status.as_ref().and_then(|s| s.observed_generation)
                        >= rs.metadata.generation,
            })
            .collect();
        for name in revision::to_clean(&olds, limit) {
            let Some(i) = self.index_of(&name) else {
                continue;
            };
            let dp = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: self.sets[i].metadata.uid.clone(),
                    resource_version: self.sets[i].metadata.resource_version.clone(),
                }),
                ..Default::default()
            };
            match self.rs_api.delete(&name, &dp).await {
                // Kept in `self.sets` (at zero, it counts for nothing):
                // the positions the rest of the sync holds stay valid.
                Ok(_) => self.ctx.metrics.deleted(self.ctx.name),
                Err(e) if matches!(status_code(&e), Some(404 | 409)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}
