//! Secrets encrypted at rest, end to end through the real `keel server` and
//! the real kubectl: the plaintext scan of every member's data directory
//! (RocksDB files, the Raft log, snapshot files) after flushes, event
//! compaction, snapshots and log purges; the same after `keel secrets
//! rotate`; the old key removed afterwards with every Secret still readable;
//! an unknown key as a clear error for the object alone; and the KMS v2
//! envelope provider with the test plugin, in-process and as a process.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use keel_apiserver::encryption::aesgcmsiv::random_secret;
use keel_apiserver::encryption::{EncryptedStorage, Encryption, config};
use keel_apiserver::registry::storage::{Actor, Consistency, MemoryStorage, Storage};
use keel_tests::at_rest::{
    Cluster, LONG, assert_scan_sees, b64, contains, needles, ok, random_value, read_secret,
};
use keel_tests::kms_plugin::{Plugin, serve};
use keel_tests::server::KeelServer;
use keel_tests::{keel_bin, rng, seed, wait_until};

/// Secrets written per phase.
const SECRETS: usize = 6;

fn aes_config(keys: &[(&str, [u8; 32])], identity: bool) -> String {
    let mut s = String::from(
        "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n      - aesgcmsiv:\n          keys:\n",
    );
    for (n, k) in keys {
        s.push_str(&format!(
            "            - name: {n}\n              secret: {}\n",
            b64(k)
        ));
    }
    if identity {
        s.push_str("      - identity: {}\n");
    }
    s
}

#[test]
fn plaintext_scan_finds_no_secret_before_or_after_rotation_and_the_old_key_can_go() {
    let mut r = rng(seed("plaintext_scan"));
    let mut c = Cluster::new(
        3,
        &[
            "--snapshot-every",
            "20",
            "--keep-behind-snapshot",
            "5",
            "--retain-events",
            "20",
        ],
    );
    let (k1, k2) = (random_secret(), random_secret());
    let config = c.root.path().join("encryption.yaml");
    std::fs::write(&config, aes_config(&[("k1", k1)], true)).unwrap();
    c.start(&config);

    // Secrets with known random plaintext, through every member's API.
    let values: Vec<String> = (0..SECRETS)
        .map(|_| random_value(&mut r, "keelsecret"))
        .collect();
    for (i, v) in values.iter().enumerate() {
        c.create_secret(i % 3, &format!("enc-{i}"), v);
    }
    let control = random_value(&mut r, "keelcontrol");
    c.create(
        0,
        &format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: enc-control\n  namespace: default\ndata:\n  v: {control}\n"),
    );
    c.churn("a", 60);
    let snaps = c.wait_snapshots(&[]);
    for (i, v) in values.iter().enumerate() {
        assert_eq!(&read_secret(&c, (i + 1) % 3, &format!("enc-{i}")), v);
    }
    c.stop();
    assert_scan_sees(&c, &control);
    let hits = c.scan(&needles(&values));
    assert!(hits.is_empty(), "plaintext of secrets on disk: {hits:?}");

    // Rotation: k2 first, k1 still readable; rewrite every Secret under k2.
    std::fs::write(&config, aes_config(&[("k2", k2), ("k1", k1)], true)).unwrap();
    c.start(&config);
    let out = Command::new(keel_bin())
        .args(["secrets", "rotate", "--kubeconfig"])
        .arg(c.kubeconfig(1))
        .output()
        .unwrap();
    let progress = ok(&out);
    for i in 0..SECRETS {
        assert!(
            progress.contains(&format!("default/enc-{i}: re-encrypted")),
            "enc-{i} was not re-encrypted:\n{progress}"
        );
    }
    assert!(progress.contains("done: "), "{progress}");
    // Run again: nothing is left under the old key.
    let again = ok(&Command::new(keel_bin())
        .args(["secrets", "rotate", "--kubeconfig"])
        .arg(c.kubeconfig(2))
        .output()
        .unwrap());
    assert!(again.contains(" 0 re-encrypted"), "{again}");
    c.churn("b", 60);
    c.wait_snapshots(&snaps);
    c.stop();
    assert_scan_sees(&c, &control);
    let hits = c.scan(&needles(&values));
    assert!(
        hits.is_empty(),
        "plaintext of secrets on disk after rotation: {hits:?}"
    );

    // The old key (and identity) removed: every Secret still reads.
    std::fs::write(&config, aes_config(&[("k2", k2)], false)).unwrap();
    c.start(&config);
    for (i, v) in values.iter().enumerate() {
        assert_eq!(&read_secret(&c, i % 3, &format!("enc-{i}")), v);
    }
    c.stop();

    // A member without the current key: a clear error for each Secret, and
    // the server keeps serving everything else.
    std::fs::write(&config, aes_config(&[("k1", k1)], false)).unwrap();
    c.start(&config);
    let out = c.kubectl(0, &["get", "secret", "enc-0", "-n", "default"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/registry/core/secrets/default/enc-0") && err.contains("\"k2\""),
        "{err}"
    );
    ok(&c.kubectl(0, &["get", "configmap", "enc-control", "-n", "default"]));
    c.stop();
}

