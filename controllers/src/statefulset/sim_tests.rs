//! The planner against a simulated cluster, with API calls that fail
//! (before or after taking effect) at random: ordinals are created in
//! order under `OrderedReady`, no pod is created twice, a rolling update
//! never has more than `maxUnavailable` (1 when unset) replicas down,
//! the partition is respected, OnDelete deletes nothing itself, scale-down
//! goes highest ordinal first, and once failures stop the set converges.

use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::strategy::Strategy as _;

use super::plan::{self, Action, PodView, SetView, Strategy, Target, Why};
use super::pods::Phase;

/// A pod in the simulated cluster.
#[derive(Debug, Clone)]
struct SimPod {
    revision: String,
    /// Ticks since it was created.
    age: u32,
    /// Ticks it takes to become Running and Ready.
    ready_after: u32,
    /// Ticks left before a terminating pod is gone.
    terminating: Option<u32>,
}

impl SimPod {
    fn ready(&self) -> bool {
        self.age >= self.ready_after
    }
}

/// What an API call does this time.
#[derive(Debug, Clone, Copy)]
enum Fault {
    Ok,
    /// Refused: nothing happens, the caller sees an error.
    Before,
    /// Done, but the answer is lost: the caller sees an error.
    After,
}

fn fault(b: u8) -> Fault {
    match b % 10 {
        7 | 8 => Fault::Before,
        9 => Fault::After,
        _ => Fault::Ok,
    }
}

struct Sim {
    set: SetView,
    pods: BTreeMap<i32, SimPod>,
    ready_after: u32,
    grace: u32,
    faults: Vec<u8>,
    next_fault: usize,
    /// Replicas allowed down during an update (None: no update running).
    rolling_limit: Option<i32>,
}

impl Sim {
    fn new(set: SetView, ready_after: u32, grace: u32, faults: Vec<u8>) -> Sim {
        Sim {
            set,
            pods: BTreeMap::new(),
            ready_after,
            grace,
            faults,
            next_fault: 0,
            rolling_limit: None,
        }
    }

    fn views(&self) -> Vec<PodView> {
        self.pods
            .iter()
            .map(|(o, p)| PodView {
                ordinal: *o,
                revision: p.revision.clone(),
                phase: if p.ready() {
                    Phase::Running
                } else {
                    Phase::Pending
                },
                ready: p.ready(),
                available: p.ready(),
                terminating: p.terminating.is_some(),
                in_sync: true,
            })
            .collect()
    }

    fn in_range(&self, o: i32) -> bool {
        o >= self.set.start && o < self.set.start + self.set.replicas
    }

    fn healthy(&self, o: i32) -> bool {
        self.pods
            .get(&o)
            .is_some_and(|p| p.ready() && p.terminating.is_none())
    }

    fn unavailable(&self) -> i32 {
        (self.set.start..self.set.start + self.set.replicas)
            .filter(|o| !self.healthy(*o))
            .count() as i32
    }

    fn take_fault(&mut self, faulty: bool) -> Fault {
        if !faulty || self.faults.is_empty() {
            return Fault::Ok;
        }
        let f = fault(self.faults[self.next_fault % self.faults.len()]);
        self.next_fault += 1;
        f
    }

    /// One reconcile and one tick of the cluster.
    fn step(&mut self, faulty: bool) {
        let planned = plan::plan(&self.set, &self.views());
        for action in planned.actions {
            let f = self.take_fault(faulty);
            if matches!(f, Fault::Before) {
                break;
            }
            self.apply(action);
            if let Some(limit) = self.rolling_limit {
                assert!(
                    self.unavailable() <= limit,
                    "{} replicas down, at most {limit} allowed, after {action:?}: {:?}",
                    self.unavailable(),
                    self.pods
                );
            }
            if matches!(f, Fault::After) {
                break;
            }
        }
        // Status: a finished rolling update makes the update revision current.
        let counts = plan::count(
            &self.views(),
            &self.set.current_revision,
            &self.set.update_revision,
        );
        let (current, current_replicas) = plan::complete_rolling_update(&self.set, &counts);
        self.set.current_revision = current;
        self.set.status_current_replicas = current_replicas;
        self.tick();
    }

