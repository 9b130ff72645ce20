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
}

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
        let series: [Series; 5] = [
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
        ];
        for (name, help, kind, get) in series {
            gauge(&mut s, name, help, kind);
            for (controller, c) in &m {
                let _ = writeln!(s, "{name}{{controller=\"{controller}\"}} {}", get(c));
            }
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
}
