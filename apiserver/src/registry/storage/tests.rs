//! The storage contract, checked on the in-memory implementation (the member
//! meets it in the store's and the API's integration tests): typed errors of
//! every verb, list pages and past revisions, watches from a revision, and
//! the guaranteed-update loop.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;

use super::*;

fn storage() -> Arc<dyn Storage> {
    Arc::new(MemoryStorage::new())
}

/// The actor of the tests' writes.
fn who() -> Actor {
    Actor::new("tester", ["testers"])
}

fn list(prefix: &str) -> RangeRequest {
    RangeRequest::prefix(prefix)
}

async fn next(s: &mut EventStream) -> Result<WatchMessage, StorageError> {
    tokio::time::timeout(Duration::from_secs(5), s.next())
        .await
        .expect("a watch message within 5 s")
        .expect("the watch is open")
}

fn keys(r: &RangeResponse) -> Vec<&str> {
    r.kvs.iter().map(|kv| kv.key.as_str()).collect()
}

#[tokio::test]
async fn get_create_update_delete_answer_with_typed_errors() {
    let s = storage();
    let missing = s.get("/a", Consistency::Linearizable).await.unwrap_err();
    assert_eq!(
        missing,
        StorageError::NotFound {
            key: "/a".into(),
            revision: Some(1)
        }
    );
    let r1 = s
        .create("/a", b"1".to_vec(), Some("u1".into()), &who())
        .await
        .unwrap();
    assert_eq!(r1, 2);
    assert_eq!(
        s.create("/a", b"again".to_vec(), None, &who())
            .await
            .unwrap_err(),
        StorageError::AlreadyExists { key: "/a".into() }
    );
    // Stale revision and wrong uid are conflicts; nothing is written.
    let stale = s
        .update(
            "/a",
            b"2".to_vec(),
            Preconditions::mod_revision(r1 - 1),
            &who(),
        )
        .await
        .unwrap_err();
    assert!(matches!(stale, StorageError::Conflict { .. }), "{stale:?}");
    let wrong_uid = s
        .delete("/a", Preconditions::uid("u2"), &who())
        .await
        .unwrap_err();
    assert!(
        matches!(wrong_uid, StorageError::Conflict { .. }),
        "{wrong_uid:?}"
    );
    let (kv, rev) = s.get("/a", Consistency::Local).await.unwrap();
    assert_eq!(
        (kv.value.as_slice(), kv.mod_revision, rev),
        (&b"1"[..], r1, r1)
    );

    let r2 = s
        .update("/a", b"2".to_vec(), Preconditions::mod_revision(r1), &who())
        .await
        .unwrap();
    let (kv, _) = s.get("/a", Consistency::Linearizable).await.unwrap();
    assert_eq!(
        (
            kv.create_revision,
            kv.mod_revision,
            kv.version,
            kv.uid.as_deref()
        ),
        (r1, r2, 2, Some("u1")),
        "an update keeps the creation revision and uid"
    );
    let gone = s
        .delete(
            "/a",
            Preconditions {
                mod_revision: Some(r2),
                uid: Some("u1".into()),
            },
            &who(),
        )
        .await
        .unwrap();
    assert_eq!(gone, r2 + 1);
    for e in [
        s.update("/a", b"3".to_vec(), Preconditions::default(), &who())
            .await
            .unwrap_err(),
        s.delete("/a", Preconditions::default(), &who())
            .await
            .unwrap_err(),
    ] {
        assert!(matches!(e, StorageError::NotFound { .. }), "{e:?}");
    }
}

#[tokio::test]
async fn lists_page_at_the_first_pages_revision() {
    let s = storage();
    for k in ["/p/a", "/p/b", "/p/c", "/q/x"] {
        s.create(k, k.as_bytes().to_vec(), None, &who())
            .await
            .unwrap();
    }
    let mut req = list("/p/");
    req.limit = 2;
    let first = s.list(req.clone()).await.unwrap();
    assert_eq!(keys(&first), ["/p/a", "/p/b"]);
    let pinned = first.revision;
    // Writes after the first page do not show in the next one.
    s.delete("/p/c", Preconditions::default(), &who())
        .await
        .unwrap();
    s.create("/p/d", b"d".to_vec(), None, &who()).await.unwrap();
    req.continue_token = first.continue_token.clone();
    let second = s.list(req.clone()).await.unwrap();
    assert_eq!((keys(&second), second.revision), (vec!["/p/c"], pinned));
    assert_eq!(second.continue_token, None);
    // Now: c gone, d there; an exact page needs no token.
    let now = s.list(list("/p/")).await.unwrap();
    assert_eq!(keys(&now), ["/p/a", "/p/b", "/p/d"]);
    assert_eq!(now.continue_token, None);
    // A past revision sees the old state.
    let mut past = list("/p/");
    past.revision = Some(pinned);
    assert_eq!(keys(&s.list(past).await.unwrap()), ["/p/a", "/p/b", "/p/c"]);
}

