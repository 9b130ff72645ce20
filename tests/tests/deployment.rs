//! The replicaset and deployment controllers end to end, with real `keel
//! server` processes, the scheduler, hollow nodes and kubectl 1.33: a
//! ReplicaSet keeps its replicas, adopts a matching orphan and releases a
//! pod relabelled away; a Deployment rolls out (`rollout status`), rolls a
//! new image out within maxSurge/maxUnavailable, lists its revisions
//! (`rollout history`), rolls back (`rollout undo`), pauses and resumes,
//! restarts, keeps only revisionHistoryLimit old replica sets, recreates
//! (Recreate), and reports a rollout stuck past its progress deadline; and
//! in a three-member cluster a rollout survives a `kill -9` of the member
//! that holds the controller lease without any pod created twice.
//!
//! Hollow nodes (`keel hollow-nodes`) run the pods the scheduler binds to
//! them: Running and Ready at once, or after `hollow.keel.dev/ready-after`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keel_tests::hollow::{HollowNodes, READY_AFTER};
use keel_tests::server::{KeelServer, kubectl_bin, output_with_stdin};
use keel_tests::{free_port, keel_bin, wait_until};
use serde_json::{Value, json};

/// Long enough for a rollout on a loaded two-core machine.
const ROLLOUT: Duration = Duration::from_secs(120);

/// kubectl 1.33 against one member, as the admin.
#[derive(Clone)]
struct Kc {
    bin: PathBuf,
    kubeconfig: PathBuf,
    home: PathBuf,
}

impl Kc {
    fn new(kubeconfig: PathBuf, home: PathBuf) -> Kc {
        Kc {
            bin: kubectl_bin(Some("1.33")),
            kubeconfig,
            home,
        }
    }

    fn of(s: &KeelServer) -> Kc {
        Kc::new(s.kubeconfig(), s.dir().join("home"))
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.env("HOME", &self.home)
            .env("KUBECACHEDIR", self.home.join("cache"))
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args);
        c
    }

    fn run(&self, args: &[&str]) -> Result<String, String> {
        let out = self.command(args).output().unwrap();
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    fn ok(&self, args: &[&str]) -> String {
        self.run(args)
            .unwrap_or_else(|e| panic!("kubectl {args:?}: {e}"))
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut a = vec!["get"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["-o", "json"]);
        serde_json::from_str(&self.ok(&a)).unwrap()
    }

    fn apply(&self, obj: Value) {
        let out = output_with_stdin(
            self.command(&["apply", "-f", "-"]),
            obj.to_string().as_bytes(),
        );
        assert!(
            out.status.success(),
            "kubectl apply: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
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

/// A server whose log (but openraft's) is printed when the test fails.
struct Logged(KeelServer);

impl Drop for Logged {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.0.log();
            let lines: Vec<&str> = log.lines().filter(|l| !l.contains("openraft")).collect();
            eprintln!(
                "--- keel server log (but openraft, last 300 lines):\n{}",
                lines[lines.len().saturating_sub(300)..].join("\n")
            );
        }
    }
}

/// Two hollow nodes for the pods of `kubeconfig`'s cluster, Ready.
fn nodes(kubeconfig: &Path) -> HollowNodes {
    let mut n = HollowNodes::start(kubeconfig, "node", 2);
    n.wait_ready(ROLLOUT);
    n
}

/// A server with every controller but the scheduler (pods stay unbound).
fn unscheduled() -> KeelServer {
    KeelServer::start(&[&"--enabled-controllers=*,-scheduler"])
}

fn items(v: &Value) -> Vec<Value> {
    v["items"].as_array().cloned().unwrap_or_default()
}

fn name(o: &Value) -> String {
    o["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The pods a controller with `uid` controls.
fn owned_by(kc: &Kc, uid: &str) -> Vec<Value> {
    items(&kc.json(&["pods"]))
        .into_iter()
        .filter(|p| {
            p["metadata"]["ownerReferences"]
                .as_array()
                .is_some_and(|r| r.iter().any(|r| r["uid"] == uid && r["controller"] == true))
        })
        .collect()
}

fn deployment(name: &str, replicas: i64, image: &str, strategy: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "revisionHistoryLimit": 2,
            "selector": {"matchLabels": {"app": name}},
            "strategy": strategy,
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": image}]}
            }
        }
    })
}

