//! The snapshot file format, written and read as a stream so that no
//! snapshot is ever held whole in memory: a header with the Raft metadata,
//! the objects column family as length-prefixed records, and a trailer with
//! the record count and a CRC-32 over every byte before the checksum.
//!
//! ```text
//! "KEELSNAP" | format u32 BE | header length u32 BE | header (bincode Header)
//! then per objects-CF record: 0x01 | key length u32 BE | value length u32 BE | key | value
//! then the trailer:           0x00 | record count u64 BE | crc32 u32 BE
//! ```
//!
//! Events are not part of a snapshot: a member installed from one starts its
//! watch window at the snapshot's revision.

use std::io::{BufRead, Read, Write};

use serde::{Deserialize, Serialize};

use crate::codec;
use crate::error::StoreError;
use crate::{KeyValue, SnapshotMeta};

/// The snapshot format this build writes and reads. Format 1 was one bincode
/// body holding every object and retained event.
pub const SNAPSHOT_FORMAT: u32 = 2;

/// The metadata is a log id and a membership: far below this.
const MAX_META_BYTES: u32 = 1 << 20;

/// A key or a value larger than this cannot come from a valid store (a whole
/// transaction is at most a few MiB), so a length above it is damage.
const MAX_PART_BYTES: u32 = 64 << 20;

const RECORD: u8 = 1;
const END: u8 = 0;

pub type Meta = SnapshotMeta;

/// What a file of records opens with: its magic, its format and a bincode
/// header. Raft snapshots ([`Header`]) and cluster backups
/// (`crate::backup::BackupHeader`) share the record layout and checksum.
pub trait FileHeader: Serialize + serde::de::DeserializeOwned + Default + Clone {
    /// The first eight bytes of a file of this kind.
    const MAGIC: &'static [u8; 8];
    /// The format this build writes and reads.
    const FORMAT: u32;
    /// Said when a file of another format is met: what older formats were.
    const OLDER: &'static str;
}

/// What precedes the records of a Raft snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub meta: Meta,
    /// The state's revision offset (see `state_machine`): the snapshot's
    /// revision is its last log index plus this.
    pub revision_offset: u64,
}

impl FileHeader for Header {
    const MAGIC: &'static [u8; 8] = b"KEELSNAP";
    const FORMAT: u32 = SNAPSHOT_FORMAT;
    const OLDER: &'static str =
        "format 1 held every object and event in one body; rebuild the snapshot with this build";
}

impl Header {
    /// The revision of the state the snapshot holds.
    pub fn revision(&self) -> u64 {
        self.meta.last_log_id.map(|l| l.index).unwrap_or(0) + self.revision_offset
    }
}

fn bad(what: String) -> StoreError {
    StoreError::Snapshot(what)
}

/// Writes a snapshot to `out` record by record, checksumming as it goes.
pub struct SnapshotWriter<W: Write> {
    out: W,
    crc: crc32fast::Hasher,
    records: u64,
    bytes: u64,
}

impl<W: Write> SnapshotWriter<W> {
    /// Start a file described by `header`: writes its magic, format and header.
    pub fn new<H: FileHeader>(out: W, header: &H) -> std::io::Result<SnapshotWriter<W>> {
        let mut w = SnapshotWriter {
            out,
            crc: crc32fast::Hasher::new(),
            records: 0,
            bytes: 0,
        };
        let head = codec::encode(header);
        w.put(H::MAGIC)?;
        w.put(&H::FORMAT.to_be_bytes())?;
        w.put(&(head.len() as u32).to_be_bytes())?;
        w.put(&head)?;
        Ok(w)
    }

    fn put(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.crc.update(bytes);
        self.bytes += bytes.len() as u64;
        self.out.write_all(bytes)
    }

    /// Append one objects-CF record.
    pub fn record(&mut self, key: &[u8], value: &[u8]) -> std::io::Result<()> {
        let len = |part: &[u8]| {
            u32::try_from(part.len())
                .ok()
                .filter(|n| *n <= MAX_PART_BYTES)
                .ok_or_else(|| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        format!("a {}-byte record part does not fit a snapshot", part.len()),
                    )
                })
        };
        let (k, v) = (len(key)?, len(value)?);
        self.put(&[RECORD])?;
        self.put(&k.to_be_bytes())?;
        self.put(&v.to_be_bytes())?;
        self.put(key)?;
        self.put(value)?;
        self.records += 1;
        Ok(())
    }

    /// Write the trailer; returns the output, the record count and the
    /// file's length.
    pub fn finish(mut self) -> std::io::Result<(W, u64, u64)> {
        self.put(&[END])?;
        self.put(&self.records.to_be_bytes())?;
        let crc = self.crc.clone().finalize();
        self.out.write_all(&crc.to_be_bytes())?;
        self.out.flush()?;
        Ok((self.out, self.records, self.bytes + 4))
    }
}