#[tokio::test]
async fn list_revisions_and_tokens_are_checked() {
    let mem = Arc::new(MemoryStorage::new());
    let s: Arc<dyn Storage> = mem.clone();
    for k in ["/p/a", "/p/b", "/p/c"] {
        s.create(k, b"v".to_vec(), None, &who()).await.unwrap();
    }
    let mut req = list("/p/");
    req.limit = 1;
    let first = s.list(req.clone()).await.unwrap();
    let head = mem.revision();

    let mut future = list("/p/");
    future.revision = Some(head + 5);
    assert_eq!(
        s.list(future).await.unwrap_err(),
        StorageError::FutureRevision {
            requested: head + 5,
            current: head
        }
    );
    for bad in ["nope", "km1.zz", "km1.7b7d"] {
        let mut r = list("/p/");
        r.continue_token = Some(bad.into());
        let e = s.list(r).await.unwrap_err();
        assert!(
            matches!(e, StorageError::InvalidContinue(_)),
            "{bad}: {e:?}"
        );
    }
    let mut elsewhere = list("/q/");
    elsewhere.continue_token = first.continue_token.clone();
    assert!(matches!(
        s.list(elsewhere).await.unwrap_err(),
        StorageError::InvalidContinue(_)
    ));
    // A token older than the retained events has expired.
    s.update("/p/a", b"w".to_vec(), Preconditions::default(), &who())
        .await
        .unwrap();
    mem.compact(mem.revision());
    req.continue_token = first.continue_token;
    assert_eq!(
        s.list(req).await.unwrap_err(),
        StorageError::Compacted {
            requested: first.revision,
            compacted: mem.revision()
        }
    );
}

#[tokio::test]
async fn a_watch_from_a_revision_gets_the_later_events_under_its_prefix() {
    let mem = Arc::new(MemoryStorage::new());
    let s: Arc<dyn Storage> = mem.clone();
    let r1 = s.create("/p/a", b"1".to_vec(), None, &who()).await.unwrap();
    let r2 = s
        .update("/p/a", b"2".to_vec(), Preconditions::default(), &who())
        .await
        .unwrap();
    s.create("/q/x", b"x".to_vec(), None, &who()).await.unwrap();
    let mut w = s.watch("/p/", r1).await.unwrap();
    // The backlog: only what came after r1.
    match next(&mut w).await.unwrap() {
        WatchMessage::Events { revision, events } => {
            assert_eq!(revision, r2);
            assert_eq!(events[0].kind, EventKind::Modified);
            assert_eq!(events[0].prev.as_ref().unwrap().value, b"1");
        }
        other => panic!("{other:?}"),
    }
    // Then live events, other prefixes left out, and progress.
    s.create("/q/y", b"y".to_vec(), None, &who()).await.unwrap();
    let r4 = s
        .delete("/p/a", Preconditions::default(), &who())
        .await
        .unwrap();
    match next(&mut w).await.unwrap() {
        WatchMessage::Events { revision, events } => {
            assert_eq!((revision, events[0].kind), (r4, EventKind::Deleted));
        }
        other => panic!("{other:?}"),
    }
    mem.progress();
    assert_eq!(
        next(&mut w).await.unwrap(),
        WatchMessage::Progress { revision: r4 }
    );

    assert!(matches!(
        s.watch("/p/", r4 + 1).await.err(),
        Some(StorageError::FutureRevision { .. })
    ));
    mem.compact(r2);
    assert!(matches!(
        s.watch("/p/", r1).await.err(),
        Some(StorageError::Compacted { .. })
    ));
}

