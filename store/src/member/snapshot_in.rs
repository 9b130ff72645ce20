//! Receiving a snapshot from the leader: its chunks arrive in order
//! ([`crate::transport::SnapshotChunk`], sent by `raft_network`), go into a
//! file of the snapshot directory (never into memory, and bounded in size
//! by [`crate::snapshot_file::MAX_SNAPSHOT_BYTES`]), and the whole is then
//! installed through openraft, which checks the sender's vote once more.

use openraft::async_runtime::WatchReceiver;
use openraft::raft::SnapshotResponse;
use tokio::io::AsyncWriteExt;

use super::Member;
use crate::snapshot_file::SnapshotData;
use crate::transport::SnapshotChunk;
use crate::{Snapshot, SnapshotMeta, TypeConfig, Vote};

/// A snapshot being received: the transfer it belongs to and where the next
/// chunk starts.
pub(crate) struct Incoming {
    vote: Vote,
    meta: SnapshotMeta,
    next: u64,
    data: SnapshotData,
}

impl Member {
    /// Take one chunk; after the last, install the snapshot. Answers with
    /// this member's vote, or why the chunk was refused (the leader then
    /// sends the snapshot again from its start).
    pub(super) async fn receive_snapshot_chunk(
        &self,
        chunk: SnapshotChunk,
    ) -> Result<SnapshotResponse<TypeConfig>, String> {
        let mine = self.raft.metrics().borrow_watched().vote;
        if mine.partial_cmp(&chunk.vote) == Some(std::cmp::Ordering::Greater) {
            // From a deposed leader: not worth a byte of disk.
            return Ok(SnapshotResponse::new(mine));
        }
        let mut slot = self.snapshot_in.lock().await;
        if chunk.offset == 0 {
            let data = self
                .snapshot_files
                .receive()
                .map_err(|e| format!("receiving a snapshot: {e}"))?;
            *slot = Some(Incoming {
                vote: chunk.vote,
                meta: chunk.meta.clone(),
                next: 0,
                data,
            });
        }
        let Some(incoming) = slot.as_mut() else {
            return Err(format!(
                "a snapshot chunk at offset {} without the chunks before it",
                chunk.offset
            ));
        };
        if incoming.vote != chunk.vote
            || incoming.meta.last_log_id != chunk.meta.last_log_id
            || incoming.next != chunk.offset
        {
            let expected = incoming.next;
            *slot = None;
            return Err(format!(
                "a snapshot chunk at offset {} of {:?} does not continue the transfer in progress (expected offset {expected})",
                chunk.offset, chunk.meta.last_log_id
            ));
        }
        if let Err(e) = incoming.data.write_all(&chunk.data).await {
            *slot = None;
            return Err(format!("writing a received snapshot: {e}"));
        }
        incoming.next += chunk.data.len() as u64;
        if !chunk.done {
            return Ok(SnapshotResponse::new(
                self.raft.metrics().borrow_watched().vote,
            ));
        }
        let Some(Incoming {
            vote, meta, data, ..
        }) = slot.take()
        else {
            unreachable!("checked above")
        };
        tracing::info!(
            last_log_id = ?meta.last_log_id,
            bytes = chunk.offset + chunk.data.len() as u64,
            "received a snapshot"
        );
        self.raft
            .install_full_snapshot(
                vote,
                Snapshot {
                    meta,
                    snapshot: data,
                },
            )
            .await
            .map_err(|e| format!("installing a received snapshot: {e}"))
    }
}
