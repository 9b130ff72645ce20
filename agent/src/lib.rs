//! Keel's node agent: the client side of a node, written on `kube` against
//! the public API exactly as the kubelet talks to kube-apiserver. Today it
//! drives hollow nodes (`keel hollow-nodes`, like Kubemark); the real agent
//! reuses the same registration, heartbeat and pod status code and adds a
//! container runtime behind it.
//!
//! # Layout
//!
//! - [`node`]: the Node object a node registers (capacity, labels,
//!   conditions, addresses) and its registration.
//! - [`heartbeat`]: the node Lease in `kube-node-lease`, renewed every
//!   heartbeat, and the node status posted as the kubelet posts it.
//! - [`pods`]: what a node does with the pods bound to it: the pure
//!   planner ([`pods::plan`]) from an observed pod to the next status or
//!   deletion, and the status it writes ([`pods::status`]).
//! - [`identity`]: whom a node's requests act as (its kubelet's user,
//!   by impersonation, or the kubeconfig's).
//! - [`hollow`]: the hollow runtime: many simulated nodes in one process,
//!   their pods "run" by the planner alone (no containers).
//! - [`duration`]: `10s`/`5m`-style durations of the command line.

pub mod duration;
pub mod heartbeat;
pub mod hollow;
pub mod identity;
pub mod node;
pub mod pods;

/// What can go wrong talking to the API.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API answered with an error or could not be reached.
    #[error("{0}")]
    Kube(#[from] kube::Error),
    /// A configuration the agent cannot run with.
    #[error("{0}")]
    Config(String),
}

/// The HTTP status code of an API error, if the API answered at all.
pub(crate) fn status_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}
