//! Members over the real gRPC transport (mutual TLS) on loopback: forwarding, read index,
//! the admin service (status, add a member that catches up from a chunked
//! snapshot, remove), a corrupted payload refused by its checksum, and a
//! follower catching up on entries that together exceed the message limit,
//! and cluster ids: a member that joins takes its cluster's, and a member of
//! another cluster is refused before Raft sees its call.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use keel_proto::member as pb;
use keel_store::grpc::payload;
use keel_store::{Consistency, Member, Op};
use keel_store::{GrpcTransport, MemberService};
use keel_tests::peer_tls::{admin_tls, member_tls};
use keel_tests::{init_tracing, test_config, wait_for};
use openraft::async_runtime::WatchReceiver;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

const LONG: Duration = Duration::from_secs(60);

struct Node {
    member: Arc<Member>,
    addr: String,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<()>,
}

async fn node(
    id: u64,
    dir: &std::path::Path,
    tweak: impl Fn(&mut keel_store::MemberConfig),
) -> Node {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let mut cfg = test_config(id, dir.join(format!("g{id}")));
    cfg.addr = addr.clone();
    tweak(&mut cfg);
    let member = Member::open(cfg, GrpcTransport::new(member_tls(id).as_member()))
        .await
        .unwrap();
    let (stop, server) = serve(member.clone(), listener);
    Node {
        member,
        addr,
        stop,
        server,
    }
}

/// Serve a member's gRPC services on `listener` until `stop` fires.
fn serve(
    member: Arc<Member>,
    listener: TcpListener,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let id = member.id();
    let router = MemberService::new(member, member_tls(id)).router().unwrap();
    let server = tokio::spawn(async move {
        router
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                let _ = rx.await;
            })
            .await
            .unwrap();
    });
    (stop, server)
}

/// Bootstrap `nodes` together from the first one and wait for a leader's id.
async fn bootstrap(nodes: &[Node]) -> u64 {
    let all: BTreeMap<u64, String> = nodes
        .iter()
        .map(|n| (n.member.id(), n.addr.clone()))
        .collect();
    nodes[0].member.initialize(all).await.unwrap();
    // Every member must know the leader: a follower that has not heard from
    // it yet has nowhere to forward a write to.
    wait_for("a leader known to every member over gRPC", LONG, || async {
        let leader = nodes.iter().find(|n| n.member.is_leader())?.member.id();
        nodes
            .iter()
            .all(|n| n.member.leader().map(|(id, _)| id) == Some(leader))
            .then_some(leader)
    })
    .await
}

async fn admin(addr: &str) -> pb::admin_client::AdminClient<tonic::transport::Channel> {
    let ch = admin_tls().endpoint(addr).unwrap().connect().await.unwrap();
    pb::admin_client::AdminClient::new(ch)
}

