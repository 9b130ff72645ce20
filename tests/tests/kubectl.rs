//! The real kubectl against a `keel server` process: discovery, get (tables,
//! -o json|yaml|name|jsonpath, -l, --show-labels, --chunk-size, -A), create -f
//! of a multi-document YAML, label, patch (merge and json), replace with a
//! stale resourceVersion, invalid objects, get -w receiving live changes,
//! delete, and an anonymous client refused. Runs kubectl 1.33 (the default
//! on PATH) and 1.27; either one missing fails the test.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use keel_tests::server::kubectl_bin;
use keel_tests::{free_port, keel_bin, wait_until};

struct Server {
    child: Child,
    kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = std::fs::File::create(dir.path().join("keel.log")).unwrap();
    // Options from a config file, one of them overridden on the command line.
    let config = dir.path().join("keel.json");
    std::fs::write(
        &config,
        format!(
            r#"{{"data_dir": "{}", "peer_addr": "127.0.0.1:{}", "http_addr": "127.0.0.1:{}", "api_addr": "127.0.0.1:1", "retain_events": 50000}}"#,
            data.display(),
            free_port(),
            free_port()
        ),
    )
    .unwrap();
    let child = Command::new(keel_bin())
        .args(["server", "--config"])
        .arg(&config)
        .args(["--api-addr", "127.0.0.1:0"])
        // The CronJob test writes a status naming a Job that does not
        // exist, the API test writes a Deployment's status by hand and reads
        // a new PersistentVolume's phase before anyone binds it: the
        // cronjob, deployment and volume controllers would change all
        // three, as Kubernetes' do.
        .args([
            "--enabled-controllers",
            "*,-cronjob,-deployment,-persistentvolume-binder",
        ])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let server = Server {
        child,
        kubeconfig: data.join("kubeconfig"),
        _dir: dir,
    };
    // Ready once kubectl sees the default namespace.
    wait_until(
        "keel server to become ready",
        Duration::from_secs(60),
        || {
            (server.kubeconfig.exists()
                && kubectl(&server, &["get", "ns", "default", "-o", "name"])
                    .status
                    .success())
            .then_some(())
        },
    );
    server
}

/// A child process killed when the test ends, pass or fail.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The lines of a child's output on a channel, so that reading has a deadline.
fn line_reader(out: impl std::io::Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Percent-encode a query parameter value.
fn query_escape(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn run(bin: &Path, s: &Server, args: &[&str]) -> Output {
    let home = s._dir.path().join("home");
    Command::new(bin)
        .arg("--kubeconfig")
        .arg(&s.kubeconfig)
        .args(args)
        .env("HOME", &home)
        .env("KUBECACHEDIR", home.join("cache"))
        .output()
        .unwrap()
}

fn kubectl(s: &Server, args: &[&str]) -> Output {
    run(&kubectl_bin(None), s, args)
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "kubectl failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn err(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "kubectl should have failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

const MANIFEST: &str = "apiVersion: v1
kind: ConfigMap
metadata:
  name: web-config
  labels: {app: web, tier: frontend}
data:
  color: blue
---
apiVersion: v1
kind: Secret
metadata:
  name: web-secret
stringData:
  password: hunter2
---
apiVersion: v1
kind: Namespace
metadata:
  name: team-a
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: builder
  namespace: team-a
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: nginx:1.25}]
---
apiVersion: v1
kind: Pod
metadata:
  name: p1
spec:
  containers: [{name: c, image: busybox:1.36}]
";

/// One object of most other kinds, each leaning on a default Kubernetes fills in.
const MORE_KINDS: &str = "apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80}, {name: metrics, port: 9090}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceName: db
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers:
      - name: db
        image: postgres:16
        resources: {requests: {cpu: 100m, memory: 128Mi}, limits: {cpu: '1', memory: 1Gi}}
---
apiVersion: batch/v1
kind: Job
metadata: {name: migrate}
spec:
  template:
    spec:
      containers: [{name: m, image: busybox:1.36}]
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: local-disks}
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: WaitForFirstConsumer
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: disk-1}
spec:
  capacity: {storage: 10Gi}
  accessModes: [ReadWriteOnce]
  storageClassName: local-disks
  local: {path: /mnt/disks/1}
  nodeAffinity:
    required:
      nodeSelectorTerms:
      - matchExpressions: [{key: kubernetes.io/hostname, operator: In, values: [worker-1]}]
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: local-disks
  resources: {requests: {storage: 5Gi}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-egress}
