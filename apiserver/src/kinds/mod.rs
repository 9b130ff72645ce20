//! The kinds this server serves. [`strategy`] says what a kind is (its
//! descriptor, rules, subresources and columns), [`table`] holds the kinds
//! served at run time, [`typed`] checks objects against their Kubernetes
//! types. Each built-in kind lives in the file of its API group, with the
//! field rules ([`fields`]) and table cells ([`columns`]) they share.

pub mod columns;
pub mod conversion;
pub mod fields;
pub mod strategy;
pub mod table;
pub mod typed;

mod apiextensions;
mod apiregistration;
mod authentication;
mod authorization;
mod autoscaling;
mod batch;
mod coordination;
mod core;
mod endpointslice;
mod events;
mod ingress;
mod networking;
mod pod;
mod policy;
mod rbac;
pub mod scheduling;
mod service;
mod storage;
mod workloads;

pub use strategy::{Column, NoRules, ResourceType, StatusStrategy, Strategy, Subresource};
pub use table::{Kinds, KindsError};

/// Every built-in kind, in discovery order.
pub fn builtin() -> Vec<ResourceType> {
    [
        core::kinds(),
        pod::kinds(),
        service::kinds(),
        storage::kinds(),
        workloads::kinds(),
        batch::kinds(),
        autoscaling::kinds(),
        coordination::kinds(),
        networking::kinds(),
        endpointslice::kinds(),
        ingress::kinds(),
        policy::kinds(),
        scheduling::kinds(),
        rbac::kinds(),
        authorization::kinds(),
        authentication::kinds(),
        apiextensions::kinds(),
        apiregistration::kinds(),
        events::kinds(),
    ]
    .into_iter()
    .flatten()
    .collect()
}
