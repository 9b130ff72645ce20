//! A work queue of keys: a key queued twice before it is taken is processed
//! once, a key being processed that is queued again is processed again after,
//! and a failed key comes back after an exponential delay (per key, reset on
//! success). One consumer; producers are the watch handlers.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

/// The first and the longest retry delay.
const BASE_DELAY: Duration = Duration::from_millis(200);
const MAX_DELAY: Duration = Duration::from_secs(30);

struct Inner<K> {
    order: VecDeque<K>,
    queued: HashSet<K>,
    failures: HashMap<K, u32>,
}

/// Cheap to clone; every clone is the same queue.
pub struct Queue<K> {
    inner: Arc<Mutex<Inner<K>>>,
    notify: Arc<Notify>,
}

impl<K> Clone for Queue<K> {
    fn clone(&self) -> Self {
        Queue {
            inner: self.inner.clone(),
            notify: self.notify.clone(),
        }
    }
}

impl<K: Clone + Eq + Hash + Send + 'static> Default for Queue<K> {
    fn default() -> Self {
        Queue {
            inner: Arc::new(Mutex::new(Inner {
                order: VecDeque::new(),
                queued: HashSet::new(),
                failures: HashMap::new(),
            })),
            notify: Arc::new(Notify::new()),
        }
    }
}

impl<K: Clone + Eq + Hash + Send + 'static> Queue<K> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<K>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queue `key` unless it is already waiting.
    pub fn add(&self, key: K) {
        let mut q = self.lock();
        if q.queued.insert(key.clone()) {
            q.order.push_back(key);
            drop(q);
            self.notify.notify_one();
        }
    }

    /// Queue `key` after `delay`.
    pub fn add_after(&self, key: K, delay: Duration) {
        let q = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            q.add(key);
        });
    }

    /// The key failed: queue it again after its next backoff delay.
    pub fn retry(&self, key: K) {
        let n = {
            let mut q = self.lock();
            let n = q.failures.entry(key.clone()).or_insert(0);
            *n = n.saturating_add(1);
            *n
        };
        self.add_after(key, backoff(n));
    }

    /// The key succeeded: its next failure starts from the first delay.
    pub fn forget(&self, key: &K) {
        self.lock().failures.remove(key);
    }

    /// Keys waiting.
    pub fn len(&self) -> usize {
        self.lock().order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The next key, waiting for one.
    pub async fn next(&self) -> K {
        loop {
            let notified = self.notify.notified();
            {
                let mut q = self.lock();
                if let Some(k) = q.order.pop_front() {
                    q.queued.remove(&k);
                    if !q.order.is_empty() {
                        // Wake another waiter, if any; a lone consumer just loops.
                        self.notify.notify_one();
                    }
                    return k;
                }
            }
            notified.await;
        }
    }
}

/// The delay before the `n`th retry (1-based).
pub fn backoff(n: u32) -> Duration {
    let d = BASE_DELAY.saturating_mul(1u32 << n.saturating_sub(1).min(16));
    d.min(MAX_DELAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn deduplicates_waiting_keys_and_keeps_order() {
        let q = Queue::default();
        q.add("a");
        q.add("b");
        q.add("a");
        assert_eq!(q.len(), 2);
        assert_eq!(q.next().await, "a");
        q.add("a");
        assert_eq!(q.next().await, "b");
        assert_eq!(q.next().await, "a");
        assert!(q.is_empty());
    }

    #[tokio::test]
    async fn a_waiting_consumer_wakes_for_a_delayed_key() {
        let q = Queue::default();
        q.add_after(7u32, Duration::from_millis(20));
        let got = tokio::time::timeout(Duration::from_secs(5), q.next()).await;
        assert_eq!(got.unwrap(), 7);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(1), BASE_DELAY);
        assert_eq!(backoff(2), BASE_DELAY * 2);
        assert_eq!(backoff(40), MAX_DELAY);
    }
}
