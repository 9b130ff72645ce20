//! Cluster administration on a member: bootstrap, adding and removing
//! members (on the leader), the membership and the member's status.

use std::collections::{BTreeMap, BTreeSet};

use openraft::async_runtime::WatchReceiver;
use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, ChangeMembers, ServerState};

use super::Member;
use crate::error::StoreError;
use crate::{NodeId, TypeConfig};

/// One member of the cluster, as listed in the membership.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberInfo {
    pub id: NodeId,
    pub addr: String,
    pub voter: bool,
}

/// A snapshot of a member's Raft state.
#[derive(Clone, Debug)]
pub struct MemberStatus {
    pub id: NodeId,
    pub leader: Option<NodeId>,
    pub term: u64,
    pub applied_index: u64,
    pub last_log_index: u64,
    pub compacted_revision: u64,
    pub members: Vec<MemberInfo>,
    pub state: String,
    /// The cluster's identity, once known.
    pub cluster_id: Option<crate::ClusterId>,
}

impl Member {
    /// Bootstrap a new cluster with these members (id → address). Harmless on
    /// a member that is already part of a cluster.
    pub async fn initialize(&self, members: BTreeMap<NodeId, String>) -> Result<(), StoreError> {
        self.ensure_cluster_id(&members)?;
        let nodes: BTreeMap<NodeId, BasicNode> = members
            .into_iter()
            .map(|(id, addr)| (id, BasicNode { addr }))
            .collect();
        match self.raft.initialize(nodes).await {
            Ok(()) => Ok(()),
            Err(RaftError::APIError(openraft::error::InitializeError::NotAllowed(_))) => Ok(()),
            Err(e) => Err(StoreError::Membership(format!("initialize: {e}"))),
        }
    }

    /// Bootstrap a single-member cluster of this member alone.
    pub async fn bootstrap_single(&self) -> Result<(), StoreError> {
        self.initialize(BTreeMap::from([(self.config.id, self.config.addr.clone())]))
            .await
    }

    fn ensure_leader(&self) -> Result<(), StoreError> {
        match self.leader() {
            Some((id, _)) if id == self.config.id => Ok(()),
            Some((leader_id, leader_addr)) => Err(StoreError::NotLeader {
                leader_id,
                leader_addr,
            }),
            None => Err(StoreError::NoLeader(format!(
                "member {} knows no leader",
                self.config.id
            ))),
        }
    }

    /// Add a member: as a learner until it has caught up, then as a voter.
    pub async fn add_member(
        &self,
        id: NodeId,
        addr: String,
    ) -> Result<Vec<MemberInfo>, StoreError> {
        self.ensure_leader()?;
        let err = |e: RaftError<TypeConfig, ClientWriteError<TypeConfig>>| {
            StoreError::Membership(e.to_string())
        };
        tracing::info!(id, %addr, "adding member as learner");
        self.raft
            .add_learner(id, BasicNode { addr }, true)
            .await
            .map_err(err)?;
        tracing::info!(id, "promoting member to voter");
        self.raft
            .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
            .await
            .map_err(err)?;
        Ok(self.members())
    }

    /// Remove a member (voter or learner) from the cluster.
    pub async fn remove_member(&self, id: NodeId) -> Result<Vec<MemberInfo>, StoreError> {
        self.ensure_leader()?;
        let err = |e: RaftError<TypeConfig, ClientWriteError<TypeConfig>>| {
            StoreError::Membership(e.to_string())
        };
        let is_voter = self.members().iter().any(|m| m.id == id && m.voter);
        if is_voter {
            self.raft
                .change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])), false)
                .await
                .map_err(err)?;
        } else {
            self.raft
                .change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([id])), false)
                .await
                .map_err(err)?;
        }
        Ok(self.members())
    }

    /// The members in the current membership config.
    pub fn members(&self) -> Vec<MemberInfo> {
        let m = self
            .raft
            .metrics()
            .borrow_watched()
            .membership_config
            .clone();
        let voters: BTreeSet<NodeId> = m.membership().voter_ids().collect();
        m.membership()
            .nodes()
            .map(|(id, n)| MemberInfo {
                id: *id,
                addr: n.addr.clone(),
                voter: voters.contains(id),
            })
            .collect()
    }

    pub fn status(&self) -> MemberStatus {
        let m = self.raft.metrics().borrow_watched().clone();
        MemberStatus {
            id: self.config.id,
            leader: self.heard_leader(m.current_leader),
            term: m.current_term,
            applied_index: m.last_applied.map(|l| l.index).unwrap_or(0),
            last_log_index: m.last_log_index.unwrap_or(0),
            compacted_revision: self.hub.compacted(),
            members: self.members(),
            cluster_id: self.cluster_id(),
            state: match m.state {
                ServerState::Leader => "leader",
                ServerState::Follower => "follower",
                ServerState::Candidate => "candidate",
                ServerState::Learner => "learner",
                ServerState::Shutdown => "shutdown",
            }
            .into(),
        }
    }

    /// Bytes this member's data directory occupies (memtables flushed first).
    pub fn disk_usage(&self) -> Result<u64, StoreError> {
        self.db.disk_usage()
    }
}

impl Member {
    /// Write a backup of the state to `out` (a blocking writer, fed from a
    /// blocking thread): first waits until this member has applied
    /// everything committed before the call, so the backup holds every
    /// write acknowledged before it began, then streams one consistent view.
    pub async fn save_backup(
        &self,
        out: impl std::io::Write + Send + 'static,
    ) -> Result<crate::backup::Saved, StoreError> {
        self.linearize().await?;
        let db = self.db.clone();
        let id = self.config.id;
        let members = self
            .members()
            .into_iter()
            .map(|m| (m.id, m.addr, m.voter))
            .collect();
        let saved = tokio::task::spawn_blocking(move || crate::backup::save(&db, out, id, members))
            .await
            .map_err(|e| StoreError::Raft(format!("the backup task failed: {e}")))??;
        tracing::info!(
            revision = saved.header.revision,
            objects = saved.objects,
            bytes = saved.bytes,
            "saved a backup"
        );
        Ok(saved)
    }
}

impl Member {
    /// Every change of `key` this member knows (see [`crate::history`]),
    /// including every write acknowledged before the call.
    pub async fn history(&self, key: &str) -> Result<crate::history::KeyHistory, StoreError> {
        self.linearize().await?;
        let db = self.db.clone();
        let archive = self.config.archive.clone();
        let key = key.to_string();
        super::blocking(move || crate::history::history(&db, archive.as_ref(), &key)).await
    }
}
