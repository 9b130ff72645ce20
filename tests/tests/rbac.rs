//! The RBAC matrix against a `keel server` process with the real kubectl:
//! namespaced and cluster roles; bindings to users, groups and
//! ServiceAccounts; `resourceNames`; aggregation into `view`; escalation
//! refused; `kubectl auth can-i` (plain, `--list`, `--as`, `--as-group`);
//! Forbidden messages in Kubernetes' shape; impersonation refused without
//! the `impersonate` verb. Users other than the admin (group
//! `system:masters`, which bypasses authorization) are impersonated by the
//! admin, and one, carol, has a client certificate of her own from the CA.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use keel_tests::server::{KeelServer, output_with_stdin};
use keel_tests::wait_until;

/// Changes reach the RBAC index through the watch stream: every wait on
/// one polls with this deadline.
const CATCH_UP: Duration = Duration::from_secs(30);

/// The server under test; its admin is the data directory's kubeconfig.
struct Server {
    keel: KeelServer,
}

fn start() -> Server {
    Server {
        keel: KeelServer::start(&[]),
    }
}

struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

fn out(o: Output) -> Out {
    Out {
        ok: o.status.success(),
        stdout: String::from_utf8_lossy(&o.stdout).trim().to_string(),
        stderr: String::from_utf8_lossy(&o.stderr).trim().to_string(),
    }
}

impl Server {
    /// kubectl with `kubeconfig`, its discovery cache in the test's directory.
    fn run(&self, kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> Output {
        let mut c = self.keel.kubectl();
        c.arg("--kubeconfig")
            .arg(kubeconfig)
            .arg("--cache-dir")
            .arg(self.keel.dir().join("cache"))
            .args(["--request-timeout", "20s"])
            .args(args);
        match stdin {
            None => c
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .output()
                .expect("kubectl runs"),
            Some(text) => output_with_stdin(c, text.as_bytes()),
        }
    }

    /// As the admin.
    fn kubectl(&self, args: &[&str]) -> Output {
        self.run(&self.keel.kubeconfig(), args, None)
    }

    fn k(&self, args: &[&str]) -> Out {
        // kubectl ≥1.32 sends these creates as protobuf, which Keel does not
        // decode: kubectl makes the object and it is applied as JSON.
        if args.first() == Some(&"create")
            && matches!(
                args.get(1),
                Some(&("role" | "rolebinding" | "clusterrole" | "clusterrolebinding"))
            )
        {
            let made = out(self.kubectl(&[args, &["--dry-run=client", "-o", "json"]].concat()));
            assert!(made.ok, "kubectl {args:?}: {}", made.stderr);
            let o = self.apply(&self.keel.kubeconfig(), &made.stdout);
            assert!(o.ok, "kubectl {args:?}: {}", o.stderr);
            return o;
        }
        let o = out(self.kubectl(args));
        assert!(o.ok, "kubectl {args:?}: {}", o.stderr);
        o
    }

    fn apply(&self, kubeconfig: &Path, yaml: &str) -> Out {
        out(self.run(kubeconfig, &["apply", "-f", "-"], Some(yaml)))
    }

    /// `kubectl auth can-i …`: "yes" or "no" (exit code 0 or 1).
    fn can_i(&self, args: &[&str]) -> &'static str {
        let o = out(self.kubectl(&[&["auth", "can-i"][..], args].concat()));
        match (o.ok, o.stdout.as_str()) {
            (true, "yes") => "yes",
            (false, s) if s.starts_with("no") => "no",
            _ => panic!("can-i {args:?}: {} / {}", o.stdout, o.stderr),
        }
    }

    /// Poll until `can-i` answers `want` (the index caught up).
    fn wait_can_i(&self, args: &[&str], want: &str) {
        wait_until(&format!("can-i {args:?} to be {want}"), CATCH_UP, || {
            (self.can_i(args) == want).then_some(())
        });
    }

    /// A kubeconfig for `name` in `group`, issued by `keel certs`.
    fn user_kubeconfig(&self, name: &str, group: &str) -> PathBuf {
        self.keel.user_kubeconfig(name, &[group])
    }
}

