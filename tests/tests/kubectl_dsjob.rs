//! Jobs, CronJobs and DaemonSets end to end: a real `keel server` (its
//! built-in controller manager runs the job, cronjob and daemonset
//! controllers) driven with kubectl 1.33.
//!
//! The Job and CronJob tests play the kubelet themselves: they move pods
//! to Succeeded or Failed through the pods' status subresource, as a node
//! would report them, so they need neither nodes nor a scheduler. Checked:
//! a Job's pods are created up to `parallelism`, never more than
//! `completions` in total, counted through the tracking finalizer, and the
//! Job completes (`kubectl wait`); failed pods beyond `backoffLimit` fail
//! it; Indexed Jobs give each pod its index and finish with
//! `completedIndexes`; `ttlSecondsAfterFinished` deletes a finished Job;
//! the pods of a Job deleted in the background or orphaned lose the
//! tracking finalizer (nothing stays Terminating); a
//! CronJob starts `<name>-<minutes>` on its schedule and tracks it in
//! `status.active`, and with `concurrencyPolicy: Replace` deletes a Job
//! still running at the next time.
//!
//! The DaemonSet test and the last Job test run on hollow nodes, the
//! scheduler binding the pods and the nodes running them
//! (`hollow.keel.dev/exit-after` and `exit-code` end a Job's pods): one
//! daemon pod per eligible node (nodeSelector, taints), pinned by node
//! affinity; `kubectl rollout status` through a new image; `kubectl
//! rollout undo` restores the previous template; a node that stops
//! matching loses its pod.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use keel_tests::hollow::{EXIT_AFTER, EXIT_CODE, HollowNodes};
use keel_tests::server::{KeelServer, kubectl_bin, output_with_stdin};
use keel_tests::wait_until;
use serde_json::{Value, json};

/// Long enough for a controller round trip on a loaded two-core machine.
const SETTLED: Duration = Duration::from_secs(60);

/// kubectl 1.33 against the test's server, in one namespace.
struct Kubectl<'a> {
    bin: PathBuf,
    server: &'a KeelServer,
    ns: &'static str,
}

impl<'a> Kubectl<'a> {
    fn new(server: &'a KeelServer, ns: &'static str) -> Kubectl<'a> {
        let k = Kubectl {
            bin: kubectl_bin(Some("1.33")),
            server,
            ns,
        };
        k.ok(&["create", "namespace", ns]);
        k
    }

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

    fn ok(&self, args: &[&str]) -> String {
        let out = self.output(args);
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend_from_slice(&["-o", "json"]);
        serde_json::from_str(&self.ok(&a)).unwrap()
    }

    fn create(&self, obj: Value) {
        let out = output_with_stdin(
            self.command(&["create", "-f", "-"]),
            obj.to_string().as_bytes(),
        );
        assert!(
            out.status.success(),
            "kubectl create: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The pods matching `selector`, oldest first.
    fn pods(&self, selector: &str) -> Vec<Value> {
        let list = self.json(&[
            "get",
            "pods",
            "-l",
            selector,
            "--sort-by=.metadata.creationTimestamp",
        ]);
        list["items"].as_array().cloned().unwrap_or_default()
    }

    /// Report `pod`'s status as its node would.
    fn set_status(&self, pod: &str, status: Value) {
        let patch = json!({ "status": status }).to_string();
        self.ok(&[
            "patch",
            "pod",
            pod,
            "--subresource=status",
            "--type=merge",
            "-p",
            &patch,
        ]);
    }

    fn finish(&self, pod: &str, phase: &str) {
        let code = if phase == "Succeeded" { 0 } else { 1 };
        self.set_status(
            pod,
            json!({"phase": phase, "containerStatuses": [{"name": "c", "image": "busybox",
                "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": code, "reason": if code == 0 { "Completed" } else { "Error" },
                    "finishedAt": now()}}}]}),
        );
    }
}

