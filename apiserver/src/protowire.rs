//! The protobuf wire format as far as the request bodies kubectl sends in
//! `application/vnd.kubernetes.protobuf` need it: varints, tags, and
//! length-delimited fields, read without a schema, plus the `k8s\0` magic
//! and `runtime.Unknown` envelope around every object. Every length is
//! checked against the bytes left, so a hostile body yields `None`, never a
//! panic or an allocation larger than the body.

/// The media type of a Kubernetes protobuf body.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// The prefix of every Kubernetes protobuf body.
pub const MAGIC: &[u8] = b"k8s\0";

/// One field's value.
pub enum Field<'a> {
    Varint(u64),
    /// A length-delimited field: a string, bytes, or a nested message.
    Bytes(&'a [u8]),
    /// Fixed-width values: no field read here has one.
    Other,
}

/// The (number, value) fields of one message, in wire order.
pub struct Message<'a>(pub Vec<(u64, Field<'a>)>);

impl<'a> Message<'a> {
    /// Parses a message; `None` if it is malformed (a truncated value, a
    /// length past the end, a group or unknown wire type).
    pub fn parse(mut buf: &'a [u8]) -> Option<Self> {
        let mut out = Vec::new();
        while !buf.is_empty() {
            let key = varint(&mut buf)?;
            let field = match key & 7 {
                0 => Field::Varint(varint(&mut buf)?),
                1 => {
                    buf = buf.get(8..)?;
                    Field::Other
                }
                2 => {
                    let len = usize::try_from(varint(&mut buf)?).ok()?;
                    let (b, rest) = (buf.get(..len)?, buf.get(len..)?);
                    buf = rest;
                    Field::Bytes(b)
                }
                5 => {
                    buf = buf.get(4..)?;
                    Field::Other
                }
                _ => return None,
            };
            out.push((key >> 3, field));
        }
        Some(Self(out))
    }

    /// The bytes of each length-delimited field `n`, in order (a repeated field).
    pub fn all(&self, n: u64) -> impl Iterator<Item = &'a [u8]> + '_ {
        self.0.iter().filter_map(move |(k, f)| match f {
            Field::Bytes(b) if *k == n => Some(*b),
            _ => None,
        })
    }

    /// The bytes of the first length-delimited field `n`.
    pub fn first(&self, n: u64) -> Option<&'a [u8]> {
        self.all(n).next()
    }

    /// The bytes of the last length-delimited field `n` (protobuf merges
    /// repeats of a singular field, the last one winning).
    pub fn last(&self, n: u64) -> Option<&'a [u8]> {
        self.all(n).last()
    }
}

/// Reads one varint (at most ten bytes) off the front of `buf`.
pub fn varint(buf: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for i in 0..10 {
        let (&b, rest) = buf.split_first()?;
        *buf = rest;
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// The parsed `runtime.Unknown` of a `k8s\0` body; its field 2 (`raw`) is
/// the object. `None` without the magic or for a malformed envelope.
pub fn unknown(body: &[u8]) -> Option<Message<'_>> {
    Message::parse(body.strip_prefix(MAGIC)?)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A length-delimited field `n` (test bodies stay under 128 bytes).
    pub(crate) fn field(n: u64, b: &[u8]) -> Vec<u8> {
        let mut out = vec![(n << 3 | 2) as u8, b.len() as u8];
        out.extend_from_slice(b);
        out
    }

    #[test]
    fn varints_read_up_to_ten_bytes() {
        let mut b: &[u8] = &[0xa0, 0x38, 0x01];
        assert_eq!(varint(&mut b), Some(7200));
        assert_eq!(b, [0x01]);
        assert_eq!(varint(&mut &[0xff; 9][..]), None);
        assert_eq!(varint(&mut &[0x80; 11][..]), None);
        let mut max: &[u8] = &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(varint(&mut max), Some(u64::MAX));
    }

    #[test]
    fn lengths_past_the_end_are_malformed() {
        assert!(Message::parse(&[0x12, 0x7f]).is_none());
        assert!(
            Message::parse(&[0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]).is_none()
        );
        assert!(Message::parse(&[0x09, 0, 0, 0]).is_none());
        assert!(Message::parse(&[0x0b]).is_none());
        let body = [field(1, b"a"), field(1, b"b"), vec![2 << 3, 5]].concat();
        let m = Message::parse(&body).unwrap();
        assert_eq!((m.first(1), m.last(1)), (Some(&b"a"[..]), Some(&b"b"[..])));
        assert!(matches!(m.0[2], (2, Field::Varint(5))));
        assert!(unknown(b"{}").is_none());
    }
}
