//! The in-memory RBAC index: every Role, ClusterRole, RoleBinding and
//! ClusterRoleBinding as the watch stream last delivered it, and each
//! ClusterRole's effective rules (an aggregated one's are the union of the
//! roles its selectors pick). Authorization reads only this.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use serde_json::Value;

use super::aggregate;
use super::rule::{Rule, rules_of};
use crate::http::auth::UserInfo;

/// Where the four RBAC kinds are stored (the registry's key layout:
/// `/registry/{group}/{plural}/[{namespace}/]{name}`).
pub const PREFIX: &str = "/registry/rbac.authorization.k8s.io/";

/// One ClusterRole: its own rules, its labels (which aggregation selects
/// on) and its aggregation rule's selectors, if any.
#[derive(Clone, Debug, Default)]
pub struct ClusterRole {
    pub rules: Vec<Rule>,
    pub labels: BTreeMap<String, String>,
    pub selectors: Option<Vec<Value>>,
}

/// A binding's subject.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subject {
    pub kind: String,
    pub name: String,
    pub namespace: String,
}

/// A RoleBinding or ClusterRoleBinding: the role it names and to whom.
#[derive(Clone, Debug)]
pub struct Binding {
    pub role_kind: String,
    pub role_name: String,
    pub subjects: Vec<Subject>,
}

impl Binding {
    fn of(obj: &Value) -> Binding {
        let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let role = obj.get("roleRef").cloned().unwrap_or_default();
        Binding {
            role_kind: s(&role, "kind"),
            role_name: s(&role, "name"),
            subjects: obj
                .get("subjects")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|v| Subject {
                    kind: s(v, "kind"),
                    name: s(v, "name"),
                    namespace: s(v, "namespace"),
                })
                .collect(),
        }
    }

    /// Whether the binding names `user`; `namespace` is the binding's own,
    /// the default of a ServiceAccount subject without one.
    fn applies_to(&self, user: &UserInfo, namespace: &str) -> bool {
        self.subjects.iter().any(|s| match s.kind.as_str() {
            "User" => s.name == user.name,
            "Group" => user.groups.contains(&s.name),
            "ServiceAccount" => {
                let ns = if s.namespace.is_empty() {
                    namespace
                } else {
                    &s.namespace
                };
                user.name
                    .strip_prefix("system:serviceaccount:")
                    .and_then(|rest| rest.split_once(':'))
                    == Some((ns, s.name.as_str()))
            }
            _ => false,
        })
    }
}

#[derive(Default)]
struct State {
    roles: HashMap<(String, String), Arc<Vec<Rule>>>,
    cluster_roles: BTreeMap<String, ClusterRole>,
    /// Each ClusterRole's effective rules, recomputed when one changes.
    effective: HashMap<String, Arc<Vec<Rule>>>,
    role_bindings: BTreeMap<(String, String), Binding>,
    cluster_role_bindings: BTreeMap<String, Binding>,
    /// The revision of the last change applied.
    revision: u64,
}

/// The index, shared by the authorizer, the reviews, the escalation check,
/// the aggregation controller and the task that feeds it.
pub struct Index {
    state: RwLock<State>,
    /// The revision applied, for whoever waits on changes.
    changed: tokio::sync::watch::Sender<u64>,
}

impl Default for Index {
    fn default() -> Index {
        Index {
            state: RwLock::default(),
            changed: tokio::sync::watch::channel(0).0,
        }
    }
}

/// What a key under [`PREFIX`] names: the plural, namespace ("" for the
/// cluster-scoped kinds) and name.
fn parse_key(key: &str) -> Option<(&str, &str, &str)> {
    let rest = key.strip_prefix(PREFIX)?;
    let parts: Vec<&str> = rest.split('/').collect();
    match parts.as_slice() {
        [plural @ ("roles" | "rolebindings"), ns, name] => Some((plural, ns, name)),
        [plural @ ("clusterroles" | "clusterrolebindings"), name] => Some((plural, "", name)),
        _ => None,
    }
}

