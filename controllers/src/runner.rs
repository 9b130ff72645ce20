//! Runs a `kube::runtime::Controller` with Keel's conventions: every
//! reconcile is timed and counted in [`Metrics`] (latency histogram,
//! errors, in-flight work as the queue depth), errors are logged and the
//! object is retried after a per-object exponential delay, and the
//! controller's own future ends only when its watches do.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::Resource;
use kube::runtime::Controller;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;

use crate::Error;
use crate::context::Context;

/// The first and the longest retry delay after a failed reconcile.
const BASE_DELAY: Duration = Duration::from_millis(250);
const MAX_DELAY: Duration = Duration::from_secs(60);

/// Per-object failure counts, for the exponential retry delay.
struct Backoff<K: Resource<DynamicType = ()>> {
    failures: Mutex<HashMap<ObjectRef<K>, u32>>,
}

impl<K: Resource<DynamicType = ()>> Backoff<K> {
    fn failed(&self, obj: &K) -> Duration {
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = f.entry(ObjectRef::from_obj(obj)).or_insert(0);
        *n = n.saturating_add(1);
        BASE_DELAY
            .saturating_mul(1u32 << (*n - 1).min(16))
            .min(MAX_DELAY)
    }

    fn succeeded(&self, obj: &K) {
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        f.remove(&ObjectRef::from_obj(obj));
    }
}

/// Drive `controller` with `reconcile` until its streams end. `reconcile`
/// gets the object and the context and says when to look again.
pub async fn run<K, F, Fut>(controller: Controller<K>, ctx: Context, reconcile: F)
where
    K: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
    F: Fn(Arc<K>, Context) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Action, Error>> + Send + 'static,
{
    let name = ctx.name;
    let backoff = Arc::new(Backoff::<K> {
        failures: Mutex::new(HashMap::new()),
    });
    let reconcile = Arc::new(reconcile);
    let b = backoff.clone();
    controller
        .run(
            move |obj: Arc<K>, ctx: Arc<Context>| {
                let reconcile = reconcile.clone();
                let backoff = b.clone();
                async move {
                    let ctx = (*ctx).clone();
                    let metrics = ctx.metrics.clone();
                    metrics.started(ctx.name);
                    let start = Instant::now();
                    let out = reconcile(obj.clone(), ctx.clone()).await;
                    metrics.finished(ctx.name, start.elapsed(), out.is_ok());
                    match out {
                        Ok(action) => {
                            backoff.succeeded(&obj);
                            Ok(action)
                        }
                        Err(e) => {
                            let delay = backoff.failed(&obj);
                            tracing::debug!(
                                controller = ctx.name,
                                object = %ObjectRef::from_obj(&*obj),
                                error = %e,
                                retry_in = ?delay,
                                "reconcile failed"
                            );
                            Err(Retry(e, delay))
                        }
                    }
                }
            },
            |_obj: Arc<K>, err: &Retry, _ctx: Arc<Context>| Action::requeue(err.1),
            Arc::new(ctx),
        )
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::trace!(controller = name, error = %e, "controller event");
            }
        })
        .await;
}

/// A failed reconcile and how long to wait before the next try.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Retry(Error, Duration);