    fn apply(&mut self, action: Action) {
        match action {
            Action::Create { ordinal, target } => {
                assert!(
                    !self.pods.contains_key(&ordinal),
                    "pod {ordinal} created twice"
                );
                assert!(self.in_range(ordinal), "pod {ordinal} created out of range");
                if !self.set.parallel {
                    for o in self.set.start..ordinal {
                        assert!(
                            self.healthy(o),
                            "OrderedReady created {ordinal} before {o} was ready: {:?}",
                            self.pods
                        );
                    }
                }
                if let Strategy::RollingUpdate {
                    partition: Some(p), ..
                } = self.set.strategy
                {
                    let want = if ordinal < self.set.start + p {
                        Target::Current
                    } else {
                        Target::Update
                    };
                    assert_eq!(target, want, "revision of new pod {ordinal}");
                }
                let revision = match target {
                    Target::Current => self.set.current_revision.clone(),
                    Target::Update => self.set.update_revision.clone(),
                };
                self.pods.insert(
                    ordinal,
                    SimPod {
                        revision,
                        age: 0,
                        ready_after: self.ready_after,
                        terminating: None,
                    },
                );
            }
            Action::Delete { ordinal, why } => {
                match why {
                    Why::Update => match self.set.strategy {
                        Strategy::OnDelete => panic!("OnDelete deleted pod {ordinal}"),
                        Strategy::RollingUpdate { partition, .. } => {
                            let min = self.set.start + partition.unwrap_or(0);
                            assert!(
                                ordinal >= min,
                                "pod {ordinal} updated below partition {min}"
                            );
                        }
                    },
                    Why::ScaleDown => {
                        assert!(!self.in_range(ordinal));
                        if !self.set.parallel {
                            let highest = self.pods.keys().filter(|o| !self.in_range(**o)).max();
                            assert_eq!(highest, Some(&ordinal), "scale-down not highest first");
                            assert!(
                                self.pods.values().all(|p| p.terminating.is_none()),
                                "OrderedReady scaled down while a pod terminates"
                            );
                        }
                    }
                    Why::Ended => {}
                }
                let grace = self.grace;
                if let Some(p) = self.pods.get_mut(&ordinal)
                    && p.terminating.is_none()
                {
                    p.terminating = Some(grace);
                }
            }
            Action::CreateClaims { .. }
            | Action::Sync { .. }
            | Action::SyncCondemnedClaims { .. } => {}
        }
    }

    fn tick(&mut self) {
        self.pods.retain(|_, p| p.terminating != Some(0));
        for p in self.pods.values_mut() {
            p.age += 1;
            if let Some(t) = p.terminating.as_mut() {
                *t -= 1;
            }
        }
    }

    /// Run without faults until `done` or panic after a bound.
    fn converge(&mut self, what: &str, done: impl Fn(&Sim) -> bool) {
        for _ in 0..500 {
            if done(self) {
                return;
            }
            self.step(false);
        }
        panic!("{what}: no convergence: {:?} {:?}", self.set, self.pods);
    }

    fn all_ready_at(&self, rev: impl Fn(i32) -> String) -> bool {
        self.pods.len() as i32 == self.set.replicas
            && (self.set.start..self.set.start + self.set.replicas)
                .all(|o| self.healthy(o) && self.pods.get(&o).is_some_and(|p| p.revision == rev(o)))
    }
}

#[derive(Debug, Clone)]
struct Scenario {
    replicas: i32,
    start: i32,
    parallel: bool,
    on_delete: bool,
    partition: i32,
    max_unavailable: Option<i32>,
    ready_after: u32,
    grace: u32,
    scale_to: i32,
    faults: Vec<u8>,
    user_deletes: Vec<i32>,
}

