//! A reader that runs another reader on a thread of its own, a few chunks
//! ahead: reading a segment splits into file I/O with LZ4 decompression
//! (that thread) and record framing, checksum and event decoding (the
//! caller's), so the two run on two cores at once.
//!
//! Chunks travel through a bounded channel and come back for reuse, so the
//! memory in flight is a few chunks whatever the segment's size. When the
//! caller stops early (drops the reader) the thread's next send fails and
//! it ends.

use std::io::{self, BufRead, Read};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

/// Bytes per chunk: large enough that a channel hand-off per chunk costs
/// nothing next to decompressing it.
const CHUNK: usize = 1 << 20;
/// Chunks decompressed ahead of the caller.
const AHEAD: usize = 3;

enum Msg {
    Data(Vec<u8>, usize),
    Failed(io::Error),
    /// The inner reader ended; what its `finish` said.
    End(Result<(), String>),
}

/// Reads what the inner reader produces; see the module comment.
pub struct Prefetch {
    rx: Receiver<Msg>,
    spare: SyncSender<Vec<u8>>,
    cur: Vec<u8>,
    len: usize,
    pos: usize,
    end: Option<Result<(), String>>,
    failed: bool,
}

impl Prefetch {
    /// Read `inner` to its end on a new thread; `finish` then runs there on
    /// it (to check what follows the data, say) and its verdict is what
    /// [`Prefetch::finish`] returns.
    pub fn spawn<R, F>(name: &str, mut inner: R, finish: F) -> io::Result<Prefetch>
    where
        R: Read + Send + 'static,
        F: FnOnce(R) -> Result<(), String> + Send + 'static,
    {
        let (tx, rx) = sync_channel(AHEAD);
        let (spare, spares) = sync_channel::<Vec<u8>>(AHEAD + 2);
        std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                loop {
                    let mut buf = spares.try_recv().unwrap_or_else(|_| vec![0; CHUNK]);
                    let mut n = 0;
                    while n < buf.len() {
                        match inner.read(&mut buf[n..]) {
                            Ok(0) => break,
                            Ok(got) => n += got,
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            Err(e) => {
                                if n > 0 && tx.send(Msg::Data(buf, n)).is_err() {
                                    return;
                                }
                                let _ = tx.send(Msg::Failed(e));
                                return;
                            }
                        }
                    }
                    if n == 0 {
                        let _ = tx.send(Msg::End(finish(inner)));
                        return;
                    }
                    if tx.send(Msg::Data(buf, n)).is_err() {
                        return;
                    }
                }
            })?;
        Ok(Prefetch {
            rx,
            spare,
            cur: Vec::new(),
            len: 0,
            pos: 0,
            end: None,
            failed: false,
        })
    }

    /// After the caller has read what it expects: the inner reader must be
    /// at its end (no byte left unread) and its `finish` must have passed.
    pub fn finish(mut self) -> Result<(), String> {
        let mut extra = [0u8; 1];
        match self.read(&mut extra) {
            Ok(0) => {}
            Ok(_) => return Err("bytes follow the end of the records".into()),
            Err(e) => return Err(e.to_string()),
        }
        self.end
            .take()
            .unwrap_or_else(|| Err("the reading thread ended early".into()))
    }
}

impl Prefetch {
    /// Make the current chunk hold unread bytes if the thread has more;
    /// `false` once the inner reader has ended.
    fn refill(&mut self) -> io::Result<bool> {
        loop {
            if self.pos < self.len {
                return Ok(true);
            }
            if self.end.is_some() {
                return Ok(false);
            }
            if self.failed {
                return Err(io::Error::other("an earlier read failed"));
            }
            match self.rx.recv() {
                Ok(Msg::Data(buf, n)) => {
                    let done = std::mem::replace(&mut self.cur, buf);
                    if !done.is_empty() {
                        // The thread may have stopped; the buffer is then dropped.
                        let _ = self.spare.try_send(done);
                    }
                    (self.len, self.pos) = (n, 0);
                }
                Ok(Msg::Failed(e)) => {
                    self.failed = true;
                    return Err(e);
                }
                Ok(Msg::End(verdict)) => self.end = Some(verdict),
                Err(_) => {
                    self.failed = true;
                    return Err(io::Error::other("the reading thread stopped"));
                }
            }
        }
    }
}

