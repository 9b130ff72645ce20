//! The EndpointSlices a Service should have, and the writes that get
//! there from the slices it has: pure functions, table-tested.
//!
//! Endpoints are grouped by the exact ports they serve (a named
//! `targetPort` may resolve differently per pod); each group fills slices
//! of at most [`MAX_ENDPOINTS`]. As Kubernetes' reconciler does, an
//! endpoint stays in the slice it is in while it exists (so a change
//! rewrites one slice, not all), new endpoints fill slices with room
//! before new slices are made, slices left empty are deleted, and a
//! Service with no endpoints keeps one empty placeholder slice.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort};

use crate::endpoints::plan as pods;

/// Endpoints per slice (kube-controller-manager's default
/// `--max-endpoints-per-slice`).
pub const MAX_ENDPOINTS: usize = 100;

/// One endpoint of `pod` for `svc` with the ports it serves, or `None`
/// when the pod is not an endpoint (not selected, no IP, finished, or
/// serving none of the Service's ports).
pub fn endpoint(svc: &Service, pod: &Pod) -> Option<(Vec<EndpointPort>, Endpoint)> {
    let selector = svc.spec.as_ref()?.selector.as_ref()?;
    if !pods::selects(selector, pod) || pods::finished(pod) {
        return None;
    }
    let ip = pods::pod_ip(pod)?;
    let ports: Vec<EndpointPort> = pods::endpoint_ports(svc, pod)
        .into_iter()
        .map(|p| EndpointPort {
            name: Some(p.name.unwrap_or_default()),
            port: Some(p.port),
            protocol: p.protocol,
            app_protocol: p.app_protocol,
        })
        .collect();
    if !pods::service_ports(svc).is_empty() && ports.is_empty() {
        return None;
    }
    let publish = pods::publishes_not_ready(svc);
    let ready = publish || pods::ready(pod);
    let terminating = pods::terminating(pod);
    Some((
        ports,
        Endpoint {
            addresses: vec![ip.to_string()],
            conditions: Some(EndpointConditions {
                // Never ready while terminating, unless published regardless.
                ready: Some(publish || (ready && !terminating)),
                serving: Some(ready),
                terminating: Some(terminating),
            }),
            hostname: pods::hostname(pod, svc),
            node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            target_ref: Some(pods::pod_ref(pod)),
            ..Default::default()
        },
    ))
}

/// A slice the Service has now.
#[derive(Clone, Debug, PartialEq)]
pub struct Existing {
    pub name: String,
    pub ports: Vec<EndpointPort>,
    pub endpoints: Vec<Endpoint>,
}

/// The writes that make the slices match.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// Slices to rewrite: name, ports, endpoints.
    pub update: Vec<Existing>,
    /// New slices: ports and endpoints.
    pub create: Vec<(Vec<EndpointPort>, Vec<Endpoint>)>,
    /// Slices to delete, by name.
    pub delete: Vec<String>,
}

fn port_key(ports: &[EndpointPort]) -> String {
    let mut keys: Vec<String> = ports
        .iter()
        .map(|p| {
            format!(
                "{}/{}/{}",
                p.name.as_deref().unwrap_or(""),
                p.port.unwrap_or(0),
                p.protocol.as_deref().unwrap_or("TCP")
            )
        })
        .collect();
    keys.sort();
    keys.join(",")
}

fn address(e: &Endpoint) -> String {
    e.addresses.first().cloned().unwrap_or_default()
}

fn sorted(mut eps: Vec<Endpoint>) -> Vec<Endpoint> {
    eps.sort_by_key(address);
    eps
}

