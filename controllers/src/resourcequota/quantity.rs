//! Resource quantities (`500m`, `1.5`, `128Mi`, `2G`, `1e3`) as exact
//! thousandths, and sums of them written back as Kubernetes writes a
//! canonical quantity: in the binary suffixes when the parts used them,
//! else the decimal ones, the largest that divides the sum exactly.

/// A parsed quantity: thousandths of the unit, and whether it was written
/// with a binary suffix (`Ki`..`Ei`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quantity {
    pub milli: i128,
    pub binary: bool,
}

const BINARY: [(&str, u32); 6] = [
    ("Ki", 1),
    ("Mi", 2),
    ("Gi", 3),
    ("Ti", 4),
    ("Pi", 5),
    ("Ei", 6),
];
const DECIMAL: [(&str, u32); 6] = [("k", 1), ("M", 2), ("G", 3), ("T", 4), ("P", 5), ("E", 6)];

/// Parse a quantity; `None` if it is not one.
pub fn parse(s: &str) -> Option<Quantity> {
    let s = s.trim();
    let (num, mult_milli, binary): (&str, i128, bool) = if let Some((n, p)) = BINARY
        .iter()
        .find_map(|(suf, p)| Some((s.strip_suffix(suf)?, *p)))
    {
        (n, 1000 * 1024i128.pow(p), true)
    } else if let Some((n, p)) = DECIMAL
        .iter()
        .find_map(|(suf, p)| Some((s.strip_suffix(suf)?, *p)))
    {
        (n, 1000 * 1000i128.pow(p), false)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 1, false)
    } else if let Some((n, e)) = s.split_once(['e', 'E']) {
        let e: u32 = e.parse().ok().filter(|e| *e <= 18)?;
        (n, 1000 * 10i128.pow(e), false)
    } else {
        (s, 1000, false)
    };
    let (neg, num) = match num.strip_prefix('-') {
        Some(n) => (true, n),
        None => (false, num.strip_prefix('+').unwrap_or(num)),
    };
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if int.is_empty() && frac.is_empty()
        || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
        || int.len() > 20
    {
        return None;
    }
    let int: i128 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let mut value = int.checked_mul(mult_milli)?;
    // The fraction, to the precision the multiplier allows (rounded up, as
    // Kubernetes rounds quantities it cannot hold exactly).
    let mut scale = mult_milli;
    for d in frac.bytes().take(30) {
        let digit = i128::from(d - b'0');
        if scale % 10 == 0 {
            scale /= 10;
            value += digit * scale;
        } else if digit > 0 {
            value += 1;
            break;
        }
    }
    Some(Quantity {
        milli: if neg { -value } else { value },
        binary,
    })
}

/// Write `milli` thousandths as Kubernetes would: `binary` chooses the
/// suffix family; a sum with thousandths stays in `m`.
pub fn format(milli: i128, binary: bool) -> String {
    if milli % 1000 != 0 {
        return format!("{milli}m");
    }
    let n = milli / 1000;
    if n == 0 {
        return "0".into();
    }
    let (base, table): (i128, &[(&str, u32)]) = if binary {
        (1024, &BINARY)
    } else {
        (1000, &DECIMAL)
    };
    for (suf, p) in table.iter().rev() {
        let unit = base.pow(*p);
        if n % unit == 0 {
            return format!("{}{suf}", n / unit);
        }
    }
    n.to_string()
}

/// A CPU amount as Kubernetes writes one: whole cores, or millicores.
pub fn format_cpu(milli: i128) -> String {
    if milli % 1000 == 0 {
        (milli / 1000).to_string()
    } else {
        format!("{milli}m")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_parse_exactly() {
        let m = |s: &str| parse(s).map(|q| q.milli);
        assert_eq!(m("500m"), Some(500));
        assert_eq!(m("1.5"), Some(1500));
        assert_eq!(m("2"), Some(2000));
        assert_eq!(m("128Mi"), Some(128 * 1024 * 1024 * 1000));
        assert_eq!(m("1G"), Some(1_000_000_000_000));
        assert_eq!(m("1e3"), Some(1_000_000));
        assert_eq!(m(".5Gi"), Some(512 * 1024 * 1024 * 1000));
        assert_eq!(m("0.0001"), Some(1), "rounded up");
        assert!(parse("1Gb").is_none() && parse("").is_none() && parse("x").is_none());
        assert!(parse("128Mi").unwrap().binary && !parse("1G").unwrap().binary);
    }

    #[test]
    fn sums_are_written_as_kubernetes_writes_them() {
        let mi = 1024 * 1024 * 1000;
        assert_eq!(format(256 * mi, true), "256Mi");
        assert_eq!(format(1536 * mi, true), "1536Mi");
        assert_eq!(format(2048 * mi, true), "2Gi");
        assert_eq!(format(2_000_000_000_000, false), "2G");
        assert_eq!(format(5000, false), "5");
        assert_eq!(format(0, true), "0");
        assert_eq!(format(1500, false), "1500m");
        assert_eq!(format_cpu(1500), "1500m");
        assert_eq!(format_cpu(2000), "2");
    }
}
