//! Who did what: writes through the API server's whole request chain
//! (authentication, impersonation, authorization, the registry, the watch
//! cache), made on a follower of a three-member cluster as users the
//! administrator impersonates, are recorded in every member's events with
//! the user's name and groups, concurrent ones included (forwarded to the
//! leader and grouped into batch entries there). A `Kv` transaction names
//! the administrator certificate that made it, and the `Kv` watch shows it.

use std::sync::Arc;
use std::time::Duration;

use keel_apiserver::http::{HeaderMap, HeaderValue, InProcess, Method, Uri, UserInfo, header};
use keel_apiserver::{Bytes, registry::Registry};
use keel_proto::member as pb;
use keel_store::{Actor, EventKind};
use keel_tests::peer_tls::{admin_tls, serving_member};
use keel_tests::{Cluster, wait_for};

const LONG: Duration = Duration::from_secs(60);

/// One request as the administrator, acting as `as_user` with `groups`
/// when given; the status code.
async fn request(
    api: &InProcess,
    method: Method,
    path: &str,
    body: serde_json::Value,
    as_user: Option<(&str, &[&str])>,
) -> u16 {
    let mut headers = HeaderMap::new();
    let ctype = if method == Method::PATCH {
        "application/merge-patch+json"
    } else {
        "application/json"
    };
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    if let Some((user, groups)) = as_user {
        headers.insert("impersonate-user", HeaderValue::from_str(user).unwrap());
        for g in groups {
            headers.append("impersonate-group", HeaderValue::from_str(g).unwrap());
        }
    }
    let uri: Uri = path.parse().unwrap();
    let resp = api
        .handle(method, uri, headers, Bytes::from(body.to_string()))
        .await;
    resp.status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_writes_name_the_requesting_user_in_every_members_events() {
    let c = Cluster::start(3, 61).await;
    let leader = c.leader(LONG).await;
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    let admin = UserInfo {
        name: "admin".into(),
        groups: vec!["system:masters".into()],
        ..UserInfo::default()
    };
    let api = Arc::new(InProcess::new(
        Arc::new(Registry::new(c.member(follower))),
        admin,
    ));
    let ns =
        serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}});
    assert_eq!(
        request(&api, Method::POST, "/api/v1/namespaces", ns, None).await,
        201
    );
    // Impersonated users keep `system:masters` (the only group this
    // harness's authorizer allows) and get `system:authenticated` added.
    const ALICE: (&str, &[&str]) = ("alice", &["system:masters", "dev"]);
    const BOB: (&str, &[&str]) = ("bob", &["system:masters", "ops"]);
    let actor = |(user, groups): (&str, &[&str])| {
        let mut groups: Vec<&str> = groups.to_vec();
        groups.push("system:authenticated");
        Actor::new(user, groups)
    };
    let cms = "/api/v1/namespaces/team/configmaps";
    let cm = |name: &str| serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}});
    assert_eq!(
        request(&api, Method::POST, cms, cm("h"), Some(ALICE)).await,
        201
    );
    let h = format!("{cms}/h");
    let patch = serde_json::json!({"data": {"a": "2"}});
    assert_eq!(
        request(&api, Method::PATCH, &h, patch, Some(BOB)).await,
        200
    );
    assert_eq!(
        request(
            &api,
            Method::DELETE,
            &h,
            serde_json::Value::Null,
            Some(ALICE)
        )
        .await,
        200
    );
    // Concurrent creates by both users: forwarded to the leader together.
    const N: usize = 24;
    let tasks: Vec<_> = (0..N)
        .map(|i| {
            let api = api.clone();
            tokio::spawn(async move {
                let who = if i.is_multiple_of(2) { ALICE } else { BOB };
                let code = request(&api, Method::POST, cms, cm(&format!("c{i}")), Some(who)).await;
                assert_eq!(code, 201, "create c{i}");
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let prefix = "/registry/core/configmaps/team/";
    let expected = |key: &str, kind: EventKind, seen: usize| -> Actor {
        match key.strip_prefix(prefix).unwrap() {
            "h" if seen == 1 => actor(BOB),
            "h" => actor(ALICE),
            name => {
                let i: usize = name.strip_prefix('c').unwrap().parse().unwrap();
                assert_eq!(kind, EventKind::Added, "{key}");
                actor(if i.is_multiple_of(2) { ALICE } else { BOB })
            }
        }
    };
    for id in 1..=3 {
        let m = c.member(id);
        let events = wait_for(&format!("member {id} to apply every write"), LONG, || {
            let events: Vec<_> = m
                .events()
                .unwrap()
                .into_iter()
                .filter(|e| e.key.starts_with(prefix))
                .collect();
            std::future::ready((events.len() == 3 + N).then_some(events))
        })
        .await;
        let mut h_events = 0;
        for e in &events {
            let want = expected(&e.key, e.kind, h_events);
            if e.key.ends_with("/h") {
                h_events += 1;
            }
            assert_eq!(
                e.actor.as_deref(),
                Some(&want),
                "member {id}: {:?} {}",
                e.kind,
                e.key
            );
        }
        let ns = m
            .events()
            .unwrap()
            .into_iter()
            .find(|e| e.key.ends_with("/namespaces/team"));
        let ns_actor = ns
            .and_then(|e| e.actor.clone())
            .expect("the namespace's event");
        assert_eq!(ns_actor.user, "admin", "member {id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kv_write_names_the_administrator_certificate_in_the_kv_watch() {
    let dir = tempfile::tempdir().unwrap();
    let (member, addr) = serving_member(dir.path(), |_| {}).await;
    let ch = admin_tls()
        .endpoint(&addr)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut kv = pb::kv_client::KvClient::new(ch);
    let revision = kv
        .txn(pb::TxnRequest {
            ops: vec![pb::Operation {
                kind: pb::operation::Kind::Create as i32,
                key: "/who".into(),
                value: b"1".to_vec(),
                ..Default::default()
            }],
        })
        .await
        .unwrap()
        .into_inner()
        .revision;
    let mut watch = kv
        .watch(pb::WatchRequest {
            prefix: "/who".into(),
            after_revision: Some(revision - 1),
        })
        .await
        .unwrap()
        .into_inner();
    let reply = tokio::time::timeout(LONG, watch.message())
        .await
        .expect("the watch answers")
        .unwrap()
        .expect("a reply");
    assert_eq!(reply.revision, revision);
    // The test CA's administrator: CN admin, O system:masters.
    let want = pb::Actor {
        user: "admin".into(),
        groups: vec!["system:masters".into()],
    };
    assert_eq!(reply.events[0].actor, Some(want));
    let stored = member.events().unwrap();
    let ev = stored.iter().find(|e| e.key == "/who").unwrap();
    assert_eq!(
        ev.actor.as_deref(),
        Some(&Actor::new("admin", ["system:masters"]))
    );
}