/// Reads a snapshot (or a backup, with its own header type) record by
/// record, checking its structure as it goes and its checksum at the
/// trailer. Nothing read is trusted until [`SnapshotReader::next_record`] has
/// returned `false`.
pub struct SnapshotReader<R: Read, H: FileHeader = Header> {
    input: R,
    crc: crc32fast::Hasher,
    header: H,
    records: u64,
    offset: u64,
    done: bool,
    checksum: Option<u32>,
}

impl<R: Read, H: FileHeader> SnapshotReader<R, H> {
    /// Read and check the header.
    pub fn open(input: R) -> Result<SnapshotReader<R, H>, StoreError> {
        let mut r = SnapshotReader {
            input,
            crc: crc32fast::Hasher::new(),
            header: H::default(),
            records: 0,
            offset: 0,
            done: false,
            checksum: None,
        };
        let mut head = [0u8; 16];
        r.take_exact(&mut head, "the file's first 16 bytes")?;
        if &head[..8] != H::MAGIC {
            return Err(bad(format!(
                "missing {} magic at offset 0",
                String::from_utf8_lossy(H::MAGIC)
            )));
        }
        let format = u32::from_be_bytes(head[8..12].try_into().expect("4 bytes"));
        if format != H::FORMAT {
            return Err(bad(format!(
                "snapshot format {format}, this build reads only format {} ({})",
                H::FORMAT,
                H::OLDER
            )));
        }
        let len = u32::from_be_bytes(head[12..16].try_into().expect("4 bytes"));
        if len > MAX_META_BYTES {
            return Err(bad(format!(
                "the file announces a {len}-byte header, above the limit of {MAX_META_BYTES}"
            )));
        }
        let mut head = Vec::new();
        r.take_vec(&mut head, len, "the header")?;
        r.header = codec::decode_limited(&head, MAX_META_BYTES as usize)
            .map_err(|e| bad(format!("the header does not decode: {e}")))?;
        Ok(r)
    }

    pub fn header(&self) -> &H {
        &self.header
    }

    /// The checksum the trailer held; known once the last record was read.
    pub fn checksum(&self) -> Option<u32> {
        self.checksum
    }

    /// Bytes read so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The input, to check what lies beyond the trailer.
    pub fn into_input(self) -> R {
        self.input
    }

    /// Records read so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Read exactly `buf.len()` bytes into the checksum.
    fn take_exact(&mut self, buf: &mut [u8], what: &str) -> Result<(), StoreError> {
        self.input.read_exact(buf).map_err(|e| self.cut(e, what))?;
        self.crc.update(buf);
        self.offset += buf.len() as u64;
        Ok(())
    }

    /// Read `len` bytes into `buf`, growing it only as bytes actually arrive
    /// (a damaged length cannot make it allocate what the file does not hold).
    fn take_vec(&mut self, buf: &mut Vec<u8>, len: u32, what: &str) -> Result<(), StoreError> {
        buf.clear();
        let got = (&mut self.input)
            .take(len as u64)
            .read_to_end(buf)
            .map_err(|e| self.cut(e, what))?;
        if got != len as usize {
            return Err(bad(format!(
                "truncated: {what} at offset {} announces {len} bytes, the file holds {got}",
                self.offset
            )));
        }
        self.crc.update(buf);
        self.offset += len as u64;
        Ok(())
    }

    fn cut(&self, e: std::io::Error, what: &str) -> StoreError {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            bad(format!(
                "truncated: the file ends inside {what} at offset {}",
                self.offset
            ))
        } else {
            bad(format!("reading {what} at offset {}: {e}", self.offset))
        }
    }

    /// The next record into `key` and `value`; `false` once the trailer has
    /// been read and its count, checksum and the end of the input checked.
    pub fn next_record(
        &mut self,
        key: &mut Vec<u8>,
        value: &mut Vec<u8>,
    ) -> Result<bool, StoreError> {
        if self.done {
            return Ok(false);
        }
        let mut tag = [0u8; 1];
        self.take_exact(&mut tag, "a record tag")?;
        match tag[0] {
            RECORD => {
                let mut lens = [0u8; 8];
                self.take_exact(&mut lens, "a record's lengths")?;
                let k = u32::from_be_bytes(lens[..4].try_into().expect("4 bytes"));
                let v = u32::from_be_bytes(lens[4..].try_into().expect("4 bytes"));
                if k > MAX_PART_BYTES || v > MAX_PART_BYTES {
                    return Err(bad(format!(
                        "record {} announces a {k}-byte key and a {v}-byte value, above \
                         the limit of {MAX_PART_BYTES}",
                        self.records
                    )));
                }
                self.take_vec(key, k, "a record's key")?;
                self.take_vec(value, v, "a record's value")?;
                self.records += 1;
                Ok(true)
            }
            END => {
                let mut count = [0u8; 8];
                self.take_exact(&mut count, "the trailer")?;
                let count = u64::from_be_bytes(count);
                let mut want = [0u8; 4];
                self.input
                    .read_exact(&mut want)
                    .map_err(|e| self.cut(e, "the checksum"))?;
                let want = u32::from_be_bytes(want);
                let got = self.crc.clone().finalize();
                if want != got {
                    return Err(bad(format!(
                        "checksum mismatch: the file's crc32 is {got:#010x}, its trailer \
                         says {want:#010x}"
                    )));
                }
                if count != self.records {
                    return Err(bad(format!(
                        "the trailer counts {count} records, the file holds {}",
                        self.records
                    )));
                }
                let mut extra = [0u8; 1];
                match self.input.read(&mut extra) {
                    Ok(0) => {}
                    Ok(_) => return Err(bad("padded: bytes follow the trailer".into())),
                    Err(e) => return Err(self.cut(e, "the end of the file")),
                }
                self.done = true;
                self.checksum = Some(want);
                self.offset += 4;
                Ok(false)
            }
            t => Err(bad(format!(
                "record tag {t:#04x} at offset {} (expected 0x01 or 0x00)",
                self.offset - 1
            ))),
        }
    }
}

