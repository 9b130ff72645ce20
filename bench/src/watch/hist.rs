//! Delivery latencies of the watch suite: a log-linear histogram shared by
//! every watcher, and a plain one each watcher task fills without atomics
//! and adds in when it is done (at 10,000 watchers, a shared atomic per
//! event would make the load generator the bottleneck).

use std::sync::atomic::{AtomicU64, Ordering};

/// Buckets of a histogram.
const BUCKETS: usize = 1024;

/// Latencies in a log-linear histogram (32 steps per power of two, so
/// about 3% precision), shared by every watcher without locks.
pub struct Hist {
    buckets: Vec<AtomicU64>,
    pub max: AtomicU64,
    count: AtomicU64,
}

impl Hist {
    pub fn new() -> Hist {
        Hist {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            max: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }
    fn index(us: u64) -> usize {
        if us < 64 {
            return us as usize;
        }
        let e = 63 - us.leading_zeros() as usize;
        (64 + (e - 6) * 32 + ((us >> (e - 5)) & 31) as usize).min(BUCKETS - 1)
    }
    fn lower(i: usize) -> u64 {
        if i < 64 {
            return i as u64;
        }
        let e = (i - 64) / 32 + 6;
        let sub = ((i - 64) % 32) as u64;
        (1u64 << e) + (sub << (e - 5))
    }
    /// Tests fill a shared histogram directly; watchers use [`LocalHist`].
    #[cfg(test)]
    fn record(&self, us: u64) {
        self.buckets[Self::index(us)].fetch_add(1, Ordering::Relaxed);
        self.max.fetch_max(us, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }
    /// The latency (ms) at quantile `q`.
    pub fn quantile(&self, q: f64) -> f64 {
        let total = self.count.load(Ordering::Relaxed);
        if total == 0 {
            return 0.0;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            seen += b.load(Ordering::Relaxed);
            if seen >= rank {
                return Self::lower(i) as f64 / 1000.0;
            }
        }
        self.max.load(Ordering::Relaxed) as f64 / 1000.0
    }
}

impl Default for Hist {
    fn default() -> Self {
        Self::new()
    }
}

/// A task's own histogram of [`Hist`]'s shape, merged when the task ends.
pub struct LocalHist {
    buckets: Vec<u64>,
    max: u64,
    pub count: u64,
}

impl Default for LocalHist {
    fn default() -> Self {
        Self::new()
    }
}

impl LocalHist {
    pub fn new() -> LocalHist {
        LocalHist {
            buckets: vec![0; BUCKETS],
            max: 0,
            count: 0,
        }
    }

    pub fn record(&mut self, us: u64) {
        self.buckets[Hist::index(us)] += 1;
        self.max = self.max.max(us);
        self.count += 1;
    }

    pub fn merge_into(&self, hist: &Hist) {
        for (i, n) in self.buckets.iter().enumerate() {
            if *n > 0 {
                hist.buckets[i].fetch_add(*n, Ordering::Relaxed);
            }
        }
        hist.max.fetch_max(self.max, Ordering::Relaxed);
        hist.count.fetch_add(self.count, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_cover_latencies_within_a_few_percent() {
        for us in [0u64, 1, 63, 64, 65, 1000, 12_345, 999_999, 40_000_000] {
            let lo = Hist::lower(Hist::index(us));
            assert!(lo <= us && us - lo <= us / 30 + 1, "{us} → {lo}");
        }
        let h = Hist::new();
        for us in 1..=1000 {
            h.record(us * 1000);
        }
        let p50 = h.quantile(0.5);
        assert!((480.0..=500.0).contains(&p50), "{p50}");
        assert_eq!(h.max.load(Ordering::Relaxed), 1_000_000);
    }

    #[test]
    fn a_merged_local_histogram_reads_like_a_shared_one() {
        let (shared, merged) = (Hist::new(), Hist::new());
        let mut local = LocalHist::new();
        for us in (1..=2000).map(|i| i * 37) {
            shared.record(us);
            local.record(us);
        }
        local.merge_into(&merged);
        for q in [0.5, 0.99, 1.0] {
            assert_eq!(shared.quantile(q), merged.quantile(q));
        }
        assert_eq!(merged.max.load(Ordering::Relaxed), 2000 * 37);
    }
}
