//! `keel bench scale --hollow`: the control plane at work rather than the
//! store at rest. Three members (every controller on, as `keel server`
//! runs them) and `keel hollow-nodes` processes with `--nodes` simulated
//! nodes; then `--deployments` Deployments whose replicas add up to
//! `--pods`. One watch of the pods times, per pod, its creation by its
//! ReplicaSet, its binding by the scheduler and its Running and Ready
//! status from its hollow node. Reported: time to all nodes Ready, the
//! pod creation rate beside the scheduler's binding rate, the
//! create-to-bound latency, the time to all pods Running, and the members'
//! and hollow processes' memory. `--bare-pods` creates the pods
//! themselves instead (the scheduler's throughput without the workload
//! controllers).

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use hyper::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{MIB, ScaleBenchArgs};
use crate::cluster::{KeelCluster, keel_exe};
use crate::http::Api;
use crate::{Proc, Sampler, Table, micros, num, percentile, progress, usage};

/// How often the progress of pods is reported.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// After this long without a pod event, a LIST checks the watch.
const QUIET: Duration = Duration::from_secs(30);

/// What a pod watch event says that the benchmark times.
#[derive(Deserialize)]
struct WatchEvent {
    #[serde(rename = "type")]
    type_: String,
    object: PodView,
}

#[derive(Deserialize, Default)]
struct PodView {
    #[serde(default)]
    metadata: MetaView,
    #[serde(default)]
    spec: SpecView,
    #[serde(default)]
    status: StatusView,
}

#[derive(Deserialize, Default)]
struct MetaView {
    #[serde(default)]
    uid: String,
    #[serde(default, rename = "resourceVersion")]
    resource_version: String,
}

#[derive(Deserialize, Default)]
struct SpecView {
    #[serde(default, rename = "nodeName")]
    node_name: String,
}

#[derive(Deserialize, Default)]
struct StatusView {
    #[serde(default)]
    phase: String,
    #[serde(default)]
    conditions: Vec<ConditionView>,
}

#[derive(Deserialize, Default)]
struct ConditionView {
    #[serde(rename = "type")]
    type_: String,
    status: String,
}

/// When the benchmark saw one pod reach each stage (since the start).
#[derive(Default, Clone, Copy)]
struct Seen {
    created: Duration,
    bound: Option<Duration>,
    running: Option<Duration>,
}

/// Every pod's stages, and how many reached each.
#[derive(Default)]
struct Timeline {
    pods: HashMap<String, Seen>,
    bound: usize,
    running: usize,
}

impl Timeline {
    fn observe(&mut self, pod: &PodView, at: Duration) {
        if pod.metadata.uid.is_empty() {
            return;
        }
        let seen = self.pods.entry(pod.metadata.uid.clone()).or_insert(Seen {
            created: at,
            ..Seen::default()
        });
        if seen.bound.is_none() && !pod.spec.node_name.is_empty() {
            seen.bound = Some(at);
            self.bound += 1;
        }
        let ready = pod
            .status
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        if seen.running.is_none() && pod.status.phase == "Running" && ready {
            seen.running = Some(at);
            self.running += 1;
        }
    }
}

pub async fn run(args: &ScaleBenchArgs) -> Result<Vec<Table>> {
    if args.nodes == 0 || args.pods == 0 || args.deployments == 0 {
        bail!("--nodes, --pods and --deployments must be at least 1");
    }
    let dir = tempfile::Builder::new().prefix("keel-bench-").tempdir()?;
    match run_in(&dir, args).await {
        Ok(tables) => Ok(tables),
        // Keep the members' and hollow processes' logs for a look at what
        // went wrong.
        Err(e) => {
            let kept = dir.keep();
            Err(e.context(format!("logs kept in {}", kept.display())))
        }
    }
}