fn scenarios() -> impl proptest::strategy::Strategy<Value = Scenario> {
    (
        (0i32..7, 0i32..3, any::<bool>(), any::<bool>()),
        (
            0i32..8,
            proptest::option::of(1i32..4),
            0u32..4,
            0u32..3,
            0i32..7,
        ),
        proptest::collection::vec(any::<u8>(), 1..64),
        proptest::collection::vec(0i32..7, 0..6),
    )
        .prop_map(
            |(
                (replicas, start, parallel, on_delete),
                (partition, max, ready_after, grace, scale_to),
                faults,
                user_deletes,
            )| {
                Scenario {
                    replicas,
                    start,
                    parallel,
                    on_delete,
                    partition,
                    max_unavailable: max,
                    ready_after,
                    grace,
                    scale_to,
                    faults,
                    user_deletes,
                }
            },
        )
}

fn run(s: &Scenario) {
    let strategy = if s.on_delete {
        Strategy::OnDelete
    } else {
        Strategy::RollingUpdate {
            partition: Some(s.partition),
            max_unavailable: s.max_unavailable,
        }
    };
    let set = SetView {
        replicas: s.replicas,
        start: s.start,
        parallel: s.parallel,
        strategy,
        has_claims: false,
        deleting: false,
        current_revision: "web-a".into(),
        update_revision: "web-a".into(),
        status_current_replicas: 0,
    };
    let mut sim = Sim::new(set, s.ready_after, s.grace, s.faults.clone());

    // Scale up from nothing, with faults, then without until settled.
    for _ in 0..40 {
        sim.step(true);
    }
    sim.converge("scale up", |sim| sim.all_ready_at(|_| "web-a".into()));

    // Roll out revision b.
    sim.set.update_revision = "web-b".into();
    if !s.on_delete {
        sim.rolling_limit = Some(s.max_unavailable.unwrap_or(1));
    }
    // The pods the user deleted: OnDelete must bring each back at b, even
    // one whose replacement an API fault held back past this loop.
    let mut deleted_by_user: Vec<i32> = Vec::new();
    for i in 0..60 {
        if s.on_delete && i % 7 == 0 {
            // The user deletes a pod: OnDelete replaces it at revision b.
            if let Some(o) = s.user_deletes.get(i / 7) {
                let o = s.start + o % s.replicas.max(1);
                if let Some(p) = sim.pods.get_mut(&o)
                    && p.terminating.is_none()
                {
                    p.terminating = Some(s.grace);
                    deleted_by_user.push(o);
                }
            }
        }
        sim.step(true);
    }
    let start = s.start;
    let partition = s.partition;
    let on_delete = s.on_delete;
    let want = move |o: i32| {
        let updated = if on_delete {
            deleted_by_user.contains(&o)
        } else {
            o >= start + partition
        };
        if updated { "web-b" } else { "web-a" }.to_string()
    };
    let want2 = want.clone();
    sim.converge("rollout", move |sim| {
        // OnDelete pods being replaced still come back at b.
        sim.pods.values().all(|p| p.terminating.is_none()) && sim.all_ready_at(&want2)
    });
    // The last pod became Ready in the tick after the step that created
    // it, so that step's status could not count it: the sync its Ready
    // event brings (as a pod watch does) writes the finished status.
    sim.step(false);
    // Below the partition nothing changed; a complete update is current.
    for (o, p) in &sim.pods {
        assert_eq!(p.revision, want(*o), "pod {o}");
    }
    if !s.on_delete && s.partition == 0 && s.replicas > 0 {
        assert_eq!(
            sim.set.current_revision, "web-b",
            "finished update not current"
        );
    }
    sim.rolling_limit = None;

    // Scale down (or up) with faults, then settle.
    sim.set.replicas = s.scale_to;
    for _ in 0..40 {
        sim.step(true);
    }
    sim.converge("scale", |sim| {
        sim.pods.len() as i32 == sim.set.replicas
            && (sim.set.start..sim.set.start + sim.set.replicas).all(|o| sim.healthy(o))
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn planner_keeps_statefulset_invariants_under_api_failures(s in scenarios()) {
        run(&s);
    }
}

#[test]
fn ordered_scale_up_one_by_one_without_faults() {
    let s = Scenario {
        replicas: 5,
        start: 0,
        parallel: false,
        on_delete: false,
        partition: 2,
        max_unavailable: None,
        ready_after: 2,
        grace: 1,
        scale_to: 1,
        faults: vec![0],
        user_deletes: vec![],
    };
    run(&s);
}
