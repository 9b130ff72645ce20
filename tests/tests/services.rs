//! Services end to end with kubectl 1.33 against a `keel server` running
//! its controllers: cluster IPs and node ports allocated (and refused as
//! Kubernetes refuses them), Endpoints and EndpointSlices following pods'
//! readiness (pods are bound to a node by name and their status is set
//! through `pods/status`, as a kubelet would), cleaned up with the Service;
//! and the upkeep controllers: the default ServiceAccount, ResourceQuota
//! usage, PodDisruptionBudget status and evictions that honour it, and the
//! Event TTL. Then the whole chain on hollow nodes: a Deployment exposed
//! by `kubectl expose`, its endpoints following scale, a budget over it
//! and `kubectl drain` evicting within the budget. Last, three members
//! allocating from one small range at once never hand out an address or a
//! node port twice.

use std::time::Duration;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use keel_tests::server::{KeelServer, kubectl as kubectl_cmd, output_with_stdin};
use keel_tests::{free_port, keel_bin, wait_until};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);

fn kubectl(s: &KeelServer, args: &[&str], input: Option<&str>) -> std::process::Output {
    let c = s.admin(args);
    match input {
        Some(i) => output_with_stdin(c, i.as_bytes()),
        None => {
            let mut c = c;
            c.output().unwrap()
        }
    }
}

/// stdout of a kubectl command that must succeed.
fn ok(s: &KeelServer, args: &[&str], input: Option<&str>) -> String {
    let out = kubectl(s, args, input);
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// stderr of a kubectl command that must fail.
fn fails(s: &KeelServer, args: &[&str], input: Option<&str>) -> String {
    let out = kubectl(s, args, input);
    assert!(!out.status.success(), "kubectl {args:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The object as JSON, or `None` if kubectl cannot get it.
fn get(s: &KeelServer, what: &[&str]) -> Option<Value> {
    let mut args = vec!["get"];
    args.extend_from_slice(what);
    args.extend_from_slice(&["-o", "json"]);
    let out = kubectl(s, &args, None);
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).unwrap())
}

/// A pod `name` labelled `app=<app>`, bound to `node-1`, serving port 8080
/// named `http`.
fn pod_yaml(name: &str, app: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels: {{app: {app}}}\nspec:\n  nodeName: node-1\n  containers:\n  - name: c\n    image: nginx\n    ports: [{{name: http, containerPort: 8080}}]\n    resources: {{requests: {{cpu: 250m, memory: 64Mi}}, limits: {{cpu: 500m, memory: 64Mi}}}}\n"
    )
}

/// Set a pod's status as its kubelet would: Running with `ip`, Ready or not.
fn set_status(s: &KeelServer, pod: &str, ip: &str, ready: bool) {
    let status = if ready { "True" } else { "False" };
    let patch = format!(
        r#"{{"status":{{"phase":"Running","podIP":"{ip}","podIPs":[{{"ip":"{ip}"}}],"conditions":[{{"type":"Ready","status":"{status}"}}]}}}}"#
    );
    ok(
        s,
        &[
            "patch",
            "pod",
            pod,
            "--subresource=status",
            "--type=merge",
            "-p",
            &patch,
        ],
        None,
    );
}

fn addresses(ep: &Value, list: &str) -> Vec<String> {
    let mut ips: Vec<String> = ep["subsets"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s[list].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a["ip"].as_str().map(str::to_string))
        .collect();
    ips.sort();
    ips
}

