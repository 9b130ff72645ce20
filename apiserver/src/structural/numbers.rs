//! The number checks of custom resource value validation (integer and
//! float formats, `multipleOf`, `minimum`/`maximum` and their exclusive
//! forms), worded as kube-openapi's validator words them; part of
//! [`super::validate`].

use serde_json::{Value, json};

use super::Node;
use super::validate::{Failure, Kind, types};
use super::wording::go_float;

/// A number as the validator sees it: int64 when integral and in range,
/// float64 otherwise.
#[derive(Clone, Copy)]
pub(super) enum Num {
    Int(i64),
    Float(f64),
}

impl Num {
    pub(super) fn of(v: &Value) -> Option<Num> {
        let n = v.as_number()?;
        Some(match n.as_i64() {
            Some(i) => Num::Int(i),
            None => Num::Float(n.as_f64().unwrap_or(f64::NAN)),
        })
    }
    pub(super) fn f64(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::Float(f) => f,
        }
    }
}

/// Whether `f` is a whole number, within the validator's tolerance.
pub(super) fn is_integer(f: f64) -> bool {
    if !f.is_finite() {
        return false;
    }
    let g = f.trunc();
    if f == g {
        return true;
    }
    (f - g).abs() / (f.abs() + g.abs()) < 1e-9
}

/// Whether `x` fits the node's integer or float format; the message when
/// it does not (`prefix` says which number was checked).
fn out_of_range(n: &Node, x: Num, prefix: &str, name: &str) -> Option<String> {
    let t = types(n);
    let [type_name] = t.as_slice() else {
        return None;
    };
    let format = match (*type_name, n.effective_format.as_str()) {
        ("integer", f @ ("int32" | "int64")) => f,
        ("number", f @ ("float" | "double")) => f,
        _ => "",
    };
    let fits = match *type_name {
        "integer" => {
            let whole = match x {
                Num::Int(i) => Some(i),
                // Go prints the float and parses it back as an integer.
                Num::Float(f) if f.fract() == 0.0 && f.abs() < 9.2e18 => Some(f as i64),
                Num::Float(_) => None,
            };
            match whole {
                Some(i) if format == "int32" => i32::try_from(i).is_ok(),
                Some(_) => true,
                None => false,
            }
        }
        "number" if format == "float" => x.f64().abs() <= f64::from(f32::MAX),
        _ => true,
    };
    if fits {
        return None;
    }
    Some(if format.is_empty() {
        format!("{prefix} value must be of type {type_name} (default format) in {name}")
    } else {
        format!("{prefix} value must be of type {type_name} with format {format} in {name}")
    })
}

pub(super) fn number(n: &Node, x: Num, v: &Value, name: &str, out: &mut Vec<Failure>) {
    if let Some(m) = out_of_range(n, x, "Checked", name) {
        out.push(Failure::unnamed(name, m));
    }
    let at = format!("{name} in body");
    if let Some(factor) = n.multiple_of {
        let range = out_of_range(n, Num::Float(factor), "MultipleOf", name);
        let native = match x {
            Num::Int(i) if range.is_none() => {
                let f = factor as i64;
                if f <= 0 {
                    Some(Err(json!(f)))
                } else {
                    Some(Ok((i % f == 0, json!(f))))
                }
            }
            _ => None,
        };
        if let Some(r) = range {
            out.push(Failure::unnamed(name, r));
        }
        let result = native.unwrap_or_else(|| {
            let d = x.f64();
            if factor <= 0.0 {
                return Err(json!(factor));
            }
            let mult = if factor < 1.0 {
                1.0 / factor * d
            } else {
                d / factor
            };
            Ok((is_integer(mult), json!(factor)))
        });
        match result {
            Err(f) => out.push(Failure::new(
                Kind::Other,
                name,
                f.clone(),
                format!(
                    "factor MultipleOf declared for {name} must be positive: {}",
                    super::wording::go_value(&f)
                ),
            )),
            Ok((false, f)) => out.push(Failure::new(
                Kind::Other,
                name,
                v.clone(),
                format!(
                    "{at} should be a multiple of {}",
                    super::wording::go_value(&f)
                ),
            )),
            Ok(_) => {}
        }
    }
    for (bound, exclusive, is_max) in [
        (n.minimum, n.exclusive_minimum, false),
        (n.maximum, n.exclusive_maximum, true),
    ] {
        let Some(bound) = bound else {
            continue;
        };
        let prefix = if is_max {
            "Maximum boundary"
        } else {
            "Minimum boundary"
        };
        let range = out_of_range(n, Num::Float(bound), prefix, name);
        let (fails, shown) = match x {
            Num::Int(i) if range.is_none() => {
                let b = bound as i64;
                let fails = match (is_max, exclusive) {
                    (true, false) => i > b,
                    (true, true) => i >= b,
                    (false, false) => i < b,
                    (false, true) => i <= b,
                };
                (fails, b.to_string())
            }
            _ => {
                let d = x.f64();
                let fails = match (is_max, exclusive) {
                    (true, false) => d > bound,
                    (true, true) => d >= bound,
                    (false, false) => d < bound,
                    (false, true) => d <= bound,
                };
                (fails, go_float(bound))
            }
        };
        if let Some(r) = range {
            out.push(Failure::unnamed(name, r));
        }
        if fails {
            let relation = match (is_max, exclusive) {
                (true, false) => "less than or equal to",
                (true, true) => "less than",
                (false, false) => "greater than or equal to",
                (false, true) => "greater than",
            };
            out.push(Failure::new(
                Kind::Other,
                name,
                v.clone(),
                format!("{at} should be {relation} {shown}"),
            ));
        }
    }
}
