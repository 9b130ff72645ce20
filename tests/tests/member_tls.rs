//! Mutual TLS on the member port. A client with a certificate from another
//! CA, or with none, or speaking plaintext, gets nothing; a certificate of
//! the cluster CA gets only what its group allows (Raft for members, `Kv`
//! and `Admin` for `system:masters`); a member with another CA, added with
//! `keel member add`, never receives the log. Also `keel certs`: the user,
//! node and member certificates it issues name who they should, and the API
//! takes the user's kubeconfig as that user.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use keel_apiserver::pki::{ADMIN_GROUP, Ca, MEMBER_GROUP, NODE_GROUP, subject};
use keel_proto::member as pb;
use keel_store::ClientTls;
use keel_store::grpc::payload;
use keel_tests::peer_tls::{client, member_tls, serving_member, test_ca};
use keel_tests::{Reaped, free_port, init_tracing, keel_bin, wait_until};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

const LONG: Duration = Duration::from_secs(60);

/// What one identity gets from each service: `Ok(())` or the status code.
struct Answers {
    kv: Result<(), Code>,
    admin: Result<(), Code>,
    raft: Result<(), Code>,
}

/// Call Kv.Range, Admin.Status and Raft.Vote (with a payload whose checksum
/// is wrong: past authorization it fails with DataLoss, never a change) on
/// one channel.
async fn ask(ch: Channel) -> Answers {
    let code = |r: Result<(), tonic::Status>| r.map_err(|s| s.code());
    let kv = pb::kv_client::KvClient::new(ch.clone())
        .range(pb::RangeRequest::default())
        .await
        .map(drop);
    let admin = pb::admin_client::AdminClient::new(ch.clone())
        .status(pb::StatusRequest {})
        .await
        .map(drop);
    let mut bad = payload(&"not a vote");
    bad.crc32 ^= 1;
    let raft = pb::raft_client::RaftClient::new(ch)
        .vote(bad)
        .await
        .map(drop);
    Answers {
        kv: code(kv),
        admin: code(admin),
        raft: code(raft),
    }
}

/// Connect as `tls`; an error if the handshake fails.
async fn connect(tls: &ClientTls, addr: &str) -> Result<Channel, tonic::transport::Error> {
    tls.endpoint(addr)?
        .timeout(Duration::from_secs(10))
        .connect()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_member_port_serves_each_certificate_only_its_groups_services() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let (member, addr) = serving_member(dir.path(), |_| {}).await;
    let ca = test_ca();

    // The administrator: Kv and Admin, not Raft.
    let admin = ask(connect(&member_tls(1).as_admin(), &addr).await.unwrap()).await;
    assert_eq!(admin.kv, Ok(()));
    assert_eq!(admin.admin, Ok(()));
    assert_eq!(admin.raft, Err(Code::PermissionDenied));

    // A member: Raft (the payload reaches the decoder), not Kv or Admin.
    let m = ask(connect(&member_tls(2).as_member(), &addr).await.unwrap()).await;
    assert_eq!(m.raft, Err(Code::DataLoss), "past authorization");
    assert_eq!(m.kv, Err(Code::PermissionDenied));
    assert_eq!(m.admin, Err(Code::PermissionDenied));

    // A node and a user of the cluster CA: nothing.
    for (who, issued) in [
        ("node", ca.issue_node("n1").unwrap()),
        // Two groups: the subject rewritten after rcgen still verifies.
        (
            "user",
            ca.issue_user("alice", &["dev".into(), "qa".into()])
                .unwrap(),
        ),
    ] {
        let a = ask(connect(&client(ca, issued), &addr).await.unwrap()).await;
        for (service, got) in [("kv", a.kv), ("admin", a.admin), ("raft", a.raft)] {
            assert_eq!(got, Err(Code::PermissionDenied), "{who} on {service}");
        }
    }

    // Certificates from another CA, even with the right groups: refused at
    // the handshake. The client trusts the real CA, so only the server's
    // check of the client certificate can fail it.
    let other = Ca::generate().unwrap();
    for (who, issued) in [
        (
            "admin",
            other.issue_user("admin", &[ADMIN_GROUP.into()]).unwrap(),
        ),
        (
            "member",
            other
                .issue_member(2, &["127.0.0.1".into(), "localhost".into()])
                .unwrap(),
        ),
    ] {
        let tls = ClientTls {
            ca_pem: ca.cert_pem.clone(),
            ..client(&other, issued)
        };
        refused(&tls, &addr, &format!("an {who} of another CA")).await;
    }

    // No certificate at all, over TLS.
    let no_cert = Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&ca.cert_pem)))
        .unwrap()
        .timeout(Duration::from_secs(10));
    assert_nothing(no_cert, "a client without a certificate").await;

    // Plaintext gRPC.
    let plain = Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .timeout(Duration::from_secs(10));
    assert_nothing(plain, "a plaintext client").await;

    // Plaintext bytes on the socket: at most a TLS alert comes back, never
    // an HTTP/2 frame.
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .unwrap();
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got)).await;
    assert!(
        read.is_ok(),
        "the member kept a plaintext connection open (read {got:?})"
    );
    assert!(
        got.is_empty() || (got[0] == 0x15 && got.len() <= 7),
        "a plaintext connection got {got:?}, not at most a TLS alert"
    );

    // The member is unharmed.
    let again = ask(connect(&member_tls(1).as_admin(), &addr).await.unwrap()).await;
    assert_eq!(again.kv, Ok(()));
    member.shutdown().await;
}

