//! `authorization.k8s.io/v1` reviews, answered and never stored:
//! SelfSubjectAccessReview and SubjectAccessReview (and the namespaced
//! LocalSubjectAccessReview) ask the whole authorizer chain whether a user
//! may do something; SelfSubjectRulesReview lists the RBAC rules a user
//! holds in a namespace. They make `kubectl auth can-i`, `can-i --list`
//! and `can-i --as` work.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::Index;
use crate::authz::{Attributes, Authorizer, Decision};
use crate::error::{ApiError, Cause};
use crate::http::auth::UserInfo;
use crate::request::RequestTarget;

/// The answer to a create of review `t` by `user` with body `obj`: the
/// review with its `status` filled in.
pub fn answer(
    authorizer: &dyn Authorizer,
    index: Option<&Index>,
    t: &RequestTarget,
    mut obj: Value,
    user: &UserInfo,
) -> Result<Value, ApiError> {
    if !obj.is_object() {
        return Err(ApiError::BadRequest(
            "the review is not a JSON object".into(),
        ));
    }
    let spec = obj.get("spec").cloned().unwrap_or(json!({}));
    let invalid = |field: &str, msg: &str| ApiError::Invalid {
        group: t.rt.group.clone(),
        kind: t.rt.kind.clone(),
        name: String::new(),
        causes: vec![Cause::invalid(field, msg)],
    };
    let status = match t.rt.plural.as_str() {
        "selfsubjectrulesreviews" => {
            let ns = spec.get("namespace").and_then(Value::as_str).unwrap_or("");
            if ns.is_empty() {
                return Err(ApiError::BadRequest("no namespace on request".into()));
            }
            rules_status(index, user, ns)
        }
        "selfsubjectaccessreviews" => access(authorizer, user.clone(), &spec)?,
        "subjectaccessreviews" | "localsubjectaccessreviews" => {
            let subject = subject_of(&spec);
            if subject.name.is_empty() && subject.groups.is_empty() {
                return Err(invalid(
                    "spec.user",
                    "Invalid value: \"\": at least one of user or group must be specified",
                ));
            }
            if let Some(ns) = &t.namespace {
                let asked = spec
                    .pointer("/resourceAttributes/namespace")
                    .and_then(Value::as_str);
                if spec.get("resourceAttributes").is_none() || asked.is_some_and(|a| a != ns) {
                    return Err(invalid(
                        "spec.resourceAttributes.namespace",
                        "Invalid value: must be the namespace of the request",
                    ));
                }
            }
            access(authorizer, subject, &spec)?
        }
        _ => return Err(ApiError::NoRoute),
    };
    obj["status"] = status;
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    obj["apiVersion"] = json!(t.rt.api_version());
    obj["kind"] = json!(t.rt.kind);
    Ok(obj)
}

/// The user a SubjectAccessReview asks about.
fn subject_of(spec: &Value) -> UserInfo {
    let strings = |v: Option<&Value>| -> Vec<String> {
        v.and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_string))
            .collect()
    };
    let extra: BTreeMap<String, Vec<String>> = spec
        .get("extra")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), strings(Some(v))))
        .collect();
    UserInfo {
        name: spec
            .get("user")
            .and_then(Value::as_str)
            .unwrap_or("")
            .into(),
        groups: strings(spec.get("groups")),
        extra,
        ..UserInfo::default()
    }
}

/// The attributes of a review's spec, for `user`.
fn attributes(user: UserInfo, spec: &Value) -> Result<Attributes, ApiError> {
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    if let Some(ra) = spec.get("resourceAttributes").filter(|v| v.is_object()) {
        return Ok(Attributes {
            user,
            verb: s(ra, "verb"),
            resource_request: true,
            api_group: s(ra, "group"),
            api_version: s(ra, "version"),
            resource: s(ra, "resource"),
            subresource: s(ra, "subresource"),
            namespace: s(ra, "namespace"),
            name: s(ra, "name"),
            path: String::new(),
        });
    }
    if let Some(na) = spec.get("nonResourceAttributes").filter(|v| v.is_object()) {
        return Ok(Attributes {
            user,
            verb: s(na, "verb"),
            path: s(na, "path"),
            ..Attributes::default()
        });
    }
    Err(ApiError::Invalid {
        group: "authorization.k8s.io".into(),
        kind: "SubjectAccessReview".into(),
        name: String::new(),
        causes: vec![Cause::required_because(
            "spec.resourceAttributes",
            "exactly one of nonResourceAttributes or resourceAttributes must be specified",
        )],
    })
}

