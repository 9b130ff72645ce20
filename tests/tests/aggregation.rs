//! API aggregation end to end: a `keel server` and the example extension
//! server (`keel-example-apiserver`, group `wardle.example.com/v1alpha1`).
//! The extension server trusts the front-proxy CA Keel publishes in
//! `kube-system/extension-apiserver-authentication`; an APIService with the
//! server's CA as `caBundle` and an Endpoints object for its address makes
//! it `Available`; kubectl 1.33 (aggregated discovery) and 1.27 (per-group
//! discovery) then list, create and read Flunders through Keel; a watch
//! streams through the proxy; the user the extension server sees is the
//! kubectl user (never a header the client made up), after Keel's RBAC
//! decided; and once the extension server stops, the APIService turns
//! `Available=False` with Kubernetes' reasons and requests get a 503.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use base64::Engine;
use keel_tests::server::{KeelServer, kubectl_bin, output_with_stdin};
use keel_tests::wait_until;
use serde_json::Value;

/// Changes reach the APIService's condition through checks every few
/// seconds; every wait on one polls with this deadline.
const CATCH_UP: Duration = Duration::from_secs(60);

const APISERVICE: &str = "v1alpha1.wardle.example.com";

/// A kill-on-drop child process.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Env {
    keel: KeelServer,
}

impl Env {
    /// kubectl `version` with `kubeconfig`, its own home and cache per version.
    fn cmd(&self, version: &str, kubeconfig: &Path, args: &[&str]) -> Command {
        let home = self.keel.dir().join(format!("home-{version}"));
        let mut c = Command::new(kubectl_bin(Some(version)));
        c.env("HOME", &home)
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(["--request-timeout", "30s"])
            .args(args)
            .stdin(Stdio::null());
        c
    }

    fn out(&self, version: &str, args: &[&str]) -> Output {
        self.cmd(version, &self.keel.kubeconfig(), args)
            .output()
            .unwrap()
    }

    fn ok(&self, version: &str, args: &[&str]) -> String {
        ok(
            self.out(version, args),
            &format!("kubectl {version} {args:?}"),
        )
    }

    fn apply(&self, yaml: &str) -> String {
        let c = self.cmd("1.33", &self.keel.kubeconfig(), &["apply", "-f", "-"]);
        ok(
            output_with_stdin(c, yaml.as_bytes()),
            &format!("apply of\n{yaml}"),
        )
    }

    /// The APIService's Available condition: (status, reason, message).
    fn available(&self) -> (String, String, String) {
        let o = self.out("1.33", &["get", "apiservice", APISERVICE, "-o", "json"]);
        let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
        let c = v
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .and_then(|cs| cs.iter().find(|c| c["type"] == "Available").cloned())
            .unwrap_or_default();
        let s = |k: &str| c[k].as_str().unwrap_or_default().to_string();
        (s("status"), s("reason"), s("message"))
    }

    fn wait_available(&self, status: &str, reason: &str) -> String {
        wait_until(
            &format!("APIService {APISERVICE} Available={status} ({reason})"),
            CATCH_UP,
            || {
                let (s, r, m) = self.available();
                (s == status && r == reason).then_some(m)
            },
        )
    }

    /// A Flunder read back as JSON.
    fn flunder(&self, version: &str, name: &str) -> Value {
        serde_json::from_str(&self.ok(version, &["get", "flunder", name, "-o", "json"])).unwrap()
    }

    /// A kubeconfig for `name` in `group`, issued by `keel certs`.
    fn user_kubeconfig(&self, name: &str, group: &str) -> PathBuf {
        self.keel.user_kubeconfig(name, &[group])
    }
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

fn flunder_yaml(name: &str) -> String {
    format!(
        "apiVersion: wardle.example.com/v1alpha1\nkind: Flunder\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  reference: {name}-ref\n"
    )
}

/// Start the example server trusting what the ConfigMap publishes; its
/// process and `host:port`.
fn start_example(env: &Env) -> (Process, String) {
    let data = |key: &str| {
        wait_until(&format!("the ConfigMap's {key}"), CATCH_UP, || {
            let jsonpath = format!("jsonpath={{.data.{}}}", key.replace('.', "\\."));
            let o = env.out(
                "1.33",
                &[
                    "get",
                    "configmap",
                    "-n",
                    "kube-system",
                    "extension-apiserver-authentication",
                    "-o",
                    &jsonpath,
                ],
            );
            let s = String::from_utf8_lossy(&o.stdout).into_owned();
            (o.status.success() && !s.is_empty()).then_some(s)
        })
    };
    let ca = data("requestheader-client-ca-file");
    assert!(ca.contains("BEGIN CERTIFICATE"), "{ca}");
    let names: Vec<String> = serde_json::from_str(&data("requestheader-allowed-names")).unwrap();
    assert_eq!(names, ["front-proxy-client"]);
    let user_headers = data("requestheader-username-headers");
    assert_eq!(user_headers, r#"["X-Remote-User"]"#);
    let dir = env.keel.dir();
    std::fs::write(dir.join("front-proxy-ca.crt"), &ca).unwrap();
    let log = std::fs::File::create(dir.join("example.log")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_keel-example-apiserver"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--serving-name",
            "api.wardle.svc",
        ])
        .arg("--serving-ca-out")
        .arg(dir.join("serving-ca.crt"))
        .arg("--requestheader-client-ca-file")
        .arg(dir.join("front-proxy-ca.crt"))
        .args(["--requestheader-allowed-names", &names.join(",")])
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("the example server said {line:?}"))
        .to_string();
    (Process(child), addr)
}

