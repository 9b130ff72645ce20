//! The scheduler and the PV binder end to end, in a real `keel server`
//! (its built-in controller manager) driven by kubectl: pods placed by
//! resources, taints and tolerations, nodeSelector, node affinity and pod
//! anti-affinity; a pod that fits nowhere marked Unschedulable with
//! kube-scheduler's FailedScheduling message, then placed when a node
//! that fits joins; a WaitForFirstConsumer claim bound to the local volume
//! of the node its pod lands on; an Immediate claim bound at once, and
//! volumes released and reclaimed when their claims go.
//!
//! Most nodes here are Node objects with a Ready status written through
//! kubectl, so that the cluster is exactly what each case needs; one test
//! runs on hollow nodes (`keel hollow-nodes`), which run what is bound to
//! them and confirm deletions as a kubelet does.

use std::time::Duration;

use keel_tests::hollow::HollowNodes;
use keel_tests::server::{KeelServer, output_with_stdin};
use keel_tests::wait_until;
use serde_json::{Value, json};

/// Long enough on a loaded two-core machine.
const SETTLE: Duration = Duration::from_secs(60);

fn create(s: &KeelServer, objects: Vec<Value>) {
    let list = json!({"apiVersion": "v1", "kind": "List", "items": objects}).to_string();
    let out = output_with_stdin(s.admin(&["create", "-f", "-"]), list.as_bytes());
    assert!(
        out.status.success(),
        "kubectl create: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn get(s: &KeelServer, args: &[&str]) -> Option<Value> {
    let mut a = vec!["get"];
    a.extend_from_slice(args);
    a.extend_from_slice(&["-o", "json"]);
    let out = s.admin(&a).output().unwrap();
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).unwrap())
}

fn kubectl_ok(s: &KeelServer, args: &[&str]) {
    let out = s.admin(args).output().unwrap();
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A Ready node with `cpu` and 8Gi allocatable, its hostname label and
/// `labels`, and `taints`.
fn add_node(s: &KeelServer, name: &str, cpu: &str, labels: Value, taints: Value) {
    let mut l = json!({"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"});
    for (k, v) in labels.as_object().unwrap() {
        l[k] = v.clone();
    }
    create(
        s,
        vec![json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": l},
            "spec": {"taints": taints},
        })],
    );
    let status = json!({"status": {
        "capacity": {"cpu": cpu, "memory": "8Gi", "pods": "110"},
        "allocatable": {"cpu": cpu, "memory": "8Gi", "pods": "110"},
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                         "message": "kubelet is posting ready status"}],
    }})
    .to_string();
    kubectl_ok(
        s,
        &[
            "patch",
            "node",
            name,
            "--subresource=status",
            "--type=merge",
            "-p",
            &status,
        ],
    );
}

/// A pod of one container requesting `cpu`, with `spec` merged in.
fn pod(name: &str, cpu: &str, labels: Value, spec: Value) -> Value {
    let mut p = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": labels},
        "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.9",
                                  "resources": {"requests": {"cpu": cpu}}}]},
    });
    for (k, v) in spec.as_object().unwrap() {
        p["spec"][k] = v.clone();
    }
    p
}

/// The node the pod is bound to, once it is.
fn node_of(s: &KeelServer, pod: &str) -> String {
    wait_until(&format!("pod {pod} bound"), SETTLE, || {
        get(s, &["pod", pod])?["spec"]["nodeName"]
            .as_str()
            .map(str::to_string)
    })
}

