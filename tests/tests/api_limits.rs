//! Resource bounds of the Kubernetes API of a `keel server` process, driven
//! with curl and the admin client certificate: the open-watch cap (429 with
//! Retry-After), a `timeoutSeconds` too large for a deadline, a watch's initial
//! state streamed in pages at one revision, metric labels that do not grow
//! with the paths clients send, and private key files.

use std::ffi::OsStr;
use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use keel_tests::server::KeelServer;
use keel_tests::{rng, seed, wait_until};
use rand::Rng;
use serde_json::Value;

const LONG: Duration = Duration::from_secs(60);
const CMS: &str = "/api/v1/namespaces/default/configmaps";

/// A `keel server` process on free ports, killed on drop.
struct Server {
    keel: KeelServer,
}

impl Server {
    fn start(extra: &[&dyn AsRef<OsStr>]) -> Server {
        let s = Server {
            keel: KeelServer::start(extra),
        };
        wait_until("the server to be ready", LONG, || {
            (s.curl(&["BASE/api/v1/namespaces/default"]).0 == 200).then_some(())
        });
        s
    }

    /// curl with the admin certificate; `BASE` in an argument is the API's URL.
    fn cmd(&self, args: &[&str]) -> Command {
        self.keel.curl(&[&["--max-time", "60"][..], args].concat())
    }

    /// (HTTP code, body as JSON or Null, raw body).
    fn curl(&self, args: &[&str]) -> (u16, Value, String) {
        let out = self
            .cmd(&[&["-w", "\n%{http_code}"][..], args].concat())
            .output()
            .expect("curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (
            code.trim().parse().unwrap_or(0),
            serde_json::from_str(body).unwrap_or(Value::Null),
            body.to_string(),
        )
    }

    fn create_cm(&self, name: &str, value: &str) {
        let body = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name}, "data": {"v": value}});
        let (code, resp, _) = self.curl(&[
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "-d",
            &body.to_string(),
            &format!("BASE{CMS}"),
        ]);
        assert_eq!(code, 201, "creating {name}: {resp}");
    }

    /// Run curl over a config file (many requests, one connection).
    fn curl_config(&self, config: &str) -> String {
        let file = self.keel.data().join("curl.cfg");
        // `next` resets the options given before it, the certificates too.
        let pki = self.keel.data().join("pki");
        let tls = format!(
            "cacert = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n",
            pki.join("ca.crt").display(),
            pki.join("admin.crt").display(),
            pki.join("admin.key").display()
        );
        let config = config
            .replace("BASE", &self.keel.url())
            .replace("next\n", &format!("next\n{tls}"));
        std::fs::write(&file, config).unwrap();
        let out = self
            .cmd(&["--max-time", "300", "--config"])
            .arg(&file)
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// One `metric{labels} value` line per series of `metric`.
    fn series(&self, metric: &str) -> Vec<String> {
        let (code, _, text) = self.curl(&["BASE/metrics"]);
        assert_eq!(code, 200);
        text.lines()
            .filter(|l| {
                l.starts_with(&format!("{metric}{{")) || l.starts_with(&format!("{metric} "))
            })
            .map(str::to_string)
            .collect()
    }

    /// A streaming watch of `path` (relative to BASE).
    fn watch(&self, path: &str) -> Watch {
        let mut child = self
            .cmd(&["-N", &format!("BASE{path}")])
            .stdout(Stdio::piped())
            .spawn()
            .expect("curl");
        let out = child.stdout.take().unwrap();
        // Bounded, so an unread stream pushes back on the server.
        let (tx, rx) = mpsc::sync_channel(16);
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Watch { child, lines: rx }
    }
}

