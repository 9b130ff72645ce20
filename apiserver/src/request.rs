//! What a resource path and method ask for: the kind, namespace, name and
//! subresource ([`RequestTarget`]) and the verb ([`Verb`]), as kube-apiserver's
//! `RequestInfo`. The router sends every `/api/{version}/…` and
//! `/apis/{group}/{version}/…` path here; nothing below reads the path again.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::http::{Method, Uri};

use crate::error::ApiError;
use crate::kinds::{Kinds, ResourceType, Subresource};

/// The query parameters of a request; of a repeated key, the last.
pub type Query = BTreeMap<String, String>;

/// The query of `uri`, percent-decoded.
pub fn query(uri: &Uri) -> Query {
    axum::extract::Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map(|q| q.0.into_iter().collect())
        .unwrap_or_default()
}

/// The segments of a path as sent: empty ones (`//`, a trailing `/`) are
/// skipped and nothing is percent-decoded, since a name is the store key's
/// last part byte for byte.
pub fn segments(path: &str) -> Vec<&str> {
    path.trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect()
}

/// The resource a request names.
#[derive(Clone, Debug)]
pub struct RequestTarget {
    pub rt: Arc<ResourceType>,
    /// `None`: a cluster-scoped kind, or all namespaces of a namespaced one.
    pub namespace: Option<String>,
    /// `None`: the collection.
    pub name: Option<String>,
    pub subresource: Option<Subresource>,
}

/// What is done to the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch,
    Delete,
    DeleteCollection,
}

impl RequestTarget {
    /// The target of `rest`, the segments after `/api/{version}` or
    /// `/apis/{group}/{version}` (at least one).
    pub fn resolve(
        kinds: &Kinds,
        group: &str,
        version: &str,
        rest: &[&str],
    ) -> Result<RequestTarget, ApiError> {
        // namespaces/{ns}/{plural}/... is namespaced unless it names the namespace itself.
        let (namespace, rest) = match rest {
            ["namespaces", ns, plural, tail @ ..]
                if kinds
                    .find(group, version, plural)
                    .is_some_and(|t| t.namespaced) =>
            {
                (Some(ns.to_string()), [&[*plural][..], tail].concat())
            }
            _ => (None, rest.to_vec()),
        };
        let plural = rest.first().ok_or(ApiError::NoRoute)?;
        let rt = kinds
            .find(group, version, plural)
            .ok_or(ApiError::NoRoute)?;
        if rest.len() > 3 {
            return Err(ApiError::NoRoute);
        }
        let subresource = match rest.get(2) {
            // An unknown subresource is no route, whatever the method.
            Some(s) => Some(Subresource::from_name(s).ok_or(ApiError::NoRoute)?),
            None => None,
        };
        Ok(RequestTarget {
            rt,
            namespace,
            name: rest.get(1).map(|s| s.to_string()),
            subresource,
        })
    }

    /// The same object without the subresource.
    pub fn main(&self) -> RequestTarget {
        RequestTarget {
            subresource: None,
            ..self.clone()
        }
    }

    /// The verb `method` is on this target, or why it is not served.
    pub fn verb(&self, method: &Method, q: &Query) -> Result<Verb, ApiError> {
        if let Some(sub) = self.subresource {
            if self.rt.namespaced && self.namespace.is_none() {
                return Err(ApiError::NoRoute);
            }
            if !self.rt.has(sub) {
                return Err(ApiError::NoRoute);
            }
            return match (sub, method.clone()) {
                (
                    Subresource::Binding | Subresource::Token | Subresource::Eviction,
                    Method::POST,
                ) => Ok(Verb::Create),
                (Subresource::Binding, _) => Err(ApiError::NoRoute),
                (Subresource::Token | Subresource::Eviction, _) => Err(ApiError::MethodNotAllowed),
                (Subresource::Finalize, Method::PUT) => Ok(Verb::Update),
                (Subresource::Finalize, _) => Err(ApiError::MethodNotAllowed),
                (_, Method::GET) => Ok(Verb::Get),
                (_, Method::PUT) => Ok(Verb::Update),
                (_, Method::PATCH) => Ok(Verb::Patch),
                _ => Err(ApiError::MethodNotAllowed),
            };
        }
        // The all-namespaces path of a namespaced kind only lists and
        // watches: a DELETE there would empty every namespace.
        if self.rt.namespaced && self.namespace.is_none() {
            if self.name.is_some() {
                return Err(ApiError::NoRoute);
            }
            if method != Method::GET {
                return Err(ApiError::MethodNotAllowed);
            }
        }
        let watch = q.get("watch").is_some_and(|w| w == "true" || w == "1");
        match (method.clone(), self.name.is_some()) {
            (Method::GET, false) if watch => Ok(Verb::Watch),
            (Method::GET, false) => Ok(Verb::List),
            (Method::GET, true) => Ok(Verb::Get),
            (Method::POST, false) => Ok(Verb::Create),
            (Method::PUT, true) => Ok(Verb::Update),
            (Method::PATCH, true) => Ok(Verb::Patch),
            (Method::DELETE, true) => Ok(Verb::Delete),
            (Method::DELETE, false) => Ok(Verb::DeleteCollection),
            _ => Err(ApiError::MethodNotAllowed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(path: &str) -> Result<RequestTarget, ApiError> {
        let segs = segments(path);
        RequestTarget::resolve(&Kinds::builtin(), "", "v1", &segs)
    }

    #[test]
    fn paths_resolve_as_kubernetes_serves_them() {
        let t = target("namespaces/default/pods/web/binding").unwrap();
        assert_eq!(t.rt.plural, "pods");
        assert_eq!(t.namespace.as_deref(), Some("default"));
        assert_eq!(t.name.as_deref(), Some("web"));
        assert_eq!(t.subresource, Some(Subresource::Binding));
        // The namespace object itself, and its status.
        let t = target("namespaces/default/status").unwrap();
        assert_eq!((t.rt.plural.as_str(), t.namespace), ("namespaces", None));
        assert_eq!(t.subresource, Some(Subresource::Status));
        assert!(matches!(target("pods/a/b/c"), Err(ApiError::NoRoute)));
        assert!(matches!(target("nothing"), Err(ApiError::NoRoute)));
        assert!(matches!(target("namespaces/a/log"), Err(ApiError::NoRoute)));
    }

    #[test]
    fn verbs_follow_method_name_and_scope() {
        let q = |s: &str| query(&format!("/x?{s}").parse::<Uri>().unwrap());
        let verb = |path: &str, m: Method, query: &str| target(path)?.verb(&m, &q(query));
        assert_eq!(verb("pods", Method::GET, "").unwrap(), Verb::List);
        assert_eq!(verb("pods", Method::GET, "watch=1").unwrap(), Verb::Watch);
        assert!(matches!(
            verb("pods", Method::DELETE, ""),
            Err(ApiError::MethodNotAllowed)
        ));
        assert!(matches!(
            verb("pods/p", Method::GET, ""),
            Err(ApiError::NoRoute)
        ));
        assert_eq!(
            verb("namespaces/d/pods/p/binding", Method::POST, "").unwrap(),
            Verb::Create
        );
        assert!(matches!(
            verb("namespaces/d/pods/p/binding", Method::GET, ""),
            Err(ApiError::NoRoute)
        ));
        assert!(matches!(
            verb("namespaces/d/pods/p/status", Method::DELETE, ""),
            Err(ApiError::MethodNotAllowed)
        ));
        assert!(matches!(
            verb("namespaces/d/configmaps/c/status", Method::GET, ""),
            Err(ApiError::NoRoute)
        ));
    }
}