/// Events about `name` with `reason`.
fn events(s: &KeelServer, name: &str, reason: &str) -> Vec<Value> {
    get(s, &["events", "-n", "default"])
        .map(|l| {
            l["items"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|e| e["involvedObject"]["name"] == name && e["reason"] == reason)
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn pods_are_placed_by_resources_taints_and_affinity_and_the_unplaceable_are_told_why() {
    let s = KeelServer::start(&[]);
    add_node(&s, "n1", "2", json!({"zone": "a"}), json!([]));
    add_node(
        &s,
        "n2",
        "4",
        json!({"zone": "b"}),
        json!([{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]),
    );
    add_node(
        &s,
        "n3",
        "1",
        json!({"zone": "c", "disk": "ssd"}),
        json!([]),
    );

    let anti = json!({"affinity": {
        "podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}
        ]},
        "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["b"]}]}
        ]}},
    }});
    create(
        &s,
        vec![
            // Only n2 has 3 CPUs free, and only a pod tolerating its taint goes there.
            pod(
                "big",
                "3",
                json!({}),
                json!({"tolerations": [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]}),
            ),
            pod(
                "ssd",
                "100m",
                json!({}),
                json!({"nodeSelector": {"disk": "ssd"}}),
            ),
            pod(
                "zone-a",
                "100m",
                json!({}),
                json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}
                ]}}}}),
            ),
            pod("web-1", "100m", json!({"app": "web"}), anti.clone()),
            pod("web-2", "100m", json!({"app": "web"}), anti.clone()),
            // Fits nowhere: two nodes too small, the big one tainted.
            pod("huge", "8", json!({}), json!({})),
        ],
    );
    assert_eq!(node_of(&s, "big"), "n2");
    assert_eq!(node_of(&s, "ssd"), "n3");
    assert_eq!(node_of(&s, "zone-a"), "n1");
    let (w1, w2) = (node_of(&s, "web-1"), node_of(&s, "web-2"));
    assert_ne!(w1, w2, "anti-affinity by hostname");
    assert!(w1 != "n2" && w2 != "n2", "node affinity NotIn zone b");
    let scheduled = wait_until("the Scheduled event", SETTLE, || {
        events(&s, "big", "Scheduled").pop()
    });
    assert_eq!(
        scheduled["message"],
        "Successfully assigned default/big to n2"
    );
    assert_eq!(scheduled["source"]["component"], "default-scheduler");
    let bound = get(&s, &["pod", "big"]).unwrap();
    let cond = bound["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "PodScheduled")
        .cloned()
        .unwrap();
    assert_eq!(cond["status"], "True");

    // The pod that fits nowhere: its condition and its event.
    let want = "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, \
                2 Insufficient cpu. preemption: 0/3 nodes are available: \
                1 Preemption is not helpful for scheduling, \
                2 No preemption victims found for incoming pod..";
    let cond = wait_until("huge marked Unschedulable", SETTLE, || {
        get(&s, &["pod", "huge"])?["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == "PodScheduled" && c["reason"] == "Unschedulable")
            .cloned()
    });
    assert_eq!(cond["status"], "False");
    assert_eq!(cond["message"], want);
    let ev = wait_until("FailedScheduling", SETTLE, || {
        events(&s, "huge", "FailedScheduling").pop()
    });
    assert_eq!(ev["type"], "Warning");
    assert_eq!(ev["message"], want);
    let describe = s.admin(&["describe", "pod", "huge"]).output().unwrap();
    let describe = String::from_utf8_lossy(&describe.stdout);
    assert!(
        describe.contains("FailedScheduling") && describe.contains("default-scheduler"),
        "{describe}"
    );
    assert!(get(&s, &["pod", "huge"]).unwrap()["spec"]["nodeName"].is_null());

    // A node that fits joins: the waiting pod is placed without being touched.
    add_node(&s, "n4", "16", json!({}), json!([]));
    assert_eq!(node_of(&s, "huge"), "n4");
    let cond = wait_until("huge scheduled", SETTLE, || {
        get(&s, &["pod", "huge"])?["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == "PodScheduled" && c["status"] == "True")
            .cloned()
    });
    assert!(cond.get("reason").is_none(), "{cond}");

    // Freed room is reused: deleting big lets another 3-CPU tolerating pod onto n2.
    kubectl_ok(&s, &["delete", "pod", "big", "--grace-period=0", "--force"]);
    create(
        &s,
        vec![pod(
            "big-again",
            "3",
            json!({}),
            json!({"tolerations": [{"key": "dedicated", "operator": "Exists"}],
                   "nodeSelector": {"zone": "b"}}),
        )],
    );
    assert_eq!(node_of(&s, "big-again"), "n2");
}

/// A local volume of `size` on `node`, of `class`, with `policy`.
fn local_pv(name: &str, size: &str, class: &str, node: &str, policy: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": name},
        "spec": {
            "capacity": {"storage": size},
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": class,
            "persistentVolumeReclaimPolicy": policy,
            "local": {"path": format!("/mnt/{name}")},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}
            ]}]}},
        },
    })
}

