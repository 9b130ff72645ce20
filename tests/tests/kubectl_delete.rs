//! Deletion as kubectl drives it, with kubectl 1.33 and 1.27 against one
//! `keel server`: `delete --cascade=background|foreground|orphan` on an
//! owner with a dependent (the owner's side: removed, or held with its
//! garbage-collector finalizer; removing the dependents is the garbage
//! collector's part), `delete pod` of a pod on a node (held for its grace
//! period) and `--grace-period=0 --force`, and `delete namespace`: the
//! namespace goes Terminating, refuses new content with Kubernetes'
//! message, and `delete ns --wait` returns once `/finalize` and its last
//! finalizer let it go. Each step's objects hold finalizers of their own
//! where a controller could otherwise finish the deletion before the step
//! looks, so the test asserts the same with or without controllers running.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use keel_tests::server::{KeelServer, kubectl_bin, output_with_stdin};
use keel_tests::wait_until;
use serde_json::Value;

/// How long a step waits for what it expects.
const STEP: Duration = Duration::from_secs(60);

/// One kubectl binary against the server.
struct Kubectl<'a> {
    bin: PathBuf,
    server: &'a KeelServer,
}

impl Kubectl<'_> {
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.env("HOME", self.server.dir().join("home"))
            .arg("--kubeconfig")
            .arg(self.server.kubeconfig())
            .args(args);
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// stdout of a command that must succeed.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// stderr of a command that must fail.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "kubectl {args:?} succeeded: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// `create -f -` of `yaml`.
    fn create(&self, yaml: &str) {
        let out = output_with_stdin(self.command(&["create", "-f", "-"]), yaml.as_bytes());
        assert!(
            out.status.success(),
            "create failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The object as JSON, or `None` once it is gone.
    fn json(&self, args: &[&str]) -> Option<Value> {
        let mut all = vec!["get", "-o", "json"];
        all.extend_from_slice(args);
        let out = self.run(&all);
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains("NotFound"), "get {args:?}: {err}");
            return None;
        }
        Some(serde_json::from_slice(&out.stdout).unwrap())
    }
}

/// A child process killed when the test ends, pass or fail.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn finalizers(obj: &Value) -> Vec<&str> {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|f| f.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// A ConfigMap `name` owned by ConfigMap `owner` (uid `uid`), blocking its
/// owner's foreground deletion and held by a finalizer of its own.
fn dependent(name: &str, owner: &str, uid: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  finalizers: [keel.test/hold]\n  ownerReferences:\n  - apiVersion: v1\n    kind: ConfigMap\n    name: {owner}\n    uid: {uid}\n    blockOwnerDeletion: true\ndata:\n  k: v\n"
    )
}

/// An owner ConfigMap and its dependent; the owner's uid.
fn owner_with_dependent(k: &Kubectl, owner: &str, owner_finalizers: &str) -> String {
    k.create(&format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {owner}\n  finalizers: [{owner_finalizers}]\ndata:\n  k: v\n"
    ));
    let uid = k.ok(&["get", "cm", owner, "-o", "jsonpath={.metadata.uid}"]);
    k.create(&dependent(&format!("{owner}-dep"), owner, &uid));
    uid
}

