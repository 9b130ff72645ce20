//! One RBAC `PolicyRule`: whether it allows a request ([`Rule::allows`]),
//! and whether a set of rules covers another ([`uncovered`]), which escalation
//! prevention asks.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::authz::Attributes;

/// A `PolicyRule` of a Role or ClusterRole.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    #[serde(default)]
    pub verbs: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub api_groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resource_names: Vec<String>,
    #[serde(
        default,
        rename = "nonResourceURLs",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub non_resource_urls: Vec<String>,
}

/// The rules of a role object (`rules`); a malformed rule is left out, so
/// it grants nothing.
pub fn rules_of(obj: &Value) -> Vec<Rule> {
    obj.get("rules")
        .and_then(Value::as_array)
        .map(|rs| {
            rs.iter()
                .filter_map(|r| serde_json::from_value(r.clone()).ok())
                .collect()
        })
        .unwrap_or_default()
}

fn has(list: &[String], want: &str) -> bool {
    list.iter().any(|s| s == "*" || s == want)
}

impl Rule {
    /// A rule over resources.
    pub fn resource(verbs: &[&str], groups: &[&str], resources: &[&str]) -> Rule {
        let v = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
        Rule {
            verbs: v(verbs),
            api_groups: v(groups),
            resources: v(resources),
            ..Rule::default()
        }
    }

    /// A rule over non-resource URLs.
    pub fn urls(verbs: &[&str], urls: &[&str]) -> Rule {
        let v = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
        Rule {
            verbs: v(verbs),
            non_resource_urls: v(urls),
            ..Rule::default()
        }
    }

