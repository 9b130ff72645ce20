//! What a namespace uses of each resource a quota names: pure functions
//! over the objects in the namespace, as Kubernetes' quota evaluators
//! count them. Pods that finished count for nothing; a pod's request of a
//! resource is the larger of its containers' sum and its largest init
//! container, plus its overhead; a container without a request of a
//! resource it limits requests its limit (as Kubernetes defaults it).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, PersistentVolumeClaim, Pod, Service};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as Q;

use super::quantity::{self, Quantity};

/// The objects of one namespace a quota counts.
#[derive(Default)]
pub struct Namespace {
    pub pods: Vec<Pod>,
    pub services: Vec<Service>,
    pub pvcs: Vec<PersistentVolumeClaim>,
    /// Counts of other resources by quota name (`configmaps`,
    /// `count/deployments.apps`, …), filled by the caller for the names
    /// the quota asks about.
    pub counts: BTreeMap<String, usize>,
}

/// The scopes of `spec.scopes` this controller applies to pods.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    Terminating,
    NotTerminating,
    BestEffort,
    NotBestEffort,
}

impl Scope {
    pub fn parse(s: &str) -> Option<Scope> {
        Some(match s {
            "Terminating" => Scope::Terminating,
            "NotTerminating" => Scope::NotTerminating,
            "BestEffort" => Scope::BestEffort,
            "NotBestEffort" => Scope::NotBestEffort,
            _ => return None,
        })
    }

    fn admits(self, pod: &Pod) -> bool {
        let spec = pod.spec.as_ref();
        let deadline = spec.and_then(|s| s.active_deadline_seconds).is_some();
        let best_effort = spec.is_none_or(|s| {
            s.containers
                .iter()
                .chain(s.init_containers.iter().flatten())
                .all(|c| {
                    c.resources.as_ref().is_none_or(|r| {
                        r.requests.as_ref().is_none_or(|m| m.is_empty())
                            && r.limits.as_ref().is_none_or(|m| m.is_empty())
                    })
                })
        });
        match self {
            Scope::Terminating => deadline,
            Scope::NotTerminating => !deadline,
            Scope::BestEffort => best_effort,
            Scope::NotBestEffort => !best_effort,
        }
    }
}

