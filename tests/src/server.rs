//! One `keel server` process for the tests that drive it from outside, as
//! kubectl and curl do: free loopback ports, a temp directory, readiness
//! polled with a deadline, and the process killed when the test ends, pass
//! or fail.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::Duration;

use crate::{free_port, keel_bin, wait_until};

/// The kubectl the tests run (`make deps` installs it).
pub const KUBECTL: &str = "/usr/bin/kubectl";

/// How long a server may take to serve its first request.
pub const READY: Duration = Duration::from_secs(60);

/// `/usr/bin/kubectl` (`None`), or kubectl `version` itself (`kubectl.<version>`
/// beside the file it resolves to, not the version dispatcher).
pub fn kubectl_bin(version: Option<&str>) -> PathBuf {
    let default = Path::new(KUBECTL);
    let real = std::fs::canonicalize(default)
        .unwrap_or_else(|e| panic!("kubectl is missing: {KUBECTL} ({e}); run `make deps`"));
    let p = match version {
        None => default.to_path_buf(),
        Some(v) => real
            .parent()
            .expect("kubectl has a parent directory")
            .join(format!("kubectl.{v}")),
    };
    assert!(p.is_file(), "{} is missing; run `make deps`", p.display());
    p
}

/// A kubectl command; a missing kubectl fails the test, never skips it.
pub fn kubectl() -> Command {
    let bin = Path::new(KUBECTL);
    assert!(
        bin.exists(),
        "kubectl is missing: {KUBECTL}; run `make deps`"
    );
    Command::new(bin)
}

