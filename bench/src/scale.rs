//! `keel bench scale`: Nodes and Pods of realistic size (labels, owner
//! references, two containers with probes and resources, tolerations, a
//! Running status) loaded through the REST API of three Keel members; then
//! LIST of every pod (and how much the serving member's memory grows during
//! it), LIST of the pods of many nodes one at a time
//! (`fieldSelector=spec.nodeName`, as each kubelet does) and a watch of one
//! node's pods. The store's own put rate, with pod-sized values at the same
//! concurrency, is measured beside the API's pod creation rate. The same
//! objects (the exact bytes Keel stores, copied from its store) are then
//! written to a three-member etcd, and each member's memory and disk are
//! compared. Kubernetes' documented limits are 5,000 nodes and 150,000 pods
//! (`--nodes 5000 --pods 150000`); the defaults are a tenth of that so the
//! suite finishes in minutes on two cores.
//!
//! With `--hollow` it measures the control plane at work instead: hollow
//! nodes, pods created through Deployments, scheduled and run ([`hollow`]).

mod hollow;
mod load;
mod objects;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use hyper::Method;
use keel_proto::member as pb;
use serde_json::{Value, json};

use super::cluster::{EtcdCluster, KeelCluster};
use super::{Sampler, Table, disk_bytes, drive, micros, num, percentile, progress, usage};
use load::{load, store_puts};
use objects::{node, pod, pods_on};

/// The most puts of the store's own rate measurement (enough for a steady
/// rate; more would only lengthen the run).
const STORE_PUTS_MAX: usize = 20_000;

const MIB: f64 = (1 << 20) as f64;

/// Options of `keel bench scale`.
#[derive(clap::Args, Clone, Debug)]
pub struct ScaleBenchArgs {
    /// Nodes to create.
    #[arg(long, default_value_t = 500)]
    pub nodes: usize,
    /// Pods to create (spread evenly over the nodes).
    #[arg(long, default_value_t = 15_000)]
    pub pods: usize,
    /// Concurrent clients while loading.
    #[arg(long, default_value_t = 32)]
    pub clients: usize,
    /// Times each LIST of every pod is repeated.
    #[arg(long, default_value_t = 5)]
    pub repeats: usize,
    /// LISTs of one node's pods, each of a different node (spread over all).
    #[arg(long, default_value_t = 100)]
    pub node_lists: usize,
    #[command(flatten)]
    pub etcd: super::cluster::EtcdArgs,
    /// Print the results as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Hollow-node mode: `--nodes` simulated nodes (`keel hollow-nodes`)
    /// and `--pods` pods created through `--deployments` Deployments,
    /// scheduled and run (no etcd baseline).
    #[arg(long)]
    pub hollow: bool,
    /// Hollow mode: how many Deployments carry the pods.
    #[arg(long, default_value_t = 100)]
    pub deployments: usize,
    /// Hollow mode: create the pods themselves (`--clients` at a time)
    /// instead of through Deployments.
    #[arg(long)]
    pub bare_pods: bool,
    /// Hollow mode: how the hollow nodes watch their pods (`shared` or
    /// `per-node`, `keel hollow-nodes --pod-watch`).
    #[arg(long, default_value = "shared")]
    pub hollow_pod_watch: String,
    /// Hollow mode: how many `keel hollow-nodes` processes share the nodes.
    #[arg(long, default_value_t = 1)]
    pub hollow_processes: usize,
    /// Hollow mode: how long nodes may take to be Ready, and pods to run.
    #[arg(long, default_value = "30m", value_parser = crate::parse_duration)]
    pub timeout: Duration,
}

/// The columns of the operations table.
const COLUMNS: [&str; 10] = [
    "operation",
    "system",
    "runs",
    "per s",
    "p50 ms",
    "p99 ms",
    "max ms",
    "items",
    "MiB",
    "RSS +MiB",
];

/// A table row of timed runs one after another: how many, their rate, p50,
/// p99 and max; `grew` is how much the serving member's RSS grew.
fn timed_row(
    op: Value,
    system: Value,
    lat: &[u32],
    items: Value,
    mib: Value,
    grew: Value,
) -> Vec<Value> {
    let secs = lat.iter().map(|l| *l as f64).sum::<f64>() / 1e6;
    vec![
        op,
        system,
        json!(lat.len()),
        num(lat.len() as f64 / secs.max(1e-9)),
        num(percentile(lat, 0.5)),
        num(percentile(lat, 0.99)),
        num(percentile(lat, 1.0)),
        items,
        mib,
        grew,
    ]
}

