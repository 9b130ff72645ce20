//! A node's heartbeats, as the kubelet sends them: the node's Lease in
//! `kube-node-lease` renewed every heartbeat (the kubelet's
//! `nodeLeaseRenewInterval`: a quarter of the 40 s lease), and the full
//! node status posted every report period (`nodeStatusReportFrequency`) or
//! at once when the Ready condition the API shows is not the one the node
//! posts (the node lifecycle controller marked it Unknown while the node
//! was away). The Lease is owned by its Node, so deleting the Node takes
//! the Lease with it.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use tokio::sync::Notify;

use crate::node::NodeConfig;
use crate::{Error, status_code};

/// The namespace of node Leases.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

/// The kubelet's node lease duration (`nodeLeaseDurationSeconds`).
pub const LEASE_DURATION_SECONDS: i32 = 40;

/// How often a node renews its Lease and posts its status.
#[derive(Clone, Copy, Debug)]
pub struct Intervals {
    /// Lease renewal.
    pub lease: Duration,
    /// Full status posts when nothing changed.
    pub status: Duration,
}

/// One node's heartbeat loop.
pub struct Heartbeat {
    cfg: Arc<NodeConfig>,
    node_uid: String,
    leases: Api<Lease>,
    nodes: Api<Node>,
    intervals: Intervals,
    /// The Lease as last written, so a renewal is one update.
    lease: Option<Lease>,
    /// When the node last became Ready (conditions' lastTransitionTime).
    ready_since: Timestamp,
}

impl Heartbeat {
    pub fn new(
        client: Client,
        cfg: Arc<NodeConfig>,
        node_uid: String,
        intervals: Intervals,
    ) -> Heartbeat {
        Heartbeat {
            cfg,
            node_uid,
            leases: Api::namespaced(client.clone(), NODE_LEASE_NAMESPACE),
            nodes: Api::all(client),
            intervals,
            lease: None,
            ready_since: Timestamp::now(),
        }
    }

    /// Beat until the future is dropped. `status_lost` is notified when the
    /// API shows a Ready condition this node did not post: the status is
    /// posted at once, Ready again since now. The first beat waits `delay`
    /// (spreading many nodes' beats over the interval).
    pub async fn run(mut self, status_lost: Arc<Notify>, delay: Duration) {
        tokio::time::sleep(delay).await;
        let mut lease_due = tokio::time::Instant::now();
        let mut status_due = lease_due + self.intervals.status;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(lease_due) => {
                    lease_due += self.intervals.lease;
                    if let Err(e) = self.renew().await {
                        tracing::warn!(node = %self.cfg.name, error = %e, "renewing the node lease failed");
                    }
                }
                _ = tokio::time::sleep_until(status_due) => {
                    status_due += self.intervals.status;
                    self.post_or_warn().await;
                }
                _ = status_lost.notified() => {
                    self.ready_since = Timestamp::now();
                    self.post_or_warn().await;
                    status_due = tokio::time::Instant::now() + self.intervals.status;
                }
            }
        }
    }

    async fn post_or_warn(&mut self) {
        if let Err(e) = self.post_status().await {
            tracing::warn!(node = %self.cfg.name, error = %e, "posting node status failed");
        }
    }

    /// Post the whole node status, heartbeat now.
    pub async fn post_status(&mut self) -> Result<(), Error> {
        let status = self.cfg.status(Timestamp::now(), self.ready_since);
        let patch = serde_json::json!({ "status": status });
        self.nodes
            .patch_status(
                &self.cfg.name,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
        Ok(())
    }

    fn spec(&self, now: Timestamp) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.cfg.name.clone()),
            lease_duration_seconds: Some(LEASE_DURATION_SECONDS),
            renew_time: Some(MicroTime(now)),
            ..Default::default()
        }
    }

    /// Renew the Lease (creating it when missing): one update when the
    /// Lease last written is still current.
    pub async fn renew(&mut self) -> Result<(), Error> {
        let now = Timestamp::now();
        let name = self.cfg.name.clone();
        if let Some(mut lease) = self.lease.take() {
            lease.spec = Some(self.spec(now));
            match self
                .leases
                .replace(&name, &PostParams::default(), &lease)
                .await
            {
                Ok(l) => {
                    self.lease = Some(l);
                    return Ok(());
                }
                // Changed or deleted by someone else: read it again.
                Err(e) if matches!(status_code(&e), Some(404 | 409)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let written = match self.leases.get_opt(&name).await? {
            Some(mut lease) => {
                lease.spec = Some(self.spec(now));
                self.leases
                    .replace(&name, &PostParams::default(), &lease)
                    .await?
            }
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        namespace: Some(NODE_LEASE_NAMESPACE.into()),
                        owner_references: Some(vec![OwnerReference {
                            api_version: "v1".into(),
                            kind: "Node".into(),
                            name: name.clone(),
                            uid: self.node_uid.clone(),
                            ..Default::default()
                        }]),
                        ..Default::default()
                    },
                    spec: Some(self.spec(now)),
                };
                self.leases.create(&PostParams::default(), &lease).await?
            }
        };
        self.lease = Some(written);
        Ok(())
    }
}
