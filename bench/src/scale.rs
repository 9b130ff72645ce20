//! `keel bench scale`: Nodes and Pods of realistic size (labels, owner
//! references, two containers with probes and resources, tolerations, a
//! Running status) loaded through the REST API of three Keel members; then
//! LIST of every pod, LIST of one node's pods (`fieldSelector=spec.nodeName`)
//! and a watch of one node's pods. The same objects (the exact bytes Keel
//! stores, copied from its store) are then written to a three-member etcd,
//! and each member's memory and disk are compared. Kubernetes' documented
//! limits are 5,000 nodes and 150,000 pods; the defaults are a tenth of that
//! so the suite finishes in minutes on two cores.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use hyper::Method;
use keel_proto::member as pb;
use serde_json::{Value, json};

use super::cluster::{EtcdCluster, KeelCluster};
use super::http::Api;
use super::{Sampler, Table, disk_bytes, drive, micros, num, percentile, progress, usage};

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
    /// Times each LIST is repeated.
    #[arg(long, default_value_t = 5)]
    pub repeats: usize,
    /// The etcd binary of the baseline.
    #[arg(long, default_value = "etcd")]
    pub etcd: String,
    /// Print the results as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

fn node(i: usize) -> Value {
    let name = format!("node-{i:05}");
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {
            "kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
            "node.kubernetes.io/instance-type": "m5.xlarge", "topology.kubernetes.io/zone": format!("zone-{}", i % 3),
            "topology.kubernetes.io/region": "region-1"}},
        "spec": {"podCIDR": format!("10.{}.{}.0/24", 64 + i / 256, i % 256), "providerID": format!("example://region-1/{name}")},
        "status": {
            "capacity": {"cpu": "4", "memory": "16073948Ki", "pods": "110", "ephemeral-storage": "101445540Ki"},
            "allocatable": {"cpu": "3920m", "memory": "15035612Ki", "pods": "110", "ephemeral-storage": "93492209510"},
            "conditions": [
                {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory", "message": "kubelet has sufficient memory available", "lastHeartbeatTime": "2026-11-27T10:00:00Z", "lastTransitionTime": "2026-11-20T10:00:00Z"},
                {"type": "DiskPressure", "status": "False", "reason": "KubeletHasNoDiskPressure", "message": "kubelet has no disk pressure", "lastHeartbeatTime": "2026-11-27T10:00:00Z", "lastTransitionTime": "2026-11-20T10:00:00Z"},
                {"type": "PIDPressure", "status": "False", "reason": "KubeletHasSufficientPID", "message": "kubelet has sufficient PID available", "lastHeartbeatTime": "2026-11-27T10:00:00Z", "lastTransitionTime": "2026-11-20T10:00:00Z"},
                {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status", "lastHeartbeatTime": "2026-11-27T10:00:00Z", "lastTransitionTime": "2026-11-20T10:00:00Z"}],
            "addresses": [{"type": "InternalIP", "address": format!("192.168.{}.{}", i / 250, i % 250 + 1)}, {"type": "Hostname", "address": name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {"machineID": format!("{i:032x}"), "systemUUID": format!("{i:08x}-0000-4000-8000-000000000000"), "bootID": format!("{i:08x}-1111-4000-8000-000000000000"),
                "kernelVersion": "6.1.0-18-cloud-amd64", "osImage": "Debian GNU/Linux 12 (bookworm)", "containerRuntimeVersion": "containerd://1.7.13",
                "kubeletVersion": "v1.33.0", "kubeProxyVersion": "v1.33.0", "operatingSystem": "linux", "architecture": "amd64"}
        }
    })
}

fn pod(i: usize, nodes: usize) -> Value {
    let app = format!("app-{}", i % 50);
    let container = |name: &str, image: &str, port: u16| {
        json!({
            "name": name, "image": image,
            "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
            "env": [{"name": "LOG_LEVEL", "value": "info"}, {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}},
            "volumeMounts": [{"name": "config", "mountPath": "/etc/app"}, {"name": "kube-api-access", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true}],
            "livenessProbe": {"httpGet": {"path": "/healthz", "port": port}, "periodSeconds": 10},
            "readinessProbe": {"httpGet": {"path": "/ready", "port": port}, "periodSeconds": 5}
        })
    };
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": format!("{app}-{i:06}"),
            "labels": {"app": app, "tier": "backend", "pod-template-hash": "5d8f7c9b6d"},
            "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "9090"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("{app}-5d8f7c9b6d"),
                "uid": format!("{:08x}-2222-4000-8000-000000000000", i % 50), "controller": true, "blockOwnerDeletion": true}]
        },
        "spec": {
            "nodeName": format!("node-{:05}", i % nodes),
            "serviceAccountName": "default",
            "containers": [container("app", "registry.example.com/team/app:1.4.2", 8080), container("proxy", "registry.example.com/infra/proxy:2.1.0", 15001)],
            "volumes": [{"name": "config", "configMap": {"name": format!("{app}-config")}},
                {"name": "kube-api-access", "projected": {"sources": [{"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}}]}}],
            "tolerations": [
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}]
        },
        "status": {
            "phase": "Running", "qosClass": "Burstable",
            "hostIP": format!("192.168.{}.{}", (i % nodes) / 250, (i % nodes) % 250 + 1),
            "podIP": format!("10.{}.{}.{}", 64 + (i % nodes) / 256, (i % nodes) % 256, i / nodes % 250 + 2),
            "startTime": "2026-11-27T10:00:00Z",
            "conditions": [
                {"type": "Initialized", "status": "True", "lastTransitionTime": "2026-11-27T10:00:00Z"},
                {"type": "Ready", "status": "True", "lastTransitionTime": "2026-11-27T10:00:05Z"},
                {"type": "ContainersReady", "status": "True", "lastTransitionTime": "2026-11-27T10:00:05Z"},
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-11-27T10:00:00Z"}],
            "containerStatuses": [
                {"name": "app", "ready": true, "restartCount": 0, "image": "registry.example.com/team/app:1.4.2", "imageID": "registry.example.com/team/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "containerID": format!("containerd://{i:064x}"), "started": true, "state": {"running": {"startedAt": "2026-11-27T10:00:02Z"}}},
                {"name": "proxy", "ready": true, "restartCount": 0, "image": "registry.example.com/infra/proxy:2.1.0", "imageID": "registry.example.com/infra/proxy@sha256:fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210", "containerID": format!("containerd://{:064x}", (i + 1) << 20), "started": true, "state": {"running": {"startedAt": "2026-11-27T10:00:03Z"}}}]
        }
    })
}

/// Create `count` objects built by `make` at `path`, split over `clients`.
async fn load(
    apis: &Arc<Vec<Api>>,
    path: &'static str,
    count: usize,
    clients: usize,
    make: fn(usize, usize) -> Value,
    nodes: usize,
) -> Result<Duration> {
    let began = Instant::now();
    let per = count.div_ceil(clients.max(1));
    let apis = apis.clone();
    let (_, errors, _) = drive(clients, Duration::from_secs(24 * 3600), move |c, i| {
        let apis = apis.clone();
        async move {
            let n = c * per + i as usize;
            if i as usize >= per || n >= count {
                return Ok(false);
            }
            let body = make(n, nodes).to_string().into_bytes();
            apis[c % apis.len()]
                .ok(Method::POST, path, Some(body))
                .await?;
            Ok(true)
        }
    })
    .await;
    if errors > 0 {
        bail!("{errors} creates failed while loading {path}");
    }
    Ok(began.elapsed())
}

/// A table row of timed runs: how many, their rate, p50 and max.
fn timed_row(op: Value, system: Value, lat: &[u32], items: Value, mib: Value) -> Vec<Value> {
    let secs = lat.iter().map(|l| *l as f64).sum::<f64>() / 1e6;
    vec![
        op,
        system,
        json!(lat.len()),
        num(lat.len() as f64 / secs.max(1e-9)),
        num(percentile(lat, 0.5)),
        num(percentile(lat, 1.0)),
        items,
        mib,
    ]
}

/// A table row of a bulk load: how many objects and how fast.
fn load_row(op: &str, count: usize, took: Duration) -> Vec<Value> {
    vec![
        json!(op),
        json!("keel"),
        json!(count),
        num(count as f64 / took.as_secs_f64()),
        json!(null),
        json!(null),
        json!(count),
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
    if args.nodes == 0 {
        bail!("--nodes must be at least 1");
    }
    let dir = tempfile::Builder::new().prefix("keel-bench-").tempdir()?;
    let p = |m: &str| progress("scale", m);
    let sampler = Sampler::new();
    let mut lat_table = Table::new(
        &format!("{} nodes and {} pods", args.nodes, args.pods),
        &[
            "operation",
            "system",
            "runs",
            "per s",
            "p50 ms",
            "max ms",
            "items",
            "MiB",
        ],
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
    let keel = KeelCluster::launch(&dir.path().join("keel"), 3, &[]).await?;
    sampler.track("keel", keel.pids());
    let mut apis = Vec::new();
    for i in 0..3 {
        apis.push(keel.api(i, args.clients.div_ceil(3).div_ceil(50)).await?);
    }
    let apis = Arc::new(apis);
    p(&format!("keel: creating {} nodes", args.nodes));
    let took = load(
        &apis,
        "/api/v1/nodes",
        args.nodes,
        args.clients,
        |i, _| node(i),
        args.nodes,
    )
    .await?;
    lat_table.push(load_row("create nodes", args.nodes, took));
    p(&format!(
        "keel: {} nodes in {:.1} s; creating {} pods",
        args.nodes,
        took.as_secs_f64(),
        args.pods
    ));
    super::api::namespace(&apis[0], "scale").await?;
    let took = load(
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
    lat_table.push(load_row("create pods", args.pods, took));

    p("keel: LIST every pod");
    let size = Arc::new(AtomicUsize::new(0));
    let lat = timed(args.repeats, || {
        let api = apis[0].clone();
        let size = size.clone();
        let want = args.pods;
        async move {
            let body = api.ok(Method::GET, "/api/v1/pods", None).await?;
            let n = count(&body, b"\"nodeName\":");
            if n != want {
                bail!("LIST returned {n} pods, not {want}");
            }
            size.store(body.len(), Ordering::Relaxed);
            Ok(())
        }
    })
    .await?;
    lat_table.push(timed_row(
        json!("LIST all pods"),
        json!("keel"),
        &lat,
        json!(args.pods),
        num(size.load(Ordering::Relaxed) as f64 / (1 << 20) as f64),
    ));

    let node_name = format!("node-{:05}", args.nodes / 2);
    let per_node = (0..args.pods)
        .filter(|i| i % args.nodes == args.nodes / 2)
        .count();
    p(&format!("keel: LIST the pods of {node_name}"));
    let selector = format!("/api/v1/pods?fieldSelector=spec.nodeName%3D{node_name}");
    let rv = Arc::new(std::sync::Mutex::new(String::new()));
    let lat = timed(args.repeats * 4, || {
        let (api, path, rv) = (apis[1].clone(), selector.clone(), rv.clone());
        async move {
            let body = api.ok(Method::GET, &path, None).await?;
            let list: Value = serde_json::from_slice(&body)?;
            let n = list["items"].as_array().map_or(0, Vec::len);
            if n != per_node {
                bail!("LIST of one node returned {n} pods, not {per_node}");
            }
            *rv.lock().unwrap() = list["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or("")
                .to_string();
            Ok(())
        }
    })
    .await?;
    lat_table.push(timed_row(
        json!("LIST one node's pods"),
        json!("keel"),
        &lat,
        json!(per_node),
        json!(null),
    ));

    p(&format!(
        "keel: watch the pods of {node_name} while some change"
    ));
    let opened = Instant::now();
    let mut lines = apis[2]
        .stream(&format!(
            "{selector}&watch=true&resourceVersion={}",
            rv.lock().unwrap()
        ))
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
        json!(null),
        json!(null),
    ]);
    lat_table.push(timed_row(
        json!("watch one node's pods: event after the write is sent"),
        json!("keel"),
        &lat,
        json!(null),
        json!(null),
    ));
    let keel_peak = sampler.usage("keel").peak_rss_mib;
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

    // The same bytes, under the same keys, in etcd.
    p("etcd: starting three members and copying every object Keel stores");
    let etcd = EtcdCluster::launch(&dir.path().join("etcd"), 3, &args.etcd).await?;
    sampler.track("etcd", etcd.pids());
    let mut kv = keel.kv(0).await?.max_decoding_message_size(usize::MAX);
    let mut token = String::new();
    let mut batch: Vec<(String, Vec<u8>)> = Vec::new();
    let client = etcd_client::Client::connect(etcd.endpoints(), None).await?;
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
        num(size.load(Ordering::Relaxed) as f64 / (1 << 20) as f64),
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
    ));
    let etcd_peak = sampler.usage("etcd").peak_rss_mib;
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
