//! The harness of the encryption-at-rest tests (`tests/encryption.rs`):
//! `keel server` processes sharing one CA, driven through the real kubectl,
//! stopped cleanly, and a scan of every file of their data directories for
//! byte strings (the plaintext that must never reach the disk).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use base64::Engine;
use rand::Rng;
use rand::distributions::Alphanumeric;

use crate::{free_port, keel_bin, wait_until};

/// Deadline of every wait (a member starting, a snapshot, a stop).
pub const LONG: Duration = Duration::from_secs(120);

/// Standard base64, as a Secret's `data` holds its values.
pub fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// A random value with a marker in front; a wide alphabet, so that LZ4 (the
/// SST files' compression) finds no repeats inside it to split it by.
pub fn random_value(r: &mut impl Rng, marker: &str) -> String {
    let tail: String = r
        .sample_iter(&Alphanumeric)
        .take(40)
        .map(char::from)
        .collect();
    format!("{marker}{tail}")
}

/// Run kubectl against `kubeconfig`, with its caches under `home`.
pub fn kubectl(home: &Path, kubeconfig: &Path, args: &[&str]) -> Output {
    crate::server::kubectl()
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .env("HOME", home)
        .env("KUBECACHEDIR", home.join("cache"))
        .output()
        .unwrap()
}

pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// GET a path of a member's plain-HTTP port; the body of a 200.
pub fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

/// A `keel server` process.
pub struct Member {
    pub id: u64,
    pub peer: u16,
    pub http: u16,
    pub api: u16,
    pub dir: PathBuf,
    pub child: Option<Child>,
}

/// Members on loopback sharing one CA; killed when dropped, pass or fail.
pub struct Cluster {
    pub root: tempfile::TempDir,
    pub members: Vec<Member>,
    /// Options every member gets besides its own.
    extra: Vec<String>,
}

impl Cluster {
    pub fn new(n: u64, extra: &[&str]) -> Cluster {
        let root = tempfile::tempdir().unwrap();
        let members = (1..=n)
            .map(|id| Member {
                id,
                peer: free_port(),
                http: free_port(),
                api: free_port(),
                dir: root.path().join(format!("m{id}")),
                child: None,
            })
            .collect();
        Cluster {
            root,
            members,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        }
    }

    pub fn home(&self) -> PathBuf {
        self.root.path().join("home")
    }

    pub fn kubeconfig(&self, i: usize) -> PathBuf {
        self.members[i].dir.join("kubeconfig")
    }

    pub fn kubectl(&self, i: usize, args: &[&str]) -> Output {
        kubectl(&self.home(), &self.kubeconfig(i), args)
    }