/// A table row of a bulk load: how many objects, how fast overall, and the
/// latency of each request.
fn load_row(op: &str, system: &str, count: usize, took: Duration, lat: &[u32]) -> Vec<Value> {
    vec![
        json!(op),
        json!(system),
        json!(count),
        num(count as f64 / took.as_secs_f64()),
        num(percentile(lat, 0.5)),
        num(percentile(lat, 0.99)),
        num(percentile(lat, 1.0)),
        json!(count),
        json!(null),
        json!(null),
    ]
}

fn count(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .filter(|w| *w == needle)
        .count()
}

/// Time `n` runs of `f`; sorted latencies (µs).
async fn timed<F, Fut>(n: usize, mut f: F) -> Result<Vec<u32>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let mut lat = Vec::new();
    for _ in 0..n {
        let began = Instant::now();
        f().await?;
        lat.push(micros(began.elapsed()));
    }
    lat.sort_unstable();
    Ok(lat)
}

pub async fn run(args: &ScaleBenchArgs) -> Result<Vec<Table>> {
    if args.hollow {
        return hollow::run(args).await;
    }
    if args.nodes == 0 {
        bail!("--nodes must be at least 1");
    }
    let dir = tempfile::Builder::new().prefix("keel-bench-").tempdir()?;
    let p = |m: &str| progress("scale", m);
    let sampler = Sampler::new();
    let mut lat_table = Table::new(
        &format!("{} nodes and {} pods", args.nodes, args.pods),
        &COLUMNS,
    );
    let mut mem_table = Table::new(
        "each member holding the same objects",
        &[
            "system",
            "member",
            "RSS MiB",
            "peak RSS MiB, 3 members",
            "disk MiB",
        ],
    );

    p(&format!(
        "starting a three-member keel cluster under {}",
        dir.path().display()
    ));
    std::fs::create_dir_all(dir.path().join("keel"))?;
    std::fs::create_dir_all(dir.path().join("etcd"))?;
    // The API server and the store, as etcd's side: no controllers (the
    // garbage collector would delete these pods, whose owners do not exist).
    let keel = KeelCluster::launch(&dir.path().join("keel"), 3, &["--controllers=false"]).await?;
    sampler.track("keel", keel.pids());
    let mut apis = Vec::new();
    for i in 0..3 {
        apis.push(keel.api(i, args.clients.div_ceil(3).div_ceil(50)).await?);
    }
    let apis = Arc::new(apis);
    p(&format!("keel: creating {} nodes", args.nodes));
    let (took, lat) = load(
        &apis,
        "/api/v1/nodes",
        args.nodes,
        args.clients,
        |i, _| node(i),
        args.nodes,
    )
    .await?;
    lat_table.push(load_row("create nodes", "keel", args.nodes, took, &lat));
    p(&format!(
        "keel: {} nodes in {:.1} s; creating {} pods",
        args.nodes,
        took.as_secs_f64(),
        args.pods
    ));
    super::api::namespace(&apis[0], "scale").await?;
    let (took, lat) = load(
        &apis,
        "/api/v1/namespaces/scale/pods",
        args.pods,
        args.clients,
        pod,
        args.nodes,
    )
    .await?;
    p(&format!(
        "keel: {} pods in {:.1} s ({:.0}/s)",
        args.pods,
        took.as_secs_f64(),
        args.pods as f64 / took.as_secs_f64()
    ));
    let create_pods_took = took;
    lat_table.push(load_row("create pods", "keel", args.pods, took, &lat));
    // Where the store's own put rate goes, once the members' memory and disk
    // have been recorded (its keys would count in them).
    let store_puts_row = lat_table.rows.len();

    p("keel: LIST every pod");
    // How much the serving member's memory grows while it answers.
    let serving = keel.pids()[0];
    let list_sampler = Sampler::new();
    let rss_before = usage(&[serving]).0 as f64 / MIB;
    list_sampler.track("serving", vec![serving]);
    let (mut lat, mut size) = (Vec::new(), 0);
    for _ in 0..args.repeats {
        let began = Instant::now();
        let body = apis[0].ok(Method::GET, "/api/v1/pods", None).await?;
        lat.push(micros(began.elapsed()));
        let n = count(&body, b"\"nodeName\":");
        if n != args.pods {
            bail!("LIST returned {n} pods, not {}", args.pods);
        }
        size = body.len();
    }
    lat.sort_unstable();
    // LISTs shorter than the sampler's period may end before its first
    // sample: the RSS after them bounds the peak from below. Memory given
    // back during them counts as no growth.
    let after = usage(&[serving]).0 as f64 / MIB;
    let grew = (list_sampler.usage("serving").peak_rss_mib.max(after) - rss_before).max(0.0);
    drop(list_sampler);
    p(&format!(
        "keel: LIST of every pod: p50 {:.0} ms, {:.0} MiB; the serving member grew by {grew:.0} MiB",
        percentile(&lat, 0.5),
        size as f64 / MIB
    ));
    lat_table.push(timed_row(
        json!("LIST all pods"),
        json!("keel"),
        &lat,
        json!(args.pods),
        num(size as f64 / MIB),
        num(grew),
    ));

    // One LIST per node, as each kubelet does, over nodes spread evenly.
    let lists = args.node_lists.max(1);
    let stride = (args.nodes / lists).max(1);
    p(&format!(
        "keel: LIST the pods of {lists} nodes, one node at a time"
    ));
    let (mut lat, mut items, mut rv) = (Vec::new(), 0, String::new());
    for k in 0..lists {
        let n = (k * stride + stride / 2) % args.nodes;
        let path = format!("/api/v1/pods?fieldSelector=spec.nodeName%3Dnode-{n:05}");
        let began = Instant::now();
        let body = apis[1].ok(Method::GET, &path, None).await?;
        lat.push(micros(began.elapsed()));
        let list: Value = serde_json::from_slice(&body)?;
        let got = list["items"].as_array().map_or(0, Vec::len);
        let want = pods_on(n, args.nodes, args.pods);
        if got != want {
            bail!("LIST of node-{n:05} returned {got} pods, not {want}");
        }
        items += got;
        rv = list["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or("")
            .to_string();
    }
    lat.sort_unstable();
    p(&format!(
        "keel: LIST of one node's pods: p50 {:.2} ms, p99 {:.2} ms over {lists} nodes",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99)
    ));
    lat_table.push(timed_row(
        json!("LIST one node's pods"),
        json!("keel"),
        &lat,
        num(items as f64 / lists as f64),
        json!(null),
        json!(null),
    ));

    let node_name = format!("node-{:05}", args.nodes / 2);
    let selector = format!("/api/v1/pods?fieldSelector=spec.nodeName%3D{node_name}");

    p(&format!(
        "keel: watch the pods of {node_name} while some change"
    ));
    let opened = Instant::now();
    let mut lines = apis[2]
        .stream(&format!("{selector}&watch=true&resourceVersion={rv}"))
        .await?;
    let open_ms = opened.elapsed().as_secs_f64() * 1000.0;
    let names: Vec<String> = (0..args.pods)
        .filter(|i| i % args.nodes == args.nodes / 2)
        .take(args.repeats * 2)
        .map(|i| format!("app-{}-{i:06}", i % 50))
        .collect();
    let mut lat = Vec::new();
    for (k, name) in names.iter().enumerate() {
        let patch = json!({"metadata": {"labels": {"touched": k.to_string()}}});
        let sent = Instant::now();
        let (status, body) = {
            let api = &apis[0];
            let resp = api
                .call_with_type(
                    Method::PATCH,
                    &format!("/api/v1/namespaces/scale/pods/{name}"),
                    patch.to_string().into_bytes(),
                    "application/merge-patch+json",
                )
                .await?;
            (resp.0, resp.1)
        };
        if !status.is_success() {
            bail!("PATCH {name}: {status}: {}", String::from_utf8_lossy(&body));
        }
        loop {
            let line = tokio::time::timeout(Duration::from_secs(30), lines.next())
                .await
                .context("no watch event within 30 s")??
                .context("the watch ended")?;
            if count(&line, format!("\"name\":\"{name}\"").as_bytes()) > 0 {
                lat.push(micros(sent.elapsed()));
                break;
            }
        }
    }
    lat.sort_unstable();
    lat_table.push(vec![
        json!("watch one node's pods: open"),
        json!("keel"),
        json!(1),
        json!(null),
        num(open_ms),
        num(open_ms),
        num(open_ms),
        json!(null),
        json!(null),
        json!(null),
    ]);
    lat_table.push(timed_row(
        json!("watch one node's pods: event after the write is sent"),
        json!("keel"),
        &lat,
        json!(null),
        json!(null),
        json!(null),
    ));
    let keel_peak = sampler
        .usage("keel")
        .peak_rss_mib
        .max(usage(&keel.pids()).0 as f64 / MIB);
    for (i, m) in keel.members.iter().enumerate() {
        let pid = keel.pids()[i];
        mem_table.push(vec![
            json!("keel"),
            json!(i + 1),
            num(usage(&[pid]).0 as f64 / (1 << 20) as f64),
            if i == 0 { num(keel_peak) } else { json!(null) },
            num(disk_bytes(&m.dir) as f64 / (1 << 20) as f64),
        ]);
    }

    let puts = args.pods.min(STORE_PUTS_MAX);
    if puts > 0 {
        p(&format!(
            "keel store: {puts} puts of the same pods' JSON with {} clients (the API's ceiling)",
            args.clients
        ));
        let (took, lat) = store_puts(&keel, puts, args.clients, args.nodes).await?;
        let rate = puts as f64 / took.as_secs_f64();
        let api_rate = args.pods as f64 / create_pods_took.as_secs_f64();
        p(&format!(
            "keel store: {rate:.0} puts/s; pods through the API: {api_rate:.0}/s ({:.2}x the store)",
            api_rate / rate
        ));
        lat_table.rows.insert(
            store_puts_row,
            load_row(
                "store puts, pod-sized values, same clients",
                "keel store",
                puts,
                took,
                &lat,
            ),
        );
    }

    // The same bytes, under the same keys, in etcd.
    p("etcd: starting three members and copying every object Keel stores");
    let etcd = EtcdCluster::launch(&dir.path().join("etcd"), 3, &args.etcd).await?;
    sampler.track("etcd", etcd.pids());
    let mut kv = keel.kv(0).await?.max_decoding_message_size(usize::MAX);
    let mut token = String::new();
    let mut batch: Vec<(String, Vec<u8>)> = Vec::new();
    let client = etcd.connect(&etcd.endpoints()).await?;
    let copy_began = Instant::now();
    let mut copied = 0usize;
    loop {
        let page = kv
            .range(pb::RangeRequest {
                prefix: "/registry/".into(),
                limit: 1000,
                continue_token: token.clone(),
                ..Default::default()
            })
            .await?
            .into_inner();
        batch.extend(page.kvs.into_iter().map(|kv| (kv.key, kv.value)));
        let items = Arc::new(std::mem::take(&mut batch));
        let n = items.len();
        let (c, it, stride) = (client.clone(), items.clone(), args.clients);
        let (_, errors, _) = drive(args.clients, Duration::from_secs(3600), move |w, i| {
            let (mut c, it) = (c.clone(), it.clone());
            async move {
                let idx = w + i as usize * stride;
                let Some((k, v)) = it.get(idx) else {
                    return Ok(false);
                };
                c.put(k.clone(), v.clone(), None).await?;
                Ok(true)
            }
        })
        .await;
        if errors > 0 {
            bail!("{errors} etcd puts failed");
        }
        copied += n;
        if page.continue_token.is_empty() {
            break;
        }
        token = page.continue_token;
    }
    p(&format!(
        "etcd: {copied} objects copied in {:.1} s",
        copy_began.elapsed().as_secs_f64()
    ));
    let size = Arc::new(AtomicUsize::new(0));
    let lat = timed(args.repeats, || {
        // One response of every pod (tens of MiB), as a LIST without a limit reads it.
        let (mut c, size) = (
            client.kv_client().max_decoding_message_size(usize::MAX),
            size.clone(),
        );
        let want = args.pods;
        async move {
            let r = c
                .get(
                    "/registry/core/pods/",
                    Some(etcd_client::GetOptions::new().with_prefix()),
                )
                .await?;
            if r.kvs().len() != want {
                bail!("etcd range returned {} pods, not {want}", r.kvs().len());
            }
            size.store(
                r.kvs().iter().map(|kv| kv.value().len()).sum(),
                Ordering::Relaxed,
            );
            Ok(())
        }
    })
    .await?;
    lat_table.push(timed_row(
        json!("range all pods (what a LIST reads from etcd)"),
        json!("etcd"),
        &lat,
        json!(args.pods),
        num(size.load(Ordering::Relaxed) as f64 / MIB),
        json!(null),
    ));
    let lat = timed(args.repeats, || {
        let mut kv = kv.clone();
        let want = args.pods;
        async move {
            // Pages of 10,000: one gRPC message of the store is capped at 64 MiB.
            let (mut n, mut token) = (0, String::new());
            loop {
                let r = kv
                    .range(pb::RangeRequest {
                        prefix: "/registry/core/pods/".into(),
                        limit: 10_000,
                        continue_token: token,
                        ..Default::default()
                    })
                    .await?
                    .into_inner();
                n += r.kvs.len();
                if r.continue_token.is_empty() {
                    break;
                }
                token = r.continue_token;
            }
            if n != want {
                bail!("keel range returned {n} pods, not {want}");
            }
            Ok(())
        }
    })
    .await?;
    lat_table.push(timed_row(
        json!("range all pods (what a LIST reads from etcd)"),
        json!("keel store, pages of 10,000"),
        &lat,
        json!(args.pods),
        json!(null),
        json!(null),
    ));
    let etcd_peak = sampler
        .usage("etcd")
        .peak_rss_mib
        .max(usage(&etcd.pids()).0 as f64 / MIB);
    for (i, m) in etcd.members.iter().enumerate() {
        let pid = etcd.pids()[i];
        mem_table.push(vec![
            json!("etcd"),
            json!(i + 1),
            num(usage(&[pid]).0 as f64 / (1 << 20) as f64),
            if i == 0 { num(etcd_peak) } else { json!(null) },
            num(disk_bytes(&m.dir) as f64 / (1 << 20) as f64),
        ]);
    }
    drop((keel, etcd));
    Ok(vec![lat_table, mem_table])
}
