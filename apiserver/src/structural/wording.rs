//! Causes worded as Kubernetes' `field.Error` words them: the reason, and a
//! body such as `Invalid value: "x": must be …`, where the value is printed
//! as Go prints it (strings quoted, numbers and booleans bare, everything
//! else as JSON).

use serde_json::{Number, Value};

use super::path;
use crate::error::Cause;

/// A value as the body of a Kubernetes field error prints it.
pub(super) fn go_value(v: &Value) -> String {
    match v {
        Value::String(s) => go_quote(s),
        Value::Number(n) => go_number(n),
        Value::Bool(b) => b.to_string(),
        other => other.to_string(),
    }
}

/// A JSON number as Go prints the int64 or float64 it decodes to.
pub(super) fn go_number(n: &Number) -> String {
    match n.as_i64() {
        Some(i) => i.to_string(),
        None => go_float(n.as_f64().unwrap_or(f64::NAN)),
    }
}

/// A float64 as Go's `%v` prints it (shortest form, exponent from 1e+06
/// and below 1e-04).
pub(super) fn go_float(f: f64) -> String {
    if f == 0.0 {
        return "0".into();
    }
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..6).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    } else {
        format!("{f}")
    }
}

/// A string as Go's `%q` prints it.
pub(super) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn with_detail(head: String, detail: &str) -> String {
    if detail.is_empty() {
        head
    } else {
        format!("{head}: {detail}")
    }
}

/// `field.Invalid`.
pub(super) fn invalid(field: &str, value: &Value, detail: &str) -> Cause {
    Cause {
        field: path::shown(field),
        reason: "FieldValueInvalid",
        message: with_detail(format!("Invalid value: {}", go_value(value)), detail),
    }
}

/// `field.TypeInvalid`.
pub(super) fn type_invalid(field: &str, value: &Value, detail: &str) -> Cause {
    Cause {
        field: path::shown(field),
        reason: "FieldValueTypeInvalid",
        message: with_detail(format!("Invalid value: {}", go_value(value)), detail),
    }
}

/// `field.Required`.
pub(super) fn required(field: &str, detail: &str) -> Cause {
    Cause {
        field: path::shown(field),
        reason: "FieldValueRequired",
        message: with_detail("Required value".into(), detail),
    }
}

/// `field.Forbidden`.
pub(super) fn forbidden(field: &str, detail: &str) -> Cause {
    Cause {
        field: path::shown(field),
        reason: "FieldValueForbidden",
        message: with_detail("Forbidden".into(), detail),
    }
}

/// `field.NotSupported`: the supported values are quoted whatever they are.
pub(super) fn not_supported(field: &str, value: &Value, supported: &[String]) -> Cause {
    let detail = if supported.is_empty() {
        String::new()
    } else {
        let quoted: Vec<String> = supported.iter().map(|s| go_quote(s)).collect();
        format!("supported values: {}", quoted.join(", "))
    };
    Cause {
        field: path::shown(field),
        reason: "FieldValueNotSupported",
        message: with_detail(format!("Unsupported value: {}", go_value(value)), &detail),
    }
}

/// `field.TooLong`.
pub(super) fn too_long(field: &str, max: i64) -> Cause {
    let unit = if max == 1 { "byte" } else { "bytes" };
    Cause {
        field: path::shown(field),
        reason: "FieldValueTooLong",
        message: format!("Too long: may not be more than {max} {unit}"),
    }
}

/// `field.TooMany`.
pub(super) fn too_many(field: &str, actual: i64, max: i64) -> Cause {
    let unit = if max == 1 { "item" } else { "items" };
    Cause {
        field: path::shown(field),
        reason: "FieldValueTooMany",
        message: format!("Too many: {actual}: must have at most {max} {unit}"),
    }
}

/// `field.Duplicate`.
pub(super) fn duplicate(field: &str, value: &Value) -> Cause {
    Cause {
        field: path::shown(field),
        reason: "FieldValueDuplicate",
        message: format!("Duplicate value: {}", go_value(value)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_print_as_go_prints_them() {
        assert_eq!(go_value(&json!("a\"b")), "\"a\\\"b\"");
        assert_eq!(go_value(&json!(3)), "3");
        assert_eq!(go_value(&json!(1.5)), "1.5");
        assert_eq!(go_value(&json!(1000000.0)), "1e+06");
        assert_eq!(go_value(&json!(0.00001)), "1e-05");
        assert_eq!(go_value(&json!(true)), "true");
        assert_eq!(go_value(&json!({"b": 1, "a": [1]})), "{\"a\":[1],\"b\":1}");
        assert_eq!(go_value(&Value::Null), "null");
    }

    #[test]
    fn bodies_follow_field_error_wording() {
        assert_eq!(
            invalid("spec.a", &json!(5), "must be less").message,
            "Invalid value: 5: must be less"
        );
        assert_eq!(required("", "").field, "<nil>");
        assert_eq!(required("a", "").message, "Required value");
        assert_eq!(
            not_supported("a", &json!("x"), &["b".into(), "1".into()]).message,
            "Unsupported value: \"x\": supported values: \"b\", \"1\""
        );
        assert_eq!(
            too_long("a", 1).message,
            "Too long: may not be more than 1 byte"
        );
        assert_eq!(
            too_many("a", 3, 2).message,
            "Too many: 3: must have at most 2 items"
        );
    }
}
