//! The CEL environment rules run in: the `cel` crate's standard library
//! (with `has`, `all`, `exists`, `exists_one`, `map`, `filter`, `matches`,
//! `startsWith`, `endsWith`, `contains`, `size`, timestamps and durations)
//! plus the functions of Kubernetes' CEL libraries that CRD rules commonly
//! use: string functions (`lowerAscii`, `upperAscii`, `trim`, `replace`,
//! `split`, `join`, `substring`, `indexOf`, `lastIndexOf`, `charAt`) and list
//! functions (`isSorted`, `sum`, `min`, `max`, `indexOf`, `lastIndexOf`).
//!
//! The string functions are Keel's own rather than the crate's strings
//! extension so that their results are bounded: a nested `replace` could
//! otherwise grow a string without limit.

use std::cmp::Ordering;
use std::sync::{Arc, LazyLock};

use cel::common::types::{DYN_TYPE, INT_TYPE, LIST_TYPE, STRING_TYPE, Type};
use cel::common::value::{CowVal, Val};
use cel::{Env, ExecutionError, Value as Cel};

/// The longest string a library function may build (bytes).
pub const MAX_STRING: usize = 1 << 20;

/// Every function (and macro) name a rule may call; the checker refuses
/// others at compile time, as Kubernetes' type checker does.
pub const FUNCTIONS: &[&str] = &[
    // macros
    "has",
    "all",
    "exists",
    "exists_one",
    "map",
    "filter",
    // standard library
    "size",
    "contains",
    "startsWith",
    "endsWith",
    "matches",
    "int",
    "uint",
    "double",
    "string",
    "bytes",
    "bool",
    "dyn",
    "type",
    "duration",
    "timestamp",
    "getDate",
    "getDayOfMonth",
    "getDayOfWeek",
    "getDayOfYear",
    "getFullYear",
    "getHours",
    "getMilliseconds",
    "getMinutes",
    "getMonth",
    "getSeconds",
    "hasValue",
    "value",
    "or",
    "orValue",
    "optional.of",
    "optional.none",
    "optional.ofNonZeroValue",
    // Keel's library (Kubernetes' strings and lists libraries)
    "lowerAscii",
    "upperAscii",
    "trim",
    "replace",
    "split",
    "join",
    "substring",
    "indexOf",
    "lastIndexOf",
    "charAt",
    "isSorted",
    "sum",
    "min",
    "max",
];

/// The shared environment (building it registers a few hundred overloads).
pub fn env() -> Arc<Env> {
    static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| Arc::new(build()));
    ENV.clone()
}

type Fun = for<'b, 'v> fn(Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError>;

fn build() -> Env {
    let mut env = Env::stdlib();
    // Receiver and argument types: S string, I int, L list, D dyn.
    let member: &[(&str, &str, &str, Fun)] = &[
        ("lowerAscii", "string.lowerAscii", "S", lower_ascii),
        ("upperAscii", "string.upperAscii", "S", upper_ascii),
        ("trim", "string.trim", "S", trim),
        ("replace", "string.replace2", "SSS", replace),
        ("replace", "string.replace3", "SSSI", replace),
        ("split", "string.split1", "SS", split),
        ("split", "string.split2", "SSI", split),
        ("join", "list.join0", "L", join),
        ("join", "list.join1", "LS", join),
        ("substring", "string.substring1", "SI", substring),
        ("substring", "string.substring2", "SII", substring),
        ("indexOf", "string.indexOf1", "SS", index_of),
        ("indexOf", "string.indexOf2", "SSI", index_of),
        ("lastIndexOf", "string.lastIndexOf1", "SS", last_index_of),
        ("lastIndexOf", "string.lastIndexOf2", "SSI", last_index_of),
        ("charAt", "string.charAt", "SI", char_at),
        ("indexOf", "list.indexOf", "LD", list_index_of),
        ("lastIndexOf", "list.lastIndexOf", "LD", list_last_index_of),
        ("isSorted", "list.isSorted", "L", is_sorted),
        ("sum", "list.sum", "L", sum),
        ("min", "list.min", "L", min),
        ("max", "list.max", "L", max),
    ];
    let ty = |c: char| -> Type {
        match c {
            'S' => STRING_TYPE,
            'I' => INT_TYPE,
            'L' => LIST_TYPE,
            _ => DYN_TYPE,
        }
    };
    for (name, id, sig, f) in member {
        let mut types = sig.chars().map(ty);
        let target = types.next().unwrap_or(DYN_TYPE);
        // The names are Keel's own and distinct: a clash is a programming
        // error the tests catch, not something input can cause.
        if let Err(e) = env.add_member_overload(name, id, target, types.collect(), *f) {
            tracing::error!(%e, "CEL library function not registered");
        }
    }
    env
}

fn err(function: &str, message: impl ToString) -> ExecutionError {
    ExecutionError::function_error(function, message)
}

fn args(v: &[CowVal<'_, '_>]) -> Result<Vec<Cel>, ExecutionError> {
    v.iter().map(|a| Cel::try_from(a.as_ref())).collect()
}

fn out<'b, 'v>(v: Cel) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let b: Box<dyn Val> = v.try_into()?;
    Ok(CowVal::Owned(b))
}

