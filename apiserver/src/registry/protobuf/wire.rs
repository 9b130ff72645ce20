//! The protobuf wire format, without a schema: varints, keys, and the four
//! wire types Kubernetes messages use. Reading checks every length against
//! the bytes left, so a hostile body is an error, never a panic or an
//! allocation larger than the body; writing appends to a `Vec<u8>`.

/// One field's value as it sits on the wire.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Wire<'a> {
    Varint(u64),
    Fixed64(u64),
    /// A length-delimited value: a string, bytes, a message, a map entry
    /// or a packed run of numbers.
    Bytes(&'a [u8]),
    Fixed32(u32),
}

/// Largest field number protobuf allows.
const MAX_FIELD: u64 = (1 << 29) - 1;

/// The (number, value) fields of one message, in wire order.
pub fn fields(mut buf: &[u8]) -> Result<Vec<(u32, Wire<'_>)>, String> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let key = varint(&mut buf)?;
        let number = key >> 3;
        if number == 0 || number > MAX_FIELD {
            return Err(format!("invalid field number {number}"));
        }
        let value = match key & 7 {
            0 => Wire::Varint(varint(&mut buf)?),
            1 => Wire::Fixed64(u64::from_le_bytes(
                take(&mut buf, 8)?
                    .try_into()
                    .map_err(|_| "truncated fixed64".to_string())?,
            )),
            2 => {
                let len = varint(&mut buf)?;
                let len = usize::try_from(len)
                    .ok()
                    .filter(|l| *l <= buf.len())
                    .ok_or_else(|| {
                        format!("field {number}: length {len} runs past the end of the message")
                    })?;
                Wire::Bytes(take(&mut buf, len)?)
            }
            5 => Wire::Fixed32(u32::from_le_bytes(
                take(&mut buf, 4)?
                    .try_into()
                    .map_err(|_| "truncated fixed32".to_string())?,
            )),
            t => return Err(format!("field {number}: unsupported wire type {t}")),
        };
        out.push((number as u32, value));
    }
    Ok(out)
}

fn take<'a>(buf: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
    if buf.len() < n {
        return Err("truncated message".into());
    }
    let (head, rest) = buf.split_at(n);
    *buf = rest;
    Ok(head)
}

/// Reads one varint (at most ten bytes) off the front of `buf`.
pub fn varint(buf: &mut &[u8]) -> Result<u64, String> {
    let mut v = 0u64;
    for i in 0..10 {
        let (&b, rest) = buf.split_first().ok_or("truncated varint")?;
        *buf = rest;
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err("varint longer than ten bytes".into())
}

pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub fn put_key(out: &mut Vec<u8>, number: u32, wire_type: u8) {
    put_varint(out, (u64::from(number) << 3) | u64::from(wire_type));
}

/// A length-delimited field.
pub fn put_bytes(out: &mut Vec<u8>, number: u32, b: &[u8]) {
    put_key(out, number, 2);
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

pub fn put_uint(out: &mut Vec<u8>, number: u32, v: u64) {
    put_key(out, number, 0);
    put_varint(out, v);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_read_up_to_ten_bytes() {
        let mut b: &[u8] = &[0xa0, 0x38, 0x01];
        assert_eq!(varint(&mut b), Ok(7200));
        assert_eq!(b, [0x01]);
        assert!(varint(&mut &[0xff; 9][..]).is_err());
        assert!(varint(&mut &[0x80; 11][..]).is_err());
        let mut max: &[u8] = &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(varint(&mut max), Ok(u64::MAX));
        let mut out = Vec::new();
        put_varint(&mut out, u64::MAX);
        assert_eq!(varint(&mut &out[..]), Ok(u64::MAX));
    }

    #[test]
    fn lengths_past_the_end_and_groups_are_errors() {
        assert!(fields(&[0x12, 0x7f]).is_err());
        assert!(fields(&[0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]).is_err());
        assert!(fields(&[0x09, 0, 0, 0]).is_err());
        assert!(fields(&[0x0b]).is_err());
        assert!(fields(&[0x02, 0x00]).is_err(), "field number 0");
        let f = fields(&[0x0a, 1, b'a', 0x10, 5, 0x1d, 1, 0, 0, 0]).unwrap();
        assert_eq!(
            f,
            vec![
                (1, Wire::Bytes(b"a")),
                (2, Wire::Varint(5)),
                (3, Wire::Fixed32(1))
            ]
        );
    }
}
