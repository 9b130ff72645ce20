//! A seeded randomized workload under faults (partitions, kills, restarts,
//! dropped and delayed messages), and partitions combined with kills that
//! leave no side a quorum until the heal.
//! Afterwards every acknowledged write is present on every member, and the
//! final state equals a `BTreeMap` model that replays the commands in
//! revision order (acknowledged ones, plus any whose answer was lost but that
//! the log shows committed).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use keel_store::command::FailureReason;
use keel_store::{Action, EventKind, Op, Precondition, StoreError};
use keel_tests::{Cluster, objects, rng, seed};
use openraft::async_runtime::WatchReceiver;
use rand::Rng;

const LONG: Duration = Duration::from_secs(90);

#[derive(Clone, Debug)]
struct Issued {
    ops: Vec<Op>,
    /// Revision if acknowledged as applied.
    acked: Option<u64>,
}

/// What a transaction looks like in the events log: kind, key, new value.
type Summary = Vec<(EventKind, String, Option<Vec<u8>>)>;

fn summary(ops: &[Op]) -> Summary {
    ops.iter()
        .map(|op| match &op.action {
            Action::Create { value, .. } => (EventKind::Added, op.key.clone(), Some(value.clone())),
            Action::Update { value } => (EventKind::Modified, op.key.clone(), Some(value.clone())),
            Action::Delete => (EventKind::Deleted, op.key.clone(), None),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn randomized_workload_under_faults_matches_the_model() {
    let seed = seed("randomized_workload_under_faults");
    let mut r = rng(seed);
    let mut c = Cluster::start_with(3, seed, |cfg| {
        cfg.request_timeout = Duration::from_secs(2);
        cfg.snapshot_every = 60;
        cfg.keep_behind_snapshot = 10;
    })
    .await;
    let ids = c.all_ids();
    let mut issued: Vec<Issued> = Vec::new();
    let mut known_mod: BTreeMap<String, u64> = BTreeMap::new();
    let mut down: Option<u64> = None;
    let mut partitioned = false;
    for step in 0..150 {
        if step % 12 == 11 {
            let fault = r.gen_range(0..6);
            match (fault, down) {
                (0, None) if !partitioned => {
                    let victim = ids[r.gen_range(0..ids.len())];
                    tracing::info!("--- step {step}: kill {victim}");
                    c.kill(victim).await;
                    down = Some(victim);
                }
                (1, Some(v)) => {
                    tracing::info!("--- step {step}: restart {v}");
                    c.restart(v).await;
                    down = None;
                }
                (2, None) if !partitioned => {
                    let victim = ids[r.gen_range(0..ids.len())];
                    tracing::info!("--- step {step}: isolate {victim}");
                    c.router.isolate(victim, &ids);
                    partitioned = true;
                }
                (3, _) => {
                    let (a, b) = (
                        ids[r.gen_range(0..ids.len())],
                        ids[r.gen_range(0..ids.len())],
                    );
                    if a != b {
                        tracing::info!("--- step {step}: drop 30% of {a}->{b}, delay {b}->{a}");
                        c.router.set_drop_rate(a, b, 0.3);
                        c.router
                            .set_delay(b, a, Duration::from_millis(r.gen_range(5..80)));
                        partitioned = true;
                    }
                }
                _ => {
                    tracing::info!("--- step {step}: heal");
                    c.router.heal();
                    partitioned = false;
                }
            }
        }
        let running = c.running();
        let via = running[r.gen_range(0..running.len())];
        let mut ops = Vec::new();
        let mut keys = BTreeSet::new();
        for j in 0..r.gen_range(1..=2) {
            let k = format!("/m/{}", r.gen_range(0..6));
            if !keys.insert(k.clone()) {
                continue;
            }
            let value = format!("s{step}-{j}").into_bytes();
            let mut op = match r.gen_range(0..3) {
                0 => Op::create(k.clone(), value),
                1 => Op::update(k.clone(), value),
                _ => Op::delete(k.clone()),
            };
            if r.gen_bool(0.3)
                && let Some(m) = known_mod.get(&k)
            {
                op.preconditions.push(Precondition::ModRevision(*m));
            }
            ops.push(op);
        }
        // Like a real client: retry retryable errors (through any running
        // member) until a deadline. Every attempt is recorded, since one whose
        // answer was lost may still have committed.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let mut via = via;
        loop {
            let result = c.member(via).txn(ops.clone()).await;
            let (acked, retry) = match result {
                Ok(rev) => {
                    for op in &ops {
                        known_mod.insert(op.key.clone(), rev);
                    }
                    (Some(rev), false)
                }
                Err(StoreError::Precondition(_)) => (None, false),
                Err(e) => {
                    assert!(e.is_retryable(), "step {step}: unexpected error {e}");
                    (None, std::time::Instant::now() < deadline)
                }
            };
            issued.push(Issued {
                ops: ops.clone(),
                acked,
            });
            if !retry {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            via = running[r.gen_range(0..running.len())];
        }
    }
    tracing::info!("--- healing and restarting everything");
    c.router.heal();
    if let Some(v) = down {
        c.restart(v).await;
    }
    let leader = c.leader(LONG).await;
    let fence = c
        .member(leader)
        .txn(vec![Op::create("/fence", b"end".to_vec())])
        .await
        .unwrap();
    c.wait_applied(fence, LONG).await;
    c.wait_converged(LONG).await;

    // The history is the union of every member's retained events: a member
    // installed from a snapshot keeps none from before it (by design), so
    // no single member need hold it all. Where members overlap they agree.
    let mut by_rev: BTreeMap<u64, Summary> = BTreeMap::new();
    let mut from_member: BTreeMap<u64, u64> = BTreeMap::new();
    // Below every member's oldest retained event nothing can be checked
    // event by event; the final objects are still compared below.
    let mut window = u64::MAX;
    for id in c.all_ids() {
        let events = c.member(id).events().unwrap();
        window = window.min(events.first().map_or(u64::MAX, |e| e.revision));
        let mut mine: BTreeMap<u64, Summary> = BTreeMap::new();
        for e in events {
            if e.key.starts_with("/m/") {
                mine.entry(e.revision).or_default().push((
                    e.kind,
                    e.key.clone(),
                    e.value.as_ref().map(|v| v.value.clone()),
                ));
            }
        }
        for (rev, evs) in mine {
            match by_rev.get(&rev) {
                Some(other) => assert_eq!(
                    other, &evs,
                    "members {} and {id} disagree on revision {rev}",
                    from_member[&rev]
                ),
                None => {
                    from_member.insert(rev, id);
                    by_rev.insert(rev, evs);
                }
            }
        }
    }
    let first_acked = issued.iter().filter_map(|i| i.acked).min().unwrap_or(0);
    let full_history = window <= first_acked;
    println!("history retained from revision {window} (complete: {full_history})");
    // Every acknowledged write is in the log at its revision, exactly as issued.
    let acked: Vec<&Issued> = issued.iter().filter(|i| i.acked.is_some()).collect();
    println!(
        "seed {seed}: {} commands issued, {} acknowledged",
        issued.len(),
        acked.len()
    );
    assert!(
        acked.len() > 20,
        "too few writes succeeded to prove anything"
    );
    for i in acked.iter().filter(|i| i.acked.unwrap() >= window) {
        let rev = i.acked.unwrap();
        assert_eq!(
            by_rev.get(&rev),
            Some(&summary(&i.ops)),
            "acknowledged write at {rev} missing or altered"
        );
    }
    // Each member's retained events are a suffix of the history (a snapshot
    // install or a compaction drops a prefix), so the union is complete
    // when some member still holds it from the first write; only then can
    // the model replay it. Otherwise the members were compared with each
    // other by `wait_converged` above.
    if full_history {
        // Every other revision in the log comes from a command whose answer was lost.
        let acked_revs: BTreeSet<u64> = acked.iter().map(|i| i.acked.unwrap()).collect();
        let unacked: Vec<&Issued> = issued.iter().filter(|i| i.acked.is_none()).collect();
        let mut replay: BTreeMap<u64, Vec<Op>> = acked
            .iter()
            .map(|i| (i.acked.unwrap(), i.ops.clone()))
            .collect();
        for (rev, evs) in &by_rev {
            if acked_revs.contains(rev) {
                continue;
            }
            let origin = unacked
                .iter()
                .find(|i| &summary(&i.ops) == evs)
                .unwrap_or_else(|| panic!("revision {rev} holds events no client issued: {evs:?}"));
            replay.insert(*rev, origin.ops.clone());
        }
        // Replay in revision order through the model.
        let mut model: BTreeMap<String, (Vec<u8>, u64)> = BTreeMap::new();
        for (rev, ops) in &replay {
            for op in ops {
                match &op.action {
                    Action::Create { value, .. } => {
                        assert!(
                            !model.contains_key(&op.key),
                            "model: create of existing {} at {rev}",
                            op.key
                        );
                        model.insert(op.key.clone(), (value.clone(), *rev));
                    }
                    Action::Update { value } => {
                        let e = model.get_mut(&op.key).unwrap_or_else(|| {
                            panic!("model: update of missing {} at {rev}", op.key)
                        });
                        if let Some(Precondition::ModRevision(m)) = op.preconditions.first() {
                            assert_eq!(e.1, *m, "model: precondition at {rev} would fail");
                        }
                        *e = (value.clone(), *rev);
                    }
                    Action::Delete => {
                        assert!(
                            model.remove(&op.key).is_some(),
                            "model: delete of missing {} at {rev}",
                            op.key
                        );
                    }
                }
            }
        }
        for id in c.all_ids() {
            let state: BTreeMap<String, (Vec<u8>, u64)> = objects(&c.member(id))
                .await
                .into_iter()
                .filter(|(k, _)| k.starts_with("/m/"))
                .map(|(k, (v, _, m))| (k, (v, m)))
                .collect();
            assert_eq!(
                state, model,
                "member {id} differs from the model (seed {seed})"
            );
        }
    }
    c.shutdown().await;
}

/// How soon after a heal writes must commit again. Electing a leader takes one
/// election timeout (at most 2 s) plus a round trip; the bound leaves room for
/// split votes and a loaded machine. An election that never settles (a
/// candidate that cannot win kept ahead of one that can) exceeds it.
const RECOVERY: Duration = Duration::from_secs(20);

/// After a heal, a write must commit within [`RECOVERY`]; its revision.
async fn write_after_heal(c: &Cluster) -> u64 {
    let healed = Instant::now();
    let rev = commit(c, "/pk/after-heal", b"3", RECOVERY).await;
    let took = healed.elapsed();
    println!("writes resumed {took:?} after the heal");
    assert!(
        took < RECOVERY,
        "writes resumed only {took:?} after the heal"
    );
    rev
}

/// Create `key` through any running member, retrying retryable errors until
/// `within` has passed; its revision. A retry that finds the key already
/// there (an earlier attempt committed, its answer lost) reads it back and
/// accepts it only if it holds `value`.
async fn commit(c: &Cluster, key: &str, value: &[u8], within: Duration) -> u64 {
    let deadline = Instant::now() + within;
    let mut attempts = 0usize;
    loop {
        let running = c.running();
        let via = running[attempts % running.len()];
        attempts += 1;
        match c
            .member(via)
            .txn(vec![Op::create(key, value.to_vec())])
            .await
        {
            Ok(rev) => return rev,
            Err(StoreError::Precondition(f))
                if attempts > 1 && f.reason == FailureReason::AlreadyExists =>
            {
                let kv = f.current.expect("an existing key comes with its value");
                assert_eq!(kv.value, value, "{key} holds another write");
                return kv.mod_revision;
            }
            Err(e) => {
                assert!(e.is_retryable(), "{key}: unexpected error {e}");
                assert!(
                    Instant::now() < deadline,
                    "no write of {key} committed within {within:?}: {e}"
                );
                // Back off between attempts; bounded by the deadline above.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Safety after faults: every acknowledged write is on every member at its
/// revision, no write that was never acknowledged and cannot have committed
/// is anywhere, and the members are identical (digests included).
async fn check_nothing_lost(c: &Cluster, acked: &[(String, u64)], never: &str) {
    let last = acked.iter().map(|(_, r)| *r).max().expect("acked writes");
    c.wait_applied(last, LONG).await;
    c.wait_converged(LONG).await;
    for id in c.all_ids() {
        let objs = objects(&c.member(id)).await;
        for (key, rev) in acked {
            assert_eq!(
                objs.get(key).map(|o| o.2),
                Some(*rev),
                "member {id} lost acknowledged write {key}"
            );
        }
        let phantom: Vec<&String> = objs.keys().filter(|k| k.starts_with(never)).collect();
        assert!(
            phantom.is_empty(),
            "member {id} holds writes that were never acknowledged: {phantom:?}"
        );
    }
}

/// The leader is cut off with a tail of writes it can never commit; the other
/// two elect a leader and commit; then that new leader dies, so no side has a
/// quorum. After the heal the old leader (longer log, older term) and the
/// survivor (shorter log, newer term) must elect the survivor: Raft votes by
/// (last term, last index), and only the survivor's log can win.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolated_leader_plus_killed_new_leader_recovers_after_heal() {
    let seed = seed("isolated_leader_plus_killed_new_leader");
    // Every stale write below must be a log entry of its own (no group
    // commit), so that the cut-off leader's log is the longer one.
    let mut c = Cluster::start_with(3, seed, |cfg| cfg.commit_slots = 64).await;
    let ids = c.all_ids();
    let old = c.leader(LONG).await;
    let mut acked = Vec::new();
    for i in 0..5 {
        let key = format!("/pk/before/{i}");
        acked.push((key.clone(), commit(&c, &key, b"1", LONG).await));
    }
    tracing::info!("--- isolating leader {old}");
    c.router.isolate(old, &ids);
    // Writes sent to the cut-off leader enter its log and can never commit.
    let stale: Vec<_> = (0..20)
        .map(|i| {
            let m = c.member(old);
            tokio::spawn(async move {
                m.txn(vec![Op::create(format!("/pk/stale/{i}"), b"x".to_vec())])
                    .await
            })
        })
        .collect();
    let majority: Vec<u64> = ids.iter().copied().filter(|i| *i != old).collect();
    let new = c.leader_among(&majority, LONG).await;
    for i in 0..3 {
        let key = format!("/pk/majority/{i}");
        let rev = c
            .member(new)
            .txn(vec![Op::create(key.clone(), b"2".to_vec())])
            .await
            .unwrap();
        acked.push((key, rev));
    }
    for t in stale {
        let res = t.await.unwrap();
        assert!(res.is_err(), "the isolated leader acknowledged {res:?}");
    }
    let (old_last, new_last) = (last_log_index(&c, old), last_log_index(&c, new));
    println!("old leader {old}: last log index {old_last}; new leader {new}: {new_last}");
    assert!(
        old_last > new_last,
        "the scenario needs the cut-off leader to hold the longer (stale) log"
    );
    tracing::info!("--- killing the new leader {new}, then healing");
    c.kill(new).await;
    c.router.heal();
    acked.push(("/pk/after-heal".into(), write_after_heal(&c).await));
    let survivor = majority.iter().copied().find(|i| *i != new).unwrap();
    assert_eq!(
        c.leader(LONG).await,
        survivor,
        "only the member with the newer log can lead"
    );
    c.restart(new).await;
    check_nothing_lost(&c, &acked, "/pk/stale/").await;
    c.shutdown().await;
}

/// A follower is cut off and misses writes while its term climbs with every
/// failed election; then the leader dies, so no side has a quorum. After the
/// heal the stale follower (higher term, shorter log) must not win, and the
/// survivor must lead within the bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolated_follower_plus_killed_leader_recovers_after_heal() {
    let seed = seed("isolated_follower_plus_killed_leader");
    let mut c = Cluster::start(3, seed).await;
    let ids = c.all_ids();
    let leader = c.leader(LONG).await;
    let cut = ids.iter().copied().find(|i| *i != leader).unwrap();
    let survivor = ids
        .iter()
        .copied()
        .find(|i| *i != leader && *i != cut)
        .unwrap();
    let mut acked = Vec::new();
    tracing::info!("--- isolating follower {cut}");
    c.router.isolate(cut, &ids);
    for i in 0..10 {
        let key = format!("/pk/missed/{i}");
        let rev = c
            .member(leader)
            .txn(vec![Op::create(key.clone(), b"1".to_vec())])
            .await
            .unwrap();
        acked.push((key, rev));
    }
    // Give the cut-off follower the time to campaign (in vain) and raise its
    // term, as an isolated member does without pre-vote. Either way the heal
    // below must elect the survivor.
    let term = c
        .member(leader)
        .raft()
        .metrics()
        .borrow_watched()
        .current_term;
    let campaigned = tokio::time::timeout(Duration::from_secs(10), async {
        while c.member(cut).raft().metrics().borrow_watched().current_term <= term {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .is_ok();
    println!("cut-off follower {cut} campaigned: {campaigned}");
    tracing::info!("--- killing leader {leader}, then healing");
    c.kill(leader).await;
    // Without a quorum nothing is acknowledged.
    let res = c
        .member(survivor)
        .txn(vec![Op::create("/pk/noquorum/0", b"x".to_vec())])
        .await;
    assert!(
        res.is_err(),
        "a write was acknowledged without a quorum: {res:?}"
    );
    c.router.heal();
    acked.push(("/pk/after-heal".into(), write_after_heal(&c).await));
    assert_eq!(
        c.leader(LONG).await,
        survivor,
        "the member that missed writes cannot lead"
    );
    c.restart(leader).await;
    check_nothing_lost(&c, &acked, "/pk/noquorum/").await;
    c.shutdown().await;
}

/// A member's last log index.
fn last_log_index(c: &Cluster, id: u64) -> u64 {
    c.member(id)
        .raft()
        .metrics()
        .borrow_watched()
        .last_log_index
        .unwrap_or(0)
}
