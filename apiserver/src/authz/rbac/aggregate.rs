//! Aggregated ClusterRoles: a role with `aggregationRule.clusterRoleSelectors`
//! grants the union of the rules of every other ClusterRole its selectors
//! pick (as `admin`, `edit` and `view` gather the `aggregate-to-*` roles).
//! [`effective_rules`] computes it for the index; [`run`] writes it back
//! into the role objects, as Kubernetes' clusterrole-aggregation
//! controller does, so that reading the role shows what it grants.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::http::{HeaderMap, HeaderValue, header};
use serde_json::{Value, json};

use super::MASTERS;
use super::index::{ClusterRole, Index};
use super::rule::Rule;
use crate::http::auth::UserInfo;
use crate::registry::Registry;
use crate::request::{RequestTarget, Verb};

/// How deep aggregated roles may nest (`admin` ⊇ `edit` ⊇ `view`); a cycle
/// stops here instead of looping.
const MAX_DEPTH: usize = 8;

/// Whether a `LabelSelector` (matchLabels, matchExpressions) picks `labels`.
/// An empty selector picks every role, as Kubernetes reads it.
pub fn selects(selector: &Value, labels: &BTreeMap<String, String>) -> bool {
    let match_labels = selector
        .get("matchLabels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .all(|(k, v)| labels.get(k).map(String::as_str) == v.as_str());
    let expressions = selector
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .all(|e| {
            let key = e.get("key").and_then(Value::as_str).unwrap_or("");
            let values: Vec<&str> = e
                .get("values")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let have = labels.get(key).map(String::as_str);
            match e.get("operator").and_then(Value::as_str) {
                Some("In") => have.is_some_and(|h| values.contains(&h)),
                Some("NotIn") => have.is_none_or(|h| !values.contains(&h)),
                Some("Exists") => have.is_some(),
                Some("DoesNotExist") => have.is_none(),
                _ => false,
            }
        });
    match_labels && expressions
}

/// Each ClusterRole's effective rules: its own, or for an aggregated one the
/// rules of the roles its selectors pick (other than itself), in name order,
/// each rule once.
pub fn effective_rules(roles: &BTreeMap<String, ClusterRole>) -> HashMap<String, Vec<Rule>> {
    roles
        .keys()
        .map(|name| (name.clone(), effective(roles, name, 0)))
        .collect()
}

fn effective(roles: &BTreeMap<String, ClusterRole>, name: &str, depth: usize) -> Vec<Rule> {
    let Some(role) = roles.get(name) else {
        return vec![];
    };
    let Some(selectors) = &role.selectors else {
        return role.rules.clone();
    };
    if depth >= MAX_DEPTH {
        return role.rules.clone();
    }
    let mut out: Vec<Rule> = Vec::new();
    for sel in selectors {
        for (other, r) in roles {
            if other == name || !selects(sel, &r.labels) {
                continue;
            }
            for rule in effective(roles, other, depth + 1) {
                if !out.contains(&rule) {
                    out.push(rule);
                }
            }
        }
    }
    out
}

/// Keep every aggregated ClusterRole's stored rules equal to its effective
/// rules, for as long as the index is fed. Every member runs this; the
/// writes are the same merge patch, and a role already right is not
/// written, so members converge instead of taking turns.
pub async fn run(registry: Arc<Registry>, index: Arc<Index>) {
    let mut changed = index.subscribe();
    loop {
        write_pending(&registry, &index).await;
        if changed.changed().await.is_err() {
            return;
        }
    }
}

/// Write the effective rules of each aggregated ClusterRole whose stored
/// rules differ, as the index sees them; how many were written.
pub async fn write_pending(registry: &Registry, index: &Index) -> usize {
    let Some(rt) = registry
        .kinds
        .find("rbac.authorization.k8s.io", "v1", "clusterroles")
    else {
        return 0;
    };
    let apiserver = UserInfo {
        name: "system:apiserver".into(),
        groups: vec![MASTERS.into()],
        ..UserInfo::default()
    };
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/merge-patch+json"),
    );
    let mut written = 0;
    for (name, rules) in index.aggregation_pending() {
        let target = RequestTarget {
            rt: rt.clone(),
            namespace: None,
            name: Some(name.clone()),
            subresource: None,
        };
        let body = json!({"rules": rules}).to_string();
        let r = registry
            .serve(
                Verb::Patch,
                &target,
                &Default::default(),
                &headers,
                body.into(),
                &apiserver,
            )
            .await;
        match r {
            Ok(resp) if resp.status().is_success() => written += 1,
            Ok(resp) => {
                tracing::debug!(role = %name, status = %resp.status(), "aggregated rules not written")
            }
            Err(e) => tracing::debug!(role = %name, error = %e, "aggregated rules not written"),
        }
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(
        labels: &[(&str, &str)],
        rules: Vec<Rule>,
        selectors: Option<Vec<Value>>,
    ) -> ClusterRole {
        ClusterRole {
            rules,
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            selectors,
        }
    }

    #[test]
    fn aggregated_roles_union_what_their_selectors_pick() {
        let to = |l: &str| json!({"matchLabels": {format!("rbac.authorization.k8s.io/aggregate-to-{l}"): "true"}});
        let pods = Rule::resource(&["get"], &[""], &["pods"]);
        let secrets = Rule::resource(&["get"], &[""], &["secrets"]);
        let roles: BTreeMap<String, ClusterRole> = [
            ("admin", role(&[], vec![], Some(vec![to("admin")]))),
            (
                "edit",
                role(
                    &[("rbac.authorization.k8s.io/aggregate-to-admin", "true")],
                    vec![],
                    Some(vec![to("edit")]),
                ),
            ),
            (
                "view",
                role(
                    &[("rbac.authorization.k8s.io/aggregate-to-edit", "true")],
                    vec![],
                    Some(vec![to("view")]),
                ),
            ),
            (
                "a",
                role(
                    &[("rbac.authorization.k8s.io/aggregate-to-view", "true")],
                    vec![pods.clone()],
                    None,
                ),
            ),
            (
                "b",
                role(
                    &[("rbac.authorization.k8s.io/aggregate-to-edit", "true")],
                    vec![secrets.clone(), pods.clone()],
                    None,
                ),
            ),
            (
                "c",
                role(&[], vec![Rule::resource(&["*"], &["*"], &["*"])], None),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let eff = effective_rules(&roles);
        assert_eq!(eff["view"], vec![pods.clone()]);
        // Name order, each rule once, through nesting.
        assert_eq!(eff["edit"], vec![secrets.clone(), pods.clone()]);
        assert_eq!(eff["admin"], vec![secrets, pods]);
        assert_eq!(eff["c"].len(), 1);
        // Expressions.
        let l: BTreeMap<String, String> = [("tier".to_string(), "a".to_string())].into();
        let expr = |op: &str, v: &[&str]| json!({"matchExpressions": [{"key": "tier", "operator": op, "values": v}]});
        assert!(selects(&expr("In", &["a", "b"]), &l));
        assert!(!selects(&expr("NotIn", &["a"]), &l));
        assert!(selects(&expr("Exists", &[]), &l));
        assert!(!selects(&expr("DoesNotExist", &[]), &l));
        assert!(selects(&json!({}), &l));
    }

    #[test]
    fn a_cycle_of_aggregated_roles_ends() {
        let sel = |l: &str| Some(vec![json!({"matchLabels": {"x": l}})]);
        let roles: BTreeMap<String, ClusterRole> = [
            ("p", role(&[("x", "q")], vec![], sel("p"))),
            ("q", role(&[("x", "p")], vec![], sel("q"))),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        assert!(effective_rules(&roles)["p"].is_empty());
    }

    /// Three members, each with its own index and controller over one
    /// store: the first writes the aggregated rules, the others then find
    /// nothing to write; a new member role is written once.
    #[tokio::test]
    async fn members_write_aggregated_rules_once() {
        use crate::authz::rbac::{bootstrap, sync};
        use crate::kinds::Kinds;
        use crate::registry::storage::{MemoryStorage, Storage};
        use std::time::Duration;

        let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
        let registry = Arc::new(Registry::with_storage(storage.clone(), Kinds::builtin()));
        let members: Vec<Arc<Index>> = (0..3).map(|_| Arc::new(Index::default())).collect();
        for idx in &members {
            sync::spawn(storage.clone(), idx.clone());
        }
        let caught_up = || async {
            let rev = storage.linearize().await.unwrap();
            for idx in &members {
                let mut rx = idx.subscribe();
                tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|r| *r >= rev))
                    .await
                    .expect("the index catches up")
                    .unwrap();
            }
        };
        bootstrap::run(registry.clone()).await;
        caught_up().await;
        assert_eq!(
            write_pending(&registry, &members[0]).await,
            3,
            "admin, edit, view"
        );
        caught_up().await;
        for idx in &members {
            assert_eq!(write_pending(&registry, idx).await, 0);
            assert!(idx.aggregation_pending().is_empty());
        }
        let peek = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "peek", "labels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}},
            "rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["secrets"]}]});
        let target = RequestTarget {
            rt: registry
                .kinds
                .find("rbac.authorization.k8s.io", "v1", "clusterroles")
                .unwrap(),
            namespace: None,
            name: None,
            subresource: None,
        };
        let root = UserInfo {
            groups: vec![MASTERS.into()],
            ..UserInfo::default()
        };
        registry
            .create_object(&target, peek, false, &root)
            .await
            .unwrap();
        caught_up().await;
        assert_eq!(
            write_pending(&registry, &members[1]).await,
            3,
            "view, and through it edit and admin"
        );
        caught_up().await;
        for idx in &members {
            assert_eq!(write_pending(&registry, idx).await, 0);
        }
        let (view, _) = storage
            .get(
                "/registry/rbac.authorization.k8s.io/clusterroles/view",
                crate::registry::storage::Consistency::Linearizable,
            )
            .await
            .unwrap();
        assert!(String::from_utf8_lossy(&view.value).contains("secrets"));
    }
}