/// Whether a pod still counts: not Succeeded or Failed.
fn live(pod: &Pod) -> bool {
    !matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

fn q(v: Option<&Q>) -> Option<Quantity> {
    quantity::parse(&v?.0)
}

/// A container's request (`limits == false`) or limit of `resource`.
fn container_amount(c: &Container, resource: &str, limits: bool) -> Option<Quantity> {
    let r = c.resources.as_ref()?;
    let get = |m: &Option<BTreeMap<String, Q>>| q(m.as_ref().and_then(|m| m.get(resource)));
    if limits {
        get(&r.limits)
    } else {
        get(&r.requests).or_else(|| get(&r.limits))
    }
}

/// A pod's request or limit of `resource` (see the module notes).
fn pod_amount(pod: &Pod, resource: &str, limits: bool) -> Option<Quantity> {
    let spec = pod.spec.as_ref()?;
    let mut binary = false;
    let mut seen = false;
    let mut sum = 0i128;
    for c in &spec.containers {
        if let Some(a) = container_amount(c, resource, limits) {
            sum += a.milli;
            binary |= a.binary;
            seen = true;
        }
    }
    for c in spec.init_containers.iter().flatten() {
        if let Some(a) = container_amount(c, resource, limits) {
            sum = sum.max(a.milli);
            binary |= a.binary;
            seen = true;
        }
    }
    if let Some(a) = q(spec.overhead.as_ref().and_then(|o| o.get(resource))) {
        sum += a.milli;
        binary |= a.binary;
        seen = true;
    }
    seen.then_some(Quantity { milli: sum, binary })
}

/// A sum of quantities, written for `resource` (CPU in cores or
/// millicores, others in the suffixes the parts used).
fn total(resource: &str, parts: impl Iterator<Item = Quantity>) -> String {
    let (mut milli, mut binary) = (0i128, false);
    for p in parts {
        milli += p.milli;
        binary |= p.binary;
    }
    if resource.ends_with("cpu") {
        quantity::format_cpu(milli)
    } else {
        quantity::format(milli, binary)
    }
}

/// The usage the quota resource `name` (a key of `spec.hard`) reports for
/// `ns`, counting only pods `scopes` admit; `None` for a resource this
/// controller does not count.
pub fn used(name: &str, ns: &Namespace, scopes: &[Scope]) -> Option<String> {
    let pods = || {
        ns.pods
            .iter()
            .filter(|p| live(p) && scopes.iter().all(|s| s.admits(p)))
    };
    let count = |n: usize| Some(n.to_string());
    match name {
        "pods" | "count/pods" => count(pods().count()),
        "services" | "count/services" => count(ns.services.len()),
        "services.nodeports" => count(
            ns.services
                .iter()
                .filter_map(|s| s.spec.as_ref())
                .filter(|s| matches!(s.type_.as_deref(), Some("NodePort" | "LoadBalancer")))
                .flat_map(|s| s.ports.iter().flatten())
                .filter(|p| p.node_port.is_some())
                .count(),
        ),
        "services.loadbalancers" => count(
            ns.services
                .iter()
                .filter(|s| {
                    s.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("LoadBalancer")
                })
                .count(),
        ),
        "persistentvolumeclaims" | "count/persistentvolumeclaims" => count(ns.pvcs.len()),
        "requests.storage" => Some(total(
            "storage",
            ns.pvcs.iter().filter_map(|c| {
                q(c.spec
                    .as_ref()?
                    .resources
                    .as_ref()?
                    .requests
                    .as_ref()?
                    .get("storage"))
            }),
        )),
        _ => {
            if let Some(r) = name.strip_prefix("limits.") {
                return Some(total(r, pods().filter_map(|p| pod_amount(p, r, true))));
            }
            // `requests.<r>`, and the bare names that mean a request.
            let bare = matches!(name, "cpu" | "memory" | "ephemeral-storage")
                || name.starts_with("hugepages-");
            if let Some(r) = name.strip_prefix("requests.").or(bare.then_some(name)) {
                return Some(total(r, pods().filter_map(|p| pod_amount(p, r, false))));
            }
            ns.counts.get(name).map(|n| n.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(phase: &str, containers: serde_json::Value, extra: serde_json::Value) -> Pod {
        let mut spec = json!({"containers": containers});
        if let Some(m) = extra.as_object() {
            for (k, v) in m {
                spec[k] = v.clone();
            }
        }
        serde_json::from_value(
            json!({"metadata": {"name": "p"}, "spec": spec, "status": {"phase": phase}}),
        )
        .unwrap()
    }

    #[test]
    fn pods_count_their_requests_and_limits_as_kubernetes_does() {
        let ns = Namespace {
            pods: vec![
                pod(
                    "Running",
                    json!([{"name": "a", "resources": {"requests": {"cpu": "250m", "memory": "128Mi"}, "limits": {"cpu": "1"}}},
                           {"name": "b", "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}}}]),
                    json!({"initContainers": [{"name": "i", "resources": {"requests": {"cpu": "2"}}}]}),
                ),
                pod(
                    "Pending",
                    json!([{"name": "c", "resources": {"requests": {"memory": "1Gi"}}}]),
                    json!({}),
                ),
                pod(
                    "Succeeded",
                    json!([{"name": "d", "resources": {"requests": {"cpu": "8"}}}]),
                    json!({}),
                ),
                pod(
                    "Running",
                    json!([{"name": "e"}]),
                    json!({"activeDeadlineSeconds": 30}),
                ),
            ],
            ..Default::default()
        };
        // Init container 2 cores > 250m + 500m (the limit stands in for b's request).
        assert_eq!(used("requests.cpu", &ns, &[]).unwrap(), "2");
        assert_eq!(used("cpu", &ns, &[]).unwrap(), "2");
        assert_eq!(used("requests.memory", &ns, &[]).unwrap(), "1280Mi");
        assert_eq!(used("limits.cpu", &ns, &[]).unwrap(), "1500m");
        assert_eq!(used("limits.memory", &ns, &[]).unwrap(), "128Mi");
        assert_eq!(used("pods", &ns, &[]).unwrap(), "3");
        assert_eq!(used("count/pods", &ns, &[Scope::Terminating]).unwrap(), "1");
        assert_eq!(used("pods", &ns, &[Scope::BestEffort]).unwrap(), "1");
        assert_eq!(
            used("pods", &ns, &[Scope::NotBestEffort, Scope::NotTerminating]).unwrap(),
            "2"
        );
        assert_eq!(used("requests.nvidia.com/gpu", &ns, &[]).unwrap(), "0");
    }

    #[test]
    fn services_claims_and_other_counts() {
        let svc = |t: &str, ports: serde_json::Value| -> Service {
            serde_json::from_value(
                json!({"metadata": {"name": "s"}, "spec": {"type": t, "ports": ports}}),
            )
            .unwrap()
        };
        let pvc: PersistentVolumeClaim = serde_json::from_value(json!({"metadata": {"name": "c"},
            "spec": {"resources": {"requests": {"storage": "1Gi"}}}}))
        .unwrap();
        let mut ns = Namespace {
            services: vec![
                svc("ClusterIP", json!([{"port": 80}])),
                svc(
                    "NodePort",
                    json!([{"port": 80, "nodePort": 30080}, {"port": 81, "nodePort": 30081}]),
                ),
                svc("LoadBalancer", json!([{"port": 80, "nodePort": 30082}])),
            ],
            pvcs: vec![pvc.clone(), pvc],
            ..Default::default()
        };
        ns.counts.insert("configmaps".into(), 4);
        assert_eq!(used("services", &ns, &[]).unwrap(), "3");
        assert_eq!(used("services.nodeports", &ns, &[]).unwrap(), "3");
        assert_eq!(used("services.loadbalancers", &ns, &[]).unwrap(), "1");
        assert_eq!(used("persistentvolumeclaims", &ns, &[]).unwrap(), "2");
        assert_eq!(used("requests.storage", &ns, &[]).unwrap(), "2Gi");
        assert_eq!(used("configmaps", &ns, &[]).unwrap(), "4");
        assert_eq!(used("count/deployments.apps", &ns, &[]), None);
    }
}
