//! Label and field selectors (`labelSelector`, `fieldSelector`): parsed once
//! per request, then matched against every object a list, watch or
//! delete-collection reads.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::error::ApiError;
use crate::request::Query;

/// One requirement of a label selector.
#[derive(Clone, Debug, PartialEq)]
pub enum Requirement {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A label selector: every requirement must hold.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LabelSelector(pub Vec<Requirement>);

impl LabelSelector {
    /// Parse `a=b,c!=d,e in (f,g),h notin (i),j,!k`.
    pub fn parse(s: &str) -> Result<LabelSelector, ApiError> {
        let bad = |m: String| ApiError::BadRequest(format!("unable to parse requirement: {m}"));
        let mut out = Vec::new();
        // Split on commas outside parentheses.
        let mut parts = Vec::new();
        let (mut depth, mut start) = (0, 0);
        for (i, c) in s.char_indices() {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                ',' if depth == 0 => {
                    parts.push(&s[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        parts.push(&s[start..]);
        for p in parts.into_iter().map(str::trim).filter(|p| !p.is_empty()) {
            let set = |rest: &str| -> Result<Vec<String>, ApiError> {
                let inner = rest
                    .trim()
                    .strip_prefix('(')
                    .and_then(|r| r.strip_suffix(')'))
                    .ok_or_else(|| bad(format!("{p:?}: expected a (list)")))?;
                Ok(inner
                    .split(',')
                    .map(|v| v.trim().to_string())
                    .filter(|v| !v.is_empty())
                    .collect())
            };
            if let Some(k) = p.strip_prefix('!') {
                out.push(Requirement::NotExists(k.trim().to_string()));
            } else if let Some((k, v)) = p.split_once("!=") {
                out.push(Requirement::NotEq(k.trim().into(), v.trim().into()));
            } else if let Some((k, v)) = p.split_once("==") {
                out.push(Requirement::Eq(k.trim().into(), v.trim().into()));
            } else if let Some((k, v)) = p.split_once('=') {
                out.push(Requirement::Eq(k.trim().into(), v.trim().into()));
            } else if let Some((k, rest)) = p.split_once(" notin ") {
                out.push(Requirement::NotIn(k.trim().into(), set(rest)?));
            } else if let Some((k, rest)) = p.split_once(" in ") {
                out.push(Requirement::In(k.trim().into(), set(rest)?));
            } else if p
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
            {
                out.push(Requirement::Exists(p.to_string()));
            } else {
                return Err(bad(format!("{p:?}")));
            }
        }
        Ok(LabelSelector(out))
    }

    /// Whether labels satisfy every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|r| match r {
            Requirement::Eq(k, v) => labels.get(k) == Some(v),
            Requirement::NotEq(k, v) => labels.get(k) != Some(v),
            Requirement::In(k, vs) => labels.get(k).is_some_and(|x| vs.contains(x)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|x| !vs.contains(x)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::NotExists(k) => !labels.contains_key(k),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One requirement of a field selector.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldRequirement {
    /// The field as a JSON pointer (`spec.nodeName` → `/spec/nodeName`),
    /// made once when the selector is parsed, not per object.
    pub pointer: String,
    /// Whether the field must equal the value (`=`, `==`) or differ (`!=`).
    pub equal: bool,
    pub value: String,
}

/// A field selector: every requirement must hold.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FieldSelector(pub Vec<FieldRequirement>);

impl FieldSelector {
    /// Parse `field=value`, `field==value`, `field!=value`, comma-separated.
    pub fn parse(s: &str) -> Result<FieldSelector, ApiError> {
        s.split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| {
                let req = |k: &str, equal: bool, v: &str| FieldRequirement {
                    pointer: format!("/{}", k.trim().replace('.', "/")),
                    equal,
                    value: v.trim().to_string(),
                };
                if let Some((k, v)) = p.split_once("!=") {
                    Ok(req(k, false, v))
                } else if let Some((k, v)) = p.split_once("==").or_else(|| p.split_once('=')) {
                    Ok(req(k, true, v))
                } else {
                    Err(ApiError::BadRequest(format!(
                        "invalid field selector: {p:?}"
                    )))
                }
            })
            .collect::<Result<_, _>>()
            .map(FieldSelector)
    }

    /// Whether the object's fields satisfy every requirement; a missing
    /// field reads as the empty string.
    pub fn matches(&self, obj: &Value) -> bool {
        self.0.iter().all(|r| {
            let actual = obj.pointer(&r.pointer).map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            });
            (actual.as_deref().unwrap_or("") == r.value) == r.equal
        })
    }

    /// A cheap test before decoding an object: an equality requirement
    /// (`spec.nodeName=node-1`) can only match an object whose stored JSON
    /// contains the value's text. Values that JSON would escape, and empty
    /// values (which match a missing field), are left to [`Self::matches`].
    pub fn may_match(&self, raw: &[u8]) -> bool {
        self.0.iter().all(|r| {
            let plain = !r.value.is_empty()
                && r.value
                    .bytes()
                    .all(|b| b >= 0x20 && b != b'"' && b != b'\\' && b < 0x7f);
            !r.equal || !plain || raw.windows(r.value.len()).any(|w| w == r.value.as_bytes())
        })
    }
}

/// The label and field selectors of a request.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Selector {
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

impl Selector {
    /// The `labelSelector` and `fieldSelector` parameters; absent ones select everything.
    pub fn from_query(q: &Query) -> Result<Selector, ApiError> {
        Ok(Selector {
            labels: q
                .get("labelSelector")
                .map(|s| LabelSelector::parse(s))
                .transpose()?
                .unwrap_or_default(),
            fields: q
                .get("fieldSelector")
                .map(|s| FieldSelector::parse(s))
                .transpose()?
                .unwrap_or_default(),
        })
    }

    /// Whether an object matches both selectors.
    pub fn matches(&self, obj: &Value) -> bool {
        (self.labels.is_empty() || self.labels.matches(&crate::meta::labels(obj)))
            && self.fields.matches(obj)
    }

    /// See [`FieldSelector::may_match`]: `false` only for an object that
    /// cannot match.
    pub fn may_match(&self, raw: &[u8]) -> bool {
        self.fields.may_match(raw)
    }

    /// Whether it selects everything (no requirement at all).
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.fields.0.is_empty()
    }

    /// The field selector's equality requirements as (JSON pointer, value):
    /// what storage with an index can narrow a LIST by
    /// ([`Storage::list_matching`](crate::registry::storage::Storage::list_matching)).
    pub fn equalities(&self) -> Vec<(String, String)> {
        self.fields
            .0
            .iter()
            .filter(|r| r.equal)
            .map(|r| (r.pointer.clone(), r.value.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_selectors() {
        let l: BTreeMap<String, String> = [("app", "nginx"), ("tier", "web")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let m = |s: &str| LabelSelector::parse(s).unwrap().matches(&l);
        assert!(m("app=nginx,tier in (web,db)"));
        assert!(m("app==nginx"));
        assert!(!m("app!=nginx"));
        assert!(m("tier notin (db)"));
        assert!(m("app,!missing"));
        assert!(!m("missing"));
        assert!(LabelSelector::parse("a in b").is_err());
    }

    #[test]
    fn the_prefilter_never_drops_a_match() {
        let pod = br#"{"metadata":{"name":"p"},"spec":{"nodeName":"node-7","replicas":3}}"#;
        let sel = |s: &str| Selector {
            labels: LabelSelector::default(),
            fields: FieldSelector::parse(s).unwrap(),
        };
        let obj: Value = serde_json::from_slice(pod).unwrap();
        for s in [
            "spec.nodeName=node-7",
            "spec.nodeName!=node-8",
            "spec.replicas=3",
            "metadata.name=p,spec.nodeName==node-7",
        ] {
            let f = sel(s);
            assert!(f.matches(&obj), "{s} should match the pod");
            assert!(f.may_match(pod), "{s} matches but was filtered out");
        }
        assert!(!sel("spec.nodeName=node-8").may_match(pod));
        assert!(!sel("metadata.name=q").may_match(pod));
    }
}
