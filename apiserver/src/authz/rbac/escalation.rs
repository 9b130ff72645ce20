//! Escalation prevention, as an admission plugin (Kubernetes does it in the
//! RBAC storage): a Role or ClusterRole may only grant what its writer
//! holds, unless the writer may `escalate` roles; a binding may only bind a
//! role whose rules its writer holds, unless the writer may `bind` that
//! role (by name). `system:masters` members skip both.

use std::sync::Arc;

use serde_json::Value;

use super::rule::{Rule, describe, rules_of, uncovered};
use super::{Index, MASTERS};
use crate::admission::{Admit, Attributes as Write, Operation};
use crate::authz::{Attributes, Authorizer, Decision};
use crate::error::ApiError;
use crate::http::auth::UserInfo;

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// The plugin: the index for what users hold, the whole authorizer chain
/// for the `escalate` and `bind` verbs.
pub struct Escalation {
    index: Arc<Index>,
    authorizer: Arc<dyn Authorizer>,
}

impl Escalation {
    pub fn new(index: Arc<Index>, authorizer: Arc<dyn Authorizer>) -> Escalation {
        Escalation { index, authorizer }
    }

    fn may(
        &self,
        user: &UserInfo,
        verb: &str,
        resource: &str,
        namespace: &str,
        name: &str,
    ) -> bool {
        let a = Attributes {
            user: user.clone(),
            verb: verb.into(),
            resource_request: true,
            api_group: RBAC_GROUP.into(),
            api_version: "*".into(),
            resource: resource.into(),
            namespace: namespace.into(),
            name: name.into(),
            ..Attributes::default()
        };
        self.authorizer.authorize(&a) == Decision::Allow
    }

    /// Refused unless `user` holds every grant of `rules` in `namespace`.
    fn confirm_held(
        &self,
        user: &UserInfo,
        namespace: &str,
        rules: &[Rule],
        refuse: impl Fn(String) -> ApiError,
    ) -> Result<(), ApiError> {
        let missing = uncovered(&self.index.rules_for(user, namespace), rules);
        if missing.is_empty() {
            return Ok(());
        }
        let groups: Vec<String> = user.groups.iter().map(|g| format!("{g:?}")).collect();
        let list: Vec<String> = missing.iter().map(describe).collect();
        Err(refuse(format!(
            "user {:?} (groups=[{}]) is attempting to grant RBAC permissions not currently held:\n{}",
            user.name,
            groups.join(" "),
            list.join("\n")
        )))
    }
}

