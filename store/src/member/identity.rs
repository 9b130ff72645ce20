//! This member's side of the cluster id ([`crate::cluster_id`]): set when it
//! bootstraps a cluster (or by `keel restore`), taken from the first member
//! that calls it when it joins one, and checked on every call from another
//! member before the call reaches Raft.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use rocksdb::WriteBatch;

use super::Member;
use crate::NodeId;
use crate::cluster_id::{self, ClusterId};
use crate::codec::store_meta;
use crate::db::CF_STORE_META;
use crate::error::StoreError;

impl Member {
    /// The cluster's identity, once this member knows it.
    pub fn cluster_id(&self) -> Option<ClusterId> {
        *self.cluster_id.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Store `id` (synced) in `own` and send it from now on.
    fn store_cluster_id(
        &self,
        own: &mut Option<ClusterId>,
        id: ClusterId,
    ) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        batch.put_cf(
            self.db.cf(CF_STORE_META),
            store_meta::CLUSTER_ID,
            id.to_bytes(),
        );
        self.db.write_synced(batch, "storing the cluster id")?;
        *own = Some(id);
        self.transport.set_cluster_id(id);
        Ok(())
    }

    /// Before bootstrapping a cluster of `members`: take its id, unless this
    /// member already has one (a restart, or a restored directory).
    pub(super) fn ensure_cluster_id(
        &self,
        members: &BTreeMap<NodeId, String>,
    ) -> Result<(), StoreError> {
        let mut own = self.cluster_id.lock().unwrap_or_else(|e| e.into_inner());
        if own.is_none() {
            let id = ClusterId::new_cluster(&self.config.cluster_token, members);
            self.store_cluster_id(&mut own, id)?;
            tracing::info!(cluster_id = %id, "bootstrapping a new cluster");
        }
        Ok(())
    }

    /// Whether a call from another member that carries the cluster id
    /// `caller` may go on; a member without an id takes the caller's.
    pub fn admit_peer(&self, caller: Option<&str>) -> Result<(), StoreError> {
        let mut own = self.cluster_id.lock().unwrap_or_else(|e| e.into_inner());
        match cluster_id::admit(*own, caller) {
            Err(why) => {
                self.counters.wrong_cluster.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%why, "refused a call from another cluster");
                Err(StoreError::WrongCluster(why))
            }
            Ok(Some(theirs)) if own.is_none() => {
                self.store_cluster_id(&mut own, theirs)?;
                tracing::info!(cluster_id = %theirs, "joined the cluster of the member that called");
                Ok(())
            }
            Ok(_) => Ok(()),
        }
    }
}
