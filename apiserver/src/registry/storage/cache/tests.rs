//! The watch cache over in-memory storage: what it serves equals what the
//! storage under it answers (lists, index lookups, watch events in order),
//! what it cannot serve goes to that storage (`Compacted` included), and it
//! converges again after its own watch is cut off and the events it missed
//! are compacted away.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde_json::json;

use super::{Next, WatchCache, index};
use crate::registry::storage::{
    Consistency, MemoryStorage, RangeRequest, Storage, StorageError, WatchMessage,
};

const PODS: &str = "/registry/core/pods/";
const CMS: &str = "/registry/core/configmaps/";
const WAIT: Duration = Duration::from_secs(10);

fn pod(ns: &str, name: &str, node: Option<&str>) -> (String, Vec<u8>) {
    let mut v = json!({"kind": "Pod", "metadata": {"name": name, "namespace": ns}, "spec": {}});
    if let Some(n) = node {
        v["spec"]["nodeName"] = json!(n);
    }
    (format!("{PODS}{ns}/{name}"), v.to_string().into_bytes())
}

fn put_pod(mem: &MemoryStorage, ns: &str, name: &str, node: Option<&str>) -> u64 {
    let (k, v) = pod(ns, name, node);
    mem.put(&k, v)
}

/// A cache over `mem` that has caught up with it.
async fn cache_over(mem: &Arc<MemoryStorage>) -> Arc<WatchCache> {
    let cache = WatchCache::new(mem.clone());
    caught_up(&cache, mem).await;
    cache
}

async fn caught_up(cache: &WatchCache, mem: &MemoryStorage) {
    assert!(
        cache.reached(mem.revision(), WAIT).await,
        "the cache is at {}, the storage at {}",
        cache.revision(),
        mem.revision()
    );
}

fn local(prefix: &str) -> RangeRequest {
    let mut req = RangeRequest::prefix(prefix);
    req.consistency = Consistency::Local;
    req
}

fn keys(kvs: &[keel_store::KeyValue]) -> Vec<String> {
    kvs.iter().map(|kv| kv.key.clone()).collect()
}