impl Admit for Escalation {
    fn admit(&self, w: &Write<'_>) -> Result<(), ApiError> {
        let rt = &w.target.rt;
        if rt.group != RBAC_GROUP
            || w.operation == Operation::Delete
            || w.target.subresource.is_some()
            || w.user.groups.iter().any(|g| g == MASTERS)
        {
            return Ok(());
        }
        let Some(obj) = w.object else {
            return Ok(());
        };
        let namespace = w.target.namespace.as_deref().unwrap_or("");
        // A create names no object in its request, as Kubernetes asks.
        let name = if w.operation == Operation::Update {
            w.name
        } else {
            ""
        };
        let refuse = |reason: String| ApiError::Forbidden {
            group: RBAC_GROUP.into(),
            resource: rt.plural.clone(),
            name: w.name.into(),
            reason,
        };
        match rt.plural.as_str() {
            "roles" | "clusterroles" => {
                if self.may(w.user, "escalate", &rt.plural, namespace, name) {
                    return Ok(());
                }
                self.confirm_held(w.user, namespace, &rules_of(obj), refuse)?;
                let aggregated = obj.get("aggregationRule").is_some_and(|a| !a.is_null());
                if aggregated {
                    // An aggregation rule can gather anything.
                    let all = [
                        Rule::resource(&["*"], &["*"], &["*"]),
                        Rule::urls(&["*"], &["*"]),
                    ];
                    self.confirm_held(w.user, namespace, &all, |_| {
                        refuse(
                            "must have cluster-admin privileges to use the aggregationRule".into(),
                        )
                    })?;
                }
                Ok(())
            }
            "rolebindings" | "clusterrolebindings" => {
                let s = |p: &str| obj.pointer(p).and_then(Value::as_str).unwrap_or("");
                let (kind, role) = (s("/roleRef/kind"), s("/roleRef/name"));
                let resource = if kind == "Role" {
                    "roles"
                } else {
                    "clusterroles"
                };
                if self.may(w.user, "bind", resource, namespace, role) {
                    return Ok(());
                }
                let Some(rules) = self.index.role_rules(kind, namespace, role) else {
                    let what = if kind == "Role" {
                        "roles"
                    } else {
                        "clusterroles"
                    };
                    return Err(refuse(format!("{what}.{RBAC_GROUP} {role:?} not found")));
                };
                self.confirm_held(w.user, namespace, &rules, refuse)
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authz::Chain;
    use crate::authz::rbac::Rbac;
    use crate::kinds::Kinds;
    use crate::request::RequestTarget;
    use serde_json::json;

    fn user(name: &str) -> UserInfo {
        UserInfo {
            name: name.into(),
            groups: vec!["system:authenticated".into()],
            ..UserInfo::default()
        }
    }

    #[test]
    fn roles_and_bindings_grant_only_what_the_writer_holds() {
        let index = Arc::new(Index::from_objects(&[
            (
                "roles/dev/pods",
                json!({"rules": [{"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]}]}),
            ),
            (
                "roles/dev/secrets",
                json!({"rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["secrets"]}]}),
            ),
            (
                "roles/dev/manager",
                json!({"rules": [
                    {"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]},
                    {"verbs": ["create"], "apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles", "rolebindings"]},
                    {"verbs": ["bind"], "apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles"], "resourceNames": ["secrets"]},
                ]}),
            ),
            (
                "rolebindings/dev/m",
                json!({"roleRef": {"kind": "Role", "name": "manager"},
                "subjects": [{"kind": "User", "name": "alice"}]}),
            ),
            (
                "roles/dev/escalator",
                json!({"rules": [
                    {"verbs": ["escalate"], "apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles"]},
                ]}),
            ),
            (
                "rolebindings/dev/e",
                json!({"roleRef": {"kind": "Role", "name": "escalator"},
                "subjects": [{"kind": "User", "name": "erin"}]}),
            ),
        ]));
        let rbac: Arc<dyn Authorizer> = Arc::new(Chain(vec![Arc::new(Rbac::new(index.clone()))]));
        let plugin = Escalation::new(index, rbac);
        let kinds = Kinds::builtin();
        let target = |plural: &str| RequestTarget {
            rt: kinds.find(RBAC_GROUP, "v1", plural).unwrap(),
            namespace: Some("dev".into()),
            name: None,
            subresource: None,
        };
        let (roles, bindings) = (target("roles"), target("rolebindings"));
        let write = |u: &UserInfo, t: &RequestTarget, obj: &Value| {
            plugin.admit(&Write {
                user: u,
                operation: Operation::Create,
                target: t,
                name: "new",
                object: Some(obj),
                old: None,
            })
        };
        let alice = user("alice");
        let pods = json!({"rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}]});
        let secrets =
            json!({"rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["secrets"]}]});
        assert!(write(&alice, &roles, &pods).is_ok());
        let e = write(&alice, &roles, &secrets).unwrap_err();
        assert!(matches!(e, ApiError::Forbidden { .. }));
        assert_eq!(
            e.to_string(),
            "roles.rbac.authorization.k8s.io \"new\" is forbidden: user \"alice\" (groups=[\"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"\"], Resources:[\"secrets\"], Verbs:[\"get\"]}"
        );
        // `escalate` lets a writer grant what it does not hold.
        assert!(write(&user("erin"), &roles, &secrets).is_ok());
        let bind = |role: &str| {
            json!({"roleRef": {"kind": "Role", "name": role, "apiGroup": RBAC_GROUP},
            "subjects": [{"kind": "User", "name": "bob"}]})
        };
        // Binding a role whose rules alice holds; one she may `bind` by
        // name; not one she neither holds nor may bind; not a missing one.
        assert!(write(&alice, &bindings, &bind("pods")).is_ok());
        assert!(write(&alice, &bindings, &bind("secrets")).is_ok());
        assert!(write(&alice, &bindings, &bind("escalator")).is_err());
        assert!(write(&alice, &bindings, &bind("missing")).is_err());
        // Masters skip the check.
        let root = UserInfo {
            name: "root".into(),
            groups: vec![MASTERS.into()],
            ..UserInfo::default()
        };
        assert!(write(&root, &roles, &secrets).is_ok());
        let agg = json!({"aggregationRule": {"clusterRoleSelectors": [{}]}, "rules": []});
        let cluster = RequestTarget {
            namespace: None,
            ..target("clusterroles")
        };
        assert!(
            write(&alice, &cluster, &agg)
                .unwrap_err()
                .to_string()
                .contains("aggregationRule")
        );
    }
}
