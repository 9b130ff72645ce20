//! How clients see custom resources, with real kubectl 1.33 and 1.27 against
//! a `keel server`: a CRD's served versions appear in `/openapi/v3` and
//! `/openapi/v2` within a second of it becoming Established (and follow its
//! changes), `kubectl explain` shows their fields' descriptions (1.33 from
//! OpenAPI v3, 1.27 from the v2 protobuf as well), `kubectl get all` lists
//! the built-in kinds of category `all`, and a custom resource in `all` or
//! a category of its own is listed by `kubectl get <category>`.
//!
//! The tests that run `explain`, `get` or `create` on the custom resource
//! need it served (the CRD controller adds its kinds to discovery); the
//! documents themselves come from the stored CRD alone.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use keel_tests::server::{KeelServer, output_with_stdin};
use keel_tests::wait_until;
use serde_json::Value;

const KUBECTL_133: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.33";
const KUBECTL_127: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.27";

/// A CRD with two served versions (v1beta1 listed first, v1 stored and
/// preferred), descriptions on its fields, short names and categories.
const WIDGETS: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names:
    plural: widgets
    singular: widget
    kind: Widget
    shortNames: [wd]
    categories: [all, toys]
  versions:
  - name: v1beta1
    served: true
    storage: false
    schema:
      openAPIV3Schema:
        type: object
        description: An early widget.
        properties:
          spec:
            type: object
            x-kubernetes-preserve-unknown-fields: true
  - name: v1
    served: true
    storage: true
    subresources:
      status: {}
      scale:
        specReplicasPath: .spec.replicas
        statusReplicasPath: .status.replicas
    schema:
      openAPIV3Schema:
        type: object
        description: A widget made to order.
        properties:
          spec:
            type: object
            description: What the widget should be.
            required: [size]
            properties:
              size:
                type: integer
                minimum: 1
                description: How big the widget is, in centimetres.
              color:
                type: string
                nullable: true
                description: The paint of the widget.
              port:
                x-kubernetes-int-or-string: true
                description: Where the widget listens.
              replicas:
                type: integer
          status:
            type: object
            properties:
              replicas:
                type: integer
"#;

/// A kubectl binary; a missing one fails the test (`make deps` installs both).
fn bin(path: &str) -> &Path {
    let p = Path::new(path);
    assert!(p.is_file(), "{path} is missing; run `make deps`");
    p
}

/// kubectl `path` as the admin, with a home (and so a discovery and
/// OpenAPI cache) of its own per version.
fn kubectl(s: &KeelServer, path: &str, args: &[&str]) -> Command {
    let home = s
        .dir()
        .join(format!("home-{}", path.rsplit('.').next().unwrap_or("k")));
    let mut c = Command::new(bin(path));
    c.env("HOME", home)
        .arg("--kubeconfig")
        .arg(s.kubeconfig())
        .args(args);
    c
}

fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn run(s: &KeelServer, path: &str, args: &[&str]) -> String {
    ok(
        kubectl(s, path, args).output().unwrap(),
        &format!("{path} {args:?}"),
    )
}

fn apply(s: &KeelServer, path: &str, yaml: &str) -> String {
    let out = output_with_stdin(kubectl(s, path, &["apply", "-f", "-"]), yaml.as_bytes());
    ok(out, &format!("{path} apply -f - of\n{yaml}"))
}

/// A GET with curl as the admin: the body as JSON.
fn get_json(s: &KeelServer, path: &str) -> Value {
    let out = s.curl(&["-f", &format!("BASE{path}")]).output().unwrap();
    assert!(
        out.status.success(),
        "GET {path}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The `/openapi/v3` URL of `gv`, if the index lists it.
fn v3_url(s: &KeelServer, gv: &str) -> Option<String> {
    get_json(s, "/openapi/v3")["paths"][gv]["serverRelativeURL"]
        .as_str()
        .map(str::to_string)
}

/// Create the CRD and mark it Established through `/status`, as the CRD
/// controller does once its names are accepted.
fn establish(s: &KeelServer) {
    apply(s, KUBECTL_133, WIDGETS);
    run(
        s,
        KUBECTL_133,
        &[
            "patch",
            "crd",
            "widgets.example.com",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"conditions":[{"type":"NamesAccepted","status":"True","reason":"NoConflicts","message":"no conflicts found"},{"type":"Established","status":"True","reason":"InitialNamesAccepted","message":"the initial names have been accepted"}],"acceptedNames":{"plural":"widgets","singular":"widget","kind":"Widget","listKind":"WidgetList","shortNames":["wd"],"categories":["all","toys"]}}}"#,
        ],
    );
}

