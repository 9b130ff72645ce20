//! Table tests of whole scheduling decisions: which node a pod goes to, or
//! the FailedScheduling message it gets, for a cluster given as nodes and
//! placed pods.

use std::time::Instant;

use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{Value, json};

use super::*;
use crate::scheduler::cache::{Cache, PodInfo};
use crate::scheduler::testutil::{Volumes, claim, class, local_volume, node, pod, with_claims};

/// A cluster: nodes and (pod, node) placements, some only assumed.
fn cache(nodes: Vec<Node>, placed: Vec<(Pod, &str)>) -> Cache {
    let mut c = Cache::default();
    for n in nodes {
        c.set_node(n);
    }
    for (p, n) in placed {
        c.add_pod(PodInfo::of(&p, n));
    }
    c
}

fn decide(c: &Cache, p: &Pod, vols: &Volumes) -> Result<String, String> {
    let mut start = 0;
    schedule(p, c, vols, &[], &mut start)
        .map(|d| d.node)
        .map_err(|f| f.message())
}

fn three_nodes() -> Vec<Node> {
    vec![
        node("n1", "4", "8Gi", &[("zone", "a")], json!({})),
        node("n2", "4", "8Gi", &[("zone", "b")], json!({})),
        node(
            "n3",
            "2",
            "4Gi",
            &[("zone", "b"), ("disk", "ssd")],
            json!({}),
        ),
    ]
}

fn tainted(name: &str, key: &str, value: &str, effect: &str) -> Node {
    node(
        name,
        "4",
        "8Gi",
        &[],
        json!({"spec": {"taints": [{"key": key, "value": value, "effect": effect}]}}),
    )
}

fn anti_affinity(app: &str, key: &str) -> Value {
    json!({
        "metadata": {"labels": {"app": app}},
        "spec": {"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": key}
        ]}}}
    })
}

fn host_port(port: i32) -> Value {
    json!({"spec": {"containers": [{"name": "c", "ports": [{"containerPort": 80, "hostPort": port}]}]}})
}

