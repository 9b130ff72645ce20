//! Counters of the controller manager in Prometheus' text format: whether
//! this member leads, lease transitions seen, and per controller its queue
//! depth and reconciles (with errors). [`Metrics::render`] is what the
//! member's `/metrics` endpoint appends.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Shared by the manager and its controllers.
#[derive(Debug, Default)]
pub struct Metrics {
    leader: AtomicBool,
    acquired: AtomicU64,
    lost: AtomicU64,
    controllers: Mutex<BTreeMap<&'static str, Counters>>,
}

/// A metric: name, help, type and how to read it from a controller's counters.
type Series = (
    &'static str,
    &'static str,
    &'static str,
    fn(&Counters) -> u64,
);

/// One controller's numbers.
#[derive(Debug, Default, Clone, Copy)]
struct Counters {
    depth: u64,
    reconciles: u64,
    errors: u64,
    deletes: u64,
    patches: u64,
    creates: u64,
    in_flight: u64,
    /// Reconcile latencies: counts per [`BUCKETS`] bound (cumulative when
    /// rendered), their sum in microseconds.
    latency: [u64; BUCKETS.len()],
    latency_sum_us: u64,
}

/// Upper bounds (seconds) of the reconcile latency histogram.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

impl Metrics {
    pub fn set_leader(&self, leading: bool) {
        let was = self.leader.swap(leading, Ordering::AcqRel);
        match (was, leading) {
            (false, true) => self.acquired.fetch_add(1, Ordering::Relaxed),
            (true, false) => self.lost.fetch_add(1, Ordering::Relaxed),
            _ => 0,
        };
    }

    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::Acquire)
    }

    fn with(&self, controller: &'static str, f: impl FnOnce(&mut Counters)) {
        let mut m = self.controllers.lock().unwrap_or_else(|e| e.into_inner());
        f(m.entry(controller).or_default());
    }

    pub fn queue_depth(&self, controller: &'static str, depth: usize) {
        self.with(controller, |c| c.depth = depth as u64);
    }

    pub fn reconciled(&self, controller: &'static str, ok: bool) {
        self.with(controller, |c| {
            c.reconciles += 1;
            if !ok {
                c.errors += 1;
            }
        });
    }

    /// A reconcile began (counted in flight until [`Metrics::finished`]).
    pub fn started(&self, controller: &'static str) {
        self.with(controller, |c| c.in_flight += 1);
    }

    /// A reconcile that began with [`Metrics::started`] ended after `took`.
    pub fn finished(&self, controller: &'static str, took: std::time::Duration, ok: bool) {
        self.with(controller, |c| {
            c.in_flight = c.in_flight.saturating_sub(1);
            c.reconciles += 1;
            if !ok {
                c.errors += 1;
            }
            let secs = took.as_secs_f64();
            if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
                c.latency[i] += 1;
            }
            c.latency_sum_us += took.as_micros() as u64;
        });
    }

    /// An object the controller created.
    pub fn created(&self, controller: &'static str) {
        self.with(controller, |c| c.creates += 1);
    }

    /// An object the controller deleted.
    pub fn deleted(&self, controller: &'static str) {
        self.with(controller, |c| c.deletes += 1);
    }

    /// An object the controller patched (ownerReferences, finalizers).
    pub fn patched(&self, controller: &'static str) {
        self.with(controller, |c| c.patches += 1);
    }

    /// The Prometheus text exposition of every counter.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let gauge = |s: &mut String, name: &str, help: &str, kind: &str| {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        gauge(
            &mut s,
            "keel_controller_manager_leader",
            "Whether this member holds the controller lease.",
            "gauge",
        );
        let _ = writeln!(
            s,
            "keel_controller_manager_leader {}",
            u8::from(self.is_leader())
        );
        gauge(
            &mut s,
            "keel_controller_manager_leader_acquired_total",
            "Times this member became leader.",
            "counter",
        );
        let _ = writeln!(
            s,
            "keel_controller_manager_leader_acquired_total {}",
            self.acquired.load(Ordering::Relaxed)
        );
        gauge(
            &mut s,
            "keel_controller_manager_leader_lost_total",
            "Times this member lost the lease.",
            "counter",
        );
        let _ = writeln!(
            s,
            "keel_controller_manager_leader_lost_total {}",
            self.lost.load(Ordering::Relaxed)
        );
        let m = self
            .controllers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let series: [Series; 7] = [
            (
                "keel_controller_queue_depth",
                "Items waiting in the controller's work queue.",
                "gauge",
                |c| c.depth,
            ),
            (
                "keel_controller_reconciles_total",
                "Work items processed.",
                "counter",
                |c| c.reconciles,
            ),
            (
                "keel_controller_reconcile_errors_total",
                "Work items that failed and were retried.",
                "counter",
                |c| c.errors,
            ),
            (
                "keel_controller_deletes_total",
                "Objects deleted by the controller.",
                "counter",
                |c| c.deletes,
            ),
            (
                "keel_controller_patches_total",
                "Objects patched by the controller.",
                "counter",
                |c| c.patches,
            ),
            (
                "keel_controller_creates_total",
                "Objects created by the controller.",
                "counter",
                |c| c.creates,
            ),
            (
                "keel_controller_in_flight",
                "Reconciles running now.",
                "gauge",
                |c| c.in_flight,
            ),
        ];
        for (name, help, kind, get) in series {
            gauge(&mut s, name, help, kind);
            for (controller, c) in &m {
                let _ = writeln!(s, "{name}{{controller=\"{controller}\"}} {}", get(c));
            }
        }
        let h = "keel_controller_reconcile_duration_seconds";
        gauge(&mut s, h, "Time one reconcile took.", "histogram");
        for (controller, c) in &m {
            let mut cumulative = 0;
            for (bound, n) in BUCKETS.iter().zip(c.latency) {
                cumulative += n;
                let _ = writeln!(
                    s,
                    "{h}_bucket{{controller=\"{controller}\",le=\"{bound}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                s,
                "{h}_bucket{{controller=\"{controller}\",le=\"+Inf\"}} {}\n{h}_sum{{controller=\"{controller}\"}} {}\n{h}_count{{controller=\"{controller}\"}} {}",
                c.reconciles,
                c.latency_sum_us as f64 / 1e6,
                c.reconciles
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_leadership_and_per_controller_counters() {
        let m = Metrics::default();
        m.set_leader(true);
        m.reconciled("garbagecollector", true);
        m.reconciled("garbagecollector", false);
        m.queue_depth("namespace", 3);
        m.set_leader(false);
        let text = m.render();
        assert!(
            text.contains("keel_controller_manager_leader 0\n"),
            "{text}"
        );
        assert!(text.contains("keel_controller_manager_leader_acquired_total 1\n"));
        assert!(text.contains("keel_controller_manager_leader_lost_total 1\n"));
        assert!(
            text.contains("keel_controller_reconciles_total{controller=\"garbagecollector\"} 2\n")
        );
        assert!(text.contains(
            "keel_controller_reconcile_errors_total{controller=\"garbagecollector\"} 1\n"
        ));
        assert!(text.contains("keel_controller_queue_depth{controller=\"namespace\"} 3\n"));
    }

    #[test]
    fn reconcile_latency_is_a_cumulative_histogram() {
        let m = Metrics::default();
        m.started("deployment");
        assert!(
            m.render()
                .contains("keel_controller_in_flight{controller=\"deployment\"} 1\n")
        );
        m.finished("deployment", std::time::Duration::from_millis(3), true);
        m.started("deployment");
        m.finished("deployment", std::time::Duration::from_millis(300), false);
        let text = m.render();
        let h = "keel_controller_reconcile_duration_seconds";
        assert!(text.contains(&format!(
            "{h}_bucket{{controller=\"deployment\",le=\"0.0025\"}} 0\n"
        )));
        assert!(text.contains(&format!(
            "{h}_bucket{{controller=\"deployment\",le=\"0.005\"}} 1\n"
        )));
        assert!(text.contains(&format!(
            "{h}_bucket{{controller=\"deployment\",le=\"0.5\"}} 2\n"
        )));
        assert!(text.contains(&format!("{h}_count{{controller=\"deployment\"}} 2\n")));
        assert!(
            text.contains("keel_controller_reconcile_errors_total{controller=\"deployment\"} 1\n")
        );
        assert!(text.contains("keel_controller_in_flight{controller=\"deployment\"} 0\n"));
    }
}
