//! `keel bench store`: the same load generator against a three-member Keel
//! store (real `keel server` processes, through the `Kv` client API) and a
//! three-member etcd 3.4 (through the etcd v3 API), side by side.
//!
//! Each step runs for a fixed duration with N concurrent clients; latencies
//! are recorded per operation and reported as percentiles. Both sides spread
//! each client's requests over all three members: etcd's client balances
//! every call over the endpoints it is given, so Keel's clients take the
//! members in turn, request by request, and neither side's result depends on
//! which member an election made leader. Memory (RSS) and
//! CPU time of every process are sampled after each step, and leader changes
//! during it are counted from the members' metrics. Before any cluster
//! starts, the disk's own append+fdatasync ceiling is measured in the same
//! directory (see [`super::disk`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use keel_proto::member as pb;
use serde::Serialize;
use serde_json::{Value, json};
use tonic::transport::Channel;

use super::cluster::{EtcdArgs, EtcdCluster, KeelCluster};
use super::disk::{self, Ceiling};
use super::leaders::{LeaderWatch, Source};
use super::{Table, num, parse_duration, percentile, ready, usage};

/// Options of `keel bench store`.
#[derive(clap::Args, Clone, Debug)]
pub struct StoreBenchArgs {
    /// How long each step runs.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Concurrent clients for the put steps, comma-separated.
    #[arg(long, default_value = "1,16,64,256", value_delimiter = ',')]
    pub clients: Vec<usize>,
    /// Concurrent clients for the read and mixed steps.
    #[arg(long, default_value_t = 16)]
    pub read_clients: usize,
    /// Value size in bytes.
    #[arg(long, default_value_t = 1024)]
    pub value_size: usize,
    /// Keys preloaded for the read steps.
    #[arg(long, default_value_t = 1000)]
    pub read_keys: usize,
    /// How long each block size of the disk-ceiling loop (append + fdatasync) runs.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub disk_duration: Duration,
    /// Print the results as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub etcd: super::cluster::EtcdArgs,
}

/// Everything the suite measured.
#[derive(Clone, Debug, Serialize)]
pub struct StoreReport {
    /// The disk's append+fdatasync ceiling where the members keep their data.
    pub disk: Vec<Ceiling>,
    pub results: Vec<StepResult>,
}

/// One measured step.
#[derive(Clone, Debug, Serialize)]
pub struct StepResult {
    pub step: String,
    pub system: String,
    pub clients: usize,
    pub ops: u64,
    pub errors: u64,
    pub ops_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    /// Sum of the members' resident memory after the step.
    pub rss_mib: f64,
    /// CPU seconds the members used during the step.
    pub cpu_secs: f64,
    /// Leader changes during the step (Keel: Raft term increases or a new
    /// leader, sampled every 100 ms; etcd: growth of its
    /// `etcd_server_leader_changes_seen_total`); `None` when the metrics
    /// could not be read.
    pub leader_changes: Option<u64>,
}

/// The operations the generator needs from a store.
#[derive(Clone)]
enum Target {
    Keel(Vec<pb::kv_client::KvClient<Channel>>),
    Etcd(Box<etcd_client::Client>),
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum OpKind {
    Put,
    ReadLinearizable,
    ReadSerializable,
    /// 90% linearizable reads, 10% puts.
    Mixed,
}

impl Target {
    /// `member` picks the Keel member (modulo their number); etcd's client
    /// balances over its endpoints by itself.
    async fn put(&mut self, member: usize, key: String, value: Vec<u8>) -> Result<()> {
        match self {
            Target::Keel(clients) => {
                let n = clients.len();
                let c = &mut clients[member % n];
                let op = pb::Operation {
                    kind: pb::operation::Kind::Create as i32,
                    key,
                    value,
                    ..Default::default()
                };
                c.txn(pb::TxnRequest { ops: vec![op] }).await?;
            }
            Target::Etcd(c) => {
                c.put(key, value, None).await?;
            }
        }
        Ok(())
    }

