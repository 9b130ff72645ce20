//! `Admin.Save`: a member's backup (`crate::backup`) streamed to the caller
//! in pieces of at most `SAVE_CHUNK_BYTES`, produced on a blocking thread
//! that waits while the caller reads, so the member holds only a few pieces
//! whatever the backup's size. A caller that goes away stops the save.

use std::io::Write;
use std::pin::Pin;
use std::sync::Arc;

use keel_proto::member as pb;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::server::to_status;
use crate::backup::SAVE_CHUNK_BYTES;
use crate::member::Member;

pub type SaveStream = Pin<Box<dyn Stream<Item = Result<pb::SaveChunk, Status>> + Send>>;

/// Pieces in flight between the blocking writer and the connection.
const PIECES_IN_FLIGHT: usize = 4;

/// Start a save on `member`; its pieces, then an error if it failed.
pub fn stream(member: Arc<Member>) -> SaveStream {
    let (tx, rx) = mpsc::channel(PIECES_IN_FLIGHT);
    let writer = PieceWriter { tx: tx.clone() };
    tokio::spawn(async move {
        if let Err(e) = member.save_backup(writer).await {
            let _ = tx.send(Err(to_status(&e))).await;
        }
    });
    Box::pin(ReceiverStream::new(rx))
}

struct PieceWriter {
    tx: mpsc::Sender<Result<pb::SaveChunk, Status>>,
}

impl Write for PieceWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        for piece in buf.chunks(SAVE_CHUNK_BYTES) {
            self.tx
                .blocking_send(Ok(pb::SaveChunk {
                    data: piece.to_vec(),
                }))
                .map_err(|_| {
                    std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the caller went away")
                })?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