impl Index {
    /// Forget every object of `plural` (roles, clusterroles, rolebindings,
    /// clusterrolebindings) and load `objects` (key, value) read at `revision`.
    pub fn replace_all<'a>(
        &self,
        plural: &str,
        objects: impl IntoIterator<Item = (&'a str, &'a [u8])>,
        revision: u64,
    ) {
        {
            let mut st = self.state.write().unwrap();
            match plural {
                "roles" => st.roles.clear(),
                "clusterroles" => st.cluster_roles.clear(),
                "rolebindings" => st.role_bindings.clear(),
                "clusterrolebindings" => st.cluster_role_bindings.clear(),
                _ => {}
            }
            for (k, v) in objects {
                apply(&mut st, k, Some(v));
            }
            recompute(&mut st);
            st.revision = st.revision.max(revision);
        }
        self.changed.send_replace(revision);
    }

    /// Apply one revision's changes: a key with its new value, or `None`
    /// when it was deleted.
    pub fn apply_changes<'a>(
        &self,
        changes: impl IntoIterator<Item = (&'a str, Option<&'a [u8]>)>,
        revision: u64,
    ) {
        {
            let mut st = self.state.write().unwrap();
            let mut roles_changed = false;
            for (k, v) in changes {
                roles_changed |= apply(&mut st, k, v);
            }
            if roles_changed {
                recompute(&mut st);
            }
            st.revision = st.revision.max(revision);
        }
        self.changed.send_replace(revision);
    }

    /// The newest revision applied from any of the four kinds' streams (0
    /// before the first list).
    pub fn revision(&self) -> u64 {
        self.state.read().unwrap().revision
    }

    /// Changes of the applied revision.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Every rule that applies to `user` in `namespace` ("" for the cluster
    /// scope: ClusterRoleBindings only), in order, until `visit` returns
    /// true; whether it did.
    pub fn visit(
        &self,
        user: &UserInfo,
        namespace: &str,
        mut visit: impl FnMut(&Rule) -> bool,
    ) -> bool {
        let st = self.state.read().unwrap();
        for b in st.cluster_role_bindings.values() {
            if b.role_kind == "ClusterRole"
                && b.applies_to(user, "")
                && let Some(rules) = st.effective.get(&b.role_name)
                && rules.iter().any(&mut visit)
            {
                return true;
            }
        }
        if namespace.is_empty() {
            return false;
        }
        let from = (namespace.to_string(), String::new());
        for ((ns, _), b) in st.role_bindings.range(from..) {
            if ns != namespace {
                break;
            }
            if !b.applies_to(user, namespace) {
                continue;
            }
            let rules = match b.role_kind.as_str() {
                "Role" => st.roles.get(&(ns.clone(), b.role_name.clone())),
                "ClusterRole" => st.effective.get(&b.role_name),
                _ => None,
            };
            if rules.is_some_and(|r| r.iter().any(&mut visit)) {
                return true;
            }
        }
        false
    }

    /// Every rule that applies to `user` in `namespace`.
    pub fn rules_for(&self, user: &UserInfo, namespace: &str) -> Vec<Rule> {
        let mut out = Vec::new();
        self.visit(user, namespace, |r| {
            out.push(r.clone());
            false
        });
        out
    }

    /// The rules of the role a binding names (`Role` in `namespace`, or a
    /// `ClusterRole`); `None` when it does not exist.
    pub fn role_rules(&self, kind: &str, namespace: &str, name: &str) -> Option<Vec<Rule>> {
        let st = self.state.read().unwrap();
        match kind {
            "Role" => st
                .roles
                .get(&(namespace.to_string(), name.to_string()))
                .map(|r| r.to_vec()),
            "ClusterRole" => st.effective.get(name).map(|r| r.to_vec()),
            _ => None,
        }
    }

    /// The aggregated ClusterRoles whose stored rules differ from their
    /// effective ones, with the rules to write.
    pub fn aggregation_pending(&self) -> Vec<(String, Vec<Rule>)> {
        let st = self.state.read().unwrap();
        st.cluster_roles
            .iter()
            .filter(|(_, r)| r.selectors.is_some())
            .filter_map(|(name, r)| {
                let eff = st.effective.get(name)?;
                (**eff != r.rules).then(|| (name.clone(), eff.to_vec()))
            })
            .collect()
    }
}

#[cfg(test)]
impl Index {
    /// An index of `objects`, keyed by their path under [`PREFIX`].
    pub fn from_objects(objects: &[(&str, Value)]) -> Index {
        let idx = Index::default();
        let bytes: Vec<(String, Vec<u8>)> = objects
            .iter()
            .map(|(k, v)| (format!("{PREFIX}{k}"), v.to_string().into_bytes()))
            .collect();
        idx.apply_changes(
            bytes.iter().map(|(k, v)| (k.as_str(), Some(v.as_slice()))),
            1,
        );
        idx
    }
}