/// (case, nodes, placed pods and their nodes, the pod, where it goes or its message)
type Case = (
    &'static str,
    Vec<Node>,
    Vec<(Pod, &'static str)>,
    Pod,
    Result<&'static str, &'static str>,
);

#[test]
fn decisions() {
    let no_vols = Volumes::default();
    let big = |name: &str| pod(name, "3", "1Gi", json!({}));
    // (case, nodes, placed, pod, want)
    let cases: Vec<Case> = vec![
        (
            "no nodes",
            vec![],
            vec![],
            pod("p", "", "", json!({})),
            Err("no nodes available to schedule pods"),
        ),
        (
            "least allocated: the emptier node wins",
            three_nodes(),
            vec![(pod("x", "2", "1Gi", json!({})), "n1")],
            pod("p", "500m", "512Mi", json!({})),
            Ok("n2"),
        ),
        (
            "requests beyond what is left",
            three_nodes(),
            vec![(big("x"), "n1"), (big("y"), "n2")],
            big("p"),
            Err(
                "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod..",
            ),
        ),
        (
            "every shortfall is counted",
            vec![node("n1", "1", "1Gi", &[], json!({}))],
            vec![],
            pod("p", "2", "2Gi", json!({})),
            Err(
                "0/1 nodes are available: 1 Insufficient cpu, 1 Insufficient memory. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod..",
            ),
        ),
        (
            "extended resources a node lacks",
            vec![node("n1", "4", "8Gi", &[], json!({}))],
            vec![],
            pod(
                "p",
                "",
                "",
                json!({"spec": {"containers": [{"name": "c", "resources": {"limits": {"example.com/gpu": "1"}}}]}}),
            ),
            Err(
                "0/1 nodes are available: 1 Insufficient example.com/gpu. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod..",
            ),
        ),
        (
            "pods allocatable",
            vec![node(
                "n1",
                "4",
                "8Gi",
                &[],
                json!({"status": {"allocatable": {"pods": "1"}}}),
            )],
            vec![(pod("x", "", "", json!({})), "n1")],
            pod("p", "", "", json!({})),
            Err(
                "0/1 nodes are available: 1 Too many pods. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod..",
            ),
        ),
        (
            "nodeSelector",
            three_nodes(),
            vec![],
            pod(
                "p",
                "",
                "",
                json!({"spec": {"nodeSelector": {"disk": "ssd"}}}),
            ),
            Ok("n3"),
        ),
        (
            "nodeSelector matching nothing",
            three_nodes(),
            vec![],
            pod(
                "p",
                "",
                "",
                json!({"spec": {"nodeSelector": {"disk": "hdd"}}}),
            ),
            Err(
                "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling..",
            ),
        ),
        (
            "required node affinity NotIn",
            three_nodes(),
            vec![(pod("x", "1", "", json!({})), "n2")],
            pod(
                "p",
                "",
                "",
                json!({"spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}, {"key": "disk", "operator": "DoesNotExist"}]}
                ]}}}}}),
            ),
            Ok("n2"),
        ),
        (
            "required node affinity by name",
            three_nodes(),
            vec![],
            pod(
                "p",
                "",
                "",
                json!({"spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                    {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n3"]}]}
                ]}}}}}),
            ),
            Ok("n3"),
        ),
        (
            "taints and a cordon, worded and sorted as kube-scheduler",
            vec![
                tainted("n1", "dedicated", "gpu", "NoSchedule"),
                node("n2", "1", "1Gi", &[], json!({})),
                node("n3", "1", "1Gi", &[], json!({})),
                node(
                    "n4",
                    "4",
                    "8Gi",
                    &[],
                    json!({"spec": {"unschedulable": true}}),
                ),
            ],
            vec![],
            pod("p", "2", "", json!({})),
            Err(
                "0/4 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, 1 node(s) were unschedulable, 2 Insufficient cpu. preemption: 0/4 nodes are available: 2 No preemption victims found for incoming pod, 2 Preemption is not helpful for scheduling..",
            ),
        ),
        (
            "a tolerated taint",
            vec![tainted("n1", "dedicated", "gpu", "NoSchedule")],
            vec![],
            pod(
                "p",
                "",
                "",
                json!({"spec": {"tolerations": [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]}}),
            ),
            Ok("n1"),
        ),
        (
            "a toleration of another value",
            vec![tainted("n1", "dedicated", "gpu", "NoExecute")],
            vec![],
            pod(
                "p",
                "",
                "",
                json!({"spec": {"tolerations": [{"key": "dedicated", "value": "db"}]}}),
            ),
            Err(
                "0/1 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling..",
            ),
        ),
        (
            "PreferNoSchedule does not filter",
            vec![tainted("n1", "soft", "", "PreferNoSchedule")],
            vec![],
            pod("p", "", "", json!({})),
            Ok("n1"),
        ),
        (
            "Exists with no key tolerates everything",
            vec![tainted("n1", "a", "b", "NoExecute")],
            vec![],
            pod(
                "p",
                "",
                "",
                json!({"spec": {"tolerations": [{"operator": "Exists"}]}}),
            ),
            Ok("n1"),
        ),
        (
            "a node that is not Ready counts as tainted not-ready",
            vec![
                node(
                    "n1",
                    "4",
                    "8Gi",
                    &[],
                    json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}}),
                ),
                node(
                    "n2",
                    "4",
                    "8Gi",
                    &[],
                    json!({"status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}}),
                ),
            ],
            vec![],
            pod("p", "", "", json!({})),
            Err(
                "0/2 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }, 1 node(s) had untolerated taint {node.kubernetes.io/unreachable: }. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling..",
            ),
        ),
        (
            "a cordoned node takes pods tolerating it",
            vec![node(
                "n1",
                "4",
                "8Gi",
                &[],
                json!({"spec": {"unschedulable": true}}),
            )],
            vec![],
            pod(
                "p",
                "",
                "",
                json!({"spec": {"tolerations": [{"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]}}),
            ),
            Ok("n1"),
        ),
        (
            "host ports",
            vec![
                node("n1", "4", "8Gi", &[], json!({})),
                node("n2", "1", "1Gi", &[], json!({})),
            ],
            vec![(pod("x", "", "", host_port(8080)), "n1")],
            pod("p", "", "", host_port(8080)),
            Ok("n2"),
        ),
        (
            "host ports taken everywhere",
            vec![node("n1", "4", "8Gi", &[], json!({}))],
            vec![(pod("x", "", "", host_port(8080)), "n1")],
            pod("p", "", "", host_port(8080)),
            Err(
                "0/1 nodes are available: 1 node(s) didn't have free ports for the requested pod ports. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod..",
            ),
        ),
        (
            "anti-affinity by hostname",
            three_nodes(),
            vec![
                (
                    pod("w1", "", "", anti_affinity("web", "kubernetes.io/hostname")),
                    "n1",
                ),
                (
                    pod("w2", "", "", anti_affinity("web", "kubernetes.io/hostname")),
                    "n2",
                ),
            ],
            pod("p", "", "", anti_affinity("web", "kubernetes.io/hostname")),
            Ok("n3"),
        ),
        (
            "anti-affinity with no room left",
            vec![
                node("n1", "4", "8Gi", &[], json!({})),
                node("n2", "4", "8Gi", &[], json!({})),
            ],
            vec![
                (
                    pod("w1", "", "", anti_affinity("web", "kubernetes.io/hostname")),
                    "n1",
                ),
                (
                    pod("w2", "", "", anti_affinity("web", "kubernetes.io/hostname")),
                    "n2",
                ),
            ],
            pod("p", "", "", anti_affinity("web", "kubernetes.io/hostname")),
            Err(
                "0/2 nodes are available: 2 node(s) didn't satisfy existing pods anti-affinity rules. preemption: 0/2 nodes are available: 2 No preemption victims found for incoming pod..",
            ),
        ),
        (
            "anti-affinity of the new pod only",
            vec![
                node("n1", "4", "8Gi", &[], json!({})),
                node("n2", "4", "8Gi", &[], json!({})),
            ],
            vec![(
                pod("db", "", "", json!({"metadata": {"labels": {"app": "db"}}})),
                "n1",
            )],
            pod(
                "p",
                "",
                "",
                json!({"spec": {"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                    {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "kubernetes.io/hostname"}
                ]}}}}),
            ),
            Ok("n2"),
        ),
        (
            "anti-affinity by zone",
            three_nodes(),
            vec![(pod("w1", "", "", anti_affinity("web", "zone")), "n2")],
            pod("p", "", "", anti_affinity("web", "zone")),
            Ok("n1"),
        ),
        (
            "existing pods' anti-affinity repels only pods it selects",
            vec![
                node("n1", "1", "8Gi", &[], json!({})),
                node("n2", "4", "8Gi", &[], json!({})),
            ],
            vec![(
                pod("w1", "", "", anti_affinity("web", "kubernetes.io/hostname")),
                "n2",
            )],
            pod("p", "", "", json!({"metadata": {"labels": {"app": "api"}}})),
            Ok("n2"),
        ),
        (
            "pod affinity follows the selected pod",
            three_nodes(),
            vec![(
                pod("db", "", "", json!({"metadata": {"labels": {"app": "db"}}})),
                "n3",
            )],
            pod(
                "p",
                "",
                "",
                json!({"spec": {"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                    {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "kubernetes.io/hostname"}
                ]}}}}),
            ),
            Ok("n3"),
        ),
        (
            "pod affinity with no such pod",
            vec![node("n1", "4", "8Gi", &[], json!({}))],
            vec![],
            pod(
                "p",
                "",
                "",
                json!({"spec": {"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                    {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "kubernetes.io/hostname"}
                ]}}}}),
            ),
            Err(
                "0/1 nodes are available: 1 node(s) didn't match pod affinity rules. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling..",
            ),
        ),
        (
            "preferred node affinity outweighs a little more room",
            vec![
                node("n1", "4", "8Gi", &[], json!({})),
                node("n2", "4", "8Gi", &[("disk", "ssd")], json!({})),
            ],
            vec![(pod("x", "500m", "", json!({})), "n2")],
            pod(
                "p",
                "",
                "",
                json!({"spec": {"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                    {"weight": 50, "preference": {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}}
                ]}}}}),
            ),
            Ok("n2"),
        ),
        (
            "a PreferNoSchedule taint is avoided, not refused",
            vec![
                tainted("n1", "soft", "", "PreferNoSchedule"),
                node("n2", "4", "8Gi", &[], json!({})),
            ],
            vec![(pod("x", "500m", "", json!({})), "n2")],
            pod("p", "", "", json!({})),
            Ok("n2"),
        ),
        (
            "a tolerated PreferNoSchedule taint is not avoided",
            vec![
                tainted("n1", "soft", "", "PreferNoSchedule"),
                node("n2", "4", "8Gi", &[], json!({})),
            ],
            vec![(pod("x", "500m", "", json!({})), "n2")],
            pod(
                "p",
                "",
                "",
                json!({"spec": {"tolerations": [{"key": "soft", "operator": "Exists"}]}}),
            ),
            Ok("n1"),
        ),
        (
            "the first pod of a self-affine group goes anywhere",
            vec![node("n1", "4", "8Gi", &[], json!({}))],
            vec![],
            pod(
                "p",
                "",
                "",
                json!({"metadata": {"labels": {"app": "db"}}, "spec": {"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                    {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "kubernetes.io/hostname"}
                ]}}}}),
            ),
            Ok("n1"),
        ),
    ];
    for (name, nodes, placed, p, want) in cases {
        let c = cache(nodes, placed);
        let got = decide(&c, &p, &no_vols);
        assert_eq!(
            got.as_ref().map(String::as_str).map_err(String::as_str),
            want,
            "case: {name}"
        );
    }
}