fn cascade(k: &Kubectl, p: &str) {
    // Background: the owner goes at once.
    owner_with_dependent(k, &format!("{p}-bg"), "");
    let out = k.ok(&["delete", "cm", &format!("{p}-bg"), "--cascade=background"]);
    assert!(
        out.contains(&format!("configmap \"{p}-bg\" deleted")),
        "{out}"
    );
    assert!(k.json(&["cm", &format!("{p}-bg")]).is_none());

    // Foreground: held by foregroundDeletion while its blocking dependent
    // (held by its own finalizer) exists.
    owner_with_dependent(k, &format!("{p}-fg"), "");
    let out = k.ok(&[
        "delete",
        "cm",
        &format!("{p}-fg"),
        "--cascade=foreground",
        "--wait=false",
    ]);
    assert!(
        out.contains(&format!("configmap \"{p}-fg\" deleted")),
        "{out}"
    );
    let owner = k
        .json(&["cm", &format!("{p}-fg")])
        .expect("held by its finalizer");
    assert!(
        owner["metadata"]["deletionTimestamp"].is_string(),
        "{owner}"
    );
    assert_eq!(
        owner["metadata"]["deletionGracePeriodSeconds"], 0,
        "{owner}"
    );
    assert_eq!(finalizers(&owner), ["foregroundDeletion"], "{owner}");

    // Orphan: the orphan finalizer, seen by a watch started before the
    // delete (a garbage collector removes it once it has orphaned the
    // dependent; keel.test/hold keeps the owner visible after that).
    let name = format!("{p}-or");
    owner_with_dependent(k, &name, "keel.test/hold");
    let log = k.server.dir().join(format!("{name}.watch"));
    let watch = KillOnDrop(
        k.command(&[
            "get",
            "cm",
            &name,
            "-w",
            "-o",
            "jsonpath={.metadata.finalizers}{\"\\n\"}",
        ])
        .stdout(File::create(&log).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap(),
    );
    wait_until("the watch to print the owner", STEP, || {
        std::fs::read_to_string(&log)
            .unwrap()
            .contains("keel.test/hold")
            .then_some(())
    });
    let out = k.ok(&["delete", "cm", &name, "--cascade=orphan", "--wait=false"]);
    assert!(
        out.contains(&format!("configmap \"{name}\" deleted")),
        "{out}"
    );
    wait_until("the orphan finalizer on the owner", STEP, || {
        std::fs::read_to_string(&log)
            .unwrap()
            .contains("\"orphan\"")
            .then_some(())
    });
    drop(watch);
    let owner = k.json(&["cm", &name]).expect("held by keel.test/hold");
    assert!(
        owner["metadata"]["deletionTimestamp"].is_string(),
        "{owner}"
    );
    assert!(finalizers(&owner).contains(&"keel.test/hold"), "{owner}");
}

fn pods(k: &Kubectl, p: &str) {
    let pod = |name: &str, node: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  {node}containers:\n  - name: c\n    image: nginx\n"
        )
    };
    // On a node: kept for its grace period, until the node confirms.
    let bound = format!("{p}-bound");
    k.create(&pod(&bound, "nodeName: n1\n  "));
    let out = k.ok(&["delete", "pod", &bound, "--wait=false"]);
    assert!(out.contains(&format!("pod \"{bound}\" deleted")), "{out}");
    let held = k.json(&["pod", &bound]).expect("kept for its grace period");
    assert_eq!(held["metadata"]["deletionGracePeriodSeconds"], 30, "{held}");
    assert!(held["metadata"]["deletionTimestamp"].is_string(), "{held}");
    // Forced: gone at once.
    let out = k.run(&["delete", "pod", &bound, "--grace-period=0", "--force"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("pod \"{bound}\" force deleted")),
        "{stdout}"
    );
    assert!(k.json(&["pod", &bound]).is_none());
    // Not scheduled: removed at once, so the waiting delete returns.
    let free = format!("{p}-free");
    k.create(&pod(&free, ""));
    let out = k.ok(&["delete", "pod", &free, "--timeout=30s"]);
    assert!(out.contains(&format!("pod \"{free}\" deleted")), "{out}");
    assert!(k.json(&["pod", &free]).is_none());
}

