//! Hostile input and resource limits on a member's gRPC port: forged continue
//! tokens and peer payloads are refused with a status (the member keeps
//! serving), a `Kv.Range` without a limit comes back in pages, and `Kv.Watch`
//! beyond the member's watch cap is RESOURCE_EXHAUSTED until a watch closes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use keel_proto::member as pb;
use keel_store::Member;
use keel_tests::fuzz::crc32;
use keel_tests::peer_tls::{admin_tls, member_tls, serving_member};
use keel_tests::{init_tracing, wait_for};
use tonic::Code;
use tonic::transport::Channel;

const LONG: Duration = Duration::from_secs(60);

/// One initialized member serving gRPC on a loopback port.
async fn member(dir: &std::path::Path, max_watches: usize) -> (Arc<Member>, String) {
    serving_member(dir, |cfg| cfg.watch.max_watches = max_watches).await
}

async fn kv(addr: &str) -> pb::kv_client::KvClient<Channel> {
    let ch = admin_tls().endpoint(addr).unwrap().connect().await.unwrap();
    pb::kv_client::KvClient::new(ch).max_decoding_message_size(64 << 20)
}

fn create(key: String, value: Vec<u8>) -> pb::Operation {
    pb::Operation {
        kind: pb::operation::Kind::Create as i32,
        key,
        value,
        ..Default::default()
    }
}

/// The member answers a plain write and read, so it is still serving.
async fn still_serving(c: &mut pb::kv_client::KvClient<Channel>, n: usize) {
    c.txn(pb::TxnRequest {
        ops: vec![create(format!("/alive/{n}"), b"x".to_vec())],
    })
    .await
    .expect("a write after hostile input");
    let r = c
        .range(pb::RangeRequest {
            prefix: format!("/alive/{n}"),
            ..Default::default()
        })
        .await
        .expect("a read after hostile input")
        .into_inner();
    assert_eq!(r.kvs.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_tokens_and_payloads_are_refused_and_the_member_keeps_serving() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let (_member, addr) = member(dir.path(), 100).await;
    let mut c = kv(&addr).await;
    c.txn(pb::TxnRequest {
        ops: vec![
            create("/t/a".into(), b"1".to_vec()),
            create("/t/b".into(), b"2".to_vec()),
        ],
    })
    .await
    .unwrap();
    let tokens = [
        "kc1.00fd0000000000800000",
        "kc1.fdffffffffffffffff",
        "kc1.a\u{e9}a",
        "kc1.zz",
        "nonsense",
    ];
    for (n, token) in tokens.iter().enumerate() {
        let started = Instant::now();
        let err = c
            .range(pb::RangeRequest {
                prefix: "/t/".into(),
                limit: 1,
                continue_token: token.to_string(),
                ..Default::default()
            })
            .await
            .expect_err(token);
        assert_eq!(err.code(), Code::InvalidArgument, "{token}: {err}");
        assert!(started.elapsed() < Duration::from_secs(5), "{token}");
        still_serving(&mut c, n).await;
    }

    // Peer payloads with a valid checksum whose bincode declares huge lengths,
    // or is garbage, on every method that decodes one.
    let forged: [&[u8]; 5] = [
        // Forward(Command { version 1, at 0, Txn([Op { key: <2^47 bytes> ..}]) }):
        // the key's declared length used to abort the member.
        &[3, 1, 0, 0, 1, 0xfd, 0, 0, 0, 0, 0, 0x80, 0, 0],
        &[0, 0xfd, 0, 0, 0, 0, 0, 0x80, 0, 0],
        &[1, 0xfd, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        &[3, 0xfc, 0xff, 0xff, 0xff, 0x7f],
        &[0xff; 64],
    ];
    // Forged payloads from a member's certificate: past the handshake and
    // the group check, into the decoder.
    let ch = member_tls(2)
        .as_member()
        .endpoint(&addr)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut raft = pb::raft_client::RaftClient::new(ch.clone());
    let mut client = pb::client_client::ClientClient::new(ch);
    for (n, data) in forged.iter().enumerate() {
        let p = || {
            tonic::Request::new(pb::RaftPayload {
                data: data.to_vec(),
                crc32: crc32(data),
            })
        };
        let results = [
            raft.vote(p()).await,
            raft.append_entries(p()).await,
            raft.install_snapshot(p()).await,
            client.forward(p()).await,
            client.read_index(p()).await,
        ];
        for (m, r) in results.into_iter().enumerate() {
            let err = r.expect_err("a forged payload is refused");
            assert_eq!(
                err.code(),
                Code::InvalidArgument,
                "payload {n}, method {m}: {err}"
            );
        }
        // A wrong checksum is data loss.
        let err = raft
            .vote(tonic::Request::new(pb::RaftPayload {
                data: data.to_vec(),
                crc32: crc32(data) ^ 1,
            }))
            .await
            .expect_err("a bad checksum is refused");
        assert_eq!(err.code(), Code::DataLoss);
        still_serving(&mut c, 100 + n).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unlimited_kv_range_comes_in_pages() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let (_member, addr) = member(dir.path(), 100).await;
    let mut c = kv(&addr).await;
    let n = 40usize;
    for i in 0..n {
        c.txn(pb::TxnRequest {
            ops: vec![create(format!("/big/{i:03}"), vec![i as u8; 1 << 20])],
        })
        .await
        .unwrap();
    }
    let mut keys = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let r = c
            .range(pb::RangeRequest {
                prefix: "/big/".into(),
                continue_token: token,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        let bytes: usize = r.kvs.iter().map(|kv| kv.value.len()).sum();
        assert!(bytes <= keel_store::read::MAX_PAGE_BYTES + (1 << 20));
        keys.extend(r.kvs.into_iter().map(|kv| kv.key));
        if r.continue_token.is_empty() {
            break;
        }
        token = r.continue_token;
        assert!(pages < 100);
    }
    assert!(pages >= 3, "{n} MiB in {pages} page(s)");
    let want: Vec<String> = (0..n).map(|i| format!("/big/{i:03}")).collect();
    assert_eq!(keys, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_watches_beyond_the_cap_are_resource_exhausted() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let (member, addr) = member(dir.path(), 2).await;
    let watch = || async {
        let mut c = kv(&addr).await;
        c.watch(pb::WatchRequest {
            prefix: "/w/".into(),
            after_revision: None,
        })
        .await
    };
    let first = watch().await.expect("first watch").into_inner();
    let _second = watch().await.expect("second watch").into_inner();
    let err = watch().await.expect_err("a third watch is refused");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err}");
    // Closing a watch frees its place.
    drop(first);
    wait_for("a watch slot to free up", LONG, || async {
        (member.hub().watcher_count() < 2).then_some(())
    })
    .await;
    let mut third = watch()
        .await
        .expect("a watch after one closed")
        .into_inner();
    let mut c = kv(&addr).await;
    c.txn(pb::TxnRequest {
        ops: vec![create("/w/x".into(), b"1".to_vec())],
    })
    .await
    .unwrap();
    let got = tokio::time::timeout(LONG, async {
        loop {
            let r = third.message().await.unwrap().expect("stream open");
            if !r.events.is_empty() {
                return r;
            }
        }
    })
    .await
    .expect("the new watch delivers");
    assert_eq!(got.events[0].kv.as_ref().unwrap().key, "/w/x");
}
