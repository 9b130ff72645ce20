//! StatefulSets end to end with kubectl 1.33 (and 1.27 for rollout history
//! and status) against a real `keel server` (every controller on, the
//! scheduler and the PV binder among them) and
//! hollow nodes that run the pods: pods `web-0..2` come up in order with
//! their identity labels and controller reference and `kubectl rollout
//! status` waits for them; a RollingUpdate with `partition=2` updates only
//! ordinal 2, lowering it to 0 updates the rest, `rollout history` lists
//! the revisions and `rollout undo` brings the previous template back (its
//! ControllerRevision renumbered, not copied), `rollout restart` replaces
//! every pod; OnDelete replaces only the
//! pod the user deletes; volumeClaimTemplates give each pod its claim,
//! `whenScaled: Delete` takes a scaled-down pod's claim with it,
//! `whenDeleted: Delete` takes the claims with the set, and claims
//! of a WaitForFirstConsumer class bind the local volume of the node their
//! pod is scheduled to.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use keel_tests::hollow::HollowNodes;
use keel_tests::server::{KeelServer, kubectl_bin};
use keel_tests::wait_until;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(120);

/// kubectl 1.33 against the test's server, in one namespace.
struct Kubectl {
    bin: PathBuf,
    kubeconfig: PathBuf,
    home: PathBuf,
    ns: String,
}

impl Kubectl {
    fn new(server: &KeelServer, ns: &str) -> Kubectl {
        Kubectl {
            bin: kubectl_bin(Some("1.33")),
            kubeconfig: server.kubeconfig(),
            home: server.dir().join(format!("home-{ns}")),
            ns: ns.into(),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(["-n", &self.ns])
            .args(args)
            .env("HOME", &self.home)
            .env("KUBECACHEDIR", self.home.join("cache"));
        c
    }

    fn output(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.output(args);
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&a)).unwrap()
    }

    fn apply(&self, yaml: &str) -> String {
        std::fs::create_dir_all(&self.home).unwrap();
        let path = self.home.join("manifest.yaml");
        std::fs::write(&path, yaml).unwrap();
        self.ok(&["apply", "-f", path.to_str().unwrap()])
    }

    /// The set's pods by name: (image of container `c`, revision label).
    fn pods(&self, app: &str) -> Vec<(String, String, String)> {
        let list = self.json(&["get", "pods", "-l", &format!("app={app}")]);
        let mut out: Vec<(String, String, String)> = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .map(|p| {
                (
                    p["metadata"]["name"].as_str().unwrap().to_string(),
                    p["spec"]["containers"][0]["image"]
                        .as_str()
                        .unwrap()
                        .to_string(),
                    p["metadata"]["labels"]["controller-revision-hash"]
                        .as_str()
                        .unwrap_or("")
                        .to_string(),
                )
            })
            .collect();
        out.sort();
        out
    }

    fn rollout_status(&self, what: &str) -> String {
        self.ok(&["rollout", "status", what, "--timeout=120s"])
    }
}

/// A server and two hollow nodes that run its pods.
fn cluster() -> (KeelServer, HollowNodes) {
    let server = KeelServer::start(&[]);
    let mut nodes = HollowNodes::start(&server.kubeconfig(), "node", 2);
    nodes.wait_ready(WAIT);
    (server, nodes)
}

fn statefulset(name: &str, image: &str, extra_spec: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Service
metadata:
  name: {name}
spec:
  clusterIP: None
  selector:
    app: {name}
  ports:
  - port: 80
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: {name}
spec:
  serviceName: {name}
  replicas: 3
  selector:
    matchLabels:
      app: {name}
{extra_spec}
  template:
    metadata:
      labels:
        app: {name}
    spec:
      containers:
      - name: c
        image: {image}
"#
    )
}

fn revision_of(k: &Kubectl, set: &str, field: &str) -> String {
    k.json(&["get", "sts", set])["status"][field]
        .as_str()
        .unwrap_or("")
        .to_string()
}

