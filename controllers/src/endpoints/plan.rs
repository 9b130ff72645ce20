//! What a Service's endpoints are, from its pods: pure functions shared by
//! the endpoints and endpointslice controllers. Which pods count (an IP,
//! not finished, matched by the selector), whether each is ready, which
//! port a service port reaches on it (a `targetPort` number, or a name
//! looked up in the pod's container ports), and the Endpoints subsets
//! Kubernetes' endpoints controller writes: addresses grouped by the ports
//! they serve, ready ones apart from not-ready ones, in a stable order.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, ObjectReference, Pod, Service, ServicePort,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// The most addresses one Endpoints object holds; beyond it Kubernetes
/// truncates and marks the object with [`OVER_CAPACITY`].
pub const MAX_ADDRESSES: usize = 1000;
/// The annotation on a truncated Endpoints object.
pub const OVER_CAPACITY: &str = "endpoints.kubernetes.io/over-capacity";

/// Whether the controllers keep endpoints for `svc`: it selects pods (a
/// Service without a selector has endpoints its user writes) and is not
/// an ExternalName.
pub fn managed(svc: &Service) -> bool {
    let Some(spec) = &svc.spec else { return false };
    spec.selector.is_some() && spec.type_.as_deref() != Some("ExternalName")
}

/// Whether `pod` carries every label of the Service selector `selector`.
pub fn selects(selector: &BTreeMap<String, String>, pod: &Pod) -> bool {
    let labels = pod.metadata.labels.as_ref();
    selector
        .iter()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

/// The pod's IP, if it has one yet.
pub fn pod_ip(pod: &Pod) -> Option<&str> {
    let st = pod.status.as_ref()?;
    st.pod_ip
        .as_deref()
        .or_else(|| st.pod_ips.as_ref()?.first().map(|p| p.ip.as_str()))
        .filter(|ip| !ip.is_empty())
}

/// Whether the pod has finished (it never serves again).
pub fn finished(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// Whether the pod's `Ready` condition is `True`.
pub fn ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Whether the pod is being deleted.
pub fn terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// The port `sp` reaches on `pod`: its `targetPort` number (the service
/// port's own number when unset), or the container port of that name.
/// `None`: the pod has no such named port.
pub fn target_port(sp: &ServicePort, pod: &Pod) -> Option<i32> {
    match &sp.target_port {
        None => Some(sp.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => {
            if let Ok(n) = name.parse::<i32>() {
                return Some(n);
            }
            let spec = pod.spec.as_ref()?;
            spec.containers
                .iter()
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .map(|p| p.container_port)
        }
    }
}

/// The hostname an endpoint of `pod` carries for `svc`: the pod's
/// `hostname` when its `subdomain` names the Service.
pub fn hostname(pod: &Pod, svc: &Service) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let h = spec.hostname.as_ref().filter(|h| !h.is_empty())?;
    (spec.subdomain.as_deref() == svc.metadata.name.as_deref()
        && pod.metadata.namespace == svc.metadata.namespace)
        .then(|| h.clone())
}

/// A reference to `pod` (an endpoint's `targetRef`).
pub fn pod_ref(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        namespace: pod.metadata.namespace.clone(),
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
        ..Default::default()
    }
}

/// Whether the Service publishes pods that are not ready as ready.
pub fn publishes_not_ready(svc: &Service) -> bool {
    svc.spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false)
}

/// The Service's ports, `[]` when it has none.
pub fn service_ports(svc: &Service) -> &[ServicePort] {
    svc.spec
        .as_ref()
        .and_then(|s| s.ports.as_deref())
        .unwrap_or(&[])
}

/// The ports of `svc` that `pod` serves, as endpoint ports (name,
/// resolved number, protocol, appProtocol), in service port order.
pub fn endpoint_ports(svc: &Service, pod: &Pod) -> Vec<EndpointPort> {
    service_ports(svc)
        .iter()
        .filter_map(|sp| {
            Some(EndpointPort {
                name: sp.name.clone().filter(|n| !n.is_empty()),
                port: target_port(sp, pod)?,
                protocol: Some(sp.protocol.clone().unwrap_or_else(|| "TCP".into())),
                app_protocol: sp.app_protocol.clone(),
            })
        })
        .collect()
}