/// Apply one key's change; whether it was a role (effective rules may change).
fn apply(st: &mut State, key: &str, value: Option<&[u8]>) -> bool {
    let Some((plural, ns, name)) = parse_key(key) else {
        return false;
    };
    let obj: Option<Value> = value.and_then(|v| serde_json::from_slice(v).ok());
    let id = (ns.to_string(), name.to_string());
    match (plural, obj) {
        ("roles", Some(o)) => {
            st.roles.insert(id, Arc::new(rules_of(&o)));
        }
        ("roles", None) => {
            st.roles.remove(&id);
        }
        ("clusterroles", Some(o)) => {
            let labels = o
                .pointer("/metadata/labels")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                        .collect()
                })
                .unwrap_or_default();
            let selectors = o
                .pointer("/aggregationRule/clusterRoleSelectors")
                .and_then(Value::as_array)
                .cloned();
            st.cluster_roles.insert(
                name.to_string(),
                ClusterRole {
                    rules: rules_of(&o),
                    labels,
                    selectors,
                },
            );
            return true;
        }
        ("clusterroles", None) => {
            st.cluster_roles.remove(name);
            return true;
        }
        ("rolebindings", Some(o)) => {
            st.role_bindings.insert(id, Binding::of(&o));
        }
        ("rolebindings", None) => {
            st.role_bindings.remove(&id);
        }
        ("clusterrolebindings", Some(o)) => {
            st.cluster_role_bindings
                .insert(name.to_string(), Binding::of(&o));
        }
        ("clusterrolebindings", None) => {
            st.cluster_role_bindings.remove(name);
        }
        _ => {}
    }
    false
}

fn recompute(st: &mut State) {
    st.effective = aggregate::effective_rules(&st.cluster_roles)
        .into_iter()
        .map(|(k, v)| (k, Arc::new(v)))
        .collect();
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user(name: &str, groups: &[&str]) -> UserInfo {
        UserInfo {
            name: name.into(),
            groups: groups.iter().map(|s| s.to_string()).collect(),
            ..UserInfo::default()
        }
    }

    #[test]
    fn bindings_grant_to_users_groups_and_service_accounts() {
        let idx = Index::from_objects(&[
            (
                "roles/dev/reader",
                json!({"rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}]}),
            ),
            (
                "clusterroles/lister",
                json!({"rules": [{"verbs": ["list"], "apiGroups": [""], "resources": ["secrets"]}]}),
            ),
            (
                "rolebindings/dev/r",
                json!({"roleRef": {"kind": "Role", "name": "reader"},
                "subjects": [{"kind": "User", "name": "alice"}, {"kind": "ServiceAccount", "name": "bot"}]}),
            ),
            (
                "rolebindings/dev/l",
                json!({"roleRef": {"kind": "ClusterRole", "name": "lister"},
                "subjects": [{"kind": "Group", "name": "devs"}]}),
            ),
            (
                "clusterrolebindings/all",
                json!({"roleRef": {"kind": "ClusterRole", "name": "lister"},
                "subjects": [{"kind": "ServiceAccount", "name": "ops", "namespace": "tools"}]}),
            ),
        ]);
        let count = |u: &UserInfo, ns: &str| idx.rules_for(u, ns).len();
        assert_eq!(count(&user("alice", &[]), "dev"), 1);
        assert_eq!(count(&user("alice", &[]), "prod"), 0);
        assert_eq!(count(&user("alice", &[]), ""), 0);
        // A RoleBinding to a ClusterRole grants within its namespace only.
        assert_eq!(count(&user("bob", &["devs"]), "dev"), 1);
        assert_eq!(count(&user("bob", &["devs"]), "prod"), 0);
        // A ServiceAccount subject without a namespace is the binding's.
        assert_eq!(count(&user("system:serviceaccount:dev:bot", &[]), "dev"), 1);
        assert_eq!(
            count(&user("system:serviceaccount:prod:bot", &[]), "dev"),
            0
        );
        assert_eq!(count(&user("system:serviceaccount:tools:ops", &[]), "x"), 1);
        assert_eq!(count(&user("bot", &[]), "dev"), 0);
        // Deleting the binding takes the grant away.
        idx.apply_changes([(format!("{PREFIX}rolebindings/dev/r").as_str(), None)], 2);
        assert_eq!(count(&user("alice", &[]), "dev"), 0);
        assert_eq!(idx.revision(), 2);
    }
}
