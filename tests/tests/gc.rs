//! Garbage collection and namespace deletion end to end, with real
//! `keel server` processes (their built-in, leader-elected controller
//! manager) and real kubectl: Background, Foreground and Orphan cascades,
//! a dependent of an owner that never existed, a dependent that keeps one
//! of two owners, invalid owner references reported as events; `kubectl
//! delete ns` of a namespace with content returning once it is empty; and a
//! three-member cluster whose controller leader is killed while owners are
//! deleted, leaving no orphan and deleting nothing with a live owner.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use keel_tests::server::{KeelServer, kubectl, kubectl_bin, output_with_stdin};
use keel_tests::{free_port, keel_bin, wait_until};
use serde_json::{Value, json};

/// Long enough for a collection on a loaded two-core machine, and for a
/// lease (15 s) to expire after a leader is killed.
const COLLECTED: Duration = Duration::from_secs(90);

/// `kubectl --kubeconfig K ARGS`, its stdout when it succeeds.
fn kc(kubeconfig: &Path, home: &Path, args: &[&str]) -> Result<String, String> {
    let out = kubectl()
        .env("HOME", home)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// `kubectl create -f -` of `objects` (a List), retried while a member
/// fails over.
fn create(kubeconfig: &Path, home: &Path, objects: Vec<Value>) {
    let list = json!({"apiVersion": "v1", "kind": "List", "items": objects}).to_string();
    let mut c = kubectl();
    c.env("HOME", home)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["create", "-f", "-"]);
    let out = output_with_stdin(c, list.as_bytes());
    assert!(
        out.status.success(),
        "kubectl create: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn cm(name: &str, owners: &[(&str, &str, bool)]) -> Value {
    let refs: Vec<Value> = owners
        .iter()
        .map(|(n, uid, block)| {
            json!({"apiVersion": "v1", "kind": "ConfigMap", "name": n, "uid": uid, "blockOwnerDeletion": block})
        })
        .collect();
    let mut v = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": "v"}});
    if !refs.is_empty() {
        v["metadata"]["ownerReferences"] = json!(refs);
    }
    v
}

/// The object as JSON, `None` when it does not exist.
fn get(kubeconfig: &Path, home: &Path, args: &[&str]) -> Option<Value> {
    let mut a = vec!["get"];
    a.extend_from_slice(args);
    a.extend_from_slice(&["-o", "json", "--ignore-not-found"]);
    loop {
        match kc(kubeconfig, home, &a) {
            Ok(s) if s.trim().is_empty() => return None,
            Ok(s) => return Some(serde_json::from_str(&s).unwrap()),
            // A member failing over: ask again.
            Err(e) => {
                eprintln!("kubectl get {args:?}: {e}");
                std::thread::sleep(Duration::from_millis(300));
            }
        }
    }
}

fn uid(obj: &Value) -> String {
    obj["metadata"]["uid"].as_str().unwrap().to_string()
}

/// Poll `cond` (at most five times a second) until it holds.
fn eventually<T>(what: &str, timeout: Duration, mut cond: impl FnMut() -> Option<T>) -> T {
    let mut first = true;
    wait_until(what, timeout, || {
        if !first {
            std::thread::sleep(Duration::from_millis(200));
        }
        first = false;
        cond()
    })
}

struct One {
    s: KeelServer,
}

impl One {
    fn kc(&self, args: &[&str]) -> Result<String, String> {
        kc(&self.s.kubeconfig(), &self.s.dir().join("home"), args)
    }
    fn get(&self, args: &[&str]) -> Option<Value> {
        get(&self.s.kubeconfig(), &self.s.dir().join("home"), args)
    }
    fn create(&self, objects: Vec<Value>) {
        create(&self.s.kubeconfig(), &self.s.dir().join("home"), objects)
    }
    fn cm_uid(&self, name: &str) -> String {
        uid(&self
            .get(&["cm", name])
            .unwrap_or_else(|| panic!("no configmap {name}")))
    }
    fn gone(&self, what: &str, args: &[&str]) {
        eventually(what, COLLECTED, || self.get(args).is_none().then_some(()));
    }
}

#[test]
fn owner_references_are_collected_as_kubernetes_does() {
    let t = One {
        s: KeelServer::start(&[]),
    };
    // Owners first, then dependents naming them by uid.
    t.create(vec![
        cm("bg", &[]),
        cm("fg", &[]),
        cm("or", &[]),
        cm("two-a", &[]),
        cm("two-b", &[]),
        cm("live", &[]),
    ]);
    let u = |n: &str| t.cm_uid(n);
    let (bg, fg, or, two_a, two_b, live) =
        (u("bg"), u("fg"), u("or"), u("two-a"), u("two-b"), u("live"));
    t.create(vec![
        cm("bg-d1", &[("bg", &bg, false)]),
        cm("bg-d2", &[("bg", &bg, true)]),
        cm("or-d", &[("or", &or, true)]),
        cm(
            "two-d",
            &[("two-a", &two_a, false), ("two-b", &two_b, false)],
        ),
        cm("live-d", &[("live", &live, true)]),
        cm(
            "ghost-d",
            &[("ghost", "00000000-0000-0000-0000-00000000dead", false)],
        ),
    ]);
    let bg_d2 = u("bg-d2");
    // A chain: collected once its own owner is.
    t.create(vec![cm("bg-d2-child", &[("bg-d2", &bg_d2, false)])]);
    // Foreground: one blocking dependent held by a finalizer of ours, one not blocking.
    let mut held = cm("fg-held", &[("fg", &fg, true)]);
    held["metadata"]["finalizers"] = json!(["example.com/hold"]);
    t.create(vec![held, cm("fg-loose", &[("fg", &fg, false)])]);
    let live_d = u("live-d");

    // An owner that never existed: its dependent is collected.
    t.gone("ghost-d collected", &["cm", "ghost-d"]);

    // Background: the owner goes at once, its dependents (and theirs) after.
    t.kc(&["delete", "cm", "bg"]).unwrap();
    for d in ["bg-d1", "bg-d2", "bg-d2-child"] {
        t.gone(&format!("{d} collected after its owner"), &["cm", d]);
    }

    // Foreground: the owner stays, with the finalizer, while a blocking dependent remains.
    t.kc(&["delete", "cm", "fg", "--cascade=foreground", "--wait=false"])
        .unwrap();
    t.gone("fg-loose deleted before its owner", &["cm", "fg-loose"]);
    let held = eventually("fg-held marked for deletion", COLLECTED, || {
        t.get(&["cm", "fg-held"])
            .filter(|o| o["metadata"]["deletionTimestamp"].is_string())
    });
    assert_eq!(
        held["metadata"]["finalizers"],
        json!(["example.com/hold"]),
        "{held}"
    );
    let owner = t
        .get(&["cm", "fg"])
        .expect("the owner waits for its blocking dependent");
    assert!(
        owner["metadata"]["deletionTimestamp"].is_string(),
        "{owner}"
    );
    assert_eq!(
        owner["metadata"]["finalizers"],
        json!(["foregroundDeletion"]),
        "{owner}"
    );
    t.kc(&[
        "patch",
        "cm",
        "fg-held",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ])
    .unwrap();
    t.gone(
        "fg-held gone once its finalizer is removed",
        &["cm", "fg-held"],
    );
    t.gone("fg gone after its blocking dependent", &["cm", "fg"]);

    // Orphan: the owner goes, the dependent stays without the reference.
    t.kc(&["delete", "cm", "or", "--cascade=orphan"]).unwrap();
    t.gone("or deleted", &["cm", "or"]);
    let or_d = t.get(&["cm", "or-d"]).expect("an orphaned dependent stays");
    assert!(
        or_d["metadata"]["ownerReferences"]
            .as_array()
            .is_none_or(|a| a.is_empty()),
        "{or_d}"
    );

    // Two owners, one deleted: only the dead reference goes.
    t.kc(&["delete", "cm", "two-a"]).unwrap();
    let two_d = eventually("two-d to lose its dead owner", COLLECTED, || {
        t.get(&["cm", "two-d"]).filter(|o| {
            o["metadata"]["ownerReferences"]
                .as_array()
                .is_some_and(|a| a.len() == 1)
        })
    });
    assert_eq!(
        two_d["metadata"]["ownerReferences"][0]["uid"],
        two_b.as_str(),
        "{two_d}"
    );

    // Owner references that cannot be valid: a namespaced dependent naming
    // an owner of another namespace (collected, with an event), and a
    // cluster-scoped dependent naming a namespaced owner (kept, with an event).
    t.kc(&["create", "namespace", "other"]).unwrap();
    let mut cross = cm("cross", &[("live", &live, false)]);
    cross["metadata"]["namespace"] = json!("other");
    t.create(vec![cross]);
    t.gone(
        "a dependent whose owner is in another namespace",
        &["cm", "cross", "-n", "other"],
    );
    let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "gc-cluster-dependent", "ownerReferences": [
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "live", "uid": live}]},
        "rules": []});
    t.create(vec![role]);
    for (ns, name) in [("other", "cross"), ("default", "gc-cluster-dependent")] {
        eventually(
            &format!("an OwnerRefInvalidNamespace event for {name}"),
            COLLECTED,
            || {
                let events = t.get(&["events", "-n", ns])?;
                events["items"]
                    .as_array()?
                    .iter()
                    .any(|e| {
                        e["reason"] == "OwnerRefInvalidNamespace"
                            && e["involvedObject"]["name"] == name
                            && e["type"] == "Warning"
                    })
                    .then_some(())
            },
        );
    }
    assert!(
        t.get(&["clusterrole", "gc-cluster-dependent"]).is_some(),
        "a cluster-scoped dependent of a namespaced owner is never collected"
    );

    // Nothing with a live owner was touched.
    assert_eq!(t.cm_uid("live-d"), live_d);
    assert_eq!(t.cm_uid("two-d"), uid(&two_d));
}