fn now() -> String {
    let out = Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn name(obj: &Value) -> String {
    obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn phase(obj: &Value) -> &str {
    obj["status"]["phase"].as_str().unwrap_or("Pending")
}

fn has_condition(obj: &Value, type_: &str) -> bool {
    obj["status"]["conditions"].as_array().is_some_and(|c| {
        c.iter()
            .any(|c| c["type"] == type_ && c["status"] == "True")
    })
}

fn job(name: &str, spec: Value) -> Value {
    let mut spec = spec;
    spec["template"] = json!({"spec": {"restartPolicy": "Never",
        "containers": [{"name": "c", "image": "busybox"}]}});
    json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name}, "spec": spec})
}

/// The active (not finished, not deleted) pods of `selector`, once there
/// are exactly `n`.
fn wait_active(k: &Kubectl, selector: &str, n: usize) -> Vec<Value> {
    wait_until(&format!("{n} active pods of {selector}"), SETTLED, || {
        let active: Vec<Value> = k
            .pods(selector)
            .into_iter()
            .filter(|p| !matches!(phase(p), "Succeeded" | "Failed"))
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .collect();
        (active.len() == n).then_some(active)
    })
}

#[test]
fn a_job_runs_parallel_pods_to_completion_and_counts_each_once() {
    let server = KeelServer::start(&[]);
    let k = Kubectl::new(&server, "jobs");
    k.create(job("pi", json!({"completions": 3, "parallelism": 2})));
    let sel = "batch.kubernetes.io/job-name=pi";
    let first = wait_active(&k, sel, 2);
    let uid = k.json(&["get", "job", "pi"])["metadata"]["uid"].clone();
    for p in &first {
        assert_eq!(p["metadata"]["generateName"], "pi-");
        assert_eq!(
            p["metadata"]["finalizers"],
            json!(["batch.kubernetes.io/job-tracking"])
        );
        let owner = &p["metadata"]["ownerReferences"][0];
        assert_eq!((&owner["kind"], &owner["uid"]), (&json!("Job"), &uid));
        assert_eq!(
            (&owner["controller"], &owner["blockOwnerDeletion"]),
            (&json!(true), &json!(true))
        );
        assert_eq!(
            p["metadata"]["labels"]["batch.kubernetes.io/controller-uid"],
            uid
        );
    }
    k.finish(&name(&first[0]), "Succeeded");
    // One done, two to go with parallelism 2: a third pod starts.
    let second = wait_active(&k, sel, 2);
    let job = wait_until("the success counted", SETTLED, || {
        let j = k.json(&["get", "job", "pi"]);
        (j["status"]["succeeded"] == 1).then_some(j)
    });
    assert_eq!(job["status"]["active"], 2);
    for p in &second {
        k.finish(&name(p), "Succeeded");
    }
    k.ok(&[
        "wait",
        "--for=condition=complete",
        "job/pi",
        "--timeout=60s",
    ]);
    let job = k.json(&["get", "job", "pi"]);
    let status = &job["status"];
    assert_eq!(
        (&status["succeeded"], &status["active"]),
        (&json!(3), &json!(0))
    );
    assert!(
        status["failed"].is_null() || status["failed"] == 0,
        "{status}"
    );
    assert!(status["completionTime"].is_string() && status["startTime"].is_string());
    assert!(has_condition(&job, "SuccessCriteriaMet"), "{status}");
    let uncounted = &status["uncountedTerminatedPods"];
    assert!(
        uncounted
            .get("succeeded")
            .is_none_or(|v| v.as_array().is_none_or(Vec::is_empty)),
        "{uncounted}"
    );
    // Exactly three pods ever, their finalizers released.
    let pods = k.pods(sel);
    assert_eq!(pods.len(), 3, "{pods:?}");
    for p in &pods {
        let finalizers = &p["metadata"]["finalizers"];
        assert!(
            finalizers.as_array().is_none_or(Vec::is_empty),
            "{}",
            p["metadata"]
        );
    }
    let table = k.ok(&["get", "job", "pi"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"],
        "{table}"
    );
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(row[..3], ["pi", "Complete", "3/3"], "{table}");
    let described = k.ok(&["describe", "job", "pi"]);
    assert!(
        described.contains("0 Active (0 Ready) / 3 Succeeded / 0 Failed"),
        "{described}"
    );
    let events = k.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=pi",
    ]);
    assert!(
        events.contains("SuccessfulCreate") && events.contains("Created pod: pi-"),
        "{events}"
    );
    assert!(
        events.contains("Completed") && events.contains("Job completed"),
        "{events}"
    );
}

