//! Backups and restores with the real binary and kubectl: `keel snapshot
//! save` from a running server, `keel snapshot status`, `keel restore` into
//! a new data directory (one member, and three members restored one by one
//! from the same file), a damaged file refused naming the file and its
//! revision. A restored cluster serves every object with its
//! resourceVersion and uid, reads its Secrets with the old encryption
//! configuration, answers a watch from an old resourceVersion with 410, and
//! takes writes above the bumped revision.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use keel_tests::server::{KeelServer, output_with_stdin, succeeded as ok};
use keel_tests::{free_port, keel_bin, wait_until};

const BUMP: u64 = 1_000_000;

fn keel(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Command {
    let mut c = Command::new(keel_bin());
    c.args(args);
    c
}

fn save(s: &KeelServer, file: &Path) -> String {
    ok(
        keel(&[
            &"snapshot",
            &"save",
            &file,
            &"--addr",
            &s.peer_addr(),
            &"--data-dir",
            &s.data(),
        ])
        .output()
        .unwrap(),
        "keel snapshot save",
    )
}

fn status_json(file: &Path) -> serde_json::Value {
    let out = ok(
        keel(&[&"snapshot", &"status", &file, &"--json"])
            .output()
            .unwrap(),
        "keel snapshot status",
    );
    serde_json::from_str(&out).unwrap()
}

/// name → (resourceVersion, uid, data) of the kind's objects in `team`.
fn objects(s: &KeelServer, kind: &str) -> BTreeMap<String, (String, String, serde_json::Value)> {
    let out = ok(
        s.admin(&["get", kind, "-n", "team", "-o", "json"])
            .output()
            .unwrap(),
        "kubectl get",
    );
    by_name(&serde_json::from_str(&out).unwrap())
}

/// name → (resourceVersion, uid, data) of a list's items.
fn by_name(list: &serde_json::Value) -> BTreeMap<String, (String, String, serde_json::Value)> {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["metadata"]["name"].as_str().unwrap().to_string(),
                (
                    o["metadata"]["resourceVersion"]
                        .as_str()
                        .unwrap()
                        .to_string(),
                    o["metadata"]["uid"].as_str().unwrap().to_string(),
                    o["data"].clone(),
                ),
            )
        })
        .collect()
}

fn list_rv(s: &KeelServer) -> u64 {
    let out = ok(
        s.admin(&["get", "--raw", "/api/v1/namespaces/team/configmaps"])
            .output()
            .unwrap(),
        "kubectl get --raw",
    );
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

fn apply(s: &KeelServer, yaml: &str) {
    ok(
        output_with_stdin(s.admin(&["apply", "-f", "-"]), yaml.as_bytes()),
        "kubectl apply",
    );
}

fn configmap(name: &str, value: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: team\ndata:\n  v: \"{value}\"\n"
    )
}

/// A server with namespace `team`, three ConfigMaps (one updated) and a Secret.
fn populated() -> KeelServer {
    let s = KeelServer::start(&[]);
    ok(
        s.admin(&["create", "namespace", "team"]).output().unwrap(),
        "create ns",
    );
    for i in 0..3 {
        apply(&s, &configmap(&format!("cm{i}"), "first"));
    }
    apply(&s, &configmap("cm1", "second"));
    ok(
        s.admin(&[
            "create",
            "secret",
            "generic",
            "db",
            "-n",
            "team",
            "--from-literal=password=hunter2",
        ])
        .output()
        .unwrap(),
        "create secret",
    );
    s
}