#[test]
fn an_extension_server_behind_keel() {
    let env = Env {
        keel: KeelServer::start(&[]),
    };
    let (mut example, addr) = start_example(&env);
    let port = addr.rsplit(':').next().unwrap();
    let ca_bundle = base64::engine::general_purpose::STANDARD
        .encode(std::fs::read(env.keel.dir().join("serving-ca.crt")).unwrap());
    // No Service: the Endpoints object named as it gives the address.
    env.apply(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: wardle\n---\n\
         apiVersion: v1\nkind: Endpoints\nmetadata:\n  name: api\n  namespace: wardle\n\
         subsets:\n- addresses:\n  - ip: 127.0.0.1\n  ports:\n  - name: https\n    port: {port}\n---\n\
         apiVersion: apiregistration.k8s.io/v1\nkind: APIService\nmetadata:\n  name: {APISERVICE}\n\
         spec:\n  group: wardle.example.com\n  version: v1alpha1\n  groupPriorityMinimum: 1000\n\
         \x20 versionPriority: 15\n  caBundle: {ca_bundle}\n  service:\n    namespace: wardle\n    name: api\n"
    ));
    let msg = env.wait_available("True", "Passed");
    assert_eq!(msg, "all checks passed");

    for version in ["1.33", "1.27"] {
        let resources = env.ok(
            version,
            &["api-resources", "--api-group=wardle.example.com"],
        );
        assert!(resources.contains("flunders"), "{version}: {resources}");
        let name = format!("f-{}", version.replace('.', "-"));
        let file = env.keel.dir().join(format!("{name}.yaml"));
        std::fs::write(&file, flunder_yaml(&name)).unwrap();
        let created = env.ok(version, &["create", "-f", file.to_str().unwrap()]);
        assert!(
            created.contains(&format!("flunder.wardle.example.com/{name} created")),
            "{version}: {created}"
        );
        let list = env.ok(version, &["get", "flunders"]);
        assert!(list.contains(&name), "{version}: {list}");
        let f = env.flunder(version, &name);
        assert_eq!(f["spec"]["reference"], format!("{name}-ref"));
        // The user the extension server saw: the kubectl user.
        let annotations = &f["metadata"]["annotations"];
        assert_eq!(annotations["wardle.example.com/created-by"], "admin");
        let groups = annotations["wardle.example.com/created-by-groups"]
            .as_str()
            .unwrap();
        assert!(groups.split(',').any(|g| g == "system:masters"), "{groups}");
        let missing = env.out(version, &["get", "flunder", "nope"]);
        assert!(!missing.status.success());
        let err = String::from_utf8_lossy(&missing.stderr);
        assert!(
            err.contains("NotFound") && err.contains("nope"),
            "{version}: {err}"
        );
    }

    // A watch streams through: it is open when the object is created.
    let url = "BASE/apis/wardle.example.com/v1alpha1/namespaces/default/flunders?watch=true";
    let mut curl = env.keel.curl(&["-N", url]);
    let mut watch = Process(curl.stdout(Stdio::piped()).spawn().unwrap());
    let (tx, rx) = mpsc::channel::<String>();
    let stdout = watch.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut events: Vec<Value> = Vec::new();
    let mut next_event = |what: &str, want: &dyn Fn(&Value) -> bool| {
        let deadline = std::time::Instant::now() + CATCH_UP;
        loop {
            if let Some(e) = events.iter().find(|e| want(e)) {
                return e.clone();
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(l) => events.push(serde_json::from_str(&l).unwrap_or_default()),
                Err(e) => panic!("no watch event {what} ({e}); got {events:?}"),
            }
        }
    };
    next_event("ADDED f-1-33 (the replay)", &|e| {
        e["type"] == "ADDED" && e["object"]["metadata"]["name"] == "f-1-33"
    });
    let create = env.cmd("1.33", &env.keel.kubeconfig(), &["create", "-f", "-"]);
    ok(
        output_with_stdin(create, flunder_yaml("watched").as_bytes()),
        "create watched",
    );
    let e = next_event("ADDED watched", &|e| {
        e["type"] == "ADDED" && e["object"]["metadata"]["name"] == "watched"
    });
    assert_eq!(e["object"]["kind"], "Flunder");
    // kubectl's own watch (list, then watch from its resourceVersion).
    let mut kwatch = env.cmd(
        "1.27",
        &env.keel.kubeconfig(),
        &["get", "flunders", "--watch-only", "-o", "name"],
    );
    let mut kwatch = Process(kwatch.stdout(Stdio::piped()).spawn().unwrap());
    let (ktx, krx) = mpsc::channel::<String>();
    let kout = kwatch.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(kout).lines().map_while(Result::ok) {
            if ktx.send(line).is_err() {
                return;
            }
        }
    });
    // Created until the watch has started and sees one.
    let seen = wait_until("kubectl get -w to print a new Flunder", CATCH_UP, || {
        let name = format!("kw-{}", keel_tests::next_random() % 100_000);
        let create = env.cmd("1.33", &env.keel.kubeconfig(), &["create", "-f", "-"]);
        ok(
            output_with_stdin(create, flunder_yaml(&name).as_bytes()),
            "create",
        );
        let want = format!("flunder.wardle.example.com/{name}");
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        while let Ok(l) =
            krx.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
        {
            if l.trim() == want {
                return Some(l);
            }
        }
        None
    });
    assert!(seen.starts_with("flunder.wardle.example.com/kw-"));
    drop(kwatch);

    // A header the client sends does not name the user: Keel's does.
    let spoof = env.keel.curl(&[
        "-X", "POST", "-H", "Content-Type: application/json",
        "-H", "X-Remote-User: mallory", "-H", "X-Remote-Group: system:masters",
        "--data", r#"{"apiVersion":"wardle.example.com/v1alpha1","kind":"Flunder","metadata":{"name":"spoofed"}}"#,
        "BASE/apis/wardle.example.com/v1alpha1/namespaces/default/flunders",
    ]).output().unwrap();
    let spoofed: Value = serde_json::from_slice(&spoof.stdout).unwrap_or_default();
    assert_eq!(
        spoofed["metadata"]["annotations"]["wardle.example.com/created-by"], "admin",
        "{spoofed}"
    );

    // Another user: Keel's RBAC decides first, the extension server sees her.
    let alice = env.user_kubeconfig("alice", "wardle-users");
    env.apply(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n  name: flunder-maker\n  namespace: default\n\
         rules:\n- apiGroups: [wardle.example.com]\n  resources: [flunders]\n  verbs: [create, get, list]\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata:\n  name: flunder-makers\n  namespace: default\n\
         roleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: Role\n  name: flunder-maker\n\
         subjects:\n- kind: Group\n  name: wardle-users\n  apiGroup: rbac.authorization.k8s.io\n",
    );
    let alice_file = env.keel.dir().join("alice.yaml");
    std::fs::write(&alice_file, flunder_yaml("by-alice")).unwrap();
    wait_until("alice's create to be allowed", CATCH_UP, || {
        let o = env
            .cmd(
                "1.33",
                &alice,
                &["create", "-f", alice_file.to_str().unwrap()],
            )
            .output()
            .unwrap();
        o.status.success().then_some(())
    });
    let f = env.flunder("1.33", "by-alice");
    let annotations = &f["metadata"]["annotations"];
    assert_eq!(annotations["wardle.example.com/created-by"], "alice");
    let groups = annotations["wardle.example.com/created-by-groups"]
        .as_str()
        .unwrap();
    assert!(groups.split(',').any(|g| g == "wardle-users"), "{groups}");
    let denied = env
        .cmd("1.33", &alice, &["delete", "flunder", "by-alice"])
        .output()
        .unwrap();
    assert!(!denied.status.success());
    let err = String::from_utf8_lossy(&denied.stderr);
    assert!(
        err.contains("Forbidden")
            && err
                .contains(r#"cannot delete resource "flunders" in API group "wardle.example.com""#),
        "{err}"
    );
    assert!(!env.flunder("1.33", "by-alice").is_null(), "not deleted");

    // The extension server stops: the check fails, requests are refused.
    let _ = example.0.kill();
    let _ = example.0.wait();
    let msg = env.wait_available("False", "FailedDiscoveryCheck");
    assert!(
        msg.contains("failing or missing response from https://127.0.0.1:"),
        "{msg}"
    );
    let refused = env.out("1.33", &["get", "flunders"]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("ServiceUnavailable") || err.contains("unable to handle the request"),
        "{err}"
    );
    let raw = env
        .keel
        .curl(&["BASE/apis/wardle.example.com/v1alpha1/namespaces/default/flunders"])
        .output()
        .unwrap();
    let status: Value = serde_json::from_slice(&raw.stdout).unwrap_or_default();
    assert_eq!(
        (status["code"].as_u64(), status["reason"].as_str()),
        (Some(503), Some("ServiceUnavailable")),
        "{status}"
    );
    // The watch ended with its server.
    wait_until("the watch through the proxy to end", CATCH_UP, || {
        watch.0.try_wait().unwrap().map(|_| ())
    });
    // Without its Endpoints (and no Service), the reason says so.
    env.ok("1.33", &["delete", "endpoints", "api", "-n", "wardle"]);
    let msg = env.wait_available("False", "ServiceNotFound");
    assert_eq!(msg, r#"service/api in "wardle" is not present"#);
    // Still listed in discovery, so clients learn it is unavailable.
    let groups = env.ok("1.27", &["get", "--raw", "/apis"]);
    assert!(groups.contains("wardle.example.com/v1alpha1"), "{groups}");
}
