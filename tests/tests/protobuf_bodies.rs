//! kubectl ≥ 1.32 sends its imperative `create …` commands as protobuf
//! bodies: against a real `keel server` each is stored as the same object
//! the JSON path makes of the same command, and RBAC acts on the roles made
//! that way. Clients that prefer protobuf (client-go's `Accept:
//! application/vnd.kubernetes.protobuf, application/json`) get protobuf
//! objects, lists, watch frames and Status errors, and JSON Tables.

use std::process::Command;

use keel_apiserver::registry::protobuf;
use keel_tests::server::KeelServer;
use serde_json::{Value, json};

/// kubectl 1.33 itself (not the version dispatcher): it sends protobuf.
fn kubectl_133(s: &KeelServer) -> Command {
    kubectl_at(s, "1.33")
}

/// kubectl `version` itself: 1.33 sends its creates as protobuf, 1.27 as JSON.
fn kubectl_at(s: &KeelServer, version: &str) -> Command {
    let real = std::fs::canonicalize(keel_tests::server::KUBECTL).unwrap();
    let bin = real.parent().unwrap().join(format!("kubectl.{version}"));
    assert!(
        bin.is_file(),
        "{} is missing; run `make deps`",
        bin.display()
    );
    let mut c = Command::new(bin);
    c.env("HOME", s.dir().join("home"))
        .arg("--kubeconfig")
        .arg(s.kubeconfig());
    c
}

