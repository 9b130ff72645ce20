//! Object metadata rules shared by every kind: name validation, uids,
//! timestamps and labels (selectors are in [`crate::selector`]).

use std::collections::BTreeMap;

use serde_json::Value;

use crate::error::Cause;

/// RFC 1123 label: lowercase alphanumerics and '-', at most 63 characters.
pub fn dns1123_label(s: &str) -> Option<String> {
    if s.is_empty() || s.len() > 63 {
        return Some("must be no more than 63 characters and not empty".into());
    }
    let ok = s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    (!ok).then(|| {
        "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')".into()
    })
}

/// RFC 1123 subdomain: dot-separated labels, at most 253 characters.
pub fn dns1123_subdomain(s: &str) -> Option<String> {
    if s.is_empty() || s.len() > 253 {
        return Some("must be no more than 253 characters and not empty".into());
    }
    let ok = s.split('.').all(|l| {
        !l.is_empty()
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    });
    (!ok).then(|| {
        "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')".into()
    })
}

/// A qualified name (label and annotation keys, CRD provisioners): an
/// optional DNS-subdomain prefix and `/`, then a name of at most 63
/// alphanumerics, `-`, `_` or `.` starting and ending alphanumeric.
pub fn qualified_name(s: &str) -> Option<String> {
    let (prefix, name) = match s.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    if let Some(p) = prefix
        && let Some(m) = dns1123_subdomain(p)
    {
        return Some(format!("prefix part {m}"));
    }
    if name.is_empty() || name.len() > 63 {
        return Some("name part must be no more than 63 characters and not empty".into());
    }
    (!label_chars(name)).then(|| "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')".into())
}

/// Alphanumerics, `-`, `_` and `.`, starting and ending alphanumeric (the
/// shape of label values and of the name part of qualified names).
fn label_chars(s: &str) -> bool {
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    s.chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && alnum(s.chars().next())
        && alnum(s.chars().last())
}

/// A label value: empty, or at most 63 alphanumerics, `-`, `_` or `.`
/// starting and ending alphanumeric.
pub fn label_value(s: &str) -> Option<String> {
    if s.is_empty() {
        return None;
    }
    if s.len() > 63 {
        return Some("must be no more than 63 characters".into());
    }
    (!label_chars(s)).then(|| "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')".into())
}

/// A path segment name (RBAC objects such as `system:node`): anything but
/// `.`, `..`, or a string containing `/` or `%`.
pub fn path_segment(s: &str) -> Option<String> {
    if s.is_empty() {
        return Some("must not be empty".into());
    }
    if s == "." || s == ".." {
        return Some(format!("may not be '{s}'"));
    }
    s.chars()
        .find(|c| matches!(c, '/' | '%'))
        .map(|c| format!("may not contain '{c}'"))
}

/// A random version-4 UUID.
pub fn new_uid() -> String {
    let mut b: [u8; 16] = rand_bytes();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn rand_bytes() -> [u8; 16] {
    use std::hash::{BuildHasher, Hasher};
    // std's RandomState is seeded from the OS; two draws give 128 random bits.
    let mut out = [0u8; 16];
    for chunk in out.chunks_mut(8) {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
        );
        chunk.copy_from_slice(&h.finish().to_le_bytes());
    }
    out
}

/// Seconds since the epoch as RFC 3339 UTC (`2024-01-02T03:04:05Z`).
pub fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Parse an RFC 3339 UTC timestamp written by [`rfc3339`] back to seconds.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (n(0..4)?, n(5..7)?, n(8..10)?);
    let (hh, mm, ss) = (n(11..13)?, n(14..16)?, n(17..19)?);
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some((era * 146_097 + doe - 719_468) * 86_400 + hh * 3600 + mm * 60 + ss)
}

pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// kubectl's short age format: 5s, 3m, 2h, 4d.
pub fn age(created: Option<&str>) -> String {
    let Some(t) = created.and_then(parse_rfc3339) else {
        return "<unknown>".into();
    };
    let s = (now_secs() - t).max(0);
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// The labels of an object.
pub fn labels(obj: &Value) -> BTreeMap<String, String> {
    obj.pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// Validate the parts of metadata every kind shares.
pub fn validate_meta(
    obj: &Value,
    namespaced: bool,
    name_rule: fn(&str) -> Option<String>,
) -> Vec<Cause> {
    let mut causes = Vec::new();
    match obj.pointer("/metadata/name").and_then(Value::as_str) {
        None | Some("") => causes.push(Cause::required("metadata.name")),
        Some(n) => {
            if let Some(m) = name_rule(n) {
                causes.push(Cause::invalid(
                    "metadata.name",
                    format!("Invalid value: {n:?}: {m}"),
                ));
            }
        }
    }
    if namespaced
        && obj
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
    {
        causes.push(Cause::required("metadata.namespace"));
    }
    for (field, what) in [("labels", "label"), ("annotations", "annotation")] {
        if let Some(m) = obj.pointer(&format!("/metadata/{field}")) {
            match m.as_object() {
                Some(m) => {
                    for (k, v) in m {
                        if let Some(msg) = qualified_name(k) {
                            causes.push(Cause::invalid(
                                format!("metadata.{field}"),
                                format!("Invalid value: {k:?}: {msg}"),
                            ));
                        }
                        match v.as_str() {
                            None => causes.push(Cause::invalid(
                                format!("metadata.{field}.{k}"),
                                format!("{what} values must be strings"),
                            )),
                            Some(v) if field == "labels" => {
                                if let Some(msg) = label_value(v) {
                                    causes.push(Cause::invalid(
                                        "metadata.labels",
                                        format!("Invalid value: {v:?}: {msg}"),
                                    ));
                                }
                            }
                            Some(_) => {}
                        }
                    }
                    if field == "annotations" {
                        let size: usize = m
                            .iter()
                            .map(|(k, v)| k.len() + v.as_str().map_or(0, str::len))
                            .sum();
                        if size > 256 * 1024 {
                            causes.push(Cause {
                                field: "metadata.annotations".into(),
                                reason: "FieldValueTooLong",
                                message: "Too long: must have at most 262144 bytes".into(),
                            });
                        }
                    }
                }
                None if m.is_null() => {}
                None => causes.push(Cause::invalid(
                    format!("metadata.{field}"),
                    "must be a map of strings",
                )),
            }
        }
    }
    causes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(dns1123_label("web-1").is_none());
        assert!(dns1123_label("Web").is_some());
        assert!(dns1123_label("-a").is_some());
        assert!(dns1123_subdomain("a.b-c.d").is_none());
        assert!(dns1123_subdomain("a..b").is_some());
    }

    #[test]
    fn label_keys_values_and_segments() {
        assert!(qualified_name("app").is_none());
        assert!(qualified_name("example.com/My_name.1").is_none());
        assert!(qualified_name("a b").is_some());
        assert!(qualified_name("Example.com/x").is_some());
        assert!(qualified_name("x/").is_some());
        assert!(qualified_name(&"a".repeat(64)).is_some());
        assert!(label_value("").is_none());
        assert!(label_value("v1.2_x-y").is_none());
        assert!(label_value("-x").is_some());
        assert!(label_value("a:b").is_some());
        assert!(path_segment("system:node:worker-1").is_none());
        assert!(path_segment("a/b").is_some());
        assert!(path_segment("..").is_some());
    }

    #[test]
    fn timestamps_roundtrip() {
        for t in [0i64, 951_782_400, 1_700_000_000, 4_102_444_799] {
            assert_eq!(parse_rfc3339(&rfc3339(t)), Some(t), "{}", rfc3339(t));
        }
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn uids_are_v4_and_distinct() {
        let a = new_uid();
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert_ne!(a, new_uid());
    }
}
