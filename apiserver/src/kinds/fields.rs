//! Field rules and defaults shared by several kinds: JSON accessors,
//! quantities and container resources, label selectors, CIDRs, ports, and
//! `default_at` for Kubernetes' defaulting.

use serde_json::{Value, json};

use crate::error::Cause;
use crate::meta;

/// The string at `pointer`, if there is one.
pub fn str_at<'a>(obj: &'a Value, pointer: &str) -> Option<&'a str> {
    obj.pointer(pointer).and_then(Value::as_str)
}

/// The array at `pointer`, empty when there is none.
pub fn array_at<'a>(obj: &'a Value, pointer: &str) -> &'a [Value] {
    obj.pointer(pointer)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// `value` at `pointer` must be one of `supported` when present.
pub fn one_of(
    obj: &Value,
    pointer: &str,
    field: &str,
    supported: &[&str],
    causes: &mut Vec<Cause>,
) {
    if let Some(v) = str_at(obj, pointer)
        && !supported.contains(&v)
    {
        causes.push(Cause::not_supported(field, v, supported));
    }
}

/// A Kubernetes quantity (`500m`, `1Gi`, `2e3`, `1.5`) as a number.
pub fn parse_quantity(s: &str) -> Option<f64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '+' | '-')))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    if number.is_empty() || number == "+" || number == "-" {
        return None;
    }
    let n: f64 = number.parse().ok()?;
    let scale = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        e if e.starts_with(['e', 'E']) => 10f64.powi(e[1..].parse::<i32>().ok()?),
        _ => return None,
    };
    Some(n * scale)
}

/// Every quantity of a resource map (`{"cpu": "1", "memory": "1Gi"}`) at
/// `pointer` parses and is not negative; returns the parsed map.
pub fn quantities(
    obj: &Value,
    pointer: &str,
    field: &str,
    causes: &mut Vec<Cause>,
) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    for (name, q) in obj
        .pointer(pointer)
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        let text = match q {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => String::new(),
        };
        match parse_quantity(&text) {
            Some(v) if v >= 0.0 => out.push((name.clone(), v)),
            Some(_) => causes.push(Cause::invalid(
                format!("{field}[{name}]"),
                format!("Invalid value: {text:?}: must be greater than or equal to 0"),
            )),
            None => causes.push(Cause::invalid(
                format!("{field}[{name}]"),
                format!("Invalid value: {text:?}: quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"),
            )),
        }
    }
    out
}

/// A container's requests and limits parse, and no request exceeds its limit.
pub fn container_resources(c: &Value, path: &str) -> Vec<Cause> {
    let mut causes = Vec::new();
    let requests = quantities(
        c,
        "/resources/requests",
        &format!("{path}.resources.requests"),
        &mut causes,
    );
    let limits = quantities(
        c,
        "/resources/limits",
        &format!("{path}.resources.limits"),
        &mut causes,
    );
    for (name, req) in &requests {
        if let Some((_, limit)) = limits.iter().find(|(n, _)| n == name)
            && req > limit
        {
            let text = |v: &Value| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            causes.push(Cause::invalid(
                format!("{path}.resources.requests"),
                format!(
                    "Invalid value: {:?}: must be less than or equal to {name} limit of {}",
                    text(&c["resources"]["requests"][name.as_str()]),
                    text(&c["resources"]["limits"][name.as_str()])
                ),
            ));
        }
    }
    causes
}

/// A label selector: valid keys and values, known operators, values exactly
/// where the operator needs them.
pub fn selector(sel: &Value, path: &str) -> Vec<Cause> {
    let mut causes = Vec::new();
    for (k, v) in sel
        .get("matchLabels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        if let Some(m) = meta::qualified_name(k) {
            causes.push(Cause::invalid(
                format!("{path}.matchLabels"),
                format!("Invalid value: {k:?}: {m}"),
            ));
        }
        if let Some(m) = v.as_str().and_then(meta::label_value) {
            causes.push(Cause::invalid(
                format!("{path}.matchLabels"),
                format!("Invalid value: {v}: {m}"),
            ));
        }
    }
    for (i, e) in array_at(sel, "/matchExpressions").iter().enumerate() {
        let at = format!("{path}.matchExpressions[{i}]");
        match e.get("key").and_then(Value::as_str) {
            Some(k) => {
                if let Some(m) = meta::qualified_name(k) {
                    causes.push(Cause::invalid(
                        format!("{at}.key"),
                        format!("Invalid value: {k:?}: {m}"),
                    ));
                }
            }
            None => causes.push(Cause::required(format!("{at}.key"))),
        }
        let values = array_at(e, "/values");
        match e.get("operator").and_then(Value::as_str) {
            Some("In" | "NotIn") if values.is_empty() => causes.push(Cause::required_because(
                format!("{at}.values"),
                "must be specified when `operator` is 'In' or 'NotIn'",
            )),
            Some("Exists" | "DoesNotExist") if !values.is_empty() => causes.push(Cause::forbidden(
                format!("{at}.values"),
                "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            )),
            Some("In" | "NotIn" | "Exists" | "DoesNotExist") => {}
            Some(op) => causes.push(Cause::not_supported(
                format!("{at}.operator"),
                op,
                &["In", "NotIn", "Exists", "DoesNotExist"],
            )),
            None => causes.push(Cause::required(format!("{at}.operator"))),
        }
    }
    causes
}

/// `a.b.c.d/n` or an IPv6 CIDR.
fn is_cidr(s: &str) -> bool {
    let Some((ip, bits)) = s.split_once('/') else {
        return false;
    };
    let Ok(bits) = bits.parse::<u8>() else {
        return false;
    };
    match ip.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(_)) => bits <= 32,
        Ok(std::net::IpAddr::V6(_)) => bits <= 128,
        Err(_) => false,
    }
}