fn access(authorizer: &dyn Authorizer, user: UserInfo, spec: &Value) -> Result<Value, ApiError> {
    let a = attributes(user, spec)?;
    Ok(match authorizer.authorize(&a) {
        Decision::Allow => json!({"allowed": true}),
        Decision::Deny(reason) => json!({"allowed": false, "denied": true, "reason": reason}),
        Decision::NoOpinion => json!({"allowed": false}),
    })
}

/// The rules `user` holds in `namespace`, as a SelfSubjectRulesReview's
/// status. A `system:masters` member holds everything by bypass; RBAC's
/// rules are what is listed, as Kubernetes does.
fn rules_status(index: Option<&Index>, user: &UserInfo, namespace: &str) -> Value {
    let Some(index) = index else {
        return json!({"resourceRules": [], "nonResourceRules": [], "incomplete": true,
            "evaluationError": "RBAC is not enabled"});
    };
    let mut resource = Vec::new();
    let mut urls = Vec::new();
    for r in index.rules_for(user, namespace) {
        if r.non_resource_urls.is_empty() {
            let mut v =
                json!({"verbs": r.verbs, "apiGroups": r.api_groups, "resources": r.resources});
            if !r.resource_names.is_empty() {
                v["resourceNames"] = json!(r.resource_names);
            }
            resource.push(v);
        } else {
            urls.push(json!({"verbs": r.verbs, "nonResourceURLs": r.non_resource_urls}));
        }
    }
    json!({"resourceRules": resource, "nonResourceRules": urls, "incomplete": false})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authz::Chain;
    use crate::authz::rbac::Rbac;
    use crate::kinds::Kinds;
    use std::sync::Arc;

    #[test]
    fn reviews_answer_from_the_index() {
        let index = Arc::new(Index::from_objects(&[
            (
                "clusterroles/reader",
                json!({"rules": [
                    {"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]},
                    {"verbs": ["get"], "nonResourceURLs": ["/metrics"]},
                ]}),
            ),
            (
                "clusterrolebindings/r",
                json!({"roleRef": {"kind": "ClusterRole", "name": "reader"},
                "subjects": [{"kind": "Group", "name": "readers"}]}),
            ),
        ]));
        let chain = Chain(vec![Arc::new(Rbac::new(index.clone()))]);
        let kinds = Kinds::builtin();
        let t = |plural: &str| RequestTarget {
            rt: kinds.find("authorization.k8s.io", "v1", plural).unwrap(),
            namespace: None,
            name: None,
            subresource: None,
        };
        let reader = UserInfo {
            name: "r".into(),
            groups: vec!["readers".into()],
            ..UserInfo::default()
        };
        let ask = |verb: &str| json!({"spec": {"resourceAttributes": {"verb": verb, "resource": "pods", "namespace": "d"}}});
        let ssar = t("selfsubjectaccessreviews");
        let yes = answer(&chain, Some(&index), &ssar, ask("get"), &reader).unwrap();
        assert_eq!(yes["status"]["allowed"], true);
        assert_eq!(yes["kind"], "SelfSubjectAccessReview");
        let no = answer(&chain, Some(&index), &ssar, ask("delete"), &reader).unwrap();
        assert_eq!(no["status"]["allowed"], false);
        // A SubjectAccessReview asks about someone else.
        let mut sar = ask("get");
        sar["spec"]["groups"] = json!(["readers"]);
        let a = answer(
            &chain,
            Some(&index),
            &t("subjectaccessreviews"),
            sar,
            &UserInfo::default(),
        )
        .unwrap();
        assert_eq!(a["status"]["allowed"], true);
        assert!(
            answer(
                &chain,
                Some(&index),
                &t("subjectaccessreviews"),
                ask("get"),
                &reader
            )
            .is_err()
        );
        let rules = answer(
            &chain,
            Some(&index),
            &t("selfsubjectrulesreviews"),
            json!({"spec": {"namespace": "d"}}),
            &reader,
        )
        .unwrap();
        assert_eq!(
            rules["status"]["resourceRules"][0]["resources"],
            json!(["pods"])
        );
        assert_eq!(
            rules["status"]["nonResourceRules"][0]["nonResourceURLs"],
            json!(["/metrics"])
        );
    }
}
