//! Watch guarantees on a three-member cluster, checked against the recorded
//! history (the events log): ordered, unique, atomic per transaction,
//! resumable from any retained revision on any member, also after a leader
//! change, and `Compacted` below the retention window.

use std::collections::BTreeMap;
use std::time::Duration;

use keel_store::{Event, EventKind, Op, StoreError, WatchMessage, WatchStart, WatchStream};
use keel_tests::{Cluster, rng, seed, wait_for};
use rand::Rng;

const LONG: Duration = Duration::from_secs(60);

/// One delivered event: op index, kind, key, new value.
type Seen = (u32, EventKind, String, Option<Vec<u8>>);
type History = BTreeMap<u64, Vec<Seen>>;
/// Messages as delivered: revision and its events.
type Delivered = Vec<(u64, Vec<Seen>)>;

fn history(events: &[Event], prefix: &str) -> History {
    let mut h = History::new();
    for e in events.iter().filter(|e| e.key.starts_with(prefix)) {
        h.entry(e.revision).or_default().push((
            e.op_index,
            e.kind,
            e.key.clone(),
            e.value.as_ref().map(|v| v.value.clone()),
        ));
    }
    h
}

/// Read a watch until `until` is delivered; return every Events message.
async fn collect(w: &mut WatchStream, until: u64) -> Delivered {
    let mut got = Vec::new();
    while w.last_revision() < until {
        match tokio::time::timeout(LONG, w.next())
            .await
            .expect("watch stalled")
            .expect("watch ended")
        {
            Ok(WatchMessage::Events { revision, events }) => got.push((
                revision,
                events
                    .iter()
                    .map(|e| {
                        (
                            e.op_index,
                            e.kind,
                            e.key.clone(),
                            e.value.as_ref().map(|v| v.value.clone()),
                        )
                    })
                    .collect(),
            )),
            Ok(WatchMessage::Progress { .. }) => {}
            Err(e) => panic!("watch failed: {e}"),
        }
    }
    got
}

fn check_against(got: &Delivered, h: &History, after: u64, until: u64, who: &str) {
    let revs: Vec<u64> = got.iter().map(|(r, _)| *r).collect();
    assert!(
        revs.windows(2).all(|w| w[0] < w[1]),
        "{who}: revisions not strictly increasing (ordered, unique): {revs:?}"
    );
    for (rev, evs) in got {
        assert_eq!(
            Some(evs),
            h.get(rev),
            "{who}: revision {rev} not delivered whole (atomic)"
        );
    }
    let want: Vec<u64> = h.range(after + 1..=until).map(|(r, _)| *r).collect();
    assert_eq!(
        revs, want,
        "{who}: watch after {after} must deliver exactly the history"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_guarantees_hold_across_members_and_leader_changes() {
    let seed = seed("watch_guarantees");
    let mut r = rng(seed);
    let mut c = Cluster::start(3, seed).await;
    let leader = c.leader(LONG).await;
    let (start, _) = c.member(leader).revisions().unwrap();
    let mut watchers: Vec<(u64, WatchStream)> = c
        .all_ids()
        .into_iter()
        .map(|id| {
            (
                id,
                c.member(id).watch("/w/", WatchStart::After(start)).unwrap(),
            )
        })
        .collect();
    let mut present = std::collections::BTreeSet::new();
    let mut write = |r: &mut rand::rngs::StdRng, i: usize| {
        let n = r.gen_range(1..=3);
        let mut ops = Vec::new();
        let mut used = std::collections::BTreeSet::new();
        for j in 0..n {
            let k = r.gen_range(0..8);
            if !used.insert(k) {
                continue;
            }
            let key = format!("/w/{k}");
            let value = format!("{i}-{j}").into_bytes();
            ops.push(if !present.contains(&k) {
                present.insert(k);
                Op::create(key, value)
            } else if r.gen_bool(0.25) {
                present.remove(&k);
                Op::delete(key)
            } else {
                Op::update(key, value)
            });
        }
        // Unrelated keys in the same transaction must not reach /w/ watchers.
        ops.push(Op::create(format!("/other/{i}"), b"x".to_vec()));
        ops
    };
    for i in 0..30 {
        let ops = write(&mut r, i);
        c.member(leader).txn(ops).await.unwrap();
    }
    tracing::info!("--- killing leader {leader}");
    // Watch streams hold their member's database open: let go of the doomed ones.
    watchers.retain(|(id, _)| *id != leader);
    c.kill(leader).await;
    let new_leader = c.leader(LONG).await;
    let mut last = 0;
    for i in 30..60 {
        let ops = write(&mut r, i);
        // Retry what the leader change makes retryable, but never past a deadline.
        last = wait_for(&format!("write {i} to commit"), LONG, || {
            let (m, ops) = (c.member(new_leader), ops.clone());
            async move {
                match m.txn(ops).await {
                    Ok(rev) => Some(rev),
                    Err(e) if e.is_retryable() => None,
                    Err(e) => panic!("write {i} failed: {e}"),
                }
            }
        })
        .await;
    }
    c.restart(leader).await;
    c.wait_applied(last, LONG).await;
    let h = history(&c.member(new_leader).events().unwrap(), "/w/");
    for (id, w) in watchers.iter_mut() {
        let got = collect(w, last).await;
        check_against(
            &got,
            &h,
            start,
            last,
            &format!("live watcher on member {id}"),
        );
    }
    // Resume from any retained revision on any member, including the restarted old leader.
    for _ in 0..8 {
        let from = r.gen_range(start..last);
        for id in c.all_ids() {
            let mut w = c.member(id).watch("/w/", WatchStart::After(from)).unwrap();
            let got = collect(&mut w, last).await;
            check_against(
                &got,
                &h,
                from,
                last,
                &format!("watch resumed at {from} on member {id}"),
            );
        }
    }
    // Below the compacted revision: refused with the compacted revision, on every member.
    let target = start + 20;
    let compacted = c.member(new_leader).compact(target).await.unwrap();
    assert_eq!(compacted, target);
    let (head, _) = c.member(new_leader).revisions().unwrap();
    c.wait_applied(head, LONG).await;
    for id in c.all_ids() {
        let err = c
            .member(id)
            .watch("/w/", WatchStart::After(target - 1))
            .unwrap_err();
        assert!(
            matches!(err, StoreError::Compacted { compacted, .. } if compacted == target),
            "member {id}: {err}"
        );
        let mut w = c
            .member(id)
            .watch("/w/", WatchStart::After(target))
            .unwrap();
        let got = collect(&mut w, last).await;
        check_against(
            &got,
            &h,
            target,
            last,
            &format!("watch at the compacted revision on member {id}"),
        );
    }
    drop(watchers);
    c.shutdown().await;
}
