//! Selector matching as Kubernetes defines it: label selectors (matchLabels
//! and matchExpressions In/NotIn/Exists/DoesNotExist) for pod affinity and
//! claims, and node selectors (terms ORed, requirements ANDed, the Gt/Lt
//! operators and `matchFields` on `metadata.name`) for node affinity and
//! a local volume's node affinity.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NodeSelector, NodeSelectorRequirement, NodeSelectorTerm};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

pub type Labels = BTreeMap<String, String>;

/// Whether `labels` satisfy `sel`; an empty selector matches everything.
/// An expression with an unknown operator matches nothing.
pub fn selector_matches(sel: &LabelSelector, labels: &Labels) -> bool {
    for (k, v) in sel.match_labels.iter().flatten() {
        if labels.get(k) != Some(v) {
            return false;
        }
    }
    for e in sel.match_expressions.iter().flatten() {
        let values = e.values.as_deref().unwrap_or_default();
        let got = labels.get(&e.key);
        let ok = match e.operator.as_str() {
            "In" => got.is_some_and(|g| values.contains(g)),
            "NotIn" => got.is_none_or(|g| !values.contains(g)),
            "Exists" => got.is_some(),
            "DoesNotExist" => got.is_none(),
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    true
}

/// Whether a requirement holds for `value` (the label's, or the field's).
fn requirement_holds(r: &NodeSelectorRequirement, value: Option<&String>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.contains(v)),
        "NotIn" => value.is_none_or(|v| !values.contains(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        // Gt and Lt compare integers; one value, both sides must parse.
        op @ ("Gt" | "Lt") => {
            let (Some(v), [bound]) = (value, values) else {
                return false;
            };
            match (v.parse::<i64>(), bound.parse::<i64>()) {
                (Ok(v), Ok(b)) if op == "Gt" => v > b,
                (Ok(v), Ok(b)) => v < b,
                _ => false,
            }
        }
        _ => false,
    }
}

/// Whether a node (`name`, `labels`) satisfies one term: every expression
/// and every field. A term with neither matches no node.
pub fn term_matches(term: &NodeSelectorTerm, name: &str, labels: &Labels) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    let name = name.to_string();
    exprs
        .iter()
        .all(|r| requirement_holds(r, labels.get(&r.key)))
        && fields.iter().all(|r| {
            // metadata.name is the one field Kubernetes supports here.
            r.key == "metadata.name" && requirement_holds(r, Some(&name))
        })
}

/// Whether a node satisfies a node selector: any of its terms.
pub fn node_selector_matches(sel: &NodeSelector, name: &str, labels: &Labels) -> bool {
    sel.node_selector_terms
        .iter()
        .any(|t| term_matches(t, name, labels))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(kv: &[(&str, &str)]) -> Labels {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn req(key: &str, op: &str, values: &[&str]) -> NodeSelectorRequirement {
        NodeSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: Some(values.iter().map(|v| v.to_string()).collect()),
        }
    }

    #[test]
    fn node_selector_requirements() {
        let node = labels(&[("zone", "a"), ("cores", "8"), ("ssd", "")]);
        let cases: &[(NodeSelectorRequirement, bool)] = &[
            (req("zone", "In", &["a", "b"]), true),
            (req("zone", "In", &["b"]), false),
            (req("zone", "NotIn", &["b"]), true),
            (req("missing", "NotIn", &["b"]), true),
            (req("zone", "NotIn", &["a"]), false),
            (req("ssd", "Exists", &[]), true),
            (req("missing", "Exists", &[]), false),
            (req("missing", "DoesNotExist", &[]), true),
            (req("zone", "DoesNotExist", &[]), false),
            (req("cores", "Gt", &["4"]), true),
            (req("cores", "Gt", &["8"]), false),
            (req("cores", "Lt", &["16"]), true),
            (req("zone", "Gt", &["1"]), false),
            (req("cores", "Gt", &["1", "2"]), false),
            (req("missing", "Lt", &["5"]), false),
            (req("zone", "Bogus", &["a"]), false),
        ];
        for (r, want) in cases {
            let term = NodeSelectorTerm {
                match_expressions: Some(vec![r.clone()]),
                match_fields: None,
            };
            assert_eq!(term_matches(&term, "n1", &node), *want, "{r:?}");
        }
    }

    #[test]
    fn terms_are_ored_requirements_anded_and_fields_match_the_name() {
        let node = labels(&[("zone", "a")]);
        let by_name = NodeSelectorTerm {
            match_expressions: None,
            match_fields: Some(vec![req("metadata.name", "In", &["n1"])]),
        };
        let both = NodeSelectorTerm {
            match_expressions: Some(vec![req("zone", "In", &["a"])]),
            match_fields: Some(vec![req("metadata.name", "In", &["n2"])]),
        };
        assert!(term_matches(&by_name, "n1", &node));
        assert!(!term_matches(&by_name, "n2", &node));
        assert!(!term_matches(&both, "n1", &node));
        assert!(!term_matches(&NodeSelectorTerm::default(), "n1", &node));
        let sel = NodeSelector {
            node_selector_terms: vec![both.clone(), by_name.clone()],
        };
        assert!(node_selector_matches(&sel, "n1", &node));
        assert!(!node_selector_matches(&sel, "n3", &node));
        let other_field = NodeSelectorTerm {
            match_expressions: None,
            match_fields: Some(vec![req("metadata.uid", "In", &["n1"])]),
        };
        assert!(!term_matches(&other_field, "n1", &node));
    }

    #[test]
    fn label_selectors() {
        let pod = labels(&[("app", "web"), ("tier", "front")]);
        let sel = |ml: &[(&str, &str)], ex: &[(&str, &str, &[&str])]| LabelSelector {
            match_labels: (!ml.is_empty()).then(|| labels(ml)),
            match_expressions: (!ex.is_empty()).then(|| {
                ex.iter()
                    .map(|(k, op, v)| LabelSelectorRequirement {
                        key: k.to_string(),
                        operator: op.to_string(),
                        values: Some(v.iter().map(|s| s.to_string()).collect()),
                    })
                    .collect()
            }),
        };
        assert!(selector_matches(&sel(&[], &[]), &pod));
        assert!(selector_matches(&sel(&[("app", "web")], &[]), &pod));
        assert!(!selector_matches(&sel(&[("app", "db")], &[]), &pod));
        assert!(selector_matches(
            &sel(&[("app", "web")], &[("tier", "In", &["front", "back"])]),
            &pod
        ));
        assert!(!selector_matches(
            &sel(&[], &[("tier", "NotIn", &["front"])]),
            &pod
        ));
        assert!(selector_matches(
            &sel(&[], &[("x", "DoesNotExist", &[])]),
            &pod
        ));
        assert!(!selector_matches(&sel(&[], &[("x", "Exists", &[])]), &pod));
        assert!(!selector_matches(&sel(&[], &[("app", "Gt", &["1"])]), &pod));
    }
}