#[test]
fn pods_failing_beyond_the_backoff_limit_fail_the_job() {
    let server = KeelServer::start(&[]);
    let k = Kubectl::new(&server, "backoff");
    k.create(job("flaky", json!({"backoffLimit": 1})));
    let sel = "batch.kubernetes.io/job-name=flaky";
    let first = wait_active(&k, sel, 1);
    k.finish(&name(&first[0]), "Failed");
    // The replacement comes after the 10 s pod-failure backoff.
    let second = wait_active(&k, sel, 1);
    assert_ne!(name(&first[0]), name(&second[0]));
    k.finish(&name(&second[0]), "Failed");
    k.ok(&[
        "wait",
        "--for=condition=failed",
        "job/flaky",
        "--timeout=60s",
    ]);
    let job = k.json(&["get", "job", "flaky"]);
    assert_eq!(job["status"]["failed"], 2, "{}", job["status"]);
    let failed = job["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Failed")
        .cloned()
        .unwrap();
    assert_eq!(failed["reason"], "BackoffLimitExceeded");
    assert_eq!(
        failed["message"],
        "Job has reached the specified backoff limit"
    );
    assert!(has_condition(&job, "FailureTarget"));
    assert_eq!(k.pods(sel).len(), 2);
    let events = k.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=flaky",
    ]);
    assert!(events.contains("BackoffLimitExceeded"), "{events}");
}

#[test]
fn a_suspended_job_waits_and_an_active_deadline_fails_a_job() {
    let server = KeelServer::start(&[]);
    let k = Kubectl::new(&server, "suspend");
    k.create(job(
        "later",
        json!({"suspend": true, "completions": 2, "parallelism": 2}),
    ));
    let sel = "batch.kubernetes.io/job-name=later";
    let j = wait_until("the Suspended condition", SETTLED, || {
        let j = k.json(&["get", "job", "later"]);
        has_condition(&j, "Suspended").then_some(j)
    });
    assert!(k.pods(sel).is_empty());
    assert!(j["status"]["startTime"].is_null(), "{}", j["status"]);
    k.ok(&[
        "patch",
        "job",
        "later",
        "--type=merge",
        "-p",
        r#"{"spec":{"suspend":false}}"#,
    ]);
    wait_active(&k, sel, 2);
    let j = wait_until("the Job resumed", SETTLED, || {
        let j = k.json(&["get", "job", "later"]);
        j["status"]["startTime"].is_string().then_some(j)
    });
    let suspended = j["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Suspended")
        .cloned()
        .unwrap();
    assert_eq!(
        (&suspended["status"], &suspended["reason"]),
        (&json!("False"), &json!("JobResumed"))
    );

    k.create(job("slow", json!({"activeDeadlineSeconds": 2})));
    k.ok(&[
        "wait",
        "--for=condition=failed",
        "job/slow",
        "--timeout=60s",
    ]);
    let j = k.json(&["get", "job", "slow"]);
    let failed = j["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Failed")
        .cloned()
        .unwrap();
    assert_eq!(failed["reason"], "DeadlineExceeded");
    assert_eq!(
        failed["message"],
        "Job was active longer than specified deadline"
    );
    assert_eq!(j["status"]["active"], 0, "{}", j["status"]);
    // Its pod was deleted, counted as failed.
    assert_eq!(j["status"]["failed"], 1, "{}", j["status"]);
    wait_until("the deadline's pod gone", SETTLED, || {
        k.pods("batch.kubernetes.io/job-name=slow")
            .is_empty()
            .then_some(())
    });
}

