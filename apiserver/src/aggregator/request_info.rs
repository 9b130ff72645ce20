//! What a request for an aggregated group asks, read from its path, method
//! and query alone (Keel does not know the extension server's kinds): the
//! authorization attributes RBAC decides on before the request is proxied,
//! read as Kubernetes' `RequestInfoFactory` reads any resource path.

use axum::http::Method;

use crate::authz::Attributes;
use crate::http::auth::UserInfo;
use crate::request::Query;

/// Subresources of a namespace itself (`namespaces/x/status`), not
/// resources inside it.
const NAMESPACE_SUBRESOURCES: [&str; 2] = ["status", "finalize"];

/// The attributes of `method` on `/apis/{group}/{version}/{rest…}`.
pub fn attributes(
    user: &UserInfo,
    method: &Method,
    group: &str,
    version: &str,
    rest: &[&str],
    q: &Query,
) -> Attributes {
    let mut parts: Vec<&str> = rest.to_vec();
    // `/apis/g/v/watch/…`: the old form of a watch.
    let mut watch = q.get("watch").is_some_and(|w| w == "true" || w == "1");
    if parts.first() == Some(&"watch") {
        parts.remove(0);
        watch = true;
    }
    let mut namespace = String::new();
    if parts.first() == Some(&"namespaces") && parts.len() > 1 {
        namespace = parts[1].to_string();
        if parts.len() > 2 && !NAMESPACE_SUBRESOURCES.contains(&parts[2]) {
            parts.drain(..2);
        }
    }
    let resource = parts.first().copied().unwrap_or_default();
    let mut name = parts.get(1).copied().unwrap_or_default().to_string();
    let subresource = parts.get(2).copied().unwrap_or_default();
    let verb = match *method {
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if name.is_empty() => "deletecollection",
        Method::DELETE => "delete",
        Method::GET | Method::HEAD if watch => "watch",
        Method::GET | Method::HEAD if name.is_empty() => "list",
        Method::GET | Method::HEAD => "get",
        _ => "",
    };
    // A list or watch of one name (`fieldSelector=metadata.name=x`) is
    // authorized as that name, as Kubernetes does.
    if name.is_empty()
        && matches!(verb, "list" | "watch")
        && let Some(n) = q.get("fieldSelector").and_then(|f| {
            f.split(',').find_map(|t| {
                t.strip_prefix("metadata.name=")
                    .or_else(|| t.strip_prefix("metadata.name=="))
            })
        })
    {
        name = n.to_string();
    }
    let verb = if verb.is_empty() {
        method.as_str().to_ascii_lowercase()
    } else {
        verb.to_string()
    };
    Attributes {
        user: user.clone(),
        verb,
        resource_request: true,
        api_group: group.to_string(),
        api_version: version.to_string(),
        resource: resource.to_string(),
        subresource: subresource.to_string(),
        namespace,
        name,
        path: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(
        method: Method,
        path: &str,
        query: &[(&str, &str)],
    ) -> (String, String, String, String, String) {
        let rest: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let q: Query = query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let a = attributes(
            &UserInfo::default(),
            &method,
            "wardle.example.com",
            "v1alpha1",
            &rest,
            &q,
        );
        assert!(a.resource_request);
        (a.verb, a.namespace, a.resource, a.name, a.subresource)
    }

    fn s(v: [&str; 5]) -> (String, String, String, String, String) {
        (
            v[0].into(),
            v[1].into(),
            v[2].into(),
            v[3].into(),
            v[4].into(),
        )
    }

    #[test]
    fn paths_read_as_kubernetes_reads_them() {
        use Method as M;
        let cases = [
            (
                M::GET,
                "namespaces/d/flunders",
                vec![],
                ["list", "d", "flunders", "", ""],
            ),
            (
                M::GET,
                "namespaces/d/flunders",
                vec![("watch", "true")],
                ["watch", "d", "flunders", "", ""],
            ),
            (
                M::GET,
                "watch/namespaces/d/flunders",
                vec![],
                ["watch", "d", "flunders", "", ""],
            ),
            (
                M::GET,
                "namespaces/d/flunders/x",
                vec![],
                ["get", "d", "flunders", "x", ""],
            ),
            (
                M::PUT,
                "namespaces/d/flunders/x/status",
                vec![],
                ["update", "d", "flunders", "x", "status"],
            ),
            (
                M::POST,
                "namespaces/d/flunders",
                vec![],
                ["create", "d", "flunders", "", ""],
            ),
            (
                M::DELETE,
                "namespaces/d/flunders",
                vec![],
                ["deletecollection", "d", "flunders", "", ""],
            ),
            (
                M::DELETE,
                "fischers/y",
                vec![],
                ["delete", "", "fischers", "y", ""],
            ),
            (
                M::PATCH,
                "fischers/y",
                vec![],
                ["patch", "", "fischers", "y", ""],
            ),
            (
                M::GET,
                "flunders",
                vec![("fieldSelector", "metadata.name=z")],
                ["list", "", "flunders", "z", ""],
            ),
            // A namespace-scoped kind named `namespaces` in the group.
            (
                M::GET,
                "namespaces/d",
                vec![],
                ["get", "d", "namespaces", "d", ""],
            ),
        ];
        for (m, path, q, want) in cases {
            assert_eq!(info(m.clone(), path, &q), s(want), "{m} {path} {q:?}");
        }
    }
}
