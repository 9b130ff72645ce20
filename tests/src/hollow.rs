//! Hollow nodes for end-to-end tests: one `keel hollow-nodes` child process
//! (nodes `<prefix>-0` .. `<prefix>-<count-1>`) against a server's admin
//! kubeconfig, killed on drop (or by [`HollowNodes::kill`], which stops
//! its heartbeats as a dead node's stop), and waits on the nodes' Ready
//! condition through kubectl.
//!
//! What hollow nodes do with pods (Running and Ready at once; the
//! `hollow.keel.dev/exit-after`, `exit-code` and `ready-after` annotations)
//! is documented in docs/CONTROLLERS.md, "nodes".

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::server::kubectl;
use crate::{keel_bin, wait_until};

/// Annotation: seconds after start at which a pod's containers exit.
pub const EXIT_AFTER: &str = "hollow.keel.dev/exit-after";
/// Annotation: the exit code of a pod's containers (default 0).
pub const EXIT_CODE: &str = "hollow.keel.dev/exit-code";
/// Annotation: seconds after start at which a pod turns Ready.
pub const READY_AFTER: &str = "hollow.keel.dev/ready-after";

/// A `keel hollow-nodes` process. Killed on drop.
pub struct HollowNodes {
    child: Child,
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
    prefix: String,
    count: usize,
}

impl HollowNodes {
    /// `count` nodes named `<prefix>-<i>` with a 1 s heartbeat, joined to
    /// the API of `kubeconfig`.
    pub fn start(kubeconfig: &Path, prefix: &str, count: usize) -> HollowNodes {
        HollowNodes::start_with(kubeconfig, prefix, count, &[&"--heartbeat", &"1s"])
    }

    /// Like [`HollowNodes::start`] with `extra` options of `keel
    /// hollow-nodes` (`--cpu`, `--labels`, `--taints`, `--heartbeat`,
    /// `--pod-watch`, ...) instead of the 1 s heartbeat.
    pub fn start_with(
        kubeconfig: &Path,
        prefix: &str,
        count: usize,
        extra: &[&dyn AsRef<OsStr>],
    ) -> HollowNodes {
        let dir = tempfile::tempdir().unwrap();
        let log = std::fs::File::create(dir.path().join("hollow.log")).unwrap();
        let child = Command::new(keel_bin())
            .arg("hollow-nodes")
            .args(["--count", &count.to_string(), "--prefix", prefix])
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        HollowNodes {
            child,
            dir,
            kubeconfig: kubeconfig.to_path_buf(),
            prefix: prefix.into(),
            count,
        }
    }

    /// The node names, in order.
    pub fn names(&self) -> Vec<String> {
        (0..self.count)
            .map(|i| format!("{}-{i}", self.prefix))
            .collect()
    }

    /// What the process wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("hollow.log")).unwrap_or_default()
    }

    /// Stop the nodes dead (SIGKILL): no more heartbeats or pod updates.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Wait until every node is registered and Ready; fails the test (with
    /// the process's log) after `timeout`, or at once if the process exits.
    pub fn wait_ready(&mut self, timeout: Duration) {
        let names = self.names();
        let (kubeconfig, home) = (self.kubeconfig.clone(), self.dir.path().join("home"));
        wait_until("hollow nodes to be Ready", timeout, || {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("keel hollow-nodes exited with {status}:\n{}", self.log());
            }
            nodes_ready(&kubeconfig, &home, &names).then_some(())
        });
    }
}

impl Drop for HollowNodes {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Wait until every node of `names` is Ready in the API of `kubeconfig`.
pub fn wait_nodes_ready(kubeconfig: &Path, names: &[String], timeout: Duration) {
    let home = tempfile::tempdir().unwrap();
    wait_until("nodes to be Ready", timeout, || {
        nodes_ready(kubeconfig, home.path(), names).then_some(())
    });
}

/// Whether every node of `names` exists with condition Ready=True.
fn nodes_ready(kubeconfig: &Path, home: &Path, names: &[String]) -> bool {
    let Some(list) = get_json(kubeconfig, home, &["get", "nodes"]) else {
        return false;
    };
    let items = list["items"].as_array().cloned().unwrap_or_default();
    names.iter().all(|name| {
        items
            .iter()
            .find(|n| n["metadata"]["name"] == name.as_str())
            .is_some_and(|n| condition(n, "Ready") == Some("True"))
    })
}

/// The status of condition `type_` of an object (a node or a pod) as JSON.
pub fn condition<'a>(obj: &'a Value, type_: &str) -> Option<&'a str> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)?["status"]
        .as_str()
}

/// `kubectl <args> -o json` parsed, or None when kubectl fails.
pub fn get_json(kubeconfig: &Path, home: &Path, args: &[&str]) -> Option<Value> {
    let out = kubectl()
        .env("HOME", home)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .args(["-o", "json"])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}
