//! `authorization.k8s.io/v1`: the access reviews. Each is create-only and
//! never stored: the answer is the review with its status filled in
//! ([`crate::authz::rbac::review`]).

use k8s_openapi::api::authorization::v1 as authz;

use super::ResourceType;

/// The review kinds, in discovery order.
pub fn kinds() -> Vec<ResourceType> {
    vec![
        ResourceType::of::<authz::LocalSubjectAccessReview>().create_only(),
        ResourceType::of::<authz::SelfSubjectAccessReview>().create_only(),
        ResourceType::of::<authz::SelfSubjectRulesReview>().create_only(),
        ResourceType::of::<authz::SubjectAccessReview>().create_only(),
    ]
}