/// Change the description of `spec.size` in v1.
fn redescribe_size(s: &KeelServer, text: &str) {
    let patch = format!(
        r#"[{{"op":"replace","path":"/spec/versions/1/schema/openAPIV3Schema/properties/spec/properties/size/description","value":"{text}"}}]"#
    );
    run(
        s,
        KUBECTL_133,
        &[
            "patch",
            "crd",
            "widgets.example.com",
            "--type=json",
            "-p",
            &patch,
        ],
    );
}

#[test]
fn openapi_documents_follow_established_crds() {
    let s = KeelServer::start(&[]);
    // The CRD controller establishes it; `establish` writes the same status.
    establish(&s);
    let url = wait_until(
        "the CRD's v1 in /openapi/v3 within a second",
        Duration::from_secs(1),
        || v3_url(&s, "apis/example.com/v1"),
    );
    assert!(v3_url(&s, "apis/example.com/v1beta1").is_some());
    let doc = get_json(&s, &url);
    let widget = &doc["components"]["schemas"]["com.example.v1.Widget"];
    assert_eq!(
        widget["properties"]["spec"]["properties"]["size"]["description"],
        "How big the widget is, in centimetres."
    );
    assert_eq!(
        widget["x-kubernetes-group-version-kind"][0]["kind"],
        "Widget"
    );

    // A schema change gives a new URL (so kubectl's cache refreshes) at once.
    redescribe_size(&s, "How big the widget is, in inches.");
    let changed = v3_url(&s, "apis/example.com/v1").unwrap();
    assert_ne!(changed, url);
    let doc = get_json(&s, &changed);
    assert_eq!(
        doc["components"]["schemas"]["com.example.v1.Widget"]["properties"]["spec"]["properties"]["size"]
            ["description"],
        "How big the widget is, in inches."
    );

    let v2 = get_json(&s, "/openapi/v2");
    let def = &v2["definitions"]["com.example.v1.Widget"];
    assert_eq!(
        def["properties"]["spec"]["properties"]["size"]["description"],
        "How big the widget is, in inches."
    );
    // Swagger 2.0 has no nullable: the field is untyped there.
    assert!(
        def["properties"]["spec"]["properties"]["color"]
            .get("type")
            .is_none()
    );

    // kubectl 1.27 reads the whole v2 protobuf, CRD definitions included.
    let explained = run(
        &s,
        KUBECTL_127,
        &[
            "explain",
            "deployment.spec.replicas",
            "--output=plaintext-openapiv2",
        ],
    );
    assert!(explained.contains("replicas"), "{explained}");
    let explained = run(&s, KUBECTL_133, &["explain", "deployment.spec.replicas"]);
    assert!(explained.contains("replicas"), "{explained}");

    // Deleted: unpublished.
    run(
        &s,
        KUBECTL_133,
        &["delete", "crd", "widgets.example.com", "--wait=false"],
    );
    wait_until(
        "the CRD's versions to leave /openapi/v3",
        Duration::from_secs(30),
        || v3_url(&s, "apis/example.com/v1").is_none().then_some(()),
    );
}

#[test]
fn get_all_lists_the_builtin_kinds_of_category_all() {
    let s = KeelServer::start(&[]);
    run(&s, KUBECTL_133, &["create", "namespace", "shop"]);
    apply(
        &s,
        KUBECTL_133,
        r#"
apiVersion: v1
kind: Service
metadata: {name: front, namespace: shop}
spec:
  selector: {app: front}
  ports: [{port: 80}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: front, namespace: shop}
spec:
  replicas: 0
  selector: {matchLabels: {app: front}}
  template:
    metadata: {labels: {app: front}}
    spec: {containers: [{name: web, image: nginx}]}
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly, namespace: shop}
spec:
  schedule: "0 3 * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers: [{name: job, image: busybox}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: shop}
data: {a: b}
"#,
    );
    for k in [KUBECTL_133, KUBECTL_127] {
        let all = run(&s, k, &["get", "all", "-n", "shop", "-o", "name"]);
        for want in [
            "service/front",
            "deployment.apps/front",
            "cronjob.batch/nightly",
        ] {
            assert!(all.lines().any(|l| l == want), "{k}: {want} in\n{all}");
        }
        assert!(!all.contains("configmap"), "{k}: {all}");
    }
}