fn ok(mut c: Command) -> Vec<u8> {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{c:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn run(s: &KeelServer, args: &[&str]) -> String {
    let out = s.admin(args).output().unwrap();
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn get(s: &KeelServer, args: &[&str]) -> Value {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", "json"]);
    serde_json::from_str(&run(s, &all)).unwrap()
}

#[test]
fn kubectl_create_commands_send_protobuf_and_are_stored() {
    let s = KeelServer::start(&[]);
    run(&s, &["create", "namespace", "team-a"]);
    assert_eq!(
        get(&s, &["namespace", "team-a"])["status"]["phase"],
        "Active"
    );

    run(
        &s,
        &[
            "create",
            "secret",
            "generic",
            "db",
            "-n",
            "team-a",
            "--from-literal=password=p4ss",
            "--type=Opaque",
        ],
    );
    let secret = get(&s, &["secret", "db", "-n", "team-a"]);
    // base64("p4ss")
    assert_eq!(secret["data"]["password"], "cDRzcw==");
    assert_eq!(secret["type"], "Opaque");

    run(
        &s,
        &[
            "create",
            "configmap",
            "conf",
            "-n",
            "team-a",
            "--from-literal=mode=fast",
        ],
    );
    assert_eq!(
        get(&s, &["configmap", "conf", "-n", "team-a"])["data"]["mode"],
        "fast"
    );

    run(&s, &["create", "serviceaccount", "robot", "-n", "team-a"]);
    assert_eq!(
        get(&s, &["serviceaccount", "robot", "-n", "team-a"])["metadata"]["name"],
        "robot"
    );

    run(
        &s,
        &[
            "create",
            "role",
            "pod-reader",
            "-n",
            "team-a",
            "--verb=get,list",
            "--resource=pods",
        ],
    );
    let role = get(&s, &["role", "pod-reader", "-n", "team-a"]);
    assert_eq!(
        role["rules"][0]["verbs"],
        serde_json::json!(["get", "list"])
    );
    assert_eq!(role["rules"][0]["resources"], serde_json::json!(["pods"]));
    run(
        &s,
        &[
            "create",
            "rolebinding",
            "alice-reads",
            "-n",
            "team-a",
            "--role=pod-reader",
            "--user=alice",
        ],
    );
    run(
        &s,
        &[
            "create",
            "clusterrole",
            "secret-lister",
            "--verb=list",
            "--resource=secrets",
        ],
    );
    run(
        &s,
        &[
            "create",
            "clusterrolebinding",
            "ops-list",
            "--clusterrole=secret-lister",
            "--group=ops",
        ],
    );
    let binding = get(&s, &["clusterrolebinding", "ops-list"]);
    assert_eq!(binding["roleRef"]["name"], "secret-lister");
    assert_eq!(binding["subjects"][0]["name"], "ops");

    // The roles made from protobuf bodies grant what they say.
    let can = |args: &[&str]| {
        let mut all = vec!["auth", "can-i"];
        all.extend_from_slice(args);
        let out = s.admin(&all).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    keel_tests::wait_until(
        "the RBAC index to see the new roles",
        std::time::Duration::from_secs(20),
        || {
            (can(&["get", "pods", "-n", "team-a", "--as", "alice"]) == "yes"
                && can(&["list", "secrets", "--as", "bob", "--as-group", "ops"]) == "yes")
                .then_some(())
        },
    );
    assert_eq!(
        can(&["delete", "pods", "-n", "team-a", "--as", "alice"]),
        "no"
    );
}

/// Each `kubectl create` command kubectl 1.33 sends as protobuf, by the
/// name of what it makes, with its arguments (NAME stands for the name).
const CREATES: &[(&str, &[&str])] = &[
    ("namespace", &["namespace", "NAME"]),
    (
        "configmap",
        &[
            "configmap",
            "NAME",
            "--from-literal=a=1",
            "--from-literal=b=two",
        ],
    ),
    (
        "secret",
        &[
            "secret",
            "generic",
            "NAME",
            "--from-literal=password=hunter2",
        ],
    ),
    (
        "deployment",
        &[
            "deployment",
            "NAME",
            "--image=nginx:1.27",
            "--replicas=2",
            "--port=80",
        ],
    ),
    ("serviceaccount", &["serviceaccount", "NAME"]),
    (
        "job",
        &["job", "NAME", "--image=busybox", "--", "echo", "hi"],
    ),
    (
        "cronjob",
        &[
            "cronjob",
            "NAME",
            "--image=busybox",
            "--schedule=*/5 * * * *",
            "--",
            "echo",
            "hi",
        ],
    ),
    (
        "service",
        &["service", "clusterip", "NAME", "--tcp=80:8080"],
    ),
    (
        "role",
        &["role", "NAME", "--verb=get,list", "--resource=pods"],
    ),
    (
        "rolebinding",
        &["rolebinding", "NAME", "--role=reader", "--user=alice"],
    ),
    ("resourcequota", &["quota", "NAME", "--hard=pods=10,cpu=2"]),
];

/// `v` without what differs between two creations of the same object: its
/// name, namespace, uid (and labels made of it), versions, times, status
/// and the addresses a Service is given.
fn comparable(mut v: Value) -> Value {
    let uid = v["metadata"]["uid"].as_str().unwrap_or("none").to_string();
    let name = v["metadata"]["name"].as_str().unwrap_or("none").to_string();
    if let Some(m) = v["metadata"].as_object_mut() {
        for k in [
            "uid",
            "name",
            "namespace",
            "resourceVersion",
            "creationTimestamp",
            "managedFields",
            "generation",
        ] {
            m.remove(k);
        }
    }
    if let Some(a) = v["metadata"]["annotations"].as_object_mut() {
        // Set by the deployment controller whenever it gets to it.
        a.remove("deployment.kubernetes.io/revision");
    }
    if let Some(o) = v.as_object_mut() {
        o.remove("status");
    }
    if let Some(spec) = v["spec"].as_object_mut() {
        spec.remove("clusterIP");
        spec.remove("clusterIPs");
    }
    let text = v.to_string().replace(&uid, "UID").replace(&name, "NAME");
    serde_json::from_str(&text).unwrap()
}

/// Each create command, sent by kubectl 1.33 as protobuf, stores what the
/// same object sent as JSON stores, and what kubectl 1.27's own (JSON)
/// request for the command stores.
#[test]
fn kubectl_133_creates_equal_the_json_path() {
    let s = KeelServer::start(&[]);
    for ns in ["pb", "js", "old"] {
        run(&s, &["create", "namespace", ns]);
    }
    run(
        &s,
        &[
            "create",
            "role",
            "reader",
            "-n",
            "pb",
            "--verb=get",
            "--resource=pods",
        ],
    );
    for (what, args) in CREATES {
        let (pb, js, old) = (
            format!("{what}-pb"),
            format!("{what}-js"),
            format!("{what}-old"),
        );
        let at = |version: &str, name: &str, ns: &str, extra: &[&str]| {
            // Flags first: a job's command follows `--`.
            let mut c = kubectl_at(&s, version);
            c.arg("create");
            if *what != "namespace" {
                c.args(["-n", ns]);
            }
            c.args(extra)
                .args(args.iter().map(|a| if *a == "NAME" { name } else { a }));
            c
        };
        let with = |name: &str, ns: &str, extra: &[&str]| at("1.33", name, ns, extra);
        // Protobuf: kubectl 1.33's own request body.
        ok(with(&pb, "pb", &[]));
        // JSON: kubectl 1.27's own request body for the same command.
        ok(at("1.27", &old, "old", &[]));
        // JSON: the same command's object, sent by `create -f`.
        let obj = ok(with(&js, "js", &["--dry-run=client", "-o", "json"]));
        let mut c = kubectl_133(&s);
        c.args(["create", "-f", "-"]);
        let out = keel_tests::server::output_with_stdin(c, &obj);
        assert!(
            out.status.success(),
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let get = |name: &str, ns: &str| {
            let kind = args[0];
            let mut a = vec!["get", kind, name, "-o", "json"];
            if *what != "namespace" {
                a.extend(["-n", ns]);
            }
            if kind == "quota" {
                a[1] = "resourcequota";
            }
            let v: Value = serde_json::from_str(&run(&s, &a)).unwrap();
            v
        };
        let (a, b) = (get(&pb, "pb"), get(&js, "js"));
        assert_eq!(comparable(a.clone()), comparable(b), "{what}: {a}");
        let c = get(&old, "old");
        assert_eq!(
            comparable(a.clone()),
            comparable(c.clone()),
            "{what} by kubectl 1.27: {c}"
        );
    }
    let d: Value = serde_json::from_str(&run(
        &s,
        &[
            "get",
            "deployment",
            "deployment-pb",
            "-n",
            "pb",
            "-o",
            "json",
        ],
    ))
    .unwrap();
    assert_eq!(d["spec"]["replicas"], 2);
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.27"
    );
    let sec: Value = serde_json::from_str(&run(
        &s,
        &["get", "secret", "secret-pb", "-n", "pb", "-o", "json"],
    ))
    .unwrap();
    assert_eq!(sec["data"]["password"], "aHVudGVyMg==");
}

/// curl as client-go asks: protobuf first, JSON second. Returns the status
/// code, the content type and the body.
fn raw_get(s: &KeelServer, path: &str, accept: &str) -> (u16, String, Vec<u8>) {
    let body = s.dir().join("body.bin");
    let mut c = s.curl(&[
        "-o",
        body.to_str().unwrap(),
        "-w",
        "%{http_code} %{content_type}",
        "-H",
        &format!("Accept: {accept}"),
        &format!("BASE{path}"),
    ]);
    let out = ok_out(&mut c);
    let (code, ct) = out.split_once(' ').unwrap();
    (
        code.parse().unwrap(),
        ct.to_string(),
        std::fs::read(&body).unwrap(),
    )
}

fn ok_out(c: &mut Command) -> String {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{c:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const CLIENT_GO: &str = "application/vnd.kubernetes.protobuf, application/json";

#[test]
fn clients_preferring_protobuf_get_protobuf() {
    let s = KeelServer::start(&[]);
    run(
        &s,
        &["create", "configmap", "conf", "--from-literal=mode=fast"],
    );
    let json_get = |path: &str| -> Value {
        let (code, ct, body) = raw_get(&s, path, "application/json");
        assert_eq!((code, ct.as_str()), (200, "application/json"), "{path}");
        serde_json::from_slice(&body).unwrap()
    };

    // GET: the same object as the JSON answer.
    let path = "/api/v1/namespaces/default/configmaps/conf";
    let (code, ct, body) = raw_get(&s, path, CLIENT_GO);
    assert_eq!((code, ct.as_str()), (200, protobuf::MEDIA_TYPE));
    assert!(body.starts_with(b"k8s\0"));
    let (av, kind, obj) = protobuf::decode_body(&body, None).unwrap();
    assert_eq!((av.as_str(), kind.as_str()), ("v1", "ConfigMap"));
    assert_eq!(obj, json_get(path));

    // LIST: ListMeta and the items.
    let (code, ct, body) = raw_get(&s, "/api/v1/namespaces/default/configmaps", CLIENT_GO);
    assert_eq!((code, ct.as_str()), (200, protobuf::MEDIA_TYPE));
    let (_, kind, list) = protobuf::decode_body(&body, None).unwrap();
    assert_eq!(kind, "ConfigMapList");
    assert!(
        list["metadata"]["resourceVersion"]
            .as_str()
            .is_some_and(|rv| !rv.is_empty())
    );
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["metadata"]["name"].as_str())
        .collect();
    assert!(names.contains(&"conf"), "{list}");

    // A 404 is a protobuf Status.
    let (code, ct, body) = raw_get(&s, "/api/v1/namespaces/default/configmaps/nope", CLIENT_GO);
    assert_eq!((code, ct.as_str()), (404, protobuf::MEDIA_TYPE));
    let (_, kind, status) = protobuf::decode_body(&body, None).unwrap();
    assert_eq!(kind, "Status");
    assert_eq!(
        (status["code"].clone(), status["reason"].clone()),
        (json!(404), json!("NotFound"))
    );

    // A Table stays JSON.
    let (code, ct, body) = raw_get(
        &s,
        "/api/v1/namespaces/default/configmaps",
        "application/json;as=Table;v=v1;g=meta.k8s.io, application/json",
    );
    assert_eq!((code, ct.as_str()), (200, "application/json"));
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["kind"],
        "Table"
    );

    // A watch: length-prefixed WatchEvents, each object a k8s\0 envelope.
    let (code, ct, body) = raw_get(
        &s,
        "/api/v1/namespaces/default/configmaps?watch=true&timeoutSeconds=1",
        CLIENT_GO,
    );
    assert_eq!(
        (code, ct.as_str()),
        (200, "application/vnd.kubernetes.protobuf;stream=watch")
    );
    let mut events = Vec::new();
    let mut rest = &body[..];
    while !rest.is_empty() {
        let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
        events.push(protobuf::decode_watch_event(&rest[4..4 + len]).unwrap());
        rest = &rest[4 + len..];
    }
    let added = events
        .iter()
        .find(|e| e["object"]["metadata"]["name"] == "conf")
        .unwrap_or_else(|| panic!("no event for conf: {events:?}"));
    assert_eq!(added["type"], "ADDED");
    assert_eq!(added["object"]["data"]["mode"], "fast");
    assert_eq!(added["object"]["kind"], "ConfigMap");
}
