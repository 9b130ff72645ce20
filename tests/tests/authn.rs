//! Authentication against a real `keel server` with the real kubectl:
//! requests without credentials get 401 (health and version stay open), a
//! bad bearer token is a 401 and never anonymous, `kubectl create token`
//! issues ServiceAccount tokens that `kubectl auth whoami` shows as
//! `system:serviceaccount:…`, and such a token stops working when its
//! ServiceAccount or bound pod is deleted, when it is for another audience,
//! or when its signature is altered. The static token file's user is
//! recognized, and a malformed token file refuses start-up naming its line.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use keel_tests::server::{KeelServer, kubectl, output_with_stdin};
use keel_tests::{free_port, keel_bin, wait_until};
use serde_json::Value;

const STATIC_TOKEN: &str = "static-secret-31337";

fn start() -> KeelServer {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.csv");
    std::fs::write(
        &tokens,
        format!("{STATIC_TOKEN},alice,alice-uid,\"devs,ops\"\n"),
    )
    .unwrap();
    let s = KeelServer::start_in(dir, &[&"--token-auth-file", &tokens]);
    // Ready once the default ServiceAccount of `default` exists.
    wait_until(
        "the default service account",
        Duration::from_secs(60),
        || {
            admin(&s, &["get", "serviceaccount", "default", "-o", "name"])
                .status
                .success()
                .then_some(())
        },
    );
    s
}

/// kubectl as the administrator (client certificate, `system:masters`).
fn admin(s: &KeelServer, args: &[&str]) -> Output {
    s.admin(args).output().unwrap()
}

