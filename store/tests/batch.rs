//! Group commit must be invisible: the same transactions applied one entry
//! per transaction and one apply call per entry (store A), or grouped into
//! batch entries and several entries per apply call (store B), give the same
//! outcomes, the same revisions, the same objects at every retained revision,
//! the same watch history, and the same revision after a restart.

use std::time::Duration;

use keel_store::command::{Command, CommandOutcome, Op, Precondition};
use keel_store::db::Db;
use keel_store::read::{self, Consistency, RangeRequest};
use keel_store::state_machine::{AppliedState, StateMachine};
use keel_store::watch::{WatchConfig, WatchHub, WatchMessage, WatchStart};
use keel_store::{Entry, EntryPayload, KeyValue};
use proptest::prelude::*;

fn entry(index: u64, mut cmd: Command) -> Entry {
    // The same time in both stores, so events compare equal.
    cmd.proposed_at_ms = 1_000;
    Entry {
        log_id: keel_store::log_id(1, 1, index),
        payload: EntryPayload::Normal(cmd),
    }
}

/// A generated transaction: one op on one of six keys, with a precondition
/// that may or may not hold (so some transactions of a batch fail).
fn ops_of(key: u8, action: u8, pre: u8, value: u8) -> Vec<Op> {
    let k = format!("/k/{key}");
    let mut op = match action {
        0 => Op::create(k, vec![value]).with_uid(format!("uid-{value}")),
        1 => Op::update(k, vec![value]),
        _ => Op::delete(k),
    };
    match pre {
        0 => {}
        1 => op.preconditions.push(Precondition::Absent),
        // Revisions are small here, so some of these hold and some do not.
        _ => op
            .preconditions
            .push(Precondition::ModRevision(u64::from(value % 8))),
    }
    vec![op]
}

struct Store {
    db: std::sync::Arc<Db>,
    hub: std::sync::Arc<WatchHub>,
    sm: StateMachine,
}

fn open(dir: &std::path::Path) -> Store {
    let db = Db::open(dir).unwrap();
    let state = AppliedState::load(&db).unwrap();
    let hub = WatchHub::new(
        db.clone(),
        WatchConfig::default(),
        state.revision(),
        state.compacted,
    );
    let sm = StateMachine::new(db.clone(), hub.clone(), state);
    Store { db, hub, sm }
}

fn objects(db: &Db, rev: Option<u64>) -> Vec<KeyValue> {
    let mut req = RangeRequest::prefix("/k/");
    req.revision = rev;
    req.consistency = Consistency::Local;
    read::range(db, &req).unwrap().kvs
}

/// Every watch message from `start` up to and including revision `until`.
async fn history(hub: &std::sync::Arc<WatchHub>, start: u64, until: u64) -> Vec<WatchMessage> {
    let mut w = hub.watch("/k/", WatchStart::After(start)).unwrap();
    let mut got = Vec::new();
    while w.last_revision() < until {
        let msg = tokio::time::timeout(Duration::from_secs(10), w.next())
            .await
            .expect("the watch stalled")
            .expect("the watch ended")
            .unwrap();
        if let WatchMessage::Events { .. } = msg {
            got.push(msg);
        }
    }
    got
}