#[test]
fn deleted_and_orphaned_jobs_release_their_pods() {
    let server = KeelServer::start(&[]);
    let k = Kubectl::new(&server, "release");
    // A running Job deleted in the background: its pods go too, the
    // tracking finalizer released although no Job is left to count them.
    k.create(job("gone", json!({"completions": 2, "parallelism": 2})));
    wait_active(&k, "batch.kubernetes.io/job-name=gone", 2);
    k.ok(&["delete", "job", "gone", "--cascade=background"]);
    wait_until("the deleted job's pods gone", SETTLED, || {
        k.pods("batch.kubernetes.io/job-name=gone")
            .is_empty()
            .then_some(())
    });
    // Orphaned: the pods stay, without the finalizer, and can be deleted.
    k.create(job("left", json!({"completions": 1})));
    wait_active(&k, "batch.kubernetes.io/job-name=left", 1);
    k.ok(&["delete", "job", "left", "--cascade=orphan"]);
    let pod = wait_until("the orphan's finalizer released", SETTLED, || {
        let pods = k.pods("batch.kubernetes.io/job-name=left");
        let p = pods.first()?.clone();
        (p["metadata"]["ownerReferences"]
            .as_array()
            .is_none_or(Vec::is_empty)
            && p["metadata"]["finalizers"]
                .as_array()
                .is_none_or(Vec::is_empty))
        .then_some(p)
    });
    k.ok(&["delete", "pod", &name(&pod), "--timeout=30s"]);
    assert!(k.pods("batch.kubernetes.io/job-name=left").is_empty());
}

#[test]
fn indexed_jobs_run_each_index_and_expire_after_their_ttl() {
    let server = KeelServer::start(&[]);
    let k = Kubectl::new(&server, "indexed");
    k.create(job(
        "shards",
        json!({"completions": 3, "parallelism": 3, "completionMode": "Indexed",
            "ttlSecondsAfterFinished": 2}),
    ));
    let sel = "batch.kubernetes.io/job-name=shards";
    let pods = wait_active(&k, sel, 3);
    let mut by_index = std::collections::BTreeMap::new();
    for p in &pods {
        let ix = p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(
            p["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"],
            ix.as_str()
        );
        assert_eq!(p["spec"]["hostname"], format!("shards-{ix}"));
        assert_eq!(p["metadata"]["generateName"], format!("shards-{ix}-"));
        assert_eq!(
            p["spec"]["containers"][0]["env"][0]["name"],
            "JOB_COMPLETION_INDEX"
        );
        by_index.insert(ix, name(p));
    }
    assert_eq!(
        by_index.keys().cloned().collect::<Vec<_>>(),
        ["0", "1", "2"]
    );
    k.finish(&by_index["1"], "Succeeded");
    wait_until("index 1 completed", SETTLED, || {
        (k.json(&["get", "job", "shards"])["status"]["completedIndexes"] == "1").then_some(())
    });
    k.finish(&by_index["0"], "Succeeded");
    k.finish(&by_index["2"], "Succeeded");
    k.ok(&[
        "wait",
        "--for=condition=complete",
        "job/shards",
        "--timeout=60s",
    ]);
    // Caught before the TTL, or not: the TTL then deletes it.
    let out = k.output(&["get", "job", "shards", "-o", "json"]);
    if out.status.success() {
        let j: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(j["status"]["completedIndexes"], "0-2");
        assert_eq!(j["status"]["succeeded"], 3);
    }
    wait_until("the finished job deleted after its TTL", SETTLED, || {
        k.ok(&["get", "jobs", "-o", "name"])
            .trim()
            .is_empty()
            .then_some(())
    });
}