/// The CIDR at `pointer` (when present) is a valid IPv4 or IPv6 CIDR.
pub fn cidr(obj: &Value, pointer: &str, field: &str, causes: &mut Vec<Cause>) {
    if let Some(c) = str_at(obj, pointer)
        && !is_cidr(c)
    {
        causes.push(Cause::invalid(
            field,
            format!("Invalid value: {c:?}: must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"),
        ));
    }
}

/// A numeric port at `pointer` (when present) is in 1..=65535.
pub fn port_number(obj: &Value, pointer: &str, field: &str, causes: &mut Vec<Cause>) {
    if let Some(n) = obj.pointer(pointer).and_then(Value::as_i64)
        && !(1..=65535).contains(&n)
    {
        causes.push(Cause::invalid(
            field,
            format!("Invalid value: {n}: must be between 1 and 65535, inclusive"),
        ));
    }
}

/// Ports under `ports` of `holder` get protocol TCP where they name none.
pub fn tcp_by_default(holder: &mut Value) {
    if let Some(ports) = holder.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports {
            default_at(p, &["protocol"], json!("TCP"));
        }
    }
}

/// Set `obj[path]` to `value` where it is missing (path as JSON pointer tokens).
pub fn default_at(obj: &mut Value, path: &[&str], value: Value) {
    let mut cur = obj;
    for (i, key) in path.iter().enumerate() {
        if !cur.is_object() {
            return;
        }
        if i == path.len() - 1 {
            if cur.get(*key).is_none_or(Value::is_null) {
                cur[*key] = value;
            }
            return;
        }
        if cur.get(*key).is_none_or(Value::is_null) {
            cur[*key] = json!({});
        }
        cur = &mut cur[*key];
    }
}

/// The field paths of some causes, for tests that assert which fields failed.
#[cfg(test)]
pub(crate) fn cause_fields(causes: &[Cause]) -> Vec<&str> {
    causes.iter().map(|c| c.field.as_str()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::fields::cause_fields as fields;

    #[test]
    fn quantities_parse_like_kubernetes() {
        assert_eq!(parse_quantity("1Gi"), Some(1073741824.0));
        assert_eq!(parse_quantity("500m"), Some(0.5));
        assert_eq!(parse_quantity("2e3"), Some(2000.0));
        assert_eq!(parse_quantity("1.5"), Some(1.5));
        assert_eq!(parse_quantity("10k"), Some(10000.0));
        assert_eq!(parse_quantity("1GB"), None);
        assert_eq!(parse_quantity("Gi"), None);
        assert_eq!(parse_quantity(""), None);
    }

    #[test]
    fn requests_may_not_exceed_limits() {
        let c = json!({"resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}});
        let causes = container_resources(&c, "spec.containers[0]");
        assert_eq!(fields(&causes), ["spec.containers[0].resources.requests"]);
        assert!(causes[0].message.contains("cpu limit of 1"), "{causes:?}");
        let bad = json!({"resources": {"limits": {"memory": "lots"}}});
        assert_eq!(
            fields(&container_resources(&bad, "c")),
            ["c.resources.limits[memory]"]
        );
    }

    #[test]
    fn selectors_check_operators_and_values() {
        let sel = json!({"matchLabels": {"a b": "x"}, "matchExpressions": [
            {"key": "k", "operator": "In"},
            {"key": "k", "operator": "Exists", "values": ["v"]},
            {"key": "k", "operator": "Maybe"},
        ]});
        assert_eq!(
            fields(&selector(&sel, "spec.selector")),
            [
                "spec.selector.matchLabels",
                "spec.selector.matchExpressions[0].values",
                "spec.selector.matchExpressions[1].values",
                "spec.selector.matchExpressions[2].operator",
            ]
        );
    }
}