#[test]
fn kubectl_delete_namespace_returns_once_its_content_is_gone() {
    let t = One {
        s: KeelServer::start(&[]),
    };
    t.kc(&["create", "namespace", "doomed"]).unwrap();
    let ns = |mut v: Value| {
        v["metadata"]["namespace"] = json!("doomed");
        v
    };
    let mut held = cm("held", &[]);
    held["metadata"]["finalizers"] = json!(["example.com/hold"]);
    t.create(vec![
        ns(cm("a", &[])),
        ns(cm("b", &[])),
        ns(held),
        ns(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "stringData": {"k": "v"}})),
        ns(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}})),
    ]);
    // kubectl's default: wait until the namespace is gone.
    let mut delete: Child =
        t.s.admin(&["delete", "namespace", "doomed"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
    let status = eventually(
        "the namespace to report its remaining finalizer",
        COLLECTED,
        || {
            let o = t.get(&["namespace", "doomed"])?;
            let conds = o["status"]["conditions"].as_array()?.clone();
            let by_type: BTreeMap<String, Value> = conds
                .into_iter()
                .map(|c| (c["type"].as_str().unwrap_or("").to_string(), c))
                .collect();
            let rem = by_type.get("NamespaceContentRemaining")?;
            (rem["status"] == "True"
                && rem["message"]
                    == "Some resources are remaining: configmaps has 1 resource instances")
                .then_some(o)
        },
    );
    assert_eq!(status["status"]["phase"], "Terminating", "{status}");
    assert!(
        status["metadata"]["deletionTimestamp"].is_string(),
        "{status}"
    );
    assert_eq!(
        status["spec"]["finalizers"],
        json!(["kubernetes"]),
        "{status}"
    );
    let conds: BTreeMap<String, (String, String)> = status["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["type"].as_str().unwrap().to_string(),
                (
                    c["status"].as_str().unwrap().to_string(),
                    c["reason"].as_str().unwrap().to_string(),
                ),
            )
        })
        .collect();
    let want = |s: &str, r: &str| (s.to_string(), r.to_string());
    assert_eq!(
        conds["NamespaceDeletionDiscoveryFailure"],
        want("False", "ResourcesDiscovered")
    );
    assert_eq!(
        conds["NamespaceDeletionGroupVersionParsingFailure"],
        want("False", "ParsedGroupVersions")
    );
    assert_eq!(
        conds["NamespaceDeletionContentFailure"],
        want("False", "ContentDeleted")
    );
    assert_eq!(
        conds["NamespaceFinalizersRemaining"],
        want("True", "SomeFinalizersRemain")
    );
    // Everything but the held object is gone already; kubectl still waits.
    for what in [["cm", "a"], ["cm", "b"], ["secret", "s"], ["pod", "p"]] {
        assert!(
            t.get(&[what[0], what[1], "-n", "doomed"]).is_none(),
            "{what:?} left in a terminating namespace"
        );
    }
    assert!(
        delete.try_wait().unwrap().is_none(),
        "kubectl delete ns returned while content remains"
    );
    t.kc(&[
        "patch",
        "cm",
        "held",
        "-n",
        "doomed",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ])
    .unwrap();
    let done = eventually("kubectl delete namespace to return", COLLECTED, || {
        delete.try_wait().unwrap()
    });
    let out = delete.wait_with_output().unwrap();
    assert!(
        done.success(),
        "kubectl delete ns: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("namespace \"doomed\" deleted"));
    assert!(
        t.get(&["namespace", "doomed"]).is_none(),
        "the namespace is gone when kubectl returns"
    );
}

