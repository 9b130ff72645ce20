//! Custom resources end to end with kubectl 1.33 and 1.27 against a real
//! `keel server`: a CRD is created and waited for (`kubectl wait
//! --for=condition=Established`), its objects created, listed with the
//! CRD's printer columns, patched (merge and server-side apply), scaled
//! through the scale subresource, given a status through `/status` (and
//! not through the object), selected by a selectable field; a second
//! version is served with the same objects, a deprecated one with a
//! warning; then the CRD is deleted, its objects go first (one held by a
//! finalizer holds the CRD), a watch sees them go, and the kind is no
//! longer served. Either kubectl missing fails the test.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use keel_tests::server::{KeelServer, kubectl_bin};
use keel_tests::wait_until;
use serde_json::Value;

/// One kubectl binary against the test's server, in its own namespace and
/// API group.
struct Kubectl<'a> {
    bin: PathBuf,
    server: &'a KeelServer,
    ns: &'static str,
    group: &'static str,
}

impl Kubectl<'_> {
    fn command(&self, args: &[&str]) -> Command {
        let home = self.server.dir().join(format!("home-{}", self.ns));
        let mut c = Command::new(&self.bin);
        c.arg("--kubeconfig")
            .arg(self.server.kubeconfig())
            .args(["-n", self.ns])
            .args(args)
            .env("HOME", &home)
            .env("KUBECACHEDIR", home.join("cache"));
        c
    }

    fn output(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Runs kubectl; a failure fails the test. Its stdout and stderr.
    fn run(&self, args: &[&str]) -> (String, String) {
        let out = self.output(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} ({}): {}\n{}\nserver log:\n{}",
            self.bin.display(),
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout),
            tail(&self.server.log()),
        );
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn ok(&self, args: &[&str]) -> String {
        self.run(args).0
    }

    /// Runs kubectl that must fail; its stderr.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.output(args);
        assert!(
            !out.status.success(),
            "kubectl {args:?} should fail: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&a)).unwrap()
    }

    /// Writes `text` (with `GROUP` replaced) to a file of the test.
    fn file(&self, name: &str, text: &str) -> String {
        let path = self.server.dir().join(format!("{}-{name}", self.ns));
        std::fs::write(&path, text.replace("GROUP", self.group)).unwrap();
        path.to_str().unwrap().to_string()
    }

    fn crd(&self) -> String {
        format!("crd/widgets.{}", self.group)
    }
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

const CRD: &str = r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.GROUP
spec:
  group: GROUP
  scope: Namespaced
  names:
    plural: widgets
    singular: widget
    kind: Widget
    shortNames: [wd]
  versions:
  - name: v1
    served: true
    storage: true
    subresources:
      status: {}
      scale:
        specReplicasPath: .spec.replicas
        statusReplicasPath: .status.replicas
        labelSelectorPath: .status.selector
    selectableFields:
    - jsonPath: .spec.color
    additionalPrinterColumns:
    - name: Replicas
      type: integer
      jsonPath: .spec.replicas
    - name: Color
      type: string
      jsonPath: .spec.color
    - name: Ready
      type: string
      jsonPath: .status.conditions[?(@.type=="Ready")].status
    - name: Age
      type: date
      jsonPath: .metadata.creationTimestamp
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              replicas: {type: integer}
              color: {type: string}
          status:
            type: object
            properties:
              replicas: {type: integer}
              selector: {type: string}
              conditions:
                type: array
                items:
                  type: object
                  properties:
                    type: {type: string}
                    status: {type: string}
"#;

/// The same CRD with v2 (now the storage version) and a deprecated
/// v1alpha1 added.
fn crd_v2() -> String {
    let schema = "    schema:\n      openAPIV3Schema:\n        type: object\n        x-kubernetes-preserve-unknown-fields: true\n";
    let mut text = CRD.replace("    storage: true\n", "    storage: false\n");
    text.push_str(&format!(
        "  - name: v2\n    served: true\n    storage: true\n{schema}"
    ));
    text.push_str(&format!(
        "  - name: v1alpha1\n    served: true\n    storage: false\n    deprecated: true\n    deprecationWarning: \"GROUP/v1alpha1 Widget is old; use GROUP/v1\"\n{schema}"
    ));
    text
}

