//! Event retention: the leader periodically compacts the event log down to
//! a count and an age bound, in small steps between writes.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::Notify;

use super::{Member, blocking};
use crate::db::Db;
use crate::error::StoreError;
use crate::read;
use crate::state_machine::AppliedState;

/// How long events are kept.
#[derive(Clone, Copy, Debug)]
pub struct RetentionConfig {
    /// Keep at most this many events.
    pub max_events: u64,
    /// Drop events older than this (`None`: no age limit).
    pub max_age: Option<Duration>,
    /// How often the leader checks.
    pub interval: Duration,
    /// At most this many events are dropped by one compaction command, so
    /// compaction proceeds in small steps between writes.
    pub batch: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            max_events: 100_000,
            max_age: Some(Duration::from_secs(3600)),
            interval: Duration::from_secs(5),
            batch: 10_000,
        }
    }
}

impl Member {
    /// One step of retention on the leader: the revision to compact up to, if any.
    pub async fn retention_target(&self, now_ms: u64) -> Result<Option<u64>, StoreError> {
        let db = self.db.clone();
        let cfg = self.config.retention;
        blocking(move || retention_target(&db, &cfg, now_ms)).await
    }
}

/// Walk the oldest events: the newest revision that the count or age bound
/// allows to drop, at most `batch` events past the compacted revision.
fn retention_target(
    db: &Db,
    cfg: &RetentionConfig,
    now_ms: u64,
) -> Result<Option<u64>, StoreError> {
    let state = AppliedState::load(db)?;
    let cutoff = cfg
        .max_age
        .map(|a| now_ms.saturating_sub(a.as_millis() as u64));
    let mut target = None;
    let mut dropped = 0u64;
    read::scan_events_from(
        db,
        state.compacted + 1,
        "scanning events for retention",
        |event| {
            let rev = event.revision;
            let over_count = state.event_count.saturating_sub(dropped) > cfg.max_events;
            let too_old = match cutoff {
                Some(c) => event.decode()?.at_ms < c,
                None => false,
            };
            // Stay on revision boundaries: once a revision is started it is taken whole.
            if target != Some(rev) && (!(over_count || too_old) || dropped >= cfg.batch) {
                return Ok(false);
            }
            target = Some(rev);
            dropped += 1;
            Ok(true)
        },
    )?;
    Ok(target.filter(|t| *t > state.compacted))
}

pub(super) async fn retention_loop(member: Weak<Member>, stop: Arc<Notify>) {
    let interval = match member.upgrade() {
        Some(m) => m.config.retention.interval,
        None => return,
    };
    loop {
        tokio::select! {
            _ = stop.notified() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        let Some(m) = member.upgrade() else { return };
        if !m.is_leader() {
            continue;
        }
        match m.retention_target(crate::command::now_ms()).await {
            Ok(Some(target)) => match m.compact(target).await {
                Ok(c) => tracing::debug!(compacted = c, "retention compacted the event log"),
                Err(e) => tracing::warn!(error = %e, "retention compaction failed"),
            },
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "retention scan failed"),
        }
    }
}