spec:
  podSelector: {matchLabels: {app: db}}
  egress: [{ports: [{port: 53}]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: reader}
rules: [{apiGroups: [''], resources: [pods], verbs: [get, list, watch]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: readers}
roleRef: {kind: Role, name: reader}
subjects: [{kind: User, name: alice}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: 'system:keel:health'}
rules: [{nonResourceURLs: [/healthz], verbs: [get]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: 'system:keel:health'}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: 'system:keel:health'}
subjects: [{kind: Group, name: 'system:authenticated'}]
---
apiVersion: coordination.k8s.io/v1
kind: Lease
metadata: {name: leader}
spec: {holderIdentity: keel-1, leaseDurationSeconds: 15}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    schema: {openAPIV3Schema: {type: object}}
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {name: v1beta1.metrics.k8s.io}
spec:
  group: metrics.k8s.io
  version: v1beta1
  groupPriorityMinimum: 100
  versionPriority: 100
  service: {namespace: kube-system, name: metrics-server}
---
apiVersion: v1
kind: ResourceQuota
metadata: {name: quota}
spec: {hard: {pods: '10', requests.cpu: '4'}}
---
apiVersion: v1
kind: LimitRange
metadata: {name: limits}
spec:
  limits: [{type: Container, default: {cpu: 500m}}]
---
apiVersion: v1
kind: Node
metadata: {name: worker-1}
spec:
  podCIDR: 10.244.1.0/24
  taints: [{key: dedicated, value: db, effect: NoSchedule}]
";

/// Objects Kubernetes refuses, one rule each.
const INVALID_KINDS: &str = "apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: no-size}
spec: {accessModes: [ReadWriteOnce]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: bad-ref}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Deployment, name: x}
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: no-source}
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteOnce]
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: gadgets.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, kind: Widget}
  versions: [{name: v1, served: true, storage: true, schema: {openAPIV3Schema: {type: object}}}]
---
apiVersion: v1
kind: Pod
metadata: {name: greedy}
spec:
  containers:
  - {name: c, image: busybox:1.36, resources: {requests: {cpu: '2'}, limits: {cpu: '1'}}}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: bad-label
  labels: {'has space': x}
";

