//! The JSONPath that CRDs write in `additionalPrinterColumns[].jsonPath`,
//! `selectableFields[].jsonPath` and the scale subresource's paths: the
//! subset of kubectl's JSONPath that people use there (`.spec.x`,
//! `['a.b']`, `[0]`, `[*]` and filters like
//! `[?(@.type=="Ready")]`), parsed once when a CRD is served and evaluated
//! per object. Selectable fields and scale paths must be *simple* (fields
//! only), which [`JsonPath::pointer`] turns into a JSON pointer.

use serde_json::Value;

/// Longest path accepted; a CRD's paths are short.
const MAX_LEN: usize = 1024;

/// A parsed path.
#[derive(Clone, Debug, PartialEq)]
pub struct JsonPath(Vec<Step>);

#[derive(Clone, Debug, PartialEq)]
enum Step {
    /// `.name` or `['name']`.
    Field(String),
    /// `[n]`; negative counts from the end.
    Index(i64),
    /// `[*]` or `.*`: every element or value.
    All,
    /// `[?(@.path op literal)]` or `[?(@.path)]`.
    Filter(Filter),
}

#[derive(Clone, Debug, PartialEq)]
struct Filter {
    path: Vec<Step>,
    test: Option<(bool, Value)>,
}

impl JsonPath {
    /// Parse `path` (optionally wrapped in `{…}` and starting with `$`).
    pub fn parse(path: &str) -> Result<JsonPath, String> {
        if path.len() > MAX_LEN {
            return Err(format!("longer than {MAX_LEN} characters"));
        }
        let mut p = path.trim();
        if let Some(inner) = p.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            p = inner.trim();
        }
        p = p.strip_prefix('$').unwrap_or(p);
        let chars: Vec<char> = p.chars().collect();
        let mut at = 0;
        let steps = parse_steps(&chars, &mut at, false)?;
        if at != chars.len() {
            return Err(format!("unexpected {:?} at {at}", chars[at]));
        }
        if steps.is_empty() {
            return Err("empty path".into());
        }
        Ok(JsonPath(steps))
    }

    /// Every value the path selects in `obj`, in document order.
    pub fn find<'a>(&self, obj: &'a Value) -> Vec<&'a Value> {
        eval(&self.0, obj)
    }

    /// The first value selected, if any.
    pub fn first<'a>(&self, obj: &'a Value) -> Option<&'a Value> {
        self.find(obj).into_iter().next()
    }

    /// The JSON pointer of a simple path (fields only), `None` otherwise.
    pub fn pointer(&self) -> Option<String> {
        self.0
            .iter()
            .map(|s| match s {
                Step::Field(f) => Some(format!("/{}", f.replace('~', "~0").replace('/', "~1"))),
                _ => None,
            })
            .collect()
    }

    /// The field names of a simple path (`.spec.color` → `spec.color`),
    /// as field selectors name it; `None` when not simple.
    pub fn field_label(&self) -> Option<String> {
        let parts: Option<Vec<&str>> = self
            .0
            .iter()
            .map(|s| match s {
                Step::Field(f) => Some(f.as_str()),
                _ => None,
            })
            .collect();
        parts.map(|p| p.join("."))
    }
}

fn parse_steps(c: &[char], at: &mut usize, in_filter: bool) -> Result<Vec<Step>, String> {
    let mut steps = Vec::new();
    while *at < c.len() {
        match c[*at] {
            '.' => {
                *at += 1;
                if c.get(*at) == Some(&'.') {
                    return Err("recursive descent (..) is not supported".into());
                }
                if c.get(*at) == Some(&'*') {
                    *at += 1;
                    steps.push(Step::All);
                    continue;
                }
                let start = *at;
                while *at < c.len() && !".[] )=!<>".contains(c[*at]) {
                    *at += 1;
                }
                if start == *at {
                    return Err(format!("a field name is missing at {start}"));
                }
                steps.push(Step::Field(c[start..*at].iter().collect()));
            }
            '[' => {
                *at += 1;
                steps.push(parse_bracket(c, at)?);
            }
            _ if in_filter => break,
            other => return Err(format!("unexpected {other:?} at {}", *at)),
        }
    }
    Ok(steps)
}

fn parse_bracket(c: &[char], at: &mut usize) -> Result<Step, String> {
    let close = |at: &mut usize| -> Result<(), String> {
        if c.get(*at) == Some(&']') {
            *at += 1;
            Ok(())
        } else {
            Err(format!("expected ] at {}", *at))
        }
    };
    match c.get(*at) {
        Some('*') => {
            *at += 1;
            close(at)?;
            Ok(Step::All)
        }
        Some(q @ ('\'' | '"')) => {
            let s = quoted(c, at, *q)?;
            close(at)?;
            Ok(Step::Field(s))
        }
        Some('?') => {
            *at += 1;
            expect(c, at, '(')?;
            skip_spaces(c, at);
            expect(c, at, '@')?;
            let path = parse_steps(c, at, true)?;
            skip_spaces(c, at);
            let test = match (c.get(*at), c.get(*at + 1)) {
                (Some('='), Some('=')) | (Some('!'), Some('=')) => {
                    let equal = c[*at] == '=';
                    *at += 2;
                    skip_spaces(c, at);
                    Some((equal, literal(c, at)?))
                }
                _ => None,
            };
            skip_spaces(c, at);
            expect(c, at, ')')?;
            close(at)?;
            Ok(Step::Filter(Filter { path, test }))
        }
        _ => {
            let start = *at;
            while *at < c.len() && (c[*at] == '-' || c[*at].is_ascii_digit()) {
                *at += 1;
            }
            let n: String = c[start..*at].iter().collect();
            let i = n
                .parse::<i64>()
                .map_err(|_| format!("expected an index, a quoted name, * or ?() at {start}"))?;
            close(at)?;
            Ok(Step::Index(i))
        }
    }
}