impl<R: BufRead, H: FileHeader> SnapshotReader<R, H> {
    /// [`SnapshotReader::next_record`], handing `visit` the record's key and
    /// value: where the input's buffer holds the whole record they are read
    /// where they lie (no copy), otherwise through `key` and `value`. `None`
    /// once the trailer has been read and checked.
    pub fn next_record_with<T>(
        &mut self,
        key: &mut Vec<u8>,
        value: &mut Vec<u8>,
        visit: impl FnOnce(&[u8], &[u8]) -> T,
    ) -> Result<Option<T>, StoreError> {
        const HEAD: usize = 9;
        if !self.done {
            let buf = match self.input.fill_buf() {
                Ok(buf) => buf,
                Err(e) => return Err(self.cut(e, "a record tag")),
            };
            if buf.len() >= HEAD && buf[0] == RECORD {
                let k = u32::from_be_bytes(buf[1..5].try_into().expect("4 bytes"));
                let v = u32::from_be_bytes(buf[5..9].try_into().expect("4 bytes"));
                let total = HEAD + k as usize + v as usize;
                if k <= MAX_PART_BYTES && v <= MAX_PART_BYTES && buf.len() >= total {
                    let record = &buf[..total];
                    self.crc.update(record);
                    let out = visit(
                        &record[HEAD..HEAD + k as usize],
                        &record[HEAD + k as usize..],
                    );
                    self.input.consume(total);
                    self.offset += total as u64;
                    self.records += 1;
                    return Ok(Some(out));
                }
            }
        }
        // A record across the buffer's end, a damaged length or the trailer:
        // the copying path reads and judges it.
        Ok(self.next_record(key, value)?.then(|| visit(key, value)))
    }
}

/// Check that an objects-CF record holds an object under its own key.
pub fn check_object(key: &[u8], value: &[u8]) -> Result<(), StoreError> {
    let kv: KeyValue = codec::decode(value).map_err(|e| {
        bad(format!(
            "object {} does not decode: {e}",
            String::from_utf8_lossy(key)
        ))
    })?;
    if kv.key.as_bytes() != key {
        return Err(bad(format!(
            "object record {} holds key {}",
            String::from_utf8_lossy(key),
            kv.key
        )));
    }
    Ok(())
}

/// Read a whole snapshot from `input`, checking everything; with
/// `objects`, each record must also decode as the object of its key.
/// Returns the header and the record count.
pub fn verify(input: impl Read, objects: bool) -> Result<(Header, u64), StoreError> {
    let mut r = SnapshotReader::open(input)?;
    let (mut k, mut v) = (Vec::new(), Vec::new());
    while r.next_record(&mut k, &mut v)? {
        if objects {
            check_object(&k, &v)?;
        }
    }
    Ok((r.header, r.records))
}