/// The current chunk is the buffer: a caller that finds a whole record in
/// it decodes the record where it lies, without a copy.
impl BufRead for Prefetch {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.refill()?;
        Ok(&self.cur[self.pos..self.len])
    }

    fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.len);
    }
}

impl Read for Prefetch {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let have = self.fill_buf()?;
        let n = out.len().min(have.len());
        out[..n].copy_from_slice(&have[..n]);
        self.consume(n);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hands out `data` a few bytes per call, then fails if asked to.
    struct Trickle {
        data: Vec<u8>,
        at: usize,
        fail_at_end: bool,
    }

    impl Read for Trickle {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            if self.at == self.data.len() {
                if self.fail_at_end {
                    return Err(io::Error::other("disk on fire"));
                }
                return Ok(0);
            }
            let n = out.len().min(7_777).min(self.data.len() - self.at);
            out[..n].copy_from_slice(&self.data[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    fn trickle(data: Vec<u8>, fail_at_end: bool) -> Trickle {
        Trickle {
            data,
            at: 0,
            fail_at_end,
        }
    }

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn reads_every_byte_in_order_across_chunks() {
        let want = data(3 * CHUNK + 12_345);
        let inner = trickle(want.clone(), false);
        let mut r = Prefetch::spawn("t", inner, |t| {
            assert_eq!(t.at, t.data.len());
            Ok(())
        })
        .unwrap();
        let mut got = Vec::new();
        let mut buf = vec![0; 4_096];
        // Uneven reads, as record framing does.
        let mut take = 1;
        loop {
            let n = r.read(&mut buf[..take]).unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
            take = take % 4_000 + 13;
        }
        assert_eq!(got.len(), want.len());
        assert!(got == want);
        assert_eq!(r.finish(), Ok(()));
    }

    #[test]
    fn its_buffer_is_each_chunk_in_turn() {
        let want = data(2 * CHUNK + 999);
        let inner = trickle(want.clone(), false);
        let mut r = Prefetch::spawn("t", inner, |_| Ok(())).unwrap();
        let mut got = Vec::new();
        let mut take = 5;
        loop {
            let have = r.fill_buf().unwrap();
            if have.is_empty() {
                break;
            }
            assert!(have.len() <= CHUNK);
            let n = take.min(have.len());
            got.extend_from_slice(&have[..n]);
            r.consume(n);
            take = take * 3 % 300_007 + 1;
        }
        assert!(got == want);
        assert_eq!(r.finish(), Ok(()));
    }

    #[test]
    fn finish_reports_unread_bytes_and_the_inner_verdict() {
        let inner = trickle(data(100), false);
        let mut r = Prefetch::spawn("t", inner, |_| Ok(())).unwrap();
        let mut head = [0u8; 99];
        r.read_exact(&mut head).unwrap();
        assert_eq!(
            r.finish(),
            Err("bytes follow the end of the records".to_string())
        );

        let inner = trickle(data(10), false);
        let mut r = Prefetch::spawn("t", inner, |_| Err("frame not ended".into())).unwrap();
        let mut all = Vec::new();
        r.read_to_end(&mut all).unwrap();
        assert_eq!(all, data(10));
        assert_eq!(r.finish(), Err("frame not ended".to_string()));
    }

    #[test]
    fn an_inner_error_reaches_the_caller_after_the_data_before_it() {
        let inner = trickle(data(5_000), true);
        let mut r = Prefetch::spawn("t", inner, |_| Ok(())).unwrap();
        let mut all = vec![0; 5_000];
        r.read_exact(&mut all).unwrap();
        assert_eq!(all, data(5_000));
        let e = r.read(&mut [0u8; 1]).unwrap_err();
        assert_eq!(e.to_string(), "disk on fire");
        assert!(r.read(&mut [0u8; 1]).is_err());
    }

    #[test]
    fn dropping_the_reader_early_stops_the_thread() {
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        struct Endless(std::sync::mpsc::Sender<()>);
        impl Read for Endless {
            fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
                out.fill(1);
                Ok(out.len())
            }
        }
        impl Drop for Endless {
            fn drop(&mut self) {
                let _ = self.0.send(());
            }
        }
        let mut r = Prefetch::spawn("t", Endless(done_tx), |_| Ok(())).unwrap();
        let mut some = [0u8; 10];
        r.read_exact(&mut some).unwrap();
        drop(r);
        // The thread drops its reader when it ends.
        done_rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("the prefetch thread ended after its reader was dropped");
    }
}
