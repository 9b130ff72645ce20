//! The pod statuses a node writes, as the kubelet's status manager writes
//! them: phase, the five pod conditions (lastTransitionTime kept while a
//! condition's status stays), hostIP/podIP, startTime, qosClass and one
//! container status per container (running, terminated, restarted with
//! `lastState`). Init containers are reported as having completed.

use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStatus,
    HostIP, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::plan::Placement;
use crate::node::fnv;

/// The pod's status as the node reads it before deciding.
pub struct Observed<'a> {
    pub phase: &'a str,
    pub start_time: Option<Timestamp>,
    /// The Ready condition is True.
    pub ready: bool,
    status: Option<&'a PodStatus>,
    containers: &'a [Container],
}

impl<'a> Observed<'a> {
    pub fn of(pod: &'a Pod) -> Observed<'a> {
        let status = pod.status.as_ref();
        Observed {
            phase: status.and_then(|s| s.phase.as_deref()).unwrap_or("Pending"),
            start_time: status.and_then(|s| s.start_time.as_ref()).map(|t| t.0),
            ready: condition(status, "Ready").is_some_and(|c| c.status == "True"),
            status,
            containers: pod.spec.as_ref().map_or(&[], |s| s.containers.as_slice()),
        }
    }

    fn container(&self, name: &str) -> Option<&'a ContainerStatus> {
        self.status
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.name == name))
    }

    /// When the containers started, if the pod is Running with every
    /// container running (the earliest start, all start together here).
    pub fn running_since(&self) -> Option<Timestamp> {
        if self.phase != "Running" || self.containers.is_empty() {
            return None;
        }
        self.containers
            .iter()
            .map(|c| {
                self.container(&c.name)
                    .and_then(|s| s.state.as_ref())
                    .and_then(|s| s.running.as_ref())
                    .map(|r| r.started_at.as_ref().map_or(Timestamp::UNIX_EPOCH, |t| t.0))
            })
            .collect::<Option<Vec<_>>>()?
            .into_iter()
            .min()
    }
}

fn condition<'a>(status: Option<&'a PodStatus>, type_: &str) -> Option<&'a PodCondition> {
    status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == type_))
}

/// How the containers of a pod exited.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Exit {
    pub code: i32,
    pub started: Timestamp,
    pub finished: Timestamp,
}

impl Exit {
    fn reason(&self) -> &'static str {
        if self.code == 0 { "Completed" } else { "Error" }
    }
}

fn container_id(pod: &Pod, name: &str, restarts: i32) -> String {
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    format!("hollow://{:016x}", fnv(&format!("{uid}/{name}/{restarts}")))
}

fn terminated_state(pod: &Pod, name: &str, restarts: i32, exit: Exit) -> ContainerState {
    ContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code: exit.code,
            reason: Some(exit.reason().into()),
            started_at: Some(Time(exit.started)),
            finished_at: Some(Time(exit.finished)),
            container_id: Some(container_id(pod, name, restarts)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Conditions with `lastTransitionTime` kept where the status did not change.
struct Conditions<'a> {
    old: Option<&'a PodStatus>,
    now: Timestamp,
    out: Vec<PodCondition>,
}

impl Conditions<'_> {
    fn set(&mut self, type_: &str, ok: bool, reason: Option<&str>, message: Option<String>) {
        let status = if ok { "True" } else { "False" };
        let since = condition(self.old, type_)
            .filter(|c| c.status == status)
            .and_then(|c| c.last_transition_time.clone())
            .unwrap_or(Time(self.now));
        self.out.push(PodCondition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.map(str::to_string),
            message,
            last_transition_time: Some(since),
            ..Default::default()
        });
    }

    /// Ready and ContainersReady, worded as the kubelet words them.
    fn readiness(&mut self, ready: bool, not_ready_reason: &str, unready: &[String]) {
        let (reason, message) = if ready {
            (None, None)
        } else {
            let message = (not_ready_reason == "ContainersNotReady")
                .then(|| format!("containers with unready status: [{}]", unready.join(" ")));
            (Some(not_ready_reason), message)
        };
        self.set("ContainersReady", ready, reason, message.clone());
        self.set("Ready", ready, reason, message);
    }
}