/// The deployment's replica sets by name: (revision, spec replicas, image).
fn replica_sets(kc: &Kc, app: &str) -> BTreeMap<String, (String, i64, String)> {
    items(&kc.json(&["rs", "-l", &format!("app={app}")]))
        .iter()
        .map(|rs| {
            (
                name(rs),
                (
                    rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    rs["spec"]["replicas"].as_i64().unwrap_or(-1),
                    rs["spec"]["template"]["spec"]["containers"][0]["image"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                ),
            )
        })
        .collect()
}

/// `kubectl rollout status`, the objects shown when it fails.
fn rollout_status(kc: &Kc, what: &str) -> String {
    kc.run(&["rollout", "status", what, "--timeout=120s"])
        .unwrap_or_else(|e| {
            let state = kc
                .run(&["get", "deploy,rs,pods", "-o", "wide", "--show-labels"])
                .unwrap_or_default();
            let status = kc
                .run(&["get", "deploy,rs", "-o", "jsonpath={range .items[*]}{.metadata.name} {.metadata.generation} {.status}{\"\\n\"}{end}"])
                .unwrap_or_default();
            panic!("rollout status {what}: {e}\n{state}\n{status}")
        })
}

#[test]
fn replica_sets_keep_replicas_adopt_and_release() {
    let s = unscheduled();
    let kc = Kc::of(&s);
    kc.apply(json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "rs", "namespace": "default"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "rs"}},
            "template": {"metadata": {"labels": {"app": "rs", "extra": "x"}},
                         "spec": {"containers": [{"name": "c", "image": "i"}]}}
        }
    }));
    let rs = kc.json(&["rs", "rs"]);
    let uid = rs["metadata"]["uid"].as_str().unwrap().to_string();
    let pods = eventually("three pods for rs", ROLLOUT, || {
        let p = owned_by(&kc, &uid);
        (p.len() == 3).then_some(p)
    });
    for p in &pods {
        let r = &p["metadata"]["ownerReferences"][0];
        assert_eq!(
            (&r["kind"], &r["name"], &r["blockOwnerDeletion"]),
            (&json!("ReplicaSet"), &json!("rs"), &json!(true))
        );
        assert_eq!(p["metadata"]["generateName"], "rs-");
        assert_eq!(p["metadata"]["labels"]["extra"], "x");
    }
    eventually("rs status", ROLLOUT, || {
        let st = kc.json(&["rs", "rs"])["status"].clone();
        (st["replicas"] == 3 && st["fullyLabeledReplicas"] == 3 && st["observedGeneration"] == 1)
            .then_some(())
    });

    // A deleted pod is replaced.
    let gone = name(&pods[0]);
    kc.ok(&["delete", "pod", &gone]);
    eventually("a replacement pod", ROLLOUT, || {
        let p = owned_by(&kc, &uid);
        (p.len() == 3 && p.iter().all(|p| name(p) != gone)).then_some(())
    });

    // Scaled down to one, then an orphan made Ready is adopted and the
    // unready pod goes instead of it (not ready before ready).
    kc.ok(&["scale", "rs", "rs", "--replicas=1"]);
    eventually("one pod left", ROLLOUT, || {
        (owned_by(&kc, &uid).len() == 1).then_some(())
    });
    kc.apply(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "stray", "namespace": "default", "labels": {"app": "elsewhere"}},
        "spec": {"containers": [{"name": "c", "image": "i"}]}
    }));
    kc.ok(&[
        "patch",
        "pod",
        "stray",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"phase":"Running","conditions":[{"type":"Ready","status":"True"}]}}"#,
    ]);
    kc.ok(&["label", "pod", "stray", "app=rs", "--overwrite"]);
    eventually(
        "the orphan adopted, the unready pod deleted",
        ROLLOUT,
        || {
            let p = owned_by(&kc, &uid);
            (p.len() == 1 && name(&p[0]) == "stray").then_some(())
        },
    );

    // Relabelled away, it is released and replaced.
    kc.ok(&["label", "pod", "stray", "app=gone", "--overwrite"]);
    eventually("stray released and replaced", ROLLOUT, || {
        let stray = kc.json(&["pod", "stray"]);
        let released = stray["metadata"]["ownerReferences"]
            .as_array()
            .is_none_or(|r| r.is_empty());
        let p = owned_by(&kc, &uid);
        (released && p.len() == 1 && name(&p[0]) != "stray").then_some(())
    });

    let events = kc.json(&["events", "--field-selector", "involvedObject.name=rs"]);
    let said: BTreeSet<(String, String)> = items(&events)
        .iter()
        .map(|e| {
            (
                e["reason"].as_str().unwrap_or_default().to_string(),
                e["message"]
                    .as_str()
                    .unwrap_or_default()
                    .split(": ")
                    .next()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect();
    assert!(
        said.contains(&("SuccessfulCreate".into(), "Created pod".into())),
        "{said:?}"
    );
    assert!(
        said.contains(&("SuccessfulDelete".into(), "Deleted pod".into())),
        "{said:?}"
    );
}

#[test]
fn deployments_roll_out_back_pause_and_restart_with_kubectl() {
    let s = Logged(KeelServer::start(&[]));
    let kc = Kc::of(&s.0);
    let _nodes = nodes(&s.0.kubeconfig());
    let rolling =
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}});
    kc.apply(deployment("web", 3, "nginx:1", rolling));
    let out = rollout_status(&kc, "deployment/web");
    assert!(
        out.contains("deployment \"web\" successfully rolled out"),
        "{out}"
    );
    let d = kc.json(&["deploy", "web"]);
    assert_eq!(
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "1"
    );
    let st = &d["status"];
    assert_eq!(
        (
            &st["replicas"],
            &st["updatedReplicas"],
            &st["readyReplicas"],
            &st["availableReplicas"]
        ),
        (&json!(3), &json!(3), &json!(3), &json!(3))
    );
    let conds: BTreeMap<String, (String, String)> = st["conditions"]
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
    assert_eq!(
        conds["Available"],
        ("True".into(), "MinimumReplicasAvailable".into())
    );
    assert_eq!(
        conds["Progressing"],
        ("True".into(), "NewReplicaSetAvailable".into())
    );
    let first = replica_sets(&kc, "web");
    assert_eq!(first.len(), 1);
    let (rs1, _) = first.iter().next().unwrap();
    let hash = rs1.strip_prefix("web-").unwrap();
    let rs = kc.json(&["rs", rs1]);
    assert_eq!(rs["metadata"]["labels"]["pod-template-hash"], hash);
    assert_eq!(
        rs["spec"]["selector"]["matchLabels"]["pod-template-hash"],
        hash
    );
    assert!(items(&kc.json(&["pods", "-l", &format!("pod-template-hash={hash}")])).len() == 3);

    // A new image rolls out: never more than 4 pods, never fewer than 3 ready.
    let watcher = PodCounter::start(&kc, "app=web", 3);
    eventually("the watch lists the pods", ROLLOUT, || {
        (watcher.added().len() == 3).then_some(())
    });
    kc.ok(&["set", "image", "deployment/web", "c=nginx:2"]);
    let out = rollout_status(&kc, "deployment/web");
    assert!(out.contains("successfully rolled out"), "{out}");
    let max_pods = watcher.max_alive();
    assert!(
        max_pods <= 4,
        "maxSurge 1 of 3 allows 4 pods, saw {max_pods}"
    );
    eventually(
        "the watch saw three old and three new pods",
        ROLLOUT,
        || (watcher.added().len() == 6).then_some(()),
    );
    assert_eq!(
        watcher.min_ready(),
        Some(3),
        "maxUnavailable 0: never fewer than 3 ready"
    );
    let sets = replica_sets(&kc, "web");
    let by_image: BTreeMap<String, (String, i64)> = sets
        .values()
        .map(|(rev, n, img)| (img.clone(), (rev.clone(), *n)))
        .collect();
    assert_eq!(by_image["nginx:1"], ("1".to_string(), 0));
    assert_eq!(by_image["nginx:2"], ("2".to_string(), 3));
    let history = kc.ok(&["rollout", "history", "deployment/web"]);
    assert!(
        history.contains("REVISION")
            && history.lines().any(|l| l.starts_with("1 "))
            && history.lines().any(|l| l.starts_with("2 ")),
        "{history}"
    );
    let rev1 = kc.ok(&["rollout", "history", "deployment/web", "--revision=1"]);
    assert!(rev1.contains("nginx:1"), "{rev1}");
    // A change cause annotated on the deployment shows for its current revision.
    kc.ok(&[
        "annotate",
        "deployment/web",
        "kubernetes.io/change-cause=moved to nginx 2",
    ]);
    eventually("the change cause in the history", ROLLOUT, || {
        let history = kc.ok(&["rollout", "history", "deployment/web"]);
        history
            .lines()
            .any(|l| l.starts_with("2 ") && l.contains("moved to nginx 2"))
            .then_some(())
    });

    // Undo goes back to nginx:1, which becomes revision 3 (its replica set reused).
    let out = kc.ok(&["rollout", "undo", "deployment/web"]);
    assert!(out.contains("rolled back"), "{out}");
    rollout_status(&kc, "deployment/web");
    let d = kc.json(&["deploy", "web"]);
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1"
    );
    assert_eq!(
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "3"
    );
    let sets = replica_sets(&kc, "web");
    assert_eq!(sets[rs1].0, "3", "{sets:?}");
    assert_eq!(sets[rs1].1, 3);

    // Paused: a new template makes no replica set until resumed.
    kc.ok(&["rollout", "pause", "deployment/web"]);
    kc.ok(&["set", "image", "deployment/web", "c=nginx:3"]);
    eventually("the paused condition", ROLLOUT, || {
        let d = kc.json(&["deploy", "web"]);
        d["status"]["conditions"]
            .as_array()?
            .iter()
            .any(|c| c["type"] == "Progressing" && c["reason"] == "DeploymentPaused")
            .then_some(())
    });
    assert!(
        replica_sets(&kc, "web")
            .values()
            .all(|(_, _, img)| img != "nginx:3"),
        "a paused deployment rolled out"
    );
    let refused = kc.run(&["rollout", "undo", "deployment/web"]).unwrap_err();
    assert!(refused.contains("paused"), "{refused}");
    kc.ok(&["rollout", "resume", "deployment/web"]);
    rollout_status(&kc, "deployment/web");
    let sets = replica_sets(&kc, "web");
    assert!(
        sets.values()
            .any(|(rev, n, img)| img == "nginx:3" && rev == "4" && *n == 3),
        "{sets:?}"
    );

    // Restart: the same image in a new replica set, pods replaced.
    let before: BTreeSet<String> = items(&kc.json(&["pods", "-l", "app=web"]))
        .iter()
        .map(name)
        .collect();
    kc.ok(&["rollout", "restart", "deployment/web"]);
    rollout_status(&kc, "deployment/web");
    let d = kc.json(&["deploy", "web"]);
    assert!(
        d["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"]
            .is_string()
    );
    eventually("the restarted pods only", ROLLOUT, || {
        let now: BTreeSet<String> = items(&kc.json(&["pods", "-l", "app=web"]))
            .iter()
            .map(name)
            .collect();
        (now.len() == 3 && now.is_disjoint(&before)).then_some(())
    });
    // revisionHistoryLimit 2: the new replica set and two old ones remain.
    eventually("old replica sets cleaned up", ROLLOUT, || {
        let sets = replica_sets(&kc, "web");
        let revs: BTreeSet<String> = sets.values().map(|(r, _, _)| r.clone()).collect();
        (sets.len() == 3 && revs == ["3", "4", "5"].map(String::from).into()).then_some(())
    });
    let events = kc.json(&["events", "--field-selector", "involvedObject.name=web"]);
    assert!(
        items(&events)
            .iter()
            .any(|e| e["reason"] == "ScalingReplicaSet"
                && e["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("Scaled up replica set web-"))),
        "{events}"
    );

    // Scaled mid-way: the replicas follow.
    kc.ok(&["scale", "deployment/web", "--replicas=5"]);
    rollout_status(&kc, "deployment/web");
    eventually("five ready pods", ROLLOUT, || {
        (kc.json(&["deploy", "web"])["status"]["readyReplicas"] == 5).then_some(())
    });
}

#[test]
fn recreate_and_progress_deadline() {
    let s = Logged(KeelServer::start(&[]));
    let kc = Kc::of(&s.0);
    let _nodes = nodes(&s.0.kubeconfig());
    kc.apply(deployment(
        "batch",
        2,
        "busybox:1",
        json!({"type": "Recreate"}),
    ));
    rollout_status(&kc, "deployment/batch");
    let old: BTreeSet<String> = items(&kc.json(&["pods", "-l", "app=batch"]))
        .iter()
        .map(name)
        .collect();
    assert_eq!(old.len(), 2);
    // Recreate: the new pods come only once the old ones are gone.
    let watcher = PodCounter::start(&kc, "app=batch", 2);
    eventually("the watch lists the pods", ROLLOUT, || {
        (watcher.added().len() == 2).then_some(())
    });
    kc.ok(&["set", "image", "deployment/batch", "c=busybox:2"]);
    rollout_status(&kc, "deployment/batch");
    eventually("the watch saw two old and two new pods", ROLLOUT, || {
        (watcher.added().len() == 4).then_some(())
    });
    assert!(
        watcher.max_alive() <= 2,
        "old and new pods together: {}",
        watcher.max_alive()
    );
    assert!(
        watcher.new_before_old_gone(&old).is_none(),
        "{:?}",
        watcher.new_before_old_gone(&old)
    );

    // A rollout whose pods never become ready times out.
    let mut d = deployment("stuck", 2, "app:1", json!({"type": "RollingUpdate"}));
    d["spec"]["progressDeadlineSeconds"] = json!(3);
    d["spec"]["template"]["metadata"]["annotations"] = json!({READY_AFTER: "3600"});
    kc.apply(d);
    let err = kc
        .run(&["rollout", "status", "deployment/stuck", "--timeout=120s"])
        .unwrap_err();
    assert!(err.contains("exceeded its progress deadline"), "{err}");
    let d = kc.json(&["deploy", "stuck"]);
    let p = d["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Progressing")
        .unwrap()
        .clone();
    assert_eq!(
        (&p["status"], &p["reason"]),
        (&json!("False"), &json!("ProgressDeadlineExceeded"))
    );
    let a = d["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Available")
        .unwrap()
        .clone();
    assert_eq!(a["status"], "False");
}

/// A `kubectl get pods -w` of a label selector: every pod ever added (by
/// uid) and how many were alive (not deleted, not terminating) at most.
struct PodCounter {
    child: Child,
    seen: Arc<Mutex<Seen>>,
}

#[derive(Default)]
struct Seen {
    /// How many pods the watch lists first (tracking of readiness starts then).
    initial: usize,
    /// Alive pods that are Ready.
    ready: BTreeSet<String>,
    /// The fewest Ready pods since the first list was in.
    min_ready: Option<usize>,
    /// Every ADDED pod's uid, with its name, in order.
    added: Vec<(String, String)>,
    alive: BTreeSet<String>,
    max_alive: usize,
    /// Names of pods alive when each pod was added.
    alive_at_add: Vec<(String, BTreeSet<String>)>,
}

impl PodCounter {
    fn start(kc: &Kc, selector: &str, initial: usize) -> PodCounter {
        let mut child = kc
            .command(&[
                "get",
                "pods",
                "-l",
                selector,
                "-w",
                "--output-watch-events",
                "-o",
                "json",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let seen = Arc::new(Mutex::new(Seen {
            initial,
            ..Default::default()
        }));
        let s = seen.clone();
        std::thread::spawn(move || {
            // kubectl prints one JSON event per line.
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                let Ok(ev) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                let obj = &ev["object"];
                let uid = obj["metadata"]["uid"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let pname = name(obj);
                let mut s = s.lock().unwrap();
                let terminating = obj["metadata"]["deletionTimestamp"].is_string();
                match ev["type"].as_str() {
                    Some("ADDED") => {
                        if !s.added.iter().any(|(u, _)| *u == uid) {
                            s.added.push((uid.clone(), pname.clone()));
                            let alive = s.alive.clone();
                            s.alive_at_add.push((pname.clone(), alive));
                        }
                        if !terminating {
                            s.alive.insert(pname.clone());
                        }
                    }
                    Some("MODIFIED") if terminating => {
                        s.alive.remove(&pname);
                    }
                    Some("DELETED") => {
                        s.alive.remove(&pname);
                    }
                    _ => {}
                }
                s.max_alive = s.max_alive.max(s.alive.len());
                let ready = obj["status"]["conditions"].as_array().is_some_and(|c| {
                    c.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                });
                if ready && s.alive.contains(&pname) {
                    s.ready.insert(pname);
                } else {
                    s.ready.remove(&pname);
                }
                if s.added.len() >= s.initial {
                    let n = s.ready.len();
                    s.min_ready = Some(s.min_ready.map_or(n, |m| m.min(n)));
                }
            }
        });
        PodCounter { child, seen }
    }

    fn min_ready(&self) -> Option<usize> {
        self.seen.lock().unwrap().min_ready
    }

    fn max_alive(&self) -> usize {
        self.seen.lock().unwrap().max_alive
    }

    /// Uids of every pod added since the watch began, with their names.
    fn added(&self) -> Vec<(String, String)> {
        self.seen.lock().unwrap().added.clone()
    }

    /// A pod (not in `old`) added while one of `old` was still alive.
    fn new_before_old_gone(&self, old: &BTreeSet<String>) -> Option<String> {
        let s = self.seen.lock().unwrap();
        s.alive_at_add
            .iter()
            .find(|(n, alive)| !old.contains(n) && !alive.is_disjoint(old))
            .map(|(n, _)| n.clone())
    }
}

impl Drop for PodCounter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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
                .env("RUST_LOG", "info,keel_controllers=debug,kube_runtime=debug")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
    }

    fn kc(&self, home: &Path) -> Kc {
        Kc::new(self.dir.join("kubeconfig"), home.to_path_buf())
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.dir.with_extension("log")).unwrap_or_default();
            let lines: Vec<&str> = log.lines().filter(|l| !l.contains("openraft")).collect();
            eprintln!(
                "--- member {} log (but openraft, last 400 lines):\n{}",
                self.id,
                lines[lines.len().saturating_sub(400)..].join("\n")
            );
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The controller lease's holder (`keel-<id>_...`) as a member id.
fn lease_holder(kc: &Kc) -> Option<u64> {
    let lease = kc
        .run(&[
            "get",
            "lease",
            "keel-controller-manager",
            "-n",
            "kube-system",
            "-o",
            "json",
        ])
        .ok()?;
    let lease: Value = serde_json::from_str(&lease).ok()?;
    lease["spec"]["holderIdentity"]
        .as_str()?
        .strip_prefix("keel-")?
        .split('_')
        .next()?
        .parse()
        .ok()
}

#[test]
fn a_rollout_survives_a_kill_of_the_controller_leader() {
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
            Duration::from_secs(90),
            || {
                (m.dir.join("kubeconfig").exists()
                    && m.kc(&home)
                        .run(&["get", "ns", "default", "-o", "name"])
                        .is_ok())
                .then_some(())
            },
        );
    }
    let leader = eventually("a controller leader", ROLLOUT, || {
        lease_holder(&members[0].kc(&home))
    });
    // Everything the test does goes through a member that survives.
    let kc = members.iter().find(|m| m.id != leader).unwrap().kc(&home);
    let _nodes = nodes(&kc.kubeconfig);
    let replicas = 6;
    let rolling =
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}});
    kc.apply(deployment("ha", replicas, "nginx:1", rolling));
    rollout_status(&kc, "deployment/ha");
    let counter = PodCounter::start(&kc, "app=ha", replicas as usize);
    // The watch is in before the rollout starts: wait for it to list the pods.
    eventually("the watch lists the pods", ROLLOUT, || {
        (counter.added().len() == replicas as usize).then_some(())
    });

    kc.ok(&["set", "image", "deployment/ha", "c=nginx:2"]);
    // Kill the leader once the rollout is under way (a new replica set with pods).
    eventually("the rollout under way", ROLLOUT, || {
        (counter.added().len() > replicas as usize).then_some(())
    });
    let m = members.iter_mut().find(|m| m.id == leader).unwrap();
    let mut c = m.child.take().unwrap();
    c.kill().unwrap();
    c.wait().unwrap();

    let new_leader = eventually("a new controller leader", ROLLOUT, || {
        lease_holder(&kc).filter(|l| *l != leader)
    });
    assert!(
        members
            .iter()
            .any(|m| m.id == new_leader && m.child.is_some())
    );
    let out = kc
        .run(&["rollout", "status", "deployment/ha", "--timeout=180s"])
        .unwrap_or_else(|e| {
            let state = kc
                .run(&["get", "deploy,rs,pods", "-o", "yaml"])
                .unwrap_or_default();
            let lease = kc
                .run(&["get", "lease", "-n", "kube-system", "-o", "yaml"])
                .unwrap_or_default();
            panic!("rollout status: {e}\n{state}\n{lease}")
        });
    assert!(out.contains("successfully rolled out"), "{out}");
    let d = kc.json(&["deploy", "ha"]);
    assert_eq!(d["status"]["updatedReplicas"], replicas);
    assert_eq!(d["status"]["availableReplicas"], replicas);
    assert_eq!(
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "2"
    );
    // Exactly one new pod per replica: none created twice.
    let added = counter.added();
    let new: Vec<&(String, String)> = added.iter().skip(replicas as usize).collect();
    assert_eq!(
        new.len(),
        replicas as usize,
        "pods created during the rollout: {new:?}"
    );
    let sets = replica_sets(&kc, "ha");
    assert_eq!(sets.len(), 2, "{sets:?}");
}