#[tokio::test]
async fn a_resource_version_0_list_from_the_cache_equals_the_storage_list() {
    let mem = Arc::new(MemoryStorage::new());
    for (ns, name) in [("a", "p1"), ("a", "p2"), ("b", "p1")] {
        put_pod(&mem, ns, name, Some("node-1"));
    }
    mem.put(&format!("{CMS}a/c1"), r#"{"metadata":{"name":"c1"}}"#);
    let cache = cache_over(&mem).await;
    // Written after the first list: applied from the watch.
    put_pod(&mem, "b", "p2", None);
    mem.remove(&format!("{PODS}a/p1"));
    mem.put(
        &format!("{CMS}a/c1"),
        r#"{"metadata":{"name":"c1"},"data":{}}"#,
    );
    caught_up(&cache, &mem).await;
    for prefix in [
        PODS,
        CMS,
        &format!("{PODS}a/"),
        &format!("{PODS}b/"),
        "/registry/core/secrets/",
    ] {
        let want = mem.list(local(prefix)).await.unwrap();
        // The storage refuses the next call: the answer must come from memory.
        mem.fail_next(StorageError::Unavailable("not asked".into()));
        let got = cache.list(local(prefix)).await.unwrap();
        assert!(
            mem.linearize().await.is_err(),
            "{prefix}: the storage was read"
        );
        assert_eq!(got, want, "{prefix}");
    }
    // A consistent list waits for the storage's revision, then reads memory.
    let mut req = RangeRequest::prefix(PODS);
    req.consistency = Consistency::Linearizable;
    let got = cache.list(req).await.unwrap();
    assert_eq!(got, mem.list(local(PODS)).await.unwrap());
    // Paging needs the storage's continue tokens: read from it.
    let mut req = local(PODS);
    req.limit = 1;
    let page = cache.list(req).await.unwrap();
    assert_eq!(page.kvs.len(), 1);
    assert!(page.continue_token.is_some(), "a page of a larger list");
}

#[tokio::test]
async fn the_node_index_follows_pods_that_move_and_go() {
    let mem = Arc::new(MemoryStorage::new());
    for i in 0..40 {
        let ns = if i % 2 == 0 { "even" } else { "odd" };
        let node = format!("node-{}", i % 4);
        put_pod(&mem, ns, &format!("p{i:02}"), Some(&node));
    }
    put_pod(&mem, "even", "pending", None);
    let cache = cache_over(&mem).await;
    // Moved from node-1 to node-2, deleted, created, unscheduled.
    put_pod(&mem, "odd", "p01", Some("node-2"));
    mem.remove(&format!("{PODS}even/p02"));
    put_pod(&mem, "odd", "new", Some("node-2"));
    put_pod(&mem, "even", "p04", None);
    caught_up(&cache, &mem).await;
    let all = mem.list(local(PODS)).await.unwrap().kvs;
    for node in ["node-0", "node-1", "node-2", "node-3", "", "node-9"] {
        for (prefix, ns) in [
            (PODS.to_string(), None),
            (format!("{PODS}odd/"), None),
            (PODS.to_string(), Some("even")),
        ] {
            let want: Vec<String> = all
                .iter()
                .filter(|kv| index::node_name(&kv.value) == node)
                .filter(|kv| kv.key.starts_with(&prefix))
                .filter(|kv| ns.is_none_or(|ns| kv.key.starts_with(&format!("{PODS}{ns}/"))))
                .map(|kv| kv.key.clone())
                .collect();
            let mut fields = vec![(index::NODE_NAME.to_string(), node.to_string())];
            if let Some(ns) = ns {
                fields.push(("/metadata/namespace".into(), ns.into()));
            }
            let got = cache.list_matching(local(&prefix), fields).await.unwrap();
            assert_eq!(
                keys(&got.kvs),
                want,
                "node {node:?} under {prefix} in {ns:?}"
            );
        }
    }
    let moved = cache
        .list_matching(
            local(PODS),
            vec![(index::NODE_NAME.into(), "node-2".into())],
        )
        .await
        .unwrap();
    assert!(keys(&moved.kvs).contains(&format!("{PODS}odd/p01")));
    let unscheduled = cache
        .list_matching(local(PODS), vec![(index::NODE_NAME.into(), String::new())])
        .await
        .unwrap();
    assert_eq!(
        keys(&unscheduled.kvs),
        [format!("{PODS}even/p04"), format!("{PODS}even/pending")]
    );
}

/// (revision, key, whether it is a delete) of every event until `upto`.
async fn events_until(
    mut s: crate::registry::storage::EventStream,
    upto: u64,
) -> Vec<(u64, String, bool)> {
    let mut out = Vec::new();
    loop {
        let msg = tokio::time::timeout(WAIT, s.next())
            .await
            .expect("an event in time")
            .expect("the watch is open")
            .expect("no error");
        if let WatchMessage::Events { revision, events } = msg {
            for e in events {
                out.push((e.revision, e.key.clone(), e.value.is_none()));
            }
            if revision >= upto {
                return out;
            }
        }
    }
}

#[tokio::test]
async fn a_watch_from_the_cache_sends_the_storage_events_in_order() {
    let mem = Arc::new(MemoryStorage::new());
    put_pod(&mem, "a", "seed", Some("n"));
    let cache = cache_over(&mem).await;
    let start = mem.revision();
    let prefix = format!("{PODS}a/");
    let from_cache = cache.watch(&prefix, start).await.unwrap();
    let from_storage = mem.watch(&prefix, start).await.unwrap();
    for i in 0..30 {
        put_pod(
            &mem,
            if i % 3 == 0 { "b" } else { "a" },
            &format!("p{}", i % 7),
            Some("n"),
        );
        mem.put(&format!("{CMS}a/c{i}"), "{}");
        if i % 5 == 0 {
            mem.remove(&format!("{PODS}a/p{}", i % 7));
        }
    }
    let last = put_pod(&mem, "a", "last", None);
    let want = events_until(from_storage, last).await;
    assert!(want.len() > 20);
    assert_eq!(events_until(from_cache, last).await, want);
    // A later watch starting in the ring replays the same suffix, from
    // memory: the storage refuses the next call and is not asked.
    let mid = want[want.len() / 2].0;
    caught_up(&cache, &mem).await;
    mem.fail_next(StorageError::Unavailable("not asked".into()));
    let replay = cache.watch(&prefix, mid - 1).await.unwrap();
    assert!(mem.linearize().await.is_err(), "the storage was asked");
    let suffix: Vec<_> = want.iter().filter(|e| e.0 >= mid).cloned().collect();
    assert_eq!(events_until(replay, last).await, suffix);
}

#[tokio::test]
async fn starts_the_cache_cannot_serve_get_the_storage_answer() {
    let mem = Arc::new(MemoryStorage::new());
    let first = put_pod(&mem, "a", "p", Some("n"));
    for i in 0..5 {
        put_pod(&mem, "a", "p", Some(&format!("n{i}")));
    }
    let cache = cache_over(&mem).await;
    // Older than the cache's first list, so not in its ring: the storage
    // serves the watch (it still has the events).
    let got = events_until(cache.watch(PODS, first).await.unwrap(), mem.revision()).await;
    assert_eq!(got.len(), 5);
    mem.compact(mem.revision() - 1);
    match cache.watch(PODS, first).await {
        Err(StorageError::Compacted { requested, .. }) => assert_eq!(requested, first),
        Err(e) => panic!("expected Compacted, got {e}"),
        Ok(_) => panic!("expected Compacted, got a watch"),
    }
    // Not a resource's prefix: the storage's watch too.
    let odd = cache.watch("/registry/core/pods/a/p", mem.revision()).await;
    assert!(odd.is_ok());
    // A revision nobody has written yet.
    let future = mem.revision() + 1000;
    assert!(matches!(
        cache.watch(PODS, future).await.err(),
        Some(StorageError::FutureRevision { .. })
    ));
}

#[tokio::test]
async fn the_cache_relists_after_missing_compacted_events_and_converges() {
    let mem = Arc::new(MemoryStorage::new());
    for i in 0..10 {
        put_pod(&mem, "a", &format!("p{i}"), Some("n1"));
    }
    let cache = cache_over(&mem).await;
    let mut watcher = cache.subscribe(PODS, mem.revision()).await.expect("served");
    // More writes than the storage buffers for a watcher, all before the
    // cache's task runs again (this runtime has one thread): its watch is
    // cut off, and the events it needs to resume are compacted away.
    for i in 0..3000 {
        put_pod(
            &mem,
            "b",
            &format!("q{}", i % 50),
            Some(&format!("n{}", i % 3)),
        );
    }
    for i in 0..5 {
        mem.remove(&format!("{PODS}a/p{i}"));
    }
    mem.compact(mem.revision());
    caught_up(&cache, &mem).await;
    assert_eq!(
        cache.list(local(PODS)).await.unwrap(),
        mem.list(local(PODS)).await.unwrap()
    );
    assert!(
        cache
            .render_metrics()
            .contains("keel_watch_cache_relists_total 1")
    );
    // The open watch cannot go on across the gap: it ends.
    let ended = loop {
        match tokio::time::timeout(WAIT, watcher.next())
            .await
            .expect("in time")
        {
            Next::End(why) => break why,
            Next::Event(_) | Next::Progress(_) => {}
        }
    };
    assert!(!ended.is_empty());
    let by_node: BTreeSet<String> = keys(
        &cache
            .list_matching(local(PODS), vec![(index::NODE_NAME.into(), "n1".into())])
            .await
            .unwrap()
            .kvs,
    )
    .into_iter()
    .collect();
    let want: BTreeSet<String> = mem
        .list(local(PODS))
        .await
        .unwrap()
        .kvs
        .iter()
        .filter(|kv| index::node_name(&kv.value) == "n1")
        .map(|kv| kv.key.clone())
        .collect();
    assert_eq!(by_node, want);
}