/// The pod's QoS class, as the API server computes it on create: what it
/// stored, or BestEffort (no requests or limits), Guaranteed (cpu and
/// memory limits on every container, requests equal to them) or Burstable.
fn qos_class(pod: &Pod, old: Option<&PodStatus>) -> String {
    if let Some(q) = old.and_then(|s| s.qos_class.clone()) {
        return q;
    }
    let containers = pod.spec.as_ref().map_or(&[][..], |s| &s.containers[..]);
    let mut any = false;
    let mut guaranteed = true;
    for c in containers {
        let r = c.resources.as_ref();
        let requests = r.and_then(|r| r.requests.as_ref());
        let limits = r.and_then(|r| r.limits.as_ref());
        any |= requests.is_some_and(|m| !m.is_empty()) || limits.is_some_and(|m| !m.is_empty());
        for res in ["cpu", "memory"] {
            let limit = limits.and_then(|l| l.get(res));
            let request = requests.and_then(|q| q.get(res)).or(limit);
            guaranteed &= limit.is_some() && request == limit;
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
    .into()
}

fn init_statuses(pod: &Pod, start: Timestamp) -> Option<Vec<ContainerStatus>> {
    let inits = pod.spec.as_ref()?.init_containers.as_ref()?;
    Some(
        inits
            .iter()
            .map(|c| ContainerStatus {
                name: c.name.clone(),
                image: c.image.clone().unwrap_or_default(),
                image_id: format!("hollow://{}", c.image.as_deref().unwrap_or_default()),
                container_id: Some(container_id(pod, &c.name, 0)),
                ready: true,
                started: Some(false),
                restart_count: 0,
                state: Some(terminated_state(
                    pod,
                    &c.name,
                    0,
                    Exit {
                        code: 0,
                        started: start,
                        finished: start,
                    },
                )),
                ..Default::default()
            })
            .collect(),
    )
}

/// The pod Running on the node: containers running since `started`, Ready
/// when `ready`; `exit` when they just exited and restart (restartCount
/// + 1, the exit as `lastState`).
pub fn running(
    pod: &Pod,
    o: &Observed<'_>,
    at: Placement<'_>,
    started: Timestamp,
    now: Timestamp,
    ready: bool,
    exit: Option<Exit>,
) -> PodStatus {
    let start_time = o.start_time.unwrap_or(now);
    let mut containers = Vec::new();
    for c in o.containers {
        let old = o.container(&c.name);
        let old_restarts = old.map_or(0, |s| s.restart_count);
        let (restarts, last_state) = match exit {
            Some(e) => (
                old_restarts + 1,
                Some(terminated_state(pod, &c.name, old_restarts, e)),
            ),
            None => (old_restarts, old.and_then(|s| s.last_state.clone())),
        };
        containers.push(ContainerStatus {
            name: c.name.clone(),
            image: c.image.clone().unwrap_or_default(),
            image_id: format!("hollow://{}", c.image.as_deref().unwrap_or_default()),
            container_id: Some(container_id(pod, &c.name, restarts)),
            ready,
            started: Some(true),
            restart_count: restarts,
            last_state,
            state: Some(ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: Some(Time(started)),
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    let unready: Vec<String> = o.containers.iter().map(|c| c.name.clone()).collect();
    let mut conds = Conditions {
        old: o.status,
        now,
        out: Vec::new(),
    };
    conds.set("PodReadyToStartContainers", true, None, None);
    conds.set("Initialized", true, None, None);
    conds.readiness(ready, "ContainersNotReady", &unready);
    conds.set("PodScheduled", true, None, None);
    PodStatus {
        phase: Some("Running".into()),
        conditions: Some(conds.out),
        host_ip: Some(at.host_ip.into()),
        host_ips: Some(vec![HostIP {
            ip: at.host_ip.into(),
        }]),
        pod_ip: Some(at.pod_ip.into()),
        pod_ips: Some(vec![PodIP {
            ip: at.pod_ip.into(),
        }]),
        start_time: Some(Time(start_time)),
        qos_class: Some(qos_class(pod, o.status)),
        container_statuses: Some(containers),
        init_container_statuses: init_statuses(pod, start_time),
        ..Default::default()
    }
}

/// The pod ended: every container exited with `exit.code`; Succeeded on
/// 0, Failed otherwise.
pub fn terminated(pod: &Pod, o: &Observed<'_>, exit: Exit) -> PodStatus {
    let phase = if exit.code == 0 {
        "Succeeded"
    } else {
        "Failed"
    };
    finished(pod, o, exit, phase, None)
}

/// The pod ran past `activeDeadlineSeconds`: Failed, reason
/// DeadlineExceeded, its containers killed.
pub fn deadline_exceeded(pod: &Pod, o: &Observed<'_>, now: Timestamp) -> PodStatus {
    let exit = Exit {
        code: 137,
        started: o.running_since().unwrap_or(now),
        finished: now,
    };
    finished(
        pod,
        o,
        exit,
        "Failed",
        Some((
            "DeadlineExceeded",
            "Pod was active on the node longer than the specified deadline",
        )),
    )
}

fn finished(
    pod: &Pod,
    o: &Observed<'_>,
    exit: Exit,
    phase: &str,
    why: Option<(&str, &str)>,
) -> PodStatus {
    let mut st = o.status.cloned().unwrap_or_default();
    let containers = o
        .containers
        .iter()
        .map(|c| {
            let old = o.container(&c.name);
            let restarts = old.map_or(0, |s| s.restart_count);
            ContainerStatus {
                name: c.name.clone(),
                image: c.image.clone().unwrap_or_default(),
                image_id: format!("hollow://{}", c.image.as_deref().unwrap_or_default()),
                container_id: Some(container_id(pod, &c.name, restarts)),
                ready: false,
                started: Some(false),
                restart_count: restarts,
                last_state: old.and_then(|s| s.last_state.clone()),
                state: Some(terminated_state(pod, &c.name, restarts, exit)),
                ..Default::default()
            }
        })
        .collect();
    let mut conds = Conditions {
        old: o.status,
        now: exit.finished,
        out: Vec::new(),
    };
    conds.set("PodReadyToStartContainers", false, None, None);
    conds.set("Initialized", true, None, None);
    let names: Vec<String> = o.containers.iter().map(|c| c.name.clone()).collect();
    let reason = if phase == "Succeeded" {
        "PodCompleted"
    } else {
        "ContainersNotReady"
    };
    conds.readiness(false, reason, &names);
    conds.set("PodScheduled", true, None, None);
    st.phase = Some(phase.into());
    st.conditions = Some(conds.out);
    st.container_statuses = Some(containers);
    st.qos_class = Some(qos_class(pod, o.status));
    if let Some((reason, message)) = why {
        st.reason = Some(reason.into());
        st.message = Some(message.into());
    }
    st
}