/// A member's status through its admin service.
async fn status(addr: &str) -> pb::StatusReply {
    admin(addr)
        .await
        .status(pb::StatusRequest {})
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_over_grpc() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let small_snapshots = |c: &mut keel_store::MemberConfig| {
        c.snapshot_every = 20;
        c.keep_behind_snapshot = 5;
    };
    let mut nodes = Vec::new();
    for id in 1..=3 {
        nodes.push(node(id, dir.path(), small_snapshots).await);
    }
    let leader = bootstrap(&nodes).await;
    let follower = nodes.iter().find(|n| n.member.id() != leader).unwrap();
    // A write on a follower is forwarded to the leader over gRPC.
    let rev = follower
        .member
        .txn(vec![Op::create("/g/a", b"1".to_vec())])
        .await
        .unwrap();
    let (kv, _) = follower
        .member
        .get("/g/a", Consistency::Linearizable)
        .await
        .unwrap();
    assert_eq!(kv.unwrap().mod_revision, rev);
    // Status through the admin service of a follower.
    let status = status(&follower.addr).await;
    assert_eq!(status.leader, leader);
    assert_eq!(status.members.len(), 3);
    assert!(status.applied_index >= rev);

    // About 3 MiB of state, so the snapshot travels in several 1 MiB chunks.
    let mut last = 0;
    for i in 0..48 {
        last = follower
            .member
            .txn(vec![Op::create(
                format!("/g/big/{i:03}"),
                vec![i as u8; 64 * 1024],
            )])
            .await
            .unwrap();
    }
    let leader_node = nodes.iter().find(|n| n.member.id() == leader).unwrap();
    leader_node
        .member
        .raft()
        .trigger()
        .snapshot()
        .await
        .unwrap();
    leader_node
        .member
        .raft()
        .wait(Some(LONG))
        .metrics(|m| m.purged.is_some(), "leader purged its log")
        .await
        .unwrap();

    // Add a fourth member through a follower's admin service (forwarded to the leader).
    let fourth = node(4, dir.path(), small_snapshots).await;
    let reply = admin(&follower.addr)
        .await
        .add_member(pb::AddMemberRequest {
            id: 4,
            addr: fourth.addr.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(reply.members.iter().any(|m| m.id == 4 && m.voter));
    fourth
        .member
        .raft()
        .wait(Some(LONG))
        .applied_index_at_least(Some(last), "new member caught up")
        .await
        .unwrap();
    assert!(
        fourth
            .member
            .raft()
            .metrics()
            .borrow_watched()
            .snapshot
            .is_some(),
        "caught up from a snapshot"
    );
    let (kv, _) = fourth
        .member
        .get("/g/big/047", Consistency::Local)
        .await
        .unwrap();
    assert_eq!(kv.unwrap().value, vec![47u8; 64 * 1024]);

    // A payload whose checksum does not match is refused, and the member stays healthy.
    let ch = member_tls(1)
        .as_member()
        .endpoint(&fourth.addr)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut raft = pb::raft_client::RaftClient::new(ch);
    let mut bad = payload(&"not really a snapshot chunk");
    bad.crc32 ^= 1;
    let err = raft.install_snapshot(bad).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::DataLoss, "{err}");
    assert!(err.message().contains("checksum"), "{}", err.message());
    let rev = fourth
        .member
        .txn(vec![Op::create("/g/after", b"ok".to_vec())])
        .await
        .unwrap();
    assert!(rev > last);

    // Remove the fourth member again.
    let reply = admin(&leader_node.addr)
        .await
        .remove_member(pb::RemoveMemberRequest { id: 4 })
        .await
        .unwrap()
        .into_inner();
    assert!(reply.members.iter().all(|m| m.id != 4));

    for n in nodes.into_iter().chain([fourth]) {
        n.member.shutdown().await;
        let _ = n.stop.send(());
        let _ = n.server.await;
    }
}

/// A follower that missed 60 writes of 1.4 MiB (84 MiB, above the 64 MiB
/// gRPC message limit in one batch) catches up once it is back: the leader
/// sends them in batches bounded by bytes. Batched by count only, every
/// attempt exceeded the limit and the follower never caught up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_catches_up_on_entries_larger_than_one_message() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = Vec::new();
    for id in 1..=3 {
        nodes.push(node(id, dir.path(), |_| {}).await);
    }
    let leader = bootstrap(&nodes).await;
    let lagging_id = if leader == 3 { 2 } else { 3 };
    let lagging = nodes.remove(
        nodes
            .iter()
            .position(|n| n.member.id() == lagging_id)
            .unwrap(),
    );
    let leader = nodes.iter().find(|n| n.member.id() == leader).unwrap();
    leader
        .member
        .txn(vec![Op::create("/big/first", b"1".to_vec())])
        .await
        .unwrap();
    lagging
        .member
        .raft()
        .wait(Some(LONG))
        .applied_index_at_least(Some(leader.member.status().applied_index), "in step")
        .await
        .unwrap();

    // Stop the follower (server and member); its data stays.
    let Node {
        member,
        addr,
        stop,
        server,
    } = lagging;
    let _ = stop.send(());
    let _ = server.await;
    let db = member.db_handle();
    member.shutdown().await;
    drop(member);
    wait_for("the stopped member's database to close", LONG, || {
        let closed = db.upgrade().is_none();
        async move { closed.then_some(()) }
    })
    .await;

    const VALUE: usize = 1400 * 1024;
    let mut last = 0;
    for i in 0..60u8 {
        last = leader
            .member
            .txn(vec![Op::create(format!("/big/{i:02}"), vec![i; VALUE])])
            .await
            .unwrap();
    }

    // Restart it on the same address and data directory.
    let listener = TcpListener::bind(&addr).await.unwrap();
    let mut cfg = test_config(lagging_id, dir.path().join(format!("g{lagging_id}")));
    cfg.addr = addr.clone();
    let member = Member::open(cfg, GrpcTransport::new(member_tls(lagging_id).as_member()))
        .await
        .unwrap();
    let (stop, server) = serve(member.clone(), listener);
    member
        .raft()
        .wait(Some(Duration::from_secs(30)))
        .applied_index_at_least(Some(last), "the restarted follower caught up")
        .await
        .unwrap();
    let (kv, _) = member.get("/big/59", Consistency::Local).await.unwrap();
    assert_eq!(kv.unwrap().value, vec![59u8; VALUE]);

    for n in nodes {
        n.member.shutdown().await;
        let _ = n.stop.send(());
        let _ = n.server.await;
    }
    member.shutdown().await;
    let _ = stop.send(());
    let _ = server.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_of_another_cluster_is_refused() {
    use keel_store::Vote;
    use keel_store::{ClusterId, PeerRequest, PeerResponse, Transport, TransportError};
    use openraft::raft::VoteRequest;
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    // Cluster A: member 1 bootstraps members 1 and 2; member 2 starts empty
    // and takes A's id from the first call it gets.
    let a = vec![
        node(1, dir.path(), |_| {}).await,
        node(2, dir.path(), |_| {}).await,
    ];
    assert_eq!(a[1].member.cluster_id(), None);
    bootstrap(&a).await;
    let a_id = a[0]
        .member
        .cluster_id()
        .expect("the bootstrapping member's id");
    let members: BTreeMap<u64, String> =
        a.iter().map(|n| (n.member.id(), n.addr.clone())).collect();
    assert_eq!(a_id, ClusterId::new_cluster("keel-cluster", &members));
    assert_eq!(a[1].member.cluster_id(), Some(a_id));
    // Cluster B: one member with another token.
    let b = node(3, dir.path(), |c| c.cluster_token = "other".into()).await;
    b.member.bootstrap_single().await.unwrap();
    wait_for("B's member leads", LONG, || async {
        b.member.is_leader().then_some(())
    })
    .await;
    let b_id = b.member.cluster_id().unwrap();
    assert_ne!(a_id, b_id);
    let status = status(&b.addr).await;
    assert_eq!(status.cluster_id, b_id.to_string());
    assert!(
        b.member
            .render_metrics()
            .contains(&format!("keel_cluster_info{{cluster_id=\"{b_id}\"}} 1"))
    );

    // A member of A calls B: refused, naming both clusters, and B's Raft
    // never sees the vote (its term stays).
    let term = b.member.status().term;
    let from_a = GrpcTransport::new(member_tls(1).as_member());
    from_a.set_cluster_id(a_id);
    let vote = || PeerRequest::Vote(VoteRequest::new(Vote::new(term + 50, 1), None));
    let err = from_a.call(3, &b.addr, vote(), LONG).await.unwrap_err();
    let TransportError::Network(msg) = &err else {
        panic!("expected a refusal, got {err:?}");
    };
    assert!(
        msg.contains("FailedPrecondition")
            && msg.contains(&a_id.to_string())
            && msg.contains(&b_id.to_string()),
        "{msg}"
    );
    assert_eq!(b.member.status().term, term);
    assert!(b.member.is_leader());
    assert!(
        b.member
            .render_metrics()
            .contains("keel_peer_calls_refused_total{reason=\"wrong_cluster\"} 1")
    );
    // The same call as a member of B is answered.
    let from_b = GrpcTransport::new(member_tls(1).as_member());
    from_b.set_cluster_id(b_id);
    let answer = from_b
        .call(3, &b.addr, PeerRequest::Position, LONG)
        .await
        .unwrap();
    assert!(matches!(answer, PeerResponse::Position(_)), "{answer:?}");
    // A's members still agree on A's leader and take writes.
    a[0].member
        .txn(vec![Op::create("/g/after", b"1".to_vec())])
        .await
        .unwrap();
    for n in a.into_iter().chain([b]) {
        let _ = n.stop.send(());
        n.server.await.unwrap();
    }
}
