//! Bounds on what a client can make a member do: hostile continuation
//! tokens fail as `InvalidContinue` without allocating, ranges without a limit
//! (now or at a past revision) come back in pages of bounded size, and the
//! watch hub refuses watches beyond its cap until one closes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use keel_store::command::{Command, Op};
use keel_store::db::Db;
use keel_store::read::{self, Consistency, MAX_PAGE_BYTES, RangeRequest};
use keel_store::state_machine::{AppliedState, StateMachine};
use keel_store::watch::{WatchConfig, WatchHub, WatchStart};
use keel_store::{Entry, EntryPayload, KeyValue, StoreError, codec};

struct Store {
    _dir: tempfile::TempDir,
    db: Arc<Db>,
    hub: Arc<WatchHub>,
    sm: StateMachine,
    rev: u64,
}

impl Store {
    fn open(watch: WatchConfig) -> Store {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        let hub = WatchHub::new(db.clone(), watch, 0, 0);
        let sm = StateMachine::new(db.clone(), hub.clone(), AppliedState::load(&db).unwrap());
        Store {
            _dir: dir,
            db,
            hub,
            sm,
            rev: 0,
        }
    }

    async fn txn(&mut self, ops: Vec<Op>) -> u64 {
        self.rev += 1;
        let entry = Entry {
            log_id: keel_store::log_id(1, 1, self.rev),
            payload: EntryPayload::Normal(Command::txn(ops)),
        };
        self.sm.apply_entries([entry]).await.unwrap();
        self.rev
    }

    /// Every page of a range, checking each page's size on the way.
    fn pages(&self, mut req: RangeRequest) -> (Vec<KeyValue>, usize) {
        let mut all = Vec::new();
        let mut pages = 0;
        loop {
            let resp = read::range(&self.db, &req).unwrap();
            pages += 1;
            let bytes: usize = resp
                .kvs
                .iter()
                .map(|kv| kv.key.len() + kv.value.len())
                .sum();
            let largest = resp.kvs.iter().map(|kv| kv.value.len()).max().unwrap_or(0);
            assert!(
                bytes <= MAX_PAGE_BYTES + largest,
                "page {pages} holds {bytes} bytes in {} keys",
                resp.kvs.len()
            );
            all.extend(resp.kvs);
            match resp.continue_token {
                Some(t) => req.continue_token = Some(t),
                None => return (all, pages),
            }
            assert!(pages < 1000, "paging does not end");
        }
    }
}

fn local(prefix: &str) -> RangeRequest {
    let mut req = RangeRequest::prefix(prefix);
    req.consistency = Consistency::Local;
    req
}