fn expect(c: &[char], at: &mut usize, want: char) -> Result<(), String> {
    if c.get(*at) == Some(&want) {
        *at += 1;
        Ok(())
    } else {
        Err(format!("expected {want:?} at {}", *at))
    }
}

fn skip_spaces(c: &[char], at: &mut usize) {
    while c.get(*at) == Some(&' ') {
        *at += 1;
    }
}

fn quoted(c: &[char], at: &mut usize, q: char) -> Result<String, String> {
    *at += 1;
    let start = *at;
    while *at < c.len() && c[*at] != q {
        *at += 1;
    }
    if *at == c.len() {
        return Err(format!("unterminated string at {start}"));
    }
    let s = c[start..*at].iter().collect();
    *at += 1;
    Ok(s)
}

/// A filter's right-hand side: a quoted string, a number, true or false.
fn literal(c: &[char], at: &mut usize) -> Result<Value, String> {
    if let Some(q @ ('\'' | '"')) = c.get(*at) {
        return quoted(c, at, *q).map(Value::String);
    }
    let start = *at;
    while *at < c.len() && !") ".contains(c[*at]) {
        *at += 1;
    }
    let word: String = c[start..*at].iter().collect();
    serde_json::from_str::<Value>(&word)
        .ok()
        .filter(|v| v.is_number() || v.is_boolean())
        .ok_or_else(|| format!("unsupported literal {word:?}"))
}

fn eval<'a>(steps: &[Step], v: &'a Value) -> Vec<&'a Value> {
    let Some((step, rest)) = steps.split_first() else {
        return vec![v];
    };
    let next: Vec<&'a Value> = match step {
        Step::Field(f) => v.get(f).into_iter().collect(),
        Step::Index(i) => v
            .as_array()
            .and_then(|a| {
                let n = if *i < 0 { a.len() as i64 + i } else { *i };
                usize::try_from(n).ok().and_then(|n| a.get(n))
            })
            .into_iter()
            .collect(),
        Step::All => match v {
            Value::Array(a) => a.iter().collect(),
            Value::Object(m) => m.values().collect(),
            _ => vec![],
        },
        Step::Filter(f) => v
            .as_array()
            .into_iter()
            .flatten()
            .filter(|item| {
                let found = eval(&f.path, item);
                match &f.test {
                    None => !found.is_empty(),
                    Some((equal, want)) => {
                        let hit = found.iter().any(|x| loosely_equal(x, want));
                        hit == *equal
                    }
                }
            })
            .collect(),
    };
    next.into_iter().flat_map(|n| eval(rest, n)).collect()
}

/// Numbers compare by value (`3` and `3.0`), everything else exactly.
fn loosely_equal(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn find(path: &str, obj: &Value) -> Vec<Value> {
        JsonPath::parse(path)
            .unwrap_or_else(|e| panic!("{path}: {e}"))
            .find(obj)
            .into_iter()
            .cloned()
            .collect()
    }

    #[test]
    fn paths_people_write_in_printer_columns() {
        let obj = json!({"spec": {"x": 3, "a.b": "dotted", "list": [1, 2, 3]},
            "status": {"conditions": [
                {"type": "Synced", "status": "False"},
                {"type": "Ready", "status": "True", "count": 2}]}});
        assert_eq!(find(".spec.x", &obj), [json!(3)]);
        assert_eq!(find("{.spec.x}", &obj), [json!(3)]);
        assert_eq!(find("$.spec['a.b']", &obj), [json!("dotted")]);
        assert_eq!(find(".spec.list[1]", &obj), [json!(2)]);
        assert_eq!(find(".spec.list[-1]", &obj), [json!(3)]);
        assert_eq!(find(".spec.list[*]", &obj).len(), 3);
        assert_eq!(
            find(r#".status.conditions[?(@.type=="Ready")].status"#, &obj),
            [json!("True")]
        );
        assert_eq!(
            find(".status.conditions[?(@.type != 'Ready')].status", &obj),
            [json!("False")]
        );
        assert_eq!(
            find(".status.conditions[?(@.count == 2)].type", &obj),
            [json!("Ready")]
        );
        assert_eq!(
            find(".status.conditions[?(@.count)].type", &obj),
            [json!("Ready")]
        );
        assert!(find(".spec.missing.deeper", &obj).is_empty());
        assert!(find(".spec.list[7]", &obj).is_empty());
    }

    #[test]
    fn bad_paths_are_refused_and_simple_ones_become_pointers() {
        for bad in [
            "",
            ".",
            "spec",
            "..spec",
            ".a[",
            ".a[?(@.x==)]",
            ".a['x]",
            ".a]",
        ] {
            assert!(JsonPath::parse(bad).is_err(), "{bad:?} should not parse");
        }
        let p = JsonPath::parse(".spec.replicas").unwrap();
        assert_eq!(p.pointer().as_deref(), Some("/spec/replicas"));
        assert_eq!(p.field_label().as_deref(), Some("spec.replicas"));
        let odd = JsonPath::parse(".spec['a/b']").unwrap();
        assert_eq!(odd.pointer().as_deref(), Some("/spec/a~1b"));
        assert_eq!(JsonPath::parse(".spec.list[0]").unwrap().pointer(), None);
    }
}