/// `kubectl ARGS` (which waits by default) run to its end within
/// `COLLECTED`; its stdout, or a panic with its stderr.
fn run_waiting(t: &One, bin: &Path, args: &[&str]) -> String {
    let mut child = Command::new(bin)
        .env("HOME", t.s.dir().join("home"))
        .arg("--kubeconfig")
        .arg(t.s.kubeconfig())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let done = eventually(&format!("kubectl {args:?} to return"), COLLECTED, || {
        child.try_wait().unwrap()
    });
    let out = child.wait_with_output().unwrap();
    assert!(
        done.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// With kubectl 1.33 and 1.27 themselves: `delete namespace` of a
/// namespace with content returns once the namespace and its content are
/// gone, and `delete --cascade=foreground` once the collector has removed
/// the dependents and then the owner; `--cascade=background` and
/// `--cascade=orphan` collect or keep the dependent.
#[test]
fn kubectl_133_and_127_wait_for_namespaces_and_cascades() {
    let t = One {
        s: KeelServer::start(&[]),
    };
    for v in ["1.33", "1.27"] {
        let bin = kubectl_bin(Some(v));
        let ns = format!("gone-{}", v.replace('.', "-"));
        t.kc(&["create", "namespace", &ns]).unwrap();
        let inside = |mut o: Value| {
            o["metadata"]["namespace"] = json!(ns);
            o
        };
        t.create(vec![
            inside(cm("a", &[])),
            inside(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "stringData": {"k": "v"}})),
            inside(json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "robot"}})),
            inside(json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                "spec": {"selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": {"labels": {"app": "web"}},
                        "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}})),
        ]);
        let out = run_waiting(&t, &bin, &["delete", "namespace", &ns]);
        assert!(
            out.contains(&format!("namespace \"{ns}\" deleted")),
            "{out}"
        );
        assert!(t.get(&["namespace", &ns]).is_none(), "{v}: {ns} is left");
        for what in ["cm", "secret", "serviceaccount", "deployment"] {
            // An empty list prints nothing with --ignore-not-found.
            let left = t.get(&[what, "-n", &ns]);
            assert!(
                left.as_ref().is_none_or(|l| l["items"] == json!([])),
                "{v}: {what} left in {ns}: {left:?}"
            );
        }

        // Cascades, each an owner with one dependent.
        for policy in ["foreground", "background", "orphan"] {
            let owner = format!("owner-{policy}-{}", v.replace('.', "-"));
            let dep = format!("dep-{policy}-{}", v.replace('.', "-"));
            t.create(vec![cm(&owner, &[])]);
            let uid = t.cm_uid(&owner);
            t.create(vec![cm(&dep, &[(&owner, &uid, true)])]);
            let out = run_waiting(
                &t,
                &bin,
                &["delete", "cm", &owner, &format!("--cascade={policy}")],
            );
            assert!(out.contains(&format!("\"{owner}\" deleted")), "{out}");
            match policy {
                // kubectl waited for the owner, which goes after its dependent.
                "foreground" => {
                    assert!(t.get(&["cm", &owner]).is_none(), "{v}: {owner} is left");
                    assert!(
                        t.get(&["cm", &dep]).is_none(),
                        "{v}: {dep} outlived its owner"
                    );
                }
                "background" => t.gone(&format!("{v}: {dep} collected"), &["cm", &dep]),
                _ => {
                    let kept = t.get(&["cm", &dep]).expect("an orphaned dependent is kept");
                    let refs = kept["metadata"]["ownerReferences"].as_array();
                    assert!(
                        refs.is_none_or(|r| r.is_empty()),
                        "{v}: the orphan keeps no reference to its deleted owner: {kept}"
                    );
                }
            }
        }
    }
}

