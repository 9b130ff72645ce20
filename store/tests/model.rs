//! Property tests of the event log against a `BTreeMap` model: random
//! transactions with preconditions are applied to the real state machine on
//! RocksDB, and the objects, every past revision, the retained events (through
//! watch backfill) and compaction must all match the model. Reads page at past
//! and current revisions while writes land between pages; watchers start
//! while a writer runs (the backfill-to-live boundary); compaction lands in
//! the middle of a watch backfill and of a paged past-revision read.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use keel_store::command::{Action, Command, CommandOutcome, FailureReason, Op, Precondition};
use keel_store::db::Db;
use keel_store::read::{self, Consistency, RangeRequest};
use keel_store::state_machine::{AppliedState, StateMachine};
use keel_store::watch::{WatchConfig, WatchHub, WatchMessage, WatchStart, WatchStream};
use keel_store::{Entry, EntryPayload, Event, EventKind, KeyValue, StoreError};
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

fn entry(index: u64, cmd: Command) -> Entry {
    Entry {
        log_id: keel_store::log_id(1, 1, index),
        payload: EntryPayload::Normal(cmd),
    }
}

fn model_kv(kv: KeyValue) -> (String, ModelKv) {
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
}

fn as_model(db: &Db, rev: Option<u64>) -> Result<Model, StoreError> {
    let mut req = RangeRequest::prefix("/k/");
    req.revision = rev;
    req.consistency = Consistency::Local;
    Ok(read::range(db, &req)?
        .kvs
        .into_iter()
        .map(model_kv)
        .collect())
}

/// A watch that stops delivering fails the test instead of hanging it.
const STALL: Duration = Duration::from_secs(20);

/// Revisions with their events, as a watcher receives them.
type Delivered = Vec<(u64, ModelEvents)>;

async fn next_msg(w: &mut WatchStream, what: &str) -> Option<Result<WatchMessage, StoreError>> {
    tokio::time::timeout(STALL, w.next())
        .await
        .unwrap_or_else(|_| panic!("{what}: no message within {STALL:?}"))
}

fn events_of(events: &[Arc<Event>]) -> ModelEvents {
    events.iter().map(|e| (e.kind, e.key.clone())).collect()
}

/// Read a watch until it delivers an event on `key`; every revision seen.
async fn drain_until_key(mut w: WatchStream, key: String, what: String) -> Delivered {
    let mut got = Vec::new();
    loop {
        match next_msg(&mut w, &what).await {
            Some(Ok(WatchMessage::Events { revision, events })) => {
                let done = events.iter().any(|e| e.key == key);
                got.push((revision, events_of(&events)));
                if done {
                    return got;
                }
            }
            Some(Ok(WatchMessage::Progress { .. })) => {}
            Some(Err(e)) => panic!("{what}: {e}"),
            None => panic!("{what}: the watch ended"),
        }
    }
}

/// The real state machine on RocksDB, and the model beside it.
struct Harness {
    db: Arc<Db>,
    hub: Arc<WatchHub>,
    sm: StateMachine,
    model: Model,
    /// The model's state at every revision applied so far.
    states: BTreeMap<u64, Model>,
    history: Delivered,
    compacted: u64,
    rev: u64,
    markers: usize,
}

impl Harness {
    fn open(dir: &std::path::Path) -> Harness {
        let db = Db::open(dir).unwrap();
        let cfg = WatchConfig {
            backfill_page: 3,
            ..WatchConfig::default()
        };
        let hub = WatchHub::new(db.clone(), cfg, 0, 0);
        let sm = StateMachine::new(db.clone(), hub.clone(), AppliedState::load(&db).unwrap());
        Harness {
            db,
            hub,
            sm,
            model: Model::new(),
            states: BTreeMap::from([(0, Model::new())]),
            history: Vec::new(),
            compacted: 0,
            rev: 0,
            markers: 0,
        }
    }

    /// Apply a generated transaction; the store's verdict must be the model's.
    async fn txn(&mut self, t: &[GenOp]) {
        let ops = build(t, &self.model, self.rev + 1);
        if !ops.is_empty() {
            self.apply(ops).await;
        }
    }

    async fn apply(&mut self, ops: Vec<Op>) -> bool {
        self.rev += 1;
        let rev = self.rev;
        let out = self
            .sm
            .apply_entries([entry(rev, Command::txn(ops.clone()))])
            .await
            .unwrap();
        let applied = match (model_apply(&self.model, &ops, rev), &out[0]) {
            (Ok((next, evs)), CommandOutcome::Applied { revision }) => {
                assert_eq!(*revision, rev);
                self.model = next;
                self.history.push((rev, evs));
                true
            }
            (Err((i, reason)), CommandOutcome::Failed(f)) => {
                assert_eq!((f.op_index, &f.reason), (i, &reason));
                assert_eq!(
                    f.current.as_ref().map(|c| c.mod_revision),
                    self.model.get(&f.key).map(|c| c.modr)
                );
                false
            }
            (m, o) => panic!("model says {m:?}, store says {o:?}"),
        };
        self.states.insert(rev, self.model.clone());
        applied
    }