#[test]
fn kubectl_drives_keel() {
    let s = start();
    let version = ok(&kubectl(&s, &["version"]));
    assert!(version.contains("Server Version: v1.33"), "{version}");
    // Aggregated discovery: kubectl 1.33 learns every resource from /api and /apis alone.
    let verbose = kubectl(&s, &["api-resources", "-v=6"]);
    let log = String::from_utf8_lossy(&verbose.stderr).into_owned();
    let discovery: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("\"Response\"") && l.contains("verb=\"GET\""))
        .collect();
    assert_eq!(
        discovery.len(),
        2,
        "expected only /api and /apis: {discovery:?}"
    );
    let resources = ok(&kubectl(&s, &["api-resources"]));
    for r in ["configmaps", "namespaces", "secrets", "serviceaccounts"] {
        assert!(
            resources.contains(r),
            "api-resources lacks {r}:\n{resources}"
        );
    }
    let versions = ok(&kubectl(&s, &["api-versions"]));
    assert!(
        versions.lines().any(|l| l == "v1") && versions.lines().any(|l| l == "apps/v1"),
        "{versions}"
    );
    let ns = ok(&kubectl(&s, &["get", "ns"]));
    assert!(
        ns.starts_with("NAME") && ns.contains("default") && ns.contains("Active"),
        "{ns}"
    );

    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("app.yaml");
    std::fs::write(&f, MANIFEST).unwrap();
    let created = ok(&kubectl(&s, &["create", "-f", f.to_str().unwrap()]));
    for line in [
        "configmap/web-config created",
        "secret/web-secret created",
        "namespace/team-a created",
        "serviceaccount/builder created",
    ] {
        assert!(created.contains(line), "{created}");
    }
    // Most other kinds, with the defaults Kubernetes applies.
    let more = dir.path().join("more.yaml");
    std::fs::write(&more, MORE_KINDS).unwrap();
    let created = ok(&kubectl(&s, &["create", "-f", more.to_str().unwrap()]));
    assert_eq!(created.lines().count(), 17, "{created}");
    for (args, want) in [
        (
            &[
                "get",
                "pv",
                "disk-1",
                "-o",
                "jsonpath={.spec.persistentVolumeReclaimPolicy} {.status.phase}",
            ][..],
            "Retain Pending",
        ),
        (
            &["get", "pvc", "data", "-o", "jsonpath={.spec.volumeMode}"][..],
            "Filesystem",
        ),
        (
            &[
                "get",
                "sc",
                "local-disks",
                "-o",
                "jsonpath={.reclaimPolicy}",
            ][..],
            "Delete",
        ),
        (
            &[
                "get",
                "netpol",
                "db-egress",
                "-o",
                "jsonpath={.spec.policyTypes}",
            ][..],
            r#"["Ingress","Egress"]"#,
        ),
        (
            &[
                "get",
                "rolebinding",
                "readers",
                "-o",
                "jsonpath={.roleRef.apiGroup} {.subjects[0].apiGroup}",
            ][..],
            "rbac.authorization.k8s.io rbac.authorization.k8s.io",
        ),
        (
            &[
                "get",
                "crd",
                "widgets.example.com",
                "-o",
                "jsonpath={.spec.names.singular} {.spec.names.listKind}",
            ][..],
            "widget WidgetList",
        ),
        (
            &[
                "get",
                "apiservice",
                "v1beta1.metrics.k8s.io",
                "-o",
                "jsonpath={.spec.service.port}",
            ][..],
            "443",
        ),
        (
            &["get", "clusterrole", "system:keel:health", "-o", "name"][..],
            "clusterrole.rbac.authorization.k8s.io/system:keel:health\n",
        ),
    ] {
        assert_eq!(ok(&kubectl(&s, args)), want, "{args:?}");
    }
    let invalid = dir.path().join("invalid.yaml");
    std::fs::write(&invalid, INVALID_KINDS).unwrap();
    let refused = err(&kubectl(&s, &["create", "-f", invalid.to_str().unwrap()]));
    for msg in [
        r#"PersistentVolumeClaim "no-size" is invalid: spec.resources[storage]: Required value"#,
        r#"RoleBinding.rbac.authorization.k8s.io "bad-ref" is invalid: roleRef.kind: Unsupported value: "Deployment""#,
        r#"PersistentVolume "no-source" is invalid: spec: Required value: must specify a volume type"#,
        r#"CustomResourceDefinition.apiextensions.k8s.io "gadgets.example.com" is invalid: metadata.name: Invalid value"#,
        r#"spec.containers[0].resources.requests: Invalid value: "2": must be less than or equal to cpu limit of 1"#,
        r#"ConfigMap "bad-label" is invalid: metadata.labels: Invalid value: "has space""#,
    ] {
        assert!(refused.contains(msg), "{msg}\n{refused}");
    }
    // Fields Kubernetes fixes once written.
    let rebind = err(&kubectl(
        &s,
        &[
            "patch",
            "rolebinding",
            "readers",
            "--type=merge",
            "-p",
            r#"{"roleRef":{"name":"other"}}"#,
        ],
    ));
    assert!(
        rebind.contains("roleRef: Invalid value: cannot change roleRef"),
        "{rebind}"
    );
    let shrink = err(&kubectl(
        &s,
        &[
            "patch",
            "pvc",
            "data",
            "--type=merge",
            "-p",
            r#"{"spec":{"resources":{"requests":{"storage":"1Gi"}}}}"#,
        ],
    ));
    assert!(
        shrink.contains("field can not be less than previous value"),
        "{shrink}"
    );
    ok(&kubectl(
        &s,
        &[
            "patch",
            "pvc",
            "data",
            "--type=merge",
            "-p",
            r#"{"spec":{"resources":{"requests":{"storage":"8Gi"}}}}"#,
        ],
    ));

    // Creating it again: AlreadyExists, in kubectl's words.
    let again = err(&kubectl(&s, &["create", "-f", f.to_str().unwrap()]));
    assert!(
        again.contains("(AlreadyExists)")
            && again.contains("configmaps \"web-config\" already exists"),
        "{again}"
    );

    assert_eq!(
        ok(&kubectl(
            &s,
            &["get", "cm", "web-config", "-o", "jsonpath={.data.color}"]
        )),
        "blue"
    );
    let secret = ok(&kubectl(
        &s,
        &[
            "get",
            "secret",
            "web-secret",
            "-o",
            "jsonpath={.data.password}",
        ],
    ));
    assert_eq!(
        secret, "aHVudGVyMg==",
        "stringData is stored base64-encoded"
    );
    let json: String = ok(&kubectl(&s, &["get", "cm", "-o", "json"]));
    assert!(
        json.contains("\"kind\": \"List\"") || json.contains("\"kind\": \"ConfigMapList\""),
        "{json}"
    );
    assert_eq!(
        ok(&kubectl(&s, &["get", "cm", "-o", "name"])).trim(),
        "configmap/web-config"
    );
    assert!(
        ok(&kubectl(&s, &["get", "cm", "web-config", "-o", "yaml"])).contains("resourceVersion:")
    );
    let everything = ok(&kubectl(&s, &["get", "all"]));
    assert!(
        everything.contains("pod/p1")
            && everything.contains("deployment.apps/web")
            && everything.contains("0/2"),
        "{everything}"
    );
    // --dry-run=server validates and answers, but stores nothing.
    let dry = dir.path().join("dry.yaml");
    std::fs::write(
        &dry,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: dry-one\n",
    )
    .unwrap();
    assert!(
        ok(&kubectl(
            &s,
            &["create", "-f", dry.to_str().unwrap(), "--dry-run=server"]
        ))
        .contains("created (server dry run)")
    );
    assert!(err(&kubectl(&s, &["get", "cm", "dry-one"])).contains("not found"));
    // A dry run of an object that exists fails as the real create would.
    let taken = dir.path().join("taken.yaml");
    std::fs::write(
        &taken,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web-config\n",
    )
    .unwrap();
    let dup = err(&kubectl(
        &s,
        &["create", "-f", taken.to_str().unwrap(), "--dry-run=server"],
    ));
    assert!(dup.contains("AlreadyExists"), "{dup}");
    // --sort-by asks for full objects in the table rows; describe reads the object and its events.
    let sorted = ok(&kubectl(
        &s,
        &["get", "cm", "-A", "--sort-by=.metadata.name", "-o", "name"],
    ));
    assert!(
        sorted.trim_end().ends_with("configmap/web-config"),
        "{sorted}"
    );
    let described = ok(&kubectl(&s, &["describe", "pod", "p1"]));
    assert!(
        described.contains("busybox:1.36") && described.contains("Pending"),
        "{described}"
    );

    // Update rules: a pod may change its images only; immutable data stays; selectors stay.
    ok(&kubectl(
        &s,
        &[
            "patch",
            "pod",
            "p1",
            "--type=json",
            "-p",
            r#"[{"op":"replace","path":"/spec/containers/0/image","value":"busybox:1.37"}]"#,
        ],
    ));
    assert_eq!(
        ok(&kubectl(
            &s,
            &[
                "get",
                "pod",
                "p1",
                "-o",
                "jsonpath={.spec.containers[0].image}"
            ]
        )),
        "busybox:1.37"
    );
    let frozen = err(&kubectl(
        &s,
        &[
            "patch",
            "pod",
            "p1",
            "--type=merge",
            "-p",
            r#"{"spec":{"restartPolicy":"Never"}}"#,
        ],
    ));
    assert!(
        frozen.contains("pod updates may not change fields"),
        "{frozen}"
    );
    let sel = err(&kubectl(
        &s,
        &[
            "patch",
            "deploy",
            "web",
            "--type=merge",
            "-p",
            r#"{"spec":{"selector":{"matchLabels":{"app":"other"}}}}"#,
        ],
    ));
    assert!(
        sel.contains("spec.selector") && sel.contains("immutable"),
        "{sel}"
    );
    let frozen_cm = dir.path().join("frozen.yaml");
    std::fs::write(&frozen_cm, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: frozen\nimmutable: true\ndata: {k: v}\n").unwrap();
    ok(&kubectl(&s, &["create", "-f", frozen_cm.to_str().unwrap()]));
    let locked = err(&kubectl(
        &s,
        &[
            "patch",
            "cm",
            "frozen",
            "--type=merge",
            "-p",
            r#"{"data":{"k":"w"}}"#,
        ],
    ));
    assert!(
        locked.contains("field is immutable when `immutable` is set"),
        "{locked}"
    );

    // Server-side defaults, as Kubernetes applies them.
    assert_eq!(
        ok(&kubectl(
            &s,
            &[
                "get",
                "deploy",
                "web",
                "-o",
                "jsonpath={.spec.strategy.type}/{.spec.revisionHistoryLimit}/{.spec.template.spec.containers[0].imagePullPolicy}"
            ]
        )),
        "RollingUpdate/10/IfNotPresent"
    );

    // pods/binding assigns a node once.
    let binding = dir.path().join("binding.json");
    std::fs::write(&binding, r#"{"apiVersion":"v1","kind":"Binding","metadata":{"name":"p1"},"target":{"kind":"Node","name":"node-a"}}"#).unwrap();
    ok(&kubectl(
        &s,
        &[
            "create",
            "--raw",
            "/api/v1/namespaces/default/pods/p1/binding",
            "-f",
            binding.to_str().unwrap(),
        ],
    ));
    assert_eq!(
        ok(&kubectl(
            &s,
            &["get", "pod", "p1", "-o", "jsonpath={.spec.nodeName}"]
        )),
        "node-a"
    );
    let again = err(&kubectl(
        &s,
        &[
            "create",
            "--raw",
            "/api/v1/namespaces/default/pods/p1/binding",
            "-f",
            binding.to_str().unwrap(),
        ],
    ));
    assert!(again.contains("already assigned"), "{again}");
    // events.k8s.io/v1 beside core/v1 events (the controllers' events,
    // such as the scheduler's about p1, are listed through it).
    let listed = ok(&kubectl(
        &s,
        &["get", "events.events.k8s.io", "-A", "-o", "name"],
    ));
    assert!(
        listed
            .lines()
            .all(|l| l.starts_with("event.events.k8s.io/")),
        "{listed}"
    );

    // scale and status subresources.
    assert!(ok(&kubectl(&s, &["scale", "deploy", "web", "--replicas=3"])).contains("scaled"));
    assert_eq!(
        ok(&kubectl(
            &s,
            &[
                "get",
                "deploy",
                "web",
                "-o",
                "jsonpath={.spec.replicas}/{.metadata.generation}"
            ]
        )),
        "3/2"
    );
    let stale = err(&kubectl(
        &s,
        &[
            "scale",
            "deploy",
            "web",
            "--current-replicas=1",
            "--replicas=4",
        ],
    ));
    assert!(
        stale.contains("Expected replicas to be 1, was 3"),
        "{stale}"
    );
    ok(&kubectl(
        &s,
        &[
            "patch",
            "deploy",
            "web",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"readyReplicas":2}}"#,
        ],
    ));
    assert!(ok(&kubectl(&s, &["get", "deploy", "web"])).contains("2/3"));
    // The main resource ignores status; generation moves only with spec.
    assert!(
        ok(&kubectl(
            &s,
            &[
                "patch",
                "deploy",
                "web",
                "--type=merge",
                "-p",
                r#"{"status":{"readyReplicas":0}}"#
            ]
        ))
        .contains("no change")
    );
    assert_eq!(
        ok(&kubectl(
            &s,
            &[
                "get",
                "deploy",
                "web",
                "-o",
                "jsonpath={.status.readyReplicas}/{.metadata.generation}"
            ]
        )),
        "2/2"
    );
    let wide = ok(&kubectl(&s, &["get", "pods", "-o", "wide"]));
    assert!(wide.contains("NODE") && wide.contains("Pending"), "{wide}");
    let all = ok(&kubectl(&s, &["get", "sa", "-A"]));
    assert!(
        all.contains("NAMESPACE") && all.contains("team-a") && all.contains("builder"),
        "{all}"
    );

    // Labels, selectors, patches.
    ok(&kubectl(&s, &["label", "cm", "web-config", "env=prod"]));
    let shown = ok(&kubectl(
        &s,
        &["get", "cm", "-l", "app in (web),env!=dev", "--show-labels"],
    ));
    assert!(
        shown.contains("env=prod") && shown.contains("web-config"),
        "{shown}"
    );
    assert!(ok(&kubectl(&s, &["get", "cm", "-l", "env=dev"])).is_empty());
    ok(&kubectl(
        &s,
        &[
            "patch",
            "cm",
            "web-config",
            "--type=merge",
            "-p",
            r#"{"data":{"size":"xl"}}"#,
        ],
    ));
    ok(&kubectl(
        &s,
        &[
            "patch",
            "cm",
            "web-config",
            "--type=json",
            "-p",
            r#"[{"op":"replace","path":"/data/color","value":"green"}]"#,
        ],
    ));
    assert_eq!(
        ok(&kubectl(
            &s,
            &[
                "get",
                "cm",
                "web-config",
                "-o",
                "jsonpath={.data.color}/{.data.size}"
            ]
        )),
        "green/xl"
    );

    // replace with a stale resourceVersion: Conflict.
    let stale = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web-config\n  resourceVersion: \"2\"\ndata:\n  color: red\n";
    let sf = dir.path().join("stale.yaml");
    std::fs::write(&sf, stale).unwrap();
    let conflict = err(&kubectl(&s, &["replace", "-f", sf.to_str().unwrap()]));
    assert!(
        conflict.contains("(Conflict)") && conflict.contains("the object has been modified"),
        "{conflict}"
    );

    // Invalid objects are refused with the field.
    let bad = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: Bad_Name\n";
    let bf = dir.path().join("bad.yaml");
    std::fs::write(&bf, bad).unwrap();
    let invalid = err(&kubectl(&s, &["create", "-f", bf.to_str().unwrap()]));
    assert!(
        invalid.contains("is invalid") && invalid.contains("metadata.name"),
        "{invalid}"
    );
    // Unknown fields: kubectl asks the server for Strict validation.
    let uf = dir.path().join("unknown.yaml");
    std::fs::write(
        &uf,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: typo\ndatta:\n  a: b\n",
    )
    .unwrap();
    let strict = err(&kubectl(&s, &["create", "-f", uf.to_str().unwrap()]));
    assert!(
        strict.contains("strict decoding error") && strict.contains("unknown field \"datta\""),
        "{strict}"
    );
    let warned = kubectl(
        &s,
        &["create", "-f", uf.to_str().unwrap(), "--validate=warn"],
    );
    ok(&warned);
    assert!(
        String::from_utf8_lossy(&warned.stderr).contains("unknown field \"datta\""),
        "no warning printed"
    );
    // Nested unknown fields and wrong types, checked against the Kubernetes types.
    let nested = dir.path().join("nested.yaml");
    std::fs::write(
        &nested,
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: typo-deploy\nspec:\n  selector: {matchLabels: {a: b}}\n  template:\n    metadata: {labels: {a: b}}\n    spec:\n      containers: [{name: c, image: i, imagee: typo}]\n",
    )
    .unwrap();
    let nested_err = err(&kubectl(&s, &["create", "-f", nested.to_str().unwrap()]));
    assert!(
        nested_err.contains("unknown field \"spec.template.spec.containers[0].imagee\""),
        "{nested_err}"
    );
    let typed = dir.path().join("typed.yaml");
    std::fs::write(&typed, "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: typed\nspec:\n  replicas: three\n").unwrap();
    let typed_err = err(&kubectl(&s, &["create", "-f", typed.to_str().unwrap()]));
    assert!(
        typed_err.contains("spec.replicas") && typed_err.contains("(BadRequest)"),
        "{typed_err}"
    );
    // Per-kind rules: a selector must select the template; services need ports.
    let mismatch = dir.path().join("mismatch.yaml");
    std::fs::write(
        &mismatch,
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: lost\nspec:\n  selector: {matchLabels: {app: one}}\n  template:\n    metadata: {labels: {app: two}}\n    spec:\n      containers: [{name: c, image: i}]\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: portless\nspec:\n  selector: {app: x}\n",
    )
    .unwrap();
    let rules = err(&kubectl(&s, &["create", "-f", mismatch.to_str().unwrap()]));
    assert!(
        rules.contains("spec.template.metadata.labels") && rules.contains("does not match"),
        "{rules}"
    );
    assert!(rules.contains("spec.ports: Required value"), "{rules}");
    let missing = err(&kubectl(&s, &["get", "cm", "nope"]));
    assert!(
        missing.contains("(NotFound)") && missing.contains("configmaps \"nope\" not found"),
        "{missing}"
    );

    // Paging: every item arrives through limit/continue.
    for i in 0..3 {
        let p = dir.path().join(format!("p{i}.yaml"));
        std::fs::write(&p, format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: page-{i}\n  namespace: team-a\n")).unwrap();
        ok(&kubectl(&s, &["create", "-f", p.to_str().unwrap()]));
    }
    // The server pages: limit=1 gives exactly one item and a continue token
    // per page, and the tokens walk every item once.
    let mut names = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut path = "/api/v1/namespaces/team-a/configmaps?limit=1".to_string();
        if let Some(t) = &token {
            path.push_str(&format!("&continue={}", query_escape(t)));
        }
        let page: serde_json::Value =
            serde_json::from_str(&ok(&kubectl(&s, &["get", "--raw", &path]))).unwrap();
        let items = page["items"].as_array().unwrap();
        assert_eq!(items.len(), 1, "limit=1 must give one item a page: {page}");
        names.push(items[0]["metadata"]["name"].as_str().unwrap().to_string());
        token = page["metadata"]["continue"]
            .as_str()
            .filter(|t| !t.is_empty())
            .map(str::to_string);
        if token.is_none() {
            break;
        }
        assert!(
            names.len() < 3,
            "a continue token after the last item: {page}"
        );
    }
    assert_eq!(names, ["page-0", "page-1", "page-2"]);
    // kubectl --chunk-size=1 gets them in three requests, two of them continued
    // (-v=6 logs every request URL).
    let chunked = kubectl(
        &s,
        &[
            "get",
            "cm",
            "-n",
            "team-a",
            "--chunk-size=1",
            "-o",
            "name",
            "-v=6",
        ],
    );
    assert_eq!(
        ok(&chunked).lines().collect::<Vec<_>>(),
        ["configmap/page-0", "configmap/page-1", "configmap/page-2"]
    );
    let log = String::from_utf8_lossy(&chunked.stderr);
    let requests: std::collections::BTreeSet<&str> = log
        .split(|c: char| c.is_whitespace() || c == '"')
        .filter(|w| w.starts_with("https://") && w.contains("/namespaces/team-a/configmaps?"))
        .collect();
    assert_eq!(requests.len(), 3, "three list requests expected:\n{log}");
    assert!(
        requests.iter().all(|u| u.contains("limit=1")),
        "every request asks for one item:\n{log}"
    );
    assert_eq!(
        requests.iter().filter(|u| u.contains("continue=")).count(),
        2,
        "the second and third requests continue the first:\n{log}"
    );

    // get -w sees a change made after it started.
    let mut watch = KillOnDrop(
        Command::new(kubectl_bin(None))
            .arg("--kubeconfig")
            .arg(&s.kubeconfig)
            .args(["get", "cm", "-n", "team-a", "-w", "--output-watch-events"])
            .env("HOME", s._dir.path().join("home"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let lines = line_reader(watch.0.stdout.take().unwrap());
    let next_line = |what: &str| {
        lines
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("kubectl get -w printed nothing more while {what}: {e}"))
    };
    // The initial list arrives first, as ADDED events of the three objects
    // (after a header); only then is the watch proven to be running.
    let mut initial = std::collections::BTreeSet::new();
    while initial.len() < 3 {
        let line = next_line("waiting for the initial list");
        let cols: Vec<&str> = line.split_whitespace().collect();
        match cols.as_slice() {
            ["EVENT", "NAME", ..] => {}
            ["ADDED", name, ..] if name.starts_with("page-") => {
                assert!(initial.insert(name.to_string()), "{name} listed twice");
            }
            _ => panic!("unexpected line before the initial list was complete: {line}"),
        }
    }
    let p = dir.path().join("live.yaml");
    std::fs::write(
        &p,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: live-one\n  namespace: team-a\n",
    )
    .unwrap();
    ok(&kubectl(&s, &["create", "-f", p.to_str().unwrap()]));
    let seen = next_line("waiting for live-one");
    assert_eq!(
        seen.split_whitespace().take(2).collect::<Vec<_>>(),
        ["ADDED", "live-one"],
        "the watch must report live-one as its next event: {seen}"
    );
    drop(watch);

    // delete waits for the object to go.
    let deleted = ok(&kubectl(&s, &["delete", "cm", "live-one", "-n", "team-a"]));
    assert!(
        deleted.contains("configmap \"live-one\" deleted"),
        "{deleted}"
    );

    // explain reads the OpenAPI v3 schemas generated from the Kubernetes types.
    let explained = ok(&kubectl(&s, &["explain", "deployment.spec.strategy"]));
    assert!(
        explained.contains("DeploymentStrategy") && explained.contains("rollingUpdate"),
        "{explained}"
    );

    // Request metrics (by verb, resource and code) and the member's Raft metrics.
    let metrics = ok(&kubectl(&s, &["get", "--raw", "/metrics"]));
    assert!(
        metrics
            .contains(r#"apiserver_request_total{verb="LIST",resource="configmaps",code="200"}"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("apiserver_request_duration_seconds_bucket")
            && metrics.contains("keel_raft_applied_index"),
        "{metrics}"
    );

    // An older kubectl works too.
    {
        let old = kubectl_bin(Some("1.27"));
        let ns = ok(&run(&old, &s, &["get", "ns"]));
        assert!(ns.contains("team-a"), "{ns}");
        let cms = ok(&run(&old, &s, &["get", "cm", "-n", "team-a", "-o", "wide"]));
        assert!(cms.contains("page-0") && cms.contains("DATA"), "{cms}");
        let f127 = dir.path().join("old.yaml");
        std::fs::write(
            &f127,
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-127\ndata: {a: b}\n",
        )
        .unwrap();
        // kubectl 1.27 reads /openapi/v2 (protobuf): the PATCH operations there
        // tell it the server validates fields, and the definitions serve explain.
        assert!(
            ok(&run(&old, &s, &["create", "-f", f127.to_str().unwrap()]))
                .contains("configmap/from-127 created")
        );
        let explained = ok(&run(
            &old,
            &s,
            &[
                "explain",
                "pod.spec.containers.ports",
                "--output=plaintext-openapiv2",
            ],
        ));
        assert!(
            explained.contains("containerPort") && explained.contains("-required-"),
            "{explained}"
        );
        ok(&run(&old, &s, &["label", "cm", "from-127", "v=127"]));
        assert_eq!(
            ok(&run(&old, &s, &["get", "cm", "-l", "v=127", "-o", "name"])).trim(),
            "configmap/from-127"
        );
        ok(&run(
            &old,
            &s,
            &[
                "patch",
                "cm",
                "from-127",
                "--type=json",
                "-p",
                r#"[{"op":"add","path":"/data/c","value":"d"}]"#,
            ],
        ));
        assert_eq!(
            ok(&run(
                &old,
                &s,
                &["get", "cm", "from-127", "-o", "jsonpath={.data.c}"]
            )),
            "d"
        );
        assert!(ok(&run(&old, &s, &["delete", "cm", "from-127"])).contains("deleted"));
        let strict127 = err(&run(&old, &s, &["create", "-f", uf.to_str().unwrap()]));
        assert!(strict127.contains("unknown field \"datta\""), "{strict127}");
    }

    // Without the client certificate the API refuses the request.
    let anon = dir.path().join("anon");
    let server_line = std::fs::read_to_string(&s.kubeconfig)
        .unwrap()
        .lines()
        .find(|l| l.contains("server:"))
        .unwrap()
        .to_string();
    let server = server_line
        .split("server:")
        .nth(1)
        .unwrap()
        .trim()
        .to_string();
    std::fs::write(
        &anon,
        format!("apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\n    insecure-skip-tls-verify: true\nusers:\n- name: u\n  user: {{token: not-a-credential}}\ncontexts:\n- name: c\n  context: {{cluster: c, user: u}}\ncurrent-context: c\n"),
    )
    .unwrap();
    let out = Command::new(kubectl_bin(None))
        .arg("--kubeconfig")
        .arg(&anon)
        .args(["get", "cm"])
        .env("HOME", s._dir.path().join("home2"))
        .output()
        .unwrap();
    let msg = err(&out);
    assert!(
        msg.contains("Unauthorized") || msg.contains("must be logged in"),
        "{msg}"
    );
}

const CRONJOB: &str = "apiVersion: batch/v1
kind: CronJob
metadata:
  name: nightly
spec:
  schedule: \"0 3 * * *\"
  timeZone: Etc/UTC
  jobTemplate:
    spec:
      template:
        spec:
          containers:
          - name: backup
            image: busybox:1.36
            command: [\"true\"]
";

/// The header of `kubectl get` output, split on runs of spaces.
fn header(table: &str) -> Vec<&str> {
    table
        .lines()
        .next()
        .unwrap_or_default()
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect()
}

/// The row of `name` in `kubectl get` output, split on runs of spaces.
fn row<'a>(table: &'a str, name: &str) -> Vec<&'a str> {
    let line = table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no row {name}:\n{table}"));
    line.split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect()
}

/// CronJob (`batch/v1`), the kind added as one file: apply from YAML,
/// `kubectl create cronjob`, the defaults Kubernetes 1.33 gives, the table
/// of `kubectl get cj` (and `-o wide`), a bad schedule refused with 422,
/// and status written through `--subresource=status` only.
#[test]
fn kubectl_runs_cronjobs() {
    let s = start();
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("cronjob.yaml");
    std::fs::write(&f, CRONJOB).unwrap();
    assert!(
        ok(&kubectl(&s, &["apply", "-f", f.to_str().unwrap()]))
            .contains("cronjob.batch/nightly created")
    );
    assert_eq!(
        ok(&kubectl(
            &s,
            &[
                "get",
                "cj",
                "nightly",
                "-o",
                "jsonpath={.spec.concurrencyPolicy}/{.spec.suspend}/{.spec.successfulJobsHistoryLimit}/{.spec.failedJobsHistoryLimit}/{.spec.jobTemplate.spec.template.spec.restartPolicy}/{.spec.jobTemplate.spec.template.spec.containers[0].imagePullPolicy}"
            ]
        )),
        "Allow/false/3/1/Never/IfNotPresent"
    );
    let table = ok(&kubectl(&s, &["get", "cj"]));
    assert_eq!(
        header(&table),
        [
            "NAME",
            "SCHEDULE",
            "TIMEZONE",
            "SUSPEND",
            "ACTIVE",
            "LAST SCHEDULE",
            "AGE"
        ],
        "{table}"
    );
    assert_eq!(
        row(&table, "nightly")[..6],
        ["nightly", "0 3 * * *", "Etc/UTC", "False", "0", "<none>"],
        "{table}"
    );
    let wide = ok(&kubectl(&s, &["get", "cronjobs", "-o", "wide"]));
    assert_eq!(
        header(&wide)[6..],
        ["AGE", "CONTAINERS", "IMAGES", "SELECTOR"],
        "{wide}"
    );
    assert_eq!(
        row(&wide, "nightly")[7..],
        ["backup", "busybox:1.36", "<none>"],
        "{wide}"
    );
    assert!(ok(&kubectl(&s, &["get", "all", "-o", "name"])).contains("cronjob.batch/nightly"));

    // kubectl's own generator, with its OnFailure restart policy. `kubectl
    // create cronjob` itself sends protobuf, which Keel does not serve yet, so
    // the generated object goes through `create -f` (JSON).
    let generated = ok(&kubectl(
        &s,
        &[
            "create",
            "cronjob",
            "tick",
            "--image=busybox:1.36",
            "--schedule=*/5 * * * *",
            "--dry-run=client",
            "-o",
            "json",
        ],
    ));
    let tick = dir.path().join("tick.json");
    std::fs::write(&tick, generated).unwrap();
    ok(&kubectl(&s, &["create", "-f", tick.to_str().unwrap()]));
    assert_eq!(
        row(&ok(&kubectl(&s, &["get", "cj", "tick"])), "tick")[..4],
        ["tick", "*/5 * * * *", "<none>", "False"]
    );
    assert_eq!(
        ok(&kubectl(
            &s,
            &[
                "get",
                "cj",
                "tick",
                "-o",
                "jsonpath={.spec.jobTemplate.spec.template.spec.restartPolicy}"
            ]
        )),
        "OnFailure"
    );

    // A schedule that is no cron expression: 422, naming spec.schedule.
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        CRONJOB
            .replace("name: nightly", "name: bad-schedule")
            .replace("0 3 * * *", "61 3 * * *"),
    )
    .unwrap();
    let refused = err(&kubectl(
        &s,
        &["create", "-f", bad.to_str().unwrap(), "-v=6"],
    ));
    assert!(refused.contains("422 Unprocessable Entity"), "{refused}");
    assert!(
        refused.contains(r#"The CronJob "bad-schedule" is invalid: spec.schedule: Invalid value: "61 3 * * *": end of range (61) above maximum (59): 61"#),
        "{refused}"
    );
    let zoned = dir.path().join("zoned.yaml");
    std::fs::write(
        &zoned,
        CRONJOB
            .replace("name: nightly", "name: zoned")
            .replace("  timeZone: Etc/UTC\n", "")
            .replace("0 3 * * *", "TZ=UTC 0 * * * *"),
    )
    .unwrap();
    let tz = err(&kubectl(&s, &["create", "-f", zoned.to_str().unwrap()]));
    assert!(tz.contains("use timeZone field instead"), "{tz}");

    // Status goes through /status; the main resource keeps it.
    ok(&kubectl(
        &s,
        &[
            "patch",
            "cj",
            "nightly",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"active":[{"kind":"Job","namespace":"default","name":"nightly-1"}],"lastScheduleTime":"2026-01-01T03:00:00Z"}}"#,
        ],
    ));
    ok(&kubectl(
        &s,
        &[
            "patch",
            "cj",
            "nightly",
            "--type=merge",
            "-p",
            r#"{"spec":{"suspend":true},"status":{"active":[]}}"#,
        ],
    ));
    let listed = ok(&kubectl(&s, &["get", "cj", "nightly"]));
    let cells = row(&listed, "nightly");
    assert_eq!(cells[3..5], ["True", "1"], "{cells:?}");
    assert_ne!(cells[5], "<none>", "{cells:?}");
    assert_eq!(
        ok(&kubectl(
            &s,
            &[
                "get",
                "cj",
                "nightly",
                "-o",
                "jsonpath={.status.lastScheduleTime}"
            ]
        )),
        "2026-01-01T03:00:00Z"
    );
}
