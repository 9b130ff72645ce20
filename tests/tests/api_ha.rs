//! The Kubernetes API on a three-member cluster of `keel server` processes
//! sharing one CA (as `keel up` starts them): `kill -9` the leader while a
//! client writes through every member; every acknowledged write is readable
//! on the survivors; a watch resumed on another member with its last
//! resourceVersion sees no gap and no duplicate; the killed member restarts
//! and catches up.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use keel_tests::{free_port, keel_bin, wait_until};

struct Member {
    id: u64,
    dir: PathBuf,
    peer: u16,
    http: u16,
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
                .args(["--http-addr", &format!("127.0.0.1:{}", self.http)])
                .args(["--api-addr", &format!("127.0.0.1:{}", self.api)])
                .args(["--initial-members", initial])
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
    }
    fn base(&self) -> String {
        format!("https://127.0.0.1:{}", self.api)
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

/// curl with member 1's admin certificate (every member trusts the shared CA).
fn curl_cmd(pki: &Path) -> Command {
    let mut c = Command::new("curl");
    c.args(["-s", "--max-time", "20", "--cacert"])
        .arg(pki.join("ca.crt"))
        .arg("--cert")
        .arg(pki.join("admin.crt"))
        .arg("--key")
        .arg(pki.join("admin.key"));
    c
}

fn request(pki: &Path, args: &[&str]) -> (u16, serde_json::Value) {
    let out = curl_cmd(pki)
        .args(["-w", "\n%{http_code}"])
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (
        code.trim().parse().unwrap_or(0),
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}

fn leader(pki: &Path, members: &[Member]) -> Option<u64> {
    members.iter().filter(|m| m.child.is_some()).find_map(|m| {
        let out = Command::new(keel_bin())
            .args(["member", "--addr", &format!("127.0.0.1:{}", m.peer)])
            // Member 1's data directory: its admin certificate.
            .arg("--data-dir")
            .arg(pki.parent()?)
            .arg("status")
            .output()
            .ok()?;
        let s = String::from_utf8_lossy(&out.stdout).into_owned();
        s.lines()
            .find_map(|l| l.strip_prefix("leader:"))
            .and_then(|v| v.trim().parse().ok())
            .filter(|l| *l != 0)
    })
}

/// Stream a watch into (name, resourceVersion, type) triples until it ends.
fn watch(pki: &Path, base: &str, rv: &str, secs: u64) -> Child {
    curl_cmd(pki)
        .args(["-N", &format!("{base}/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={rv}&timeoutSeconds={secs}")])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

fn read_events(child: &mut Child) -> Vec<(String, String, String)> {
    let out = child.stdout.take().unwrap();
    BufReader::new(out)
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(&l).ok())
        .filter(|e| e["type"] != "BOOKMARK")
        .map(|e| {
            (
                e["object"]["metadata"]["name"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
                e["object"]["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
                e["type"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// (resourceVersion, data.i) of a ConfigMap named `name`.
fn committed(obj: &serde_json::Value, name: &str) -> (String, String) {
    assert_eq!(obj["metadata"]["name"], name, "{obj}");
    (
        obj["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or_else(|| panic!("no resourceVersion: {obj}"))
            .to_string(),
        obj["data"]["i"].as_str().unwrap_or("").to_string(),
    )
}

/// name -> (resourceVersion, data.i) of every ConfigMap in a LIST.
fn by_name(list: &serde_json::Value) -> BTreeMap<String, (String, String)> {
    list["items"]
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|o| {
            let name = o["metadata"]["name"].as_str().unwrap().to_string();
            let c = committed(o, &name);
            (name, c)
        })
        .collect()
}

/// GET a ConfigMap through any running member (one may be mid-failover).
fn read_back(pki: &Path, members: &[Member], name: &str) -> serde_json::Value {
    let mut n = 0usize;
    wait_until(
        &format!("{name} to be readable after a 409"),
        Duration::from_secs(60),
        || {
            let running: Vec<&Member> = members.iter().filter(|m| m.child.is_some()).collect();
            let m = running[n % running.len()];
            n += 1;
            let url = format!("{}/api/v1/namespaces/default/configmaps/{name}", m.base());
            let (code, obj) = request(pki, &[&url]);
            (code == 200).then_some(obj)
        },
    )
}

#[test]
fn api_survives_kill_9_of_the_leader() {
    let dir = tempfile::tempdir().unwrap();
    let mut members: Vec<Member> = (1..=3)
        .map(|id| Member {
            id,
            dir: dir.path().join(format!("m{id}")),
            peer: free_port(),
            http: free_port(),
            api: free_port(),
            child: None,
        })
        .collect();
    // One CA for all: member 1's, copied before anyone starts.
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
        wait_until(
            &format!("member {} serving", m.id),
            Duration::from_secs(60),
            || {
                let url = format!("{}/api/v1/namespaces/default", m.base());
                (request(&pki, &[&url]).0 == 200).then_some(())
            },
        );
    }
    let lead = wait_until("a leader", Duration::from_secs(60), || {
        leader(&pki, &members)
    });
    let (_, list) = request(
        &pki,
        &[&format!(
            "{}/api/v1/namespaces/default/configmaps",
            members[0].base()
        )],
    );
    let start_rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    // A watch on the leader, which is about to die.
    let leader_base = members[(lead - 1) as usize].base();
    let mut first_watch = watch(&pki, &leader_base, &start_rv, 60);

    // name -> (resourceVersion, data.i) of every write known to be committed.
    let mut acked: BTreeMap<String, (String, String)> = BTreeMap::new();
    let mut retried_409 = 0;
    let mut killed = false;
    let mut target = 0usize;
    for i in 0..60 {
        if i == 25 {
            let m = &mut members[(lead - 1) as usize];
            let mut c = m.child.take().unwrap();
            c.kill().unwrap(); // SIGKILL, mid-stream
            c.wait().unwrap();
            killed = true;
        }
        let name = format!("ha-{i:02}");
        let body = format!(
            r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{name}"}},"data":{{"i":"{i}"}}}}"#
        );
        let write_deadline = Instant::now() + Duration::from_secs(60);
        let mut attempts = 0;
        loop {
            let m = &members[target % 3];
            target += 1;
            if m.child.is_none() {
                continue;
            }
            attempts += 1;
            let (code, obj) = request(
                &pki,
                &[
                    "-X",
                    "POST",
                    "-H",
                    "Content-Type: application/json",
                    "-d",
                    &body,
                    &format!("{}/api/v1/namespaces/default/configmaps", m.base()),
                ],
            );
            match code {
                201 => {
                    acked.insert(name.clone(), committed(&obj, &name));
                    break;
                }
                // An earlier attempt committed but its answer was lost. That
                // write must hold what was sent, and is checked like any other.
                409 if attempts > 1 => {
                    let obj = read_back(&pki, &members, &name);
                    let got = committed(&obj, &name);
                    assert_eq!(got.1, i.to_string(), "{name} holds another write: {obj}");
                    acked.insert(name.clone(), got);
                    retried_409 += 1;
                    break;
                }
                _ => assert!(
                    Instant::now() < write_deadline && code != 409,
                    "no write accepted for {name} (attempt {attempts}): {code} {obj}"
                ),
            }
        }
    }
    assert!(killed);
    assert_eq!(acked.len(), 60, "every write ends committed");
    println!(
        "{} writes acknowledged around a kill -9 of the API leader ({retried_409} found committed after a 409 on retry)",
        acked.len()
    );
    // Every acknowledged write is on every survivor, at its resourceVersion.
    for m in members.iter().filter(|m| m.child.is_some()) {
        let (code, list) = request(
            &pki,
            &[&format!(
                "{}/api/v1/namespaces/default/configmaps",
                m.base()
            )],
        );
        assert_eq!(code, 200);
        let have = by_name(&list);
        for (name, want) in &acked {
            assert_eq!(have.get(name), Some(want), "member {} lost {name}", m.id);
        }
    }
    // The watch on the dead leader ended; resume on a survivor from its last resourceVersion.
    let before = read_events(&mut first_watch);
    let _ = first_watch.wait();
    let last_rv = before
        .last()
        .map(|e| e.1.clone())
        .unwrap_or(start_rv.clone());
    let survivor = members.iter().find(|m| m.child.is_some()).unwrap().base();
    let mut second = watch(&pki, &survivor, &last_rv, 3);
    let after = read_events(&mut second);
    let _ = second.wait();
    let all: Vec<&(String, String, String)> = before.iter().chain(after.iter()).collect();
    let names: Vec<&str> = all.iter().map(|e| e.0.as_str()).collect();
    let unique: BTreeSet<&str> = names.iter().copied().collect();
    assert_eq!(
        names.len(),
        unique.len(),
        "duplicate events across the resumed watch: {names:?}"
    );
    let revs: Vec<u64> = all.iter().map(|e| e.1.parse().unwrap()).collect();
    assert!(
        revs.windows(2).all(|w| w[0] < w[1]),
        "events out of order: {revs:?}"
    );
    for (name, (rv, _)) in &acked {
        assert!(
            all.iter().any(|e| &e.0 == name && &e.1 == rv),
            "the resumed watch missed {name} at {rv}"
        );
    }
    // The killed member restarts from its data and catches up.
    let m = &mut members[(lead - 1) as usize];
    m.start(&initial);
    let base = m.base();
    wait_until(
        "the restarted member to catch up",
        Duration::from_secs(60),
        || {
            let (code, list) = request(
                &pki,
                &[&format!("{base}/api/v1/namespaces/default/configmaps")],
            );
            (code == 200 && {
                let have = by_name(&list);
                acked.iter().all(|(n, want)| have.get(n) == Some(want))
            })
            .then_some(())
        },
    );
}