#[test]
fn assumed_pods_take_room_before_the_watch_confirms_them() {
    let mut c = cache(vec![node("n1", "2", "4Gi", &[], json!({}))], vec![]);
    let vols = Volumes::default();
    let p1 = pod("p1", "1500m", "", json!({}));
    assert_eq!(decide(&c, &p1, &vols), Ok("n1".into()));
    c.assume(PodInfo::of(&p1, "n1"), Instant::now());
    let p2 = pod("p2", "1", "", json!({}));
    assert!(
        decide(&c, &p2, &vols)
            .unwrap_err()
            .contains("1 Insufficient cpu")
    );
    // The binding failed: the room is free again.
    c.forget(&("ns".into(), "p1".into()));
    assert_eq!(decide(&c, &p2, &vols), Ok("n1".into()));
}

#[test]
fn pods_spread_over_equal_nodes() {
    let mut c = cache(three_nodes(), vec![]);
    let vols = Volumes::default();
    let mut start = 0;
    let mut counts = std::collections::BTreeMap::new();
    for i in 0..9 {
        let p = pod(&format!("p{i}"), "100m", "100Mi", json!({}));
        let d = schedule(&p, &c, &vols, &[], &mut start).unwrap();
        c.assume(PodInfo::of(&p, &d.node), Instant::now());
        *counts.entry(d.node).or_insert(0) += 1;
    }
    // The smaller n3 fills up faster by share, so it gets fewer.
    assert_eq!(counts.len(), 3, "{counts:?}");
    assert!(counts["n3"] < counts["n1"], "{counts:?}");
}