/// The Endpoints subsets of `svc` over `pods` (every pod in its namespace;
/// those it does not select are skipped), and whether they were truncated
/// at [`MAX_ADDRESSES`]. As Kubernetes' endpoints controller: pods without
/// an IP, finished or being deleted are left out (unless the Service
/// publishes not-ready addresses, which keeps deleting pods); a pod that
/// serves no port of a Service with ports is left out; addresses are
/// grouped by the exact ports they serve.
pub fn subsets(svc: &Service, pods: &[Pod]) -> (Vec<EndpointSubset>, bool) {
    let Some(selector) = svc.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
        return (vec![], false);
    };
    let publish = publishes_not_ready(svc);
    let has_ports = !service_ports(svc).is_empty();
    // ports (as a sortable key) → (ports, ready, not ready)
    type Group = (
        Vec<EndpointPort>,
        Vec<EndpointAddress>,
        Vec<EndpointAddress>,
    );
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    for pod in pods {
        if !selects(selector, pod) || finished(pod) || (terminating(pod) && !publish) {
            continue;
        }
        let Some(ip) = pod_ip(pod) else { continue };
        let ports = endpoint_ports(svc, pod);
        if has_ports && ports.is_empty() {
            continue;
        }
        let address = EndpointAddress {
            ip: ip.to_string(),
            hostname: hostname(pod, svc),
            node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            target_ref: Some(pod_ref(pod)),
        };
        let key = ports
            .iter()
            .map(|p| {
                format!(
                    "{}/{}/{}",
                    p.name.as_deref().unwrap_or(""),
                    p.port,
                    p.protocol.as_deref().unwrap_or("")
                )
            })
            .collect::<Vec<_>>()
            .join(",");
        let g = groups.entry(key).or_insert_with(|| (ports, vec![], vec![]));
        if publish || ready(pod) {
            g.1.push(address);
        } else {
            g.2.push(address);
        }
    }
    let mut budget = MAX_ADDRESSES;
    let mut truncated = false;
    let mut out = Vec::new();
    for (_, (mut ports, mut ready, mut not_ready)) in groups {
        ports.sort_by(|a, b| (&a.name, a.port).cmp(&(&b.name, b.port)));
        ready.sort_by(|a, b| a.ip.cmp(&b.ip));
        not_ready.sort_by(|a, b| a.ip.cmp(&b.ip));
        // Ready addresses are kept first when the object is full.
        for list in [&mut ready, &mut not_ready] {
            if list.len() > budget {
                list.truncate(budget);
                truncated = true;
            }
            budget -= list.len();
        }
        if ready.is_empty() && not_ready.is_empty() {
            continue;
        }
        out.push(EndpointSubset {
            addresses: (!ready.is_empty()).then_some(ready),
            not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
            ports: (!ports.is_empty()).then_some(ports),
        });
    }
    (out, truncated)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    pub fn pod(name: &str, labels: serde_json::Value, ip: Option<&str>, ready: bool) -> Pod {
        let mut p = json!({"metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
                "labels": labels},
            "spec": {"nodeName": "node-1", "containers": [{"name": "c", "image": "i",
                "ports": [{"name": "http", "containerPort": 8080}]}]},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}});
        if let Some(ip) = ip {
            p["status"]["podIP"] = json!(ip);
        }
        serde_json::from_value(p).unwrap()
    }

    pub fn service(spec: serde_json::Value) -> Service {
        serde_json::from_value(json!({"metadata": {"name": "web", "namespace": "default", "uid": "svc-uid"}, "spec": spec}))
            .unwrap()
    }

    #[test]
    fn target_ports_resolve_by_number_or_container_port_name() {
        let p = pod("a", json!({}), Some("10.0.0.1"), true);
        let sp = |t: serde_json::Value| -> ServicePort {
            serde_json::from_value(json!({"port": 80, "targetPort": t})).unwrap()
        };
        assert_eq!(target_port(&sp(json!(9000)), &p), Some(9000));
        assert_eq!(target_port(&sp(json!("http")), &p), Some(8080));
        assert_eq!(target_port(&sp(json!("grpc")), &p), None);
        let plain: ServicePort = serde_json::from_value(json!({"port": 80})).unwrap();
        assert_eq!(target_port(&plain, &p), Some(80));
    }

    #[test]
    fn subsets_group_ready_and_not_ready_pods_by_their_ports() {
        let svc = service(json!({"selector": {"app": "web"},
            "ports": [{"name": "web", "port": 80, "targetPort": "http", "protocol": "TCP"}]}));
        let mut gone = pod("gone", json!({"app": "web"}), Some("10.0.0.9"), true);
        gone.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ));
        let mut done = pod("done", json!({"app": "web"}), Some("10.0.0.8"), false);
        done.status.as_mut().unwrap().phase = Some("Succeeded".into());
        let mut other_port = pod("odd", json!({"app": "web"}), Some("10.0.0.5"), true);
        other_port.spec.as_mut().unwrap().containers[0]
            .ports
            .as_mut()
            .unwrap()[0]
            .container_port = 9090;
        let mut unnamed = pod("unnamed", json!({"app": "web"}), Some("10.0.0.6"), true);
        unnamed.spec.as_mut().unwrap().containers[0].ports = None;
        let pods = vec![
            pod("b", json!({"app": "web"}), Some("10.0.0.2"), true),
            pod("a", json!({"app": "web"}), Some("10.0.0.1"), true),
            pod("slow", json!({"app": "web"}), Some("10.0.0.3"), false),
            pod("pending", json!({"app": "web"}), None, false),
            pod("db", json!({"app": "db"}), Some("10.0.0.4"), true),
            gone,
            done,
            other_port,
            unnamed,
        ];
        let (subsets, truncated) = subsets(&svc, &pods);
        assert!(!truncated);
        assert_eq!(subsets.len(), 2, "{subsets:?}");
        let ips = |a: &Option<Vec<EndpointAddress>>| -> Vec<String> {
            a.iter().flatten().map(|a| a.ip.clone()).collect()
        };
        assert_eq!(ips(&subsets[0].addresses), ["10.0.0.1", "10.0.0.2"]);
        assert_eq!(ips(&subsets[0].not_ready_addresses), ["10.0.0.3"]);
        assert_eq!(subsets[0].ports.as_ref().unwrap()[0].port, 8080);
        assert_eq!(
            subsets[0].ports.as_ref().unwrap()[0].name.as_deref(),
            Some("web")
        );
        assert_eq!(ips(&subsets[1].addresses), ["10.0.0.5"]);
        assert_eq!(subsets[1].ports.as_ref().unwrap()[0].port, 9090);
        let a = &subsets[0].addresses.as_ref().unwrap()[0];
        assert_eq!(a.node_name.as_deref(), Some("node-1"));
        assert_eq!(a.target_ref.as_ref().unwrap().name.as_deref(), Some("a"));
    }

    #[test]
    fn publishing_not_ready_addresses_and_headless_services() {
        let svc = service(json!({"selector": {"app": "db"}, "clusterIP": "None",
            "publishNotReadyAddresses": true}));
        let mut p = pod("db-0", json!({"app": "db"}), Some("10.0.0.7"), false);
        p.spec.as_mut().unwrap().hostname = Some("db-0".into());
        p.spec.as_mut().unwrap().subdomain = Some("web".into());
        let (subsets, _) = subsets(&svc, &[p]);
        let a = &subsets[0].addresses.as_ref().unwrap()[0];
        assert_eq!(
            (a.ip.as_str(), a.hostname.as_deref()),
            ("10.0.0.7", Some("db-0"))
        );
        assert!(subsets[0].ports.is_none() && subsets[0].not_ready_addresses.is_none());
        // No selector: not the controller's.
        assert!(!managed(&service(json!({"ports": [{"port": 80}]}))));
        assert!(!managed(&service(
            json!({"type": "ExternalName", "selector": {"a": "b"}})
        )));
    }

    #[test]
    fn endpoints_stop_at_a_thousand_addresses() {
        let svc = service(json!({"selector": {"app": "web"}, "ports": [{"port": 80}]}));
        let pods: Vec<Pod> = (0..1005)
            .map(|i| {
                pod(
                    &format!("p{i}"),
                    json!({"app": "web"}),
                    Some(&format!("10.1.{}.{}", i / 250, i % 250)),
                    i % 2 == 0,
                )
            })
            .collect();
        let (subsets, truncated) = subsets(&svc, &pods);
        assert!(truncated);
        let s = &subsets[0];
        let (r, n) = (
            s.addresses.as_ref().unwrap().len(),
            s.not_ready_addresses.as_ref().unwrap().len(),
        );
        assert_eq!((r, r + n), (503, MAX_ADDRESSES));
    }
}