#[test]
fn a_missing_or_malformed_configuration_refuses_start_up_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad-encryption.yaml");
    std::fs::write(
        &bad,
        aes_config(&[("k1", random_secret())], true).replace("secret: ", "secret: AAAA"),
    )
    .unwrap();
    let missing = dir.path().join("missing-encryption.yaml");
    for (file, why) in [(&missing, "cannot read"), (&bad, "expected 32")] {
        let mut s = KeelServer::spawn_in(
            tempfile::tempdir().unwrap(),
            &[&"--encryption-provider-config", file],
        );
        let status = s.wait_exit(LONG);
        let err = s.log();
        assert!(!status.success(), "started with {}", file.display());
        let line = err
            .lines()
            .find(|l| l.starts_with("error:"))
            .unwrap_or_default();
        assert!(
            line.contains(&*file.to_string_lossy()) && line.contains(why),
            "{why:?} about {} not in:\n{err}",
            file.display()
        );
    }
}

/// The test plugin as a process, killed when dropped.
struct PluginProc {
    child: Child,
    log: PathBuf,
}

impl PluginProc {
    fn start(dir: &Path) -> (PluginProc, PathBuf) {
        let socket = dir.join("kms.sock");
        let log = dir.join("kms.log");
        let child = Command::new(env!("CARGO_BIN_EXE_keel-test-kms-plugin"))
            .arg("--socket")
            .arg(&socket)
            .arg("--key-file")
            .arg(dir.join("kms.key"))
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        wait_until("the KMS plugin's socket", LONG, || {
            socket.exists().then_some(())
        });
        (PluginProc { child, log }, socket)
    }

    /// Calls of `method` the plugin has served.
    fn calls(&self, method: &str) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with(&format!("kms: {method} ")))
            .count()
    }
}

impl Drop for PluginProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn kms_config(socket: &Path) -> String {
    format!(
        "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n      - kms:\n          apiVersion: v2\n          name: test-kms\n          endpoint: unix://{}\n          timeout: 5s\n      - identity: {{}}\n",
        socket.display()
    )
}

