//! Property tests of the event log against a `BTreeMap` model: random
//! transactions with preconditions are applied to the real state machine on
//! RocksDB, and the objects, every past revision, the retained events (through
//! watch backfill) and compaction must all match the model.

use std::collections::BTreeMap;

use keel_store::command::{Action, Command, CommandOutcome, FailureReason, Op, Precondition};
use keel_store::db::Db;
use keel_store::read::{self, Consistency, RangeRequest};
use keel_store::state_machine::{AppliedState, StateMachine};
use keel_store::watch::{WatchConfig, WatchHub, WatchMessage, WatchStart};
use keel_store::{EventKind, StoreError, TypeConfig};
use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Pre {
    None,
    Absent,
    ModCurrent,
    ModStale,
    UidRight,
    UidWrong,
}

#[derive(Clone, Debug)]
struct GenOp {
    key: u8,
    action: u8,
    value: u8,
    pre: Pre,
}

#[derive(Clone, Debug, PartialEq)]
struct ModelKv {
    value: Vec<u8>,
    create: u64,
    modr: u64,
    version: u64,
    uid: Option<String>,
}

type Model = BTreeMap<String, ModelKv>;

/// The model's events of one transaction.
type ModelEvents = Vec<(EventKind, String)>;

fn gen_op() -> impl Strategy<Value = GenOp> {
    (
        0u8..6,
        0u8..3,
        any::<u8>(),
        prop_oneof![
            4 => Just(Pre::None),
            1 => Just(Pre::Absent),
            2 => Just(Pre::ModCurrent),
            1 => Just(Pre::ModStale),
            1 => Just(Pre::UidRight),
            1 => Just(Pre::UidWrong),
        ],
    )
        .prop_map(|(key, action, value, pre)| GenOp {
            key,
            action,
            value,
            pre,
        })
}

fn key(k: u8) -> String {
    format!("/k/{k}")
}

/// Turn generated ops into a command, resolving preconditions against the model.
fn build(ops: &[GenOp], model: &Model, rev: u64) -> Vec<Op> {
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for g in ops {
        if !seen.insert(g.key) {
            continue;
        }
        let k = key(g.key);
        let cur = model.get(&k);
        let mut op = match g.action {
            0 => Op::create(k.clone(), vec![g.value]).with_uid(format!("uid-{rev}-{}", g.key)),
            1 => Op::update(k.clone(), vec![g.value]),
            _ => Op::delete(k.clone()),
        };
        match g.pre {
            Pre::None => {}
            Pre::Absent => op.preconditions.push(Precondition::Absent),
            Pre::ModCurrent => op
                .preconditions
                .push(Precondition::ModRevision(cur.map(|c| c.modr).unwrap_or(1))),
            Pre::ModStale => op.preconditions.push(Precondition::ModRevision(
                cur.map(|c| c.modr + 7).unwrap_or(3),
            )),
            Pre::UidRight => op.preconditions.push(Precondition::Uid(
                cur.and_then(|c| c.uid.clone())
                    .unwrap_or_else(|| "none".into()),
            )),
            Pre::UidWrong => op.preconditions.push(Precondition::Uid("wrong".into())),
        }
        out.push(op);
    }
    out
}

/// The model's verdict: the failing op and reason, or the new state and events.
fn model_apply(
    model: &Model,
    ops: &[Op],
    rev: u64,
) -> Result<(Model, ModelEvents), (u32, FailureReason)> {
    for (i, op) in ops.iter().enumerate() {
        let cur = model.get(&op.key);
        let fail = |r| Err((i as u32, r));
        match (&op.action, cur) {
            (Action::Create { .. }, Some(_)) => return fail(FailureReason::AlreadyExists),
            (Action::Update { .. } | Action::Delete, None) => return fail(FailureReason::NotFound),
            _ => {}
        }
        for p in &op.preconditions {
            match (p, cur) {
                (Precondition::Absent, Some(_)) => return fail(FailureReason::AlreadyExists),
                (Precondition::ModRevision(_) | Precondition::Uid(_), None) => {
                    return fail(FailureReason::NotFound);
                }
                (Precondition::ModRevision(e), Some(c)) if c.modr != *e => {
                    return fail(FailureReason::ModRevisionMismatch {
                        expected: *e,
                        actual: c.modr,
                    });
                }
                (Precondition::Uid(e), Some(c)) if c.uid.as_deref() != Some(e) => {
                    return fail(FailureReason::UidMismatch {
                        expected: e.clone(),
                        actual: c.uid.clone(),
                    });
                }
                _ => {}
            }
        }
    }
    let mut next = model.clone();
    let mut events = Vec::new();
    for op in ops {
        match &op.action {
            Action::Create { value, uid } => {
                next.insert(
                    op.key.clone(),
                    ModelKv {
                        value: value.clone(),
                        create: rev,
                        modr: rev,
                        version: 1,
                        uid: uid.clone(),
                    },
                );
                events.push((EventKind::Added, op.key.clone()));
            }
            Action::Update { value } => {
                let c = next.get_mut(&op.key).expect("checked");
                c.value = value.clone();
                c.modr = rev;
                c.version += 1;
                events.push((EventKind::Modified, op.key.clone()));
            }
            Action::Delete => {
                next.remove(&op.key);
                events.push((EventKind::Deleted, op.key.clone()));
            }
        }
    }
    Ok((next, events))
}