async fn run_in(dir: &tempfile::TempDir, args: &ScaleBenchArgs) -> Result<Vec<Table>> {
    let p = |m: &str| progress("scale", m);
    let sampler = Sampler::new();
    let carriers = if args.bare_pods {
        "created bare".to_string()
    } else {
        format!("in {} Deployments", args.deployments)
    };
    let mut table = Table::new(
        &format!("{} hollow nodes, {} pods {carriers}", args.nodes, args.pods),
        &["step", "count", "seconds", "per s", "p50 ms", "p99 ms"],
    );

    p(&format!(
        "starting a three-member keel cluster under {}",
        dir.path().display()
    ));
    let keel = KeelCluster::launch(&dir.path().join("keel"), 3, &[]).await?;
    sampler.track("keel", keel.pids());
    let mut apis = Vec::new();
    for i in 0..3 {
        apis.push(keel.api(i, 2).await?);
    }
    let apis = Arc::new(apis);

    // Hollow nodes, spread over processes and members.
    let procs = args.hollow_processes.clamp(1, args.nodes);
    let mut hollow = Vec::new();
    for i in 0..procs {
        let count = args.nodes / procs + usize::from(i < args.nodes % procs);
        let kubeconfig = keel.members[i % 3].dir.join("kubeconfig");
        let log = std::fs::File::create(dir.path().join(format!("hollow-{i}.log")))?;
        let child = Command::new(keel_exe()?)
            .args(["hollow-nodes", "--count", &count.to_string()])
            .args(["--prefix", &format!("hollow-{i}")])
            .args(["--pod-watch", &args.hollow_pod_watch])
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting keel hollow-nodes")?;
        hollow.push(Proc { child });
    }
    sampler.track("hollow", hollow.iter().map(Proc::pid).collect());
    p(&format!(
        "{} hollow nodes in {procs} processes: waiting for them to be Ready",
        args.nodes
    ));
    let began = Instant::now();
    let deadline = began + args.timeout;
    loop {
        let ready = ready_nodes(&apis[0]).await.unwrap_or(0);
        if ready >= args.nodes {
            break;
        }
        for (i, h) in hollow.iter_mut().enumerate() {
            if let Some(status) = h.exited() {
                bail!(
                    "hollow-nodes process {i} exited ({status}); see {}",
                    dir.path().display()
                );
            }
        }
        if Instant::now() > deadline {
            bail!(
                "only {ready} of {} nodes Ready after {:?}",
                args.nodes,
                args.timeout
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let took = began.elapsed();
    p(&format!(
        "{} nodes Ready in {:.1} s",
        args.nodes,
        took.as_secs_f64()
    ));
    table.push(row("nodes registered and Ready", args.nodes, took, None));

    super::super::api::namespace(&apis[0], "scale").await?;
    // The watch starts before the first Deployment: it sees every pod.
    let mut watch = apis[1]
        .stream("/api/v1/namespaces/scale/pods?watch=1")
        .await?;
    let start = Instant::now();
    let creating = if args.bare_pods {
        p(&format!("creating {} pods (no Deployments)", args.pods));
        let (apis, pods, clients) = (apis.clone(), args.pods, args.clients.max(1));
        tokio::spawn(async move {
            let mut tasks = tokio::task::JoinSet::new();
            for c in 0..clients {
                let apis = apis.clone();
                tasks.spawn(async move {
                    for i in (c..pods).step_by(clients) {
                        let body = serde_json::to_vec(&bare_pod(i))?;
                        apis[i % 3]
                            .ok(Method::POST, "/api/v1/namespaces/scale/pods", Some(body))
                            .await?;
                    }
                    anyhow::Ok(())
                });
            }
            while let Some(r) = tasks.join_next().await {
                r??;
            }
            anyhow::Ok(start.elapsed())
        })
    } else {
        p(&format!(
            "creating {} Deployments ({} pods)",
            args.deployments, args.pods
        ));
        let apis = apis.clone();
        let (d, pods) = (args.deployments, args.pods);
        tokio::spawn(async move {
            let mut tasks = tokio::task::JoinSet::new();
            for i in 0..d {
                let replicas = pods / d + usize::from(i < pods % d);
                let api = apis.clone();
                tasks.spawn(async move {
                    let body = serde_json::to_vec(&deployment(i, replicas))?;
                    api[i % 3]
                        .ok(
                            Method::POST,
                            "/apis/apps/v1/namespaces/scale/deployments",
                            Some(body),
                        )
                        .await
                        .map(drop)
                });
            }
            while let Some(r) = tasks.join_next().await {
                r??;
            }
            anyhow::Ok(start.elapsed())
        })
    };

    let mut timeline = Timeline::default();
    let mut last_report = Instant::now();
    let mut rv = String::new();
    let mut last_event = Instant::now();
    while timeline.running < args.pods {
        if Instant::now() > start + args.timeout {
            bail!(
                "after {:?}: {} pods seen, {} bound, {} Running (of {})",
                args.timeout,
                timeline.pods.len(),
                timeline.bound,
                timeline.running,
                args.pods
            );
        }
        if last_report.elapsed() >= PROGRESS_EVERY {
            last_report = Instant::now();
            p(&format!(
                "after {:.0} s: {} pods created, {} bound, {} Running",
                start.elapsed().as_secs_f64(),
                timeline.pods.len(),
                timeline.bound,
                timeline.running
            ));
        }
        let line = tokio::time::timeout(PROGRESS_EVERY, watch.next()).await;
        let line = match line {
            // Quiet for long: check with a LIST that the watch missed nothing.
            Err(_) if last_event.elapsed() >= QUIET => {
                last_event = Instant::now();
                let before = (timeline.pods.len(), timeline.bound, timeline.running);
                (rv, watch) = resync(&apis[1], &mut timeline, start, args.timeout).await?;
                let after = (timeline.pods.len(), timeline.bound, timeline.running);
                if after != before {
                    p(&format!(
                        "the pod watch missed events: (created, bound, Running) {before:?} by the watch, {after:?} by a LIST; watching again"
                    ));
                }
                continue;
            }
            Err(_) => continue,
            Ok(Ok(Some(l))) => l,
            // The watch ended or broke: list what is there now and watch again.
            Ok(_) => {
                (rv, watch) = resync(&apis[1], &mut timeline, start, args.timeout).await?;
                continue;
            }
        };
        let Ok(ev) = serde_json::from_slice::<WatchEvent>(&line) else {
            continue;
        };
        match ev.type_.as_str() {
            "ADDED" | "MODIFIED" => {
                last_event = Instant::now();
                rv = ev.object.metadata.resource_version.clone();
                timeline.observe(&ev.object, start.elapsed());
            }
            "ERROR" => {
                (rv, watch) = resync(&apis[1], &mut timeline, start, args.timeout).await?;
            }
            _ => {}
        }
    }
    let all_running = start.elapsed();
    let requests = creating.await??;
    let _ = rv;

    let seen: Vec<Seen> = timeline.pods.values().copied().collect();
    let last_created = seen.iter().map(|s| s.created).max().unwrap_or_default();
    let first_bound = seen
        .iter()
        .filter_map(|s| s.bound)
        .min()
        .unwrap_or_default();
    let last_bound = seen
        .iter()
        .filter_map(|s| s.bound)
        .max()
        .unwrap_or_default();
    let mut bind_lat: Vec<u32> = seen
        .iter()
        .filter_map(|s| s.bound.map(|b| micros(b.saturating_sub(s.created))))
        .collect();
    bind_lat.sort_unstable();
    let mut run_lat: Vec<u32> = seen
        .iter()
        .filter_map(|s| Some(micros(s.running?.saturating_sub(s.bound?))))
        .collect();
    run_lat.sort_unstable();
    if args.bare_pods {
        table.push(row("pods created (requests)", args.pods, requests, None));
    } else {
        table.push(row(
            "Deployments created (requests)",
            args.deployments,
            requests,
            None,
        ));
        table.push(row(
            "pods created by ReplicaSets",
            seen.len(),
            last_created,
            None,
        ));
    }
    table.push(row(
        "pods bound by the scheduler (created → bound)",
        timeline.bound,
        last_bound.saturating_sub(first_bound),
        Some(&bind_lat),
    ));
    table.push(row(
        "pods Running and Ready (bound → Ready)",
        timeline.running,
        all_running,
        Some(&run_lat),
    ));
    p(&format!(
        "all {} pods Running in {:.1} s; binding {:.0} pods/s",
        args.pods,
        all_running.as_secs_f64(),
        timeline.bound as f64
            / last_bound
                .saturating_sub(first_bound)
                .as_secs_f64()
                .max(1e-3)
    ));

    let mut mem = Table::new(
        "memory and CPU",
        &["process", "RSS MiB now", "peak RSS MiB", "CPU s"],
    );
    for (i, pid) in keel.pids().into_iter().enumerate() {
        mem.push(vec![
            json!(format!("keel member {}", i + 1)),
            num(usage(&[pid]).0 as f64 / MIB),
            json!(""),
            num(usage(&[pid]).1),
        ]);
    }
    mem.push(vec![
        json!("keel, 3 members"),
        num(usage(&keel.pids()).0 as f64 / MIB),
        num(sampler.usage("keel").peak_rss_mib),
        num(usage(&keel.pids()).1),
    ]);
    let hollow_pids: Vec<u32> = hollow.iter().map(Proc::pid).collect();
    mem.push(vec![
        json!(format!("keel hollow-nodes, {procs} processes")),
        num(usage(&hollow_pids).0 as f64 / MIB),
        num(sampler.usage("hollow").peak_rss_mib),
        num(usage(&hollow_pids).1),
    ]);
    drop(hollow);
    Ok(vec![table, mem])
}

/// A table row: `count` in `took`, the rate, and latency percentiles.
fn row(step: &str, count: usize, took: Duration, lat: Option<&[u32]>) -> Vec<Value> {
    let secs = took.as_secs_f64();
    let pct = |q| {
        lat.filter(|l| !l.is_empty())
            .map_or(json!(""), |l| num(percentile(l, q)))
    };
    vec![
        json!(step),
        json!(count),
        num(secs),
        num(count as f64 / secs.max(1e-3)),
        pct(0.5),
        pct(0.99),
    ]
}

/// How many nodes are Ready.
async fn ready_nodes(api: &Api) -> Result<usize> {
    let body = api.ok(Method::GET, "/api/v1/nodes", None).await?;
    let list: Value = serde_json::from_slice(&body)?;
    Ok(list["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter(|n| {
                    n["status"]["conditions"].as_array().is_some_and(|cs| {
                        cs.iter()
                            .any(|c| c["type"] == "Ready" && c["status"] == "True")
                    })
                })
                .count()
        })
        .unwrap_or(0))
}