    /// The same rule limited to these object names.
    pub fn names(mut self, names: &[&str]) -> Rule {
        self.resource_names = names.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Whether this rule allows the request (Kubernetes' `RuleAllows`).
    pub fn allows(&self, a: &Attributes) -> bool {
        if !has(&self.verbs, &a.verb) {
            return false;
        }
        if !a.resource_request {
            return self
                .non_resource_urls
                .iter()
                .any(|u| url_matches(u, &a.path));
        }
        has(&self.api_groups, &a.api_group)
            && self.resource_matches(&a.resource, &a.subresource)
            && (self.resource_names.is_empty() || self.resource_names.contains(&a.name))
    }

    /// `pods`, `pods/status`, `*` (every resource and subresource) and
    /// `*/scale` (that subresource of every resource).
    fn resource_matches(&self, resource: &str, subresource: &str) -> bool {
        let combined = if subresource.is_empty() {
            resource.to_string()
        } else {
            format!("{resource}/{subresource}")
        };
        self.resources.iter().any(|r| {
            r == "*"
                || *r == combined
                || (!subresource.is_empty() && r.strip_prefix("*/") == Some(subresource))
        })
    }
}

/// A rule's URL: exact, or a prefix ending in `*`.
fn url_matches(rule: &str, path: &str) -> bool {
    match rule.strip_suffix('*') {
        Some(prefix) => path.starts_with(prefix),
        None => rule == path,
    }
}

/// Whether `owner` holds everything `rules` grant (Kubernetes' `Covers`):
/// each rule is split into single verb, group, resource and name grants,
/// and each of those must be within one owner rule. The grants that are not
/// covered come back.
pub fn uncovered(owner: &[Rule], rules: &[Rule]) -> Vec<Rule> {
    rules
        .iter()
        .flat_map(split)
        .filter(|sub| !owner.iter().any(|o| covers(o, sub)))
        .collect()
}

/// One rule as single grants.
fn split(r: &Rule) -> Vec<Rule> {
    let mut out = Vec::new();
    for verb in &r.verbs {
        for url in &r.non_resource_urls {
            out.push(Rule {
                verbs: vec![verb.clone()],
                non_resource_urls: vec![url.clone()],
                ..Rule::default()
            });
        }
        for group in &r.api_groups {
            for resource in &r.resources {
                let one = |names: Vec<String>| Rule {
                    verbs: vec![verb.clone()],
                    api_groups: vec![group.clone()],
                    resources: vec![resource.clone()],
                    resource_names: names,
                    non_resource_urls: vec![],
                };
                if r.resource_names.is_empty() {
                    out.push(one(vec![]));
                } else {
                    out.extend(r.resource_names.iter().map(|n| one(vec![n.clone()])));
                }
            }
        }
    }
    out
}

/// Whether `owner` covers the single grant `sub`.
fn covers(owner: &Rule, sub: &Rule) -> bool {
    let all = |list: &[String], want: &[String]| {
        list.iter().any(|s| s == "*") || want.iter().all(|w| list.contains(w))
    };
    let resources = sub.resources.iter().all(|r| {
        owner.resources.iter().any(|o| {
            o == "*"
                || o == r
                || r.split_once('/')
                    .is_some_and(|(_, s)| o.strip_prefix("*/") == Some(s))
        })
    });
    let urls = sub.non_resource_urls.iter().all(|u| {
        owner
            .non_resource_urls
            .iter()
            .any(|o| match o.strip_suffix('*') {
                Some(prefix) => u.starts_with(prefix),
                None => o == u,
            })
    });
    let names = if sub.resource_names.is_empty() {
        owner.resource_names.is_empty()
    } else {
        owner.resource_names.is_empty() || all(&owner.resource_names, &sub.resource_names)
    };
    all(&owner.verbs, &sub.verbs)
        && all(&owner.api_groups, &sub.api_groups)
        && resources
        && urls
        && names
}

/// A rule as Kubernetes prints it in an escalation refusal.
pub fn describe(r: &Rule) -> String {
    let q = |l: &[String]| {
        l.iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut parts = Vec::new();
    if !r.api_groups.is_empty() {
        parts.push(format!("APIGroups:[{}]", q(&r.api_groups)));
    }
    if !r.resources.is_empty() {
        parts.push(format!("Resources:[{}]", q(&r.resources)));
    }
    if !r.resource_names.is_empty() {
        parts.push(format!("ResourceNames:[{}]", q(&r.resource_names)));
    }
    if !r.non_resource_urls.is_empty() {
        parts.push(format!("NonResourceURLs:[{}]", q(&r.non_resource_urls)));
    }
    parts.push(format!("Verbs:[{}]", q(&r.verbs)));
    format!("{{{}}}", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(verb: &str, group: &str, resource: &str, sub: &str, name: &str) -> Attributes {
        Attributes {
            verb: verb.into(),
            resource_request: true,
            api_group: group.into(),
            resource: resource.into(),
            subresource: sub.into(),
            namespace: "default".into(),
            name: name.into(),
            ..Attributes::default()
        }
    }

    fn path(verb: &str, p: &str) -> Attributes {
        Attributes {
            verb: verb.into(),
            path: p.into(),
            ..Attributes::default()
        }
    }

    #[test]
    fn rules_match_verbs_groups_resources_and_names() {
        let r = Rule::resource(&["get", "list"], &[""], &["pods", "pods/status"]);
        assert!(r.allows(&req("get", "", "pods", "", "a")));
        assert!(r.allows(&req("list", "", "pods", "", "")));
        assert!(r.allows(&req("get", "", "pods", "status", "a")));
        assert!(!r.allows(&req("update", "", "pods", "", "a")));
        assert!(!r.allows(&req("get", "apps", "pods", "", "a")));
        assert!(!r.allows(&req("get", "", "pods", "log", "a")));
        assert!(!r.allows(&req("get", "", "secrets", "", "a")));
        let star = Rule::resource(&["*"], &["*"], &["*"]);
        assert!(star.allows(&req("delete", "apps", "deployments", "scale", "x")));
        let scale = Rule::resource(&["update"], &["apps"], &["*/scale"]);
        assert!(scale.allows(&req("update", "apps", "deployments", "scale", "x")));
        assert!(!scale.allows(&req("update", "apps", "deployments", "", "x")));
        assert!(!scale.allows(&req("update", "apps", "deployments", "status", "x")));
        let named = Rule::resource(&["get"], &[""], &["secrets"]).names(&["a"]);
        assert!(named.allows(&req("get", "", "secrets", "", "a")));
        assert!(!named.allows(&req("get", "", "secrets", "", "b")));
        // A list has no name, so a rule limited to names never allows it.
        assert!(!named.allows(&req("list", "", "secrets", "", "")));
        // Resource rules never allow paths, nor URL rules resources.
        assert!(!star.allows(&path("get", "/metrics")));
        let urls = Rule::urls(&["get"], &["/healthz", "/apis/*"]);
        assert!(urls.allows(&path("get", "/healthz")));
        assert!(!urls.allows(&path("get", "/healthz/x")));
        assert!(urls.allows(&path("get", "/apis/apps/v1")));
        assert!(!urls.allows(&path("post", "/apis/apps")));
        assert!(!urls.allows(&req("get", "", "pods", "", "")));
    }

    #[test]
    fn coverage_splits_rules_into_single_grants() {
        let owner = vec![
            Rule::resource(&["get", "list"], &["", "apps"], &["pods", "deployments"]),
            Rule::resource(&["update"], &["apps"], &["*/scale"]),
            Rule::resource(&["get"], &[""], &["secrets"]).names(&["a", "b"]),
            Rule::urls(&["get"], &["/logs/*"]),
        ];
        assert!(uncovered(&owner, &[Rule::resource(&["get"], &[""], &["pods"])]).is_empty());
        assert!(
            uncovered(
                &owner,
                &[Rule::resource(
                    &["update"],
                    &["apps"],
                    &["deployments/scale"]
                )]
            )
            .is_empty()
        );
        assert!(
            uncovered(
                &owner,
                &[Rule::resource(&["get"], &[""], &["secrets"]).names(&["b"])]
            )
            .is_empty()
        );
        assert!(uncovered(&owner, &[Rule::urls(&["get"], &["/logs/a"])]).is_empty());
        // All secrets are more than two of them.
        let more = uncovered(&owner, &[Rule::resource(&["get"], &[""], &["secrets"])]);
        assert_eq!(more, vec![Rule::resource(&["get"], &[""], &["secrets"])]);
        // Only the grant that is not held comes back.
        let more = uncovered(
            &owner,
            &[Rule::resource(&["get", "delete"], &[""], &["pods"])],
        );
        assert_eq!(more, vec![Rule::resource(&["delete"], &[""], &["pods"])]);
        assert_eq!(
            describe(&more[0]),
            r#"{APIGroups:[""], Resources:["pods"], Verbs:["delete"]}"#
        );
        // A wildcard is held only by a wildcard.
        assert!(!uncovered(&owner, &[Rule::resource(&["get"], &[""], &["*"])]).is_empty());
        let admin = vec![
            Rule::resource(&["*"], &["*"], &["*"]),
            Rule::urls(&["*"], &["*"]),
        ];
        assert!(uncovered(&admin, &owner).is_empty());
    }
}