/// A value of `len` bytes that differs per key and per write.
fn value(key: usize, round: u8, len: usize) -> Vec<u8> {
    let mut v = vec![round; len];
    v[..8].copy_from_slice(&(key as u64).to_be_bytes());
    v
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn hostile_continue_tokens_are_invalid_and_cheap() {
    let mut s = Store::open(WatchConfig::default());
    s.txn(vec![
        Op::create("/a/x", b"1".to_vec()),
        Op::create("/a/y", b"2".to_vec()),
    ])
    .await;
    // A well-formed token, the same layout as the store's, whose last key is
    // outside its prefix; and one for another prefix.
    let outside = format!("kc1.{}", hex(&codec::encode(&(1u64, "/a/", "/b/zz"))));
    let other = format!("kc1.{}", hex(&codec::encode(&(1u64, "/b/", "/b/x"))));
    let hostile = [
        // A string whose length prefix claims 2^47 bytes: bincode used to
        // allocate it and abort the process.
        "kc1.00fd0000000000800000".to_string(),
        "kc1.fdffffffffffffffff".to_string(),
        "kc1.00ff".to_string(),
        // `kc1.a%C3%A9a` once URL-decoded: even in bytes, odd in characters.
        "kc1.a\u{e9}a".to_string(),
        "kc1.\u{e9}\u{e9}".to_string(),
        "kc1.zz".to_string(),
        "kc1.0".to_string(),
        "kc1.".to_string(),
        "kc2.00".to_string(),
        String::new(),
        outside,
        other,
    ];
    for token in hostile {
        let mut req = local("/a/");
        req.limit = 1;
        req.continue_token = Some(token.clone());
        let started = Instant::now();
        match read::range(&s.db, &req) {
            Err(StoreError::InvalidContinue(_)) => {}
            other => panic!("token {token:?}: expected InvalidContinue, got {other:?}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "token {token:?} took {:?}",
            started.elapsed()
        );
    }
    // The store still pages normally afterwards.
    let mut req = local("/a/");
    req.limit = 1;
    let first = read::range(&s.db, &req).unwrap();
    req.continue_token = first.continue_token;
    let second = read::range(&s.db, &req).unwrap();
    assert_eq!(
        (first.kvs[0].key.as_str(), second.kvs[0].key.as_str()),
        ("/a/x", "/a/y")
    );
}

/// A forged length prefix is refused by every decode, not only tokens'.
#[test]
fn decode_bounds_declared_lengths() {
    let started = Instant::now();
    for bytes in [
        &[0xfd, 0, 0, 0, 0, 0, 0x80, 0, 0][..],
        &[0xfd, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff][..],
        &[0xfc, 0xff, 0xff, 0xff, 0x7f][..],
    ] {
        assert!(codec::decode::<String>(bytes).is_err());
        assert!(codec::decode::<Vec<u8>>(bytes).is_err());
        assert!(codec::decode::<KeyValue>(bytes).is_err());
        assert!(codec::decode::<Command>(bytes).is_err());
        assert!(codec::decode_prefix::<String>(bytes).is_err());
    }
    assert!(started.elapsed() < Duration::from_secs(1));
    // Valid values of every size still decode.
    for len in [0usize, 1, 5000, 3 << 20] {
        let v = vec![7u8; len];
        assert_eq!(codec::decode::<Vec<u8>>(&codec::encode(&v)).unwrap(), v);
    }
}

#[tokio::test]
async fn a_range_without_limit_comes_in_bounded_pages() {
    let mut s = Store::open(WatchConfig::default());
    let n = 40;
    let len = 1 << 20;
    for i in 0..n {
        s.txn(vec![Op::create(format!("/big/{i:03}"), value(i, 1, len))])
            .await;
    }
    let (all, pages) = s.pages(local("/big/"));
    assert!(pages >= 3, "{n} MiB came back in {pages} page(s)");
    let keys: Vec<String> = all.iter().map(|kv| kv.key.clone()).collect();
    let want: Vec<String> = (0..n).map(|i| format!("/big/{i:03}")).collect();
    assert_eq!(keys, want);
    // A limit larger than a page is served in pages too.
    let mut req = local("/big/");
    req.limit = 1000;
    let first = read::range(&s.db, &req).unwrap();
    assert!(first.kvs.len() < n && first.continue_token.is_some());
}

#[tokio::test]
async fn a_past_revision_range_comes_in_bounded_pages() {
    let mut s = Store::open(WatchConfig::default());
    let n = 40;
    let len = 1 << 20;
    for i in 0..n {
        s.txn(vec![Op::create(format!("/p/{i:03}"), value(i, 1, len))])
            .await;
    }
    let past = s.rev;
    let want: BTreeMap<String, Vec<u8>> = (0..n)
        .map(|i| (format!("/p/{i:03}"), value(i, 1, len)))
        .collect();
    // After `past`: every key changes (updated or deleted), and as many new
    // keys appear between them, all with values as large: the undo set alone
    // is several pages.
    for i in 0..n {
        let key = format!("/p/{i:03}");
        let op = if i % 3 == 0 {
            Op::delete(key)
        } else {
            Op::update(key, value(i, 2, len))
        };
        s.txn(vec![
            op,
            Op::create(format!("/p/{i:03}x"), value(i, 3, len)),
        ])
        .await;
    }
    let mut req = local("/p/");
    req.revision = Some(past);
    let (all, pages) = s.pages(req);
    assert!(pages >= 3, "{n} MiB came back in {pages} page(s)");
    let got: BTreeMap<String, Vec<u8>> = all.into_iter().map(|kv| (kv.key, kv.value)).collect();
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    assert!(got == want, "values at the past revision differ");
    // Small pages at the past revision agree as well.
    let mut req = local("/p/");
    req.revision = Some(past);
    req.limit = 7;
    let (small, _) = s.pages(req);
    assert_eq!(small.len(), n);
}

#[tokio::test]
async fn the_hub_caps_open_watches() {
    let s = Store::open(WatchConfig {
        max_watches: 2,
        ..WatchConfig::default()
    });
    let a = s.hub.watch("/", WatchStart::Now).unwrap();
    let _b = s.hub.watch("/", WatchStart::Now).unwrap();
    match s.hub.watch("/", WatchStart::Now) {
        Err(StoreError::TooManyWatches { limit: 2 }) => {}
        other => panic!("expected TooManyWatches, got {other:?}"),
    }
    // Closing a watch frees its place at once.
    drop(a);
    assert_eq!(s.hub.watcher_count(), 1);
    let _c = s.hub.watch("/", WatchStart::Now).unwrap();
}
