//! Durations as the command line writes them (`500ms`, `10s`, `5m`, `1h`,
//! or several run together as Go's `time.ParseDuration` accepts: `1m30s`).

use std::time::Duration;

/// Parse `s`; `None` for anything but a sequence of `<number><unit>` with
/// units `ms`, `s`, `m`, `h` (a bare `0` is zero).
pub fn parse(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s == "0" {
        return Some(Duration::ZERO);
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        let number: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        let secs = number * scale;
        if !secs.is_finite() || secs > 1e9 {
            return None;
        }
        total += Duration::from_secs_f64(secs);
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let cases: &[(&str, Option<Duration>)] = &[
            ("10s", Some(Duration::from_secs(10))),
            ("500ms", Some(Duration::from_millis(500))),
            ("5m", Some(Duration::from_secs(300))),
            ("1h", Some(Duration::from_secs(3600))),
            ("1m30s", Some(Duration::from_secs(90))),
            ("1.5s", Some(Duration::from_millis(1500))),
            ("0", Some(Duration::ZERO)),
            ("", None),
            ("10", None),
            ("s", None),
            ("10d", None),
            ("99999999999h", None),
        ];
        for (input, want) in cases {
            assert_eq!(parse(input), *want, "{input:?}");
        }
    }
}
