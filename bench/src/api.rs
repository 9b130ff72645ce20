//! `keel bench api`: create, get, list, update and delete of ConfigMaps
//! through the Kubernetes REST API of a three-member Keel cluster, with N
//! concurrent clients spread over the members (writes on followers are
//! forwarded to the leader, as in production). There is no etcd column:
//! etcd has no Kubernetes API; the baseline is Kubernetes' own API latency
//! SLOs (p99 ≤ 1 s for single-object calls, ≤ 5 s for namespace LISTs).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, bail};
use hyper::Method;
use serde_json::{Value, json};

use super::cluster::KeelCluster;
use super::http::Api;
use super::{Sampler, Table, drive, num, parse_duration, percentile, progress};

/// Options of `keel bench api`.
#[derive(clap::Args, Clone, Debug)]
pub struct ApiBenchArgs {
    /// How long each verb runs.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Concurrent clients (spread over the three members).
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// Concurrent clients of the LIST steps.
    #[arg(long, default_value_t = 4)]
    pub list_clients: usize,
    /// Objects in the namespaces the LIST steps read, comma-separated.
    #[arg(long, default_value = "1000,10000", value_delimiter = ',')]
    pub list_sizes: Vec<usize>,
    /// Bytes of data in each ConfigMap.
    #[arg(long, default_value_t = 1024)]
    pub value_size: usize,
    /// Print the results as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

fn configmap(name: &str, size: usize, generation: u64) -> Vec<u8> {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": {"app": "bench"}},
        "data": {"payload": "x".repeat(size), "generation": generation.to_string()},
    })
    .to_string()
    .into_bytes()
}

/// Create `count` ConfigMaps in `ns` as fast as `clients` can.
pub async fn load(apis: &[Api], ns: &str, count: usize, size: usize, clients: usize) -> Result<()> {
    let apis = Arc::new(apis.to_vec());
    let owned = ns.to_string();
    let per = count.div_ceil(clients.max(1));
    let (_, errors, _) = drive(clients, Duration::from_secs(3600), move |c, i| {
        let (apis, ns) = (apis.clone(), owned.clone());
        async move {
            let n = c * per + i as usize;
            if i as usize >= per || n >= count {
                return Ok(false);
            }
            let api = &apis[c % apis.len()];
            api.ok(
                Method::POST,
                &format!("/api/v1/namespaces/{ns}/configmaps"),
                Some(configmap(&format!("cm-{n:06}"), size, 0)),
            )
            .await?;
            Ok(true)
        }
    })
    .await;
    if errors > 0 {
        bail!("{errors} creates failed while loading {ns}");
    }
    Ok(())
}

pub async fn namespace(api: &Api, ns: &str) -> Result<()> {
    api.ok(
        Method::POST,
        "/api/v1/namespaces",
        Some(
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
                .to_string()
                .into_bytes(),
        ),
    )
    .await?;
    Ok(())
}