fn namespace(k: &Kubectl, p: &str) {
    let ns = format!("{p}-doomed");
    // Its own finalizer keeps it until the test lets it go; the held
    // ConfigMap keeps a namespace controller from finishing early.
    k.create(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n  finalizers: [keel.test/hold]\n"
    ));
    k.create(&format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: held\n  namespace: {ns}\n  finalizers: [keel.test/hold]\n"
    ));
    let out = k.ok(&["delete", "ns", &ns, "--wait=false"]);
    assert!(
        out.contains(&format!("namespace \"{ns}\" deleted")),
        "{out}"
    );
    let got = k.json(&["ns", &ns]).expect("terminating");
    assert_eq!(got["status"]["phase"], "Terminating", "{got}");
    assert_eq!(
        got["spec"]["finalizers"],
        serde_json::json!(["kubernetes"]),
        "{got}"
    );
    assert!(got["metadata"]["deletionTimestamp"].is_string(), "{got}");
    let table = k.ok(&["get", "ns", &ns]);
    assert!(table.contains("Terminating"), "{table}");

    // kubectl prints Kubernetes' message: after `failed to create
    // configmap: ` for `create configmap`, after `Error from server
    // (Forbidden)` for `create -f`.
    let refused = |name: &str| {
        format!(
            "configmaps \"{name}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated"
        )
    };
    let err = k.fails(&[
        "create",
        "configmap",
        "late",
        "-n",
        &ns,
        "--from-literal=a=b",
    ]);
    assert!(err.contains(&refused("late")), "{err}");
    let out = output_with_stdin(
        k.command(&["create", "-f", "-"]),
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: later\n  namespace: {ns}\n")
            .as_bytes(),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("Error from server (Forbidden)"), "{err}");
    assert!(err.contains(&refused("later")), "{err}");

    // `delete ns` waits for the DELETED event.
    let log = k.server.dir().join(format!("{ns}.delete"));
    let mut waiting = KillOnDrop(
        k.command(&["delete", "ns", &ns, "--timeout=120s"])
            .stdout(File::create(&log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // The content goes (what a namespace controller does)...
    k.ok(&["delete", "cm", "held", "-n", &ns, "--wait=false"]);
    k.ok(&[
        "patch",
        "cm",
        "held",
        "-n",
        &ns,
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ]);
    assert!(k.json(&["cm", "held", "-n", &ns]).is_none());
    // ...then /finalize clears spec.finalizers...
    let mut fin = k.json(&["ns", &ns]).expect("held by keel.test/hold");
    fin["spec"]["finalizers"] = serde_json::json!([]);
    // Unconditional: a controller may write the namespace meanwhile.
    fin["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("resourceVersion");
    let file = k.server.dir().join(format!("{ns}.json"));
    std::fs::write(&file, fin.to_string()).unwrap();
    let out = k.ok(&[
        "replace",
        "--raw",
        &format!("/api/v1/namespaces/{ns}/finalize"),
        "-f",
        file.to_str().unwrap(),
    ]);
    let finalized: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        finalized["spec"]["finalizers"],
        serde_json::json!([]),
        "{out}"
    );
    assert_eq!(finalized["status"]["phase"], "Terminating", "{out}");
    assert!(
        k.json(&["ns", &ns]).is_some(),
        "its own finalizer still holds it"
    );
    assert!(
        waiting.0.try_wait().unwrap().is_none(),
        "delete --wait is still waiting"
    );
    // ...and its last finalizer going removes it.
    k.ok(&[
        "patch",
        "ns",
        &ns,
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ]);
    let status = wait_until("delete ns --wait to return", STEP, || {
        waiting.0.try_wait().unwrap()
    });
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
    let out = std::fs::read_to_string(&log).unwrap();
    assert!(
        out.contains(&format!("namespace \"{ns}\" deleted")),
        "{out}"
    );
    assert!(k.json(&["ns", &ns]).is_none());

    // The system's namespaces stay.
    let err = k.fails(&["delete", "ns", "kube-system"]);
    assert!(
        err.contains("namespaces \"kube-system\" is forbidden: this namespace may not be deleted"),
        "{err}"
    );
}

#[test]
fn kubectl_deletes_as_kubernetes_does() {
    let server = KeelServer::start(&[]);
    for (version, p) in [(None, "v133"), (Some("1.27"), "v127")] {
        let k = Kubectl {
            bin: kubectl_bin(version),
            server: &server,
        };
        cascade(&k, p);
        pods(&k, p);
        namespace(&k, p);
    }
}
