//! `keel server`: one store member with its Kubernetes API, its peer
//! (member protocol) listener and its HTTP health and metrics endpoints.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use keel_apiserver::pki;
use keel_store::{GrpcTransport, Member, MemberConfig, MemberService, PeerTls, PemIdentity};

use super::config::ServerArgs;

pub async fn run(args: ServerArgs) -> Result<()> {
    if args.id == 0 {
        bail!("--id must be greater than 0");
    }
    let mut config = MemberConfig::new(args.id, args.peer_addr.to_string(), &args.data_dir);
    config.retention.max_events = args.retain_events;
    if args.heartbeat_ms == 0 || args.heartbeat_ms * 2 > args.election_timeout_ms.0 {
        bail!("--heartbeat-ms must be positive and at most half the minimum election timeout");
    }
    if args.snapshot_every == 0 {
        bail!("--snapshot-every must be positive");
    }
    if args.max_watches == 0 {
        bail!("--max-watches must be positive");
    }
    config.snapshot_every = args.snapshot_every;
    config.cluster_token = args.initial_cluster_token.clone();
    if let Some(dir) = &args.archive_dir {
        let mut archive = keel_store::archive::ArchiveConfig::new(dir);
        archive.max_delay = Duration::from_secs(args.archive_max_delay_s);
        archive.brief = args
            .archive_brief
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(String::from)
            .collect();
        config.archive = Some(archive);
    }
    config.keep_behind_snapshot = args.keep_behind_snapshot;
    config.heartbeat = Duration::from_millis(args.heartbeat_ms);
    config.election_timeout = (
        Duration::from_millis(args.election_timeout_ms.0),
        Duration::from_millis(args.election_timeout_ms.1),
    );
    let tls = peer_tls(&args)?;
    let member = Member::open(config, GrpcTransport::new(tls.as_member()))
        .await
        .with_context(|| {
            format!(
                "refusing to start member {} from {}",
                args.id,
                args.data_dir.display()
            )
        })?;
    let listener = tokio::net::TcpListener::bind(args.peer_addr)
        .await
        .with_context(|| format!("binding {}", args.peer_addr))?;
    let svc = MemberService::new(member.clone(), tls);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let serve = tokio::spawn(
        svc.router()
            .context("the member port's TLS settings")?
            .serve_with_incoming_shutdown(nodelay(listener), async {
                let _ = stop_rx.await;
            }),
    );
    let http = tokio::net::TcpListener::bind(args.http_addr)
        .await
        .with_context(|| format!("binding {}", args.http_addr))?;
    let (http_stop_tx, http_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let started = Arc::new(AtomicBool::new(false));
    let controller_metrics = Arc::new(keel_controllers::Metrics::default());
    let router = member_http(member.clone(), started.clone(), controller_metrics.clone());
    let http_server = tokio::spawn(async move {
        axum::serve(http, router)
            .with_graceful_shutdown(async {
                let _ = http_stop_rx.await;
            })
            .await
    });
    if !args.join {
        match &args.initial_members {
            Some(s) => member.initialize(parse_members(s)?).await?,
            None => member.bootstrap_single().await?,
        }
    }
    let mut api_config = keel_apiserver::ApiConfig::new(args.api_addr, &args.data_dir);
    api_config.max_watches = args.max_watches;
    api_config.encryption_provider_config = args.encryption_provider_config.clone();
    api_config.audit_log_path = args.audit_log_path.clone();
    {
        use keel_apiserver::registry::services::range::{Cidr, ServiceNetwork, parse_port_range};
        api_config.service_network = ServiceNetwork {
            cidr: Cidr::parse(&args.service_cluster_ip_range)
                .map_err(anyhow::Error::msg)
                .context("--service-cluster-ip-range")?,
            node_ports: parse_port_range(&args.service_node_port_range)
                .map_err(anyhow::Error::msg)
                .context("--service-node-port-range")?,
        };
    }
    api_config.authn = keel_apiserver::authn::AuthnConfig {
        token_auth_file: args.token_auth_file.clone(),
        anonymous_auth: args.anonymous_auth,
        service_account_issuer: args.service_account_issuer.clone(),
        api_audiences: args.api_audiences.clone(),
    };
    let api = keel_apiserver::start(api_config, member.clone())
        .await
        .context("starting the API server")?;
    started.store(true, Ordering::Release);
    let controllers = if args.controllers {
        let identity = format!("keel-{}_{}_{}", args.id, api.addr, std::process::id());
        Some(
            super::controllers::start(
                &api.controller_manager_kubeconfig,
                identity,
                args.enabled_controllers.clone(),
                args.use_service_account_credentials
                    .then(|| args.data_dir.join("controller-tokens")),
                super::controllers::settings(args.node_monitor_grace_period, args.event_ttl)?,
                controller_metrics,
            )
            .await?,
        )
    } else {
        None
    };
    tracing::info!(
        api = %api.addr,
        kubeconfig = %api.kubeconfig.display(),
        "try: kubectl --kubeconfig {} get namespaces",
        api.kubeconfig.display()
    );
    tracing::info!(
        id = args.id,
        peer_addr = %args.peer_addr,
        http_addr = %args.http_addr,
        data_dir = %args.data_dir.display(),
        "keel member serving"
    );
    super::shutdown_signal().await;
    tracing::info!("shutting down");
    if let Some(c) = controllers {
        c.stop().await;
    }
    api.shutdown().await;
    let _ = stop_tx.send(());
    let _ = http_stop_tx.send(());
    member.shutdown().await;
    let _ = serve.await;
    let _ = http_server.await;
    Ok(())
}

/// The member port's TLS: the cluster CA (from `--ca-dir`, shared by the
/// members, or this member's own `pki/`), a member certificate issued now
/// for the peer address, and the administrator certificate with which this
/// member passes `keel member` calls on to the leader.
fn peer_tls(args: &ServerArgs) -> Result<PeerTls> {
    let pki_dir = args.data_dir.join("pki");
    match &args.ca_dir {
        Some(ca_dir) => {
            let ca = pki::Ca::load_or_create(ca_dir)
                .with_context(|| format!("the cluster CA in {}", ca_dir.display()))?;
            adopt_ca(&ca, &pki_dir)?;
        }
        None => {
            let several = match &args.initial_members {
                Some(m) => parse_members(m)?.len() > 1,
                None => false,
            };
            if several && !pki_dir.join("ca.key").exists() {
                tracing::warn!(
                    "no --ca-dir and no CA in {}: this member creates its own CA, and members \
                     with different CAs refuse each other; give every member the same --ca-dir",
                    pki_dir.display()
                );
            }
        }
    }
    let host = |a: std::net::SocketAddr| {
        if a.ip().is_unspecified() {
            "127.0.0.1".to_string()
        } else {
            a.ip().to_string()
        }
    };
    // The names the API server asks for, so it reuses what is made here.
    let pki = pki::Pki::load_or_create(&pki_dir, &pki::serving_names(&[host(args.api_addr)]))
        .with_context(|| format!("certificates in {}", pki_dir.display()))?;
    let ca = pki::Ca::load(&pki_dir)?;
    let mut names = pki::serving_names(&[host(args.peer_addr)]);
    // Peers dial the address --initial-members gives for this member, which
    // may be a host name rather than the IP bound.
    let listed = match &args.initial_members {
        Some(m) => parse_members(m)?.remove(&args.id).and_then(|a| {
            a.rsplit_once(':')
                .map(|(h, _)| h.trim_matches(['[', ']']).to_string())
        }),
        None => None,
    };
    for name in [Some(args.peer_addr.ip().to_string()), listed]
        .into_iter()
        .flatten()
    {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    let member = ca.issue_member(args.id, &names)?;
    // Issued afresh at each start (the address may have changed); kept on
    // disk for inspection only.
    pki::write_durable(
        &pki_dir.join("member.crt"),
        member.cert_pem.as_bytes(),
        0o644,
    )?;
    pki::write_private(&pki_dir.join("member.key"), member.key_pem.as_bytes())?;
    Ok(PeerTls {
        ca_pem: ca.cert_pem,
        member: PemIdentity {
            cert_pem: member.cert_pem,
            key_pem: member.key_pem,
        },
        admin: PemIdentity {
            cert_pem: pki.admin_cert_pem,
            key_pem: pki.admin_key_pem,
        },
    })
}

/// Put the shared CA into this member's `pki/` (where the API server reads
/// it). A member whose `pki/` already holds another CA key belongs to
/// another cluster: refused rather than silently switched.
fn adopt_ca(ca: &pki::Ca, pki_dir: &std::path::Path) -> Result<()> {
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(pki_dir)
            .with_context(|| format!("creating {}", pki_dir.display()))?;
    }
    let key = pki_dir.join("ca.key");
    match std::fs::read_to_string(&key) {
        Ok(k) if k == ca.key_pem => {}
        Ok(_) => bail!(
            "{} holds a different CA than --ca-dir: this data directory belongs to another cluster",
            key.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // Certificate first: a crash between the two leaves no key
            // beside a certificate it did not sign.
            pki::write_durable(&pki_dir.join("ca.crt"), ca.cert_pem.as_bytes(), 0o644)?;
            pki::write_private(&key, ca.key_pem.as_bytes())?;
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", key.display())),
    }
    Ok(())
}

/// `1=127.0.0.1:7001,2=...` as member ids and peer addresses.
pub(crate) fn parse_members(s: &str) -> Result<BTreeMap<u64, String>> {
    s.split(',')
        .map(|part| {
            let (id, addr) = part
                .split_once('=')
                .with_context(|| format!("member {part:?} is not id=host:port"))?;
            Ok((
                id.trim()
                    .parse()
                    .with_context(|| format!("bad member id {id:?}"))?,
                addr.trim().to_string(),
            ))
        })
        .collect()
}

/// Accepted connections with TCP_NODELAY: without it a small gRPC answer
/// waits for the client's delayed ACK (about 40 ms per request).
fn nodelay(
    listener: tokio::net::TcpListener,
) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use tokio_stream::StreamExt;
    tokio_stream::wrappers::TcpListenerStream::new(listener).map(|conn| {
        conn.inspect(|s| {
            let _ = s.set_nodelay(true);
        })
    })
}

/// The member's plain-HTTP endpoints (`--http-addr`), for probes and
/// scrapers that hold no client certificate: the API's health routes
/// (/livez, /healthz, /readyz, which is ready once `started`) and the
/// member's /metrics (with the controller manager's counters).
fn member_http(
    member: Arc<Member>,
    started: Arc<AtomicBool>,
    controllers: Arc<keel_controllers::Metrics>,
) -> axum::Router {
    use axum::http::header;
    let metrics = {
        let member = member.clone();
        move || async move {
            (
                [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                member.render_metrics() + &controllers.render(),
            )
        }
    };
    keel_apiserver::http::health::router(member, started)
        .route("/metrics", axum::routing::get(metrics))
}
