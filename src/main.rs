//! The `keel` binary: runs a store member (`keel server`) and administers a
//! cluster (`keel member status|add|remove`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

mod bench;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use keel_proto::member as pb;
use keel_store::network::{GrpcTransport, MemberService};
use keel_store::{Member, MemberConfig};

#[derive(Parser)]
#[command(
    name = "keel",
    version,
    about = "Keel: a Kubernetes-compatible control plane on a replicated event log"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a store member. With no flags: a single-member cluster under ./keel-data.
    Server(ServerArgs),
    /// Read and write keys through any member (the store's client API).
    Kv {
        /// Peer address of any member.
        #[arg(long, default_value = "127.0.0.1:7001")]
        addr: String,
        #[command(subcommand)]
        action: KvAction,
    },
    /// Start a local cluster of N members as separate processes on loopback
    /// ports (data under <data-dir>/m1..mN, one shared CA) and write
    /// <data-dir>/kubeconfig. Ctrl-C stops them all.
    Up {
        #[arg(long, default_value_t = 3)]
        members: u64,
        #[arg(long, default_value = "./keel-data")]
        data_dir: PathBuf,
    },
    /// Benchmarks that run Keel and a baseline side by side.
    Bench {
        #[command(subcommand)]
        suite: BenchSuite,
    },
    /// Administer the cluster through any member.
    Member {
        /// Peer address of any member.
        #[arg(long, default_value = "127.0.0.1:7001")]
        addr: String,
        #[command(subcommand)]
        action: MemberAction,
    },
}

#[derive(clap::Args)]
struct ServerArgs {
    /// A JSON file with any of these options (`id`, `data_dir`, `peer_addr`,
    /// `api_addr`, `http_addr`, `initial_members`, `join`, `retain_events`,
    /// `snapshot_every`, `max_watches`); options given on
    /// the command line win.
    #[arg(long)]
    config: Option<PathBuf>,
    /// This member's id (unique in the cluster, > 0).
    #[arg(long, default_value_t = 1)]
    id: u64,
    #[arg(long, default_value = "./keel-data")]
    data_dir: PathBuf,
    /// Address to serve the member protocol on; also advertised to other members.
    #[arg(long, default_value = "127.0.0.1:7001")]
    peer_addr: SocketAddr,
    /// Bootstrap a new cluster of these members: `1=127.0.0.1:7001,2=...`.
    /// Without it (and without --join) the member bootstraps a cluster of itself.
    #[arg(long)]
    initial_members: Option<String>,
    /// Address of the Kubernetes API (HTTPS); its kubeconfig is written to <data-dir>/kubeconfig.
    #[arg(long, default_value = "127.0.0.1:6443")]
    api_addr: SocketAddr,
    /// Address of the HTTP endpoints /healthz, /livez, /readyz and /metrics.
    #[arg(long, default_value = "127.0.0.1:7080")]
    http_addr: SocketAddr,
    /// Wait to be added to an existing cluster (`keel member add`) instead of bootstrapping.
    #[arg(long)]
    join: bool,
    /// Events the log retains for watches and past-revision reads before
    /// the leader compacts older ones (events older than an hour go too).
    #[arg(long, default_value_t = 100_000)]
    retain_events: u64,
    /// Milliseconds between the leader's heartbeats.
    #[arg(long, default_value_t = 250)]
    heartbeat_ms: u64,
    /// A follower that hears no leader for a random time in this range
    /// (milliseconds, `min-max`) starts an election.
    #[arg(long, default_value = "1500-3000", value_parser = parse_range)]
    election_timeout_ms: (u64, u64),
    /// Take a Raft snapshot (and purge the log behind it) every this many
    /// entries. A snapshot holds every object and every retained event and
    /// is built in memory, so taking one often costs memory and time.
    #[arg(long, default_value_t = 100_000)]
    snapshot_every: u64,
    /// Watches the Kubernetes API keeps open at once on this member; more
    /// get 429 with Retry-After. Each costs a task and buffers.
    #[arg(long, default_value_t = keel_apiserver::server::DEFAULT_MAX_WATCHES)]
    max_watches: usize,
}

fn parse_range(s: &str) -> Result<(u64, u64), String> {
    let (a, b) = s
        .split_once('-')
        .ok_or_else(|| format!("{s:?}: expected min-max, such as 1500-3000"))?;
    let (a, b): (u64, u64) = (
        a.trim()
            .parse()
            .map_err(|_| format!("{a:?} is not a number"))?,
        b.trim()
            .parse()
            .map_err(|_| format!("{b:?} is not a number"))?,
    );
    if a == 0 || a >= b {
        return Err(format!("{s:?}: min must be positive and below max"));
    }
    Ok((a, b))
}

