//! Claiming a deployment's replica sets with ControllerRef semantics:
//! the sync's first step, adopting orphans its selector selects and
//! releasing those it no longer does.

use k8s_openapi::api::apps::v1::ReplicaSet;
use kube::api::PostParams;
use kube::runtime::reflector::Store;

use super::Sync;
use crate::replicaset::pods;
use crate::{Error, status_code};

impl Sync {
    /// The replica sets this deployment controls, adopting and releasing
    /// by its selector as Kubernetes' ControllerRefManager does.
    pub(super) async fn claim(&mut self, cache: &Store<ReplicaSet>) -> Result<(), Error> {
        let ns = self.d.metadata.namespace.clone();
        let uid = self.uid();
        let selector = self
            .d
            .spec
            .as_ref()
            .map(|s| s.selector.clone())
            .unwrap_or_default();
        let deleting = self.d.metadata.deletion_timestamp.is_some();
        let mut fresh_checked = false;
        for rs in cache.state_filter(|rs| rs.metadata.namespace == ns) {
            let matches = pods::selects(&selector, rs.metadata.labels.as_ref());
            match pods::controller_of(&rs.metadata) {
                Some(r) if r.uid == uid => {
                    if matches || deleting {
                        self.sets.push((*rs).clone());
                    } else {
                        crate::replicaset::release(&self.rs_api, rs.as_ref(), &uid).await?;
                    }
                }
                Some(_) => {}
                None if matches && !deleting && rs.metadata.deletion_timestamp.is_none() => {
                    if !fresh_checked {
                        let name = self.d.metadata.name.clone().unwrap_or_default();
                        let live = self.d_api.get(&name).await?;
                        if live.metadata.uid != self.d.metadata.uid
                            || live.metadata.deletion_timestamp.is_some()
                        {
                            return Ok(());
                        }
                        fresh_checked = true;
                    }
                    if let Some(adopted) = self.adopt(&rs).await? {
                        self.sets.push(adopted);
                    }
                }
                None => {}
            }
        }
        Ok(())
    }

    async fn adopt(&self, rs: &ReplicaSet) -> Result<Option<ReplicaSet>, Error> {
        let mut obj = rs.clone();
        obj.metadata
            .owner_references
            .get_or_insert_with(Vec::new)
            .push(pods::controller_ref(
                "apps/v1",
                "Deployment",
                &self.d.metadata,
            ));
        let name = rs.metadata.name.clone().unwrap_or_default();
        match self
            .rs_api
            .replace(&name, &PostParams::default(), &obj)
            .await
        {
            Ok(rs) => Ok(Some(rs)),
            Err(e) if matches!(status_code(&e), Some(404 | 409)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}
