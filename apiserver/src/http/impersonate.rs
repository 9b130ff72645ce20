//! Impersonation, as kube-apiserver's `WithImpersonation`: the
//! `Impersonate-User`, `Impersonate-Uid`, `Impersonate-Group` and
//! `Impersonate-Extra-<key>` headers make a request act as another user
//! (`kubectl --as`, `--as-group`). The real user must be allowed the
//! `impersonate` verb on each part: `users` (or the ServiceAccount, for
//! `system:serviceaccount:<ns>:<name>`), `groups`, `uids` and `userextras`.
//! The request then proceeds as the impersonated user, with
//! `system:authenticated` added, and without the headers.

use std::collections::BTreeMap;

use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::auth::UserInfo;
use crate::authz::{Attributes, check};
use crate::error::ApiError;

const USER: &str = "impersonate-user";
const UID: &str = "impersonate-uid";
const GROUP: &str = "impersonate-group";
const EXTRA: &str = "impersonate-extra-";

/// The layer: after authentication, before anything authorizes.
pub async fn impersonate(State(s): State<AppState>, mut req: Request, next: Next) -> Response {
    let Some(real) = req.extensions().get::<UserInfo>().cloned() else {
        return next.run(req).await;
    };
    match impersonated(&s, &real, req.headers()) {
        Ok(None) => next.run(req).await,
        Ok(Some(user)) => {
            let h = req.headers_mut();
            let names: Vec<_> = h
                .keys()
                .filter(|k| k.as_str().starts_with("impersonate-"))
                .cloned()
                .collect();
            for n in names {
                h.remove(n);
            }
            req.extensions_mut().insert(user.clone());
            let mut resp = next.run(req).await;
            // The audit layer, outside this one, records both users.
            resp.extensions_mut()
                .insert(crate::audit::ImpersonatedUser(user));
            resp
        }
        Err(e) => e.into_response(),
    }
}

fn values(h: &HeaderMap, name: &str) -> Vec<String> {
    h.get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::to_string)
        .collect()
}

/// An extra's key as the header carries it: lowercase, percent-encoded.
fn extra_key(header: &str) -> String {
    let mut out = Vec::new();
    let b = header.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Some(v) = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).to_lowercase()
}

