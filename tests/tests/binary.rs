//! The real `keel server` binary as three processes on loopback: they form a
//! cluster, report health and metrics over HTTP, survive `kill -9` of the
//! leader while clients write (every acknowledged write is present on every
//! member afterwards; the killed member restarts and catches up), serve the
//! `keel kv` CLI, and stop cleanly on SIGTERM. Also `keel server --config`
//! (flags over the file, unknown keys refused) and `keel up` (ports from a
//! base, one kubeconfig context per member).

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use keel_proto::member as pb;
use keel_store::ClientTls;
use keel_tests::peer_tls::admin_of;
use keel_tests::{
    PORTS_FROM, PORTS_TO, claim_port, free_port, keel_bin, next_random, wait_for, wait_until,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LONG: Duration = Duration::from_secs(60);

/// GET a path over plain HTTP/1.1; (status, body).
async fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .ok()?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    Some((status, body))
}

struct Proc {
    id: u64,
    peer: u16,
    http: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Proc {
    fn start(&mut self, members: &str) {
        let log = std::fs::File::create(self.dir.with_extension("log")).unwrap();
        let child = Command::new(keel_bin())
            .args(["server", "--id", &self.id.to_string()])
            .arg("--data-dir")
            .arg(&self.dir)
            .args(["--peer-addr", &format!("127.0.0.1:{}", self.peer)])
            .args(["--http-addr", &format!("127.0.0.1:{}", self.http)])
            .args(["--api-addr", "127.0.0.1:0"])
            .args(["--initial-members", members])
            // One CA for the cluster, created by whichever member starts first.
            .arg("--ca-dir")
            .arg(self.dir.with_file_name("ca"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `keel member status` through `peer`, with the admin certificate of the
/// member whose data directory is `dir`.
fn status(peer: u16, dir: PathBuf) -> Option<String> {
    let out = Command::new(keel_bin())
        .args(["member", "--addr", &format!("127.0.0.1:{peer}")])
        .arg("--data-dir")
        .arg(dir)
        .arg("status")
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn leader_of(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("leader:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Read one key linearizably through any member that answers (one may be
/// dead or mid-election), before `deadline`.
/// A `Kv` client of the member at `port`, over mutual TLS as `tls`.
async fn kv_at(
    tls: &ClientTls,
    port: u16,
) -> Result<pb::kv_client::KvClient<tonic::transport::Channel>, tonic::transport::Error> {
    let ch = tls
        .endpoint(&format!("127.0.0.1:{port}"))?
        .connect()
        .await?;
    Ok(pb::kv_client::KvClient::new(ch))
}

async fn read_back(
    tls: &ClientTls,
    peers: &[u16],
    key: &str,
    deadline: std::time::Instant,
) -> pb::KeyValue {
    let mut n = 0;
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "{key} could not be read back"
        );
        let port = peers[n % peers.len()];
        n += 1;
        let reply = match kv_at(tls, port).await {
            Ok(mut c) => c
                .range(pb::RangeRequest {
                    prefix: key.into(),
                    ..Default::default()
                })
                .await
                .ok(),
            Err(_) => None,
        };
        if let Some(kv) =
            reply.and_then(|r| r.into_inner().kvs.into_iter().find(|kv| kv.key == key))
        {
            return kv;
        }
        // Every member was just tried or is down; give the election a moment.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_survive_kill_9_of_the_leader() {
    let dir = tempfile::tempdir().unwrap();
    let mut procs: Vec<Proc> = (1..=3)
        .map(|id| Proc {
            id,
            peer: free_port(),
            http: free_port(),
            dir: dir.path().join(format!("k{id}")),
            child: None,
        })
        .collect();
    let members = procs
        .iter()
        .map(|p| format!("{}=127.0.0.1:{}", p.id, p.peer))
        .collect::<Vec<_>>()
        .join(",");
    for p in procs.iter_mut() {
        p.start(&members);
    }
    for p in &procs {
        wait_for(&format!("member {} to be ready", p.id), LONG, || async {
            http_get(p.http, "/readyz").await.filter(|(s, _)| *s == 200)
        })
        .await;
        let (code, _) = http_get(p.http, "/livez").await.unwrap();
        assert_eq!(code, 200);
        let (code, body) = http_get(p.http, "/metrics").await.unwrap();
        assert_eq!(code, 200);
        assert!(
            body.contains("# TYPE keel_raft_term gauge") && body.contains("keel_raft_has_leader 1"),
            "{body}"
        );
    }
    let first_peer = procs[0].peer;
    let first_dir = procs[0].dir.clone();
    let tls = admin_of(&first_dir);
    let leader = wait_for("a leader in `keel member status`", LONG, || async {
        let dir = first_dir.clone();
        let s = tokio::task::spawn_blocking(move || status(first_peer, dir))
            .await
            .ok()??;
        leader_of(&s).filter(|l| *l != 0)
    })
    .await;
    // Writers go through every member (followers forward to the leader) and
    // move to another member when one fails, like a client with a member list.
    let peers: Vec<u16> = procs.iter().map(|p| p.peer).collect();
    let (acked_tx, mut acked_rx) = tokio::sync::mpsc::unbounded_channel::<(String, u64)>();
    let mut writers = Vec::new();
    for w in 0..3usize {
        let peers = peers.clone();
        let acked_tx = acked_tx.clone();
        let tls = tls.clone();
        writers.push(tokio::spawn(async move {
            let mut target = w;
            for i in 0..40 {
                let key = format!("/bin/{w}/{i:02}");
                let deadline = std::time::Instant::now() + LONG;
                let mut attempts = 0;
                loop {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "no member accepted {key} within {LONG:?}"
                    );
                    attempts += 1;
                    let port = peers[target % peers.len()];
                    let op = pb::Operation {
                        kind: pb::operation::Kind::Create as i32,
                        key: key.clone(),
                        value: vec![w as u8; 64],
                        ..Default::default()
                    };
                    let res = match kv_at(&tls, port).await {
                        Ok(mut c) => c
                            .txn(pb::TxnRequest { ops: vec![op] })
                            .await
                            .map(|r| r.into_inner().revision),
                        Err(e) => Err(tonic::Status::unavailable(e.to_string())),
                    };
                    match res {
                        Ok(rev) => {
                            acked_tx.send((key.clone(), rev)).unwrap();
                            break;
                        }
                        // A retried create whose first attempt committed: it must
                        // hold what was sent, and joins the writes checked on
                        // every member.
                        Err(s) if s.code() == tonic::Code::FailedPrecondition && attempts > 1 => {
                            let kv = read_back(&tls, &peers, &key, deadline).await;
                            assert_eq!(
                                (kv.value.as_slice(), kv.version),
                                (&[w as u8; 64][..], 1),
                                "{key} holds another write"
                            );
                            acked_tx.send((key.clone(), kv.mod_revision)).unwrap();
                            break;
                        }
                        Err(s) if s.code() == tonic::Code::FailedPrecondition => {
                            panic!("the first create of {key} was refused: {s:?}")
                        }
                        Err(_) => target += 1,
                    }
                }
            }
        }));
    }
    drop(acked_tx);
    let mut acked = Vec::new();
    while acked.len() < 15 {
        let a = tokio::time::timeout(LONG, acked_rx.recv())
            .await
            .expect("no write acknowledged within a minute")
            .expect("writers stopped early");
        acked.push(a);
    }
    let killed = procs.iter_mut().find(|p| p.id == leader).unwrap();
    let mut child = killed.child.take().unwrap();
    child.kill().unwrap(); // SIGKILL, mid-write
    child.wait().unwrap();
    let survivors: Vec<(u64, u16, u16)> = procs
        .iter()
        .filter(|p| p.id != leader)
        .map(|p| (p.id, p.peer, p.http))
        .collect();
    let new_leader = wait_for("a new leader among the survivors", LONG, || {
        let survivors = survivors.clone();
        let dir = first_dir.clone();
        async move {
            let peer = survivors[0].1;
            let s = tokio::task::spawn_blocking(move || status(peer, dir))
                .await
                .ok()??;
            leader_of(&s).filter(|l| *l != leader && *l != 0)
        }
    })
    .await;
    assert!(survivors.iter().any(|(id, _, _)| *id == new_leader));
    for (id, _, http) in &survivors {
        wait_for(&format!("survivor {id} ready"), LONG, || async {
            http_get(*http, "/readyz").await.filter(|(s, _)| *s == 200)
        })
        .await;
    }
    // The killed member restarts from its directory and rejoins.
    let p = procs.iter_mut().find(|p| p.id == leader).unwrap();
    p.start(&members);
    let http = p.http;
    wait_for("the restarted member to be ready", LONG, || async {
        http_get(http, "/readyz").await.filter(|(s, _)| *s == 200)
    })
    .await;
    for w in writers {
        w.await.unwrap();
    }
    while let Some(a) = acked_rx.recv().await {
        acked.push(a);
    }
    let last = acked.iter().map(|(_, r)| *r).max().unwrap();
    println!(
        "{} writes acknowledged around a kill -9 of the leader",
        acked.len()
    );
    // Every write ends committed: acknowledged, or found after a retry.
    assert_eq!(acked.len(), 120, "writes lost track of");
    // Every acknowledged write is on every member, the restarted one included.
    for p in &procs {
        let client = kv_at(&tls, p.peer).await.unwrap();
        let reply = wait_for(
            &format!("member {} to apply revision {last}", p.id),
            LONG,
            || {
                let mut client = client.clone();
                async move {
                    let r = client
                        .range(pb::RangeRequest {
                            prefix: "/bin/".into(),
                            serializable: true,
                            ..Default::default()
                        })
                        .await
                        .ok()?
                        .into_inner();
                    (r.revision >= last).then_some(r)
                }
            },
        )
        .await;
        let have: std::collections::BTreeMap<String, u64> = reply
            .kvs
            .into_iter()
            .map(|kv| (kv.key, kv.mod_revision))
            .collect();
        for (key, rev) in &acked {
            assert_eq!(
                have.get(key),
                Some(rev),
                "member {} lost acknowledged write {key}",
                p.id
            );
        }
    }
    // The CLI reads through any member.
    let out = Command::new(keel_bin())
        .args(["kv", "--addr", &format!("127.0.0.1:{}", procs[0].peer)])
        .arg("--data-dir")
        .arg(&procs[0].dir)
        .args(["get", &acked[0].0])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .starts_with(&format!("{}\t{}", acked[0].0, acked[0].1))
    );
    // SIGTERM stops a member gracefully, with a zero exit status.
    for p in procs.iter_mut() {
        let mut child = p.child.take().unwrap();
        let ok = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
        let code = wait_for("the member to exit after SIGTERM", LONG, || {
            let r = child.try_wait().unwrap();
            async move { r }
        })
        .await;
        assert!(code.success(), "member {} exited with {code}", p.id);
    }
}

/// A `keel server --config` whose file names a key no version knows: it
/// refuses to start, naming the key and the file.
#[test]
fn config_file_with_an_unknown_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("keel.json");
    std::fs::write(
        &config,
        format!(
            r#"{{"data_dir": "{}", "retain_event": 5}}"#,
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let out = Command::new(keel_bin())
        .args(["server", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "started with an unknown key: {stderr}"
    );
    assert!(
        stderr.contains("unknown field `retain_event`") && stderr.contains("keel.json"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("data").exists(),
        "a refused config still created the data directory"
    );
}

/// Flags on the command line win over the config file, the file over the
/// defaults: the member serves health on the flag's port, and its peer
/// protocol on the file's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_file_fills_in_and_flags_win() {
    let dir = tempfile::tempdir().unwrap();
    let (peer, file_http, flag_http) = (free_port(), free_port(), free_port());
    let config = dir.path().join("keel.json");
    std::fs::write(
        &config,
        format!(
            r#"{{"data_dir": "{}", "peer_addr": "127.0.0.1:{peer}", "http_addr": "127.0.0.1:{file_http}", "api_addr": "127.0.0.1:1"}}"#,
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join("keel.log")).unwrap();
    let mut p = Proc {
        id: 1,
        peer,
        http: flag_http,
        dir: dir.path().join("data"),
        child: None,
    };
    p.child = Some(
        Command::new(keel_bin())
            .args(["server", "--config"])
            .arg(&config)
            .args(["--http-addr", &format!("127.0.0.1:{flag_http}")])
            .args(["--api-addr", "127.0.0.1:0"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    wait_for(
        "the member to be ready on the flag's port",
        LONG,
        || async {
            http_get(flag_http, "/readyz")
                .await
                .filter(|(s, _)| *s == 200)
        },
    )
    .await;
    assert!(
        http_get(file_http, "/readyz").await.is_none(),
        "the file's http_addr is served although the flag overrides it"
    );
    // The file's peer address and data directory are used.
    let data = dir.path().join("data");
    let s = tokio::task::spawn_blocking(move || status(peer, data))
        .await
        .unwrap()
        .unwrap_or_else(|| {
            panic!(
                "no member status on the file's peer_addr; the member's log:\n{}",
                std::fs::read_to_string(dir.path().join("keel.log")).unwrap_or_default()
            )
        });
    assert!(s.contains(&format!("127.0.0.1:{peer}")), "{s}");
    assert!(dir.path().join("data").join("kubeconfig").exists());
}

/// A base port with every port `keel up --members 3` uses free: the API on
/// base.., the peers on base+558.., health on base+638...
fn free_base() -> u16 {
    wait_until("a free range of ports for keel up", LONG, || {
        let span = u64::from(PORTS_TO - PORTS_FROM - 641);
        let base = PORTS_FROM + (next_random() % span) as u16;
        (0..3)
            .flat_map(|i| [base + i, base + 558 + i, base + 638 + i])
            .all(claim_port)
            .then_some(base)
    })
}

/// `keel up` and the member processes it started; all are killed when dropped.
struct Up {
    child: Child,
    members: Vec<u32>,
}

impl Drop for Up {
    fn drop(&mut self) {
        for pid in &self.members {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn kubectl(kubeconfig: &Path, args: &[&str]) -> Output {
    Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["--request-timeout", "10s"])
        .args(args)
        .output()
        .expect("run kubectl (make deps installs it)")
}

/// `keel up --base-port` starts three members on ports counted from the
/// base and writes a kubeconfig with one context per member, so that with
/// member 1 killed kubectl still writes and reads through the others.
#[test]
fn up_serves_every_member_through_its_own_context() {
    let dir = tempfile::tempdir().unwrap();
    let base = free_base();
    let mut child = Command::new(keel_bin())
        .args(["up", "--members", "3", "--base-port", &base.to_string()])
        .arg("--data-dir")
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.path().join("up.log")).unwrap())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut up = Up {
        child,
        members: Vec::new(),
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + LONG;
    let mut lines = Vec::new();
    while !lines.iter().any(|l: &String| l.starts_with("kubeconfig: ")) {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|e| panic!("keel up printed no kubeconfig line ({e}): {lines:?}"));
        if let Some(pid) = line.rsplit_once(" pid ").and_then(|(_, p)| p.parse().ok()) {
            up.members.push(pid);
        }
        lines.push(line);
    }
    assert_eq!(up.members.len(), 3, "{lines:?}");
    for (i, want) in [
        (base, base + 558, base + 638),
        (base + 1, base + 559, base + 639),
        (base + 2, base + 560, base + 640),
    ]
    .iter()
    .enumerate()
    {
        let (api, peer, http) = want;
        let line = &lines[i];
        assert!(
            line.starts_with(&format!("member {}: api https://127.0.0.1:{api}  peer 127.0.0.1:{peer}  health http://127.0.0.1:{http}/readyz", i + 1)),
            "{line}"
        );
    }
    let kubeconfig = dir.path().join("kubeconfig");
    let view = kubectl(&kubeconfig, &["config", "view", "-o", "json"]);
    assert!(
        view.status.success(),
        "{}",
        String::from_utf8_lossy(&view.stderr)
    );
    let view: serde_json::Value = serde_json::from_slice(&view.stdout).unwrap();
    assert_eq!(view["current-context"], "keel-m1");
    let contexts = view["contexts"].as_array().unwrap();
    assert_eq!(contexts.len(), 3, "{view}");
    for (i, api) in (base..base + 3).enumerate() {
        let name = format!("keel-m{}", i + 1);
        let ctx = contexts.iter().find(|c| c["name"] == name.as_str());
        let ctx = ctx.unwrap_or_else(|| panic!("no context {name}: {view}"));
        let cluster = ctx["context"]["cluster"].as_str().unwrap();
        assert_eq!(ctx["context"]["user"], "admin");
        let server = view["clusters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == cluster)
            .map(|c| c["cluster"]["server"].clone());
        assert_eq!(
            server,
            Some(serde_json::json!(format!("https://127.0.0.1:{api}"))),
            "{view}"
        );
    }
    wait_until("the cluster to serve through member 1", LONG, || {
        kubectl(&kubeconfig, &["get", "ns", "default", "-o", "name"])
            .status
            .success()
            .then_some(())
    });
    // Member 1 dies: its context fails, member 2's and 3's still serve.
    let m1 = up.members[0];
    assert!(
        Command::new("kill")
            .args(["-KILL", &m1.to_string()])
            .status()
            .unwrap()
            .success()
    );
    wait_until("member 1's context to fail", LONG, || {
        (!kubectl(&kubeconfig, &["get", "ns", "default", "-o", "name"])
            .status
            .success())
        .then_some(())
    });
    // A manifest, sent as JSON (`create configmap` sends protobuf, not served yet).
    let manifest = dir.path().join("cm.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: after-m1\ndata:\n  k: v\n",
    )
    .unwrap();
    let manifest = manifest.to_str().unwrap();
    wait_until("a write through member 2's context", LONG, || {
        let out = kubectl(
            &kubeconfig,
            &["--context", "keel-m2", "create", "-f", manifest],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        (out.status.success() || stderr.contains("already exists")).then_some(())
    });
    let out = kubectl(
        &kubeconfig,
        &[
            "--context",
            "keel-m3",
            "get",
            "configmap",
            "after-m1",
            "-o",
            "jsonpath={.data.k}",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "v");
    // SIGTERM stops `keel up`, which stops the members it started.
    let pid = up.child.id();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
    let code = wait_until("keel up to exit after SIGTERM", LONG, || {
        up.child.try_wait().unwrap()
    });
    assert!(code.success(), "keel up exited with {code}");
    // Reaped by `keel up`: their pids may belong to others now.
    up.members.clear();
}