/// Runs `c` with `input` on its stdin; stdout and stderr are captured.
pub fn output_with_stdin(mut c: Command, input: &[u8]) -> Output {
    use std::io::Write;
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

/// The stdout of a command that must have succeeded (`what` names it in
/// the failure, with its stdout and stderr).
pub fn succeeded(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A single-member `keel server` in a temp directory: data in `data/`, its
/// stderr in `keel.log`, kubectl's home in `home/`. Killed on drop.
pub struct KeelServer {
    child: Child,
    dir: tempfile::TempDir,
    peer_port: u16,
    api_port: u16,
    /// The options it was started with, for [`KeelServer::restart`].
    extra: Vec<std::ffi::OsString>,
}

impl KeelServer {
    /// A server with `extra` options in a fresh directory, ready (see
    /// [`KeelServer::start_in`]).
    pub fn start(extra: &[&dyn AsRef<OsStr>]) -> KeelServer {
        KeelServer::start_in(tempfile::tempdir().unwrap(), extra)
    }

    /// A server in `dir` (where the test put the files its options name),
    /// waited for until its kubeconfig exists and the admin reads namespace
    /// `default`; a server that exits first fails the test at once.
    pub fn start_in(dir: tempfile::TempDir, extra: &[&dyn AsRef<OsStr>]) -> KeelServer {
        let mut s = KeelServer::spawn_in(dir, extra);
        let (kubeconfig, log) = (s.kubeconfig(), s.dir().join("keel.log"));
        let mut probe = s.admin(&["get", "ns", "default", "-o", "name"]);
        wait_until("keel server to serve the API", READY, || {
            if let Some(status) = s.child.try_wait().unwrap() {
                panic!(
                    "keel server exited with {status}:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            (kubeconfig.exists() && probe.output().is_ok_and(|o| o.status.success())).then_some(())
        });
        s
    }

    /// A server spawned in `dir` and not waited for (a start-up that must
    /// fail, or a test with its own readiness condition).
    pub fn spawn_in(dir: tempfile::TempDir, extra: &[&dyn AsRef<OsStr>]) -> KeelServer {
        let (peer_port, api_port) = (free_port(), free_port());
        let extra: Vec<std::ffi::OsString> = extra.iter().map(|a| a.as_ref().to_owned()).collect();
        let child = spawn(dir.path(), peer_port, api_port, &extra);
        KeelServer {
            child,
            dir,
            peer_port,
            api_port,
            extra,
        }
    }

    /// Kill the server and start it again on the same data, ports and
    /// options, waited for as [`KeelServer::start_in`] waits (its log
    /// starts again).
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn(self.dir.path(), self.peer_port, self.api_port, &self.extra);
        let mut probe = self.admin(&["get", "ns", "default", "-o", "name"]);
        let log = self.dir().join("keel.log");
        wait_until("keel server to serve the API again", READY, || {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "keel server exited with {status}:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            probe
                .output()
                .is_ok_and(|o| o.status.success())
                .then_some(())
        });
    }

    /// The temp directory everything of this server lives in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The data directory (`--data-dir`).
    pub fn data(&self) -> PathBuf {
        self.dir().join("data")
    }

    /// The admin kubeconfig the server writes (a client certificate in
    /// group `system:masters`).
    pub fn kubeconfig(&self) -> PathBuf {
        self.data().join("kubeconfig")
    }

    /// A kubeconfig for user `name` in `groups`, with a client certificate
    /// of its own signed by the cluster CA, issued by `keel certs user`.
    pub fn user_kubeconfig(&self, name: &str, groups: &[&str]) -> PathBuf {
        let out = self.dir().join("certs");
        let mut c = Command::new(keel_bin());
        c.arg("certs")
            .arg("--ca-dir")
            .arg(self.data().join("pki"))
            .arg("--out")
            .arg(&out)
            .args(["--server", &self.url(), "user", "--name", name]);
        for g in groups {
            c.args(["--group", g]);
        }
        let issued = c.output().unwrap();
        assert!(issued.status.success(), "keel certs: {issued:?}");
        let cfg = out.join(format!("{name}.kubeconfig"));
        assert!(cfg.exists(), "keel certs wrote no {}", cfg.display());
        cfg
    }

    /// The cluster CA's certificate.
    pub fn ca_cert(&self) -> PathBuf {
        self.data().join("pki").join("ca.crt")
    }

    /// `https://127.0.0.1:PORT` of the Kubernetes API.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.api_port)
    }

    /// `127.0.0.1:PORT` of the member port (`keel kv --addr`).
    pub fn peer_addr(&self) -> String {
        format!("127.0.0.1:{}", self.peer_port)
    }

    /// What the server wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir().join("keel.log")).unwrap_or_default()
    }

    /// The exit status, waited for until `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        wait_until("keel server to exit", timeout, || {
            self.child.try_wait().unwrap()
        })
    }

    /// kubectl with `HOME` in the test's directory (its caches stay there).
    pub fn kubectl(&self) -> Command {
        let mut c = kubectl();
        c.env("HOME", self.dir().join("home"));
        c
    }

    /// Silent curl with the CA and the admin's client certificate, then
    /// `args`, in which `BASE` stands for [`KeelServer::url`].
    pub fn curl(&self, args: &[&str]) -> Command {
        let pki = self.data().join("pki");
        let mut c = Command::new("curl");
        c.args(["-s", "--cacert"])
            .arg(pki.join("ca.crt"))
            .arg("--cert")
            .arg(pki.join("admin.crt"))
            .arg("--key")
            .arg(pki.join("admin.key"))
            .args(args.iter().map(|a| a.replace("BASE", &self.url())));
        c
    }

    /// kubectl as the admin with `args`.
    pub fn admin(&self, args: &[&str]) -> Command {
        let mut c = self.kubectl();
        c.arg("--kubeconfig").arg(self.kubeconfig()).args(args);
        c
    }
}

/// `keel server` in `dir` on these ports, its stderr in `keel.log`.
fn spawn(dir: &Path, peer_port: u16, api_port: u16, extra: &[std::ffi::OsString]) -> Child {
    let log = std::fs::File::create(dir.join("keel.log")).unwrap();
    let mut c = Command::new(keel_bin());
    c.args(["server", "--data-dir"])
        .arg(dir.join("data"))
        .args(["--peer-addr", &format!("127.0.0.1:{peer_port}")])
        .args(["--http-addr", &format!("127.0.0.1:{}", free_port())])
        .args(["--api-addr", &format!("127.0.0.1:{api_port}")])
        .args(extra);
    c.stdout(Stdio::null()).stderr(log).spawn().unwrap()
}

impl Drop for KeelServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