pub async fn run(args: &ApiBenchArgs) -> Result<Vec<Table>> {
    let dir = tempfile::Builder::new().prefix("keel-bench-").tempdir()?;
    let p = |m: &str| progress("api", m);
    p(&format!(
        "starting a three-member keel cluster under {}",
        dir.path().display()
    ));
    // No controllers: the API server and the store alone, as etcd's side.
    let cluster = KeelCluster::launch(dir.path(), 3, &["--controllers=false"]).await?;
    let sampler = Sampler::new();
    sampler.track("keel", cluster.pids());
    let mut apis = Vec::new();
    for i in 0..3 {
        apis.push(
            cluster
                .api(i, args.clients.div_ceil(3).div_ceil(50))
                .await?,
        );
    }
    namespace(&apis[0], "bench").await?;
    let mut table = Table::new(
        "ConfigMaps through the REST API of three members (keel)",
        &[
            "verb", "objects", "clients", "ops", "errors", "ops/s", "p50 ms", "p99 ms", "p999 ms",
            "RSS MiB", "CPU s", "SLO p99",
        ],
    );
    let apis = Arc::new(apis);
    let size = args.value_size;
    let mut row = |verb: &str,
                   objects: usize,
                   clients: usize,
                   out: (Vec<u32>, u64, Duration),
                   slo: &str,
                   sampler: &Sampler| {
        let (lat, errors, elapsed) = out;
        let u = sampler.usage("keel");
        p(&format!(
            "{verb}: {:.0} ops/s, p99 {:.2} ms, {errors} errors",
            lat.len() as f64 / elapsed.as_secs_f64(),
            percentile(&lat, 0.99)
        ));
        table.push(vec![
            json!(verb),
            json!(objects),
            json!(clients),
            json!(lat.len()),
            json!(errors),
            num(lat.len() as f64 / elapsed.as_secs_f64()),
            num(percentile(&lat, 0.5)),
            num(percentile(&lat, 0.99)),
            num(percentile(&lat, 0.999)),
            num(u.peak_rss_mib),
            num(u.cpu_secs),
            json!(slo),
        ]);
    };

    // Each client creates its own objects, then reads, updates and deletes them.
    let created = Arc::new(
        (0..args.clients)
            .map(|_| std::sync::atomic::AtomicU64::new(0))
            .collect::<Vec<_>>(),
    );
    p(&format!(
        "create: {} clients for {:?}",
        args.clients, args.duration
    ));
    sampler.reset();
    let out = {
        let (apis, created) = (apis.clone(), created.clone());
        drive(args.clients, args.duration, move |c, i| {
            let (apis, created) = (apis.clone(), created.clone());
            async move {
                apis[c % 3]
                    .ok(
                        Method::POST,
                        "/api/v1/namespaces/bench/configmaps",
                        Some(configmap(&format!("c{c}-{i}"), size, 0)),
                    )
                    .await?;
                created[c].store(i + 1, std::sync::atomic::Ordering::Relaxed);
                Ok(true)
            }
        })
        .await
    };
    row("create", 1, args.clients, out, "≤ 1 s", &sampler);
    let count = |c: usize| created[c].load(std::sync::atomic::Ordering::Relaxed);

    p(&format!(
        "get: {} clients for {:?}",
        args.clients, args.duration
    ));
    sampler.reset();
    let out = {
        let (apis, created) = (apis.clone(), created.clone());
        drive(args.clients, args.duration, move |c, i| {
            let (apis, created) = (apis.clone(), created.clone());
            async move {
                let n = created[c].load(std::sync::atomic::Ordering::Relaxed);
                if n == 0 {
                    return Ok(false);
                }
                apis[(c + 1) % 3]
                    .ok(
                        Method::GET,
                        &format!("/api/v1/namespaces/bench/configmaps/c{c}-{}", i % n),
                        None,
                    )
                    .await?;
                Ok(true)
            }
        })
        .await
    };
    row("get", 1, args.clients, out, "≤ 1 s", &sampler);

    p(&format!(
        "update: {} clients for {:?}",
        args.clients, args.duration
    ));
    sampler.reset();
    let out = {
        let (apis, created) = (apis.clone(), created.clone());
        drive(args.clients, args.duration, move |c, i| {
            let (apis, created) = (apis.clone(), created.clone());
            async move {
                let n = created[c].load(std::sync::atomic::Ordering::Relaxed);
                if n == 0 {
                    return Ok(false);
                }
                let name = format!("c{c}-{}", i % n);
                // An unconditional update (no resourceVersion), as `kubectl replace --force` is not.
                apis[c % 3]
                    .ok(
                        Method::PUT,
                        &format!("/api/v1/namespaces/bench/configmaps/{name}"),
                        Some(configmap(&name, size, i + 1)),
                    )
                    .await?;
                Ok(true)
            }
        })
        .await
    };
    row("update", 1, args.clients, out, "≤ 1 s", &sampler);

    for &objects in &args.list_sizes {
        let ns = format!("list-{objects}");
        p(&format!("loading {objects} ConfigMaps into {ns}"));
        namespace(&apis[0], &ns).await?;
        load(&apis, &ns, objects, size, args.clients).await?;
        p(&format!(
            "list of {objects}: {} clients for {:?}",
            args.list_clients, args.duration
        ));
        sampler.reset();
        let out = {
            let apis = apis.clone();
            drive(args.list_clients, args.duration, move |c, _| {
                let (apis, ns) = (apis.clone(), format!("list-{objects}"));
                async move {
                    let body = apis[c % 3]
                        .ok(
                            Method::GET,
                            &format!("/api/v1/namespaces/{ns}/configmaps"),
                            None,
                        )
                        .await?;
                    let list: Value = serde_json::from_slice(&body)?;
                    let n = list["items"].as_array().map_or(0, Vec::len);
                    if n != objects {
                        bail!("listed {n} of {objects}");
                    }
                    Ok(true)
                }
            })
            .await
        };
        row("list", objects, args.list_clients, out, "≤ 5 s", &sampler);
    }

    p(&format!(
        "delete: {} clients for {:?}",
        args.clients, args.duration
    ));
    sampler.reset();
    let totals: Vec<u64> = (0..args.clients).map(count).collect();
    let out = {
        let apis = apis.clone();
        let totals = Arc::new(totals);
        drive(args.clients, args.duration, move |c, i| {
            let (apis, totals) = (apis.clone(), totals.clone());
            async move {
                if i >= totals[c] {
                    return Ok(false);
                }
                apis[c % 3]
                    .ok(
                        Method::DELETE,
                        &format!("/api/v1/namespaces/bench/configmaps/c{c}-{i}"),
                        None,
                    )
                    .await?;
                Ok(true)
            }
        })
        .await
    };
    row("delete", 1, args.clients, out, "≤ 1 s", &sampler);
    drop(cluster);
    Ok(vec![table])
}
