//! A node's heartbeats, as the kubelet sends them: the node's Lease in
//! `kube-node-lease` renewed every heartbeat (the kubelet's
//! `nodeLeaseRenewInterval`: a quarter of the 40 s lease), and the full
//! node status posted every report period (`nodeStatusReportFrequency`) or
//! at once when the Ready condition the API shows is not the one the node
//! posts (the node lifecycle controller marked it Unknown while the node
//! was away). The Lease is owned by its Node, so deleting the Node takes
//! the Lease with it. A renewal that fails is tried again after a short
//! back-off (200 ms doubling, at most 7 s or the interval), as the
//! kubelet's lease controller does: waiting a whole interval after a busy
//! API's 429 let four missed renewals in a row pass the node monitor's
//! grace period, and the node was marked Unknown while it was alive.

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

/// The first back-off after a failed renewal, and the longest.
const RENEW_RETRY_FIRST: Duration = Duration::from_millis(200);
const RENEW_RETRY_MAX: Duration = Duration::from_secs(7);

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
        let mut retry = RENEW_RETRY_FIRST;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(lease_due) => {
                    match self.renew().await {
                        Ok(()) => {
                            lease_due += self.intervals.lease;
                            lease_due = lease_due.max(tokio::time::Instant::now());
                            retry = RENEW_RETRY_FIRST;
                        }
                        Err(e) => {
                            tracing::warn!(node = %self.cfg.name, error = %e, retry_in = ?retry, "renewing the node lease failed");
                            lease_due = tokio::time::Instant::now() + retry;
                            retry = (retry * 2).min(RENEW_RETRY_MAX).min(self.intervals.lease);
                        }
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
                // Still current (a busy API, a lost connection): the next
                // try is one update again, not a read and an update.
                Err(e) => {
                    self.lease = Some(lease);
                    return Err(e.into());
                }
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

#[cfg(test)]
mod tests {
    use super::*;
    use kube::client::Body;
    use std::sync::Mutex;

    /// A fake API: lease PUTs are answered 429 `busy` times, then 200 with
    /// the body sent; a lease GET finds it; every request is recorded.
    fn fake(busy: usize) -> (Client, Arc<Mutex<Vec<String>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let left = Arc::new(Mutex::new(busy));
        let service = tower::service_fn(move |req: http::Request<Body>| {
            let (log, left) = (log.clone(), left.clone());
            async move {
                let line = format!("{} {}", req.method(), req.uri().path());
                log.lock().unwrap().push(line);
                let body = http_body_util::BodyExt::collect(req.into_body())
                    .await
                    .unwrap()
                    .to_bytes();
                let (code, out) = {
                    let mut left = left.lock().unwrap();
                    if *left > 0 && !body.is_empty() {
                        *left -= 1;
                        let status = serde_json::json!({"apiVersion": "v1", "kind": "Status",
                            "status": "Failure", "reason": "TooManyRequests", "code": 429,
                            "message": "too many requests, please try again later"});
                        (429, serde_json::to_vec(&status).unwrap())
                    } else if body.is_empty() {
                        let lease = serde_json::json!({"apiVersion": "coordination.k8s.io/v1",
                            "kind": "Lease", "metadata": {"name": "n", "namespace": NODE_LEASE_NAMESPACE,
                            "resourceVersion": "1"}});
                        (200, serde_json::to_vec(&lease).unwrap())
                    } else {
                        (200, body.to_vec())
                    }
                };
                Ok::<_, std::convert::Infallible>(
                    http::Response::builder()
                        .status(code)
                        .header("content-type", "application/json")
                        .body(Body::from(out))
                        .unwrap(),
                )
            }
        });
        (Client::new(service, "default"), seen)
    }

    #[tokio::test]
    async fn a_refused_renewal_is_tried_again_within_the_interval() {
        let (client, seen) = fake(3);
        let cfg = NodeConfig::new("n".into(), 1);
        let intervals = Intervals {
            lease: Duration::from_secs(10),
            status: Duration::from_secs(300),
        };
        let mut hb = Heartbeat::new(client, Arc::new(cfg), "uid".into(), intervals);
        hb.lease = Some(Lease {
            metadata: ObjectMeta {
                name: Some("n".into()),
                namespace: Some(NODE_LEASE_NAMESPACE.into()),
                resource_version: Some("1".into()),
                ..Default::default()
            },
            spec: None,
        });
        let start = tokio::time::Instant::now();
        let beats = tokio::spawn(hb.run(Arc::new(Notify::new()), Duration::ZERO));
        let is_put = |l: &str| {
            l.starts_with("PUT /apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n")
        };
        // Three refusals, then the lease is renewed: within one interval
        // (10 s), where waiting an interval after each would take 30 s.
        let deadline = start + Duration::from_secs(8);
        loop {
            let puts = seen.lock().unwrap().iter().filter(|l| is_put(l)).count();
            if puts >= 4 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{puts} lease updates in 8 s: {:?}",
                seen.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        beats.abort();
        let seen = seen.lock().unwrap();
        // Each retry is one update: the lease stayed cached, nothing was read.
        assert!(seen.iter().all(|l| is_put(l)), "{seen:?}");
    }
}
