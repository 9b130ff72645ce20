//! The pod planner: from one observed pod bound to this node and the time,
//! the node's next step. Level-triggered and idempotent: the plan depends
//! only on the pod as stored, so planning the pod again after a lost write
//! or a restart of the node gives the same answer, and a pod whose status
//! already says what the node would write plans to nothing.

use k8s_openapi::api::core::v1::{Pod, PodStatus};
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::status::{self, Exit, Observed};
use super::{EXIT_AFTER, EXIT_CODE, READY_AFTER};

/// One write the node makes.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Confirm a graceful deletion: DELETE with grace 0 and this uid as
    /// precondition (the kubelet's last word on a pod it stopped).
    ConfirmDelete { uid: String },
    /// Replace the pod's status with this one (optimistic concurrency on
    /// the observed resourceVersion).
    Status(Box<PodStatus>),
}

/// The next step for a pod, and when to plan it again (a container that
/// exits or turns ready later, a deadline).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    pub action: Option<Action>,
    pub wake: Option<Timestamp>,
}

/// Where the node runs a pod: the pod's IP (already allocated from the
/// node's CIDR, or the host's for hostNetwork pods) and the host's.
#[derive(Clone, Copy, Debug)]
pub struct Placement<'a> {
    pub pod_ip: &'a str,
    pub host_ip: &'a str,
}

/// Plan `pod` at `now`.
pub fn plan(pod: &Pod, at: Placement<'_>, now: Timestamp) -> Plan {
    if pod.metadata.deletion_timestamp.is_some() {
        return Plan {
            action: Some(Action::ConfirmDelete {
                uid: pod.metadata.uid.clone().unwrap_or_default(),
            }),
            wake: None,
        };
    }
    let observed = Observed::of(pod);
    if matches!(observed.phase, "Succeeded" | "Failed") {
        return Plan::default();
    }
    let behaviour = Behaviour::of(pod);
    let Some(started) = observed.running_since() else {
        // Not started (or not by this node): start every container now.
        let ready = behaviour.ready_after.is_none_or(|d| d.is_zero());
        let st = status::running(pod, &observed, at, now, now, ready, None);
        return Plan {
            action: Some(Action::Status(Box::new(st))),
            wake: behaviour.next_wake(now, now, &observed),
        };
    };
    // The pod's own deadline, counted from its start as the kubelet does.
    if let (Some(deadline), Some(start)) = (behaviour.active_deadline, observed.start_time)
        && now >= start + deadline
    {
        let st = status::deadline_exceeded(pod, &observed, now);
        return Plan {
            action: Some(Action::Status(Box::new(st))),
            wake: None,
        };
    }
    if let Some(after) = behaviour.exit_after
        && now >= started + after
    {
        let exit = Exit {
            code: behaviour.exit_code,
            started,
            finished: now,
        };
        let restart = match behaviour.restart_policy {
            "Never" => false,
            "OnFailure" => exit.code != 0,
            _ => true,
        };
        let st = if restart {
            let ready = behaviour.ready_after.is_none_or(|d| d.is_zero());
            status::running(pod, &observed, at, now, now, ready, Some(exit))
        } else {
            status::terminated(pod, &observed, exit)
        };
        let wake = restart
            .then(|| behaviour.next_wake(now, now, &observed))
            .flatten();
        return Plan {
            action: Some(Action::Status(Box::new(st))),
            wake,
        };
    }
    let want_ready = behaviour.ready_after.is_none_or(|d| now >= started + d);
    let action = (want_ready != observed.ready).then(|| {
        Action::Status(Box::new(status::running(
            pod, &observed, at, started, now, want_ready, None,
        )))
    });
    Plan {
        action,
        wake: behaviour.next_wake(started, now, &observed),
    }
}

/// What the pod's spec and annotations ask of the node.
struct Behaviour<'a> {
    restart_policy: &'a str,
    exit_after: Option<SignedDuration>,
    exit_code: i32,
    ready_after: Option<SignedDuration>,
    active_deadline: Option<SignedDuration>,
}

impl<'a> Behaviour<'a> {
    fn of(pod: &'a Pod) -> Behaviour<'a> {
        let annotation = |k: &str| {
            pod.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(k))
                .map(String::as_str)
        };
        let spec = pod.spec.as_ref();
        Behaviour {
            restart_policy: spec
                .and_then(|s| s.restart_policy.as_deref())
                .unwrap_or("Always"),
            exit_after: annotation(EXIT_AFTER).and_then(seconds),
            exit_code: annotation(EXIT_CODE)
                .and_then(|c| c.trim().parse().ok())
                .unwrap_or(0),
            ready_after: annotation(READY_AFTER).and_then(seconds),
            active_deadline: spec
                .and_then(|s| s.active_deadline_seconds)
                .filter(|s| *s > 0)
                .map(SignedDuration::from_secs),
        }
    }

    /// The next time something changes for containers started at
    /// `started`, after `now`.
    fn next_wake(&self, started: Timestamp, now: Timestamp, o: &Observed) -> Option<Timestamp> {
        let start = o.start_time.unwrap_or(now);
        [
            self.exit_after.map(|d| started + d),
            self.ready_after.map(|d| started + d),
            self.active_deadline.map(|d| start + d),
        ]
        .into_iter()
        .flatten()
        .filter(|t| *t > now)
        .min()
    }
}

/// A count of seconds (`5`, `0.5`) or a duration (`5s`, `1m`), non-negative.
fn seconds(s: &str) -> Option<SignedDuration> {
    let s = s.trim();
    let d = match s.parse::<f64>() {
        Ok(n) if n.is_finite() && (0.0..1e9).contains(&n) => std::time::Duration::from_secs_f64(n),
        Ok(_) => return None,
        Err(_) => crate::duration::parse(s)?,
    };
    SignedDuration::try_from(d).ok()
}

#[cfg(test)]
mod tests;
