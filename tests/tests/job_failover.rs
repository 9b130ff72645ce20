//! A Job survives `kill -9` of the member that holds the controller
//! lease, on a three-member cluster of `keel server` processes (one CA, as
//! `keel up` starts them) with hollow nodes running its pods: another
//! member's manager takes the lease over, the Job completes (`kubectl
//! wait` through a survivor), and nothing is done twice: exactly
//! `completions` pods were ever created (none of them failed) and each
//! success is counted once.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use keel_tests::hollow::{EXIT_AFTER, HollowNodes};
use keel_tests::server::kubectl_bin;
use keel_tests::{free_port, keel_bin, wait_until};
use serde_json::{Value, json};

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

#[test]
fn a_job_completes_once_after_the_controller_leader_is_killed() {
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

    let job = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "work"},
        "spec": {"completions": 6, "parallelism": 2, "template": {
            "metadata": {"annotations": {(EXIT_AFTER): "3"}},
            "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}});
    let manifest = dir.path().join("job.json");
    std::fs::write(&manifest, job.to_string()).unwrap();
    kc(&other, &home, &["create", "-f", manifest.to_str().unwrap()]).unwrap();

    // Kill the leader once the Job is under way (a success counted).
    wait_until("the job under way", WAIT, || {
        let j = json(&other, &home, &["get", "job", "work"])?;
        (j["status"]["succeeded"].as_i64()? >= 1).then_some(())
    });
    let m = &mut members[(leader - 1) as usize];
    let mut c = m.child.take().unwrap();
    c.kill().unwrap();
    c.wait().unwrap();
    let j = json(&other, &home, &["get", "job", "work"]).unwrap();
    assert!(
        j["status"]["succeeded"].as_i64().unwrap_or(0) < 6,
        "the job ended before the kill: {}",
        j["status"]
    );

    kc(
        &other,
        &home,
        &[
            "wait",
            "--for=condition=complete",
            "job/work",
            "--timeout=180s",
        ],
    )
    .unwrap_or_else(|e| panic!("kubectl wait after the kill: {e}"));
    let new_leader = wait_until("a new controller leader", WAIT, || {
        lease_holder(&other, &home).filter(|l| *l != leader)
    });
    assert_ne!(new_leader, leader);
    let j = json(&other, &home, &["get", "job", "work"]).unwrap();
    assert_eq!(j["status"]["succeeded"], 6, "{}", j["status"]);
    assert!(
        j["status"]["failed"].as_i64().unwrap_or(0) == 0,
        "{}",
        j["status"]
    );
    let pods = json(
        &other,
        &home,
        &["get", "pods", "-l", "batch.kubernetes.io/job-name=work"],
    )
    .unwrap();
    let items = pods["items"].as_array().unwrap();
    assert_eq!(items.len(), 6, "a pod was created twice: {pods}");
    assert!(items.iter().all(|p| p["status"]["phase"] == "Succeeded"));
}
