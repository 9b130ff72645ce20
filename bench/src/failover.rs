//! `keel bench failover`: `kill -9` of the leader under a steady write load,
//! in a three-member Keel cluster and a three-member etcd, over many trials.
//! The time reported is from the kill to the first write that was *sent
//! after the kill* and acknowledged, so writes the old leader acknowledged
//! just before it died do not count. Writers retry on another member after
//! an error (with a 10 ms pause) or after a second without an answer
//! (etcd holds writes while it elects a leader); several writers per member
//! keep the resolution fine. Between trials the killed member restarts and
//! catches up.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use keel_proto::member as pb;
use serde_json::json;

use super::cluster::{EtcdCluster, KeelCluster};
use super::{Sampler, Table, micros, num, percentile, progress};

/// Options of `keel bench failover`.
#[derive(clap::Args, Clone, Debug)]
pub struct FailoverBenchArgs {
    /// Leader kills per system.
    #[arg(long, default_value_t = 20)]
    pub trials: usize,
    /// Concurrent writers (spread over the members).
    #[arg(long, default_value_t = 9)]
    pub writers: usize,
    #[command(flatten)]
    pub etcd: super::cluster::EtcdArgs,
    /// Extra options for the Keel members, e.g. `--keel-args=--election-timeout-ms=1000-2000`.
    #[arg(long, allow_hyphen_values = true, value_delimiter = ' ')]
    pub keel_args: Vec<String>,
    /// Print the results as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// A write not answered within this is abandoned and sent again elsewhere
/// (etcd holds writes while it has no leader; Keel refuses them at once).
const OP_TIMEOUT: Duration = Duration::from_secs(1);

/// When the leader was killed, and the first acknowledged write sent after it.
#[derive(Default)]
struct Trial {
    killed: Option<Instant>,
    first_ack: Option<Instant>,
}

/// The two systems behind one interface: a write through member `i`.
enum Writer {
    Keel(Vec<String>, keel_store::ClientTls),
    /// Client URLs, and the options with the client's certificate.
    Etcd(Vec<String>, Box<etcd_client::ConnectOptions>),
}

impl Writer {
    fn members(&self) -> usize {
        match self {
            Writer::Keel(a, _) | Writer::Etcd(a, _) => a.len(),
        }
    }
}

fn spawn_writers(
    writer: Arc<Writer>,
    writers: usize,
    trial: Arc<Mutex<Trial>>,
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..writers)
        .map(|w| {
            let (writer, trial, stop) = (writer.clone(), trial.clone(), stop.clone());
            tokio::spawn(async move {
                let mut member = w % writer.members();
                let mut keel: Option<pb::kv_client::KvClient<tonic::transport::Channel>> = None;
                let mut etcd: Option<etcd_client::Client> = None;
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let sent = Instant::now();
                    let key = format!("/bench/failover/{w}/{i}");
                    let res: Result<()> = async {
                        match &*writer {
                            Writer::Keel(addrs, tls) => {
                                if keel.is_none() {
                                    let ch = tls
                                        .endpoint(&addrs[member])?
                                        .connect_timeout(Duration::from_millis(300))
                                        .timeout(OP_TIMEOUT)
                                        .connect()
                                        .await?;
                                    keel = Some(pb::kv_client::KvClient::new(ch));
                                }
                                let c = keel.as_mut().expect("connected");
                                c.txn(pb::TxnRequest {
                                    ops: vec![pb::Operation {
                                        kind: pb::operation::Kind::Create as i32,
                                        key,
                                        value: vec![b'x'; 256],
                                        ..Default::default()
                                    }],
                                })
                                .await?;
                            }
                            Writer::Etcd(endpoints, options) => {
                                if etcd.is_none() {
                                    let opts = options
                                        .clone()
                                        .with_connect_timeout(Duration::from_millis(300))
                                        .with_timeout(OP_TIMEOUT);
                                    etcd = Some(
                                        etcd_client::Client::connect(
                                            [endpoints[member].clone()],
                                            Some(opts),
                                        )
                                        .await?,
                                    );
                                }
                                let c = etcd.as_mut().expect("connected");
                                c.put(key, vec![b'x'; 256], None).await?;
                            }
                        }
                        Ok(())
                    }
                    .await;
                    match res {
                        Ok(()) => {
                            let acked = Instant::now();
                            let mut t = trial.lock().unwrap();
                            if let Some(k) = t.killed
                                && sent > k
                                && t.first_ack.is_none()
                            {
                                t.first_ack = Some(acked);
                            }
                        }
                        Err(e) => {
                            if std::env::var_os("KEEL_BENCH_DEBUG").is_some() {
                                eprintln!(
                                    "writer {w} member {member} after {:?}: {e:#}",
                                    sent.elapsed()
                                );
                            }
                            keel = None;
                            etcd = None;
                            member = (member + 1) % writer.members();
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                }
            })
        })
        .collect()
}

/// Wait (up to a minute) for a write sent after the kill to be acknowledged.
async fn await_first_ack(trial: &Mutex<Trial>) -> Result<Duration> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        {
            let t = trial.lock().unwrap();
            if let (Some(k), Some(a)) = (t.killed, t.first_ack) {
                return Ok(a - k);
            }
        }
        if Instant::now() > deadline {
            anyhow::bail!("no write was acknowledged within a minute of the kill");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub async fn run(args: &FailoverBenchArgs) -> Result<Vec<Table>> {
    let dir = tempfile::Builder::new().prefix("keel-bench-").tempdir()?;
    let p = |m: &str| progress("failover", m);
    let sampler = Sampler::new();
    let mut table = Table::new(
        "time from kill -9 of the leader to the first acknowledged write sent after it",
        &[
            "system",
            "trials",
            "median ms",
            "p90 ms",
            "max ms",
            "min ms",
            "peak RSS MiB",
            "CPU s",
        ],
    );
    let mut per_trial = Table::new("each trial (ms)", &["system", "trial", "failover ms"]);
    for system in ["keel", "etcd"] {
        p(&format!(
            "starting a three-member {system} cluster under {}",
            dir.path().display()
        ));
        let root = dir.path().join(system);
        std::fs::create_dir_all(&root)?;
        let mut keel = None;
        let mut etcd = None;
        let writer = if system == "keel" {
            let extra: Vec<&str> = args.keel_args.iter().map(String::as_str).collect();
            let c = KeelCluster::launch(&root, 3, &extra).await?;
            let addrs = c.members.iter().map(|m| m.peer.clone()).collect();
            let tls = c.peer_tls.clone();
            keel = Some(c);
            Writer::Keel(addrs, tls)
        } else {
            let c = EtcdCluster::launch(&root, 3, &args.etcd).await?;
            let writer = Writer::Etcd(c.endpoints(), Box::new(c.options()));
            etcd = Some(c);
            writer
        };
        let pids = |keel: &Option<KeelCluster>, etcd: &Option<EtcdCluster>| {
            keel.as_ref()
                .map(KeelCluster::pids)
                .or_else(|| etcd.as_ref().map(EtcdCluster::pids))
                .unwrap_or_default()
        };
        sampler.reset();
        sampler.track(system, pids(&keel, &etcd));
        let trial = Arc::new(Mutex::new(Trial::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = spawn_writers(Arc::new(writer), args.writers, trial.clone(), stop.clone());
        let mut times = Vec::new();
        for n in 1..=args.trials {
            // Steady state first: every member up, writes flowing.
            *trial.lock().unwrap() = Trial {
                killed: Some(Instant::now()),
                first_ack: None,
            };
            await_first_ack(&trial)
                .await
                .context("writes before the kill")?;
            let leader = match (&keel, &etcd) {
                (Some(k), _) => k.leader().await,
                (_, Some(e)) => e.leader().await,
                _ => None,
            }
            .context("no leader")?;
            *trial.lock().unwrap() = Trial::default();
            let killed = Instant::now();
            if let Some(k) = keel.as_mut() {
                k.kill(leader);
            }
            if let Some(e) = etcd.as_mut() {
                e.kill(leader);
            }
            trial.lock().unwrap().killed = Some(killed);
            let took = await_first_ack(&trial).await?;
            p(&format!(
                "{system} trial {n}/{}: killed member {} (the leader); first write acknowledged after {:.0} ms",
                args.trials,
                leader + 1,
                took.as_secs_f64() * 1000.0
            ));
            per_trial.push(vec![
                json!(system),
                json!(n),
                num(took.as_secs_f64() * 1000.0),
            ]);
            times.push(micros(took));
            // The killed member comes back and catches up before the next trial.
            if let Some(k) = keel.as_mut() {
                k.spawn(leader)?;
                k.wait_ready(leader, Duration::from_secs(120)).await?;
            }
            if let Some(e) = etcd.as_mut() {
                e.spawn(leader)?;
                e.wait_ready(leader, Duration::from_secs(120)).await?;
            }
            sampler.track(system, pids(&keel, &etcd));
        }
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            let _ = t.await;
        }
        times.sort_unstable();
        let u = sampler.usage(system);
        table.push(vec![
            json!(system),
            json!(times.len()),
            num(percentile(&times, 0.5)),
            num(percentile(&times, 0.9)),
            num(percentile(&times, 1.0)),
            num(times.first().copied().unwrap_or(0) as f64 / 1000.0),
            num(u.peak_rss_mib),
            num(u.cpu_secs),
        ]);
        drop((keel, etcd));
    }
    Ok(vec![table, per_trial])
}
