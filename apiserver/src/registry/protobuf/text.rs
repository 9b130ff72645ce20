//! The text forms Kubernetes' JSON gives the protobuf time types:
//! `meta.v1.Time` and `MicroTime` as RFC 3339 UTC (to the second, or to the
//! microsecond), `meta.v1.Duration` as Go duration text (`1h2m3.5s`).

/// Seconds of 0001-01-01T00:00:00Z and of 9999-12-31T23:59:59Z: the range
/// an RFC 3339 year of four digits can write.
const MIN_SECS: i64 = -62_135_596_800;
const MAX_SECS: i64 = 253_402_300_799;

/// `seconds` and `nanos` since the epoch as RFC 3339 UTC; with `micros`, six
/// fractional digits (MicroTime), else none (Time drops the fraction).
pub fn format_time(seconds: i64, nanos: i32, micros: bool) -> Result<String, String> {
    if !(MIN_SECS..=MAX_SECS).contains(&seconds) || !(0..1_000_000_000).contains(&nanos) {
        return Err(format!("timestamp {seconds}s {nanos}ns is out of range"));
    }
    let base = crate::meta::rfc3339(seconds);
    Ok(if micros {
        format!("{}.{:06}Z", &base[..base.len() - 1], nanos / 1000)
    } else {
        base
    })
}

/// RFC 3339 text (any fraction, `Z` or an offset) as (seconds, nanos) UTC.
pub fn parse_time(s: &str) -> Result<(i64, i32), String> {
    let bad = || format!("{s:?} is not an RFC 3339 time");
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return Err(bad());
    }
    let num = |r: std::ops::Range<usize>| -> Result<i64, String> {
        let t = s.get(r).ok_or_else(bad)?;
        if !t.bytes().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        t.parse().map_err(|_| bad())
    };
    let (mo, d) = (num(5..7)?, num(8..10)?);
    num(0..4)?;
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return Err(bad());
    }
    let mut rest = &s[19..];
    let mut nanos = 0i64;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        for (i, c) in frac[..digits].bytes().enumerate().take(9) {
            nanos += i64::from(c - b'0') * 10i64.pow(8 - i as u32);
        }
        rest = &frac[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6
            && matches!(rest.as_bytes()[0], b'+' | b'-')
            && rest.as_bytes()[3] == b':' =>
        {
            let oh: i64 = rest[1..3].parse().map_err(|_| bad())?;
            let om: i64 = rest[4..6].parse().map_err(|_| bad())?;
            let o = oh * 3600 + om * 60;
            if rest.starts_with('-') { -o } else { o }
        }
        _ => return Err(bad()),
    };
    let day = crate::meta::parse_rfc3339(&format!("{}T00:00:00Z", &s[..10])).ok_or_else(bad)?;
    Ok((day + h * 3600 + mi * 60 + sec - offset, nanos as i32))
}

/// Nanoseconds as Go's `time.Duration.String()` writes them.
pub fn format_duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".into();
    }
    let neg = nanos < 0;
    let n = nanos.unsigned_abs();
    let sign = if neg { "-" } else { "" };
    if n < 1_000 {
        return format!("{sign}{n}ns");
    }
    if n < 1_000_000 {
        return format!("{sign}{}µs", fraction(n, 1_000));
    }
    if n < 1_000_000_000 {
        return format!("{sign}{}ms", fraction(n, 1_000_000));
    }
    let (h, rem) = (n / 3_600_000_000_000, n % 3_600_000_000_000);
    let (m, rem) = (rem / 60_000_000_000, rem % 60_000_000_000);
    let s = fraction(rem, 1_000_000_000);
    match (h, m) {
        (0, 0) => format!("{sign}{s}s"),
        (0, m) => format!("{sign}{m}m{s}s"),
        (h, m) => format!("{sign}{h}h{m}m{s}s"),
    }
}

/// `n / unit` with its fraction and no trailing zeros (`1.5`, `2`).
fn fraction(n: u64, unit: u64) -> String {
    let (whole, frac) = (n / unit, n % unit);
    if frac == 0 {
        return whole.to_string();
    }
    let width = unit.ilog10() as usize;
    let f = format!("{frac:0width$}");
    format!("{whole}.{}", f.trim_end_matches('0'))
}

/// Go duration text (`1h30m`, `-1.5s`, `300ms`) as nanoseconds.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    let bad = || format!("{s:?} is not a duration");
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let n = rest
            .bytes()
            .take_while(|c| c.is_ascii_digit() || *c == b'.')
            .count();
        let value: f64 = rest[..n].parse().map_err(|_| bad())?;
        rest = &rest[n..];
        let u = rest
            .bytes()
            .take_while(|c| !c.is_ascii_digit() && *c != b'.')
            .count();
        let unit = match &rest[..u] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(bad()),
        };
        rest = &rest[u..];
        total += value * unit;
    }
    if total > i64::MAX as f64 {
        return Err(bad());
    }
    let n = total.round() as i64;
    Ok(if neg { -n } else { n })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_through_text() {
        assert_eq!(format_time(0, 0, false).unwrap(), "1970-01-01T00:00:00Z");
        assert_eq!(
            format_time(1_700_000_000, 123_456_789, true).unwrap(),
            "2023-11-14T22:13:20.123456Z"
        );
        assert_eq!(
            parse_time("2023-11-14T22:13:20.123456Z"),
            Ok((1_700_000_000, 123_456_000))
        );
        assert_eq!(
            parse_time("2023-11-14T23:13:20+01:00"),
            Ok((1_700_000_000, 0))
        );
        assert!(format_time(i64::MAX, 0, false).is_err());
        assert!(format_time(0, -1, false).is_err());
        for bad in [
            "",
            "2023-11-14",
            "2023-13-14T22:13:20Z",
            "2023-11-14T22:13:20",
            "x023-11-14T22:13:20Z",
            "2023-11-14T22:13:20.Z",
        ] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_read_and_write_as_go_does() {
        for (n, s) in [
            (0, "0s"),
            (1_500_000_000, "1.5s"),
            (3_600_000_000_000, "1h0m0s"),
            (5_400_000_000_000, "1h30m0s"),
            (300_000_000, "300ms"),
            (-90_000_000_000, "-1m30s"),
            (42, "42ns"),
        ] {
            assert_eq!(format_duration(n), s);
            assert_eq!(parse_duration(s), Ok(n), "{s}");
        }
        assert_eq!(format_duration(i64::MIN).chars().next(), Some('-'));
        assert!(parse_duration("1x").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("99999999999999h").is_err());
    }
}
