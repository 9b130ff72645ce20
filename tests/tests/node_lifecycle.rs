//! Node lifecycle end to end with kubectl 1.33 and two `keel hollow-nodes`
//! processes against one `keel server` (node monitor grace 4 s): killing
//! one process stops its node's heartbeats; the node goes Unknown
//! (NotReady in `kubectl get nodes`) with the unreachable NoSchedule and
//! NoExecute taints; its pods are marked not Ready; a pod tolerating the
//! taint for 2 s is evicted (DisruptionTarget, a graceful delete, a
//! TaintManagerEviction event) while pods with the default 300 s
//! toleration (added on create) or an unlimited one stay, and the other
//! node is untouched; new pods are scheduled onto the live node only.
//! When the node's process comes back, its taints go,
//! it is Ready again and it confirms the eviction (the pod is gone).

use std::process::{Command, Output};
use std::time::Duration;

use keel_tests::hollow::{HollowNodes, condition};
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

fn pod(name: &str, node: &str, tolerations: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"nodeName": node, "tolerations": tolerations,
                 "containers": [{"name": "app", "image": "nginx:1.27"}]}
    })
}

fn unreachable(seconds: Option<i64>) -> Value {
    let mut t = json!({"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"});
    if let Some(s) = seconds {
        t["tolerationSeconds"] = json!(s);
    }
    t
}

/// The node's taints as (key, effect).
fn taints(node: &Value) -> Vec<(String, String)> {
    node["spec"]["taints"]
        .as_array()
        .map(|ts| {
            ts.iter()
                .map(|t| {
                    (
                        t["key"].as_str().unwrap_or("").to_string(),
                        t["effect"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn dead_node_is_tainted_and_its_pods_evicted_after_their_toleration() {
    let server = KeelServer::start(&[&"--node-monitor-grace-period", &"4s"]);
    let k = Kubectl(&server);
    let kubeconfig = server.kubeconfig();
    let mut alive = HollowNodes::start(&kubeconfig, "alive", 1);
    let mut doomed = HollowNodes::start(&kubeconfig, "doomed", 1);
    alive.wait_ready(STEP);
    doomed.wait_ready(STEP);

    k.apply(&pod("fast", "doomed-0", json!([unreachable(Some(2))])));
    k.apply(&pod("forever", "doomed-0", json!([unreachable(None)])));
    k.apply(&pod("default", "doomed-0", json!([])));
    k.apply(&pod("survivor", "alive-0", json!([])));
    for p in ["fast", "forever", "default", "survivor"] {
        k.ok(&[
            "wait",
            "--for=condition=Ready",
            &format!("pod/{p}"),
            "--timeout=60s",
        ]);
    }
    // DefaultTolerationSeconds: 300 s for both taints, added on create.
    let tols = k.json(&["get", "pod", "default"])["spec"]["tolerations"].clone();
    for key in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ] {
        assert!(
            tols.as_array().unwrap().iter().any(|t| t["key"] == key
                && t["effect"] == "NoExecute"
                && t["tolerationSeconds"] == 300),
            "{key} missing in {tols}"
        );
    }

    doomed.kill();
    let unreachable_taints = vec![
        (
            "node.kubernetes.io/unreachable".to_string(),
            "NoSchedule".to_string(),
        ),
        (
            "node.kubernetes.io/unreachable".to_string(),
            "NoExecute".to_string(),
        ),
    ];
    let node = wait_until("doomed-0 to be marked unreachable", STEP, || {
        let n = k.json(&["get", "node", "doomed-0"]);
        (condition(&n, "Ready") == Some("Unknown") && taints(&n) == unreachable_taints).then_some(n)
    });
    let ready = n_condition(&node, "Ready");
    assert_eq!(ready["reason"], "NodeStatusUnknown");
    assert_eq!(ready["message"], "Kubelet stopped posting node status.");
    assert_eq!(condition(&node, "MemoryPressure"), Some("Unknown"));
    let table = k.ok(&["get", "nodes", "--no-headers"]);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("doomed-0 ") && l.split_whitespace().nth(1) == Some("NotReady")),
        "{table}"
    );

    // The pod tolerating 2 s is evicted (it stays Terminating: its node is gone).
    let fast = wait_until("pod fast to be evicted", STEP, || {
        k.try_json(&["get", "pod", "fast"])
            .filter(|p| p["metadata"]["deletionTimestamp"].is_string())
    });
    assert_eq!(condition(&fast, "DisruptionTarget"), Some("True"));
    let events = k.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=fast",
    ]);
    assert!(
        events.contains("TaintManagerEviction")
            && events.contains("Marking for deletion Pod default/fast"),
        "{events}"
    );
    // The others are marked not Ready, and stay.
    for p in ["forever", "default"] {
        let pod = wait_until(&format!("pod {p} to be marked not Ready"), STEP, || {
            k.try_json(&["get", "pod", p])
                .filter(|p| condition(p, "Ready") == Some("False"))
        });
        assert!(
            pod["metadata"]["deletionTimestamp"].is_null(),
            "{p} evicted: {pod}"
        );
    }
    let alive_node = k.json(&["get", "node", "alive-0"]);
    assert_eq!(condition(&alive_node, "Ready"), Some("True"));
    assert!(taints(&alive_node).is_empty(), "{alive_node}");
    // New pods go to the node that is alive: the scheduler keeps off the
    // unreachable NoSchedule taint.
    for i in 0..3 {
        let mut p = pod(&format!("fresh-{i}"), "", json!([]));
        p["spec"].as_object_mut().unwrap().remove("nodeName");
        k.apply(&p);
    }
    for i in 0..3 {
        let name = format!("fresh-{i}");
        k.ok(&[
            "wait",
            "--for=condition=Ready",
            &format!("pod/{name}"),
            "--timeout=60s",
        ]);
        let p = k.json(&["get", "pod", &name]);
        assert_eq!(p["spec"]["nodeName"], "alive-0", "{name}: {p}");
    }
    let survivor = k.json(&["get", "pod", "survivor"]);
    assert!(survivor["metadata"]["deletionTimestamp"].is_null());
    assert_eq!(condition(&survivor, "Ready"), Some("True"));

    // The node comes back: Ready, untainted; it confirms the eviction.
    let mut back = HollowNodes::start(&kubeconfig, "doomed", 1);
    back.wait_ready(STEP);
    wait_until("doomed-0's taints to go", STEP, || {
        taints(&k.json(&["get", "node", "doomed-0"]))
            .is_empty()
            .then_some(())
    });
    wait_until("the evicted pod to be gone", STEP, || {
        k.try_json(&["get", "pod", "fast"]).is_none().then_some(())
    });
    wait_until("pod forever to be Ready again", STEP, || {
        k.try_json(&["get", "pod", "forever"])
            .filter(|p| condition(p, "Ready") == Some("True"))
    });
    assert!(k.json(&["get", "pod", "default"])["metadata"]["deletionTimestamp"].is_null());
    drop(alive);
}

fn n_condition<'a>(obj: &'a Value, type_: &str) -> &'a Value {
    obj["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
        .unwrap_or(&Value::Null)
}
