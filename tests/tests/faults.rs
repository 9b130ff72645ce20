//! A seeded randomized workload under faults (partitions, kills, restarts,
//! dropped and delayed messages).
//! Afterwards every acknowledged write is present on every member, and the
//! final state equals a `BTreeMap` model that replays the commands in
//! revision order (acknowledged ones, plus any whose answer was lost but that
//! the log shows committed).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use keel_store::{Action, EventKind, Op, Precondition, StoreError};
use keel_tests::{Cluster, objects, rng, seed};
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

    let events = c.member(leader).events().unwrap();
    let mut by_rev: BTreeMap<u64, Summary> = BTreeMap::new();
    for e in events.iter().filter(|e| e.key.starts_with("/m/")) {
        by_rev.entry(e.revision).or_default().push((
            e.kind,
            e.key.clone(),
            e.value.as_ref().map(|v| v.value.clone()),
        ));
    }
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
    for i in &acked {
        let rev = i.acked.unwrap();
        assert_eq!(
            by_rev.get(&rev),
            Some(&summary(&i.ops)),
            "acknowledged write at {rev} missing or altered"
        );
    }
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
                    let e = model
                        .get_mut(&op.key)
                        .unwrap_or_else(|| panic!("model: update of missing {} at {rev}", op.key));
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
    c.shutdown().await;
}