    /// A new key: a known revision with one event, to read watches up to.
    async fn marker(&mut self) -> (u64, String) {
        self.markers += 1;
        let key = format!("/k/end-{}", self.markers);
        assert!(
            self.apply(vec![Op::create(key.clone(), b"end".to_vec())])
                .await
        );
        (self.rev, key)
    }

    /// Compact up to `target`; the entry stops short of its own revision.
    async fn compact(&mut self, target: u64) -> u64 {
        self.rev += 1;
        let out = self
            .sm
            .apply_entries([entry(self.rev, Command::compact(target))])
            .await
            .unwrap();
        let want = self.compacted.max(target.min(self.rev - 1));
        assert_eq!(out[0], CommandOutcome::Compacted { compacted: want });
        self.compacted = want;
        self.states.insert(self.rev, self.model.clone());
        want
    }

    /// Revisions a read or watch may still start from.
    fn retained(&self) -> Vec<u64> {
        self.states
            .range(self.compacted..)
            .map(|(r, _)| *r)
            .collect()
    }

    /// The history a watch from `start` must deliver up to `until`.
    fn after(&self, start: u64, until: u64) -> Delivered {
        self.history
            .iter()
            .filter(|(r, _)| *r > start && *r <= until)
            .cloned()
            .collect()
    }

    fn state_at(&self, rev: u64) -> Vec<(String, ModelKv)> {
        self.states[&rev].clone().into_iter().collect()
    }

    /// Page through `/k/` at `at` (now when `None`), applying one of `writes`
    /// between pages; the revision read and everything read. Every page but
    /// the last is full, and the pages never leave the first page's revision.
    async fn paged<'a>(
        &mut self,
        at: Option<u64>,
        limit: usize,
        writes: &mut impl Iterator<Item = &'a Vec<GenOp>>,
    ) -> (u64, Vec<(String, ModelKv)>) {
        let mut req = RangeRequest::prefix("/k/");
        req.limit = limit;
        req.revision = at;
        req.consistency = Consistency::Local;
        let mut read_at = None;
        let mut out = Vec::new();
        loop {
            let resp = read::range(&self.db, &req).unwrap();
            let r = *read_at.get_or_insert(resp.revision);
            assert_eq!(resp.revision, r, "a continued page left revision {r}");
            let full = resp.kvs.len() == limit;
            assert!(resp.kvs.len() <= limit);
            out.extend(resp.kvs.into_iter().map(model_kv));
            match resp.continue_token {
                Some(t) => {
                    assert!(full, "a page short of the limit with more to come");
                    req.continue_token = Some(t);
                }
                None => break,
            }
            // The store moves on between pages; the pages must not.
            self.txn(writes.next().expect("writes cycle")).await;
        }
        (read_at.expect("one page"), out)
    }
}

/// One generated case.
struct Case {
    txns: Vec<Vec<GenOp>>,
    compact_after: usize,
    page_limit: usize,
    /// Writes made between pages, during backfills and concurrently with watchers.
    extra: Vec<Vec<GenOp>>,
    picks: [prop::sample::Index; 4],
}

