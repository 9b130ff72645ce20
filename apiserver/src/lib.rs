//! Keel's Kubernetes-compatible API server, embedded in `keel server` beside
//! the store member it serves from.
//!
//! # Layout
//!
//! A request goes down this list: the HTTP layer, the request's target, the
//! registry, the storage.
//!
//! - [`http`]: the listener, TLS and limits ([`http::server`]), the one router
//!   ([`http::routes`]), authentication by client certificate into a
//!   `UserInfo` ([`http::auth`]), `/healthz`, `/livez`, `/readyz` ([`http::health`]).
//! - [`request`]: path and method → the request's target (kind, namespace,
//!   name, subresource) and verb.
//! - [`discovery`]: `/api`, `/apis`, aggregated discovery, resource lists.
//! - [`registry`]: the verbs on every kind, one file per concern: body decoding
//!   and field checks, get and list, create, the one guaranteed-update path,
//!   patch, delete, watch (with its stream and the events [`registry::prepared`]
//!   once for all watchers), the status, scale and binding subresources, Tables;
//!   over the storage seam ([`registry::storage`]).
//! - [`response`]: JSON responses, `Warning` headers, streamed bodies.
//! - [`selector`]: label and field selectors.
//! - [`schema`]: every built-in kind's structure with its strategic-merge and
//!   server-side-apply metadata, generated from Kubernetes' API document.
//! - [`options`]: LIST and WATCH parameters (resourceVersion, resourceVersionMatch) checked as Kubernetes does.
//! - [`kinds`]: the served kinds: descriptors, subresources and one strategy per kind
//!   (defaults, validation, table columns), the runtime kind table, typed checks.
//! - [`meta`]: metadata rules shared by all kinds (names, uids, timestamps).
//! - [`patch`]: the JSON merge patch and JSON patch algorithms.
//! - [`metrics`]: request counts, latencies and watches for `/metrics`.
//! - [`openapi`]: the OpenAPI v3 index and per-group-version documents, and `/openapi/v2`, for the built-in kinds and each established custom resource.
//! - [`gnostic`]: the protobuf encoding of `/openapi/v2` that kubectl ≤1.31 reads.
//! - [`pki`]: the cluster CA, serving and admin certificates, the kubeconfig.
//! - [`authn`]: authentication: client certificates, static and ServiceAccount tokens.
//! - [`authz`]: authorization: request attributes and the chain of authorizers.
//! - [`admission`]: checks of a write that need the user and the object.
//! - [`audit`]: the audit log, one `audit.k8s.io/v1` event per request.
//! - [`encryption`]: secrets encrypted at rest: the `EncryptionConfiguration`, the providers,
//!   and the storage layer that encrypts before a write is proposed.
//! - [`error`]: errors and their one mapping to a Kubernetes `Status`.
//! - [`fieldmanager`]: managedFields on every write, and server-side apply.
//! - [`aggregator`]: API aggregation: APIServices proxied to extension API
//!   servers, their `Available` condition, merged discovery.
//! - [`crd`]: custom resources: the controller that serves Established CRDs
//!   as kinds, their status, strategy, printer columns and cleanup.

pub mod admission;
pub mod aggregator;
pub mod audit;
pub mod authn;
pub mod authz;
pub mod cel;
pub mod crd;
pub mod discovery;
pub mod encryption;
pub mod error;
pub mod fieldmanager;
pub mod gnostic;
pub mod http;
pub mod kinds;
pub mod meta;
pub mod metrics;
pub mod openapi;
pub mod options;
pub mod patch;
pub mod pki;
pub mod registry;
pub mod request;
pub mod response;
pub mod schema;
pub mod selector;
pub mod structural;

pub use axum::body::Bytes;
pub use error::{ApiError, ServerError};
pub use http::server::{ApiConfig, DEFAULT_MAX_WATCHES, RunningApi, start};
