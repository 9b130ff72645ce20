//! Keel's Kubernetes-compatible API server, embedded in `keel server` beside
//! the store member it serves from.
//!
//! # Layout
//!
//! - [`server`]: HTTPS serving, authentication by client certificate, limits,
//!   `/version` and health, default namespaces.
//! - [`api`]: path parsing, discovery and the generic registry (get, list,
//!   watch, create, update, patch, delete) over the event log.
//! - [`kinds`]: one strategy per kind: defaults, validation, table columns.
//! - [`rules`]: defaults and field rules of storage, network, RBAC, CRD and other kinds.
//! - [`prepared`]: watch events decoded and encoded once for all watchers.
//! - [`watch`]: a watch's stream: the initial state page by page, then live events.
//! - [`meta`]: metadata rules shared by all kinds (names, uids, timestamps, selectors).
//! - [`metrics`]: request counts, latencies and watches for `/metrics`.
//! - [`openapi`]: the OpenAPI v3 index and per-group-version documents, and `/openapi/v2`.
//! - [`gnostic`]: the protobuf encoding of `/openapi/v2` that kubectl ≤1.31 reads.
//! - [`patch`]: JSON merge patch and JSON patch.
//! - [`options`]: LIST and WATCH parameters (resourceVersion, resourceVersionMatch) checked as Kubernetes does.
//! - [`typed`]: decoding into the Kubernetes types: type errors and unknown fields.
//! - [`pki`]: the cluster CA, serving and admin certificates, the kubeconfig.
//! - [`error`]: errors and their one mapping to a Kubernetes `Status`.

pub mod api;
pub mod error;
pub mod gnostic;
pub mod kinds;
pub mod meta;
pub mod metrics;
pub mod openapi;
pub mod options;
pub mod patch;
pub mod pki;
pub mod prepared;
pub mod rules;
pub mod server;
pub mod typed;
pub mod watch;

/// The request types of [`api::ApiState::handle`], for callers that drive the
/// API without a socket (the fuzz harness).
pub use axum::{body::Bytes, http};
pub use error::{ApiError, ServerError};
pub use server::{ApiConfig, RunningApi, start};