/// One `keel server` of a three-member cluster.
struct Member {
    id: u64,
    dir: PathBuf,
    peer: u16,
    api: u16,
    child: Option<Child>,
}

impl Member {
    fn start(&mut self, initial: &str) {
        let log = std::fs::File::create(self.dir.with_extension("log")).unwrap();
        self.child = Some(
            Command::new(keel_bin())
                .args(["server", "--id", &self.id.to_string()])
                .arg("--data-dir")
                .arg(&self.dir)
                .args(["--peer-addr", &format!("127.0.0.1:{}", self.peer)])
                .args(["--http-addr", &format!("127.0.0.1:{}", free_port())])
                .args(["--api-addr", &format!("127.0.0.1:{}", self.api)])
                .args(["--initial-members", initial])
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
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

/// The controller lease's holder (`keel-<id>_<api addr>_<pid>`) as a member id.
fn lease_holder(kubeconfig: &Path, home: &Path) -> Option<u64> {
    let lease = get(
        kubeconfig,
        home,
        &["lease", "keel-controller-manager", "-n", "kube-system"],
    )?;
    let holder = lease["spec"]["holderIdentity"].as_str()?;
    holder
        .strip_prefix("keel-")?
        .split('_')
        .next()?
        .parse()
        .ok()
}

#[test]
fn collection_survives_a_kill_of_the_controller_leader() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let mut members: Vec<Member> = (1..=3)
        .map(|id| Member {
            id,
            dir: dir.path().join(format!("m{id}")),
            peer: free_port(),
            api: free_port(),
            child: None,
        })
        .collect();
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
    for m in members.iter_mut() {
        m.start(&initial);
    }
    for m in &members {
        eventually(
            &format!("member {} serving", m.id),
            Duration::from_secs(60),
            || {
                (m.kubeconfig().exists()
                    && kc(
                        &m.kubeconfig(),
                        &home,
                        &["get", "ns", "default", "-o", "name"],
                    )
                    .is_ok())
                .then_some(())
            },
        );
    }
    let leader = eventually("a controller leader", COLLECTED, || {
        lease_holder(&members[0].kubeconfig(), &home)
    });
    let other = members
        .iter()
        .find(|m| m.id != leader)
        .unwrap()
        .kubeconfig();

    // 12 owners to delete, each with two dependents; 6 owners that stay,
    // each with a dependent, and a dependent shared with a doomed owner.
    let (doomed, kept) = (12, 6);
    let mut owners: Vec<Value> = (0..doomed).map(|i| cm(&format!("o-{i}"), &[])).collect();
    owners.extend((0..kept).map(|i| cm(&format!("k-{i}"), &[])));
    create(&other, &home, owners);
    let all = get(&other, &home, &["cm"]).unwrap();
    let uids: BTreeMap<String, String> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["metadata"]["name"].as_str().unwrap().to_string(), uid(o)))
        .collect();
    let mut deps = Vec::new();
    for i in 0..doomed {
        let o = format!("o-{i}");
        for j in 0..2 {
            deps.push(cm(&format!("o-{i}-d{j}"), &[(&o, &uids[&o], j == 0)]));
        }
    }
    for i in 0..kept {
        let k = format!("k-{i}");
        let o = format!("o-{i}");
        deps.push(cm(&format!("k-{i}-d"), &[(&k, &uids[&k], true)]));
        deps.push(cm(
            &format!("shared-{i}"),
            &[(&o, &uids[&o], false), (&k, &uids[&k], false)],
        ));
    }
    create(&other, &home, deps);
    let before = get(&other, &home, &["cm"]).unwrap();
    let kept_uids: BTreeMap<String, String> = before["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| {
            let n = o["metadata"]["name"].as_str().unwrap();
            n.starts_with("k-") || n.starts_with("shared-")
        })
        .map(|o| (o["metadata"]["name"].as_str().unwrap().to_string(), uid(o)))
        .collect();
    assert_eq!(kept_uids.len(), kept * 3);

    // Delete the owners, killing the controller leader half-way.
    let survivor = |members: &[Member]| {
        members
            .iter()
            .find(|m| m.child.is_some() && m.id != leader)
            .unwrap()
            .kubeconfig()
    };
    for i in 0..doomed {
        if i == doomed / 2 {
            let m = members.iter_mut().find(|m| m.id == leader).unwrap();
            let mut c = m.child.take().unwrap();
            c.kill().unwrap();
            c.wait().unwrap();
        }
        let name = format!("o-{i}");
        let kubeconfig = survivor(&members);
        eventually(&format!("{name} deleted"), COLLECTED, || {
            match kc(
                &kubeconfig,
                &home,
                &["delete", "cm", &name, "--wait=false", "--ignore-not-found"],
            ) {
                Ok(_) => Some(()),
                Err(e) => {
                    eprintln!("delete {name}: {e}");
                    None
                }
            }
        });
    }
    let kubeconfig = survivor(&members);
    let new_leader = eventually("a new controller leader", COLLECTED, || {
        lease_holder(&kubeconfig, &home).filter(|l| *l != leader)
    });
    assert!(
        members
            .iter()
            .any(|m| m.id == new_leader && m.child.is_some())
    );
    // No orphan left behind: every dependent of a deleted owner goes, and
    // shared dependents keep only their live owner.
    let after = eventually(
        "every dependent of a deleted owner collected",
        Duration::from_secs(150),
        || {
            let list = get(&kubeconfig, &home, &["cm"])?;
            let items = list["items"].as_array()?.clone();
            let orphans = items
                .iter()
                .filter(|o| o["metadata"]["name"].as_str().unwrap().starts_with("o-"))
                .count();
            let shared_done = items
                .iter()
                .filter(|o| {
                    o["metadata"]["name"]
                        .as_str()
                        .unwrap()
                        .starts_with("shared-")
                })
                .all(|o| {
                    o["metadata"]["ownerReferences"]
                        .as_array()
                        .is_some_and(|a| a.len() == 1)
                });
            (orphans == 0 && shared_done).then_some(items)
        },
    );
    // Nothing with a live owner was deleted (same uids: not deleted and recreated).
    let now: BTreeMap<String, String> = after
        .iter()
        .filter(|o| {
            let n = o["metadata"]["name"].as_str().unwrap();
            n.starts_with("k-") || n.starts_with("shared-")
        })
        .map(|o| (o["metadata"]["name"].as_str().unwrap().to_string(), uid(o)))
        .collect();
    assert_eq!(now, kept_uids, "an object with a live owner was deleted");
    for o in after.iter().filter(|o| {
        o["metadata"]["name"]
            .as_str()
            .unwrap()
            .starts_with("shared-")
    }) {
        let name = o["metadata"]["name"].as_str().unwrap();
        let k = name.replace("shared-", "k-");
        assert_eq!(
            o["metadata"]["ownerReferences"][0]["uid"],
            uids[&k].as_str(),
            "{o}"
        );
    }
}

/// Kills the child on drop, pass or fail.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn keel_controllers_runs_the_manager_alone() {
    let t = One {
        s: KeelServer::start(&[&"--controllers=false"]),
    };
    t.create(vec![cm("solo", &[])]);
    let solo = t.cm_uid("solo");
    t.create(vec![cm("solo-d", &[("solo", &solo, false)])]);
    t.kc(&["delete", "cm", "solo"]).unwrap();
    // Nothing collects without a manager...
    assert!(t.get(&["cm", "solo-d"]).is_some());
    let log = std::fs::File::create(t.s.dir().join("controllers.log")).unwrap();
    let _manager = Killed(
        Command::new(keel_bin())
            .args(["controllers", "--kubeconfig"])
            .arg(t.s.kubeconfig())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    // ...and `keel controllers` takes the lease and collects.
    t.gone("solo-d collected by keel controllers", &["cm", "solo-d"]);
    let lease = t
        .get(&["lease", "keel-controller-manager", "-n", "kube-system"])
        .expect("the manager's lease");
    assert!(
        lease["spec"]["holderIdentity"]
            .as_str()
            .is_some_and(|h| !h.is_empty()),
        "{lease}"
    );
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 15, "{lease}");
}