#[test]
fn a_kms_v2_plugin_wraps_one_data_key_per_server_start() {
    let mut r = rng(seed("kms_plugin"));
    let mut c = Cluster::new(1, &[]);
    let (plugin, socket) = PluginProc::start(c.root.path());
    let config = c.root.path().join("encryption.yaml");
    std::fs::write(&config, kms_config(&socket)).unwrap();
    c.start(&config);
    let values: Vec<String> = (0..SECRETS)
        .map(|_| random_value(&mut r, "keelsecret"))
        .collect();
    for (i, v) in values.iter().enumerate() {
        c.create_secret(0, &format!("enc-{i}"), v);
    }
    assert_eq!(
        plugin.calls("Encrypt"),
        1,
        "one DEK wrapped for every write of a start"
    );
    c.stop();
    let hits = c.scan(&needles(&values));
    assert!(hits.is_empty(), "plaintext of secrets on disk: {hits:?}");

    // After a restart the DEK is unwrapped once, however many values use it.
    c.start(&config);
    for (i, v) in values.iter().enumerate() {
        assert_eq!(&read_secret(&c, 0, &format!("enc-{i}")), v);
    }
    assert_eq!(plugin.calls("Decrypt"), 1);
    c.stop();

    // The plugin gone: the Secrets fail with an error naming it, the server serves on.
    drop(plugin);
    c.start(&config);
    let out = c.kubectl(0, &["get", "secret", "enc-0", "-n", "default"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("test-kms"), "{err}");
    ok(&c.kubectl(0, &["get", "configmaps", "-n", "default"]));
    c.stop();
}

fn kms_encryption(socket: &Path) -> Arc<Encryption> {
    let cfg = config::parse(&kms_config(socket)).unwrap();
    Arc::new(Encryption::new(&cfg, PathBuf::from("kms.yaml")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kms_provider_round_trips_through_the_test_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("kms.sock");
    let plugin = Plugin::new(random_secret(), "key-1");
    let server = serve(&socket, plugin.clone()).unwrap();
    let inner = Arc::new(MemoryStorage::new());
    let s = EncryptedStorage::new(inner.clone(), kms_encryption(&socket));
    let key = |i: usize| format!("/registry/core/secrets/default/s{i}");
    for i in 0..20 {
        s.create(
            &key(i),
            format!("{{\"v\":\"plain-{i}\"}}").into_bytes(),
            None,
            &Actor::new("tester", ["testers"]),
        )
        .await
        .unwrap();
    }
    assert_eq!(
        plugin.encrypts.load(Ordering::SeqCst),
        1,
        "the DEK is wrapped once"
    );
    let (raw, _) = inner.get(&key(3), Consistency::Linearizable).await.unwrap();
    assert!(raw.value.starts_with(b"k8s:enc:kms:v2:test-kms:"));
    assert!(!contains(&raw.value, b"plain-3"));
    // Another server (a fresh DEK cache) unwraps the DEK once for all
    // values, also when they are read at once.
    let other = Arc::new(EncryptedStorage::new(
        inner.clone(),
        kms_encryption(&socket),
    ));
    let reads: Vec<_> = (0..20)
        .map(|i| {
            let (other, key) = (other.clone(), key(i));
            tokio::spawn(async move { other.get(&key, Consistency::Linearizable).await })
        })
        .collect();
    for (i, read) in reads.into_iter().enumerate() {
        let (kv, _) = read.await.unwrap().unwrap();
        assert_eq!(kv.value, format!("{{\"v\":\"plain-{i}\"}}").into_bytes());
    }
    assert_eq!(plugin.decrypts.load(Ordering::SeqCst), 1);
    // A plugin with another key cannot unwrap it: an error for the object.
    server.abort();
    let _ = server.await;
    let wrong = serve(&socket, Plugin::new(random_secret(), "key-1")).unwrap();
    let third = EncryptedStorage::new(inner.clone(), kms_encryption(&socket));
    let e = third
        .get(&key(0), Consistency::Linearizable)
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("test-kms") && e.to_string().contains("Decrypt"),
        "{e}"
    );
    // No plugin at all: the same, never a hang past the timeout or a panic.
    wrong.abort();
    let _ = wrong.await;
    let _ = std::fs::remove_file(&socket);
    let fourth = EncryptedStorage::new(inner, kms_encryption(&socket));
    let started = Instant::now();
    let e = fourth
        .get(&key(0), Consistency::Linearizable)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("test-kms"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(30));
}
