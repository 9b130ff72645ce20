//! What the single-member tests share: a member with no peers, started
//! alone as its own leader, and stopped until its database has closed.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use keel_store::{
    Member, MemberConfig, NodeId, PeerRequest, PeerResponse, Transport, TransportError,
};

/// A single member never calls its peers.
pub struct NoPeers;

#[tonic::async_trait]
impl Transport for NoPeers {
    async fn call(
        &self,
        target: NodeId,
        _: &str,
        _: PeerRequest,
        _: Duration,
    ) -> Result<PeerResponse, TransportError> {
        Err(TransportError::Unreachable(format!(
            "no member {target} in a single-member test"
        )))
    }
}

pub fn config(dir: &Path) -> MemberConfig {
    let mut c = MemberConfig::new(1, "single", dir);
    c.heartbeat = Duration::from_millis(100);
    c.election_timeout = (Duration::from_millis(300), Duration::from_millis(600));
    c
}

pub async fn start(c: MemberConfig) -> Arc<Member> {
    let m = Member::open(c, Arc::new(NoPeers)).await.expect("open");
    m.bootstrap_single().await.expect("bootstrap");
    m.raft()
        .wait(Some(Duration::from_secs(20)))
        .metrics(|x| x.current_leader == Some(1), "single member leads")
        .await
        .expect("leader");
    m
}

pub async fn stop(m: Arc<Member>) {
    let db = m.db_handle();
    m.shutdown().await;
    drop(m);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while db.upgrade().is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "database did not close"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