#[test]
fn rbac_matrix_with_kubectl() {
    let s = start();
    // The default policy, with `view` aggregated and written back.
    wait_until("the default aggregated roles", CATCH_UP, || {
        let o = out(s.kubectl(&[
            "get",
            "clusterrole",
            "admin",
            "-o",
            "jsonpath={.rules[*].resources}",
        ]));
        (o.ok && o.stdout.contains("rolebindings") && o.stdout.contains("deployments"))
            .then_some(())
    });
    for name in [
        "cluster-admin",
        "edit",
        "view",
        "system:basic-user",
        "system:discovery",
        "system:public-info-viewer",
    ] {
        let labels = s.k(&[
            "get",
            "clusterrole",
            name,
            "-o",
            "jsonpath={.metadata.labels}",
        ]);
        assert!(
            labels.stdout.contains("rbac-defaults"),
            "{name}: {}",
            labels.stdout
        );
    }
    let crb = s.k(&[
        "get",
        "clusterrolebinding",
        "cluster-admin",
        "-o",
        "jsonpath={.subjects[0].name}",
    ]);
    assert_eq!(crb.stdout, "system:masters");

    // A namespaced role bound to a user.
    s.k(&[
        "create",
        "role",
        "pod-reader",
        "--verb=get,list",
        "--resource=pods",
        "-n",
        "default",
    ]);
    s.k(&[
        "create",
        "rolebinding",
        "alice-pods",
        "--role=pod-reader",
        "--user=alice",
        "-n",
        "default",
    ]);
    s.wait_can_i(&["list", "pods", "--as", "alice", "-n", "default"], "yes");
    assert_eq!(
        s.can_i(&["get", "pods", "--as", "alice", "-n", "default"]),
        "yes"
    );
    assert_eq!(
        s.can_i(&["list", "pods", "--as", "alice", "-n", "kube-system"]),
        "no"
    );
    assert_eq!(
        s.can_i(&["delete", "pods", "--as", "alice", "-n", "default"]),
        "no"
    );
    assert_eq!(
        s.can_i(&["list", "secrets", "--as", "alice", "-n", "default"]),
        "no"
    );
    assert!(s.k(&["get", "pods", "--as", "alice", "-n", "default"]).ok);
    let denied = out(s.kubectl(&["get", "secrets", "--as", "alice", "-n", "default"]));
    assert!(!denied.ok);
    assert!(
        denied.stderr.contains(r#"Error from server (Forbidden): secrets is forbidden: User "alice" cannot list resource "secrets" in API group "" in the namespace "default""#),
        "{}",
        denied.stderr
    );
    let denied = out(s.kubectl(&["get", "--raw", "/metrics", "--as", "alice"]));
    assert!(
        denied
            .stderr
            .contains(r#"forbidden: User "alice" cannot get path "/metrics""#),
        "{}",
        denied.stderr
    );
    // `can-i --list` lists what the RBAC rules give, the defaults included.
    let list = s.k(&["auth", "can-i", "--list", "--as", "alice", "-n", "default"]);
    let pods = list
        .stdout
        .lines()
        .find(|l| l.starts_with("pods "))
        .unwrap_or_default();
    assert!(pods.contains("[get list]"), "{}", list.stdout);
    assert!(
        list.stdout
            .contains("selfsubjectaccessreviews.authorization.k8s.io"),
        "{}",
        list.stdout
    );
    assert!(!list.stdout.contains("secrets"), "{}", list.stdout);

    // A cluster role bound to a group.
    s.k(&[
        "create",
        "clusterrole",
        "node-viewer",
        "--verb=get,list",
        "--resource=nodes",
    ]);
    s.k(&[
        "create",
        "clusterrolebinding",
        "ops-nodes",
        "--clusterrole=node-viewer",
        "--group=ops",
    ]);
    s.wait_can_i(
        &["list", "nodes", "--as", "bob", "--as-group", "ops"],
        "yes",
    );
    assert_eq!(s.can_i(&["list", "nodes", "--as", "bob"]), "no");
    assert_eq!(
        s.can_i(&["delete", "nodes", "--as", "bob", "--as-group", "ops"]),
        "no"
    );
    let denied = out(s.kubectl(&["get", "nodes", "--as", "bob"]));
    assert!(
        denied.stderr.contains(r#"nodes is forbidden: User "bob" cannot list resource "nodes" in API group "" at the cluster scope"#),
        "{}",
        denied.stderr
    );

    // The default `edit` bound to a ServiceAccount in one namespace.
    s.k(&[
        "create",
        "rolebinding",
        "robot-edit",
        "--clusterrole=edit",
        "--serviceaccount=default:robot",
        "-n",
        "default",
    ]);
    let robot = "system:serviceaccount:default:robot";
    s.wait_can_i(
        &["create", "deployments.apps", "--as", robot, "-n", "default"],
        "yes",
    );
    assert_eq!(
        s.can_i(&[
            "update",
            "deployments.apps/scale",
            "--as",
            robot,
            "-n",
            "default"
        ]),
        "yes"
    );
    assert_eq!(
        s.can_i(&[
            "create",
            "deployments.apps",
            "--as",
            robot,
            "-n",
            "kube-system"
        ]),
        "no"
    );
    assert_eq!(
        s.can_i(&["create", "roles", "--as", robot, "-n", "default"]),
        "no"
    );
    assert_eq!(
        s.can_i(&[
            "create",
            "deployments.apps",
            "--as",
            "system:serviceaccount:other:robot",
            "-n",
            "default"
        ]),
        "no"
    );

    // resourceNames.
    s.k(&[
        "create",
        "role",
        "one-cm",
        "--verb=get",
        "--resource=configmaps",
        "--resource-name=allowed",
        "-n",
        "default",
    ]);
    s.k(&[
        "create",
        "rolebinding",
        "dana-cm",
        "--role=one-cm",
        "--user=dana",
        "-n",
        "default",
    ]);
    s.wait_can_i(
        &["get", "configmaps/allowed", "--as", "dana", "-n", "default"],
        "yes",
    );
    assert_eq!(
        s.can_i(&["get", "configmaps/other", "--as", "dana", "-n", "default"]),
        "no"
    );
    assert_eq!(
        s.can_i(&["list", "configmaps", "--as", "dana", "-n", "default"]),
        "no"
    );

    // Aggregation: a new role labelled aggregate-to-view makes `view` grant it.
    s.k(&[
        "create",
        "rolebinding",
        "erin-view",
        "--clusterrole=view",
        "--user=erin",
        "-n",
        "default",
    ]);
    s.wait_can_i(&["list", "pods", "--as", "erin", "-n", "default"], "yes");
    assert_eq!(
        s.can_i(&["get", "secrets", "--as", "erin", "-n", "default"]),
        "no"
    );
    let peek = "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: secret-peeker\n  labels:\n    rbac.authorization.k8s.io/aggregate-to-view: \"true\"\nrules:\n- apiGroups: [\"\"]\n  resources: [\"secrets\"]\n  verbs: [\"get\"]\n";
    let admin_cfg = s.keel.kubeconfig();
    assert!(s.apply(&admin_cfg, peek).ok);
    s.wait_can_i(&["get", "secrets", "--as", "erin", "-n", "default"], "yes");
    wait_until("view's stored rules to include secrets", CATCH_UP, || {
        let o = s.k(&[
            "get",
            "clusterrole",
            "view",
            "-o",
            "jsonpath={.rules[*].resources}",
        ]);
        o.stdout.contains("secrets").then_some(())
    });
    // Through edit into admin as well (nested aggregation).
    wait_until("admin's stored rules to include it", CATCH_UP, || {
        let o = s.k(&["get", "clusterrole", "admin", "-o", "json"]);
        o.stdout.contains("\"secrets\"").then_some(())
    });

    // Escalation, by a user of her own (not a master): carol may manage
    // roles and bindings in default and read pods.
    let carol = s.user_kubeconfig("carol", "devs");
    s.k(&[
        "create",
        "role",
        "role-maker",
        "--verb=create,get,list",
        "--resource=roles,rolebindings,pods",
        "-n",
        "default",
    ]);
    s.k(&[
        "create",
        "rolebinding",
        "carol-maker",
        "--role=role-maker",
        "--user=carol",
        "-n",
        "default",
    ]);
    s.wait_can_i(
        &["create", "roles", "--as", "carol", "-n", "default"],
        "yes",
    );
    let role = |name: &str, resource: &str| {
        format!(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n  name: {name}\n  namespace: default\nrules:\n- apiGroups: [\"\"]\n  resources: [\"{resource}\"]\n  verbs: [\"get\"]\n"
        )
    };
    let ok = s.apply(&carol, &role("carol-pods", "pods"));
    assert!(ok.ok, "{}", ok.stderr);
    let refused = s.apply(&carol, &role("carol-secrets", "secrets"));
    assert!(!refused.ok);
    assert!(
        refused.stderr.contains(r#"roles.rbac.authorization.k8s.io "carol-secrets" is forbidden: user "carol" (groups=["devs" "system:authenticated"]) is attempting to grant RBAC permissions not currently held"#)
            && refused.stderr.contains(r#"{APIGroups:[""], Resources:["secrets"], Verbs:["get"]}"#),
        "{}",
        refused.stderr
    );
    let bind = |name: &str, kind: &str, role: &str| {
        format!(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata:\n  name: {name}\n  namespace: default\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: {kind}\n  name: {role}\nsubjects:\n- kind: User\n  name: frank\n  apiGroup: rbac.authorization.k8s.io\n"
        )
    };
    // Binding what she holds is fine; binding `admin` is not, until she
    // may `bind` exactly that role.
    let ok = s.apply(&carol, &bind("frank-pods", "Role", "pod-reader"));
    assert!(ok.ok, "{}", ok.stderr);
    let refused = s.apply(&carol, &bind("frank-admin", "ClusterRole", "admin"));
    assert!(
        !refused.ok
            && refused
                .stderr
                .contains("is attempting to grant RBAC permissions not currently held"),
        "{}",
        refused.stderr
    );
    s.k(&[
        "create",
        "role",
        "admin-binder",
        "--verb=bind",
        "--resource=clusterroles.rbac.authorization.k8s.io",
        "--resource-name=admin",
        "-n",
        "default",
    ]);
    s.k(&[
        "create",
        "rolebinding",
        "carol-binder",
        "--role=admin-binder",
        "--user=carol",
        "-n",
        "default",
    ]);
    s.wait_can_i(
        &[
            "bind",
            "clusterroles.rbac.authorization.k8s.io/admin",
            "--as",
            "carol",
            "-n",
            "default",
        ],
        "yes",
    );
    let ok = s.apply(&carol, &bind("frank-admin", "ClusterRole", "admin"));
    assert!(ok.ok, "{}", ok.stderr);
    let refused = s.apply(
        &carol,
        &bind("frank-cluster-admin", "ClusterRole", "cluster-admin"),
    );
    assert!(!refused.ok, "binding cluster-admin: {}", refused.stdout);
    s.wait_can_i(
        &[
            "create",
            "deployments.apps",
            "--as",
            "frank",
            "-n",
            "default",
        ],
        "yes",
    );

    // Impersonation needs the verb, checked against the real user.
    let as_alice = out(s.run(
        &carol,
        &["get", "pods", "--as", "alice", "-n", "default"],
        None,
    ));
    assert!(
        !as_alice.ok
            && as_alice.stderr.contains(r#"users "alice" is forbidden: User "carol" cannot impersonate resource "users" in API group "" at the cluster scope"#),
        "{}",
        as_alice.stderr
    );
    let imp = "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: impersonate-alice\nrules:\n- apiGroups: [\"\"]\n  resources: [\"users\"]\n  resourceNames: [\"alice\"]\n  verbs: [\"impersonate\"]\n";
    assert!(s.apply(&admin_cfg, imp).ok);
    s.k(&[
        "create",
        "clusterrolebinding",
        "carol-impersonates",
        "--clusterrole=impersonate-alice",
        "--user=carol",
    ]);
    wait_until("carol to act as alice", CATCH_UP, || {
        out(s.run(
            &carol,
            &["get", "pods", "--as", "alice", "-n", "default"],
            None,
        ))
        .ok
        .then_some(())
    });
    // As alice, carol has alice's rights, not her own.
    let who = out(s.run(
        &carol,
        &[
            "auth", "can-i", "create", "roles", "--as", "alice", "-n", "default",
        ],
        None,
    ));
    assert_eq!(who.stdout, "no", "{}", who.stderr);
    let as_bob = out(s.run(
        &carol,
        &["get", "pods", "--as", "bob", "-n", "default"],
        None,
    ));
    assert!(
        !as_bob.ok && as_bob.stderr.contains(r#"users "bob" is forbidden"#),
        "{}",
        as_bob.stderr
    );
    let as_group = out(s.run(
        &carol,
        &[
            "get",
            "pods",
            "--as",
            "alice",
            "--as-group",
            "system:masters",
        ],
        None,
    ));
    assert!(
        !as_group.ok
            && as_group
                .stderr
                .contains(r#"groups "system:masters" is forbidden"#),
        "{}",
        as_group.stderr
    );
    // carol herself still cannot read secrets.
    let own = out(s.run(&carol, &["get", "secrets", "-n", "default"], None));
    assert!(
        !own.ok
            && own
                .stderr
                .contains(r#"User "carol" cannot list resource "secrets""#),
        "{}",
        own.stderr
    );
}