async fn run(case: Case) {
    let dir = tempfile::tempdir().unwrap();
    let mut h = Harness::open(dir.path());
    for (n, t) in case.txns.iter().enumerate() {
        h.txn(t).await;
        if n == case.compact_after {
            h.compact(h.rev.div_ceil(2)).await;
        }
    }
    // Current state and every retained past revision match the model.
    assert_eq!(as_model(&h.db, None).unwrap(), h.model);
    for (r, m) in &h.states {
        if *r < h.compacted {
            assert!(
                matches!(as_model(&h.db, Some(*r)), Err(StoreError::Compacted { .. })),
                "revision {r} should be compacted"
            );
        } else {
            assert_eq!(
                &as_model(&h.db, Some(*r)).unwrap(),
                m,
                "state at revision {r}"
            );
        }
    }
    let extra = case.extra.clone();
    let mut writes = extra.iter().cycle();
    // Paging at a past revision, and at the current one, while writes land
    // between pages: every page is read at the first page's revision.
    let retained = h.retained();
    let past = retained[case.picks[0].index(retained.len())];
    let (r, got) = h.paged(Some(past), case.page_limit, &mut writes).await;
    assert_eq!(r, past);
    assert_eq!(got, h.state_at(past), "paged at past revision {past}");
    let (r, got) = h.paged(None, case.page_limit, &mut writes).await;
    assert_eq!(got, h.state_at(r), "paged from the current revision {r}");

    // Watches from every retained revision replay exactly the history after it.
    let (end, end_key) = h.marker().await;
    for start in h.compacted..end {
        let w = h.hub.watch("/k/", WatchStart::After(start)).unwrap();
        let what = format!("watch from revision {start}");
        let got = drain_until_key(w, end_key.clone(), what.clone()).await;
        assert_eq!(got, h.after(start, end), "{what}");
    }

    // Watchers start while a writer applies transactions: whatever each
    // registers against, backfill then live delivers the history after its
    // start once, in order, with no gap at the boundary.
    let hub = h.hub.clone();
    let live_key = format!("/k/end-{}", h.markers + 1);
    // The closing marker waits until every watcher is registered, so that
    // each one has it still ahead.
    let (registered, all_registered) = tokio::sync::oneshot::channel::<()>();
    let writer = tokio::spawn(async move {
        for t in &extra {
            h.txn(t).await;
            tokio::task::yield_now().await;
        }
        all_registered.await.unwrap();
        h.marker().await;
        h
    });
    let mut watchers = Vec::new();
    for k in 0..6u64 {
        let head = hub.revision();
        // From the head itself (the boundary), or from somewhere behind it.
        let start = if k % 2 == 0 {
            head
        } else {
            let low = hub.compacted();
            low + (k * 7919) % (head - low + 1)
        };
        let w = hub.watch("/k/", WatchStart::After(start)).unwrap();
        let what = format!("watch {k} from {start} during writes");
        watchers.push((
            start,
            what.clone(),
            tokio::spawn(drain_until_key(w, live_key.clone(), what)),
        ));
        tokio::task::yield_now().await;
    }
    registered.send(()).unwrap();
    let mut h = tokio::time::timeout(STALL, writer)
        .await
        .expect("the writer stalled")
        .unwrap();
    let end = h.rev;
    for (start, what, task) in watchers {
        let got = task.await.unwrap();
        assert_eq!(got, h.after(start, end), "{what}");
    }

    // Compaction lands while a watcher is mid-backfill: it either finishes
    // (the compaction is behind it) or fails with Compacted, having delivered
    // exactly the history up to where it stopped. It never skips silently.
    let retained = h.retained();
    let start = retained[case.picks[1].index(retained.len() - 1)];
    let (end, end_key) = h.marker().await;
    let mut w = h.hub.watch("/k/", WatchStart::After(start)).unwrap();
    let what = format!("watch from {start} with a compaction mid-backfill");
    let mut got = Delivered::new();
    if let Some(Ok(WatchMessage::Events { revision, events })) = next_msg(&mut w, &what).await {
        got.push((revision, events_of(&events)));
    } else {
        panic!("{what}: the backfill does not start with events");
    }
    let span = h.rev - h.compacted;
    let target = h.compacted + case.picks[2].index(span as usize + 1) as u64;
    let now = h.compact(target).await;
    loop {
        match next_msg(&mut w, &what).await {
            Some(Ok(WatchMessage::Events { revision, events })) => {
                let done = events.iter().any(|e| e.key == end_key);
                got.push((revision, events_of(&events)));
                if done {
                    assert_eq!(got, h.after(start, end), "{what}");
                    break;
                }
            }
            Some(Ok(WatchMessage::Progress { .. })) => {}
            Some(Err(StoreError::Compacted {
                requested,
                compacted,
            })) => {
                assert_eq!(compacted, now, "{what}");
                assert!(requested < now, "{what}: refused at {requested}");
                assert_eq!(
                    got,
                    h.after(start, requested),
                    "{what}: gap before the error"
                );
                assert!(next_msg(&mut w, &what).await.is_none(), "{what}: went on");
                break;
            }
            other => panic!("{what}: {other:?}"),
        }
    }

    // Compaction lands between the pages of a past-revision read: the next
    // page is refused if the compaction passed the read's revision, else the
    // read completes at that revision.
    let retained = h.retained();
    let past = retained[case.picks[3].index(retained.len())];
    let mut req = RangeRequest::prefix("/k/");
    req.limit = 1;
    req.revision = Some(past);
    req.consistency = Consistency::Local;
    let first = read::range(&h.db, &req).unwrap();
    if let Some(token) = first.continue_token {
        let now = h.compact(h.rev).await;
        req.continue_token = Some(token);
        match read::range(&h.db, &req) {
            Err(StoreError::Compacted {
                requested,
                compacted,
            }) => {
                assert!(
                    past < now,
                    "revision {past} refused after compacting to {now}"
                );
                assert_eq!((requested, compacted), (past, now));
            }
            Ok(rest) => {
                assert!(
                    past >= now,
                    "revision {past} served after compacting to {now}"
                );
                let mut all: Vec<_> = first.kvs.into_iter().map(model_kv).collect();
                all.extend(rest.kvs.into_iter().map(model_kv));
                all.truncate(2);
                let want: Vec<_> = h.state_at(past).into_iter().take(2).collect();
                assert_eq!(all, want);
            }
            Err(e) => panic!("continuing at {past}: {e}"),
        }
    }
    if h.compacted > 0 {
        assert!(matches!(
            h.hub.watch("/k/", WatchStart::After(h.compacted - 1)),
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
        extra in proptest::collection::vec(proptest::collection::vec(gen_op(), 1..4), 1..12),
        picks in any::<[prop::sample::Index; 4]>(),
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(run(Case { txns, compact_after, page_limit, extra, picks }));
    }
}