/// The metadata of a snapshot held in memory, after every check.
pub fn meta_from_bytes(bytes: &[u8]) -> Result<Meta, StoreError> {
    verify(bytes, true).map(|(header, _)| header.meta)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(key: &str, value: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let kv = KeyValue {
            key: key.into(),
            value: value.to_vec(),
            create_revision: 2,
            mod_revision: 2,
            version: 1,
            uid: None,
        };
        (key.as_bytes().to_vec(), codec::encode(&kv))
    }

    fn small() -> Vec<u8> {
        let header = Header {
            meta: Meta {
                last_log_id: Some(crate::log_id(2, 1, 9)),
                ..Default::default()
            },
            revision_offset: 3,
        };
        let mut w = SnapshotWriter::new(Vec::new(), &header).unwrap();
        for (k, v) in [object("/a", b"1"), object("/b", b"22")] {
            w.record(&k, &v).unwrap();
        }
        let (out, records, len) = w.finish().unwrap();
        assert_eq!((records, len), (2, out.len() as u64));
        out
    }

    #[test]
    fn roundtrip_and_every_flipped_byte_is_caught() {
        let bytes = small();
        let (header, records) = verify(bytes.as_slice(), true).unwrap();
        assert_eq!(header.meta.last_log_id.unwrap().index, 9);
        assert_eq!(header.revision(), 12);
        assert_eq!(records, 2);
        let mut r: SnapshotReader<_, Header> = SnapshotReader::open(bytes.as_slice()).unwrap();
        let (mut k, mut v) = (Vec::new(), Vec::new());
        assert!(r.next_record(&mut k, &mut v).unwrap());
        assert_eq!((k.clone(), v.clone()), object("/a", b"1"));
        for i in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[i] ^= 0x40;
            assert!(
                matches!(
                    verify(damaged.as_slice(), true),
                    Err(StoreError::Snapshot(_))
                ),
                "flipping byte {i} went unnoticed"
            );
        }
        for cut in [1, 3, 4, 5, bytes.len() - 20] {
            let err = verify(&bytes[..bytes.len() - cut], true).unwrap_err();
            assert!(err.to_string().contains("truncated"), "{cut}: {err}");
        }
        let mut padded = bytes.clone();
        padded.push(0);
        let err = verify(padded.as_slice(), true).unwrap_err();
        assert!(err.to_string().contains("padded"), "{err}");
    }

    type Records = Vec<(Vec<u8>, Vec<u8>)>;

    /// Every record through `next_record_with`, read from `input`, and the
    /// checksum.
    fn read_with(input: impl BufRead) -> Result<(Records, u32), StoreError> {
        let mut r: SnapshotReader<_, Header> = SnapshotReader::open(input)?;
        let (mut k, mut v) = (Vec::new(), Vec::new());
        let mut got = Vec::new();
        while let Some(kv) = r.next_record_with(&mut k, &mut v, |k, v| (k.to_vec(), v.to_vec()))? {
            got.push(kv);
        }
        Ok((got, r.checksum().expect("checked at the trailer")))
    }

    #[test]
    fn records_read_in_place_match_copied_ones_whatever_the_buffer() {
        let header = Header::default();
        let mut w = SnapshotWriter::new(Vec::new(), &header).unwrap();
        let want: Vec<_> = (0..40)
            .map(|i| object(&format!("/k{i}"), &vec![i as u8; i * 37]))
            .collect();
        for (k, v) in &want {
            w.record(k, v).unwrap();
        }
        let (bytes, _, _) = w.finish().unwrap();
        let crc = u32::from_be_bytes(bytes[bytes.len() - 4..].try_into().unwrap());
        // A slice is one buffer (every record in place); small buffers put
        // records across their ends (the copying path).
        assert_eq!(read_with(bytes.as_slice()).unwrap(), (want.clone(), crc));
        for cap in [1, 8, 9, 10, 100, 700] {
            let input = std::io::BufReader::with_capacity(cap, bytes.as_slice());
            assert_eq!(
                read_with(input).unwrap(),
                (want.clone(), crc),
                "capacity {cap}"
            );
        }
        for i in (0..bytes.len()).step_by(7) {
            let mut damaged = bytes.clone();
            damaged[i] ^= 0x40;
            for cap in [64, bytes.len()] {
                let input = std::io::BufReader::with_capacity(cap, damaged.as_slice());
                assert!(
                    matches!(read_with(input), Err(StoreError::Snapshot(_))),
                    "flipping byte {i} went unnoticed (buffer {cap})"
                );
            }
        }
        let err = read_with(&bytes[..bytes.len() - 5]).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
    }

    #[test]
    fn a_format_1_file_is_refused_naming_both_formats() {
        let mut old = small();
        old[8..12].copy_from_slice(&1u32.to_be_bytes());
        let err = verify(old.as_slice(), false).unwrap_err().to_string();
        assert!(
            err.contains("snapshot format 1") && err.contains("only format 2"),
            "{err}"
        );
    }

    #[test]
    fn a_damaged_length_allocates_nothing_the_file_does_not_hold() {
        let mut bytes = small();
        // The first record's value length (after tag and key length).
        let meta_len = u32::from_be_bytes(bytes[12..16].try_into().unwrap()) as usize;
        let at = 16 + meta_len + 1 + 4;
        bytes[at..at + 4].copy_from_slice(&(MAX_PART_BYTES).to_be_bytes());
        let err = verify(bytes.as_slice(), false).unwrap_err().to_string();
        assert!(err.contains("truncated"), "{err}");
    }
}