/// The user `real` asks to act as, once each part is allowed; `None`
/// without impersonation headers.
pub fn impersonated(
    s: &AppState,
    real: &UserInfo,
    h: &HeaderMap,
) -> Result<Option<UserInfo>, ApiError> {
    let name = h
        .get(USER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let uid = h.get(UID).and_then(|v| v.to_str().ok()).map(str::to_string);
    let groups = values(h, GROUP);
    let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for k in h.keys() {
        if let Some(key) = k.as_str().strip_prefix(EXTRA) {
            extra.insert(extra_key(key), values(h, k.as_str()));
        }
    }
    let Some(name) = name else {
        if uid.is_some() || !groups.is_empty() || !extra.is_empty() {
            return Err(ApiError::BadRequest(
                "requested impersonation of groups, extra or uid without impersonating a user"
                    .into(),
            ));
        }
        return Ok(None);
    };
    let ask = |group: &str, resource: &str, subresource: &str, namespace: &str, obj: &str| {
        let a = Attributes {
            user: real.clone(),
            verb: "impersonate".into(),
            resource_request: true,
            api_group: group.into(),
            resource: resource.into(),
            subresource: subresource.into(),
            namespace: namespace.into(),
            name: obj.into(),
            ..Attributes::default()
        };
        check(&*s.authorizer, &a)
    };
    let mut user = UserInfo {
        name: name.clone(),
        ..UserInfo::default()
    };
    match name
        .strip_prefix("system:serviceaccount:")
        .and_then(|r| r.split_once(':'))
    {
        Some((ns, sa)) => {
            ask("", "serviceaccounts", "", ns, sa)?;
            if groups.is_empty() {
                user.groups = vec![
                    "system:serviceaccounts".into(),
                    format!("system:serviceaccounts:{ns}"),
                ];
            }
        }
        None => ask("", "users", "", "", &name)?,
    }
    for g in &groups {
        ask("", "groups", "", "", g)?;
    }
    for (k, vs) in &extra {
        for v in vs {
            ask("authentication.k8s.io", "userextras", k, "", v)?;
        }
    }
    if let Some(u) = &uid {
        ask("authentication.k8s.io", "uids", "", "", u)?;
        user.uid = u.clone();
    }
    user.groups.extend(groups);
    let all = if name == "system:anonymous" {
        "system:unauthenticated"
    } else {
        "system:authenticated"
    };
    if !user.groups.iter().any(|g| g == all) {
        user.groups.push(all.into());
    }
    user.extra = extra;
    Ok(Some(user))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authz::Chain;
    use crate::authz::rbac::{Index, Rbac};
    use crate::kinds::Kinds;
    use crate::registry::Registry;
    use crate::registry::storage::MemoryStorage;
    use serde_json::json;
    use std::sync::Arc;

    fn state() -> AppState {
        let index = Arc::new(Index::from_objects(&[
            (
                "clusterroles/imp",
                json!({"rules": [
                    {"verbs": ["impersonate"], "apiGroups": [""], "resources": ["users"], "resourceNames": ["alice"]},
                    {"verbs": ["impersonate"], "apiGroups": [""], "resources": ["groups"], "resourceNames": ["devs"]},
                    {"verbs": ["impersonate"], "apiGroups": [""], "resources": ["serviceaccounts"]},
                ]}),
            ),
            (
                "rolebindings/ci/imp",
                json!({"roleRef": {"kind": "ClusterRole", "name": "imp"},
                "subjects": [{"kind": "User", "name": "carol"}]}),
            ),
            (
                "clusterrolebindings/imp",
                json!({"roleRef": {"kind": "ClusterRole", "name": "imp"},
                "subjects": [{"kind": "User", "name": "carol"}]}),
            ),
        ]));
        let registry = Arc::new(Registry::with_storage(
            Arc::new(MemoryStorage::new()),
            Kinds::builtin(),
        ));
        let cfg = super::super::server::ApiConfig::new(([127, 0, 0, 1], 0).into(), "");
        AppState {
            registry,
            metrics: Arc::default(),
            limits: Arc::new(super::super::server::Limits::new(&cfg)),
            authorizer: Arc::new(Chain(vec![Arc::new(Rbac::new(index))])),
            rbac: None,
            audit: None,
            aggregator: None,
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn each_part_of_an_impersonation_needs_the_verb() {
        let s = state();
        let carol = UserInfo {
            name: "carol".into(),
            groups: vec!["system:authenticated".into()],
            ..UserInfo::default()
        };
        let bob = UserInfo {
            name: "bob".into(),
            ..UserInfo::default()
        };
        assert_eq!(impersonated(&s, &carol, &headers(&[])).unwrap(), None);
        let alice = impersonated(&s, &carol, &headers(&[("Impersonate-User", "alice")]))
            .unwrap()
            .unwrap();
        assert_eq!(alice.name, "alice");
        assert_eq!(alice.groups, vec!["system:authenticated".to_string()]);
        let e = impersonated(&s, &bob, &headers(&[("Impersonate-User", "alice")])).unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"users "alice" is forbidden: User "bob" cannot impersonate resource "users" in API group "" at the cluster scope"#
        );
        assert!(impersonated(&s, &carol, &headers(&[("Impersonate-User", "root")])).is_err());
        let with_group = headers(&[("Impersonate-User", "alice"), ("Impersonate-Group", "devs")]);
        let u = impersonated(&s, &carol, &with_group).unwrap().unwrap();
        assert_eq!(
            u.groups,
            vec!["devs".to_string(), "system:authenticated".to_string()]
        );
        let masters = headers(&[
            ("Impersonate-User", "alice"),
            ("Impersonate-Group", "system:masters"),
        ]);
        assert!(
            impersonated(&s, &carol, &masters)
                .unwrap_err()
                .to_string()
                .starts_with(r#"groups "system:masters" is forbidden"#)
        );
        // A ServiceAccount is checked as the account, in its namespace.
        let sa = impersonated(
            &s,
            &carol,
            &headers(&[("Impersonate-User", "system:serviceaccount:ci:bot")]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            sa.groups,
            [
                "system:serviceaccounts",
                "system:serviceaccounts:ci",
                "system:authenticated"
            ]
        );
        let extra = headers(&[
            ("Impersonate-User", "alice"),
            ("Impersonate-Extra-Scopes", "x"),
        ]);
        assert!(impersonated(&s, &carol, &extra).is_err());
        let no_user = headers(&[("Impersonate-Group", "devs")]);
        assert!(matches!(
            impersonated(&s, &carol, &no_user),
            Err(ApiError::BadRequest(_))
        ));
    }

    #[test]
    fn extra_keys_are_decoded_and_lowercased() {
        assert_eq!(extra_key("Scopes"), "scopes");
        assert_eq!(extra_key("example.com%2fteam"), "example.com/team");
        assert_eq!(extra_key("bad%zz"), "bad%zz");
        assert_eq!(extra_key("end%2"), "end%2");
    }
}