/// Needs the custom resource served (the CRD controller on branch w/crd).
#[test]
fn kubectl_explains_custom_resources_and_lists_their_categories() {
    let s = KeelServer::start(&[]);
    establish(&s);
    run(
        &s,
        KUBECTL_133,
        &[
            "wait",
            "--for=condition=Established",
            "crd/widgets.example.com",
            "--timeout=30s",
        ],
    );
    // The served kind reaches discovery when the CRD controller adds it.
    wait_until("widgets in discovery", Duration::from_secs(30), || {
        kubectl(
            &s,
            KUBECTL_133,
            &["api-resources", "--api-group=example.com"],
        )
        .output()
        .ok()
        .filter(|o| String::from_utf8_lossy(&o.stdout).contains("widgets"))
        .map(|_| ())
    });
    let resources = run(
        &s,
        KUBECTL_133,
        &["api-resources", "--api-group=example.com", "-o", "wide"],
    );
    assert!(
        resources.contains("wd") && resources.contains("all,toys"),
        "{resources}"
    );

    // 1.33: OpenAPI v3, the preferred version (v1) unless asked otherwise.
    let kind = run(&s, KUBECTL_133, &["explain", "widgets"]);
    assert!(
        kind.contains("Widget") && kind.contains("A widget made to order."),
        "{kind}"
    );
    assert!(kind.contains("VERSION:    v1\n"), "{kind}");
    let size = run(&s, KUBECTL_133, &["explain", "wd.spec.size"]);
    assert!(
        size.contains("How big the widget is, in centimetres.") && size.contains("integer"),
        "{size}"
    );
    let early = run(
        &s,
        KUBECTL_133,
        &["explain", "widgets", "--api-version=example.com/v1beta1"],
    );
    assert!(early.contains("An early widget."), "{early}");

    // 1.27: OpenAPI v3 by default, and the v2 protobuf.
    let spec = run(&s, KUBECTL_127, &["explain", "widgets.spec"]);
    assert!(spec.contains("What the widget should be."), "{spec}");
    let size = run(
        &s,
        KUBECTL_127,
        &[
            "explain",
            "widgets.spec.size",
            "--output=plaintext-openapiv2",
        ],
    );
    assert!(
        size.contains("How big the widget is, in centimetres."),
        "{size}"
    );

    // A changed schema is explained at once by both, through their caches.
    redescribe_size(&s, "How big the widget is, in inches.");
    let size = run(&s, KUBECTL_133, &["explain", "widgets.spec.size"]);
    assert!(size.contains("in inches."), "{size}");
    let size = run(
        &s,
        KUBECTL_127,
        &[
            "explain",
            "widgets.spec.size",
            "--output=plaintext-openapiv2",
        ],
    );
    assert!(size.contains("in inches."), "{size}");

    // Categories: `all` and the CRD's own.
    run(&s, KUBECTL_133, &["create", "namespace", "toyshop"]);
    apply(
        &s,
        KUBECTL_133,
        "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w1, namespace: toyshop}\nspec: {size: 3}\n",
    );
    apply(
        &s,
        KUBECTL_133,
        "apiVersion: v1\nkind: Service\nmetadata: {name: counter, namespace: toyshop}\nspec: {ports: [{port: 80}]}\n",
    );
    for k in [KUBECTL_133, KUBECTL_127] {
        let toys = run(&s, k, &["get", "toys", "-n", "toyshop", "-o", "name"]);
        assert_eq!(toys.trim(), "widget.example.com/w1", "{k}");
        let all = run(&s, k, &["get", "all", "-n", "toyshop", "-o", "name"]);
        assert!(
            all.lines().any(|l| l == "widget.example.com/w1")
                && all.lines().any(|l| l == "service/counter"),
            "{k}: {all}"
        );
    }
}
