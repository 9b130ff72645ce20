//! Certificates for tests that talk to the member port: one test CA per
//! process for in-process members, and the administrator certificate a
//! `keel server` process wrote under its data directory.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use keel_apiserver::pki::{ADMIN_GROUP, Ca, Issued};
use keel_store::{
    ClientTls, GrpcTransport, Member, MemberConfig, MemberService, PeerTls, PemIdentity,
};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

use crate::{test_config, wait_for};

/// The CA every in-process member of this test process trusts.
pub fn test_ca() -> &'static Ca {
    static CA: OnceLock<Ca> = OnceLock::new();
    CA.get_or_init(|| Ca::generate().expect("a test CA"))
}

fn identity(i: Issued) -> PemIdentity {
    PemIdentity {
        cert_pem: i.cert_pem,
        key_pem: i.key_pem,
    }
}

/// A client of `ca` presenting `issued`.
pub fn client(ca: &Ca, issued: Issued) -> ClientTls {
    ClientTls {
        ca_pem: ca.cert_pem.clone(),
        identity: identity(issued),
    }
}

/// Member `id`'s TLS under `ca`, its certificate naming loopback.
pub fn member_tls_of(ca: &Ca, id: u64) -> PeerTls {
    PeerTls {
        ca_pem: ca.cert_pem.clone(),
        member: identity(
            ca.issue_member(id, &["127.0.0.1".into(), "localhost".into()])
                .expect("a member certificate"),
        ),
        admin: identity(
            ca.issue_user("admin", &[ADMIN_GROUP.into()])
                .expect("an admin certificate"),
        ),
    }
}

/// Member `id`'s TLS under the test CA.
pub fn member_tls(id: u64) -> PeerTls {
    member_tls_of(test_ca(), id)
}

/// An administrator of the test CA.
pub fn admin_tls() -> ClientTls {
    member_tls(0).as_admin()
}

/// The administrator certificate a `keel server` wrote under `data_dir`.
pub fn admin_of(data_dir: &Path) -> ClientTls {
    ClientTls::from_dir(&data_dir.join("pki"), "admin").expect("the member's admin certificate")
}

/// Write the test CA into `<parent>/ca` for `keel server --ca-dir`, so that
/// [`admin_tls`] administers the processes started with it.
pub fn test_ca_dir(parent: &Path) -> std::path::PathBuf {
    let dir = parent.join("ca");
    std::fs::create_dir_all(&dir).expect("creating the CA directory");
    let ca = test_ca();
    keel_apiserver::pki::write_durable(&dir.join("ca.crt"), ca.cert_pem.as_bytes(), 0o644)
        .expect("writing ca.crt");
    keel_apiserver::pki::write_private(&dir.join("ca.key"), ca.key_pem.as_bytes())
        .expect("writing ca.key");
    dir
}

/// A channel to the member at `addr` (`host:port`) as [`admin_tls`].
pub async fn admin_channel(
    addr: &str,
) -> Result<tonic::transport::Channel, tonic::transport::Error> {
    admin_tls().endpoint(addr)?.connect().await
}

/// Member 1 of the test CA in `<dir>/m1`, its configuration changed by
/// `tweak`, initialized alone and serving its member port on loopback once
/// it leads; with that port's address.
pub async fn serving_member(
    dir: &Path,
    tweak: impl FnOnce(&mut MemberConfig),
) -> (Arc<Member>, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let mut cfg = test_config(1, dir.join("m1"));
    cfg.addr = addr.clone();
    tweak(&mut cfg);
    let member = Member::open(cfg, GrpcTransport::new(member_tls(1).as_member()))
        .await
        .unwrap();
    let router = MemberService::new(member.clone(), member_tls(1))
        .router()
        .unwrap();
    tokio::spawn(async move {
        let _ = router
            .serve_with_incoming(TcpListenerStream::new(listener))
            .await;
    });
    member
        .initialize(BTreeMap::from([(1, addr.clone())]))
        .await
        .unwrap();
    wait_for("a leader", Duration::from_secs(60), || async {
        member.is_leader().then_some(())
    })
    .await;
    (member, addr)
}
