//! What a member has served, counted, and its state and counters rendered in
//! the Prometheus text format.

use std::sync::atomic::{AtomicU64, Ordering};

use super::Member;
use openraft::async_runtime::WatchReceiver;

/// Counters of what a member has served, exported by [`Member::render_metrics`].
#[derive(Default)]
pub struct Counters {
    pub writes_applied: AtomicU64,
    pub writes_failed_precondition: AtomicU64,
    pub writes_error: AtomicU64,
    pub writes_forwarded: AtomicU64,
    /// Calls that carried forwarded writes to the leader: concurrent writes
    /// on a follower go together, so fewer calls than writes under load.
    pub forward_calls: AtomicU64,
    /// Forwarded proposals sent straight to the leader this follower hears
    /// from, without first asking its own Raft core who leads.
    pub forwards_direct: AtomicU64,
    pub reads_linearizable: AtomicU64,
    pub reads_local: AtomicU64,
    pub watches_started: AtomicU64,
    /// Leadership confirmations (read index) a busy quorum did not answer in
    /// time, tried again.
    pub read_index_retries: AtomicU64,
    /// Read-index requests to Raft: on the leader, each a leadership
    /// confirmation with a quorum (one per round, however many reads wait
    /// on it).
    pub read_index_confirmations: AtomicU64,
    /// Calls from members of another cluster, refused.
    pub wrong_cluster: AtomicU64,
    /// Writes on the leader that first renewed its lapsed lease with a
    /// quorum (just elected, or its followers were slow to answer).
    pub lease_renewals: AtomicU64,
}

pub(super) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

pub(super) fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

impl Member {
    /// Prometheus text exposition of this member's state and counters.
    pub fn render_metrics(&self) -> String {
        let m = self.raft.metrics().borrow_watched().clone();
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
            for (labels, v) in samples {
                out.push_str(&format!("{name}{labels} {v}\n"));
            }
        };
        let is_leader = u64::from(m.current_leader == Some(self.config.id));
        metric(
            "keel_raft_term",
            "gauge",
            "Current Raft term.",
            &[("", m.current_term)],
        );
        metric(
            "keel_raft_is_leader",
            "gauge",
            "1 if this member leads.",
            &[("", is_leader)],
        );
        metric(
            "keel_raft_has_leader",
            "gauge",
            "1 if this member knows a leader.",
            &[("", u64::from(self.heard_leader(m.current_leader).is_some()))],
        );
        metric(
            "keel_raft_last_log_index",
            "gauge",
            "Index of the last entry in the local Raft log.",
            &[("", m.last_log_index.unwrap_or(0))],
        );
        metric(
            "keel_raft_applied_index",
            "gauge",
            "Index of the last applied entry (the member's revision).",
            &[("", m.last_applied.map(|l| l.index).unwrap_or(0))],
        );
        metric(
            "keel_raft_snapshot_index",
            "gauge",
            "Index covered by the current snapshot.",
            &[("", m.snapshot.map(|l| l.index).unwrap_or(0))],
        );
        metric(
            "keel_raft_purged_index",
            "gauge",
            "Index up to which the Raft log was purged.",
            &[("", m.purged.map(|l| l.index).unwrap_or(0))],
        );
        metric(
            "keel_store_compacted_revision",
            "gauge",
            "Events at or below this revision are compacted.",
            &[("", self.hub.compacted())],
        );
        metric(
            "keel_store_watchers",
            "gauge",
            "Open watchers.",
            &[("", self.hub.watcher_count() as u64)],
        );
        metric(
            "keel_store_writes_total",
            "counter",
            "Proposals submitted to this member, by result.",
            &[
                ("{result=\"applied\"}", get(&c.writes_applied)),
                (
                    "{result=\"precondition_failed\"}",
                    get(&c.writes_failed_precondition),
                ),
                ("{result=\"error\"}", get(&c.writes_error)),
            ],
        );
        metric(
            "keel_peer_calls_refused_total",
            "counter",
            "Calls from members of another cluster (another cluster id), refused.",
            &[("{reason=\"wrong_cluster\"}", get(&c.wrong_cluster))],
        );
        if let Some(id) = self.cluster_id() {
            let labels = format!("{{cluster_id=\"{id}\"}}");
            metric(
                "keel_cluster_info",
                "gauge",
                "The cluster's identity (1 with its id as a label).",
                &[(labels.as_str(), 1)],
            );
        }
        metric(
            "keel_store_writes_forwarded_total",
            "counter",
            "Proposals forwarded to the leader.",
            &[("", get(&c.writes_forwarded))],
        );
        metric(
            "keel_store_forward_calls_total",
            "counter",
            "Calls to the leader carrying forwarded proposals (concurrent ones go together).",
            &[("", get(&c.forward_calls))],
        );
        metric(
            "keel_store_forwards_direct_total",
            "counter",
            "Forwarded proposals sent straight to the leader this follower hears from, without asking its own Raft core.",
            &[("", get(&c.forwards_direct))],
        );
        metric(
            "keel_store_reads_total",
            "counter",
            "Reads served, by consistency.",
            &[
                ("{consistency=\"linearizable\"}", get(&c.reads_linearizable)),
                ("{consistency=\"local\"}", get(&c.reads_local)),
            ],
        );
        metric(
            "keel_store_watches_started_total",
            "counter",
            "Watches started.",
            &[("", get(&c.watches_started))],
        );
        metric(
            "keel_store_read_index_retries_total",
            "counter",
            "Leadership confirmations for a read that a quorum did not answer in time, tried again.",
            &[("", get(&c.read_index_retries))],
        );
        metric(
            "keel_store_lease_renewals_total",
            "counter",
            "Writes on the leader that first confirmed its leadership with a quorum because its lease had lapsed (just elected, or its followers were slow to answer).",
            &[("", get(&c.lease_renewals))],
        );
        metric(
            "keel_store_read_index_confirmations_total",
            "counter",
            "Read-index requests to Raft (on the leader, leadership confirmations with a quorum); one round serves every linearizable read waiting when it started.",
            &[("", get(&c.read_index_confirmations))],
        );
        if let Some(archived) = self.archive.archived() {
            let a = &self.archive;
            let revision = self.hub.revision();
            metric(
                "keel_archive_revision",
                "gauge",
                "Every event up to this revision is in the event archive (or a recorded gap).",
                &[("", archived)],
            );
            metric(
                "keel_archive_lag_revisions",
                "gauge",
                "Revisions applied on this member and not yet archived.",
                &[("", revision.saturating_sub(archived))],
            );
            metric(
                "keel_archive_segments_total",
                "counter",
                "Archive segments written by this member since it started.",
                &[("", get(&a.segments))],
            );
            metric(
                "keel_archive_gaps_total",
                "counter",
                "Gaps recorded in the archive (events deleted before they were archived).",
                &[("", get(&a.gaps))],
            );
            metric(
                "keel_archive_failures_total",
                "counter",
                "Archiving steps that failed and were retried.",
                &[("", get(&a.failures))],
            );
        }
        out
    }
}