async fn run(
    txns: Vec<Vec<Op>>,
    batch_sizes: Vec<usize>,
    call_sizes: Vec<usize>,
    compact_at: usize,
) {
    let dir_a = tempfile::tempdir().unwrap();
    let dir_b = tempfile::tempdir().unwrap();
    let mut a = open(dir_a.path());
    let mut b = open(dir_b.path());
    // Index 1 stands for Raft's first entry in both.
    let compact = |at: u64| Command::compact(at / 2);

    // A: one transaction per entry, one entry per call.
    let mut outcomes_a = Vec::new();
    let mut index = 0;
    for (i, ops) in txns.iter().enumerate() {
        if i == compact_at {
            index += 1;
            let out =
                a.sm.apply_entries([entry(index, compact(index))])
                    .await
                    .unwrap();
            outcomes_a.extend(out);
        }
        index += 1;
        let out =
            a.sm.apply_entries([entry(index, Command::txn(ops.clone()))])
                .await
                .unwrap();
        outcomes_a.extend(out);
    }
    let last_revision = index;

    // B: the same transactions in batch entries, several entries per call.
    let mut entries = Vec::new();
    let mut index = 0;
    let mut next = 0;
    let mut sizes = batch_sizes.iter().cycle();
    while next < txns.len() {
        if next == compact_at {
            index += 1;
            // The compaction's revision in B equals A's: batches before it
            // took one revision per transaction.
            entries.push((entry(index, compact(next as u64 + 1)), 1));
        }
        let mut n = (*sizes.next().unwrap()).clamp(1, txns.len() - next);
        if next < compact_at {
            n = n.min(compact_at - next);
        }
        let group: Vec<Vec<Op>> = txns[next..next + n].to_vec();
        index += 1;
        let cmd = if n == 1 {
            Command::txn(group.into_iter().next().unwrap())
        } else {
            Command::batch(group)
        };
        entries.push((entry(index, cmd), n));
        next += n;
    }
    let mut outcomes_b = Vec::new();
    let mut calls = call_sizes.iter().cycle();
    let mut rest = entries.into_iter().map(|(e, _)| e).collect::<Vec<_>>();
    while !rest.is_empty() {
        let n = (*calls.next().unwrap()).clamp(1, rest.len());
        let call: Vec<_> = rest.drain(..n).collect();
        for out in b.sm.apply_entries(call).await.unwrap() {
            match out {
                CommandOutcome::Batch(outs) => outcomes_b.extend(outs),
                other => outcomes_b.push(other),
            }
        }
    }

    assert_eq!(outcomes_a, outcomes_b, "outcomes");
    assert_eq!(a.hub.revision(), last_revision);
    assert_eq!(b.hub.revision(), last_revision, "B's revision");
    assert_eq!(objects(&a.db, None), objects(&b.db, None), "objects now");
    let compacted = a.hub.compacted();
    assert_eq!(compacted, b.hub.compacted(), "compacted");
    for r in compacted..=last_revision {
        assert_eq!(
            objects(&a.db, Some(r)),
            objects(&b.db, Some(r)),
            "objects at revision {r}"
        );
    }
    let last_event = outcomes_a
        .iter()
        .filter_map(|o| match o {
            CommandOutcome::Applied { revision } => Some(*revision),
            _ => None,
        })
        .max();
    if let Some(until) = last_event {
        assert_eq!(
            history(&a.hub, compacted, until).await,
            history(&b.hub, compacted, until).await,
            "watch history"
        );
    }
    // After a restart B knows its revision without replaying anything.
    let db = b.db.clone();
    drop(b);
    // Background work (a compaction's space reclaim) may still hold the
    // database for a moment; RocksDB allows one opener.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::sync::Arc::strong_count(&db) > 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the store was never released"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    drop(db);
    let b = open(dir_b.path());
    assert_eq!(
        b.hub.revision(),
        last_revision,
        "B's revision after a restart"
    );
    assert_eq!(objects(&a.db, None), objects(&b.db, None));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn batches_are_indistinguishable_from_single_entries(
        txns in proptest::collection::vec((0u8..6, 0u8..3, 0u8..3, any::<u8>()), 1..40),
        batch_sizes in proptest::collection::vec(1usize..6, 1..8),
        call_sizes in proptest::collection::vec(1usize..5, 1..8),
        compact_at in 0usize..60,
    ) {
        let txns: Vec<Vec<Op>> = txns.into_iter().map(|(k, a, p, v)| ops_of(k, a, p, v)).collect();
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(run(txns, batch_sizes, call_sizes, compact_at));
    }
}