fn widget(name: &str, replicas: u32, color: &str) -> String {
    format!(
        "apiVersion: GROUP/v1\nkind: Widget\nmetadata:\n  name: {name}\nspec:\n  replicas: {replicas}\n  color: {color}\n"
    )
}

/// The cells of the table row of `name` in `kubectl get` output, by
/// column (kubectl aligns columns; an empty cell is blank).
fn row(table: &str, name: &str) -> Vec<(String, String)> {
    let mut lines = table.lines();
    let header = lines.next().unwrap_or_default();
    let line = lines
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no row {name} in\n{table}"));
    let mut starts: Vec<(usize, &str)> = Vec::new();
    let mut at = 0;
    for h in header.split_whitespace() {
        let i = at + header[at..].find(h).unwrap();
        starts.push((i, h));
        at = i + h.len();
    }
    starts
        .iter()
        .enumerate()
        .map(|(n, (i, h))| {
            let end = starts
                .get(n + 1)
                .map_or(line.len(), |(j, _)| *j)
                .min(line.len());
            let cell = line.get((*i).min(line.len())..end).unwrap_or("").trim();
            (h.to_string(), cell.to_string())
        })
        .collect()
}

fn scenario(k: &Kubectl) {
    k.ok(&["create", "namespace", k.ns]);
    let crd = k.file("crd.yaml", CRD);
    let out = k.ok(&["create", "-f", &crd]);
    assert!(out.contains("created"), "{out}");
    k.ok(&[
        "wait",
        "--for=condition=Established",
        &k.crd(),
        "--timeout=60s",
    ]);
    let c = k.json(&["get", &k.crd()]);
    assert_eq!(c["status"]["acceptedNames"]["kind"], "Widget", "{c}");
    assert_eq!(c["status"]["storedVersions"], serde_json::json!(["v1"]));

    // Create and read, with the printer columns and the short name.
    let w1 = k.file("w1.yaml", &widget("w1", 1, "red"));
    k.ok(&["create", "-f", &w1]);
    let table = k.ok(&["get", "widgets"]);
    let cells = row(&table, "w1");
    let names: Vec<&str> = cells.iter().map(|(h, _)| h.as_str()).collect();
    assert_eq!(
        names,
        ["NAME", "REPLICAS", "COLOR", "READY", "AGE"],
        "{table}"
    );
    assert_eq!(cells[1].1, "1");
    assert_eq!(cells[2].1, "red");
    assert_eq!(cells[3].1, "", "no Ready condition: an empty cell");
    let w = k.json(&["get", "wd", "w1"]);
    assert_eq!(w["apiVersion"], format!("{}/v1", k.group));
    assert_eq!(w["metadata"]["generation"], 1);

    // Merge patch: a new generation.
    k.ok(&[
        "patch",
        "widget",
        "w1",
        "--type=merge",
        "-p",
        r#"{"spec":{"color":"blue"}}"#,
    ]);
    let w = k.json(&["get", "widget", "w1"]);
    assert_eq!(w["spec"]["color"], "blue");
    assert_eq!(w["metadata"]["generation"], 2);

    // Server-side apply creates, then changes its own field.
    let w2 = k.file("w2.yaml", &widget("w2", 2, "green"));
    let out = k.ok(&["apply", "--server-side", "-f", &w2]);
    assert!(out.contains("serverside-applied"), "{out}");
    let w2 = k.file("w2.yaml", &widget("w2", 5, "green"));
    k.ok(&["apply", "--server-side", "-f", &w2]);
    let w = k.json(&["get", "widget", "w2", "--show-managed-fields"]);
    assert_eq!(w["spec"]["replicas"], 5);
    assert!(
        w["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["manager"] == "kubectl" && m["operation"] == "Apply"),
        "{w}"
    );

    // Status only through /status.
    k.ok(&[
        "patch",
        "widget",
        "w1",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"replicas":1,"selector":"app=w1","conditions":[{"type":"Ready","status":"True"}]},"spec":{"color":"pink"}}"#,
    ]);
    k.ok(&[
        "patch",
        "widget",
        "w1",
        "--type=merge",
        "-p",
        r#"{"status":{"replicas":9}}"#,
    ]);
    let w = k.json(&["get", "widget", "w1"]);
    assert_eq!(w["status"]["replicas"], 1, "{w}");
    assert_eq!(w["spec"]["color"], "blue", "{w}");
    assert_eq!(w["metadata"]["generation"], 2, "{w}");
    let cells = row(&k.ok(&["get", "widgets"]), "w1");
    assert_eq!(cells[3].1, "True");

    // Scale through the scale subresource.
    let out = k.ok(&["scale", "widget", "w1", "--replicas=3"]);
    assert!(out.contains("scaled"), "{out}");
    assert_eq!(k.json(&["get", "widget", "w1"])["spec"]["replicas"], 3);
    let scale: Value = serde_json::from_str(&k.ok(&[
        "get",
        "--raw",
        &format!("/apis/{}/v1/namespaces/{}/widgets/w1/scale", k.group, k.ns),
    ]))
    .unwrap();
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["spec"]["replicas"], 3);
    assert_eq!(scale["status"]["replicas"], 1);
    assert_eq!(scale["status"]["selector"], "app=w1");

    // Field selectors: a selectable field, and one that is not.
    let out = k.ok(&[
        "get",
        "widgets",
        "--field-selector=spec.color=blue",
        "-o",
        "name",
    ]);
    assert_eq!(out.trim(), format!("widget.{}/w1", k.group));
    let err = k.fails(&["get", "widgets", "--field-selector=spec.replicas=3"]);
    assert!(err.contains("field label not supported"), "{err}");

    // A second version: stored as it from now on, every object served in
    // every version; a deprecated version warns.
    let crd2 = k.file("crd-v2.yaml", &crd_v2());
    k.ok(&["apply", "-f", &crd2]);
    wait_until("storedVersions v1 and v2", Duration::from_secs(30), || {
        let c = k.json(&["get", &k.crd()]);
        (c["status"]["storedVersions"] == serde_json::json!(["v1", "v2"])).then_some(())
    });
    let v2 = format!("widgets.v2.{}", k.group);
    wait_until("v2 served", Duration::from_secs(30), || {
        k.output(&["get", &v2, "w1"]).status.success().then_some(())
    });
    let w = k.json(&["get", &v2, "w1"]);
    assert_eq!(w["apiVersion"], format!("{}/v2", k.group));
    assert_eq!(w["spec"]["replicas"], 3);
    let w3 = k.file(
        "w3.yaml",
        &widget("w3", 1, "red").replace("GROUP/v1", "GROUP/v2"),
    );
    k.ok(&["create", "-f", &w3]);
    let w = k.json(&["get", &format!("widgets.v1.{}", k.group), "w3"]);
    assert_eq!(w["apiVersion"], format!("{}/v1", k.group));
    let (_, stderr) = k.run(&["get", &format!("widgets.v1alpha1.{}", k.group), "w1"]);
    assert!(
        stderr.contains(&format!(
            "{}/v1alpha1 Widget is old; use {}/v1",
            k.group, k.group
        )),
        "{stderr}"
    );

    // Delete the CRD: its objects go first, a finalizer holds it, a watch
    // sees them go, and then the kind is no longer served.
    k.ok(&[
        "patch",
        "widget",
        "w2",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":["example.com/hold"]}}"#,
    ]);
    let events = k.server.dir().join(format!("{}-watch.out", k.ns));
    let mut watch: Child = k
        .command(&["get", "widgets", "-w", "--output-watch-events"])
        .stdout(Stdio::from(std::fs::File::create(&events).unwrap()))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the watch to list", Duration::from_secs(30), || {
        std::fs::read_to_string(&events)
            .unwrap()
            .contains("w3")
            .then_some(())
    });
    k.ok(&["delete", &k.crd(), "--wait=false"]);
    wait_until("w1 and w3 to go", Duration::from_secs(30), || {
        let out = k.ok(&["get", "widgets", "-o", "name"]);
        (!out.contains("/w1") && !out.contains("/w3")).then_some(())
    });
    let c = k.json(&["get", &k.crd()]);
    assert!(
        c["metadata"]["finalizers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "customresourcecleanup.apiextensions.k8s.io"),
        "{c}"
    );
    let terminating = c["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["type"] == "Terminating")
        .cloned()
        .unwrap_or_else(|| panic!("no Terminating condition: {c}"));
    assert_eq!(terminating["status"], "True", "{c}");
    let err = k.fails(&["create", "-f", &w1]);
    assert!(
        err.contains("MethodNotAllowed") || err.contains("not allowed"),
        "{err}"
    );
    // The held object lets go: then the CRD goes.
    k.ok(&[
        "patch",
        "widget",
        "w2",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ]);
    wait_until("the CRD to go", Duration::from_secs(60), || {
        let out = k.output(&["get", &k.crd()]);
        let err = String::from_utf8_lossy(&out.stderr);
        (!out.status.success() && err.contains("NotFound")).then_some(())
    });
    wait_until(
        "DELETED events of every widget",
        Duration::from_secs(30),
        || {
            let out = std::fs::read_to_string(&events).unwrap();
            let deleted: Vec<&str> = out.lines().filter(|l| l.starts_with("DELETED")).collect();
            ["w1", "w2", "w3"]
                .iter()
                .all(|w| {
                    deleted
                        .iter()
                        .any(|l| l.split_whitespace().nth(1) == Some(*w))
                })
                .then_some(())
        },
    );
    // Its kind no longer served, the server ends the watch: kubectl returns.
    wait_until(
        "the watch of a kind no longer served to end",
        Duration::from_secs(30),
        || watch.try_wait().unwrap(),
    );
    wait_until("widgets no longer served", Duration::from_secs(30), || {
        let out = k.output(&["get", "widgets"]);
        let err = String::from_utf8_lossy(&out.stderr);
        // kubectl may still have the kind in its discovery cache: then the
        // server's 404 says it.
        let gone = err.contains("doesn't have a resource type")
            || err.contains("the server could not find the requested resource");
        (!out.status.success() && gone).then_some(())
    });
}

#[test]
fn custom_resources_with_kubectl_133_and_127() {
    let s = KeelServer::start(&[]);
    scenario(&Kubectl {
        bin: kubectl_bin(None),
        server: &s,
        ns: "k133",
        group: "k133.example.com",
    });
    scenario(&Kubectl {
        bin: kubectl_bin(Some("1.27")),
        server: &s,
        ns: "k127",
        group: "k127.example.com",
    });
}

/// The CRD status and serving survive a restart: a CRD stored before is
/// served at start, and a CRD whose names another holds is refused with
/// `NamesAccepted` false (its kind is taken) and is not served.
#[test]
fn crds_are_served_after_a_restart_and_conflicts_are_reported() {
    let s = KeelServer::start(&[]);
    let k = Kubectl {
        bin: kubectl_bin(None),
        server: &s,
        ns: "default",
        group: "r.example.com",
    };
    k.ok(&["create", "-f", &k.file("crd.yaml", CRD)]);
    k.ok(&[
        "wait",
        "--for=condition=Established",
        &k.crd(),
        "--timeout=60s",
    ]);
    k.ok(&["create", "-f", &k.file("w1.yaml", &widget("w1", 1, "red"))]);
    // Another CRD of the group asking for the same kind.
    let other = CRD
        .replace("widgets.GROUP", "gadgets.GROUP")
        .replace("plural: widgets", "plural: gadgets")
        .replace("singular: widget", "singular: gadget")
        .replace("shortNames: [wd]", "shortNames: [gd]");
    k.ok(&["create", "-f", &k.file("gadgets.yaml", &other)]);
    let gadgets = format!("crd/gadgets.{}", k.group);
    wait_until("the name conflict", Duration::from_secs(30), || {
        let c = k.json(&["get", &gadgets]);
        c["status"]["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|x| x["type"] == "NamesAccepted").cloned())
            .filter(|x| x["status"] == "False")
    });
    let c = k.json(&["get", &gadgets]);
    let names = c["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["type"] == "NamesAccepted")
        .unwrap()
        .clone();
    // Kind and list kind are both taken; Kubernetes reports the last.
    assert_eq!(names["reason"], "ListKindConflict", "{c}");
    let established = c["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["type"] == "Established")
        .unwrap()
        .clone();
    assert_eq!(established["status"], "False", "{c}");
    let err = k.fails(&["get", "gadgets"]);
    assert!(err.contains("doesn't have a resource type"), "{err}");

    // Restart on the same data: the widget is served again.
    drop(k);
    let mut s = s;
    s.restart();
    let k = Kubectl {
        bin: kubectl_bin(None),
        server: &s,
        ns: "default",
        group: "r.example.com",
    };
    wait_until(
        "widgets served after the restart",
        Duration::from_secs(30),
        || {
            k.output(&["get", "widget", "w1"])
                .status
                .success()
                .then_some(())
        },
    );
    assert_eq!(k.json(&["get", "widget", "w1"])["spec"]["color"], "red");
}