fn admin_ok(s: &KeelServer, args: &[&str], stdin: Option<&str>) -> String {
    let mut c = s.admin(args);
    let out = match stdin {
        None => c.output().unwrap(),
        Some(input) => output_with_stdin(c, input.as_bytes()),
    };
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// kubectl with only `token` as credentials: no client certificate (a
/// kubeconfig that names none), so the token alone decides.
fn with_token(s: &KeelServer, token: &str, args: &[&str]) -> Output {
    let empty = s.dir().join("empty-kubeconfig");
    std::fs::write(&empty, "apiVersion: v1\nkind: Config\n").unwrap();
    s.kubectl()
        .arg("--kubeconfig")
        .arg(&empty)
        .args(["--server", &s.url(), "--token", token])
        .arg("--certificate-authority")
        .arg(s.ca_cert())
        .args(args)
        .output()
        .unwrap()
}

/// `kubectl auth whoami` with `token`: the userInfo, or the error text.
fn whoami(s: &KeelServer, token: &str) -> Result<Value, String> {
    let out = with_token(s, token, &["auth", "whoami", "-o", "json"]);
    if out.status.success() {
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        Ok(v["status"]["userInfo"].clone())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn refused(r: Result<Value, String>) -> bool {
    matches!(r, Err(e) if e.contains("Unauthorized"))
}

/// The HTTP status of a GET of `path` with curl's extra `args` (no client
/// certificate).
fn curl_code(s: &KeelServer, path: &str, args: &[&str]) -> (u16, Value) {
    let out = Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}", "--cacert"])
        .arg(s.ca_cert())
        .args(args)
        .arg(format!("{}{path}", s.url()))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (
        code.trim().parse().unwrap_or(0),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

fn groups(user: &Value) -> Vec<&str> {
    user["groups"]
        .as_array()
        .map(|g| g.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

#[test]
fn tokens_authenticate_and_stop_when_their_objects_go() {
    let s = start();

    // Without credentials: 401 with a Status; health and version stay open.
    let (code, body) = curl_code(&s, "/api/v1/namespaces", &[]);
    assert_eq!(code, 401, "{body}");
    assert_eq!(body["kind"], "Status");
    assert_eq!(body["reason"], "Unauthorized");
    for open in ["/healthz", "/livez", "/readyz", "/version"] {
        assert_eq!(curl_code(&s, open, &[]).0, 200, "{open}");
    }
    // A bearer token that is nobody's: 401, not anonymous.
    let (code, body) = curl_code(
        &s,
        "/api/v1/namespaces",
        &["-H", "Authorization: Bearer not-a-token"],
    );
    assert_eq!((code, body["reason"].as_str()), (401, Some("Unauthorized")));

    // The static token file's user.
    let alice = whoami(&s, STATIC_TOKEN).unwrap();
    assert_eq!(alice["username"], "alice");
    assert_eq!(alice["uid"], "alice-uid");
    assert_eq!(groups(&alice), ["devs", "ops", "system:authenticated"]);

    // A token for the default ServiceAccount.
    let token = admin_ok(&s, &["create", "token", "default"], None);
    let token = token.trim();
    let user = whoami(&s, token).unwrap();
    assert_eq!(user["username"], "system:serviceaccount:default:default");
    assert_eq!(
        groups(&user),
        [
            "system:serviceaccounts",
            "system:serviceaccounts:default",
            "system:authenticated"
        ]
    );
    // Its signature altered (the last signature byte's bits): 401.
    let mut forged = token.to_string();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    assert!(refused(whoami(&s, &forged)));
    // A token for another audience: 401.
    let other = admin_ok(
        &s,
        &["create", "token", "default", "--audience", "vault"],
        None,
    );
    assert!(refused(whoami(&s, other.trim())));
    // Too short a duration is refused by the TokenRequest.
    let short = admin(&s, &["create", "token", "default", "--duration", "5m"]);
    assert!(!short.status.success());

    // A ServiceAccount of its own, deleted: its token stops working.
    admin_ok(
        &s,
        &["create", "-f", "-"],
        Some("apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: robot\n"),
    );
    let robot = admin_ok(&s, &["create", "token", "robot", "--duration", "20m"], None);
    let robot = robot.trim().to_string();
    assert_eq!(
        whoami(&s, &robot).unwrap()["username"],
        "system:serviceaccount:default:robot"
    );
    admin_ok(&s, &["delete", "serviceaccount", "robot"], None);
    wait_until(
        "the deleted account's token to be refused",
        Duration::from_secs(20),
        || refused(whoami(&s, &robot)).then_some(()),
    );
    // Recreated under the same name, the old token stays refused (another uid).
    admin_ok(
        &s,
        &["create", "-f", "-"],
        Some("apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: robot\n"),
    );
    assert!(refused(whoami(&s, &robot)));

    // A token bound to a pod names the pod, and ends with it.
    admin_ok(
        &s,
        &["create", "-f", "-"],
        Some(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers:\n  - name: c\n    image: busybox\n",
        ),
    );
    let bound = admin_ok(
        &s,
        &[
            "create",
            "token",
            "default",
            "--bound-object-kind",
            "Pod",
            "--bound-object-name",
            "web",
        ],
        None,
    );
    let bound = bound.trim().to_string();
    let user = whoami(&s, &bound).unwrap();
    assert_eq!(
        user["extra"]["authentication.kubernetes.io/pod-name"],
        serde_json::json!(["web"])
    );
    admin_ok(&s, &["delete", "pod", "web", "--wait=false"], None);
    wait_until(
        "the deleted pod's token to be refused",
        Duration::from_secs(20),
        || refused(whoami(&s, &bound)).then_some(()),
    );

    // Every namespace gets its default ServiceAccount.
    admin_ok(
        &s,
        &["create", "-f", "-"],
        Some("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team\n"),
    );
    wait_until(
        "team's default service account",
        Duration::from_secs(20),
        || {
            admin(&s, &["get", "sa", "default", "-n", "team", "-o", "name"])
                .status
                .success()
                .then_some(())
        },
    );
    for ns in ["kube-system", "kube-public", "kube-node-lease"] {
        admin_ok(&s, &["get", "sa", "default", "-n", ns, "-o", "name"], None);
    }
}

#[test]
fn a_malformed_token_file_refuses_start_up_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.csv");
    std::fs::write(&tokens, "good,alice,1\nbroken-line\n").unwrap();
    let mut s = KeelServer::spawn_in(dir, &[&"--token-auth-file", &tokens]);
    let status = s.wait_exit(Duration::from_secs(60));
    let err = s.log();
    assert!(!status.success());
    assert!(
        err.contains(&tokens.display().to_string()) && err.contains("line 2"),
        "{err}"
    );
}

/// A member of a three-member cluster sharing one CA (`--ca-dir`).
struct Member {
    child: Child,
    data: PathBuf,
    url: String,
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn every_member_accepts_the_tokens_of_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca");
    let ports: Vec<(u16, u16, u16)> = (0..3)
        .map(|_| (free_port(), free_port(), free_port()))
        .collect();
    let initial = ports
        .iter()
        .enumerate()
        .map(|(i, (peer, _, _))| format!("{}=127.0.0.1:{peer}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let members: Vec<Member> = ports
        .iter()
        .enumerate()
        .map(|(i, (peer, http, api))| {
            let data = dir.path().join(format!("d{}", i + 1));
            let log = std::fs::File::create(dir.path().join(format!("m{}.log", i + 1))).unwrap();
            let child = Command::new(keel_bin())
                .args(["server", "--id", &(i + 1).to_string(), "--data-dir"])
                .arg(&data)
                .arg("--ca-dir")
                .arg(&ca)
                .args(["--peer-addr", &format!("127.0.0.1:{peer}")])
                .args(["--http-addr", &format!("127.0.0.1:{http}")])
                .args(["--api-addr", &format!("127.0.0.1:{api}")])
                .args(["--initial-members", &initial])
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap();
            Member {
                child,
                data,
                url: format!("https://127.0.0.1:{api}"),
            }
        })
        .collect();
    let home = dir.path().join("home");
    let kubectl_on = |m: &Member, args: &[&str]| {
        let mut c = kubectl();
        c.env("HOME", &home)
            .arg("--kubeconfig")
            .arg(m.data.join("kubeconfig"))
            .args(args);
        c.output().unwrap()
    };
    // Issued by member 1 once its default ServiceAccount exists.
    let token = wait_until("a token from member 1", Duration::from_secs(90), || {
        let out = kubectl_on(&members[0], &["create", "token", "default"]);
        out.status
            .success()
            .then(|| String::from_utf8(out.stdout).unwrap().trim().to_string())
    });
    let empty = dir.path().join("empty-kubeconfig");
    std::fs::write(&empty, "apiVersion: v1\nkind: Config\n").unwrap();
    for m in &members[1..] {
        let user = wait_until(
            "the other member to accept it",
            Duration::from_secs(60),
            || {
                let out = kubectl()
                    .env("HOME", &home)
                    .arg("--kubeconfig")
                    .arg(&empty)
                    .args(["--server", &m.url, "--token", &token])
                    .arg("--certificate-authority")
                    .arg(ca.join("ca.crt"))
                    .args(["auth", "whoami", "-o", "json"])
                    .output()
                    .unwrap();
                out.status.success().then(|| {
                    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
                    v["status"]["userInfo"]["username"].clone()
                })
            },
        );
        assert_eq!(user, "system:serviceaccount:default:default", "{}", m.url);
    }
}

#[test]
fn anonymous_requests_are_served_only_when_enabled() {
    let s = KeelServer::start(&[&"--anonymous-auth"]);
    wait_until("the server to answer", Duration::from_secs(60), || {
        (s.ca_cert().exists() && curl_code(&s, "/readyz", &[]).0 == 200).then_some(())
    });
    // Past authentication as system:anonymous: authorization decides (a
    // 403 names the user), never a 401.
    let (code, body) = curl_code(&s, "/api/v1/namespaces/default/secrets", &[]);
    assert_ne!(code, 401, "{body}");
    if code == 403 {
        let msg = body["message"].as_str().unwrap_or_default();
        assert!(msg.contains("system:anonymous"), "{body}");
    }
    // A bad token is still refused, not served as anonymous.
    let (code, _) = curl_code(
        &s,
        "/api/v1/namespaces/default/secrets",
        &["-H", "Authorization: Bearer not-a-token"],
    );
    assert_eq!(code, 401);
}
