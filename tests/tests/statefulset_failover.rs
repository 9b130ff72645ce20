//! A StatefulSet rollout survives `kill -9` of the member that holds the
//! controller lease, on a three-member cluster of `keel server` processes
//! (one CA, as `keel up` starts them) with hollow nodes: another member's
//! manager takes the lease over, the rollout completes (`kubectl rollout
//! status` through a survivor), and nothing is done twice: a pod watch
//! through the survivor sees every pod replaced exactly once (two uids per
//! name, the first template's and the second's) and there are exactly two
//! ControllerRevisions.

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use keel_tests::hollow::HollowNodes;
use keel_tests::server::kubectl_bin;
use keel_tests::{free_port, keel_bin, wait_until};
use serde_json::Value;

/// Long enough for the controller lease (15 s) to expire and a rollout to
/// finish on two loaded cores.
const WAIT: Duration = Duration::from_secs(180);

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

/// kubectl 1.33 with a kubeconfig and a home of the test.
fn kubectl(kubeconfig: &Path, home: &Path) -> Command {
    let mut c = Command::new(kubectl_bin(Some("1.33")));
    c.env("HOME", home).arg("--kubeconfig").arg(kubeconfig);
    c
}

fn kc(kubeconfig: &Path, home: &Path, args: &[&str]) -> Result<String, String> {
    let out = kubectl(kubeconfig, home).args(args).output().unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn json(kubeconfig: &Path, home: &Path, args: &[&str]) -> Option<Value> {
    let mut a = args.to_vec();
    a.extend(["-o", "json"]);
    kc(kubeconfig, home, &a)
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
}

/// The controller lease's holder (`keel-<id>_<api addr>_<pid>`) as a member id.
fn lease_holder(kubeconfig: &Path, home: &Path) -> Option<u64> {
    let lease = json(
        kubeconfig,
        home,
        &[
            "get",
            "lease",
            "keel-controller-manager",
            "-n",
            "kube-system",
        ],
    )?;
    let holder = lease["spec"]["holderIdentity"].as_str()?;
    holder
        .strip_prefix("keel-")?
        .split('_')
        .next()?
        .parse()
        .ok()
}

const SET: &str = r#"apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
spec:
  serviceName: web
  replicas: 4
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
      annotations:
        hollow.keel.dev/ready-after: "2"
    spec:
      containers:
      - name: c
        image: nginx:1
"#;

#[test]
fn a_rollout_completes_after_the_controller_leader_is_killed() {
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
        wait_until(&format!("member {} serving", m.id), WAIT, || {
            (m.kubeconfig().exists()
                && kc(
                    &m.kubeconfig(),
                    &home,
                    &["get", "ns", "default", "-o", "name"],
                )
                .is_ok())
            .then_some(())
        });
    }
    let leader = wait_until("a controller leader", WAIT, || {
        lease_holder(&members[0].kubeconfig(), &home)
    });
    // Everything the test does goes through a member that survives.
    let other = members
        .iter()
        .find(|m| m.id != leader)
        .unwrap()
        .kubeconfig();
    let mut nodes = HollowNodes::start(&other, "node", 2);
    nodes.wait_ready(WAIT);

    let manifest = dir.path().join("web.yaml");
    std::fs::write(&manifest, SET).unwrap();
    kc(&other, &home, &["apply", "-f", manifest.to_str().unwrap()]).unwrap();
    kc(
        &other,
        &home,
        &["rollout", "status", "sts/web", "--timeout=180s"],
    )
    .unwrap();

    // Every pod event from here on, through the survivor.
    let mut watch = kubectl(&other, &home)
        .args([
            "get",
            "pods",
            "-l",
            "app=web",
            "-w",
            "--output-watch-events",
            "-o",
            "json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = watch.stdout.take().unwrap();
    let events = std::thread::spawn(move || {
        let mut seen: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for v in serde_json::Deserializer::from_reader(BufReader::new(stdout)).into_iter::<Value>()
        {
            let Ok(v) = v else { break };
            let o = &v["object"]["metadata"];
            if let (Some(n), Some(u)) = (o["name"].as_str(), o["uid"].as_str()) {
                seen.entry(n.to_string()).or_default().insert(u.to_string());
            }
        }
        seen
    });

    // Roll out nginx:2 and kill the leader once the update is under way.
    kc(&other, &home, &["set", "image", "sts/web", "c=nginx:2"]).unwrap();
    wait_until("the update under way", WAIT, || {
        let s = json(&other, &home, &["get", "sts", "web"])?;
        let st = &s["status"];
        (st["observedGeneration"] == s["metadata"]["generation"]
            && st["updateRevision"] != st["currentRevision"]
            && st["updatedReplicas"].as_i64()? >= 1)
            .then_some(())
    });
    let m = &mut members[(leader - 1) as usize];
    let mut c = m.child.take().unwrap();
    c.kill().unwrap();
    c.wait().unwrap();
    // Each updated pod takes 2 s to turn Ready: the update is not done yet.
    let s = json(&other, &home, &["get", "sts", "web"]).unwrap();
    assert_ne!(
        s["status"]["currentRevision"], s["status"]["updateRevision"],
        "the rollout ended before the kill: {}",
        s["status"]
    );

    let out = kc(
        &other,
        &home,
        &["rollout", "status", "sts/web", "--timeout=180s"],
    )
    .unwrap_or_else(|e| panic!("rollout status after the kill: {e}"));
    assert!(out.contains("roll out complete"), "{out}");
    let new_leader = wait_until("a new controller leader", WAIT, || {
        lease_holder(&other, &home).filter(|l| *l != leader)
    });
    assert_ne!(new_leader, leader);
    let done = wait_until("every pod at nginx:2", WAIT, || {
        let pods = json(&other, &home, &["get", "pods", "-l", "app=web"])?;
        let items = pods["items"].as_array()?.clone();
        (items.len() == 4
            && items.iter().all(|p| {
                p["spec"]["containers"][0]["image"] == "nginx:2"
                    && p["metadata"]["deletionTimestamp"].is_null()
                    && p["status"]["phase"] == "Running"
            }))
        .then_some(items)
    });
    let final_uids: BTreeMap<String, String> = done
        .iter()
        .map(|p| {
            (
                p["metadata"]["name"].as_str().unwrap().to_string(),
                p["metadata"]["uid"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    // The watch has seen the final pods; then it can stop.
    let _ = watch.kill();
    let _ = watch.wait();
    let seen = events.join().unwrap();
    for (name, uid) in &final_uids {
        let uids = seen.get(name).cloned().unwrap_or_default();
        assert!(
            uids.contains(uid),
            "{name}: final uid not watched: {seen:?}"
        );
        assert_eq!(
            uids.len(),
            2,
            "{name} was replaced more than once: {seen:?}"
        );
    }
    let revisions = json(&other, &home, &["get", "controllerrevisions"]).unwrap();
    let mut numbers: Vec<i64> = revisions["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["revision"].as_i64().unwrap())
        .collect();
    numbers.sort();
    assert_eq!(numbers, [1, 2], "{revisions}");
    let s = json(&other, &home, &["get", "sts", "web"]).unwrap();
    assert_eq!(
        s["status"]["currentRevision"],
        s["status"]["updateRevision"]
    );
}
