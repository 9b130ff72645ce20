//! `keel server`: one store member with its Kubernetes API, its peer
//! (member protocol) listener and its HTTP health and metrics endpoints.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use keel_store::{GrpcTransport, Member, MemberConfig, MemberService};

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
    config.heartbeat = Duration::from_millis(args.heartbeat_ms);
    config.election_timeout = (
        Duration::from_millis(args.election_timeout_ms.0),
        Duration::from_millis(args.election_timeout_ms.1),
    );
    let member = Member::open(config, GrpcTransport::new())
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
    let svc = MemberService::new(member.clone());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let serve = tokio::spawn(
        svc.router()
            .serve_with_incoming_shutdown(nodelay(listener), async {
                let _ = stop_rx.await;
            }),
    );
    let http = tokio::net::TcpListener::bind(args.http_addr)
        .await
        .with_context(|| format!("binding {}", args.http_addr))?;
    let (http_stop_tx, http_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let started = Arc::new(AtomicBool::new(false));
    let router = member_http(member.clone(), started.clone());
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
    let api = keel_apiserver::start(api_config, member.clone())
        .await
        .context("starting the API server")?;
    started.store(true, Ordering::Release);
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
    api.shutdown().await;
    let _ = stop_tx.send(());
    let _ = http_stop_tx.send(());
    member.shutdown().await;
    let _ = serve.await;
    let _ = http_server.await;
    Ok(())
}

/// `1=127.0.0.1:7001,2=...` as member ids and peer addresses.
fn parse_members(s: &str) -> Result<BTreeMap<u64, String>> {
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
/// member's /metrics.
fn member_http(member: Arc<Member>, started: Arc<AtomicBool>) -> axum::Router {
    use axum::http::header;
    let metrics = {
        let member = member.clone();
        move || async move {
            (
                [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                member.render_metrics(),
            )
        }
    };
    keel_apiserver::http::health::router(member, started)
        .route("/metrics", axum::routing::get(metrics))
}