fn string(v: &Cel, f: &str) -> Result<Arc<String>, ExecutionError> {
    match v {
        Cel::String(s) => Ok(s.clone()),
        other => Err(err(
            f,
            format!("expected a string, got {}", other.type_of()),
        )),
    }
}

fn int(v: &Cel, f: &str) -> Result<i64, ExecutionError> {
    match v {
        Cel::Int(i) => Ok(*i),
        other => Err(err(f, format!("expected an int, got {}", other.type_of()))),
    }
}

fn list(v: &Cel, f: &str) -> Result<Arc<Vec<Cel>>, ExecutionError> {
    match v {
        Cel::List(l) => Ok(l.clone()),
        other => Err(err(f, format!("expected a list, got {}", other.type_of()))),
    }
}

fn bounded(s: String, f: &str) -> Result<Cel, ExecutionError> {
    if s.len() > MAX_STRING {
        return Err(err(f, format!("result longer than {MAX_STRING} bytes")));
    }
    Ok(Cel::String(Arc::new(s)))
}

fn lower_ascii<'b, 'v>(a: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let a = args(&a)?;
    out(Cel::String(Arc::new(
        string(&a[0], "lowerAscii")?.to_ascii_lowercase(),
    )))
}

fn upper_ascii<'b, 'v>(a: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let a = args(&a)?;
    out(Cel::String(Arc::new(
        string(&a[0], "upperAscii")?.to_ascii_uppercase(),
    )))
}

fn trim<'b, 'v>(a: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let a = args(&a)?;
    out(Cel::String(Arc::new(
        string(&a[0], "trim")?.trim().to_owned(),
    )))
}

fn replace<'b, 'v>(a: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    const F: &str = "replace";
    let a = args(&a)?;
    let (s, from, to) = (string(&a[0], F)?, string(&a[1], F)?, string(&a[2], F)?);
    let n = match a.get(3) {
        Some(n) => int(n, F)?,
        None => -1,
    };
    // Bound the result before building it.
    let hits = if from.is_empty() {
        s.chars().count() + 1
    } else {
        s.matches(from.as_str()).count()
    };
    let hits = if n < 0 { hits } else { hits.min(n as usize) };
    if s.len() + hits.saturating_mul(to.len()) > MAX_STRING {
        return Err(err(F, format!("result longer than {MAX_STRING} bytes")));
    }
    let r = if n < 0 {
        s.replace(from.as_str(), &to)
    } else {
        s.replacen(from.as_str(), &to, n as usize)
    };
    out(bounded(r, F)?)
}

fn split<'b, 'v>(a: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    const F: &str = "split";
    let a = args(&a)?;
    let (s, sep) = (string(&a[0], F)?, string(&a[1], F)?);
    let n = match a.get(2) {
        Some(n) => int(n, F)?,
        None => -1,
    };
    let parts: Vec<String> = match (n, sep.is_empty()) {
        (0, _) => vec![],
        (n, true) => {
            let chars: Vec<char> = s.chars().collect();
            let limit = if n < 0 {
                chars.len()
            } else {
                (n as usize).min(chars.len())
            };
            let mut parts: Vec<String> = Vec::with_capacity(limit);
            for (idx, c) in chars.iter().enumerate() {
                if n > 0 && parts.len() + 1 == limit && idx + 1 < chars.len() {
                    parts.push(chars[idx..].iter().collect());
                    break;
                }
                parts.push(c.to_string());
            }
            parts
        }
        (n, false) if n < 0 => s.split(sep.as_str()).map(str::to_owned).collect(),
        (n, false) => s
            .splitn(n as usize, sep.as_str())
            .map(str::to_owned)
            .collect(),
    };
    out(Cel::List(Arc::new(
        parts
            .into_iter()
            .map(|p| Cel::String(Arc::new(p)))
            .collect(),
    )))
}