    async fn read(&mut self, member: usize, key: String, serializable: bool) -> Result<()> {
        match self {
            Target::Keel(clients) => {
                let n = clients.len();
                let c = &mut clients[member % n];
                let r = c
                    .range(pb::RangeRequest {
                        prefix: key,
                        serializable,
                        ..Default::default()
                    })
                    .await?
                    .into_inner();
                if r.kvs.is_empty() {
                    bail!("read found nothing");
                }
            }
            Target::Etcd(c) => {
                let opts = serializable.then(|| etcd_client::GetOptions::new().with_serializable());
                let r = c.get(key, opts).await?;
                if r.kvs().is_empty() {
                    bail!("read found nothing");
                }
            }
        }
        Ok(())
    }
}

async fn run_step(
    target: &Target,
    kind: OpKind,
    clients: usize,
    duration: Duration,
    value_size: usize,
    read_keys: usize,
    prefix: &str,
) -> (Vec<u32>, u64, Duration) {
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::new();
    for c in 0..clients {
        let mut t = target.clone();
        let errors = errors.clone();
        let prefix = prefix.to_string();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut i = 0u64;
            let value = vec![b'x'; value_size];
            while Instant::now() < deadline {
                i += 1;
                let began = Instant::now();
                let write = match kind {
                    OpKind::Put => true,
                    OpKind::Mixed => i.is_multiple_of(10),
                    _ => false,
                };
                // Client c's i-th request goes to member (c + i) modulo their
                // number: each client takes the members in turn, as etcd's
                // client does.
                let member = c.wrapping_add(i as usize);
                let res = if write {
                    t.put(member, format!("{prefix}/{c}/{i}"), value.clone())
                        .await
                } else {
                    let key = format!(
                        "/bench/read/{:06}",
                        (c as u64 * 7919 + i) % read_keys as u64
                    );
                    t.read(member, key, kind == OpKind::ReadSerializable).await
                };
                match res {
                    Ok(()) => lat.push(began.elapsed().as_micros().min(u32::MAX as u128) as u32),
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap_or_default());
    }
    let elapsed = start.elapsed();
    all.sort_unstable();
    (all, errors.load(Ordering::Relaxed), elapsed)
}

fn progress(msg: &str) {
    super::progress("store", msg);
}

/// Run the store suite; returns the disk's ceiling and every step's result.
pub async fn store(args: &StoreBenchArgs) -> Result<StoreReport> {
    let dir = tempfile::Builder::new().prefix("keel-bench-").tempdir()?;
    progress(&format!(
        "the disk's ceiling: append + fdatasync under {} for {:?} per block size",
        dir.path().display(),
        args.disk_duration
    ));
    let ceilings = disk::measure_all(dir.path(), args.disk_duration).await?;
    for c in &ceilings {
        progress(&format!(
            "disk: {} B appends: {:.0} syncs/s, {:.2} MB/s",
            c.block, c.syncs_per_sec, c.mb_per_sec
        ));
    }
    let mut results = Vec::new();
    for system in ["keel", "etcd"] {
        progress(&format!(
            "starting a three-member {system} cluster under {}",
            dir.path().display()
        ));
        let (keel, etcd) = if system == "keel" {
            (Some(KeelCluster::launch(dir.path(), 3, &[]).await?), None)
        } else {
            (
                None,
                Some(EtcdCluster::launch(dir.path(), 3, &args.etcd).await?),
            )
        };
        let pids = || {
            keel.as_ref()
                .map(KeelCluster::pids)
                .or_else(|| etcd.as_ref().map(EtcdCluster::pids))
                .unwrap_or_default()
        };
        // Keel's metrics are cheap and name the leader: look every 100 ms.
        // etcd's counter only grows, so its first and last values suffice.
        let (leaders, every) = match (&keel, &etcd) {
            (Some(k), _) => (
                Source::Keel(k.members.iter().map(|m| (m.id, m.http.clone())).collect()),
                Some(Duration::from_millis(100)),
            ),
            (_, Some(e)) => (
                Source::Etcd(e.members.iter().map(|m| m.metrics.clone()).collect()),
                None,
            ),
            _ => (Source::Etcd(Vec::new()), None),
        };
        let leaders = Arc::new(leaders);
        let watch_leaders = || LeaderWatch::start(leaders.clone(), every);
        let mut target = if let Some(k) = &keel {
            let mut clients = Vec::new();
            for i in 0..k.members.len() {
                clients.push(k.kv(i).await?);
            }
            Target::Keel(clients)
        } else {
            let e = etcd.as_ref().expect("one of the two is running");
            let eps = e.endpoints();
            Target::Etcd(Box::new(
                ready("etcd", Duration::from_secs(60), || e.connect(&eps)).await?,
            ))
        };
        // The cluster is ready once a write commits.
        ready(
            &format!("{system} cluster"),
            Duration::from_secs(60),
            || {
                let mut t = target.clone();
                async move {
                    t.put(
                        0,
                        format!("/bench/ready/{}", Instant::now().elapsed().as_nanos()),
                        b"1".to_vec(),
                    )
                    .await
                }
            },
        )
        .await?;
        let mut measure = |step: String,
                           clients: usize,
                           out: (Vec<u32>, u64, Duration),
                           before: (u64, f64),
                           leader_changes: Option<u64>| {
            let (lat, errors, elapsed) = out;
            let (rss, cpu) = usage(&pids());
            let r = StepResult {
                step,
                system: system.to_string(),
                clients,
                ops: lat.len() as u64,
                errors,
                ops_per_sec: lat.len() as f64 / elapsed.as_secs_f64(),
                p50_ms: percentile(&lat, 0.50),
                p99_ms: percentile(&lat, 0.99),
                p999_ms: percentile(&lat, 0.999),
                rss_mib: rss as f64 / (1 << 20) as f64,
                cpu_secs: cpu - before.1,
                leader_changes,
            };
            progress(&format!(
                "{} {} c={}: {:.0} ops/s, p99 {:.2} ms, leader changes {}",
                r.system,
                r.step,
                r.clients,
                r.ops_per_sec,
                r.p99_ms,
                r.leader_changes
                    .map_or_else(|| "unknown".to_string(), |n| n.to_string())
            ));
            results.push(r);
        };
        for &c in &args.clients {
            progress(&format!(
                "{system}: puts with {c} clients for {:?}",
                args.duration
            ));
            let before = usage(&pids());
            let watch = watch_leaders().await;
            if let Some(k) = &keel {
                // Every client takes the members in turn, so a third of the
                // puts reach the leader directly whichever member leads.
                progress(&format!(
                    "keel: member {} leads; each client sends its requests to the {} members in turn",
                    watch
                        .leader_at_start
                        .map_or_else(|| "unknown".to_string(), |l| l.to_string()),
                    k.members.len()
                ));
            }
            let out = run_step(
                &target,
                OpKind::Put,
                c,
                args.duration,
                args.value_size,
                1,
                &format!("/bench/put/{c}"),
            )
            .await;
            measure("put".into(), c, out, before, watch.finish().await);
        }
        progress(&format!(
            "{system}: loading {} keys for the read steps",
            args.read_keys
        ));
        for i in 0..args.read_keys {
            target
                .put(
                    i,
                    format!("/bench/read/{i:06}"),
                    vec![b'r'; args.value_size],
                )
                .await?;
        }
        for (name, kind) in [
            ("get-linearizable", OpKind::ReadLinearizable),
            ("get-serializable", OpKind::ReadSerializable),
            ("mixed-90r-10w", OpKind::Mixed),
        ] {
            progress(&format!(
                "{system}: {name} with {} clients",
                args.read_clients
            ));
            let before = usage(&pids());
            let watch = watch_leaders().await;
            let out = run_step(
                &target,
                kind,
                args.read_clients,
                args.duration,
                args.value_size,
                args.read_keys,
                "/bench/mixed",
            )
            .await;
            measure(
                name.into(),
                args.read_clients,
                out,
                before,
                watch.finish().await,
            );
        }
        drop((keel, etcd));
    }
    Ok(StoreReport {
        disk: ceilings,
        results,
    })
}

/// The results as one table, each step's Keel row then its etcd row, with
/// the Keel/etcd throughput ratio on the Keel row.
pub fn table(results: &[StepResult], duration: Duration, etcd: &EtcdArgs) -> Table {
    let mut by_step: BTreeMap<(String, usize), BTreeMap<String, &StepResult>> = BTreeMap::new();
    for r in results {
        by_step
            .entry((r.step.clone(), r.clients))
            .or_default()
            .insert(r.system.clone(), r);
    }
    let mut t = Table::new(
        &format!(
            "Keel's store against etcd {} ({duration:?} per step)",
            etcd.transport()
        ),
        &[
            "step",
            "clients",
            "sys",
            "ops/s",
            "p50 ms",
            "p99 ms",
            "p999 ms",
            "errors",
            "RSS MiB",
            "CPU s",
            "leader changes",
            "keel/etcd",
        ],
    );
    // Keep the order in which steps ran.
    let mut order: Vec<(String, usize)> = Vec::new();
    for r in results {
        let k = (r.step.clone(), r.clients);
        if !order.contains(&k) {
            order.push(k);
        }
    }
    for k in order {
        let systems = &by_step[&k];
        let ratio = match (systems.get("keel"), systems.get("etcd")) {
            (Some(a), Some(b)) if b.ops_per_sec > 0.0 => {
                json!(format!("{:.2}x", a.ops_per_sec / b.ops_per_sec))
            }
            _ => Value::Null,
        };
        for (i, sys) in ["keel", "etcd"].iter().enumerate() {
            if let Some(r) = systems.get(*sys) {
                t.push(vec![
                    json!(r.step),
                    json!(r.clients),
                    json!(sys),
                    num(r.ops_per_sec),
                    num(r.p50_ms),
                    num(r.p99_ms),
                    num(r.p999_ms),
                    json!(r.errors),
                    num(r.rss_mib),
                    num(r.cpu_secs),
                    r.leader_changes.map_or(Value::Null, |n| json!(n)),
                    if i == 0 { ratio.clone() } else { json!("") },
                ]);
            }
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(system: &str, ops_per_sec: f64) -> StepResult {
        StepResult {
            step: "put".into(),
            system: system.into(),
            clients: 4,
            ops: 10,
            errors: 0,
            ops_per_sec,
            p50_ms: 1.0,
            p99_ms: 2.0,
            p999_ms: 3.0,
            rss_mib: 50.0,
            cpu_secs: 0.5,
            leader_changes: Some(0),
        }
    }

    #[test]
    fn the_table_pairs_each_step_with_the_keel_etcd_ratio() {
        let etcd = EtcdArgs {
            binary: "etcd".into(),
            etcd_plaintext: false,
        };
        let t = table(
            &[step("keel", 300.0), step("etcd", 200.0)],
            Duration::from_secs(1),
            &etcd,
        );
        assert!(t.title.contains("over mutual TLS"), "{}", t.title);
        let text = t.render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(
            lines[2].contains("keel") && lines[2].ends_with("1.50x"),
            "{text}"
        );
        assert!(
            lines[3].contains("etcd") && !lines[3].contains('x'),
            "{text}"
        );
    }
}