#[tokio::test]
async fn a_guaranteed_update_redoes_its_change_after_a_concurrent_write() {
    let mem = Arc::new(MemoryStorage::new());
    let s: Arc<dyn Storage> = mem.clone();
    s.create("/c", b"1".to_vec(), None, &who()).await.unwrap();
    // Someone else writes between our read and our swap, once.
    mem.before_next_write(|m| {
        m.put("/c", "10");
    });
    let calls = AtomicUsize::new(0);
    let (seen, written) = guaranteed_update(s.as_ref(), "/c", &who(), |kv| {
        calls.fetch_add(1, Ordering::Relaxed);
        let n: u64 = std::str::from_utf8(&kv.value).unwrap().parse().unwrap();
        Ok::<_, ()>((Write::Put((n + 1).to_string().into_bytes()), n))
    })
    .await
    .unwrap();
    assert_eq!(calls.load(Ordering::Relaxed), 2, "redone once");
    assert_eq!(seen, 10, "the second round saw the other write");
    let (kv, _) = s.get("/c", Consistency::Linearizable).await.unwrap();
    assert_eq!(kv.value, b"11");
    assert_eq!(
        written,
        Written::Put {
            revision: kv.mod_revision
        }
    );
}

#[tokio::test]
async fn a_guaranteed_update_reports_each_outcome() {
    let mem = Arc::new(MemoryStorage::new());
    let s: Arc<dyn Storage> = mem.clone();
    let missing = guaranteed_update(s.as_ref(), "/m", &who(), |_| Ok::<_, ()>((Write::Keep, ())))
        .await
        .unwrap_err();
    assert!(matches!(
        missing,
        UpdateError::Storage(StorageError::NotFound { .. })
    ));
    let r = s.create("/m", b"v".to_vec(), None, &who()).await.unwrap();
    let refused = guaranteed_update(s.as_ref(), "/m", &who(), |_| Err::<(Write, ()), _>("no"))
        .await
        .unwrap_err();
    assert_eq!(refused, UpdateError::Rejected("no"));
    let kept = guaranteed_update(s.as_ref(), "/m", &who(), |_| Ok::<_, ()>((Write::Keep, ())))
        .await
        .unwrap();
    assert_eq!((kept.1, mem.revision()), (Written::Kept, r));
    // Deleted between the read and the delete: the next read says NotFound.
    mem.before_next_write(|m| {
        m.remove("/m");
    });
    let raced = guaranteed_update(s.as_ref(), "/m", &who(), |_| {
        Ok::<_, ()>((Write::Delete, ()))
    })
    .await
    .unwrap_err();
    assert!(matches!(
        raced,
        UpdateError::Storage(StorageError::NotFound { .. })
    ));
    s.create("/m", b"v".to_vec(), None, &who()).await.unwrap();
    let (_, deleted) = guaranteed_update(s.as_ref(), "/m", &who(), |_| {
        Ok::<_, ()>((Write::Delete, ()))
    })
    .await
    .unwrap();
    assert_eq!(
        deleted,
        Written::Deleted {
            revision: mem.revision()
        }
    );
    // A failed write (here one whose outcome is unknown) is passed
    // through, never retried.
    s.create("/n", b"v".to_vec(), None, &who()).await.unwrap();
    let rounds = AtomicUsize::new(0);
    let timed_out = guaranteed_update(s.as_ref(), "/n", &who(), |_| {
        rounds.fetch_add(1, Ordering::Relaxed);
        mem.fail_next(StorageError::Timeout("lost".into()));
        Ok::<_, ()>((Write::Put(b"w".to_vec()), ()))
    })
    .await
    .unwrap_err();
    assert_eq!(
        timed_out,
        UpdateError::Storage(StorageError::Timeout("lost".into()))
    );
    assert_eq!(rounds.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn a_guaranteed_update_gives_up_under_sustained_contention() {
    let mem = Arc::new(MemoryStorage::new());
    let s: Arc<dyn Storage> = mem.clone();
    s.create("/h", b"0".to_vec(), None, &who()).await.unwrap();
    let m = mem.clone();
    let e = guaranteed_update(s.as_ref(), "/h", &who(), move |_| {
        // Every round, another write lands first.
        m.before_next_write(|m| {
            m.put("/h", "x");
        });
        Ok::<_, ()>((Write::Put(b"mine".to_vec()), ()))
    })
    .await
    .unwrap_err();
    assert!(matches!(
        e,
        UpdateError::Storage(StorageError::Conflict { .. })
    ));
    assert_eq!(
        mem.revision(),
        2 + MAX_UPDATE_ATTEMPTS as u64,
        "one lost round per attempt"
    );
}
