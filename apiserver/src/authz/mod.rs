//! Authorization: may this user do this? A request's [`Attributes`] (as
//! Kubernetes' `authorizer.Attributes`) go to a chain of [`Authorizer`]s,
//! the Node authorizer first and RBAC after it, as kube-apiserver's
//! `--authorization-mode=Node,RBAC`; the first that allows or denies
//! decides, and a request nobody allows is forbidden.

pub mod node;

pub mod rbac;

use std::sync::Arc;

use crate::error::ApiError;
use crate::http::auth::UserInfo;
use crate::request::{RequestTarget, Verb};

/// What a request asks to do, as authorizers see it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attributes {
    pub user: UserInfo,
    /// Kubernetes' verb: get, list, watch, create, update, patch, delete,
    /// deletecollection; for non-resource requests the lowercase HTTP
    /// method (get, post, put, …); also impersonate, bind, escalate, use.
    pub verb: String,
    /// True for `/api/…` and `/apis/…/<resource>` requests; false for
    /// non-resource URLs (`/version`, `/metrics`, `/apis`, `/openapi/v2`).
    pub resource_request: bool,
    /// The API group ("" is core).
    pub api_group: String,
    pub api_version: String,
    /// The resource's plural ("pods").
    pub resource: String,
    /// "" or a subresource ("status", "binding", "token", …).
    pub subresource: String,
    /// "" for cluster-scoped resources and all-namespace collections.
    pub namespace: String,
    /// "" for collections.
    pub name: String,
    /// The request path, for non-resource requests.
    pub path: String,
}

/// One authorizer's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Refused, with the reason; no later authorizer is asked.
    Deny(String),
    /// This authorizer has no say; the next one is asked.
    NoOpinion,
}

/// An authorization mode (RBAC, Node, …). Decisions come from memory:
/// authorizers keep indexes current from the watch stream and never read
/// the store per request.
pub trait Authorizer: Send + Sync {
    fn authorize(&self, attrs: &Attributes) -> Decision;
}

/// The authorizers in order; the first that allows or denies decides.
#[derive(Clone, Default)]
pub struct Chain(pub Vec<Arc<dyn Authorizer>>);

impl Authorizer for Chain {
    fn authorize(&self, attrs: &Attributes) -> Decision {
        for a in &self.0 {
            match a.authorize(attrs) {
                Decision::NoOpinion => continue,
                d => return d,
            }
        }
        Decision::NoOpinion
    }
}

/// Allows everything: the chain before RBAC is wired in, and tests of
/// layers below authorization.
pub struct AlwaysAllow;

impl Authorizer for AlwaysAllow {
    fn authorize(&self, _: &Attributes) -> Decision {
        Decision::Allow
    }
}

impl Attributes {
    /// A resource request: `verb` on `t` (its namespace, name, subresource).
    pub fn resource(user: &UserInfo, verb: Verb, t: &RequestTarget) -> Attributes {
        Attributes {
            user: user.clone(),
            verb: verb_name(verb).into(),
            resource_request: true,
            api_group: t.rt.group.clone(),
            api_version: t.rt.version.clone(),
            resource: t.rt.plural.clone(),
            subresource: t
                .subresource
                .map(|s| s.name().to_string())
                .unwrap_or_default(),
            namespace: t.namespace.clone().unwrap_or_default(),
            name: t.name.clone().unwrap_or_default(),
            path: String::new(),
        }
    }

    /// A non-resource request: the lowercase method on `path`.
    pub fn path(user: &UserInfo, method: &str, path: &str) -> Attributes {
        Attributes {
            user: user.clone(),
            verb: method.to_ascii_lowercase(),
            path: path.into(),
            ..Attributes::default()
        }
    }
}

/// Kubernetes' name of a verb.
pub fn verb_name(v: Verb) -> &'static str {
    match v {
        Verb::Get => "get",
        Verb::List => "list",
        Verb::Watch => "watch",
        Verb::Create => "create",
        Verb::Update => "update",
        Verb::Patch => "patch",
        Verb::Delete => "delete",
        Verb::DeleteCollection => "deletecollection",
    }
}

/// The 403 of a refused request, worded as kube-apiserver's
/// `ForbiddenStatusError`: `User "alice" cannot list resource "secrets" in
/// API group "" in the namespace "default"`, `… at the cluster scope`,
/// `User "alice" cannot get path "/metrics"`, then `: reason` if any.
pub fn forbidden(a: &Attributes, reason: &str) -> ApiError {
    let user = &a.user.name;
    let mut msg = if !a.resource_request {
        format!("User {user:?} cannot {} path {:?}", a.verb, a.path)
    } else {
        let resource = if a.subresource.is_empty() {
            a.resource.clone()
        } else {
            format!("{}/{}", a.resource, a.subresource)
        };
        let scope = if a.namespace.is_empty() {
            "at the cluster scope".to_string()
        } else {
            format!("in the namespace {:?}", a.namespace)
        };
        format!(
            "User {user:?} cannot {} resource {resource:?} in API group {:?} {scope}",
            a.verb, a.api_group
        )
    };
    if !reason.is_empty() {
        msg = format!("{msg}: {reason}");
    }
    ApiError::Forbidden {
        group: a.api_group.clone(),
        resource: a.resource.clone(),
        name: a.name.clone(),
        reason: msg,
    }
}

/// Ok when `authorizer` allows `a`, else its 403.
pub fn check(authorizer: &dyn Authorizer, a: &Attributes) -> Result<(), ApiError> {
    match authorizer.authorize(a) {
        Decision::Allow => Ok(()),
        Decision::Deny(reason) => Err(forbidden(a, &reason)),
        Decision::NoOpinion => Err(forbidden(a, "")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden_is_worded_as_kubernetes_words_it() {
        let user = UserInfo {
            name: "alice".into(),
            ..UserInfo::default()
        };
        let mut a = Attributes {
            user: user.clone(),
            verb: "list".into(),
            resource_request: true,
            resource: "secrets".into(),
            namespace: "default".into(),
            ..Attributes::default()
        };
        let e = check(&Chain::default(), &a).unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"secrets is forbidden: User "alice" cannot list resource "secrets" in API group "" in the namespace "default""#
        );
        let st = e.status();
        assert_eq!(
            (st["code"].as_u64(), st["reason"].as_str()),
            (Some(403), Some("Forbidden"))
        );
        assert_eq!(st["details"]["kind"], "secrets");
        a.namespace.clear();
        a.name = "x".into();
        a.api_group = "apps".into();
        a.resource = "deployments".into();
        a.subresource = "scale".into();
        a.verb = "update".into();
        assert_eq!(
            forbidden(&a, "").to_string(),
            r#"deployments.apps "x" is forbidden: User "alice" cannot update resource "deployments/scale" in API group "apps" at the cluster scope"#
        );
        let p = Attributes::path(&user, "GET", "/metrics");
        assert_eq!(
            forbidden(&p, "no").to_string(),
            r#"forbidden: User "alice" cannot get path "/metrics": no"#
        );
        assert_eq!(check(&AlwaysAllow, &p).ok(), Some(()));
    }
}