#[test]
fn only_a_share_of_large_clusters_is_filtered() {
    assert_eq!(feasible_to_find(50), 50);
    assert_eq!(feasible_to_find(100), 100);
    assert_eq!(feasible_to_find(1000), 420);
    assert_eq!(feasible_to_find(5000), 500);
    assert_eq!(feasible_to_find(100_000), 5000);
    let nodes: Vec<Node> = (0..1000)
        .map(|i| node(&format!("n{i:04}"), "4", "8Gi", &[], json!({})))
        .collect();
    let c = cache(nodes, vec![]);
    let mut start = 990;
    let d = schedule(
        &pod("p", "", "", json!({})),
        &c,
        &Volumes::default(),
        &[],
        &mut start,
    )
    .unwrap();
    assert_eq!((d.evaluated, d.feasible), (420, 420));
    assert_eq!(start, (990 + 420) % 1000);
}

#[test]
fn volume_topology() {
    let nodes = || {
        vec![
            node("n1", "4", "8Gi", &[], json!({})),
            node("n2", "4", "8Gi", &[], json!({})),
            node("n3", "4", "8Gi", &[], json!({})),
        ]
    };
    let wffc = || {
        vec![
            class("local", "WaitForFirstConsumer"),
            class("fast", "Immediate"),
        ]
    };
    let mut bound_pv = (*local_volume("pv-bound", "1Gi", "local", "n2")).clone();
    bound_pv.status.as_mut().unwrap().phase = Some("Bound".into());
    let cases: Vec<(&str, Volumes, Pod, Result<&str, &str>)> = vec![
        (
            "a bound claim's local volume pins the pod",
            Volumes {
                claims: vec![claim("data", "1Gi", "local", Some("pv-bound"))],
                volumes: vec![std::sync::Arc::new(bound_pv.clone())],
                classes: wffc(),
                ..Default::default()
            },
            pod("p", "", "", with_claims(&["data"])),
            Ok("n2"),
        ),
        (
            "a waiting claim goes where a volume fits",
            Volumes {
                claims: vec![claim("data", "5Gi", "local", None)],
                volumes: vec![
                    local_volume("small-n1", "1Gi", "local", "n1"),
                    local_volume("big-n3", "10Gi", "local", "n3"),
                ],
                classes: wffc(),
                ..Default::default()
            },
            pod("p", "", "", with_claims(&["data"])),
            Ok("n3"),
        ),
        (
            "two claims need two volumes on one node",
            Volumes {
                claims: vec![
                    claim("a", "1Gi", "local", None),
                    claim("b", "1Gi", "local", None),
                ],
                volumes: vec![
                    local_volume("n1-a", "1Gi", "local", "n1"),
                    local_volume("n2-a", "1Gi", "local", "n2"),
                    local_volume("n2-b", "2Gi", "local", "n2"),
                ],
                classes: wffc(),
                ..Default::default()
            },
            pod("p", "", "", with_claims(&["a", "b"])),
            Ok("n2"),
        ),
        (
            "a volume reserved for another claim is not free",
            Volumes {
                claims: vec![claim("data", "1Gi", "local", None)],
                volumes: vec![local_volume("only", "1Gi", "local", "n1")],
                classes: wffc(),
                reserved: [("only".to_string(), ("ns".to_string(), "other".to_string()))].into(),
            },
            pod("p", "", "", with_claims(&["data"])),
            Err(
                "0/3 nodes are available: 3 node(s) didn't find available persistent volumes to bind. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling..",
            ),
        ),
        (
            "a missing claim",
            Volumes::default(),
            pod("p", "", "", with_claims(&["nope"])),
            Err(
                "0/3 nodes are available: persistentvolumeclaim \"nope\" not found. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod..",
            ),
        ),
        (
            "an unbound Immediate claim waits for the binder",
            Volumes {
                claims: vec![claim("data", "1Gi", "fast", None)],
                classes: wffc(),
                ..Default::default()
            },
            pod("p", "", "", with_claims(&["data"])),
            Err(
                "0/3 nodes are available: pod has unbound immediate PersistentVolumeClaims. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod..",
            ),
        ),
        (
            "a bound volume on a node the pod cannot use",
            Volumes {
                claims: vec![claim("data", "1Gi", "local", Some("pv-bound"))],
                volumes: vec![std::sync::Arc::new(bound_pv.clone())],
                classes: wffc(),
                ..Default::default()
            },
            pod(
                "p",
                "",
                "",
                json!({"spec": {"nodeSelector": {"kubernetes.io/hostname": "n1"}, "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]}}),
            ),
            Err(
                "0/3 nodes are available: 1 node(s) had volume node affinity conflict, 2 node(s) didn't match Pod's node affinity/selector. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling..",
            ),
        ),
    ];
    for (name, vols, p, want) in cases {
        let c = cache(nodes(), vec![]);
        let got = decide(&c, &p, &vols);
        assert_eq!(
            got.as_ref().map(String::as_str).map_err(String::as_str),
            want,
            "case: {name}"
        );
    }
    // The decision carries the reservation: the smallest fitting volume.
    let vols = Volumes {
        claims: vec![claim("data", "1Gi", "local", None)],
        volumes: vec![
            local_volume("n1-big", "10Gi", "local", "n1"),
            local_volume("n1-small", "2Gi", "local", "n1"),
        ],
        classes: wffc(),
        ..Default::default()
    };
    let c = cache(vec![node("n1", "4", "8Gi", &[], json!({}))], vec![]);
    let d = schedule(
        &pod("p", "", "", with_claims(&["data"])),
        &c,
        &vols,
        &[],
        &mut 0,
    )
    .unwrap();
    assert_eq!(d.reservation.len(), 1);
    assert_eq!(d.reservation[0].1, "n1-small");
}
