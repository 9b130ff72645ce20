//! Hollow nodes end to end, with kubectl 1.33 against one `keel server`:
//! `keel hollow-nodes` registers Ready nodes with the well-known labels,
//! capacity and a Lease in `kube-node-lease` that it keeps renewing; a pod
//! bound to one of them goes Running and Ready (`kubectl wait`) with a pod
//! IP from the node's CIDR and the node's IP as hostIP; the exit
//! annotations end pods Succeeded or Failed as their restart policy says;
//! `kubectl delete pod` returns once the node confirmed the deletion. The
//! same runs with one watch per node (`--pod-watch per-node`). Each node
//! acts as its own kubelet (`system:node:<name>`): a credential that may
//! only impersonate nodes runs them, and the same credential acting as
//! itself (`--identity kubeconfig`) is refused.

use std::process::{Command, Output};
use std::time::Duration;

use keel_tests::hollow::{EXIT_AFTER, EXIT_CODE, HollowNodes, condition, wait_nodes_ready};
use keel_tests::server::{KeelServer, kubectl_bin, output_with_stdin};
use keel_tests::wait_until;
use serde_json::{Value, json};

const STEP: Duration = Duration::from_secs(60);

struct Kubectl<'a>(&'a KeelServer);

impl Kubectl<'_> {
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(kubectl_bin(Some("1.33")));
        c.env("HOME", self.0.dir().join("home"))
            .arg("--kubeconfig")
            .arg(self.0.kubeconfig())
            .args(args);
        c
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.command(args).output().unwrap();
        check(args, &out);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&all)).unwrap()
    }

    fn try_json(&self, args: &[&str]) -> Option<Value> {
        let out = self.command(args).args(["-o", "json"]).output().unwrap();
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).unwrap())
    }

    fn apply(&self, obj: &Value) {
        let out = output_with_stdin(
            self.command(&["apply", "-f", "-"]),
            obj.to_string().as_bytes(),
        );
        check(&["apply"], &out);
    }
}

fn check(args: &[&str], out: &Output) {
    assert!(
        out.status.success(),
        "kubectl {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn pod(name: &str, node: &str, annotations: Value, restart: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "annotations": annotations},
        "spec": {"nodeName": node, "restartPolicy": restart,
                 "containers": [{"name": "app", "image": "nginx:1.27"}]}
    })
}