#[test]
fn a_restored_server_has_every_object_and_resource_version_and_takes_writes() {
    let old = populated();
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("backup.keel");
    let maps = objects(&old, "configmaps");
    let secrets = objects(&old, "secrets");
    let saved_at = list_rv(&old);
    let said = save(&old, &file);
    assert!(
        said.starts_with(&format!("saved {}", file.display())),
        "{said}"
    );
    assert!(!work.path().join("backup.keel.part").exists());

    let status = status_json(&file);
    let revision = status["header"]["revision"].as_u64().unwrap();
    assert!(
        revision >= saved_at,
        "backup at {revision}, list was at {saved_at}"
    );
    let count = |prefix: &str| status["by_prefix"][prefix]["objects"].as_u64().unwrap_or(0);
    let all_maps = ok(
        old.admin(&["get", "configmaps", "-A", "-o", "name"])
            .output()
            .unwrap(),
        "kubectl get configmaps -A",
    );
    assert_eq!(
        count("/registry/core/configmaps"),
        all_maps.lines().count() as u64
    );
    assert!(count("/registry/core/namespaces") >= 2, "{status}");
    assert!(count("/registry/core/secrets") >= 1, "{status}");
    let text = ok(
        keel(&[&"snapshot", &"status", &file]).output().unwrap(),
        "status",
    );
    assert!(
        text.contains(&format!("revision:   {revision}")) && text.contains("core/secrets"),
        "{text}"
    );

    // A write after the backup: the restored cluster must not have it, and
    // its resourceVersion must be compacted there.
    apply(&old, &configmap("after", "late"));
    let after_rv = objects(&old, "configmaps")["after"].0.clone();

    let dir = tempfile::tempdir().unwrap();
    let restored = ok(
        keel(&[
            &"restore",
            &file,
            &"--data-dir",
            &dir.path().join("data"),
            &"--bump-revision",
            &BUMP.to_string(),
            &"--encryption-config",
            &old.data().join("pki").join("encryption-config.yaml"),
        ])
        .output()
        .unwrap(),
        "keel restore",
    );
    assert!(
        restored.contains(&format!("continues at revision {}", revision + BUMP)),
        "{restored}"
    );
    drop(old);
    let new = KeelServer::start_in(dir, &[]);

    assert!(!maps.contains_key("after"));
    assert_eq!(
        objects(&new, "configmaps"),
        maps,
        "configmaps differ after the restore"
    );
    assert_eq!(
        objects(&new, "secrets"),
        secrets,
        "secrets differ after the restore"
    );
    let password = ok(
        new.admin(&[
            "get",
            "secret",
            "db",
            "-n",
            "team",
            "-o",
            "jsonpath={.data.password}",
        ])
        .output()
        .unwrap(),
        "get secret",
    );
    assert_eq!(
        password, "aHVudGVyMg==",
        "the restored secret does not decrypt"
    );
    assert!(list_rv(&new) >= revision + BUMP);

    // A watch from a resourceVersion the old cluster handed out after the
    // backup is told to list again.
    let watch = new
        .curl(&[
            "--max-time",
            "20",
            &format!(
                "BASE/api/v1/namespaces/team/configmaps?watch=true&resourceVersion={after_rv}"
            ),
        ])
        .output()
        .unwrap();
    let body = String::from_utf8_lossy(&watch.stdout);
    assert!(
        body.contains("\"code\":410") && body.contains("Expired"),
        "{body}"
    );

    apply(&new, &configmap("new", "x"));
    let rv: u64 = objects(&new, "configmaps")["new"].0.parse().unwrap();
    assert!(
        rv > revision + BUMP,
        "new write at {rv}, restored at {revision} + {BUMP}"
    );
    apply(&new, &configmap("cm0", "changed"));
    let updated = &objects(&new, "configmaps")["cm0"];
    assert_eq!(updated.2["v"], "changed");
    assert!(updated.0.parse::<u64>().unwrap() > rv);
}

#[test]
fn a_damaged_backup_is_refused_naming_the_file_and_its_revision() {
    let old = populated();
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("backup.keel");
    save(&old, &file);
    let revision = status_json(&file)["header"]["revision"].as_u64().unwrap();
    let mut bytes = std::fs::read(&file).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x10;
    let damaged = work.path().join("damaged.keel");
    std::fs::write(&damaged, &bytes).unwrap();
    let truncated = work.path().join("truncated.keel");
    std::fs::write(&truncated, &bytes[..bytes.len() - 100]).unwrap();
    for f in [&damaged, &truncated] {
        let out = keel(&[&"snapshot", &"status", f]).output().unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&f.display().to_string()) && err.contains(&format!("revision {revision}")),
            "{err}"
        );
        let target = work.path().join("restored");
        let out = keel(&[&"restore", f, &"--data-dir", &target])
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&f.display().to_string()), "{err}");
        assert!(
            !target.exists(),
            "a failed restore left {}",
            target.display()
        );
    }
}

struct Member {
    id: u64,
    dir: PathBuf,
    peer: u16,
    api: u16,
    child: Option<Child>,
}

impl Drop for Member {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn curl(pki: &Path, m: &Member, args: &[&str]) -> (u16, serde_json::Value) {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "20", "-w", "\n%{http_code}", "--cacert"])
        .arg(pki.join("ca.crt"))
        .arg("--cert")
        .arg(pki.join("admin.crt"))
        .arg("--key")
        .arg(pki.join("admin.key"))
        .args(
            args.iter()
                .map(|a| a.replace("BASE", &format!("https://127.0.0.1:{}", m.api))),
        )
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (
        code.trim().parse().unwrap_or(0),
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}