fn entry(index: u64, cmd: Command) -> Entry<TypeConfig> {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(cmd),
    }
}

fn as_model(db: &Db, rev: Option<u64>) -> Result<Model, StoreError> {
    let mut req = RangeRequest::prefix("/k/");
    req.revision = rev;
    req.consistency = Consistency::Local;
    Ok(read::range(db, &req)?
        .kvs
        .into_iter()
        .map(|kv| {
            (
                kv.key,
                ModelKv {
                    value: kv.value,
                    create: kv.create_revision,
                    modr: kv.mod_revision,
                    version: kv.version,
                    uid: kv.uid,
                },
            )
        })
        .collect())
}

async fn run(txns: Vec<Vec<GenOp>>, compact_after: usize, page_limit: usize) {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    let cfg = WatchConfig {
        backfill_page: 3,
        ..WatchConfig::default()
    };
    let hub = WatchHub::new(db.clone(), cfg, 0, 0);
    let mut sm = StateMachine::new(db.clone(), hub.clone(), AppliedState::load(&db).unwrap());
    let mut model = Model::new();
    let mut states: BTreeMap<u64, Model> = BTreeMap::from([(0, Model::new())]);
    let mut history: Vec<(u64, Vec<(EventKind, String)>)> = Vec::new();
    let mut compacted = 0;
    let mut rev = 0u64;
    for (n, t) in txns.iter().enumerate() {
        rev += 1;
        let ops = build(t, &model, rev);
        if ops.is_empty() {
            rev -= 1;
            continue;
        }
        let out = sm
            .apply([entry(rev, Command::txn(ops.clone()))])
            .await
            .unwrap();
        match (model_apply(&model, &ops, rev), &out[0]) {
            (Ok((next, evs)), CommandOutcome::Applied { revision }) => {
                assert_eq!(*revision, rev);
                model = next;
                history.push((rev, evs));
            }
            (Err((i, reason)), CommandOutcome::Failed(f)) => {
                assert_eq!((f.op_index, &f.reason), (i, &reason));
                assert_eq!(
                    f.current.as_ref().map(|c| c.mod_revision),
                    model.get(&f.key).map(|c| c.modr)
                );
            }
            (m, o) => panic!("model says {m:?}, store says {o:?}"),
        }
        states.insert(rev, model.clone());
        if n == compact_after {
            rev += 1;
            let target = rev / 2;
            let out = sm
                .apply([entry(rev, Command::compact(target))])
                .await
                .unwrap();
            assert_eq!(out[0], CommandOutcome::Compacted { compacted: target });
            compacted = target;
            states.insert(rev, model.clone());
        }
    }
    // Current state and every retained past revision match the model.
    assert_eq!(as_model(&db, None).unwrap(), model);
    for (r, m) in &states {
        if *r < compacted {
            assert!(
                matches!(as_model(&db, Some(*r)), Err(StoreError::Compacted { .. })),
                "revision {r} should be compacted"
            );
        } else {
            assert_eq!(
                &as_model(&db, Some(*r)).unwrap(),
                m,
                "state at revision {r}"
            );
        }
    }
    // Paging at a fixed revision returns the same keys as one range.
    let mut req = RangeRequest::prefix("/k/");
    req.limit = page_limit;
    req.consistency = Consistency::Local;
    let mut paged = Vec::new();
    loop {
        let resp = read::range(&db, &req).unwrap();
        assert!(resp.kvs.len() <= page_limit);
        paged.extend(resp.kvs.into_iter().map(|kv| kv.key));
        match resp.continue_token {
            Some(t) => req.continue_token = Some(t),
            None => break,
        }
    }
    assert_eq!(paged, model.keys().cloned().collect::<Vec<_>>());
    // Watches from every retained revision replay exactly the history after it.
    rev += 1;
    sm.apply([entry(
        rev,
        Command::txn(vec![Op::create("/k/end", b"end".to_vec())]),
    )])
    .await
    .unwrap();
    history.push((rev, vec![(EventKind::Added, "/k/end".into())]));
    for start in compacted..rev {
        let mut w = hub.watch("/k/", WatchStart::After(start)).unwrap();
        let mut got = Vec::new();
        loop {
            match w.next().await.unwrap().unwrap() {
                WatchMessage::Events { revision, events } => {
                    got.push((
                        revision,
                        events
                            .iter()
                            .map(|e| (e.kind, e.key.clone()))
                            .collect::<Vec<_>>(),
                    ));
                    if revision == rev {
                        break;
                    }
                }
                WatchMessage::Progress { .. } => {}
            }
        }
        let want: Vec<_> = history
            .iter()
            .filter(|(r, _)| *r > start)
            .cloned()
            .collect();
        assert_eq!(got, want, "watch from revision {start}");
    }
    if compacted > 0 {
        assert!(matches!(
            hub.watch("/k/", WatchStart::After(compacted - 1)),
            Err(StoreError::Compacted { .. })
        ));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn event_log_matches_model(
        txns in proptest::collection::vec(proptest::collection::vec(gen_op(), 1..4), 1..30),
        compact_after in 0usize..30,
        page_limit in 1usize..4,
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(run(txns, compact_after, page_limit));
    }
}
