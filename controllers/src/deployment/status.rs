//! The deployment's status as a sync leaves it: counts from its replica
//! sets, the Progressing and ReplicaFailure conditions, and the one write
//! of it, made with the resourceVersion the sync read.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{DeploymentStatus, ReplicaSet};
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;

use super::{Sync, progress};
use crate::Error;

impl Sync {
    /// Status with the Progressing condition moved on (Kubernetes'
    /// `syncRolloutStatus`), and a look again at the progress deadline.
    pub(super) async fn rollout_status(&mut self, new: Option<usize>) -> Result<(), Error> {
        let t = self.target()?;
        let refs: Vec<&ReplicaSet> = self.sets.iter().collect();
        let new_rs = new.map(|i| &self.sets[i]);
        let status =
            progress::calculate(&self.d, &refs, new_rs, t.max_unavailable, Timestamp::now());
        let name = new_rs.and_then(|r| r.metadata.name.clone());
        let (mut status, left) =
            progress::rollout(&self.d, status, name.as_deref(), Timestamp::now());
        self.replica_failure(&mut status);
        if let Some(left) = left {
            let after = Duration::from_secs(left.max(0) as u64 + 1);
            self.requeue = Some(self.requeue.map_or(after, |r| r.min(after)));
        }
        if Some(&status) != self.d.status.as_ref() {
            self.put_status(status).await?;
        }
        Ok(())
    }

    /// The status counts only (Kubernetes' `syncDeploymentStatus`).
    pub(super) async fn write_status(&mut self) -> Result<(), Error> {
        let t = self.target()?;
        let (new, _) = self.split();
        let refs: Vec<&ReplicaSet> = self.sets.iter().collect();
        let mut status = progress::calculate(
            &self.d,
            &refs,
            new.map(|i| &self.sets[i]),
            t.max_unavailable,
            Timestamp::now(),
        );
        self.replica_failure(&mut status);
        if Some(&status) != self.d.status.as_ref() {
            self.put_status(status).await?;
        }
        Ok(())
    }

    /// A replica set's ReplicaFailure, shown on the deployment.
    fn replica_failure(&self, status: &mut DeploymentStatus) {
        let failure = self.sets.iter().find_map(|rs| {
            rs.status
                .as_ref()?
                .conditions
                .as_ref()?
                .iter()
                .find(|c| c.type_ == progress::REPLICA_FAILURE)
                .cloned()
        });
        match failure {
            Some(c) => progress::set_condition(
                status,
                progress::new_condition(
                    progress::REPLICA_FAILURE,
                    &c.status,
                    c.reason.as_deref().unwrap_or_default(),
                    c.message.unwrap_or_default(),
                    Timestamp::now(),
                ),
            ),
            None => progress::remove_condition(status, progress::REPLICA_FAILURE),
        }
    }

    /// Write `status` (with the resourceVersion the sync started from).
    pub(super) async fn put_status(&mut self, status: DeploymentStatus) -> Result<(), Error> {
        let mut obj = self.d.clone();
        obj.status = Some(status);
        let name = obj.metadata.name.clone().unwrap_or_default();
        self.d = self
            .d_api
            .replace_status(&name, &PostParams::default(), &obj)
            .await?;
        Ok(())
    }
}