/// `tls` gets no answer from any service (the handshake or the first call fails).
async fn refused(tls: &ClientTls, addr: &str, who: &str) {
    assert_nothing(
        tls.endpoint(addr).unwrap().timeout(Duration::from_secs(10)),
        who,
    )
    .await;
}

async fn assert_nothing(ep: Endpoint, who: &str) {
    let Ok(ch) = ep.connect().await else {
        return;
    };
    let a = ask(ch).await;
    for (service, got) in [("kv", a.kv), ("admin", a.admin), ("raft", a.raft)] {
        let code = got.expect_err(&format!("{who} was answered on {service}"));
        // Transport failures (the handshake refused) surface as Unavailable
        // or Unknown; never an answer from the service itself.
        assert!(
            matches!(
                code,
                Code::Unavailable | Code::Unknown | Code::Internal | Code::Cancelled
            ),
            "{who} on {service}: {code:?}"
        );
    }
}

/// (HTTP code) of GET /readyz on a member's health port.
fn ready(http: u16) -> bool {
    Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "5",
        ])
        .arg(format!("http://127.0.0.1:{http}/readyz"))
        .output()
        .map(|o| o.stdout == b"200")
        .unwrap_or(false)
}

/// A `keel server` process (killed on drop).
fn server(id: u64, data: &Path, peer: u16, http: u16, extra: &[&str]) -> Reaped {
    let log = std::fs::File::create(data.with_extension("log")).unwrap();
    Reaped(
        Command::new(keel_bin())
            .args(["server", "--id", &id.to_string(), "--data-dir"])
            .arg(data)
            .args(["--peer-addr", &format!("127.0.0.1:{peer}")])
            .args(["--http-addr", &format!("127.0.0.1:{http}")])
            .args(["--api-addr", &format!("127.0.0.1:{}", free_port())])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}

/// `keel member status` of the member at `peer` with `data`'s admin certificate.
fn status(peer: u16, data: &Path) -> Option<String> {
    let out = Command::new(keel_bin())
        .args([
            "member",
            "--addr",
            &format!("127.0.0.1:{peer}"),
            "--data-dir",
        ])
        .arg(data)
        .arg("status")
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn field(status: &str, name: &str) -> Option<String> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .map(|v| v.trim().to_string())
}

#[test]
fn a_member_of_another_ca_never_receives_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let (a_data, b_data) = (dir.path().join("a"), dir.path().join("b"));
    let (a_peer, a_http, b_peer, b_http) = (free_port(), free_port(), free_port(), free_port());
    let ca_dir = dir.path().join("ca");
    let ca_arg = ca_dir.to_str().unwrap();
    let _a = server(1, &a_data, a_peer, a_http, &["--ca-dir", ca_arg]);
    wait_until("member 1 to be ready", LONG, || ready(a_http).then_some(()));
    // Member 2 has its own CA (no --ca-dir) and waits to be added.
    let _b = server(2, &b_data, b_peer, b_http, &["--join"]);
    let b_status = wait_until("member 2 to answer its own admin", LONG, || {
        status(b_peer, &b_data)
    });
    assert_eq!(field(&b_status, "last log").as_deref(), Some("0"));
    // A key on the cluster, then the add, which can never complete.
    let put = Command::new(keel_bin())
        .args(["kv", "--addr", &format!("127.0.0.1:{a_peer}"), "--data-dir"])
        .arg(&a_data)
        .args(["create", "/secret", "s3cr3t"])
        .output()
        .unwrap();
    assert!(put.status.success(), "{put:?}");
    let _add = Reaped(
        Command::new(keel_bin())
            .args([
                "member",
                "--addr",
                &format!("127.0.0.1:{a_peer}"),
                "--data-dir",
            ])
            .arg(&a_data)
            .args([
                "add",
                "--id",
                "2",
                "--peer-addr",
                &format!("127.0.0.1:{b_peer}"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_until("member 1 to list member 2", LONG, || {
        let s = status(a_peer, &a_data)?;
        s.lines()
            .any(|l| l.trim_start().starts_with("2 ") && l.contains(&b_peer.to_string()))
            .then_some(())
    });
    // The leader keeps trying to replicate to member 2 (heartbeats every
    // 100 ms); for three seconds member 2 holds no entry and knows no leader.
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        let s = status(b_peer, &b_data).expect("member 2 answers");
        assert_eq!(field(&s, "last log").as_deref(), Some("0"), "{s}");
        assert_eq!(field(&s, "leader").as_deref(), Some("none"), "{s}");
    }
    let log = std::fs::read_to_string(b_data.with_extension("log")).unwrap_or_default();
    assert!(!log.contains("s3cr3t"));
}

/// Run `keel certs` with `args`; its stdout.
fn certs(args: &[&str]) -> String {
    let out = Command::new(keel_bin())
        .arg("certs")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "keel certs {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn keel_certs_issues_users_nodes_and_members_from_the_ca() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (peer, http, api) = (free_port(), free_port(), free_port());
    let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
    let _server = Reaped(
        Command::new(keel_bin())
            .args(["server", "--data-dir"])
            .arg(&data)
            .args(["--peer-addr", &format!("127.0.0.1:{peer}")])
            .args(["--http-addr", &format!("127.0.0.1:{http}")])
            .args(["--api-addr", &format!("127.0.0.1:{api}")])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    wait_until("the server to be ready", LONG, || ready(http).then_some(()));
    let pki = data.join("pki");
    let out = dir.path().join("out");
    let (pki_s, out_s) = (pki.to_str().unwrap(), out.to_str().unwrap());
    let server = format!("https://127.0.0.1:{api}");
    let printed = certs(&[
        "--ca-dir", pki_s, "--out", out_s, "--server", &server, "user", "--name", "alice",
        "--group", "dev", "--group", "qa",
    ]);
    assert!(printed.contains("alice.kubeconfig"), "{printed}");
    let read = |f: &str| std::fs::read_to_string(out.join(f)).unwrap();
    assert_eq!(
        subject(&read("alice.crt")).unwrap(),
        ("alice".into(), vec!["dev".into(), "qa".into()])
    );
    certs(&["--ca-dir", pki_s, "--out", out_s, "node", "--name", "n1"]);
    assert_eq!(
        subject(&read("node-n1.crt")).unwrap(),
        ("system:node:n1".into(), vec![NODE_GROUP.into()])
    );
    certs(&[
        "--ca-dir",
        pki_s,
        "--out",
        out_s,
        "member",
        "--id",
        "5",
        "--peer-addr",
        "127.0.0.1:7005",
    ]);
    assert_eq!(
        subject(&read("member-5.crt")).unwrap(),
        ("keel-member-5".into(), vec![MEMBER_GROUP.into()])
    );

    // The API takes alice's kubeconfig as alice: answered (or forbidden by
    // name), never 401.
    let kubectl = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(out.join("alice.kubeconfig"))
        .args([
            "get",
            "namespaces",
            "-o",
            "name",
            "--request-timeout",
            "20s",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&kubectl.stderr);
    assert!(
        kubectl.status.success() || err.contains("\"alice\""),
        "alice's kubeconfig: {err}"
    );
    assert!(!err.contains("Unauthorized"), "{err}");

    // Alice's certificate on the member port: refused (not an administrator).
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let ca = std::fs::read_to_string(pki.join("ca.crt")).unwrap();
        let tls = ClientTls::from_files(
            &pki.join("ca.crt"),
            &out.join("alice.crt"),
            &out.join("alice.key"),
        )
        .unwrap();
        assert_eq!(tls.ca_pem, ca);
        let a = ask(connect(&tls, &format!("127.0.0.1:{peer}")).await.unwrap()).await;
        assert_eq!(a.kv, Err(Code::PermissionDenied));
        assert_eq!(a.admin, Err(Code::PermissionDenied));
    });
}
