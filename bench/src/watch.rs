//! `keel bench watch`: many concurrent watchers on one member while a writer
//! runs at a fixed rate. Delivery latency is measured from the write's
//! acknowledgment (as the writer saw it) to the event's receipt by each
//! watcher (an event that arrives before the acknowledgment counts as 0).
//! Three systems run the same shape: Keel's Kubernetes API (watch of
//! ConfigMaps in a namespace, over HTTP/2), Keel's store (`Kv.Watch` over
//! gRPC) and etcd (watch of a prefix). A watcher "fell behind" when it had
//! not received every acknowledged write by the end of the grace period.
//! The watchers are read by one task per hundred, each line or message
//! looked at in place, so the load generator stays cheap at 10,000.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use futures::{Stream, StreamExt};
use hyper::Method;
use keel_proto::member as pb;
use serde_json::json;

use super::cluster::{EtcdCluster, KeelCluster};
use super::http::{Api, Lines, STREAMS_PER_CONNECTION};
use super::{Sampler, Table, num, parse_duration, progress};

mod hist;

use hist::{Hist, LocalHist};

/// Options of `keel bench watch`.
#[derive(clap::Args, Clone, Debug)]
pub struct WatchBenchArgs {
    /// Concurrent watchers, comma-separated.
    #[arg(long, default_value = "1000,10000", value_delimiter = ',')]
    pub watchers: Vec<usize>,
    /// Writes per second, comma-separated.
    #[arg(long, default_value = "100,1000", value_delimiter = ',')]
    pub rates: Vec<u64>,
    /// How long the writer runs at each rate.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub duration: Duration,
    /// How long watchers may take to catch up after the writer stops.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub grace: Duration,
    /// Bytes of data per written object.
    #[arg(long, default_value_t = 256)]
    pub value_size: usize,
    /// Systems to run, comma-separated (keel-api, keel-store, etcd).
    #[arg(
        long,
        default_value = "keel-api,keel-store,etcd",
        value_delimiter = ','
    )]
    pub systems: Vec<String>,
    #[command(flatten)]
    pub etcd: super::cluster::EtcdArgs,
    /// Print the results as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Watchers one task polls: each event costs the load generator one poll
/// of one stream, not one task wakeup per watcher (at 10,000 watchers the
/// generator shares the cores with the member it measures).
const WATCHERS_PER_TASK: usize = 100;

/// What the writer and the watchers of one step share.
struct Shared {
    base: Instant,
    /// Per sequence number: nanoseconds after `base` + 1 when acknowledged, 0 before.
    acks: Vec<AtomicU64>,
    hist: Hist,
    planned: u64,
    stop_at: Instant,
    behind: AtomicUsize,
    dropped: AtomicUsize,
    delivered: AtomicU64,
}

impl Shared {
    /// Microseconds from the acknowledgment of write `seq` to now (0 when
    /// the event came first).
    fn latency_us(&self, seq: u64) -> u64 {
        let now = self.base.elapsed().as_nanos() as u64 + 1;
        let acked = self
            .acks
            .get(seq as usize)
            .map_or(0, |a| a.load(Ordering::Acquire));
        if acked == 0 || acked > now {
            0
        } else {
            (now - acked) / 1000
        }
    }
}

