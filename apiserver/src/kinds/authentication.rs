//! `authentication.k8s.io/v1`: the reviews, only ever created and answered
//! at once ([`crate::authn::review`]): SelfSubjectReview (`kubectl auth
//! whoami`) and TokenReview. The TokenRequest is a subresource of
//! ServiceAccounts, not a kind of its own.

use k8s_openapi::api::authentication::v1 as authentication;

use super::ResourceType;

/// The `authentication.k8s.io` kinds.
pub fn kinds() -> Vec<ResourceType> {
    vec![
        ResourceType::of::<authentication::SelfSubjectReview>().create_only(),
        ResourceType::of::<authentication::TokenReview>().create_only(),
    ]
}