#[derive(Subcommand)]
enum BenchSuite {
    /// Puts, reads and a 90/10 mix against three Keel members and three etcd members.
    Store(bench::store::StoreBenchArgs),
    /// ConfigMap create, get, list, update and delete through the REST API of three members.
    Api(bench::api::ApiBenchArgs),
    /// Watch delivery latency with 1,000s of watchers: Keel's API and store against etcd.
    Watch(bench::watch::WatchBenchArgs),
    /// Nodes and pods at scale: LIST latencies, memory and disk, against etcd holding the same objects.
    Scale(bench::scale::ScaleBenchArgs),
    /// Time to the first acknowledged write after kill -9 of the leader, against etcd.
    Failover(bench::failover::FailoverBenchArgs),
    /// Time until a restarted member with a long history serves reads, against etcd.
    Restart(bench::restart::RestartBenchArgs),
}

#[derive(Subcommand)]
enum KvAction {
    /// Create a key; fails if it exists.
    Create { key: String, value: String },
    /// Replace a key's value; fails if it does not exist (or was modified since `--if-mod-revision`).
    Update {
        key: String,
        value: String,
        #[arg(long)]
        if_mod_revision: Option<u64>,
    },
    /// Delete a key.
    Delete {
        key: String,
        #[arg(long)]
        if_mod_revision: Option<u64>,
    },
    /// Print one key.
    Get {
        key: String,
        /// Read this member's state without a read-index round trip.
        #[arg(long)]
        serializable: bool,
    },
    /// Print the keys under a prefix.
    List {
        #[arg(default_value = "")]
        prefix: String,
        /// Page size; every page is read at the first page's revision (0: one page).
        #[arg(long, default_value_t = 0)]
        limit: u32,
        /// Read at this past revision.
        #[arg(long, default_value_t = 0)]
        revision: u64,
        #[arg(long)]
        serializable: bool,
    },
    /// Print changes under a prefix as they happen (Ctrl-C stops).
    Watch {
        #[arg(default_value = "")]
        prefix: String,
        /// Replay changes after this revision first.
        #[arg(long)]
        after: Option<u64>,
    },
}

#[derive(Subcommand)]
enum MemberAction {
    /// Leader, term, applied index and members.
    Status,
    /// Add a member (learner first, voter once caught up).
    Add {
        #[arg(long)]
        id: u64,
        #[arg(long)]
        peer_addr: String,
    },
    /// Remove a member.
    Remove {
        #[arg(long)]
        id: u64,
    },
}

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

/// Fill the options not given on the command line from a JSON config file.
fn apply_config(
    args: &mut ServerArgs,
    path: &std::path::Path,
    given: &clap::ArgMatches,
) -> Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let cfg: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not valid JSON", path.display()))?;
    let obj = cfg
        .as_object()
        .with_context(|| format!("{} must hold a JSON object", path.display()))?;
    let known = [
        "id",
        "data_dir",
        "peer_addr",
        "api_addr",
        "http_addr",
        "initial_members",
        "join",
        "retain_events",
        "snapshot_every",
        "max_watches",
    ];
    if let Some(k) = obj.keys().find(|k| !known.contains(&k.as_str())) {
        bail!(
            "{}: unknown option {k:?} (known: {})",
            path.display(),
            known.join(", ")
        );
    }
    let from_cli =
        |id: &str| given.value_source(id) == Some(clap::parser::ValueSource::CommandLine);
    let text_of = |k: &str| -> Result<Option<String>> {
        match obj.get(k) {
            None => Ok(None),
            Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => bail!("{}: {k} must be a string, not {other}", path.display()),
        }
    };
    if !from_cli("id")
        && let Some(v) = obj.get("id")
    {
        args.id = v
            .as_u64()
            .with_context(|| format!("{}: id must be a positive integer", path.display()))?;
    }
    if !from_cli("data_dir")
        && let Some(v) = text_of("data_dir")?
    {
        args.data_dir = v.into();
    }
    for (key, slot) in [
        ("peer_addr", &mut args.peer_addr),
        ("api_addr", &mut args.api_addr),
        ("http_addr", &mut args.http_addr),
    ] {
        if !from_cli(key)
            && let Some(v) = text_of(key)?
        {
            *slot = v
                .parse()
                .with_context(|| format!("{}: {key} {v:?} is not host:port", path.display()))?;
        }
    }
    if !from_cli("initial_members")
        && let Some(v) = text_of("initial_members")?
    {
        args.initial_members = Some(v);
    }
    if !from_cli("retain_events")
        && let Some(v) = obj.get("retain_events")
    {
        args.retain_events = v.as_u64().with_context(|| {
            format!(
                "{}: retain_events must be a positive integer",
                path.display()
            )
        })?;
    }
    if !from_cli("snapshot_every")
        && let Some(v) = obj.get("snapshot_every")
    {
        args.snapshot_every = v.as_u64().with_context(|| {
            format!(
                "{}: snapshot_every must be a positive integer",
                path.display()
            )
        })?;
    }
    if !from_cli("max_watches")
        && let Some(v) = obj.get("max_watches")
    {
        args.max_watches = v
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .with_context(|| {
                format!("{}: max_watches must be a positive integer", path.display())
            })?;
    }
    if !from_cli("join")
        && let Some(v) = obj.get("join")
    {
        args.join = v
            .as_bool()
            .with_context(|| format!("{}: join must be true or false", path.display()))?;
    }
    Ok(())
}