#[test]
fn three_members_restored_one_by_one_from_one_backup_form_a_cluster() {
    let old = populated();
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("backup.keel");
    save(&old, &file);
    let maps = objects(&old, "configmaps");
    let revision = status_json(&file)["header"]["revision"].as_u64().unwrap();
    let cluster_of = |status: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix("cluster:"))
            .map(|id| id.trim().to_string())
            .unwrap_or_else(|| panic!("no cluster line in {status}"))
    };
    let old_status = ok(
        keel(&[
            &"member",
            &"--addr",
            &old.peer_addr(),
            &"--data-dir",
            &old.data(),
            &"status",
        ])
        .output()
        .unwrap(),
        "keel member status (old cluster)",
    );
    let old_id = cluster_of(&old_status);
    assert_eq!(old_id.len(), 32, "{old_status}");
    drop(old);

    let mut members: Vec<Member> = (1..=3)
        .map(|id| Member {
            id,
            dir: work.path().join(format!("m{id}")),
            peer: free_port(),
            api: free_port(),
            child: None,
        })
        .collect();
    let list = members
        .iter()
        .map(|m| format!("{}=127.0.0.1:{}", m.id, m.peer))
        .collect::<Vec<_>>()
        .join(",");
    // Restored one by one, the members get one new cluster id.
    let mut ids = BTreeSet::new();
    for m in &members {
        let said = ok(
            keel(&[
                &"restore",
                &file,
                &"--data-dir",
                &m.dir,
                &"--members",
                &list,
            ])
            .output()
            .unwrap(),
            "keel restore",
        );
        let id = said
            .lines()
            .find_map(|l| l.strip_prefix("cluster id: "))
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no cluster id in {said}"));
        ids.insert(id.to_string());
    }
    assert_eq!(ids.len(), 1, "{ids:?}");
    let new_id = ids.into_iter().next().unwrap();
    assert_ne!(new_id, old_id);
    // One new CA for all, shared as `keel up` shares it.
    let ca = work.path().join("ca");
    for m in members.iter_mut() {
        let log = std::fs::File::create(m.dir.with_extension("log")).unwrap();
        m.child = Some(
            Command::new(keel_bin())
                .args(["server", "--id", &m.id.to_string()])
                .arg("--data-dir")
                .arg(&m.dir)
                .arg("--ca-dir")
                .arg(&ca)
                .args(["--peer-addr", &format!("127.0.0.1:{}", m.peer)])
                .args(["--http-addr", &format!("127.0.0.1:{}", free_port())])
                .args(["--api-addr", &format!("127.0.0.1:{}", m.api)])
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
    }
    let pki = members[0].dir.join("pki");
    for m in &members {
        let got = wait_until(
            &format!("member {} to serve the restored configmaps", m.id),
            Duration::from_secs(90),
            || {
                let (code, list) = curl(&pki, m, &["BASE/api/v1/namespaces/team/configmaps"]);
                (code == 200).then_some(list)
            },
        );
        let rvs: BTreeMap<String, String> = by_name(&got)
            .into_iter()
            .map(|(name, (rv, _, _))| (name, rv))
            .collect();
        let want: BTreeMap<String, String> =
            maps.iter().map(|(k, v)| (k.clone(), v.0.clone())).collect();
        assert_eq!(rvs, want, "member {}", m.id);
    }
    let new_status = ok(
        keel(&[
            &"member",
            &"--addr",
            &format!("127.0.0.1:{}", members[2].peer),
            &"--data-dir",
            &members[0].dir,
            &"status",
        ])
        .output()
        .unwrap(),
        "keel member status (restored cluster)",
    );
    assert_eq!(cluster_of(&new_status), new_id, "{new_status}");
    // A write through member 2 commits and reaches member 3.
    let json = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"three","namespace":"team"},"data":{"v":"x"}}"#;
    let created = wait_until("a write through member 2", Duration::from_secs(60), || {
        let (code, obj) = curl(
            &pki,
            &members[1],
            &[
                "-X",
                "POST",
                "-H",
                "Content-Type: application/json",
                "-d",
                json,
                "BASE/api/v1/namespaces/team/configmaps",
            ],
        );
        (code == 201).then_some(obj)
    });
    let rv: u64 = created["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        rv > revision + 1_000_000_000,
        "write at {rv}, backup at {revision}"
    );
    wait_until("member 3 to see the write", Duration::from_secs(30), || {
        let (code, obj) = curl(
            &pki,
            &members[2],
            &["BASE/api/v1/namespaces/team/configmaps/three"],
        );
        (code == 200
            && obj["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"])
            .then_some(())
    });
}
