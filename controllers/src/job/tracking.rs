//! Counting finished pods with the `batch.kubernetes.io/job-tracking`
//! finalizer, as Kubernetes' Job controller does: a finished pod is counted
//! exactly once even if it is deleted, or the controller fails over, between
//! steps. The steps: (1) record the pod's uid in
//! `status.uncountedTerminatedPods` (and, for Indexed Jobs, its index in
//! `completedIndexes`); (2) remove the finalizer from the pod; (3) move the
//! uids whose pods no longer carry the finalizer from the uncounted lists
//! into `succeeded`/`failed`. Pure: [`track`] says what steps 1 and 2 do,
//! [`flush`] what step 3 does.

use std::collections::BTreeSet;

/// The finalizer the Job controller puts on its pods.
pub const FINALIZER: &str = "batch.kubernetes.io/job-tracking";

/// A pod's state as the Job controller reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodState {
    /// Pending or running, not being deleted.
    Active,
    /// Being deleted and not finished (counted as failed, as Kubernetes
    /// counts a deleted pod that cannot reach a phase any more).
    Terminating,
    Succeeded,
    Failed,
}

/// What tracking needs of a pod.
#[derive(Debug, Clone)]
pub struct TrackedPod {
    pub uid: String,
    pub state: PodState,
    pub index: Option<i32>,
    pub has_finalizer: bool,
}

/// `status.uncountedTerminatedPods`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Uncounted {
    pub succeeded: BTreeSet<String>,
    pub failed: BTreeSet<String>,
}

impl Uncounted {
    pub fn is_empty(&self) -> bool {
        self.succeeded.is_empty() && self.failed.is_empty()
    }
}

/// Steps 1 and 2: the uncounted lists and completed indexes to write before
/// any finalizer is removed, and the pods (uids) whose finalizer then goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracking {
    pub uncounted: Uncounted,
    pub completed_indexes: BTreeSet<i32>,
    pub remove_finalizer: Vec<String>,
}

/// Steps 1 and 2 for `pods`, given the status so far. `indexed` carries the
/// completions of an Indexed Job: a success there counts only for a valid
/// index not completed before.
pub fn track(
    uncounted: &Uncounted,
    completed_indexes: &BTreeSet<i32>,
    indexed: Option<i32>,
    pods: &[TrackedPod],
) -> Tracking {
    let mut out = Tracking {
        uncounted: uncounted.clone(),
        completed_indexes: completed_indexes.clone(),
        remove_finalizer: Vec::new(),
    };
    for pod in pods.iter().filter(|p| p.has_finalizer) {
        let uid = &pod.uid;
        match pod.state {
            PodState::Active => continue,
            PodState::Succeeded => {
                if out.uncounted.succeeded.contains(uid) {
                    // Recorded earlier; the finalizer removal did not happen.
                } else if let Some(completions) = indexed {
                    match pod.index {
                        Some(i)
                            if (0..completions).contains(&i) && out.completed_indexes.insert(i) =>
                        {
                            out.uncounted.succeeded.insert(uid.clone());
                        }
                        // A second success of an index, or no valid index: not counted.
                        _ => {}
                    }
                } else {
                    out.uncounted.succeeded.insert(uid.clone());
                }
            }
            PodState::Failed | PodState::Terminating => {
                out.uncounted.failed.insert(uid.clone());
            }
        }
        out.remove_finalizer.push(uid.clone());
    }
    out
}

/// Step 3: how many uncounted successes and failures are final (their pods
/// gone, or without the finalizer), and what stays uncounted.
pub fn flush(uncounted: &Uncounted, pods: &[TrackedPod]) -> (i32, i32, Uncounted) {
    let held: BTreeSet<&str> = pods
        .iter()
        .filter(|p| p.has_finalizer)
        .map(|p| p.uid.as_str())
        .collect();
    let mut rest = Uncounted::default();
    let (mut ok, mut failed) = (0, 0);
    for uid in &uncounted.succeeded {
        if held.contains(uid.as_str()) {
            rest.succeeded.insert(uid.clone());
        } else {
            ok += 1;
        }
    }
    for uid in &uncounted.failed {
        if held.contains(uid.as_str()) {
            rest.failed.insert(uid.clone());
        } else {
            failed += 1;
        }
    }
    (ok, failed, rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(uid: &str, state: PodState, index: Option<i32>, fin: bool) -> TrackedPod {
        TrackedPod {
            uid: uid.into(),
            state,
            index,
            has_finalizer: fin,
        }
    }

    fn set(v: &[&str]) -> BTreeSet<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn finished_pods_are_recorded_before_their_finalizer_goes() {
        use PodState::*;
        let pods = [
            pod("a", Active, None, true),
            pod("s", Succeeded, None, true),
            pod("f", Failed, None, true),
            pod("t", Terminating, None, true),
            pod("done", Succeeded, None, false),
        ];
        let t = track(&Uncounted::default(), &BTreeSet::new(), None, &pods);
        assert_eq!(t.uncounted.succeeded, set(&["s"]));
        assert_eq!(t.uncounted.failed, set(&["f", "t"]));
        assert_eq!(t.remove_finalizer, ["s", "f", "t"]);

        // Before the finalizers are removed nothing is final...
        let (ok, failed, rest) = flush(&t.uncounted, &pods);
        assert_eq!((ok, failed), (0, 0));
        assert_eq!(rest, t.uncounted);
        // ...after, every recorded pod is, gone or not.
        let after = [
            pod("s", Succeeded, None, false),
            pod("t", Terminating, None, false),
        ];
        let (ok, failed, rest) = flush(&t.uncounted, &after);
        assert_eq!((ok, failed), (1, 2));
        assert!(rest.is_empty());
    }

    #[test]
    fn a_sync_that_stopped_halfway_neither_loses_nor_doubles_a_pod() {
        use PodState::*;
        // Step 1 was written, then the member lost its lease.
        let recorded = Uncounted {
            succeeded: set(&["s"]),
            failed: set(&[]),
        };
        let pods = [pod("s", Succeeded, None, true)];
        let t = track(&recorded, &BTreeSet::new(), None, &pods);
        assert_eq!(t.uncounted, recorded, "recorded once");
        assert_eq!(t.remove_finalizer, ["s"]);
        // The finalizer was removed too, then the pod deleted: flushed once.
        let (ok, failed, rest) = flush(&recorded, &[]);
        assert_eq!((ok, failed), (1, 0));
        assert!(rest.is_empty());
    }

    #[test]
    fn indexed_successes_count_once_per_valid_index() {
        use PodState::*;
        let done: BTreeSet<i32> = [1].into();
        let pods = [
            pod("a0", Succeeded, Some(0), true),
            pod("b0", Succeeded, Some(0), true),
            pod("a1", Succeeded, Some(1), true),
            pod("bad", Succeeded, Some(7), true),
            pod("none", Succeeded, None, true),
            pod("f2", Failed, Some(2), true),
        ];
        let t = track(&Uncounted::default(), &done, Some(3), &pods);
        assert_eq!(t.uncounted.succeeded, set(&["a0"]));
        assert_eq!(t.uncounted.failed, set(&["f2"]));
        assert_eq!(t.completed_indexes, [0, 1].into());
        assert_eq!(t.remove_finalizer, ["a0", "b0", "a1", "bad", "none", "f2"]);
    }
}