    /// Start every member with the encryption configuration `config`.
    pub fn start(&mut self, config: &Path) {
        let initial = self
            .members
            .iter()
            .map(|m| format!("{}=127.0.0.1:{}", m.id, m.peer))
            .collect::<Vec<_>>()
            .join(",");
        let ca = self.root.path().join("ca");
        for m in &mut self.members {
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(m.dir.with_extension("log"))
                .unwrap();
            let child = Command::new(keel_bin())
                .args(["server", "--id", &m.id.to_string()])
                .arg("--data-dir")
                .arg(&m.dir)
                .args(["--peer-addr", &format!("127.0.0.1:{}", m.peer)])
                .args(["--http-addr", &format!("127.0.0.1:{}", m.http)])
                .args(["--api-addr", &format!("127.0.0.1:{}", m.api)])
                .args(["--initial-members", &initial])
                .arg("--ca-dir")
                .arg(&ca)
                .arg("--encryption-provider-config")
                .arg(config)
                .args(&self.extra)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap();
            m.child = Some(child);
        }
        let home = self.home();
        for i in 0..self.members.len() {
            let kubeconfig = self.kubeconfig(i);
            let members = &mut self.members;
            wait_until(&format!("member {} serves secrets", i + 1), LONG, || {
                // A member that exited (a refused configuration) fails now.
                for m in members.iter_mut() {
                    if let Some(status) = m.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                        panic!(
                            "member {} exited with {status}; see {}",
                            m.id,
                            m.dir.with_extension("log").display()
                        );
                    }
                }
                (kubeconfig.exists()
                    && kubectl(&home, &kubeconfig, &["get", "secrets", "-n", "default"])
                        .status
                        .success())
                .then_some(())
            });
        }
    }

    /// Stop every member with SIGTERM (RocksDB closes cleanly) and wait.
    pub fn stop(&mut self) {
        for m in &mut self.members {
            if let Some(c) = &m.child {
                unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            }
        }
        for m in &mut self.members {
            if let Some(mut c) = m.child.take() {
                let status = wait_until(&format!("member {} to stop", m.id), LONG, || {
                    c.try_wait().unwrap()
                });
                assert!(status.success(), "member {} exited with {status}", m.id);
            }
        }
    }

    /// A metric of member `i`'s /metrics.
    pub fn metric(&self, i: usize, name: &str) -> Option<u64> {
        let body = http_get(self.members[i].http, "/metrics")?;
        body.lines()
            .find_map(|l| {
                l.strip_prefix(name)?
                    .strip_prefix(' ')?
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
            .map(|v| v as u64)
    }

    /// Wait until every member has taken a snapshot beyond `beyond`, purged
    /// its log behind one and compacted events; the snapshot indexes.
    pub fn wait_snapshots(&self, beyond: &[u64]) -> Vec<u64> {
        (0..self.members.len())
            .map(|i| {
                wait_until(
                    &format!("member {} to snapshot, purge and compact", i + 1),
                    LONG,
                    || {
                        let snap = self.metric(i, "keel_raft_snapshot_index")?;
                        let purged = self.metric(i, "keel_raft_purged_index")?;
                        let compacted = self.metric(i, "keel_store_compacted_revision")?;
                        (snap > beyond.get(i).copied().unwrap_or(0) && purged > 0 && compacted > 0)
                            .then_some(snap)
                    },
                )
            })
            .collect()
    }

    /// `kubectl create -f` of `yaml` through member `i` (a manifest: kubectl
    /// sends it as JSON; `create secret` would send protobuf).
    pub fn create(&self, i: usize, yaml: &str) {
        let file = self
            .root
            .path()
            .join(format!("manifest-{}.yaml", crate::next_random()));
        std::fs::write(&file, yaml).unwrap();
        ok(&self.kubectl(i, &["create", "-f", file.to_str().unwrap()]));
        std::fs::remove_file(&file).unwrap();
    }

    /// A Secret `name` whose `token` is `value` (sent as `stringData`).
    pub fn create_secret(&self, i: usize, name: &str, value: &str) {
        self.create(
            i,
            &format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: default\nstringData:\n  token: {value}\n"),
        );
    }

    /// Enough writes (ConfigMaps, in one kubectl call) for snapshots,
    /// purges and event compaction at the members' small thresholds.
    pub fn churn(&self, round: &str, n: usize) {
        let mut yaml = String::new();
        for i in 0..n {
            yaml.push_str(&format!(
                "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: churn-{round}-{i}\n  namespace: default\ndata:\n  n: \"{i}\"\n"
            ));
        }
        self.create(0, &yaml);
    }

    /// Every file under every member's data directory holding one of `needles`.
    pub fn scan(&self, needles: &[String]) -> Vec<(PathBuf, String)> {
        let mut hits = Vec::new();
        for m in &self.members {
            scan_dir(&m.dir, needles, &mut hits);
        }
        hits
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            if let Some(mut c) = m.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// Files under `dir` (recursively) containing a needle, with the needle.
pub fn scan_dir(dir: &Path, needles: &[String], hits: &mut Vec<(PathBuf, String)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            scan_dir(&path, needles, hits);
        } else if ft.is_file() {
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            for n in needles {
                if contains(&bytes, n.as_bytes()) {
                    hits.push((path.clone(), n.clone()));
                }
            }
        }
    }
}

pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    let first = needle[0];
    hay.iter()
        .enumerate()
        .filter(|(_, b)| **b == first)
        .any(|(i, _)| hay[i..].starts_with(needle))
}

/// The plaintexts of the Secrets and their base64 (as the Secret's `data`
/// holds them), which must appear nowhere on disk.
pub fn needles(values: &[String]) -> Vec<String> {
    values
        .iter()
        .flat_map(|v| [v.clone(), b64(v.as_bytes())])
        .collect()
}

/// The plaintext of Secret `name`'s `token`, read through member `i`.
pub fn read_secret(c: &Cluster, i: usize, name: &str) -> String {
    let out = ok(&c.kubectl(
        i,
        &[
            "get",
            "secret",
            name,
            "-n",
            "default",
            "-o",
            "jsonpath={.data.token}",
        ],
    ));
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(out.trim())
            .unwrap(),
    )
    .unwrap()
}

/// The store holds a control ConfigMap (not encrypted) in the same files:
/// the scan must see it in every member's directory, snapshot file included,
/// so that finding no Secret is not the scan being blind.
pub fn assert_scan_sees(c: &Cluster, control: &str) {
    let hits = c.scan(&[control.to_string()]);
    for m in &c.members {
        assert!(
            hits.iter().any(|(p, _)| p.starts_with(&m.dir)),
            "the scan finds the control value nowhere under {}: {hits:?}",
            m.dir.display()
        );
        assert!(
            hits.iter()
                .any(|(p, _)| p.starts_with(&m.dir) && p.to_string_lossy().contains("snap")),
            "the control value is in no snapshot file of {}: {hits:?}",
            m.dir.display()
        );
    }
}