/// The writes from `existing` to the slices `desired` endpoints need, at
/// most `max` endpoints a slice.
pub fn plan(
    mut existing: Vec<Existing>,
    desired: Vec<(Vec<EndpointPort>, Endpoint)>,
    max: usize,
) -> Plan {
    existing.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out = Plan::default();
    if desired.is_empty() {
        // One empty placeholder slice, however many there were.
        let mut slices = existing.into_iter();
        match slices.next() {
            Some(first) => {
                if !first.endpoints.is_empty() || !first.ports.is_empty() {
                    out.update.push(Existing {
                        name: first.name,
                        ports: vec![],
                        endpoints: vec![],
                    });
                }
            }
            None => out.create.push((vec![], vec![])),
        }
        out.delete.extend(slices.map(|s| s.name));
        return out;
    }
    // port key → (ports, address → endpoint) still to place
    let mut groups: BTreeMap<String, (Vec<EndpointPort>, BTreeMap<String, Endpoint>)> =
        BTreeMap::new();
    for (ports, ep) in desired {
        let g = groups
            .entry(port_key(&ports))
            .or_insert_with(|| (ports, BTreeMap::new()));
        g.1.insert(address(&ep), ep);
    }
    // Existing slices keep the endpoints they have that still exist.
    let mut kept: Vec<(String, Existing, bool)> = Vec::new();
    for slice in existing {
        let key = port_key(&slice.ports);
        let Some((ports, left)) = groups.get_mut(&key) else {
            out.delete.push(slice.name);
            continue;
        };
        let eps: Vec<Endpoint> = slice
            .endpoints
            .iter()
            .filter_map(|e| left.remove(&address(e)))
            .collect();
        if eps.is_empty() {
            out.delete.push(slice.name);
            continue;
        }
        let eps = sorted(eps);
        let changed = eps != slice.endpoints || *ports != slice.ports;
        kept.push((
            key,
            Existing {
                name: slice.name,
                ports: ports.clone(),
                endpoints: eps,
            },
            changed,
        ));
    }
    // New endpoints fill the slices with room, then new slices.
    for (key, slice, changed) in &mut kept {
        let Some((_, left)) = groups.get_mut(key.as_str()) else {
            continue;
        };
        while slice.endpoints.len() < max {
            let Some((_, ep)) = left.pop_first() else {
                break;
            };
            slice.endpoints.push(ep);
            *changed = true;
        }
        slice.endpoints = sorted(std::mem::take(&mut slice.endpoints));
    }
    out.update.extend(
        kept.into_iter()
            .filter(|(_, _, changed)| *changed)
            .map(|(_, s, _)| s),
    );
    for (_, (ports, left)) in groups {
        let left: Vec<Endpoint> = left.into_values().collect();
        for chunk in left.chunks(max) {
            out.create.push((ports.clone(), chunk.to_vec()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoints::plan::tests::{pod, service};
    use serde_json::json;

    fn ep(ip: &str) -> Endpoint {
        Endpoint {
            addresses: vec![ip.into()],
            ..Default::default()
        }
    }

    fn port(n: i32) -> Vec<EndpointPort> {
        vec![EndpointPort {
            name: Some(String::new()),
            port: Some(n),
            protocol: Some("TCP".into()),
            app_protocol: None,
        }]
    }

    fn slice(name: &str, ports: Vec<EndpointPort>, ips: &[&str]) -> Existing {
        Existing {
            name: name.into(),
            ports,
            endpoints: ips.iter().map(|i| ep(i)).collect(),
        }
    }

    fn ips(eps: &[Endpoint]) -> Vec<String> {
        eps.iter().map(address).collect()
    }

    #[test]
    fn endpoint_conditions_follow_readiness_and_termination() {
        let svc = service(
            json!({"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http"}]}),
        );
        let (ports, e) = endpoint(
            &svc,
            &pod("a", json!({"app": "web"}), Some("10.0.0.1"), true),
        )
        .unwrap();
        assert_eq!(ports[0].port, Some(8080));
        let c = e.conditions.unwrap();
        assert_eq!(
            (c.ready, c.serving, c.terminating),
            (Some(true), Some(true), Some(false))
        );
        assert_eq!(e.node_name.as_deref(), Some("node-1"));
        let mut going = pod("b", json!({"app": "web"}), Some("10.0.0.2"), true);
        going.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ));
        let c = endpoint(&svc, &going).unwrap().1.conditions.unwrap();
        assert_eq!(
            (c.ready, c.serving, c.terminating),
            (Some(false), Some(true), Some(true))
        );
        let slow = pod("c", json!({"app": "web"}), Some("10.0.0.3"), false);
        let c = endpoint(&svc, &slow).unwrap().1.conditions.unwrap();
        assert_eq!((c.ready, c.serving), (Some(false), Some(false)));
        assert!(endpoint(&svc, &pod("d", json!({"app": "web"}), None, true)).is_none());
        assert!(
            endpoint(
                &svc,
                &pod("e", json!({"app": "db"}), Some("10.0.0.5"), true)
            )
            .is_none()
        );
    }

    #[test]
    fn slices_are_filled_kept_and_emptied_as_kubernetes_does() {
        struct Case {
            name: &'static str,
            existing: Vec<Existing>,
            desired: Vec<(Vec<EndpointPort>, Endpoint)>,
            max: usize,
            update: Vec<(&'static str, Vec<&'static str>)>,
            create: Vec<Vec<&'static str>>,
            delete: Vec<&'static str>,
        }
        let d = |n: i32, ips: &[&str]| -> Vec<(Vec<EndpointPort>, Endpoint)> {
            ips.iter().map(|i| (port(n), ep(i))).collect()
        };
        let cases = vec![
            Case {
                name: "nothing yet: a placeholder",
                existing: vec![],
                desired: vec![],
                max: 3,
                update: vec![],
                create: vec![vec![]],
                delete: vec![],
            },
            Case {
                name: "endpoints gone: one empty slice stays",
                existing: vec![
                    slice("s-a", port(80), &["1"]),
                    slice("s-b", port(80), &["2"]),
                ],
                desired: vec![],
                max: 3,
                update: vec![("s-a", vec![])],
                create: vec![],
                delete: vec!["s-b"],
            },
            Case {
                name: "seven endpoints: three slices of at most three",
                existing: vec![],
                desired: d(80, &["1", "2", "3", "4", "5", "6", "7"]),
                max: 3,
                update: vec![],
                create: vec![vec!["1", "2", "3"], vec!["4", "5", "6"], vec!["7"]],
                delete: vec![],
            },
            Case {
                name: "unchanged: no writes",
                existing: vec![slice("s-a", port(80), &["1", "2"])],
                desired: d(80, &["2", "1"]),
                max: 3,
                update: vec![],
                create: vec![],
                delete: vec![],
            },
            Case {
                name: "a new endpoint fills the slice with room",
                existing: vec![
                    slice("s-a", port(80), &["1", "2", "3"]),
                    slice("s-b", port(80), &["4"]),
                ],
                desired: d(80, &["1", "2", "3", "4", "5"]),
                max: 3,
                update: vec![("s-b", vec!["4", "5"])],
                create: vec![],
                delete: vec![],
            },
            Case {
                name: "an endpoint gone rewrites only its slice; an emptied slice goes",
                existing: vec![
                    slice("s-a", port(80), &["1", "2"]),
                    slice("s-b", port(80), &["3"]),
                ],
                desired: d(80, &["1"]),
                max: 3,
                update: vec![("s-a", vec!["1"])],
                create: vec![],
                delete: vec!["s-b"],
            },
            Case {
                name: "ports changed: old slices go, new ones come",
                existing: vec![slice("s-a", port(80), &["1"])],
                desired: d(8080, &["1"]),
                max: 3,
                update: vec![],
                create: vec![vec!["1"]],
                delete: vec!["s-a"],
            },
        ];
        for c in cases {
            let p = plan(c.existing, c.desired, c.max);
            let update: Vec<(String, Vec<String>)> = p
                .update
                .iter()
                .map(|s| (s.name.clone(), ips(&s.endpoints)))
                .collect();
            let want: Vec<(String, Vec<String>)> = c
                .update
                .iter()
                .map(|(n, i)| (n.to_string(), i.iter().map(|s| s.to_string()).collect()))
                .collect();
            assert_eq!(update, want, "{}: update", c.name);
            let create: Vec<Vec<String>> = p.create.iter().map(|(_, e)| ips(e)).collect();
            assert_eq!(create, c.create, "{}: create", c.name);
            assert_eq!(p.delete, c.delete, "{}: delete", c.name);
        }
    }
}
