//! `kubectl apply --server-side` against a real `keel server`, with kubectl
//! 1.33 and 1.27: create then update (`serverside-applied`), a conflict
//! with another manager and `--force-conflicts`, a field dropped from the
//! manifest removed, `--dry-run=server` and `diff --server-side` persisting
//! nothing, the migration of an object made by client-side `kubectl apply`,
//! and `-o yaml --show-managed-fields`. Every check reads the object back.

use std::path::PathBuf;
use std::process::{Command, Output};

use keel_tests::server::{KeelServer, kubectl_bin, output_with_stdin};
use serde_json::Value;

struct Ctl<'a> {
    s: &'a KeelServer,
    bin: PathBuf,
    ns: String,
}

impl Ctl<'_> {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.env("HOME", self.s.dir().join("home"))
            .arg("--kubeconfig")
            .arg(self.s.kubeconfig())
            .args(["-n", &self.ns])
            .args(args);
        c
    }

    /// kubectl `args` with `manifest` on stdin (for `-f -`).
    fn with(&self, args: &[&str], manifest: &str) -> Output {
        output_with_stdin(self.cmd(args), manifest.as_bytes())
    }

    /// Like [`Ctl::with`], and it must succeed; its stdout.
    fn ok(&self, args: &[&str], manifest: &str) -> String {
        let out = self.with(args, manifest);
        assert!(
            out.status.success(),
            "{} {args:?}: {}{}",
            self.bin.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn get(&self, what: &str) -> Value {
        serde_json::from_str(&self.ok(&["get", what, "-o", "json", "--show-managed-fields"], ""))
            .unwrap()
    }
}

/// The managers (`manager/operation`) of an object.
fn managers(obj: &Value) -> Vec<String> {
    obj["metadata"]["managedFields"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    format!(
                        "{}/{}",
                        e["manager"].as_str().unwrap(),
                        e["operation"].as_str().unwrap()
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn deployment(replicas: u32, image: &str, env: &[(&str, &str)]) -> String {
    let env: String = env
        .iter()
        .map(|(k, v)| format!("        - name: {k}\n          value: \"{v}\"\n"))
        .collect();
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels:
    app: web
spec:
  replicas: {replicas}
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: app
        image: {image}
        env:
{env}"
    )
}

fn configmap(name: &str, data: &[(&str, &str)]) -> String {
    let data: String = data
        .iter()
        .map(|(k, v)| format!("  {k}: \"{v}\"\n"))
        .collect();
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n{data}")
}

fn scenario(s: &KeelServer, version: Option<&str>, ns: &str) {
    let c = Ctl {
        s,
        bin: kubectl_bin(version),
        ns: ns.into(),
    };
    c.ok(&["create", "namespace", ns], "");
    let ssa = ["apply", "--server-side", "-f", "-"];

    // Create, then update; both print serverside-applied.
    let v1 = deployment(2, "nginx:1", &[("A", "1"), ("B", "2")]);
    let out = c.ok(&ssa, &v1);
    assert!(
        out.contains("deployment.apps/web serverside-applied"),
        "{out}"
    );
    let d = c.get("deployment/web");
    assert_eq!(d["spec"]["replicas"], 2);
    assert!(
        managers(&d).contains(&"kubectl/Apply".to_string()),
        "{:?}",
        managers(&d)
    );
    let v2 = deployment(2, "nginx:2", &[("A", "1")]);
    let out = c.ok(&ssa, &v2);
    assert!(out.contains("serverside-applied"), "{out}");
    let d = c.get("deployment/web");
    let container = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "nginx:2");
    // The env var dropped from the manifest is gone.
    assert_eq!(container["env"].as_array().unwrap().len(), 1, "{container}");
    assert_eq!(container["env"][0]["name"], "A");

    // Another manager changes replicas: applying a different value fails
    // with the conflict printed; --force-conflicts takes the field.
    c.ok(
        &[
            "patch",
            "deployment",
            "web",
            "--type=merge",
            "-p",
            r#"{"spec":{"replicas":5}}"#,
        ],
        "",
    );
    let v3 = deployment(3, "nginx:2", &[("A", "1")]);
    let out = c.with(&ssa, &v3);
    assert!(!out.status.success(), "a conflicting apply succeeded");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Apply failed with 1 conflict"), "{err}");
    assert!(err.contains("conflict with \"kubectl-patch\""), "{err}");
    assert!(err.contains(".spec.replicas"), "{err}");
    assert_eq!(c.get("deployment/web")["spec"]["replicas"], 5);
    let out = c.ok(
        &["apply", "--server-side", "--force-conflicts", "-f", "-"],
        &v3,
    );
    assert!(out.contains("serverside-applied"), "{out}");
    let d = c.get("deployment/web");
    assert_eq!(d["spec"]["replicas"], 3);
    assert!(
        !managers(&d).iter().any(|m| m.starts_with("kubectl-patch/")),
        "{:?}",
        managers(&d)
    );

    // A server-side dry run and a server-side diff persist nothing.
    let rv = d["metadata"]["resourceVersion"].clone();
    let v4 = deployment(4, "nginx:3", &[("A", "1")]);
    let out = c.ok(
        &["apply", "--server-side", "--dry-run=server", "-f", "-"],
        &v4,
    );
    assert!(out.contains("serverside-applied (server dry run)"), "{out}");
    let diff = c.with(&["diff", "--server-side", "-f", "-"], &v4);
    let text = String::from_utf8_lossy(&diff.stdout);
    assert_eq!(
        diff.status.code(),
        Some(1),
        "diff: {text}{}",
        String::from_utf8_lossy(&diff.stderr)
    );
    assert!(
        text.contains("-  replicas: 3") && text.contains("+  replicas: 4"),
        "{text}"
    );
    assert!(text.contains("image: nginx:3"), "{text}");
    let d = c.get("deployment/web");
    assert_eq!(d["spec"]["replicas"], 3);
    assert_eq!(d["metadata"]["resourceVersion"], rv);
    // Nothing to apply: diff is empty and exits 0.
    let same = c.with(&["diff", "--server-side", "-f", "-"], &v3);
    assert_eq!(
        same.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&same.stdout)
    );

    // --show-managed-fields shows the managers.
    let yaml = c.ok(
        &[
            "get",
            "deployment",
            "web",
            "-o",
            "yaml",
            "--show-managed-fields",
        ],
        "",
    );
    assert!(yaml.contains("managedFields:"), "{yaml}");
    assert!(yaml.contains("manager: kubectl\n"), "{yaml}");
    assert!(yaml.contains("operation: Apply"), "{yaml}");
    assert!(yaml.contains("f:replicas: {}"), "{yaml}");

    // From client-side apply to server-side apply: the fields the
    // client-side applier set move to the server-side applier, so a key
    // dropped from the manifest is removed on the first server-side apply.
    let legacy = configmap("legacy", &[("k1", "1"), ("k2", "2")]);
    let out = c.ok(&["apply", "-f", "-"], &legacy);
    assert!(out.contains("configmap/legacy created"), "{out}");
    let cm = c.get("configmap/legacy");
    assert!(
        managers(&cm).contains(&"kubectl-client-side-apply/Update".to_string()),
        "{:?}",
        managers(&cm)
    );
    let annotations = &cm["metadata"]["annotations"];
    assert!(annotations["kubectl.kubernetes.io/last-applied-configuration"].is_string());
    let out = c.ok(&ssa, &configmap("legacy", &[("k1", "one")]));
    assert!(out.contains("configmap/legacy serverside-applied"), "{out}");
    let cm = c.get("configmap/legacy");
    assert_eq!(cm["data"], serde_json::json!({"k1": "one"}), "{cm}");
    let m = managers(&cm);
    assert!(m.contains(&"kubectl/Apply".to_string()), "{m:?}");
    assert!(
        !m.contains(&"kubectl-client-side-apply/Update".to_string()),
        "{m:?}"
    );
    // A second server-side apply of the same manifest changes nothing.
    let rv = cm["metadata"]["resourceVersion"].clone();
    c.ok(&ssa, &configmap("legacy", &[("k1", "one")]));
    assert_eq!(c.get("configmap/legacy")["metadata"]["resourceVersion"], rv);
}

/// A server whose deployment controller leaves the test's Deployment alone:
/// the scenario compares resourceVersions and `kubectl diff` output, which
/// the controller's own writes (status, the revision annotation) would
/// change under it.
fn server() -> KeelServer {
    KeelServer::start(&[&"--enabled-controllers", &"*,-deployment"])
}

#[test]
fn kubectl_1_33_apply_server_side() {
    let s = server();
    scenario(&s, None, "ssa-133");
}

#[test]
fn kubectl_1_27_apply_server_side() {
    let s = server();
    scenario(&s, Some("1.27"), "ssa-127");
}