fn pvc(name: &str, size: &str, class: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": class,
            "resources": {"requests": {"storage": size}},
        },
    })
}

fn phase(s: &KeelServer, what: &[&str]) -> Option<String> {
    get(s, what)?["status"]["phase"]
        .as_str()
        .map(str::to_string)
}

#[test]
fn wait_for_first_consumer_claims_bind_the_local_volume_where_the_pod_lands() {
    let s = KeelServer::start(&[]);
    add_node(&s, "n1", "4", json!({}), json!([]));
    add_node(&s, "n2", "4", json!({}), json!([]));
    create(
        &s,
        vec![
            json!({
                "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                "metadata": {"name": "local"},
                "provisioner": "kubernetes.io/no-provisioner",
                "volumeBindingMode": "WaitForFirstConsumer",
            }),
            local_pv("pv-n1", "1Gi", "local", "n1", "Retain"),
            local_pv("pv-n2", "5Gi", "local", "n2", "Retain"),
            pvc("data", "2Gi", "local"),
        ],
    );
    // Volumes become Available; the claim waits for its first consumer.
    wait_until("volumes Available", SETTLE, || {
        (phase(&s, &["pv", "pv-n1"])? == "Available" && phase(&s, &["pv", "pv-n2"])? == "Available")
            .then_some(())
    });
    let ev = wait_until("WaitForFirstConsumer", SETTLE, || {
        events(&s, "data", "WaitForFirstConsumer").pop()
    });
    assert_eq!(
        ev["message"],
        "waiting for first consumer to be created before binding"
    );
    assert!(get(&s, &["pvc", "data"]).unwrap()["spec"]["volumeName"].is_null());

    // Only pv-n2 is big enough: the pod goes to n2 and the claim binds it.
    create(
        &s,
        vec![pod(
            "db",
            "100m",
            json!({}),
            json!({"volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]}),
        )],
    );
    assert_eq!(node_of(&s, "db"), "n2");
    let claim = wait_until("data Bound", SETTLE, || {
        let c = get(&s, &["pvc", "data"])?;
        (c["status"]["phase"] == "Bound").then_some(c)
    });
    assert_eq!(claim["spec"]["volumeName"], "pv-n2");
    let a = &claim["metadata"]["annotations"];
    assert_eq!(a["volume.kubernetes.io/selected-node"], "n2");
    assert_eq!(a["pv.kubernetes.io/bind-completed"], "yes");
    assert_eq!(a["pv.kubernetes.io/bound-by-controller"], "yes");
    assert_eq!(claim["status"]["capacity"]["storage"], "5Gi");
    let pv = wait_until("pv-n2 Bound", SETTLE, || {
        let v = get(&s, &["pv", "pv-n2"])?;
        (v["status"]["phase"] == "Bound").then_some(v)
    });
    assert_eq!(pv["spec"]["claimRef"]["name"], "data");
    assert_eq!(pv["spec"]["claimRef"]["uid"], claim["metadata"]["uid"]);
    assert_eq!(phase(&s, &["pv", "pv-n1"]).as_deref(), Some("Available"));

    // A second claim too big for what is left: its pod cannot be placed.
    create(
        &s,
        vec![
            pvc("more", "2Gi", "local"),
            pod(
                "db2",
                "100m",
                json!({}),
                json!({"volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "more"}}]}),
            ),
        ],
    );
    let ev = wait_until("db2 FailedScheduling", SETTLE, || {
        events(&s, "db2", "FailedScheduling").pop()
    });
    assert_eq!(
        ev["message"],
        "0/2 nodes are available: 2 node(s) didn't find available persistent volumes to bind. \
         preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling.."
    );

    // Immediate binding without a class, then reclaim Delete.
    create(
        &s,
        vec![
            json!({
                "apiVersion": "v1", "kind": "PersistentVolume",
                "metadata": {"name": "pv-imm"},
                "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                         "storageClassName": "", "persistentVolumeReclaimPolicy": "Delete",
                         "hostPath": {"path": "/tmp/imm"}},
            }),
            pvc("imm", "1Gi", ""),
        ],
    );
    wait_until("imm Bound", SETTLE, || {
        let c = get(&s, &["pvc", "imm"])?;
        (c["status"]["phase"] == "Bound" && c["spec"]["volumeName"] == "pv-imm").then_some(())
    });
    wait_until("pv-imm Bound", SETTLE, || {
        (phase(&s, &["pv", "pv-imm"])? == "Bound").then_some(())
    });
    kubectl_ok(&s, &["delete", "pvc", "imm"]);
    wait_until("pv-imm deleted (reclaim Delete)", SETTLE, || {
        get(&s, &["pv", "pv-imm"]).is_none().then_some(())
    });

    // Retain: the pod and claim go, the volume stays Released.
    kubectl_ok(&s, &["delete", "pod", "db", "--grace-period=0", "--force"]);
    kubectl_ok(&s, &["delete", "pvc", "data"]);
    wait_until("pv-n2 Released", SETTLE, || {
        (phase(&s, &["pv", "pv-n2"])? == "Released").then_some(())
    });
    assert!(get(&s, &["pv", "pv-n2"]).is_some());
}

#[test]
fn hollow_nodes_run_what_the_scheduler_binds_and_freed_room_is_reused() {
    let s = KeelServer::start(&[]);
    let mut small = HollowNodes::start_with(
        &s.kubeconfig(),
        "small",
        2,
        &[&"--heartbeat", &"1s", &"--cpu", &"2"],
    );
    let mut gpu = HollowNodes::start_with(
        &s.kubeconfig(),
        "gpu",
        1,
        &[
            &"--heartbeat",
            &"1s",
            &"--cpu",
            &"8",
            &"--labels",
            &"accel=gpu",
            &"--taints",
            &"dedicated=gpu:NoSchedule",
        ],
    );
    small.wait_ready(SETTLE);
    gpu.wait_ready(SETTLE);
    create(
        &s,
        vec![
            pod("a", "1500m", json!({}), json!({})),
            pod("b", "1500m", json!({}), json!({})),
            pod(
                "g",
                "4",
                json!({}),
                json!({"nodeSelector": {"accel": "gpu"},
                       "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}]}),
            ),
        ],
    );
    let (a, b) = (node_of(&s, "a"), node_of(&s, "b"));
    let mut smalls = [a.clone(), b];
    smalls.sort();
    assert_eq!(
        smalls,
        ["small-0", "small-1"],
        "one 1.5-CPU pod per 2-CPU node"
    );
    assert_eq!(node_of(&s, "g"), "gpu-0");
    for p in ["a", "b", "g"] {
        wait_until(&format!("{p} Running"), SETTLE, || {
            (get(&s, &["pod", p])?["status"]["phase"] == "Running").then_some(())
        });
    }

    // No room left that c may use.
    create(&s, vec![pod("c", "1500m", json!({}), json!({}))]);
    let ev = wait_until("c FailedScheduling", SETTLE, || {
        events(&s, "c", "FailedScheduling").pop()
    });
    assert_eq!(
        ev["message"],
        "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, \
         2 Insufficient cpu. preemption: 0/3 nodes are available: \
         1 Preemption is not helpful for scheduling, \
         2 No preemption victims found for incoming pod.."
    );

    // a goes (the hollow node confirms the deletion): c takes its room.
    kubectl_ok(&s, &["delete", "pod", "a", "--wait=true", "--timeout=60s"]);
    assert_eq!(node_of(&s, "c"), a);
    wait_until("c Running", SETTLE, || {
        (get(&s, &["pod", "c"])?["status"]["phase"] == "Running").then_some(())
    });
}