#[test]
fn a_cronjob_starts_its_job_on_schedule_and_tracks_it() {
    let server = KeelServer::start(&[]);
    let k = Kubectl::new(&server, "cron");
    k.create(
        json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "tick"},
        "spec": {"schedule": "* * * * *", "concurrencyPolicy": "Forbid",
            "jobTemplate": {"metadata": {"labels": {"app": "tick"}}, "spec": {"template": {"spec": {
                "restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}}}}),
    );
    // Within a minute (and a little) of creation the first job starts.
    let job = wait_until("the first scheduled job", Duration::from_secs(90), || {
        let jobs = k.json(&["get", "jobs", "-l", "app=tick"]);
        jobs["items"].as_array().and_then(|j| j.first().cloned())
    });
    let cj = wait_until("lastScheduleTime", SETTLED, || {
        let cj = k.json(&["get", "cronjob", "tick"]);
        cj["status"]["lastScheduleTime"].is_string().then_some(cj)
    });
    let scheduled = cj["status"]["lastScheduleTime"]
        .as_str()
        .unwrap()
        .to_string();
    let minutes = {
        let out = Command::new("date")
            .args(["-u", "-d", &scheduled, "+%s"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse::<i64>()
            .unwrap()
            / 60
    };
    assert_eq!(name(&job), format!("tick-{minutes}"));
    let owner = &job["metadata"]["ownerReferences"][0];
    assert_eq!(
        (&owner["kind"], &owner["name"], &owner["controller"]),
        (&json!("CronJob"), &json!("tick"), &json!(true))
    );
    assert_eq!(
        job["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"],
        scheduled.as_str()
    );
    assert_eq!(cj["status"]["active"][0]["name"], name(&job));
    // The job's pod finishes: the CronJob sees it complete.
    let pod = wait_active(
        &k,
        &format!("batch.kubernetes.io/job-name={}", name(&job)),
        1,
    );
    k.finish(&name(&pod[0]), "Succeeded");
    let cj = wait_until("the completed job out of status.active", SETTLED, || {
        let cj = k.json(&["get", "cronjob", "tick"]);
        let active = cj["status"]["active"].as_array().map_or(0, Vec::len);
        let still = cj["status"]["active"]
            .as_array()
            .is_some_and(|a| a.iter().any(|r| r["name"] == name(&job).as_str()));
        (!still && active <= 1 && cj["status"]["lastSuccessfulTime"].is_string()).then_some(cj)
    });
    assert!(cj["status"]["lastSuccessfulTime"].is_string());
    let table = k.ok(&["get", "cronjob", "tick"]);
    assert!(table.contains("* * * * *"), "{table}");
    let events = k.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=tick",
    ]);
    assert!(
        events.contains(&format!("Created job {}", name(&job))),
        "{events}"
    );
    assert!(events.contains("SawCompletedJob"), "{events}");
}

#[test]
fn a_cronjob_with_replace_deletes_the_running_job_at_the_next_time() {
    let server = KeelServer::start(&[]);
    let k = Kubectl::new(&server, "replace");
    k.create(json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "every"},
        "spec": {"schedule": "* * * * *", "concurrencyPolicy": "Replace",
            "startingDeadlineSeconds": 30,
            "jobTemplate": {"metadata": {"labels": {"app": "every"}}, "spec": {"template": {"spec": {
                "restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}}}}));
    let job_names = || -> Vec<String> {
        k.json(&["get", "jobs", "-l", "app=every"])["items"]
            .as_array()
            .map(|a| a.iter().map(name).collect())
            .unwrap_or_default()
    };
    let first = wait_until("the first job", Duration::from_secs(90), || {
        job_names().first().cloned()
    });
    // Never finished: the next minute's job replaces it.
    let second = wait_until("the replacing job", Duration::from_secs(90), || {
        let names = job_names();
        (names.len() == 1 && names[0] != first).then(|| names[0].clone())
    });
    let n = |j: &str| j.trim_start_matches("every-").parse::<i64>().unwrap();
    assert_eq!(n(&second), n(&first) + 1, "{first} then {second}");
    let cj = wait_until("status.active naming only the new job", SETTLED, || {
        let cj = k.json(&["get", "cronjob", "every"]);
        let active: Vec<&str> = cj["status"]["active"]
            .as_array()
            .map(|a| a.iter().filter_map(|r| r["name"].as_str()).collect())
            .unwrap_or_default();
        (active == [second.as_str()]).then_some(cj)
    });
    assert!(cj["status"]["lastScheduleTime"].is_string());
    let events = k.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=every",
    ]);
    assert!(events.contains(&format!("Deleted job {first}")), "{events}");
}

/// The daemon pods by the node their affinity pins them to.
fn daemon_pods(k: &Kubectl) -> std::collections::BTreeMap<String, Vec<Value>> {
    let mut out: std::collections::BTreeMap<String, Vec<Value>> = Default::default();
    for p in k.pods("app=agent") {
        if !p["metadata"]["deletionTimestamp"].is_null() {
            continue;
        }
        let node =
            p["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
                ["nodeSelectorTerms"][0]["matchFields"][0]["values"][0]
                .as_str()
                .unwrap_or_default()
                .to_string();
        out.entry(node).or_default().push(p);
    }
    out
}

/// The images of the daemon pods, by node.
fn images(k: &Kubectl) -> Vec<(String, String)> {
    daemon_pods(k)
        .into_iter()
        .flat_map(|(node, pods)| {
            pods.into_iter().map(move |p| {
                let image = p["spec"]["containers"][0]["image"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                (node.clone(), image)
            })
        })
        .collect()
}

fn on(nodes: &[&str], image: &str) -> Vec<(String, String)> {
    nodes
        .iter()
        .map(|n| (n.to_string(), image.to_string()))
        .collect()
}

/// `kubectl rollout status daemonset/agent`, which must report success.
fn rollout_status(k: &Kubectl) {
    let out = k.ok(&["rollout", "status", "daemonset/agent", "--timeout=90s"]);
    assert!(out.contains("successfully rolled out"), "{out}");
}

#[test]
fn a_daemonset_runs_on_eligible_hollow_nodes_rolls_out_and_rolls_back() {
    let server = KeelServer::start(&[]);
    let kc = server.kubeconfig();
    let hollow = |prefix: &str, extra: &[&dyn AsRef<std::ffi::OsStr>]| {
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"--heartbeat", &"1s"];
        args.extend_from_slice(extra);
        let mut h = HollowNodes::start_with(&kc, prefix, if prefix == "w" { 2 } else { 1 }, &args);
        h.wait_ready(SETTLED);
        h
    };
    let _workers = hollow("w", &[&"--labels", &"role=worker"]);
    let _gpu = hollow(
        "gpu",
        &[
            &"--labels",
            &"role=worker",
            &"--taints",
            &"dedicated=gpu:NoSchedule",
        ],
    );
    let _db = hollow("db", &[&"--labels", &"role=db"]);
    let k = Kubectl::new(&server, "daemons");
    k.create(
        json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent"},
        "spec": {"selector": {"matchLabels": {"app": "agent"}},
            "template": {"metadata": {"labels": {"app": "agent"}}, "spec": {
                "nodeSelector": {"role": "worker"},
                "terminationGracePeriodSeconds": 1,
                "containers": [{"name": "c", "image": "agent:1"}]}}}}),
    );
    // The workers without an untolerated taint, and nowhere else.
    rollout_status(&k);
    assert_eq!(images(&k), on(&["w-0", "w-1"], "agent:1"));
    for pods in daemon_pods(&k).values() {
        let p = &pods[0];
        // Pinned by affinity, bound there by the scheduler.
        let pinned = &p["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            ["nodeSelectorTerms"][0]["matchFields"][0];
        assert_eq!(pinned["key"], "metadata.name");
        assert_eq!(p["spec"]["nodeName"], pinned["values"][0]);
        assert_eq!(phase(p), "Running");
        assert!(p["metadata"]["labels"]["controller-revision-hash"].is_string());
        let tolerations = p["spec"]["tolerations"].to_string();
        assert!(
            tolerations.contains("node.kubernetes.io/unreachable"),
            "{tolerations}"
        );
    }
    let ds = k.json(&["get", "ds", "agent"]);
    let s = &ds["status"];
    assert_eq!(
        [
            &s["desiredNumberScheduled"],
            &s["currentNumberScheduled"],
            &s["numberReady"],
            &s["updatedNumberScheduled"],
            &s["numberAvailable"],
            &s["numberMisscheduled"]
        ],
        [
            &json!(2),
            &json!(2),
            &json!(2),
            &json!(2),
            &json!(2),
            &json!(0)
        ],
        "{s}"
    );
    assert_eq!(s["observedGeneration"], ds["metadata"]["generation"]);
    let table = k.ok(&["get", "ds", "agent"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "DESIRED",
            "CURRENT",
            "READY",
            "UP-TO-DATE",
            "AVAILABLE",
            "AGE"
        ],
        "{table}"
    );
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(row[..6], ["agent", "2", "2", "2", "2", "2"], "{table}");

    // A new image rolls out one node at a time.
    k.ok(&["set", "image", "daemonset/agent", "c=agent:2"]);
    rollout_status(&k);
    wait_until("agent:2 on both workers", SETTLED, || {
        (images(&k) == on(&["w-0", "w-1"], "agent:2")).then_some(())
    });
    let history = k.ok(&["rollout", "history", "daemonset/agent"]);
    assert!(history.contains('1') && history.contains('2'), "{history}");
    let second = k.ok(&["rollout", "history", "daemonset/agent", "--revision=2"]);
    assert!(second.contains("agent:2"), "{second}");
    let described = k.ok(&["describe", "daemonset", "agent"]);
    assert!(
        described.contains("Desired Number of Nodes Scheduled: 2")
            && described.contains("Pods Status:  2 Running"),
        "{described}"
    );

    // Undo brings agent:1 back, its revision renumbered 3.
    k.ok(&["rollout", "undo", "daemonset/agent"]);
    rollout_status(&k);
    let ds = k.json(&["get", "ds", "agent"]);
    assert_eq!(
        ds["spec"]["template"]["spec"]["containers"][0]["image"],
        "agent:1"
    );
    wait_until("agent:1 on both workers", SETTLED, || {
        (images(&k) == on(&["w-0", "w-1"], "agent:1")).then_some(())
    });
    let revisions = k.json(&["get", "controllerrevisions"]);
    let mut numbers: Vec<i64> = revisions["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["revision"].as_i64().unwrap())
        .collect();
    numbers.sort();
    assert_eq!(numbers, [2, 3]);

    // With maxSurge the new pod starts beside the old one on each node.
    k.ok(&["patch", "daemonset", "agent", "--type=merge", "-p",
        r#"{"spec":{"updateStrategy":{"type":"RollingUpdate","rollingUpdate":{"maxSurge":1,"maxUnavailable":0}}}}"#]);
    k.ok(&["set", "image", "daemonset/agent", "c=agent:3"]);
    rollout_status(&k);
    wait_until("agent:3 on both workers", SETTLED, || {
        (images(&k) == on(&["w-0", "w-1"], "agent:3")).then_some(())
    });

    // A node that stops matching loses its pod.
    k.ok(&["label", "node", "w-1", "role=db", "--overwrite"]);
    wait_until("w-1's pod removed", SETTLED, || {
        (images(&k) == on(&["w-0"], "agent:3")).then_some(())
    });
    let events = k.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=agent",
    ]);
    assert!(
        events.contains("Created pod: agent-") && events.contains("Deleted pod: agent-"),
        "{events}"
    );
}

/// The nodes the pods of `selector` were bound to.
fn bound_nodes(k: &Kubectl, selector: &str) -> Vec<String> {
    k.pods(selector)
        .iter()
        .map(|p| {
            p["spec"]["nodeName"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

#[test]
fn jobs_run_to_completion_or_failure_on_hollow_nodes() {
    let server = KeelServer::start(&[]);
    let mut workers = HollowNodes::start(&server.kubeconfig(), "hn", 3);
    workers.wait_ready(SETTLED);
    let k = Kubectl::new(&server, "hollow");

    // Pods that exit 0 after a second: the Job completes on the nodes.
    let mut work = job("work", json!({"completions": 4, "parallelism": 2}));
    work["spec"]["template"]["metadata"] = json!({"annotations": {(EXIT_AFTER): "1"}});
    k.create(work);
    k.ok(&[
        "wait",
        "--for=condition=complete",
        "job/work",
        "--timeout=90s",
    ]);
    let j = k.json(&["get", "job", "work"]);
    assert_eq!(j["status"]["succeeded"], 4, "{}", j["status"]);
    let nodes = bound_nodes(&k, "batch.kubernetes.io/job-name=work");
    assert_eq!(nodes.len(), 4);
    assert!(nodes.iter().all(|n| n.starts_with("hn-")), "{nodes:?}");
    for p in k.pods("batch.kubernetes.io/job-name=work") {
        assert_eq!(phase(&p), "Succeeded");
    }

    // Pods that exit 1: with backoffLimit 0 the first failure fails the Job.
    let mut bad = job("bad", json!({"backoffLimit": 0}));
    bad["spec"]["template"]["metadata"] =
        json!({"annotations": {(EXIT_AFTER): "1", (EXIT_CODE): "1"}});
    k.create(bad);
    k.ok(&["wait", "--for=condition=failed", "job/bad", "--timeout=90s"]);
    let j = k.json(&["get", "job", "bad"]);
    assert_eq!(j["status"]["failed"], 1, "{}", j["status"]);
    assert_eq!(k.pods("batch.kubernetes.io/job-name=bad").len(), 1);
}