/// List the pods again (stages seen now count as now) and watch from the
/// list's resourceVersion, asking again until `start + timeout` while the
/// member is busy.
async fn resync(
    api: &Api,
    timeline: &mut Timeline,
    start: Instant,
    timeout: Duration,
) -> Result<(String, crate::http::Lines)> {
    let deadline = start + timeout;
    let rv = relist(api, timeline, start.elapsed(), deadline).await?;
    let watch = watch_pods(api, &rv, deadline).await?;
    Ok((rv, watch))
}

/// Watch the pods from `rv`, asking again while the member is busy or
/// leaderless, until the deadline.
async fn watch_pods(api: &Api, rv: &str, deadline: Instant) -> Result<crate::http::Lines> {
    let path = format!("/api/v1/namespaces/scale/pods?watch=1&resourceVersion={rv}");
    loop {
        match api.stream(&path).await {
            Ok(lines) => return Ok(lines),
            Err(e) if Instant::now() < deadline => {
                progress("scale", &format!("pod watch: {e}; asking again"));
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// List the pods after a broken watch (stages seen now count as now);
/// the list's resourceVersion to watch from.
async fn relist(
    api: &Api,
    timeline: &mut Timeline,
    at: Duration,
    deadline: Instant,
) -> Result<String> {
    let path = "/api/v1/namespaces/scale/pods";
    let body = loop {
        let (status, body) = api.call(Method::GET, path, None).await?;
        match status.as_u16() {
            200 => break body,
            // A busy or leaderless member: ask again until the deadline.
            429 | 503 | 504 if Instant::now() < deadline => {
                progress(
                    "scale",
                    &format!("LIST of the pods: {status}; asking again"),
                );
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            _ => bail!(
                "GET {path}: {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(300)])
            ),
        }
    };
    #[derive(Deserialize)]
    struct List {
        metadata: MetaView,
        items: Vec<PodView>,
    }
    let list: List = serde_json::from_slice(&body)?;
    for pod in &list.items {
        timeline.observe(pod, at);
    }
    Ok(list.metadata.resource_version)
}

/// The pod template: small (10m CPU, 16Mi), as a pause container.
fn template(app: &str) -> Value {
    json!({
        "metadata": {"labels": {"app": app}},
        "spec": {"containers": [{
            "name": "app", "image": "registry.k8s.io/pause:3.10",
            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}
        }]}
    })
}

/// Bare pod `i` (`--bare-pods`), not scheduled yet.
fn bare_pod(i: usize) -> Value {
    let mut pod = template("bare");
    pod["apiVersion"] = json!("v1");
    pod["kind"] = json!("Pod");
    pod["metadata"]["name"] = json!(format!("bare-{i:06}"));
    pod["metadata"]["namespace"] = json!("scale");
    pod
}

/// Deployment `i` with `replicas` small pods.
fn deployment(i: usize, replicas: usize) -> Value {
    let name = format!("load-{i:05}");
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "scale"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": template(&name)
        }
    })
}