fn pods_on_hollow_nodes(pod_watch: &str) {
    let server = KeelServer::start(&[]);
    let k = Kubectl(&server);
    let mut nodes = HollowNodes::start_with(
        &server.kubeconfig(),
        "hollow",
        3,
        &[
            &"--heartbeat",
            &"1s",
            &"--pod-watch",
            &pod_watch,
            &"--labels",
            &"zone=a",
        ],
    );
    nodes.wait_ready(STEP);

    // Registered as the kubelet registers.
    let node = k.json(&["get", "node", "hollow-1"]);
    let labels = &node["metadata"]["labels"];
    assert_eq!(labels["kubernetes.io/hostname"], "hollow-1");
    assert_eq!(labels["kubernetes.io/os"], "linux");
    assert_eq!(labels["zone"], "a");
    assert_eq!(node["status"]["allocatable"]["pods"], "110");
    assert_eq!(node["status"]["capacity"]["cpu"], "4");
    let cidr = node["spec"]["podCIDR"].as_str().unwrap().to_string();
    let node_ip = node["status"]["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["type"] == "InternalIP")
        .unwrap()["address"]
        .as_str()
        .unwrap()
        .to_string();
    // kubectl's columns: NAME STATUS ROLES AGE VERSION.
    let table = k.ok(&["get", "nodes", "--no-headers"]);
    let row: Vec<&str> = table
        .lines()
        .find(|l| l.starts_with("hollow-2 "))
        .unwrap_or_else(|| panic!("no hollow-2 in {table}"))
        .split_whitespace()
        .collect();
    assert_eq!(row[1..3], ["Ready", "<none>"], "{table}");
    assert_eq!(row[4], "v1.33.0-keel", "{table}");

    // The Lease: held by the node, owned by it, renewed every heartbeat.
    let lease = wait_until("the node lease", STEP, || {
        k.try_json(&["get", "lease", "-n", "kube-node-lease", "hollow-1"])
    });
    assert_eq!(lease["spec"]["holderIdentity"], "hollow-1");
    assert_eq!(lease["metadata"]["ownerReferences"][0]["kind"], "Node");
    assert_eq!(
        lease["metadata"]["ownerReferences"][0]["uid"],
        node["metadata"]["uid"]
    );
    let first = lease["spec"]["renewTime"].clone();
    wait_until("the node lease to be renewed", STEP, || {
        let l = k.json(&["get", "lease", "-n", "kube-node-lease", "hollow-1"]);
        (l["spec"]["renewTime"] != first).then_some(())
    });

    // A bound pod goes Running and Ready.
    k.apply(&pod("web", "hollow-1", json!({}), "Always"));
    k.ok(&["wait", "--for=condition=Ready", "pod/web", "--timeout=60s"]);
    let web = k.json(&["get", "pod", "web"]);
    assert_eq!(web["status"]["phase"], "Running");
    assert_eq!(web["status"]["hostIP"], node_ip.as_str());
    let ip = web["status"]["podIP"].as_str().unwrap();
    let net = cidr.trim_end_matches("0/24");
    assert!(ip.starts_with(net), "pod IP {ip} outside the node's {cidr}");
    let cs = &web["status"]["containerStatuses"][0];
    assert_eq!(cs["ready"], true);
    assert_eq!(cs["started"], true);
    assert!(cs["state"]["running"]["startedAt"].is_string());
    assert!(web["status"]["startTime"].is_string());
    assert_eq!(web["status"]["qosClass"], "BestEffort");
    let wide = k.ok(&["get", "pod", "web", "-o", "wide"]);
    assert!(
        wide.contains("1/1") && wide.contains("Running") && wide.contains(ip),
        "{wide}"
    );

    // Exits, as the restart policy says.
    k.apply(&pod("done", "hollow-0", json!({EXIT_AFTER: "1"}), "Never"));
    k.apply(&pod(
        "fails",
        "hollow-2",
        json!({EXIT_AFTER: "1", EXIT_CODE: "3"}),
        "Never",
    ));
    k.apply(&pod(
        "again",
        "hollow-2",
        json!({EXIT_AFTER: "1", EXIT_CODE: "1"}),
        "OnFailure",
    ));
    for (name, phase, code) in [("done", "Succeeded", 0), ("fails", "Failed", 3)] {
        let p = wait_until(&format!("pod {name} to end {phase}"), STEP, || {
            k.try_json(&["get", "pod", name])
                .filter(|p| p["status"]["phase"] == phase)
        });
        let term = &p["status"]["containerStatuses"][0]["state"]["terminated"];
        assert_eq!(term["exitCode"], code, "{name}: {p}");
        assert_eq!(condition(&p, "Ready"), Some("False"), "{name}");
    }
    let again = wait_until("pod again to restart", STEP, || {
        k.try_json(&["get", "pod", "again"]).filter(|p| {
            p["status"]["containerStatuses"][0]["restartCount"]
                .as_i64()
                .is_some_and(|n| n >= 1)
        })
    });
    assert_eq!(again["status"]["phase"], "Running");
    assert_eq!(
        again["status"]["containerStatuses"][0]["lastState"]["terminated"]["exitCode"],
        1
    );

    // A graceful delete returns once the node confirmed it (grace 0).
    let out = k
        .command(&["delete", "pod", "web", "--timeout=30s"])
        .output()
        .unwrap();
    check(&["delete", "pod", "web"], &out);
    assert!(
        k.try_json(&["get", "pod", "web"]).is_none(),
        "web still there"
    );
    drop(nodes);
}

#[test]
fn hollow_nodes_register_and_run_pods() {
    pods_on_hollow_nodes("shared");
}

#[test]
fn hollow_nodes_with_a_watch_per_node() {
    pods_on_hollow_nodes("per-node");
}

/// A credential allowed nothing but impersonating nodes runs hollow nodes
/// that register, renew their Leases and run their pods: every request
/// reached the API as the node's kubelet. The same credential acting as
/// itself is refused, so the requests did not pass as that user.
#[test]
fn hollow_nodes_act_as_their_kubelets() {
    let server = KeelServer::start(&[]);
    let k = Kubectl(&server);
    k.apply(&json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "node-impersonator"},
        "rules": [
            {"apiGroups": [""], "resources": ["users"], "verbs": ["impersonate"]},
            {"apiGroups": [""], "resources": ["groups"], "verbs": ["impersonate"],
             "resourceNames": ["system:nodes"]}
        ]
    }));
    k.apply(&json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": "node-impersonator"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "node-impersonator"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                      "name": "hollow-operator"}]
    }));
    let operator = server.user_kubeconfig("hollow-operator", &[]);
    let refused = Kubectl(&server)
        .command(&["--kubeconfig", operator.to_str().unwrap(), "get", "nodes"])
        .output()
        .unwrap();
    assert!(
        !refused.status.success(),
        "the operator may read nodes as itself"
    );

    let nodes = HollowNodes::start_with(&operator, "kubelet", 2, &[&"--heartbeat", &"1s"]);
    wait_nodes_ready(&server.kubeconfig(), &nodes.names(), STEP);
    let lease = wait_until("the node lease", STEP, || {
        k.try_json(&["get", "lease", "-n", "kube-node-lease", "kubelet-0"])
    });
    let first = lease["spec"]["renewTime"].clone();
    wait_until("the node lease to be renewed", STEP, || {
        let l = k.json(&["get", "lease", "-n", "kube-node-lease", "kubelet-0"]);
        (l["spec"]["renewTime"] != first).then_some(())
    });
    k.apply(&pod("web", "kubelet-1", json!({}), "Always"));
    k.ok(&["wait", "--for=condition=Ready", "pod/web", "--timeout=60s"]);
    let out = k
        .command(&["delete", "pod", "web", "--timeout=30s"])
        .output()
        .unwrap();
    check(&["delete", "pod", "web"], &out);

    let plain = HollowNodes::start_with(
        &operator,
        "plain",
        1,
        &[&"--heartbeat", &"1s", &"--identity", &"kubeconfig"],
    );
    let log = wait_until("the registration to be refused", STEP, || {
        let log = plain.log();
        log.contains("forbidden").then_some(log)
    });
    assert!(log.contains("hollow-operator"), "{log}");
    assert!(k.try_json(&["get", "node", "plain-0"]).is_none());
}
