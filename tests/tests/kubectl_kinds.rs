//! The kinds where Kubernetes accepts more than the basics, driven by real
//! kubectl (1.33 and 1.27) against a `keel server`: Ingress, IngressClass,
//! PodDisruptionBudget, HorizontalPodAutoscaler (autoscaling/v2 and v1 from
//! one store) and PriorityClass created imperatively and from YAML, printed
//! with Kubernetes' columns, refused with its field errors; Events shared by
//! `v1` and `events.k8s.io/v1` (reads, field selectors, watches,
//! resourceVersions); and YAML request bodies over raw HTTP.

use std::path::Path;
use std::process::{Command, Output};

use keel_tests::server::{KeelServer, kubectl_bin, output_with_stdin};
use serde_json::Value;

/// A kubectl (`None`: /usr/bin/kubectl, 1.33) as the admin, with its own home.
fn kubectl(s: &KeelServer, bin: Option<&Path>, args: &[&str]) -> Command {
    let (mut c, home) = match bin {
        Some(b) => (Command::new(b), "home-old"),
        None => (keel_tests::server::kubectl(), "home"),
    };
    c.env("HOME", s.dir().join(home))
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

fn run(s: &KeelServer, bin: Option<&Path>, args: &[&str]) -> String {
    ok(
        kubectl(s, bin, args).output().unwrap(),
        &format!("kubectl {args:?}"),
    )
}

/// The stderr of a kubectl command that must fail.
fn fails(s: &KeelServer, bin: Option<&Path>, args: &[&str], input: Option<&str>) -> String {
    let c = kubectl(s, bin, args);
    let out = match input {
        Some(i) => output_with_stdin(c, i.as_bytes()),
        None => {
            let mut c = c;
            c.output().unwrap()
        }
    };
    assert!(!out.status.success(), "kubectl {args:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn apply_stdin(s: &KeelServer, bin: Option<&Path>, verb: &str, yaml: &str) -> String {
    let out = output_with_stdin(kubectl(s, bin, &[verb, "-f", "-"]), yaml.as_bytes());
    ok(out, &format!("kubectl {verb} -f - of\n{yaml}"))
}

fn json(s: &KeelServer, args: &[&str]) -> Value {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", "json"]);
    serde_json::from_str(&run(s, None, &all)).unwrap()
}

/// A raw GET through kubectl, as JSON.
fn raw(s: &KeelServer, path: &str) -> Value {
    serde_json::from_str(&run(s, None, &["get", "--raw", path])).unwrap()
}

/// The header and the row of `name` of a `kubectl get` table, cut at the
/// header's column starts (headers such as `MIN AVAILABLE` hold one space,
/// cells may be empty).
fn table(out: &str, name: &str) -> (Vec<String>, Vec<String>) {
    let mut lines = out.lines();
    let head = lines.next().unwrap_or("");
    let mut starts = Vec::new();
    let bytes = head.as_bytes();
    for i in 0..bytes.len() {
        let after_gap = i == 0 || (i >= 2 && bytes[i - 1] == b' ' && bytes[i - 2] == b' ');
        if bytes[i] != b' ' && after_gap {
            starts.push(i);
        }
    }
    let cut = |l: &str| -> Vec<String> {
        starts
            .iter()
            .enumerate()
            .map(|(k, &a)| {
                let b = starts.get(k + 1).copied().unwrap_or(l.len()).min(l.len());
                l.get(a.min(l.len())..b).unwrap_or("").trim().to_string()
            })
            .collect()
    };
    let header = cut(head);
    let row = lines
        .map(cut)
        .find(|r| r.first().is_some_and(|c| c == name))
        .unwrap_or_else(|| panic!("no row {name} in\n{out}"));
    (header, row)
}

/// The columns of a table without AGE (whose value changes with time).
fn without_age(header: &[String], row: &[String]) -> (Vec<String>, Vec<String>) {
    let age = header.iter().position(|h| h == "AGE");
    let keep = |v: &[String]| {
        v.iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != age)
            .map(|(_, c)| c.clone())
            .collect()
    };
    (keep(header), keep(row))
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// `create ingress|pdb|priorityclass` and `autoscale`, then each printed
/// as Kubernetes prints it; run with kubectl 1.27, whose bodies are JSON.
fn imperative_creates(s: &KeelServer, bin: Option<&Path>, suffix: &str) {
    let ing = format!("simple{suffix}");
    run(
        s,
        bin,
        &[
            "create",
            "ingress",
            &ing,
            "--class=nginx",
            "--rule=foo.com/bar=svc1:8080,tls=my-cert",
            "--rule=bar.com/*=svc2:http",
        ],
    );
    let (h, r) = table(&run(s, bin, &["get", "ingress", &ing]), &ing);
    assert_eq!(
        without_age(&h, &r),
        (
            strs(&["NAME", "CLASS", "HOSTS", "ADDRESS", "PORTS"]),
            vec![
                ing.clone(),
                "nginx".into(),
                "foo.com,bar.com".into(),
                "".into(),
                "80, 443".into()
            ]
        )
    );
    let stored = json(s, &["ingress", &ing]);
    assert_eq!(
        stored["spec"]["rules"][0]["http"]["paths"][0]["pathType"],
        "Exact"
    );
    assert_eq!(
        stored["spec"]["rules"][1]["http"]["paths"][0]["pathType"],
        "Prefix"
    );
    assert_eq!(
        stored["spec"]["rules"][1]["http"]["paths"][0]["backend"]["service"]["port"]["name"],
        "http"
    );

    let pdb = format!("budget{suffix}");
    run(
        s,
        bin,
        &[
            "create",
            "pdb",
            &pdb,
            "--selector=app=rails",
            "--min-available=1",
        ],
    );
    let (h, r) = table(&run(s, bin, &["get", "pdb", &pdb]), &pdb);
    assert_eq!(
        without_age(&h, &r),
        (
            strs(&[
                "NAME",
                "MIN AVAILABLE",
                "MAX UNAVAILABLE",
                "ALLOWED DISRUPTIONS"
            ]),
            vec![pdb.clone(), "1".into(), "N/A".into(), "0".into()]
        )
    );

    let pc = format!("high{suffix}");
    run(
        s,
        bin,
        &[
            "create",
            "priorityclass",
            &pc,
            "--value=1000",
            "--description=high priority",
        ],
    );
    let (h, r) = table(&run(s, bin, &["get", "pc", &pc]), &pc);
    assert_eq!(
        without_age(&h, &r),
        (
            strs(&["NAME", "VALUE", "GLOBAL-DEFAULT", "PREEMPTIONPOLICY"]),
            vec![
                pc.clone(),
                "1000".into(),
                "false".into(),
                "PreemptLowerPriority".into()
            ]
        )
    );
    assert_eq!(h.iter().position(|c| c == "AGE"), Some(3), "{h:?}");

    let deploy = format!("web{suffix}");
    run(s, bin, &["create", "deployment", &deploy, "--image=nginx"]);
    run(
        s,
        bin,
        &[
            "autoscale",
            "deployment",
            &deploy,
            "--min=2",
            "--max=5",
            "--cpu-percent=60",
        ],
    );
    let (h, r) = table(&run(s, bin, &["get", "hpa", &deploy]), &deploy);
    assert_eq!(
        without_age(&h, &r),
        (
            strs(&[
                "NAME",
                "REFERENCE",
                "TARGETS",
                "MINPODS",
                "MAXPODS",
                "REPLICAS"
            ]),
            vec![
                deploy.clone(),
                format!("Deployment/{deploy}"),
                "cpu: <unknown>/60%".into(),
                "2".into(),
                "5".into(),
                "0".into()
            ]
        )
    );
    // One object under both versions.
    let v2 = raw(
        s,
        &format!("/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers/{deploy}"),
    );
    let v1 = raw(
        s,
        &format!("/apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers/{deploy}"),
    );
    assert_eq!(
        v2["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
        60
    );
    assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 60);
    assert_eq!(
        v1["metadata"]["resourceVersion"],
        v2["metadata"]["resourceVersion"]
    );
    assert!(
        run(s, bin, &["get", "all"])
            .contains(&format!("horizontalpodautoscaler.autoscaling/{deploy}"))
    );
}

#[test]
fn new_kinds_with_kubectl_1_27_and_yaml_files() {
    let s = KeelServer::start(&[]);
    let old = kubectl_bin(Some("1.27"));
    imperative_creates(&s, Some(&old), "");

    // The system priority classes exist from the start.
    let pcs = run(&s, None, &["get", "priorityclasses"]);
    assert!(
        pcs.contains("system-node-critical") && pcs.contains("2000001000"),
        "{pcs}"
    );
    assert!(
        pcs.contains("system-cluster-critical") && pcs.contains("2000000000"),
        "{pcs}"
    );
    // A priority class keeps its value.
    let err = fails(
        &s,
        None,
        &[
            "patch",
            "pc",
            "high",
            "--type=merge",
            "-p",
            r#"{"value":5}"#,
        ],
        None,
    );
    assert!(
        err.contains("value: Forbidden: may not be changed in an update."),
        "{err}"
    );
    let err = fails(
        &s,
        Some(&old),
        &["create", "priorityclass", "too-high", "--value=1000000001"],
        None,
    );
    assert!(
        err.contains("maximum allowed value of a user defined priority is 1000000000"),
        "{err}"
    );

    // `create -f` of each kind, with both kubectl versions.
    let files = r#"apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata:
  name: nginx
spec:
  controller: k8s.io/ingress-nginx
  parameters:
    apiGroup: k8s.example.com
    kind: IngressParameters
    name: external-lb
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: from-file
spec:
  ingressClassName: nginx
  defaultBackend:
    service: {name: web, port: {number: 80}}
  rules:
  - host: "*.example.com"
    http:
      paths:
      - {path: /api, pathType: Prefix, backend: {service: {name: api, port: {name: http}}}}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: from-file
spec:
  maxUnavailable: 25%
  selector: {matchLabels: {app: web}}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: from-file
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  maxReplicas: 4
  metrics:
  - type: Resource
    resource: {name: memory, target: {type: AverageValue, averageValue: 100Mi}}
  behavior:
    scaleDown: {stabilizationWindowSeconds: 60}
---
apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata:
  name: from-file
value: 10
preemptionPolicy: Never
description: batch
"#;
    let out = apply_stdin(&s, None, "create", files);
    for created in [
        "ingressclass.networking.k8s.io/nginx created",
        "ingress.networking.k8s.io/from-file created",
        "poddisruptionbudget.policy/from-file created",
        "horizontalpodautoscaler.autoscaling/from-file created",
        "priorityclass.scheduling.k8s.io/from-file created",
    ] {
        assert!(out.contains(created), "{out}");
    }
    let (h, r) = table(&run(&s, None, &["get", "ingressclass", "nginx"]), "nginx");
    assert_eq!(
        without_age(&h, &r),
        (
            strs(&["NAME", "CONTROLLER", "PARAMETERS"]),
            strs(&[
                "nginx",
                "k8s.io/ingress-nginx",
                "IngressParameters.k8s.example.com/external-lb"
            ])
        )
    );
    assert_eq!(
        json(&s, &["ingressclass", "nginx"])["spec"]["parameters"]["scope"],
        "Cluster"
    );
    let (_, r) = table(&run(&s, None, &["get", "ing", "from-file"]), "from-file");
    assert_eq!(r[1..5], strs(&["nginx", "*.example.com", "", "80"]));
    let (_, r) = table(&run(&s, None, &["get", "pdb", "from-file"]), "from-file");
    assert_eq!(r[1..4], strs(&["N/A", "25%", "0"]));
    let hpa = json(&s, &["hpa", "from-file"]);
    assert_eq!(hpa["spec"]["minReplicas"], 1);
    assert_eq!(
        hpa["spec"]["behavior"]["scaleDown"]["policies"][0]["type"],
        "Percent"
    );
    assert_eq!(hpa["spec"]["behavior"]["scaleUp"]["selectPolicy"], "Max");
    let (_, r) = table(&run(&s, None, &["get", "hpa", "from-file"]), "from-file");
    assert_eq!(
        r[1..3],
        strs(&["Deployment/web", "memory: <unknown>/100Mi"])
    );
    // Read as autoscaling/v1, the memory metric rides in an annotation.
    let v1 = raw(
        &s,
        "/apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers/from-file",
    );
    assert!(
        v1["metadata"]["annotations"]["autoscaling.alpha.kubernetes.io/metrics"]
            .as_str()
            .is_some_and(|m| m.contains("memory")),
        "{v1}"
    );
    let old_file = "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata:\n  name: from-127\nspec:\n  minAvailable: 2\n";
    assert!(apply_stdin(&s, Some(&old), "create", old_file).contains("from-127 created"));

    // Refusals carry Kubernetes' field paths and messages.
    let bad = "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: bad\nspec:\n  rules:\n  - host: 10.0.0.1\n    http:\n      paths:\n      - path: /a\n        backend: {service: {name: s, port: {number: 80}}}\n";
    let err = fails(&s, None, &["create", "-f", "-"], Some(bad));
    assert!(err.contains(r#"The Ingress "bad" is invalid"#), "{err}");
    assert!(err.contains(r#"spec.rules[0].host: Invalid value: "10.0.0.1": must be a DNS name, not an IP address"#), "{err}");
    assert!(
        err.contains(
            "spec.rules[0].http.paths[0].pathType: Required value: pathType must be specified"
        ),
        "{err}"
    );
    let bad = "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata:\n  name: bad\nspec:\n  minAvailable: 1\n  maxUnavailable: 120%\n";
    let err = fails(&s, None, &["create", "-f", "-"], Some(bad));
    assert!(
        err.contains("minAvailable and maxUnavailable cannot be both set"),
        "{err}"
    );
    assert!(
        err.contains(
            r#"spec.maxUnavailable: Invalid value: "120%": must not be greater than 100%"#
        ),
        "{err}"
    );
    let bad = "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata:\n  name: bad\nspec:\n  scaleTargetRef: {kind: Deployment, name: web}\n  minReplicas: 3\n  maxReplicas: 2\n";
    let err = fails(&s, None, &["create", "-f", "-"], Some(bad));
    assert!(
        err.contains(
            "spec.maxReplicas: Invalid value: 2: must be greater than or equal to `minReplicas`"
        ),
        "{err}"
    );

    // Discovery: short names, categories and both autoscaling versions.
    let res = run(&s, None, &["api-resources"]);
    for (short, name) in [
        ("ing", "ingresses"),
        ("pdb", "poddisruptionbudgets"),
        ("hpa", "horizontalpodautoscalers"),
        ("pc", "priorityclasses"),
    ] {
        assert!(
            res.lines()
                .any(|l| l.starts_with(name) && l.split_whitespace().nth(1) == Some(short)),
            "{name} {short}: {res}"
        );
    }
    let versions = run(&s, None, &["api-versions"]);
    for v in [
        "autoscaling/v1",
        "autoscaling/v2",
        "policy/v1",
        "scheduling.k8s.io/v1",
        "events.k8s.io/v1",
    ] {
        assert!(versions.lines().any(|l| l == v), "{v}: {versions}");
    }
    let explain = run(&s, None, &["explain", "hpa.spec.metrics"]);
    assert!(
        explain.contains("averageUtilization") || explain.contains("resource"),
        "{explain}"
    );
}

/// Events are one store behind `v1` and `events.k8s.io/v1`.
#[test]
fn events_are_one_store_under_both_apis() {
    let s = KeelServer::start(&[]);
    let get = |path: &str| -> Value {
        serde_json::from_str(&run(&s, None, &["get", "--raw", path])).unwrap()
    };
    let before = get("/api/v1/namespaces/default/events")["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();

    // Through events.k8s.io/v1, read through v1 (kubectl get events).
    let new_style = r#"apiVersion: events.k8s.io/v1
kind: Event
metadata:
  name: pulled.1
  namespace: default
eventTime: "2026-01-01T00:00:00.000000Z"
type: Warning
reason: FailedPull
action: Pulling
note: image not found
reportingController: example.com/puller
reportingInstance: puller-1
regarding: {kind: Pod, name: web-1, namespace: default}
"#;
    apply_stdin(&s, None, "create", new_style);
    let events = run(&s, None, &["get", "events"]);
    let (_, r) = table(&events, "pulled.1");
    assert!(
        r.contains(&"FailedPull".to_string())
            && r.contains(&"web-1".to_string())
            && r.contains(&"image not found".to_string()),
        "{events}"
    );
    let v1 = get("/api/v1/namespaces/default/events/pulled.1");
    assert_eq!(v1["apiVersion"], "v1");
    assert_eq!(v1["involvedObject"]["name"], "web-1");
    assert_eq!(v1["message"], "image not found");
    assert_eq!(v1["reportingComponent"], "example.com/puller");
    assert_eq!(v1["reportingInstance"], "puller-1");

    // Through v1, read through events.k8s.io/v1.
    let old_style = r#"apiVersion: v1
kind: Event
metadata:
  name: started.1
  namespace: default
involvedObject: {kind: Pod, name: web-2, namespace: default}
reason: Started
message: container started
source: {component: kubelet, host: node-1}
firstTimestamp: "2026-01-01T00:00:00Z"
lastTimestamp: "2026-01-01T00:00:09Z"
count: 3
type: Normal
"#;
    apply_stdin(&s, None, "create", old_style);
    let ev = json(&s, &["events.v1.events.k8s.io", "started.1"]);
    assert_eq!(ev["apiVersion"], "events.k8s.io/v1");
    assert_eq!(ev["regarding"]["name"], "web-2");
    assert_eq!(ev["note"], "container started");
    assert_eq!(ev["deprecatedSource"]["component"], "kubelet");
    assert_eq!(ev["deprecatedCount"], 3);
    assert_eq!(ev["deprecatedLastTimestamp"], "2026-01-01T00:00:09Z");
    let v1 = get("/api/v1/namespaces/default/events/started.1");
    assert_eq!(
        ev["metadata"]["resourceVersion"],
        v1["metadata"]["resourceVersion"]
    );
    assert_eq!(ev["metadata"]["uid"], v1["metadata"]["uid"]);

    // Field selectors in each version's names.
    let names = |list: &Value| -> Vec<String> {
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        names(&get(
            "/apis/events.k8s.io/v1/namespaces/default/events?fieldSelector=regarding.name%3Dweb-2"
        )),
        ["started.1"]
    );
    assert_eq!(
        names(&get(
            "/api/v1/namespaces/default/events?fieldSelector=involvedObject.name%3Dweb-1"
        )),
        ["pulled.1"]
    );
    let sel = run(
        &s,
        None,
        &[
            "get",
            "events",
            "--field-selector",
            "reason=Started",
            "-o",
            "name",
        ],
    );
    assert_eq!(sel.trim(), "event/started.1");

    // Watches from before both creations see both, in each version's form.
    for (path, field, expected) in [
        (
            "/apis/events.k8s.io/v1/namespaces/default/events",
            "note",
            "image not found",
        ),
        (
            "/api/v1/namespaces/default/events",
            "message",
            "image not found",
        ),
    ] {
        let url = format!("BASE{path}?watch=1&resourceVersion={before}&timeoutSeconds=2");
        let out = ok(
            s.curl(&["--max-time", "20", &url]).output().unwrap(),
            "watch",
        );
        let lines: Vec<Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let added: Vec<&Value> = lines
            .iter()
            .filter(|l| l["type"] == "ADDED")
            .map(|l| &l["object"])
            .collect();
        assert_eq!(added.len(), 2, "{out}");
        assert_eq!(added[0][field], expected, "{out}");
        assert_eq!(
            added[1]["metadata"]["resourceVersion"],
            v1["metadata"]["resourceVersion"]
        );
    }

    // The newer API validates strictly; an update through it keeps its fields.
    let err = fails(
        &s,
        None,
        &["create", "-f", "-"],
        Some(
            "apiVersion: events.k8s.io/v1\nkind: Event\nmetadata:\n  name: bare\nregarding: {kind: Pod, name: p, namespace: default}\n",
        ),
    );
    assert!(err.contains("eventTime: Required value"), "{err}");
    let err = fails(
        &s,
        None,
        &[
            "patch",
            "events.v1.events.k8s.io",
            "pulled.1",
            "--type=merge",
            "-p",
            r#"{"note":"other"}"#,
        ],
        None,
    );
    assert!(
        err.contains("note: Invalid value: field is immutable") || err.contains("note"),
        "{err}"
    );
    run(
        &s,
        None,
        &[
            "patch",
            "events.v1.events.k8s.io",
            "pulled.1",
            "--type=merge",
            "-p",
            r#"{"series":{"count":2,"lastObservedTime":"2026-01-01T00:05:00.000000Z"}}"#,
        ],
    );
    assert_eq!(
        get("/api/v1/namespaces/default/events/pulled.1")["series"]["count"],
        2
    );
    // Deleted through one, gone from both.
    run(
        &s,
        None,
        &["delete", "events.v1.events.k8s.io", "started.1"],
    );
    let gone = kubectl(&s, None, &["get", "event", "started.1"])
        .output()
        .unwrap();
    assert!(!gone.status.success());
}

/// `application/yaml` bodies for create and update; a bad one is a 400 Status.
#[test]
fn yaml_request_bodies() {
    let s = KeelServer::start(&[]);
    let send = |method: &str, path: &str, body: &str| -> (u16, Value) {
        let out = s
            .curl(&[
                "-X",
                method,
                "-H",
                "Content-Type: application/yaml",
                "--data-binary",
                body,
                "-w",
                "\n%{http_code}",
                &format!("BASE{path}"),
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap();
        (
            code.trim().parse().unwrap(),
            serde_json::from_str(body).unwrap_or(Value::Null),
        )
    };
    let (code, cm) = send(
        "POST",
        "/api/v1/namespaces/default/configmaps",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: yml\ndata:\n  a: \"1\"\n",
    );
    assert_eq!(code, 201, "{cm}");
    let rv = cm["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, cm) = send(
        "PUT",
        "/api/v1/namespaces/default/configmaps/yml",
        &format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: yml\n  resourceVersion: \"{rv}\"\ndata:\n  a: \"2\"\n"
        ),
    );
    assert_eq!((code, cm["data"]["a"].clone()), (200, "2".into()), "{cm}");
    for (path, body) in [
        (
            "/apis/networking.k8s.io/v1/namespaces/default/ingresses",
            "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: yml}\nspec:\n  defaultBackend: {service: {name: web, port: {number: 80}}}\n",
        ),
        (
            "/apis/policy/v1/namespaces/default/poddisruptionbudgets",
            "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: yml}\nspec: {minAvailable: 1}\n",
        ),
        (
            "/apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers",
            "apiVersion: autoscaling/v1\nkind: HorizontalPodAutoscaler\nmetadata: {name: yml}\nspec: {scaleTargetRef: {kind: Deployment, name: w}, maxReplicas: 3, targetCPUUtilizationPercentage: 70}\n",
        ),
        (
            "/apis/scheduling.k8s.io/v1/priorityclasses",
            "apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata: {name: yml}\nvalue: 5\n",
        ),
        (
            "/apis/events.k8s.io/v1/namespaces/default/events",
            "apiVersion: events.k8s.io/v1\nkind: Event\nmetadata: {name: yml}\neventTime: \"2026-01-01T00:00:00.000000Z\"\ntype: Normal\nreason: R\naction: A\nreportingController: example.com/c\nreportingInstance: i\nregarding: {kind: Pod, name: p, namespace: default}\n",
        ),
    ] {
        let (code, obj) = send("POST", path, body);
        assert_eq!(code, 201, "{path}: {obj}");
    }
    // The autoscaling/v1 object, read as v2.
    let hpa = serde_json::from_str::<Value>(&run(
        &s,
        None,
        &[
            "get",
            "--raw",
            "/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers/yml",
        ],
    ))
    .unwrap();
    assert_eq!(
        hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
        70
    );
    for bad in [
        "a: [1",
        "kind: ConfigMap\n  bad: indent\n x",
        "- just\n- a list\n",
    ] {
        let (code, status) = send("POST", "/api/v1/namespaces/default/configmaps", bad);
        assert_eq!(code, 400, "{bad}: {status}");
        assert_eq!(
            (status["kind"].clone(), status["reason"].clone()),
            ("Status".into(), "BadRequest".into()),
            "{status}"
        );
    }
}

/// kubectl 1.33 sends `create ingress|pdb|priorityclass` as protobuf: this
/// case needs the protobuf decoding of every kind (issue 12, item 3).
#[test]
fn kubectl_1_33_creates_the_new_kinds() {
    let s = KeelServer::start(&[]);
    imperative_creates(&s, None, "-133");
}