fn join<'b, 'v>(a: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    const F: &str = "join";
    let a = args(&a)?;
    let items = list(&a[0], F)?;
    let sep = match a.get(1) {
        Some(s) => string(s, F)?,
        None => Arc::new(String::new()),
    };
    let mut r = String::new();
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            r.push_str(&sep);
        }
        r.push_str(&string(item, F)?);
        if r.len() > MAX_STRING {
            return Err(err(F, format!("result longer than {MAX_STRING} bytes")));
        }
    }
    out(Cel::String(Arc::new(r)))
}

/// A code-point index as a byte offset into `s`, if in range (`len` allowed).
fn byte_at(s: &str, idx: i64) -> Option<usize> {
    let idx = usize::try_from(idx).ok()?;
    s.char_indices()
        .map(|(b, _)| b)
        .chain(std::iter::once(s.len()))
        .nth(idx)
}

fn substring<'b, 'v>(a: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    const F: &str = "substring";
    let a = args(&a)?;
    let s = string(&a[0], F)?;
    let start = int(&a[1], F)?;
    let end = match a.get(2) {
        Some(e) => int(e, F)?,
        None => s.chars().count() as i64,
    };
    let range = |i| byte_at(&s, i).ok_or_else(|| err(F, format!("index out of range: {i}")));
    let (b0, b1) = (range(start)?, range(end)?);
    if b0 > b1 {
        return Err(err(
            F,
            format!("invalid substring range. start: {start}, end: {end}"),
        ));
    }
    out(Cel::String(Arc::new(s[b0..b1].to_owned())))
}

fn char_at<'b, 'v>(a: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    const F: &str = "charAt";
    let a = args(&a)?;
    let s = string(&a[0], F)?;
    let i = int(&a[1], F)?;
    let b = byte_at(&s, i).ok_or_else(|| err(F, format!("index out of range: {i}")))?;
    let c = s[b..].chars().next().map(String::from).unwrap_or_default();
    out(Cel::String(Arc::new(c)))
}

/// Code-point index of `needle` in `s` searching from code point `from`
/// forwards (or, when `last`, the last one starting at or before `from`).
fn find(s: &str, needle: &str, from: i64, last: bool, f: &str) -> Result<i64, ExecutionError> {
    let start = byte_at(s, from).ok_or_else(|| err(f, format!("index out of range: {from}")))?;
    let found = if last {
        let end = (start + needle.len()).min(s.len());
        // `end` may fall inside a code point: widen to the next boundary.
        let end = (end..=s.len())
            .find(|e| s.is_char_boundary(*e))
            .unwrap_or(s.len());
        s[..end].rfind(needle)
    } else {
        s[start..].find(needle).map(|b| b + start)
    };
    Ok(found.map_or(-1, |b| s[..b].chars().count() as i64))
}

fn index_of<'b, 'v>(a: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    const F: &str = "indexOf";
    let a = args(&a)?;
    let (s, needle) = (string(&a[0], F)?, string(&a[1], F)?);
    let from = match a.get(2) {
        Some(i) => int(i, F)?,
        None => 0,
    };
    out(Cel::Int(find(&s, &needle, from, false, F)?))
}

fn last_index_of<'b, 'v>(a: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    const F: &str = "lastIndexOf";
    let a = args(&a)?;
    let (s, needle) = (string(&a[0], F)?, string(&a[1], F)?);
    let from = match a.get(2) {
        Some(i) => int(i, F)?,
        None => s.chars().count() as i64,
    };
    out(Cel::Int(find(&s, &needle, from, true, F)?))
}

fn list_index_of<'b, 'v>(a: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let v = args(&a)?;
    let items = list(&v[0], "indexOf")?;
    let i = items.iter().position(|x| *x == v[1]);
    out(Cel::Int(i.map_or(-1, |i| i as i64)))
}

