//! Loading the scale suite's objects in bulk, through the API or straight
//! into the store, with a progress line every few seconds (loading the
//! documented limits takes minutes).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use hyper::Method;
use keel_proto::member as pb;
use serde_json::Value;

use super::objects::pod;
use crate::cluster::KeelCluster;
use crate::http::Api;
use crate::{drive, progress};

/// How often a bulk load reports its progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// A line every [`PROGRESS_EVERY`] while `done` counts up to `count`
/// (`what` names the objects); stops when the returned task is aborted.
fn report_progress(
    what: &str,
    done: Arc<AtomicUsize>,
    count: usize,
) -> tokio::task::JoinHandle<()> {
    let what = what.to_string();
    let began = Instant::now();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(PROGRESS_EVERY);
        tick.tick().await;
        let mut last = 0;
        loop {
            tick.tick().await;
            let n = done.load(Ordering::Relaxed);
            progress(
                "scale",
                &format!(
                    "{what}: {n} of {count} after {:.0} s ({:.0}/s in the last {} s)",
                    began.elapsed().as_secs_f64(),
                    (n - last) as f64 / PROGRESS_EVERY.as_secs_f64(),
                    PROGRESS_EVERY.as_secs()
                ),
            );
            last = n;
        }
    })
}

/// Run `op(n)` for every `n` below `count`, split over `clients` that each
/// take a contiguous range, reporting progress; the time taken and the
/// sorted latencies (µs). Fails if any `op` failed.
async fn bulk<F, Fut>(
    what: &str,
    count: usize,
    clients: usize,
    op: F,
) -> Result<(Duration, Vec<u32>)>
where
    F: Fn(usize, usize) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send,
{
    let began = Instant::now();
    let per = count.div_ceil(clients.max(1));
    let done = Arc::new(AtomicUsize::new(0));
    let ticker = report_progress(what, done.clone(), count);
    // The first failure's message, so a run that fails says why.
    let first: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
    let first_seen = first.clone();
    let (lat, errors, _) = drive(clients, Duration::from_secs(24 * 3600), move |c, i| {
        let (op, done, first) = (op.clone(), done.clone(), first_seen.clone());
        async move {
            let n = c * per + i as usize;
            if i as usize >= per || n >= count {
                return Ok(false);
            }
            if let Err(e) = op(c, n).await {
                first
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get_or_insert_with(|| format!("{e:#}"));
                return Err(e);
            }
            done.fetch_add(1, Ordering::Relaxed);
            Ok(true)
        }
    })
    .await;
    ticker.abort();
    if errors > 0 {
        let why = first
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .unwrap_or_default();
        bail!("{what}: {errors} of {count} failed; the first: {why}");
    }
    Ok((began.elapsed(), lat))
}

/// Create `count` objects built by `make` at `path` through the API, split over `clients`.
pub async fn load(
    apis: &Arc<Vec<Api>>,
    path: &'static str,
    count: usize,
    clients: usize,
    make: fn(usize, usize) -> Value,
    nodes: usize,
) -> Result<(Duration, Vec<u32>)> {
    let apis = apis.clone();
    bulk(
        &format!("keel: POST {path}"),
        count,
        clients,
        move |c, n| {
            let apis = apis.clone();
            async move {
                let body = make(n, nodes).to_string().into_bytes();
                apis[c % apis.len()]
                    .ok(Method::POST, path, Some(body))
                    .await?;
                Ok(())
            }
        },
    )
    .await
}

/// The store's own put rate for comparison with pod creation: `count`
/// creates of the same pod JSON under keys of their own, through the `Kv`
/// API of all three members, by the same number of clients.
pub async fn store_puts(
    keel: &KeelCluster,
    count: usize,
    clients: usize,
    nodes: usize,
) -> Result<(Duration, Vec<u32>)> {
    let mut kvs = Vec::new();
    for i in 0..keel.members.len() {
        kvs.push(keel.kv(i).await?);
    }
    let kvs = Arc::new(kvs);
    bulk("keel store: puts", count, clients, move |c, n| {
        let mut kv = kvs[c % kvs.len()].clone();
        async move {
            kv.txn(pb::TxnRequest {
                ops: vec![pb::Operation {
                    kind: pb::operation::Kind::Create as i32,
                    key: format!("/bench/scale-puts/{n:06}"),
                    value: pod(n, nodes).to_string().into_bytes(),
                    ..Default::default()
                }],
            })
            .await?;
            Ok(())
        }
    })
    .await
}