async fn server(args: ServerArgs) -> Result<()> {
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
    config.heartbeat = std::time::Duration::from_millis(args.heartbeat_ms);
    config.election_timeout = (
        std::time::Duration::from_millis(args.election_timeout_ms.0),
        std::time::Duration::from_millis(args.election_timeout_ms.1),
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
    let router = health_router(member.clone());
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
    shutdown_signal().await;
    tracing::info!("shutting down");
    api.shutdown().await;
    let _ = stop_tx.send(());
    let _ = http_stop_tx.send(());
    member.shutdown().await;
    let _ = serve.await;
    let _ = http_server.await;
    Ok(())
}

/// `keel up`: N `keel server` processes sharing one CA.
async fn up(members: u64, data_dir: PathBuf) -> Result<()> {
    if members == 0 {
        bail!("--members must be at least 1");
    }
    let exe = std::env::current_exe()?;
    let ca_dir = data_dir.join("m1").join("pki");
    keel_apiserver::pki::Pki::load_or_create(&ca_dir, &keel_apiserver::pki::serving_names(&[]))
        .context("creating the cluster CA")?;
    let peers: Vec<String> = (1..=members)
        .map(|i| format!("127.0.0.1:{}", 7000 + i))
        .collect();
    let initial = peers
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{}={p}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let mut children = Vec::new();
    for i in 1..=members {
        let dir = data_dir.join(format!("m{i}"));
        let pki = dir.join("pki");
        std::fs::create_dir_all(&pki)?;
        if !pki.join("ca.crt").exists() {
            let crt = std::fs::read(ca_dir.join("ca.crt"))?;
            keel_apiserver::pki::write_durable(&pki.join("ca.crt"), &crt, 0o644)
                .with_context(|| format!("copying ca.crt to member {i}"))?;
        }
        if !pki.join("ca.key").exists() {
            let key = std::fs::read(ca_dir.join("ca.key"))?;
            keel_apiserver::pki::write_private(&pki.join("ca.key"), &key)
                .with_context(|| format!("copying ca.key to member {i}"))?;
        }
        let api = format!("127.0.0.1:{}", 6442 + i);
        let child = tokio::process::Command::new(&exe)
            .args(["server", "--id", &i.to_string()])
            .arg("--data-dir")
            .arg(&dir)
            .args(["--peer-addr", &peers[i as usize - 1]])
            .args(["--http-addr", &format!("127.0.0.1:{}", 7080 + i)])
            .args(["--api-addr", &api])
            .args(["--initial-members", &initial])
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting member {i}"))?;
        println!(
            "member {i}: api https://{api}  peer {}  health http://127.0.0.1:{}/readyz  data {}",
            peers[i as usize - 1],
            7080 + i,
            dir.display()
        );
        children.push(child);
    }
    // Member 1's kubeconfig (same CA as every member) becomes the cluster's.
    let m1 = data_dir.join("m1").join("kubeconfig");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !m1.exists() {
        if std::time::Instant::now() > deadline {
            bail!("member 1 did not write its kubeconfig");
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let kubeconfig = data_dir.join("kubeconfig");
    keel_apiserver::pki::write_private(&kubeconfig, &std::fs::read(&m1)?)?;
    println!(
        "kubeconfig: {} (kubectl --kubeconfig {} get ns)",
        kubeconfig.display(),
        kubeconfig.display()
    );
    shutdown_signal().await;
    for c in &mut children {
        if let Some(pid) = c.id() {
            // SIGTERM: each member shuts down gracefully.
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
    }
    for mut c in children {
        let _ = c.wait().await;
    }
    Ok(())
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

/// Health and metrics endpoints of a member: /livez and /healthz answer while
/// the process runs Raft; /readyz only once it can serve linearizable reads.
fn health_router(member: Arc<Member>) -> axum::Router {
    use axum::http::StatusCode;
    use axum::routing::get;
    let live = |m: Arc<Member>| async move {
        if m.raft().metrics().borrow().running_state.is_ok() {
            (StatusCode::OK, "ok\n")
        } else {
            (StatusCode::SERVICE_UNAVAILABLE, "raft stopped\n")
        }
    };
    let (m1, m2, m3, m4) = (member.clone(), member.clone(), member.clone(), member);
    axum::Router::new()
        .route("/livez", get(move || live(m1.clone())))
        .route("/healthz", get(move || live(m2.clone())))
        .route(
            "/readyz",
            get(move || {
                let m = m3.clone();
                async move {
                    if m.ready().await {
                        (StatusCode::OK, "ok\n")
                    } else {
                        (
                            StatusCode::SERVICE_UNAVAILABLE,
                            "not ready: no leader or not caught up\n",
                        )
                    }
                }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let m = m4.clone();
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4",
                        )],
                        m.render_metrics(),
                    )
                }
            }),
        )
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

async fn member_admin(addr: String, action: MemberAction) -> Result<()> {
    let mut client = pb::admin_client::AdminClient::connect(format!("http://{addr}"))
        .await
        .with_context(|| format!("connecting to member at {addr}"))?;
    let print_members = |members: &[pb::Member]| {
        for m in members {
            println!(
                "  {:>4}  {:<22} {}",
                m.id,
                m.addr,
                if m.voter { "voter" } else { "learner" }
            );
        }
    };
    match action {
        MemberAction::Status => {
            let s = client.status(pb::StatusRequest {}).await?.into_inner();
            println!("member:    {} ({})", s.id, s.state);
            println!(
                "leader:    {}",
                if s.leader == 0 {
                    "none".to_string()
                } else {
                    s.leader.to_string()
                }
            );
            println!("term:      {}", s.term);
            println!("applied:   {}", s.applied_index);
            println!("last log:  {}", s.last_log_index);
            println!("compacted: {}", s.compacted_revision);
            println!("members:");
            print_members(&s.members);
        }
        MemberAction::Add { id, peer_addr } => {
            let r = client
                .add_member(pb::AddMemberRequest {
                    id,
                    addr: peer_addr,
                })
                .await?
                .into_inner();
            println!("member {id} added; members:");
            print_members(&r.members);
        }
        MemberAction::Remove { id } => {
            let r = client
                .remove_member(pb::RemoveMemberRequest { id })
                .await?
                .into_inner();
            println!("member {id} removed; members:");
            print_members(&r.members);
        }
    }
    Ok(())
}

fn print_kv(kv: &pb::KeyValue) {
    println!(
        "{}\t{}\t{}",
        kv.key,
        kv.mod_revision,
        String::from_utf8_lossy(&kv.value)
    );
}

async fn kv(addr: String, action: KvAction) -> Result<()> {
    use pb::operation::Kind;
    let mut client = pb::kv_client::KvClient::connect(format!("http://{addr}"))
        .await
        .with_context(|| format!("connecting to member at {addr}"))?;
    let op = |kind: Kind, key: String, value: String, if_mod_revision: Option<u64>| pb::Operation {
        kind: kind as i32,
        key,
        value: value.into_bytes(),
        if_mod_revision,
        ..Default::default()
    };
    let txn = |o: pb::Operation| pb::TxnRequest { ops: vec![o] };
    match action {
        KvAction::Create { key, value } => {
            let r = client
                .txn(txn(op(Kind::Create, key, value, None)))
                .await?
                .into_inner();
            println!("created at revision {}", r.revision);
        }
        KvAction::Update {
            key,
            value,
            if_mod_revision,
        } => {
            let r = client
                .txn(txn(op(Kind::Update, key, value, if_mod_revision)))
                .await?
                .into_inner();
            println!("updated at revision {}", r.revision);
        }
        KvAction::Delete {
            key,
            if_mod_revision,
        } => {
            let r = client
                .txn(txn(op(Kind::Delete, key, String::new(), if_mod_revision)))
                .await?
                .into_inner();
            println!("deleted at revision {}", r.revision);
        }
        KvAction::Get { key, serializable } => {
            let r = client
                .range(pb::RangeRequest {
                    prefix: key.clone(),
                    serializable,
                    ..Default::default()
                })
                .await?
                .into_inner();
            match r.kvs.iter().find(|kv| kv.key == key) {
                Some(kv) => print_kv(kv),
                None => bail!("key {key} not found (revision {})", r.revision),
            }
        }
        KvAction::List {
            prefix,
            limit,
            revision,
            serializable,
        } => {
            let mut continue_token = String::new();
            loop {
                let r = client
                    .range(pb::RangeRequest {
                        prefix: prefix.clone(),
                        limit,
                        continue_token: continue_token.clone(),
                        revision,
                        serializable,
                    })
                    .await?
                    .into_inner();
                r.kvs.iter().for_each(print_kv);
                if r.continue_token.is_empty() {
                    break;
                }
                continue_token = r.continue_token;
            }
        }
        KvAction::Watch { prefix, after } => {
            let mut stream = client
                .watch(pb::WatchRequest {
                    prefix,
                    after_revision: after,
                })
                .await?
                .into_inner();
            while let Some(reply) = stream.message().await? {
                for e in &reply.events {
                    let kind = pb::event::Kind::try_from(e.kind)
                        .map(|k| k.as_str_name())
                        .unwrap_or("?");
                    let kv = e.kv.clone().unwrap_or_default();
                    println!(
                        "{}\t{kind}\t{}\t{}",
                        reply.revision,
                        kv.key,
                        String::from_utf8_lossy(&kv.value)
                    );
                }
            }
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // A gRPC status carries the member's own words; show just those.
            match e.downcast_ref::<tonic::Status>() {
                Some(s) => eprintln!("error: {} ({:?})", s.message(), s.code()),
                None => eprintln!("error: {e:#}"),
            }
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,openraft=warn".into()),
        )
        // Logs never mix with what commands print (`keel bench --json`, `keel kv`).
        .with_writer(std::io::stderr)
        .init();
    use clap::{CommandFactory, FromArgMatches};
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches)?;
    match cli.command {
        Command::Server(mut args) => {
            if let (Some(path), Some(sub)) =
                (args.config.clone(), matches.subcommand_matches("server"))
            {
                apply_config(&mut args, &path, sub)?;
            }
            server(args).await
        }
        Command::Member { addr, action } => member_admin(addr, action).await,
        Command::Kv { addr, action } => kv(addr, action).await,
        Command::Up { members, data_dir } => up(members, data_dir).await,
        Command::Bench {
            suite: BenchSuite::Store(args),
        } => {
            let results = bench::store::store(&args).await?;
            if args.json {
                let doc = serde_json::json!({"suite": "store", "machine": bench::machine(), "results": results});
                println!("{}", serde_json::to_string_pretty(&doc)?);
            } else {
                println!(
                    "keel bench store ({}; {:?} per step)",
                    bench::machine(),
                    args.duration
                );
                print!("{}", bench::store::render(&results));
            }
            Ok(())
        }
        Command::Bench {
            suite: BenchSuite::Api(args),
        } => bench::print_tables("api", &bench::api::run(&args).await?, args.json),
        Command::Bench {
            suite: BenchSuite::Watch(args),
        } => bench::print_tables("watch", &bench::watch::run(&args).await?, args.json),
        Command::Bench {
            suite: BenchSuite::Scale(args),
        } => bench::print_tables("scale", &bench::scale::run(&args).await?, args.json),
        Command::Bench {
            suite: BenchSuite::Failover(args),
        } => bench::print_tables("failover", &bench::failover::run(&args).await?, args.json),
        Command::Bench {
            suite: BenchSuite::Restart(args),
        } => bench::print_tables("restart", &bench::restart::run(&args).await?, args.json),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn election_timeout_ranges_parse() {
        assert_eq!(parse_range("1500-3000"), Ok((1500, 3000)));
        assert_eq!(parse_range(" 100 - 200 "), Ok((100, 200)));
        assert!(parse_range("3000-1500").is_err());
        assert!(parse_range("0-10").is_err());
        assert!(parse_range("1500").is_err());
        assert!(parse_range("a-b").is_err());
    }
}