fn list_last_index_of<'b, 'v>(a: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let v = args(&a)?;
    let items = list(&v[0], "lastIndexOf")?;
    let i = items.iter().rposition(|x| *x == v[1]);
    out(Cel::Int(i.map_or(-1, |i| i as i64)))
}

/// Order of two values of one comparable kind (numbers compare across
/// int, uint and double).
fn compare(a: &Cel, b: &Cel) -> Option<Ordering> {
    use Cel::*;
    match (a, b) {
        (Int(x), Int(y)) => Some(x.cmp(y)),
        (UInt(x), UInt(y)) => Some(x.cmp(y)),
        (Float(x), Float(y)) => x.partial_cmp(y),
        (Int(x), UInt(y)) => Some(i128::from(*x).cmp(&i128::from(*y))),
        (UInt(x), Int(y)) => Some(i128::from(*x).cmp(&i128::from(*y))),
        (Int(x), Float(y)) => (*x as f64).partial_cmp(y),
        (Float(x), Int(y)) => x.partial_cmp(&(*y as f64)),
        (UInt(x), Float(y)) => (*x as f64).partial_cmp(y),
        (Float(x), UInt(y)) => x.partial_cmp(&(*y as f64)),
        (String(x), String(y)) => Some(x.cmp(y)),
        (Bytes(x), Bytes(y)) => Some(x.cmp(y)),
        (Bool(x), Bool(y)) => Some(x.cmp(y)),
        (Timestamp(x), Timestamp(y)) => Some(x.cmp(y)),
        (Duration(x), Duration(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

fn incomparable(f: &str, a: &Cel, b: &Cel) -> ExecutionError {
    err(
        f,
        format!("cannot compare {} and {}", a.type_of(), b.type_of()),
    )
}

fn is_sorted<'b, 'v>(a: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    const F: &str = "isSorted";
    let v = args(&a)?;
    let items = list(&v[0], F)?;
    for w in items.windows(2) {
        match compare(&w[0], &w[1]) {
            Some(Ordering::Greater) => return out(Cel::Bool(false)),
            Some(_) => {}
            None => return Err(incomparable(F, &w[0], &w[1])),
        }
    }
    out(Cel::Bool(true))
}

fn sum<'b, 'v>(a: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    const F: &str = "sum";
    let v = args(&a)?;
    let items = list(&v[0], F)?;
    let overflow = || err(F, "integer overflow");
    let mut acc = match items.first() {
        None => return out(Cel::Int(0)),
        Some(Cel::Int(_)) => Cel::Int(0),
        Some(Cel::UInt(_)) => Cel::UInt(0),
        Some(Cel::Float(_)) => Cel::Float(0.0),
        Some(Cel::Duration(_)) => Cel::Duration(chrono::Duration::zero()),
        Some(other) => return Err(err(F, format!("cannot sum {}", other.type_of()))),
    };
    for item in items.iter() {
        acc = match (&acc, item) {
            (Cel::Int(x), Cel::Int(y)) => Cel::Int(x.checked_add(*y).ok_or_else(overflow)?),
            (Cel::UInt(x), Cel::UInt(y)) => Cel::UInt(x.checked_add(*y).ok_or_else(overflow)?),
            (Cel::Float(x), Cel::Float(y)) => Cel::Float(x + y),
            (Cel::Duration(x), Cel::Duration(y)) => {
                Cel::Duration(x.checked_add(y).ok_or_else(overflow)?)
            }
            (x, y) => return Err(incomparable(F, x, y)),
        };
    }
    out(acc)
}

fn extreme<'b, 'v>(
    a: Vec<CowVal<'b, 'v>>,
    f: &str,
    keep: Ordering,
) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let v = args(&a)?;
    let items = list(&v[0], f)?;
    let mut best = items
        .first()
        .ok_or_else(|| err(f, format!("{f} called on an empty list")))?;
    for item in items.iter().skip(1) {
        match compare(item, best) {
            Some(o) if o == keep => best = item,
            Some(_) => {}
            None => return Err(incomparable(f, item, best)),
        }
    }
    out(best.clone())
}

fn min<'b, 'v>(a: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    extreme(a, "min", Ordering::Less)
}

fn max<'b, 'v>(a: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    extreme(a, "max", Ordering::Greater)
}