#[test]
fn rollout_partition_history_and_undo() {
    let (server, _nodes) = cluster();
    let k = Kubectl::new(&server, "default");

    k.apply(&statefulset("web", "nginx:1", ""));
    let out = k.rollout_status("sts/web");
    assert!(out.contains("roll out complete"), "{out}");
    let pods = k.pods("web");
    let names: Vec<&str> = pods.iter().map(|p| p.0.as_str()).collect();
    assert_eq!(names, ["web-0", "web-1", "web-2"]);
    let rev1 = revision_of(&k, "web", "updateRevision");
    assert!(rev1.starts_with("web-"), "{rev1}");
    assert!(
        pods.iter().all(|p| p.1 == "nginx:1" && p.2 == rev1),
        "{pods:?}"
    );

    // Identity: labels, hostname, subdomain, controller reference.
    let p = k.json(&["get", "pod", "web-1"]);
    assert_eq!(
        p["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"],
        "web-1"
    );
    assert_eq!(p["metadata"]["labels"]["apps.kubernetes.io/pod-index"], "1");
    assert_eq!(p["spec"]["hostname"], "web-1");
    assert_eq!(p["spec"]["subdomain"], "web");
    let owner = &p["metadata"]["ownerReferences"][0];
    assert_eq!(owner["kind"], "StatefulSet");
    assert_eq!(owner["controller"], true);
    assert_eq!(owner["blockOwnerDeletion"], true);

    // OrderedReady: the events name the pods in ordinal order.
    let events = k.json(&["get", "events"]);
    // Event names end in the nanosecond they were made at, in hex.
    let mut created: Vec<(String, String)> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["reason"] == "SuccessfulCreate" && e["involvedObject"]["name"] == "web")
        .map(|e| {
            (
                e["metadata"]["name"].as_str().unwrap().to_string(),
                e["message"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    created.sort();
    let created: Vec<String> = created.into_iter().map(|(_, m)| m).collect();
    assert_eq!(
        created,
        [
            "create Pod web-0 in StatefulSet web successful",
            "create Pod web-1 in StatefulSet web successful",
            "create Pod web-2 in StatefulSet web successful",
        ]
    );

    // partition=2: only web-2 moves to the new revision.
    k.ok(&[
        "patch",
        "sts",
        "web",
        "-p",
        r#"{"spec":{"updateStrategy":{"type":"RollingUpdate","rollingUpdate":{"partition":2}}}}"#,
    ]);
    k.ok(&["set", "image", "sts/web", "c=nginx:2"]);
    let out = k.rollout_status("sts/web");
    assert!(out.contains("partitioned roll out complete"), "{out}");
    let rev2 = revision_of(&k, "web", "updateRevision");
    assert_ne!(rev2, rev1);
    let pods = wait_until("web-2 alone at the new revision", WAIT, || {
        let pods = k.pods("web");
        (pods.len() == 3 && pods[2].2 == rev2).then_some(pods)
    });
    assert_eq!(
        pods,
        vec![
            ("web-0".into(), "nginx:1".into(), rev1.clone()),
            ("web-1".into(), "nginx:1".into(), rev1.clone()),
            ("web-2".into(), "nginx:2".into(), rev2.clone()),
        ]
    );
    assert_eq!(revision_of(&k, "web", "currentRevision"), rev1);

    // partition=0: the rest follow, highest first, and the update completes.
    k.ok(&[
        "patch",
        "sts",
        "web",
        "-p",
        r#"{"spec":{"updateStrategy":{"rollingUpdate":{"partition":0}}}}"#,
    ]);
    k.rollout_status("sts/web");
    wait_until(
        "every pod at the new revision, and it current",
        WAIT,
        || {
            let pods = k.pods("web");
            (pods.len() == 3
                && pods.iter().all(|p| p.1 == "nginx:2" && p.2 == rev2)
                && revision_of(&k, "web", "currentRevision") == rev2)
                .then_some(())
        },
    );

    // History lists both revisions; undo brings nginx:1 back as revision 3.
    let history = k.ok(&["rollout", "history", "sts/web"]);
    let numbers: Vec<&str> = history
        .lines()
        .skip_while(|l| !l.starts_with("REVISION"))
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(numbers, ["1", "2"], "{history}");
    let second = k.ok(&["rollout", "history", "sts/web", "--revision=2"]);
    assert!(second.contains("nginx:2"), "{second}");
    // kubectl 1.27 reads the same history and status.
    let old = Kubectl {
        bin: kubectl_bin(Some("1.27")),
        ..Kubectl::new(&server, "default")
    };
    assert_eq!(old.ok(&["rollout", "history", "sts/web"]), history);
    old.rollout_status("sts/web");
    let out = k.ok(&["rollout", "undo", "sts/web"]);
    assert!(out.contains("rolled back"), "{out}");
    k.rollout_status("sts/web");
    wait_until("every pod back at the first template", WAIT, || {
        let pods = k.pods("web");
        (pods.len() == 3 && pods.iter().all(|p| p.1 == "nginx:1" && p.2 == rev1)).then_some(())
    });
    assert_eq!(revision_of(&k, "web", "updateRevision"), rev1);
    let revisions = k.json(&["get", "controllerrevisions"]);
    let mut numbered: Vec<(i64, String)> = revisions["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["revision"].as_i64().unwrap(),
                r["metadata"]["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    numbered.sort();
    assert_eq!(numbered, vec![(2, rev2.clone()), (3, rev1.clone())]);

    // rollout restart: a new template (an annotation), so a new revision
    // that replaces every pod.
    k.ok(&["rollout", "restart", "sts/web"]);
    k.rollout_status("sts/web");
    let rev4 = wait_until("every pod restarted at a fourth revision", WAIT, || {
        let r = revision_of(&k, "web", "currentRevision");
        let pods = k.pods("web");
        (r != rev1 && r != rev2 && pods.len() == 3 && pods.iter().all(|p| p.2 == r)).then_some(r)
    });
    let p = k.json(&["get", "pod", "web-0"]);
    assert!(
        p["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"].is_string(),
        "{p}"
    );
    let r = k.json(&["get", "controllerrevision", &rev4]);
    assert_eq!(r["revision"], 4);
}

#[test]
fn on_delete_replaces_only_deleted_pods() {
    let (server, _nodes) = cluster();
    let k = Kubectl::new(&server, "default");
    k.apply(&statefulset(
        "db",
        "redis:1",
        "  podManagementPolicy: Parallel\n  updateStrategy:\n    type: OnDelete",
    ));
    wait_until("three ready pods", WAIT, || {
        let s = k.json(&["get", "sts", "db"]);
        (s["status"]["readyReplicas"] == 3).then_some(())
    });
    let rev1 = revision_of(&k, "db", "currentRevision");
    k.ok(&["set", "image", "sts/db", "c=redis:2"]);
    let rev2 = wait_until("the new revision observed", WAIT, || {
        let s = k.json(&["get", "sts", "db"]);
        let observed = s["status"]["observedGeneration"] == s["metadata"]["generation"];
        let r = s["status"]["updateRevision"]
            .as_str()
            .unwrap_or("")
            .to_string();
        (observed && r != rev1).then_some(r)
    });
    // Nothing is replaced until the user deletes a pod.
    let pods = k.pods("db");
    assert!(pods.iter().all(|p| p.1 == "redis:1"), "{pods:?}");
    k.ok(&["delete", "pod", "db-1", "--wait=false"]);
    let pods = wait_until("db-1 back at the new revision", WAIT, || {
        let pods = k.pods("db");
        (pods.len() == 3 && pods[1].2 == rev2).then_some(pods)
    });
    assert_eq!(
        pods,
        vec![
            ("db-0".into(), "redis:1".into(), rev1.clone()),
            ("db-1".into(), "redis:2".into(), rev2.clone()),
            ("db-2".into(), "redis:1".into(), rev1.clone()),
        ]
    );
    // The status counts the new pod once a sync has seen it.
    wait_until("status: one updated, two current", WAIT, || {
        let s = k.json(&["get", "sts", "db"]);
        (s["status"]["updatedReplicas"] == 1 && s["status"]["currentReplicas"] == 2).then_some(())
    });
}

#[test]
fn claims_follow_the_retention_policy_on_scale_down() {
    let (server, _nodes) = cluster();
    let k = Kubectl::new(&server, "default");
    // Three volumes of no class, for the binder to bind the claims to at once.
    let volumes: Vec<String> = (0..3)
        .map(|i| {
            format!(
                "apiVersion: v1\nkind: PersistentVolume\nmetadata:\n  name: disk-{i}\nspec:\n  capacity:\n    storage: 1Gi\n  accessModes: [ReadWriteOnce]\n  hostPath:\n    path: /tmp/disk-{i}\n"
            )
        })
        .collect();
    k.apply(&volumes.join("---\n"));
    k.apply(&statefulset(
        "data",
        "postgres:1",
        "  persistentVolumeClaimRetentionPolicy:\n    whenDeleted: Retain\n    whenScaled: Delete\n  volumeClaimTemplates:\n  - metadata:\n      name: www\n    spec:\n      storageClassName: \"\"\n      accessModes: [ReadWriteOnce]\n      resources:\n        requests:\n          storage: 1Gi",
    ));
    k.rollout_status("sts/data");
    let claims = k.json(&["get", "pvc"]);
    let mut names: Vec<&str> = claims["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["metadata"]["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["www-data-0", "www-data-1", "www-data-2"]);
    let c = k.json(&["get", "pvc", "www-data-1"]);
    assert_eq!(c["metadata"]["labels"]["app"], "data");
    assert!(c["metadata"]["ownerReferences"].is_null(), "{c}");
    let p = k.json(&["get", "pod", "data-1"]);
    let vol = &p["spec"]["volumes"][0];
    assert_eq!(vol["name"], "www");
    assert_eq!(vol["persistentVolumeClaim"]["claimName"], "www-data-1");

    // Scaled to 1: data-2 then data-1 go, and their claims with them.
    k.ok(&["scale", "sts/data", "--replicas=1"]);
    wait_until("two pods and their claims gone", WAIT, || {
        let pods = k.pods("data");
        let claims = k.json(&["get", "pvc"]);
        let left: Vec<String> = claims["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["metadata"]["deletionTimestamp"].is_null())
            .map(|c| c["metadata"]["name"].as_str().unwrap().to_string())
            .collect();
        (pods.len() == 1 && left == ["www-data-0"]).then_some(())
    });
    let events = k.ok(&["get", "events"]);
    assert!(
        events.contains("delete Pod data-2 in StatefulSet data successful"),
        "{events}"
    );
    assert!(
        events.contains("create Claim www-data-0 Pod data-0 in StatefulSet data success"),
        "{events}"
    );

    // whenDeleted: Delete puts the set's reference on the remaining claim,
    // and deleting the set then takes the claim with it.
    k.ok(&[
        "patch",
        "sts",
        "data",
        "-p",
        r#"{"spec":{"persistentVolumeClaimRetentionPolicy":{"whenDeleted":"Delete"}}}"#,
    ]);
    let uid = k.json(&["get", "sts", "data"])["metadata"]["uid"].clone();
    wait_until("the claim owned by the set", WAIT, || {
        let c = k.json(&["get", "pvc", "www-data-0"]);
        let owners = c["metadata"]["ownerReferences"].as_array().cloned();
        owners
            .is_some_and(|o| {
                o.iter()
                    .any(|r| r["uid"] == uid && r["kind"] == "StatefulSet")
            })
            .then_some(())
    });
    k.ok(&["delete", "sts", "data", "--wait=false"]);
    wait_until("the pod and its claim gone with the set", WAIT, || {
        let pods = k.pods("data");
        let claims = k.json(&["get", "pvc"]);
        let left = claims["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["metadata"]["deletionTimestamp"].is_null());
        (pods.is_empty() && !left).then_some(())
    });
}

#[test]
fn claims_bind_local_volumes_on_the_pods_node() {
    let (server, nodes) = cluster();
    let k = Kubectl::new(&server, "default");
    let mut volumes = String::from(
        r#"apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: local
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: WaitForFirstConsumer
"#,
    );
    for node in nodes.names() {
        volumes.push_str(&format!(
            r#"---
apiVersion: v1
kind: PersistentVolume
metadata:
  name: pv-{node}
spec:
  capacity:
    storage: 1Gi
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: local
  local:
    path: /mnt/disks/{node}
  nodeAffinity:
    required:
      nodeSelectorTerms:
      - matchExpressions:
        - key: kubernetes.io/hostname
          operator: In
          values: [{node}]
"#
        ));
    }
    k.apply(&volumes);
    let mut set = statefulset(
        "store",
        "etcd:1",
        "  volumeClaimTemplates:\n  - metadata:\n      name: data\n    spec:\n      storageClassName: local\n      accessModes: [ReadWriteOnce]\n      resources:\n        requests:\n          storage: 1Gi",
    );
    set = set.replace("replicas: 3", "replicas: 2");
    k.apply(&set);
    k.rollout_status("sts/store");
    // Each claim is bound to the volume of the node its pod runs on: two
    // volumes on two nodes, so the second pod had to go where the free one is.
    let mut used = Vec::new();
    for i in 0..2 {
        let claim = wait_until("the claim bound", WAIT, || {
            let c = k.json(&["get", "pvc", &format!("data-store-{i}")]);
            (c["status"]["phase"] == "Bound").then_some(c)
        });
        let pv = claim["spec"]["volumeName"].as_str().unwrap().to_string();
        let pod = k.json(&["get", "pod", &format!("store-{i}")]);
        let node = pod["spec"]["nodeName"].as_str().unwrap().to_string();
        assert_eq!(pv, format!("pv-{node}"), "store-{i} on {node} has {pv}");
        assert_eq!(
            claim["metadata"]["annotations"]["volume.kubernetes.io/selected-node"],
            node.as_str()
        );
        let v = k.json(&["get", "pv", &pv]);
        assert_eq!(v["status"]["phase"], "Bound");
        assert_eq!(
            v["spec"]["claimRef"]["name"],
            format!("data-store-{i}").as_str()
        );
        used.push(node);
    }
    used.sort();
    assert_eq!(used, nodes.names());
}