/// A curl streaming a watch; its lines arrive through a reader thread.
struct Watch {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Watch {
    /// The next event, failing the test if none comes within `LONG` or the
    /// stream ends.
    fn next(&self) -> Value {
        match self.lines.recv_timeout(LONG) {
            Ok(l) => serde_json::from_str(&l).unwrap_or_else(|e| panic!("{e}: {l}")),
            Err(e) => panic!("no watch event: {e}"),
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn name_of(ev: &Value) -> &str {
    ev["object"]["metadata"]["name"].as_str().unwrap_or("")
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn watches_beyond_the_cap_get_429_until_one_ends() {
    // No controller manager: its watches would take the slots counted here.
    let s = Server::start(&[&"--max-watches", &"3", &"--controllers=false"]);
    // Namespaces exist from the start: a first ADDED line proves a watch is open.
    let open: Vec<Watch> = (0..3)
        .map(|_| {
            let w = s.watch("/api/v1/namespaces?watch=1");
            assert_eq!(w.next()["type"], "ADDED");
            w
        })
        .collect();
    let headers = s.keel.data().join("headers");
    let (code, status, _) = s.curl(&[
        "-D",
        headers.to_str().unwrap(),
        "BASE/api/v1/namespaces?watch=1&timeoutSeconds=2",
    ]);
    assert_eq!(code, 429, "{status}");
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["reason"], "TooManyRequests");
    let headers = std::fs::read_to_string(&headers).unwrap().to_lowercase();
    assert!(headers.contains("retry-after: 1"), "{headers}");
    // Watches are not counted against requests: a plain list is served.
    assert_eq!(s.curl(&[&format!("BASE{CMS}")]).0, 200);
    // A watch that is percent-encoded is still a watch.
    assert_eq!(
        s.curl(&["BASE/api/v1/namespaces?watch=%74rue&timeoutSeconds=2"])
            .0,
        429
    );
    assert_eq!(
        s.series("apiserver_watches_open"),
        ["apiserver_watches_open 3"]
    );
    // Ending one watch frees its slot (once the server sees the disconnect).
    drop(open.into_iter().next());
    wait_until("a freed watch slot", LONG, || {
        (s.curl(&["BASE/api/v1/namespaces?watch=1&timeoutSeconds=1"])
            .0
            == 200)
            .then_some(())
    });
}

#[test]
fn a_watch_with_the_largest_timeout_streams_like_any_other() {
    let s = Server::start(&[]);
    s.create_cm("before", "1");
    let w = s.watch(&format!(
        "{CMS}?watch=1&timeoutSeconds=18446744073709551615"
    ));
    let first = w.next();
    assert_eq!(
        (first["type"].as_str(), name_of(&first)),
        (Some("ADDED"), "before")
    );
    // The live part runs after the initial events: a panic there (an
    // overflowing deadline) would end the stream here.
    s.create_cm("after", "2");
    let ev = w.next();
    assert_eq!(
        (ev["type"].as_str(), name_of(&ev)),
        (Some("ADDED"), "after")
    );
    // The server is healthy and the stream still open.
    assert_eq!(s.curl(&["BASE/readyz"]).0, 200);
    s.create_cm("later", "3");
    assert_eq!(name_of(&w.next()), "later");

    // The kubeconfig and every key are private to the server's user.
    assert_eq!(mode(&s.keel.data().join("kubeconfig")), 0o600, "kubeconfig");
    for key in ["ca.key", "server.key", "admin.key"] {
        assert_eq!(mode(&s.keel.data().join("pki").join(key)), 0o600, "{key}");
    }
}

#[test]
fn a_watch_streams_its_initial_state_in_pages_at_one_revision() {
    let s = Server::start(&[]);
    // Three pages of initial state (500 objects a page), each object large
    // enough that the stream blocks while the test does not read it.
    const N: usize = 1100;
    let payload = "x".repeat(8000);
    let mut cfg = String::new();
    for i in 0..N {
        let body = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": format!("cm-{i:04}")}, "data": {"v": payload}});
        cfg.push_str(&format!(
            "url = \"BASE{CMS}\"\nrequest = \"POST\"\nheader = \"Content-Type: application/json\"\ndata = {}\noutput = \"/dev/null\"\nwrite-out = \"%{{http_code}}\\n\"\nnext\n",
            serde_json::to_string(&body.to_string()).unwrap()
        ));
    }
    let codes = s.curl_config(&cfg);
    assert_eq!(
        codes.lines().filter(|c| *c == "201").count(),
        N,
        "creates: {}",
        &codes[..codes.len().min(400)]
    );
    let rv = |e: &Value| -> u64 {
        e["object"]["metadata"]["resourceVersion"]
            .as_str()
            .and_then(|r| r.parse().ok())
            .unwrap_or_else(|| panic!("no resourceVersion: {e}"))
    };

    // Paged: one store read per page of the initial state, where building
    // the whole list at once is one read.
    let reads = || -> u64 {
        s.series("keel_store_reads_total")
            .iter()
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    };
    let before = reads();
    {
        let w = s.watch(&format!("{CMS}?watch=1"));
        for _ in 0..N {
            assert_eq!(w.next()["type"], "ADDED");
        }
    }
    let paged = reads() - before;
    assert!(paged >= 3, "{paged} store reads for {N} objects");

    // Writes while the initial state is still streaming come after it, each
    // once, and do not change what the initial state shows (every page is
    // read at the first page's revision).
    let w = s.watch(&format!("{CMS}?watch=1"));
    let first = w.next();
    assert_eq!(first["type"], "ADDED");
    let (code, _, _) = s.curl(&[
        "-X",
        "PATCH",
        "-H",
        "Content-Type: application/merge-patch+json",
        "-d",
        r#"{"data":{"v":"changed"}}"#,
        &format!("BASE{CMS}/cm-1099"),
    ]);
    assert_eq!(code, 200);
    assert_eq!(
        s.curl(&["-X", "DELETE", &format!("BASE{CMS}/cm-0000")]).0,
        200
    );
    s.create_cm("cm-new", "1");
    let mut events = vec![first];
    while events.len() < N + 3 {
        events.push(w.next());
    }
    let (initial, live) = events.split_at(N);
    assert!(initial.iter().all(|e| e["type"] == "ADDED"));
    let mut names: Vec<&str> = initial.iter().map(name_of).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), N, "every object once");
    for e in initial {
        assert_eq!(e["object"]["data"]["v"], payload.as_str(), "{}", name_of(e));
    }
    let live_events: Vec<(&str, &str)> = live
        .iter()
        .map(|e| (e["type"].as_str().unwrap(), name_of(e)))
        .collect();
    assert_eq!(
        live_events,
        [
            ("MODIFIED", "cm-1099"),
            ("DELETED", "cm-0000"),
            ("ADDED", "cm-new")
        ]
    );
    let newest_initial = initial.iter().map(rv).max().unwrap();
    assert!(live.iter().all(|e| rv(e) > newest_initial));
}

#[test]
fn metric_labels_stay_bounded_whatever_paths_are_requested() {
    // No controller manager: its requests would add series counted here.
    let s = Server::start(&[&"--controllers=false"]);
    let mut r = rng(seed("metric_labels_stay_bounded"));
    let tokens: Vec<String> = (0..1000)
        .map(|_| format!("t{:016x}", r.r#gen::<u64>()))
        .collect();
    let mut cfg = String::new();
    for (i, t) in tokens.iter().enumerate() {
        let path = match i % 4 {
            0 => format!("/api/v1/{t}"),
            1 => format!("/api/v1/namespaces/default/{t}/x"),
            2 => format!("{CMS}/c/{t}"),
            _ => format!("/apis/{t}.example.com/v1/{t}"),
        };
        cfg.push_str(&format!(
            "url = \"BASE{path}\"\noutput = \"/dev/null\"\nwrite-out = \"%{{http_code}}\\n\"\n"
        ));
    }
    let codes = s.curl_config(&cfg);
    assert_eq!(
        codes.lines().filter(|c| *c == "404").count(),
        1000,
        "{codes}"
    );
    let (code, _, text) = s.curl(&["BASE/metrics"]);
    assert_eq!(code, 200);
    let leaked: Vec<&String> = tokens
        .iter()
        .filter(|t| text.contains(t.as_str()))
        .collect();
    assert!(leaked.is_empty(), "{} paths became labels", leaked.len());
    let series = s.series("apiserver_request_total");
    assert!(series.len() < 20, "{series:#?}");
    assert!(
        series
            .iter()
            .any(|l| l.contains("resource=\"unknown\",code=\"404\"")),
        "{series:#?}"
    );
}