/// The digits after the last `/` or after `"name":"w-` in an event.
fn seq_in(bytes: &[u8], marker: &[u8]) -> Option<u64> {
    // memmem: a line per event per watcher goes through here.
    let at = memchr::memmem::find(bytes, marker)? + marker.len();
    let digits = bytes[at..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    std::str::from_utf8(&bytes[at..at + digits])
        .ok()?
        .parse()
        .ok()
}

fn seq_of_key(key: &[u8]) -> Option<u64> {
    let at = key.iter().rposition(|b| *b == b'/')? + 1;
    std::str::from_utf8(&key[at..]).ok()?.parse().ok()
}

/// What one watcher's stream produced.
enum Got {
    /// One line of an API watch: the object's sequence number, if it names one.
    Line(Option<u64>),
    Store(pb::WatchReply),
    Etcd(etcd_client::WatchResponse),
    /// The stream ended or failed: the server dropped the watcher.
    Ended,
}

/// A watcher's stream, tagged with its index in its task.
type Tagged = Pin<Box<dyn Stream<Item = (usize, Got)> + Send>>;

/// A stream that tags `stream`'s items and ends with [`Got::Ended`].
fn tagged<S, T, E>(i: usize, stream: S, got: fn(T) -> Got) -> Tagged
where
    S: Stream<Item = std::result::Result<T, E>> + Send + 'static,
    T: 'static,
    E: 'static,
{
    Box::pin(
        stream
            .map(move |r| (i, r.map_or(Got::Ended, got)))
            .chain(futures::stream::once(async move { (i, Got::Ended) })),
    )
}

/// An API watch's lines as a tagged stream; each line is looked at in place.
fn api_lines(i: usize, lines: Lines) -> Tagged {
    Box::pin(futures::stream::unfold(
        Some(lines),
        move |lines| async move {
            let mut lines = lines?;
            match lines.next_with(|line| seq_in(line, b"\"name\":\"w-")).await {
                Ok(Some(seq)) => Some(((i, Got::Line(seq)), Some(lines))),
                _ => Some(((i, Got::Ended), None)),
            }
        },
    ))
}

/// One task's watchers, polled together until each has every planned
/// event, its stream ends, or the step's time is up. Latencies go to a
/// histogram of the task's own, added to the shared one at the end.
async fn watch_many(shared: Arc<Shared>, streams: Vec<Tagged>) {
    let n = streams.len();
    let planned = shared.planned;
    let mut all = futures::stream::select_all(streams);
    let (mut counts, mut done) = (vec![0u64; n], vec![false; n]);
    let (mut open, mut dropped) = (n, 0);
    let mut local = LocalHist::new();
    let deadline = tokio::time::Instant::from_std(shared.stop_at);
    while open > 0 {
        let Ok(Some((w, got))) = tokio::time::timeout_at(deadline, all.next()).await else {
            break;
        };
        if done[w] {
            continue;
        }
        let mut seen = |seq: Option<u64>| {
            if let Some(seq) = seq {
                local.record(shared.latency_us(seq));
                counts[w] += 1;
            }
        };
        let ended = matches!(got, Got::Ended);
        match got {
            Got::Line(seq) => seen(seq),
            Got::Store(reply) => reply
                .events
                .iter()
                .for_each(|e| seen(e.kv.as_ref().and_then(|kv| seq_of_key(kv.key.as_bytes())))),
            Got::Etcd(resp) => resp
                .events()
                .iter()
                .for_each(|e| seen(e.kv().and_then(|kv| seq_of_key(kv.key())))),
            Got::Ended => {}
        }
        if ended {
            dropped += 1;
        }
        if ended || counts[w] >= planned {
            done[w] = true;
            open -= 1;
        }
    }
    let behind = counts.iter().filter(|c| **c < planned).count();
    shared.behind.fetch_add(behind, Ordering::Relaxed);
    shared.dropped.fetch_add(dropped, Ordering::Relaxed);
    shared.delivered.fetch_add(local.count, Ordering::Relaxed);
    local.merge_into(&shared.hist);
}

/// Where a step writes and watches.
enum Target {
    Api {
        api: Api,
        writer: Api,
        ns: String,
    },
    Store {
        channels: Vec<tonic::transport::Channel>,
        writer: Box<pb::kv_client::KvClient<tonic::transport::Channel>>,
        prefix: String,
    },
    Etcd {
        clients: Vec<etcd_client::Client>,
        writer: Box<etcd_client::Client>,
        prefix: String,
    },
}

/// Open `n` watchers, each registered with the server before this returns,
/// and start the tasks that read them ([`WATCHERS_PER_TASK`] per task).
async fn start_watchers(
    target: &Target,
    n: usize,
    shared: &Arc<Shared>,
) -> Result<Vec<tokio::task::JoinHandle<()>>> {
    let rv = match target {
        Target::Api { writer, ns, .. } => {
            let list = writer
                .ok(
                    Method::GET,
                    &format!("/api/v1/namespaces/{ns}/configmaps?limit=1"),
                    None,
                )
                .await?;
            serde_json::from_slice::<serde_json::Value>(&list)?["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or("0")
                .to_string()
        }
        _ => String::new(),
    };
    let (mut tasks, mut group) = (Vec::new(), Vec::new());
    for w in 0..n {
        let i = group.len();
        let stream = match target {
            // The client spreads streams over its connections in turn.
            Target::Api { api, ns, .. } => api_lines(
                i,
                api.stream(&format!(
                    "/api/v1/namespaces/{ns}/configmaps?watch=true&resourceVersion={rv}"
                ))
                .await?,
            ),
            Target::Store {
                channels, prefix, ..
            } => {
                let mut kv =
                    pb::kv_client::KvClient::new(channels[w / STREAMS_PER_CONNECTION].clone());
                let stream = kv
                    .watch(pb::WatchRequest {
                        prefix: prefix.clone(),
                        after_revision: None,
                    })
                    .await?
                    .into_inner();
                tagged(i, stream, Got::Store)
            }
            Target::Etcd {
                clients, prefix, ..
            } => {
                let mut c = clients[w / STREAMS_PER_CONNECTION].clone();
                let stream = c
                    .watch(
                        prefix.as_str(),
                        Some(etcd_client::WatchOptions::new().with_prefix()),
                    )
                    .await?;
                tagged(i, stream, Got::Etcd)
            }
        };
        group.push(stream);
        if group.len() == WATCHERS_PER_TASK || w + 1 == n {
            let streams = std::mem::take(&mut group);
            tasks.push(tokio::spawn(watch_many(shared.clone(), streams)));
        }
    }
    Ok(tasks)
}

/// Write `planned` objects at `rate` per second; returns how many were acknowledged.
async fn write(target: &Target, shared: &Arc<Shared>, rate: u64, size: usize) -> u64 {
    let acked = Arc::new(AtomicU64::new(0));
    let inflight = Arc::new(tokio::sync::Semaphore::new(256));
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = Vec::new();
    for seq in 0..shared.planned {
        tick.tick().await;
        let Ok(permit) = inflight.clone().acquire_owned().await else {
            break;
        };
        let (step, acked) = (shared.clone(), acked.clone());
        let value = "x".repeat(size);
        let fut: std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>> + Send>> =
            match target {
                Target::Api { writer, ns, .. } => {
                    let (w, ns) = (writer.clone(), ns.clone());
                    Box::pin(async move {
                        let body = json!({"apiVersion": "v1", "kind": "ConfigMap",
                            "metadata": {"name": format!("w-{seq}")}, "data": {"v": value}});
                        w.ok(
                            Method::POST,
                            &format!("/api/v1/namespaces/{ns}/configmaps"),
                            Some(body.to_string().into_bytes()),
                        )
                        .await?;
                        Ok(())
                    })
                }
                Target::Store { writer, prefix, .. } => {
                    let (mut w, key) = ((**writer).clone(), format!("{prefix}{seq}"));
                    Box::pin(async move {
                        w.txn(pb::TxnRequest {
                            ops: vec![pb::Operation {
                                kind: pb::operation::Kind::Create as i32,
                                key,
                                value: value.into_bytes(),
                                ..Default::default()
                            }],
                        })
                        .await?;
                        Ok(())
                    })
                }
                Target::Etcd { writer, prefix, .. } => {
                    let (mut w, key) = ((**writer).clone(), format!("{prefix}{seq}"));
                    Box::pin(async move {
                        w.put(key, value, None).await?;
                        Ok(())
                    })
                }
            };
        tasks.push(tokio::spawn(async move {
            if fut.await.is_ok() {
                step.acks[seq as usize]
                    .store(step.base.elapsed().as_nanos() as u64 + 1, Ordering::Release);
                acked.fetch_add(1, Ordering::Relaxed);
            }
            drop(permit);
        }));
        if Instant::now() > shared.stop_at {
            break;
        }
    }
    for t in tasks {
        let _ = t.await;
    }
    acked.load(Ordering::Relaxed)
}

pub async fn run(args: &WatchBenchArgs) -> Result<Vec<Table>> {
    let dir = tempfile::Builder::new().prefix("keel-bench-").tempdir()?;
    let p = |m: &str| progress("watch", m);
    let sampler = Sampler::new();
    let mut table = Table::new(
        "delivery latency from a write's acknowledgment to each watcher (all watchers on one member)",
        &[
            "system",
            "watchers",
            "writes/s",
            "acked",
            "delivered %",
            "p50 ms",
            "p99 ms",
            "max ms",
            "behind",
            "dropped",
            "peak RSS MiB",
            "CPU s",
        ],
    );
    let want = |s: &str| args.systems.iter().any(|x| x == s);
    let mut keel = None;
    let mut etcd = None;
    if want("keel-api") || want("keel-store") {
        p(&format!(
            "starting a three-member keel cluster under {}",
            dir.path().display()
        ));
        // No controllers: their watches and work would share the member measured.
        let c = KeelCluster::launch(dir.path(), 3, &["--controllers=false"]).await?;
        keel = Some(c);
    }
    if want("etcd") {
        p("starting a three-member etcd cluster");
        let c = EtcdCluster::launch(dir.path(), 3, &args.etcd).await?;
        etcd = Some(c);
    }
    let mut step = 0;
    for system in ["keel-api", "keel-store", "etcd"] {
        if !want(system) {
            continue;
        }
        for &n in &args.watchers {
            for &rate in &args.rates {
                step += 1;
                let conns = n.div_ceil(STREAMS_PER_CONNECTION);
                let target = match system {
                    "keel-api" => {
                        let k = keel.as_ref().expect("keel started");
                        let writer = k.api(0, 1).await?;
                        let ns = format!("watch-{step}");
                        super::api::namespace(&writer, &ns).await?;
                        Target::Api {
                            api: k.api(0, conns).await?,
                            writer,
                            ns,
                        }
                    }
                    "keel-store" => {
                        let k = keel.as_ref().expect("keel started");
                        let mut channels = Vec::new();
                        for _ in 0..conns {
                            channels.push(k.endpoint(0)?.connect().await?);
                        }
                        Target::Store {
                            channels,
                            writer: Box::new(k.kv(0).await?),
                            prefix: format!("/bench/watch/{step}/"),
                        }
                    }
                    _ => {
                        let e = etcd.as_ref().expect("etcd started");
                        let ep = [e.endpoint(0)];
                        let mut clients = Vec::new();
                        for _ in 0..conns {
                            clients.push(e.connect(&ep).await?);
                        }
                        let writer = Box::new(e.connect(&ep).await?);
                        Target::Etcd {
                            clients,
                            writer,
                            prefix: format!("/bench/watch/{step}/"),
                        }
                    }
                };
                let planned = (rate as f64 * args.duration.as_secs_f64()).round().max(1.0) as u64;
                p(&format!("{system}: opening {n} watchers"));
                let opened = Instant::now();
                // The step's clock starts once every watcher is registered.
                let mut shared = Shared {
                    base: Instant::now(),
                    acks: (0..planned).map(|_| AtomicU64::new(0)).collect(),
                    hist: Hist::new(),
                    planned,
                    stop_at: Instant::now() + Duration::from_secs(3600),
                    behind: AtomicUsize::new(0),
                    dropped: AtomicUsize::new(0),
                    delivered: AtomicU64::new(0),
                };
                // Watchers need the final stop time before they start: the
                // writer's duration, the grace, and the time opening them takes
                // is estimated generously and then waited out only if needed.
                let setup = Duration::from_millis(200 + n as u64 * 2);
                shared.stop_at = Instant::now() + setup + args.duration.mul_f64(1.5) + args.grace;
                let shared = Arc::new(shared);
                let tasks = start_watchers(&target, n, &shared).await?;
                p(&format!(
                    "{system}: {n} watchers open after {:.1} s; writing {planned} objects at {rate}/s",
                    opened.elapsed().as_secs_f64()
                ));
                let pids = if system == "etcd" {
                    etcd.as_ref().map(EtcdCluster::pids)
                } else {
                    keel.as_ref().map(KeelCluster::pids)
                };
                sampler.track(system, pids.unwrap_or_default());
                sampler.reset();
                let acked = write(&target, &shared, rate, args.value_size).await;
                for t in tasks {
                    let _ = t.await;
                }
                let u = sampler.usage(system);
                let delivered = shared.delivered.load(Ordering::Relaxed);
                let pct = 100.0 * delivered as f64 / (acked.max(1) * n as u64) as f64;
                p(&format!(
                    "{system}: {n} watchers at {rate}/s: {pct:.1}% delivered, p99 {:.1} ms, {} behind",
                    shared.hist.quantile(0.99),
                    shared.behind.load(Ordering::Relaxed)
                ));
                table.push(vec![
                    json!(system),
                    json!(n),
                    json!(rate),
                    json!(acked),
                    num(pct),
                    num(shared.hist.quantile(0.5)),
                    num(shared.hist.quantile(0.99)),
                    num(shared.hist.max.load(Ordering::Relaxed) as f64 / 1000.0),
                    json!(shared.behind.load(Ordering::Relaxed)),
                    json!(shared.dropped.load(Ordering::Relaxed)),
                    num(u.peak_rss_mib),
                    num(u.cpu_secs),
                ]);
                drop(target);
            }
        }
    }
    drop((keel, etcd));
    Ok(vec![table])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_are_found_in_events() {
        assert_eq!(
            seq_in(
                br#"{"type":"ADDED","object":{"metadata":{"name":"w-42","#,
                b"\"name\":\"w-"
            ),
            Some(42)
        );
        assert_eq!(seq_of_key(b"/bench/watch/3/17"), Some(17));
    }
}