/// (address, ready) of every endpoint in the Service's slices.
fn slice_endpoints(s: &KeelServer, svc: &str) -> Vec<(String, bool)> {
    let label = format!("kubernetes.io/service-name={svc}");
    let list = get(s, &["endpointslices", "-l", &label]).unwrap();
    let mut out: Vec<(String, bool)> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|sl| sl["endpoints"].as_array().cloned().unwrap_or_default())
        .map(|e| {
            (
                e["addresses"][0].as_str().unwrap_or_default().to_string(),
                e["conditions"]["ready"] == true,
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn services_get_addresses_and_endpoints_follow_their_pods() {
    let s = KeelServer::start(&[]);
    let svc = "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  selector: {app: web}\n  ports:\n  - {name: http, port: 80, targetPort: http}\n";
    ok(&s, &["apply", "-f", "-"], Some(svc));
    let web = get(&s, &["service", "web"]).unwrap();
    let ip = web["spec"]["clusterIP"].as_str().unwrap().to_string();
    let octets: Vec<u8> = ip.split('.').map(|o| o.parse().unwrap()).collect();
    assert!(
        octets[0] == 10 && (96..112).contains(&octets[1]),
        "{ip} not in 10.96.0.0/12"
    );
    assert_eq!(web["spec"]["ipFamilies"], serde_json::json!(["IPv4"]));
    // The IPAddress that holds it, as `kubectl get ipaddress` prints it.
    let printed = ok(&s, &["get", "ipaddress", &ip], None);
    assert!(printed.contains("services/default/web"), "{printed}");
    // kubectl get service prints Kubernetes' columns.
    let table = ok(&s, &["get", "service", "web"], None);
    assert!(
        table.contains("CLUSTER-IP") && table.contains(&ip) && table.contains("80/TCP"),
        "{table}"
    );
    // Asking for a taken address, or one outside the range.
    let taken = fails(
        &s,
        &["create", "-f", "-"],
        Some(&format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: copy\nspec:\n  clusterIP: {ip}\n  ports: [{{port: 80}}]\n"
        )),
    );
    assert!(
        taken.contains(&format!(
            "failed to allocate IP {ip}: provided IP is already allocated"
        )),
        "{taken}"
    );
    let outside = fails(
        &s,
        &[
            "create",
            "service",
            "clusterip",
            "far",
            "--tcp=80",
            "--clusterip=192.168.0.1",
        ],
        None,
    );
    assert!(
        outside.contains("The range of valid IPs is 10.96.0.0/12"),
        "{outside}"
    );

    // Node ports: one asked for, one allocated, a second claim of it refused.
    ok(
        &s,
        &[
            "create",
            "service",
            "nodeport",
            "np",
            "--tcp=80:8080",
            "--node-port=30080",
        ],
        None,
    );
    let np = get(&s, &["service", "np"]).unwrap();
    assert_eq!(np["spec"]["ports"][0]["nodePort"], 30080);
    let again = fails(
        &s,
        &[
            "create",
            "service",
            "nodeport",
            "np2",
            "--tcp=80:8080",
            "--node-port=30080",
        ],
        None,
    );
    assert!(
        again.contains("provided port is already allocated"),
        "{again}"
    );
    let table = ok(&s, &["get", "service", "np"], None);
    assert!(table.contains("80:30080/TCP"), "{table}");

    // Pods: two ready, one not, one of another app.
    for (name, app) in [
        ("web-a", "web"),
        ("web-b", "web"),
        ("web-c", "web"),
        ("db", "db"),
    ] {
        ok(&s, &["apply", "-f", "-"], Some(&pod_yaml(name, app)));
    }
    set_status(&s, "web-a", "10.244.0.10", true);
    set_status(&s, "web-b", "10.244.0.11", true);
    set_status(&s, "web-c", "10.244.0.12", false);
    set_status(&s, "db", "10.244.0.13", true);
    let ep = wait_until("web's endpoints", WAIT, || {
        let ep = get(&s, &["endpoints", "web"])?;
        (addresses(&ep, "addresses") == ["10.244.0.10", "10.244.0.11"]
            && addresses(&ep, "notReadyAddresses") == ["10.244.0.12"])
        .then_some(ep)
    });
    assert_eq!(
        ep["subsets"][0]["ports"][0]["port"], 8080,
        "targetPort by name: {ep}"
    );
    assert_eq!(ep["subsets"][0]["ports"][0]["name"], "http");
    assert_eq!(
        ep["subsets"][0]["addresses"][0]["targetRef"]["name"], "web-a",
        "{ep}"
    );
    assert_eq!(ep["subsets"][0]["addresses"][0]["nodeName"], "node-1");
    let printed = ok(&s, &["get", "endpoints", "web"], None);
    assert!(
        printed.contains("10.244.0.10:8080,10.244.0.11:8080"),
        "{printed}"
    );
    wait_until("web's endpoint slices", WAIT, || {
        let eps = slice_endpoints(&s, "web");
        (eps == [
            ("10.244.0.10".to_string(), true),
            ("10.244.0.11".to_string(), true),
            ("10.244.0.12".to_string(), false),
        ])
        .then_some(())
    });
    let slices = get(
        &s,
        &["endpointslices", "-l", "kubernetes.io/service-name=web"],
    )
    .unwrap();
    let slice = &slices["items"][0];
    assert_eq!(slice["addressType"], "IPv4");
    assert_eq!(slice["ports"][0]["port"], 8080);
    assert_eq!(slice["metadata"]["ownerReferences"][0]["kind"], "Service");
    assert_eq!(
        slice["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"],
        "endpointslice-controller.k8s.io"
    );
    let printed = ok(&s, &["get", "endpointslices"], None);
    assert!(
        printed.contains("ADDRESSTYPE") && printed.contains("IPv4"),
        "{printed}"
    );

    // Readiness changes move a pod; a deleted pod leaves.
    set_status(&s, "web-c", "10.244.0.12", true);
    set_status(&s, "web-a", "10.244.0.10", false);
    ok(
        &s,
        &["delete", "pod", "web-b", "--grace-period=0", "--force"],
        None,
    );
    wait_until("endpoints after the changes", WAIT, || {
        let ep = get(&s, &["endpoints", "web"])?;
        (addresses(&ep, "addresses") == ["10.244.0.12"]
            && addresses(&ep, "notReadyAddresses") == ["10.244.0.10"])
        .then_some(())
    });
    wait_until("slices after the changes", WAIT, || {
        (slice_endpoints(&s, "web")
            == [
                ("10.244.0.10".to_string(), false),
                ("10.244.0.12".to_string(), true),
            ])
        .then_some(())
    });

    // An Endpoints object deleted by hand comes back.
    ok(&s, &["delete", "endpoints", "web"], None);
    wait_until("web's endpoints again", WAIT, || {
        let ep = get(&s, &["endpoints", "web"])?;
        (addresses(&ep, "addresses") == ["10.244.0.12"]).then_some(())
    });

    // The Service deleted: its endpoints, slices and address go.
    ok(&s, &["delete", "service", "web"], None);
    wait_until("web's endpoints, slices and address to go", WAIT, || {
        let slices = get(
            &s,
            &["endpointslices", "-l", "kubernetes.io/service-name=web"],
        )?;
        (get(&s, &["endpoints", "web"]).is_none()
            && slices["items"].as_array().is_some_and(Vec::is_empty)
            && get(&s, &["ipaddress", &ip]).is_none())
        .then_some(())
    });
    // Its address is free again.
    ok(
        &s,
        &["create", "-f", "-"],
        Some(&format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: copy\nspec:\n  clusterIP: {ip}\n  ports: [{{port: 80}}]\n"
        )),
    );
}

#[test]
fn upkeep_controllers_keep_accounts_quotas_budgets_and_events() {
    let s = KeelServer::start(&[&"--event-ttl=3s"]);
    // The default ServiceAccount of a new namespace, and again once deleted.
    ok(&s, &["create", "namespace", "team"], None);
    wait_until("team's default account", WAIT, || {
        get(&s, &["serviceaccount", "default", "-n", "team"])
    });
    let uid =
        get(&s, &["serviceaccount", "default", "-n", "team"]).unwrap()["metadata"]["uid"].clone();
    ok(
        &s,
        &["delete", "serviceaccount", "default", "-n", "team"],
        None,
    );
    wait_until("team's default account recreated", WAIT, || {
        get(&s, &["serviceaccount", "default", "-n", "team"])
            .filter(|sa| sa["metadata"]["uid"] != uid)
    });

    // A quota's usage.
    let quota = "apiVersion: v1\nkind: ResourceQuota\nmetadata:\n  name: q\nspec:\n  hard: {pods: \"10\", requests.cpu: \"4\", requests.memory: 1Gi, limits.cpu: \"8\", services: \"5\", configmaps: \"10\", count/deployments.apps: \"3\"}\n";
    ok(&s, &["apply", "-f", "-"], Some(quota));
    wait_until("the quota's status", WAIT, || {
        let q = get(&s, &["resourcequota", "q"])?;
        q["status"]["used"]["pods"].is_string().then_some(())
    });
    for name in ["a", "b"] {
        ok(&s, &["apply", "-f", "-"], Some(&pod_yaml(name, "web")));
    }
    ok(
        &s,
        &["create", "service", "clusterip", "web", "--tcp=80:8080"],
        None,
    );
    let used = wait_until("the quota's usage", WAIT, || {
        let q = get(&s, &["resourcequota", "q"])?;
        let used = q["status"]["used"].clone();
        (used["pods"] == "2" && used["services"] == "1").then_some(q)
    });
    let u = &used["status"]["used"];
    assert_eq!(u["requests.cpu"], "500m", "{used}");
    assert_eq!(u["requests.memory"], "128Mi");
    assert_eq!(u["limits.cpu"], "1");
    assert_eq!(u["count/deployments.apps"], "0");
    // The root CA config map is not Keel's: whatever is there counts.
    assert!(u["configmaps"].as_str().is_some(), "{used}");
    assert_eq!(used["status"]["hard"]["pods"], "10");
    let described = ok(&s, &["describe", "quota", "q"], None);
    assert!(
        described.contains("requests.cpu") && described.contains("500m"),
        "{described}"
    );
    // Admission: at the limit a create is refused; a pod that does not
    // state what the quota limits is refused.
    ok(
        &s,
        &[
            "patch",
            "resourcequota",
            "q",
            "--type=merge",
            "-p",
            r#"{"spec":{"hard":{"pods":"2"}}}"#,
        ],
        None,
    );
    wait_until("the quota's new limit", WAIT, || {
        let q = get(&s, &["resourcequota", "q"])?;
        (q["status"]["hard"]["pods"] == "2").then_some(())
    });
    let refused = fails(&s, &["apply", "-f", "-"], Some(&pod_yaml("c", "web")));
    assert!(
        refused.contains(
            "pods \"c\" is forbidden: exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2"
        ),
        "{refused}"
    );
    let bare = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: bare\nspec:\n  containers: [{name: c, image: nginx}]\n";
    let refused = fails(&s, &["create", "-f", "-"], Some(bare));
    assert!(
        refused.contains("failed quota: q: must specify limits.cpu for: c; requests.cpu for: c; requests.memory for: c"),
        "{refused}"
    );

    // A disruption budget over the two pods, one of them ready.
    set_status(&s, "a", "10.244.1.1", true);
    set_status(&s, "b", "10.244.1.2", false);
    let pdb = "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata:\n  name: web\nspec:\n  minAvailable: 1\n  selector: {matchLabels: {app: web}}\n";
    ok(&s, &["apply", "-f", "-"], Some(pdb));
    let status = wait_until("the budget's status", WAIT, || {
        let p = get(&s, &["pdb", "web"])?;
        (p["status"]["expectedPods"] == 2 && p["status"]["currentHealthy"] == 1).then_some(p)
    });
    let st = &status["status"];
    assert_eq!(
        (
            st["desiredHealthy"].clone(),
            st["disruptionsAllowed"].clone()
        ),
        (1.into(), 0.into())
    );
    assert_eq!(st["observedGeneration"], status["metadata"]["generation"]);
    assert_eq!(st["conditions"][0]["type"], "DisruptionAllowed");
    assert_eq!(st["conditions"][0]["reason"], "InsufficientPods");
    set_status(&s, "b", "10.244.1.2", true);
    wait_until("a disruption allowed", WAIT, || {
        let p = get(&s, &["pdb", "web"])?;
        (p["status"]["disruptionsAllowed"] == 1
            && p["status"]["conditions"][0]["reason"] == "SufficientPods")
            .then_some(())
    });
    let printed = ok(&s, &["get", "pdb", "web"], None);
    assert!(printed.contains("ALLOWED DISRUPTIONS"), "{printed}");

    // Evictions (what kubectl drain posts): the first spends the one
    // allowed disruption and deletes its pod; the next is refused with 429.
    let evict = |pod: &str| {
        let body = format!(
            r#"{{"apiVersion":"policy/v1","kind":"Eviction","metadata":{{"name":"{pod}","namespace":"default"}}}}"#
        );
        kubectl(
            &s,
            &[
                "create",
                "--raw",
                &format!("/api/v1/namespaces/default/pods/{pod}/eviction"),
                "-f",
                "-",
            ],
            Some(&body),
        )
    };
    let first = evict("a");
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let a = get(&s, &["pod", "a"]);
    assert!(
        a.is_none_or(|a| a["metadata"]["deletionTimestamp"].is_string()),
        "the evicted pod is being deleted"
    );
    wait_until("the budget to see the eviction", WAIT, || {
        let p = get(&s, &["pdb", "web"])?;
        (p["status"]["disruptionsAllowed"] == 0 && p["status"]["currentHealthy"] == 1).then_some(())
    });
    let second = evict("b");
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(
        err.contains("Cannot evict pod as it would violate the pod's disruption budget"),
        "{err}"
    );
    assert!(get(&s, &["pod", "b"]).is_some_and(|b| b["metadata"]["deletionTimestamp"].is_null()));

    // An Event last seen long ago goes; a fresh one stays until its TTL.
    let old = "apiVersion: v1\nkind: Event\nmetadata:\n  name: old\ninvolvedObject: {kind: Pod, name: a, namespace: default}\nreason: Test\nmessage: old\nlastTimestamp: \"2020-01-01T00:00:00Z\"\n";
    ok(&s, &["create", "-f", "-"], Some(old));
    wait_until("the old event to expire", WAIT, || {
        get(&s, &["event", "old"]).is_none().then_some(())
    });
}

/// One member of a three-member cluster on loopback ports; killed on drop.
struct Member {
    id: u64,
    dir: PathBuf,
    peer: u16,
    child: Option<Child>,
}

impl Member {
    fn start(&mut self, initial: &str, extra: &[&str]) {
        let log = std::fs::File::create(self.dir.with_extension("log")).unwrap();
        let child = Command::new(keel_bin())
            .args(["server", "--id", &self.id.to_string()])
            .arg("--data-dir")
            .arg(&self.dir)
            .args(["--peer-addr", &format!("127.0.0.1:{}", self.peer)])
            .args(["--http-addr", &format!("127.0.0.1:{}", free_port())])
            .args(["--api-addr", &format!("127.0.0.1:{}", free_port())])
            .args(["--initial-members", initial])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn kubectl_at(kubeconfig: &Path, home: &Path, args: &[&str]) -> std::process::Output {
    kubectl_cmd()
        .env("HOME", home)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn members_allocating_at_once_never_share_an_address_or_a_node_port() {
    let dir = tempfile::tempdir().unwrap();
    let mut members: Vec<Member> = (1..=3)
        .map(|id| Member {
            id,
            dir: dir.path().join(format!("m{id}")),
            peer: free_port(),
            child: None,
        })
        .collect();
    // One cluster CA for all three.
    let pki = members[0].dir.join("pki");
    keel_apiserver::pki::Pki::load_or_create(&pki, &keel_apiserver::pki::serving_names(&[]))
        .unwrap();
    for m in &members[1..] {
        std::fs::create_dir_all(m.dir.join("pki")).unwrap();
        for f in ["ca.crt", "ca.key"] {
            std::fs::copy(pki.join(f), m.dir.join("pki").join(f)).unwrap();
        }
    }
    let initial = members
        .iter()
        .map(|m| format!("{}=127.0.0.1:{}", m.id, m.peer))
        .collect::<Vec<_>>()
        .join(",");
    // 14 usable addresses and 14 node ports.
    let ranges = [
        "--service-cluster-ip-range=10.0.0.0/28",
        "--service-node-port-range=30000-30013",
    ];
    for m in members.iter_mut() {
        m.start(&initial, &ranges);
    }
    let home = dir.path().join("home");
    for m in &members {
        wait_until(
            &format!("member {} serving", m.id),
            Duration::from_secs(90),
            || {
                (m.kubeconfig().exists()
                    && kubectl_at(
                        &m.kubeconfig(),
                        &home,
                        &["get", "ns", "default", "-o", "name"],
                    )
                    .status
                    .success())
                .then_some(())
            },
        );
    }
    // Fourteen NodePort Services created at once, spread over the members.
    let kubeconfigs: Vec<PathBuf> = members.iter().map(Member::kubeconfig).collect();
    let creates: Vec<_> = (0..14)
        .map(|i| {
            let kc = kubeconfigs[i % 3].clone();
            let home = home.clone();
            std::thread::spawn(move || {
                let name = format!("s{i}");
                kubectl_at(
                    &kc,
                    &home,
                    &["create", "service", "nodeport", &name, "--tcp=80"],
                )
            })
        })
        .collect();
    for c in creates {
        let out = c.join().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let list = kubectl_at(&kubeconfigs[0], &home, &["get", "services", "-o", "json"]);
    let list: Value = serde_json::from_slice(&list.stdout).unwrap();
    let items = list["items"].as_array().unwrap();
    let ips: std::collections::BTreeSet<&str> = items
        .iter()
        .filter_map(|s| s["spec"]["clusterIP"].as_str())
        .collect();
    let ports: std::collections::BTreeSet<i64> = items
        .iter()
        .filter_map(|s| s["spec"]["ports"][0]["nodePort"].as_i64())
        .collect();
    assert_eq!(
        (items.len(), ips.len(), ports.len()),
        (14, 14, 14),
        "{ips:?} {ports:?}"
    );
    assert!(ips.iter().all(|ip| ip.starts_with("10.0.0.")), "{ips:?}");
    assert!(
        ports.iter().all(|p| (30000..=30013).contains(p)),
        "{ports:?}"
    );
    // The range is full, on every member.
    let full = kubectl_at(
        &kubeconfigs[2],
        &home,
        &["create", "service", "clusterip", "more", "--tcp=80"],
    );
    assert!(!full.status.success());
    let err = String::from_utf8_lossy(&full.stderr);
    assert!(err.contains("range is full"), "{err}");
}

/// The ready addresses of `svc`'s Endpoints and the nodes they are on.
fn ready_nodes(s: &KeelServer, svc: &str) -> Option<Vec<String>> {
    let ep = get(s, &["endpoints", svc])?;
    let mut nodes: Vec<String> = ep["subsets"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["addresses"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a["nodeName"].as_str().map(str::to_string))
        .collect();
    nodes.sort();
    Some(nodes)
}

#[test]
fn a_deployment_on_hollow_nodes_behind_its_service_and_drained_within_its_budget() {
    let s = KeelServer::start(&[]);
    let mut nodes = keel_tests::hollow::HollowNodes::start(&s.kubeconfig(), "hn", 2);
    nodes.wait_ready(Duration::from_secs(60));
    ok(
        &s,
        &[
            "create",
            "deployment",
            "web",
            "--image=nginx",
            "--replicas=3",
            "--port=8080",
        ],
        None,
    );
    ok(
        &s,
        &[
            "expose",
            "deployment",
            "web",
            "--port=80",
            "--target-port=8080",
        ],
        None,
    );
    let long = Duration::from_secs(90);
    wait_until("three ready endpoints on the hollow nodes", long, || {
        let nodes = ready_nodes(&s, "web")?;
        (nodes.len() == 3 && nodes.iter().all(|n| n.starts_with("hn-"))).then_some(())
    });
    wait_until("three ready endpoints in the slices", long, || {
        let eps = slice_endpoints(&s, "web");
        (eps.len() == 3 && eps.iter().all(|(_, ready)| *ready)).then_some(())
    });
    // A budget by maxUnavailable: the expected pods are the Deployment's replicas.
    ok(
        &s,
        &[
            "create",
            "pdb",
            "web",
            "--selector=app=web",
            "--max-unavailable=1",
        ],
        None,
    );
    wait_until("the budget over the Deployment", long, || {
        let p = get(&s, &["pdb", "web"])?;
        let st = &p["status"];
        (st["expectedPods"] == 3 && st["desiredHealthy"] == 2 && st["disruptionsAllowed"] == 1)
            .then_some(())
    });
    // Drain: evictions one at a time within the budget; the pods come back
    // on the other node and the endpoints follow.
    let drain = kubectl(
        &s,
        &["drain", "hn-0", "--ignore-daemonsets", "--timeout=120s"],
        None,
    );
    assert!(
        drain.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&drain.stderr),
        String::from_utf8_lossy(&drain.stdout)
    );
    wait_until("three ready endpoints, all on hn-1", long, || {
        (ready_nodes(&s, "web")? == ["hn-1", "hn-1", "hn-1"]).then_some(())
    });
    // Scaled down: the endpoints shrink.
    ok(&s, &["scale", "deployment", "web", "--replicas=1"], None);
    wait_until("one ready endpoint", long, || {
        (ready_nodes(&s, "web")?.len() == 1).then_some(())
    });
}
