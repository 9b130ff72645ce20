//! Errors of the API server. Startup failures are [`ServerError`]; request
//! failures are [`ApiError`], turned into a Kubernetes `Status` in exactly
//! one place ([`ApiError::into_response`]).

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use keel_store::StoreError;
use serde_json::json;

/// A failure to start or run the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("certificates: {0}")]
    Pki(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("audit: {0}")]
    Audit(String),
    #[error("authentication: {0}")]
    Authn(#[from] crate::authn::AuthnError),
    /// Not a `source`: the message already holds it, once.
    #[error("encryption at rest: {0}")]
    Encryption(crate::encryption::EncryptionError),
}

/// One invalid field, as `details.causes[]` of a 422.
#[derive(Clone, Debug, PartialEq)]
pub struct Cause {
    pub field: String,
    pub reason: &'static str,
    pub message: String,
}

impl Cause {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Cause {
        Cause {
            field: field.into(),
            reason: "FieldValueInvalid",
            message: message.into(),
        }
    }
    pub fn required(field: impl Into<String>) -> Cause {
        Cause {
            field: field.into(),
            reason: "FieldValueRequired",
            message: "Required value".into(),
        }
    }
    /// A required value, with why.
    pub fn required_because(field: impl Into<String>, detail: impl std::fmt::Display) -> Cause {
        Cause {
            field: field.into(),
            reason: "FieldValueRequired",
            message: format!("Required value: {detail}"),
        }
    }
    pub fn forbidden(field: impl Into<String>, detail: impl std::fmt::Display) -> Cause {
        Cause {
            field: field.into(),
            reason: "FieldValueForbidden",
            message: format!("Forbidden: {detail}"),
        }
    }
    pub fn duplicate(field: impl Into<String>, value: &str) -> Cause {
        Cause {
            field: field.into(),
            reason: "FieldValueDuplicate",
            message: format!("Duplicate value: {value:?}"),
        }
    }
    pub fn not_supported(field: impl Into<String>, value: &str, supported: &[&str]) -> Cause {
        let list: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
        Cause {
            field: field.into(),
            reason: "FieldValueNotSupported",
            message: format!(
                "Unsupported value: {value:?}: supported values: {}",
                list.join(", ")
            ),
        }
    }
    /// `None` when `new` keeps `old`'s value at `pointer`.
    pub fn immutable(
        new: &serde_json::Value,
        old: &serde_json::Value,
        pointer: &str,
        field: &str,
    ) -> Option<Cause> {
        (new.pointer(pointer) != old.pointer(pointer))
            .then(|| Cause::invalid(field, "Invalid value: field is immutable"))
    }
}

/// A request that failed, in the terms of the Kubernetes API.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{} \"{name}\" not found", qualified(resource, group))]
    NotFound {
        group: String,
        resource: String,
        name: String,
    },
    #[error("{} \"{name}\" already exists", qualified(resource, group))]
    AlreadyExists {
        group: String,
        resource: String,
        name: String,
    },
    #[error(
        "Operation cannot be fulfilled on {} \"{name}\": {message}",
        qualified(resource, group)
    )]
    Conflict {
        group: String,
        resource: String,
        name: String,
        message: String,
    },
    #[error("{} \"{name}\" is invalid: {}", qualified(kind, group), causes.iter().map(|c| format!("{}: {}", c.field, c.message)).collect::<Vec<_>>().join(", "))]
    Invalid {
        group: String,
        kind: String,
        name: String,
        causes: Vec<Cause>,
    },
    /// A server-side apply that would change fields other managers own
    /// ([`crate::fieldmanager::conflicts`]).
    #[error("{message}")]
    ApplyConflict { message: String, causes: Vec<Cause> },
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Expired(String),
    #[error("the server does not allow this method on the requested resource")]
    MethodNotAllowed,
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("the request body is {size} bytes, above the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("{0}")]
    Unavailable(String),
    #[error("the server could not find the requested resource")]
    NoRoute,
    #[error("Unauthorized")]
    Unauthorized,
    /// Refused by authorization or admission, in Kubernetes' `NewForbidden`
    /// shape: `secrets "x" is forbidden: {reason}`, without the name for a
    /// collection, `forbidden: {reason}` without a resource (a path).
    #[error("{}", forbidden_message(group, resource, name, reason))]
    Forbidden {
        group: String,
        resource: String,
        name: String,
        reason: String,
    },
    /// A create in a namespace being deleted (NamespaceLifecycle): a 403
    /// whose cause `NamespaceTerminating` clients (the namespace
    /// controller, kubectl) recognise.
    #[error("{}", forbidden_message(group, resource, name, &format!("unable to create new content in namespace {namespace} because it is being terminated")))]
    NamespaceTerminating {
        group: String,
        resource: String,
        name: String,
        namespace: String,
    },
    #[error("too many requests, please try again later")]
    TooManyRequests,
    /// A 429 with Kubernetes' own message and causes, and no retry hint
    /// (an eviction a PodDisruptionBudget forbids: `DisruptionBudget`).
    #[error("{message}")]
    TooManyRequestsBecause { message: String, causes: Vec<Cause> },
    #[error("the request did not finish within {0} seconds")]
    Timeout(u64),
    /// The store did not answer in time; for a write, whether it was applied
    /// is unknown, so this is never a retryable 503.
    #[error("Timeout: {0}")]
    StoreTimeout(String),
    /// A resourceVersion newer than anything this member has: client-go's
    /// `storage.IsTooLargeResourceVersion` looks for the cause this carries.
    #[error("Timeout: Too large resource version: {requested}, current: {current}")]
    TooLargeResourceVersion { requested: u64, current: u64 },
    #[error("Internal error occurred: {0}")]
    Internal(String),
}

/// A resource or kind with its API group, as Kubernetes names them in
/// messages: `deployments.apps`, `Deployment.apps`; core ones stay bare.
fn qualified(name: &str, group: &str) -> String {
    if group.is_empty() {
        name.to_string()
    } else {
        format!("{name}.{group}")
    }
}

fn forbidden_message(group: &str, resource: &str, name: &str, reason: &str) -> String {
    if resource.is_empty() {
        format!("forbidden: {reason}")
    } else if name.is_empty() {
        format!("{} is forbidden: {reason}", qualified(resource, group))
    } else {
        format!(
            "{} {name:?} is forbidden: {reason}",
            qualified(resource, group)
        )
    }
}

impl ApiError {
    fn code_reason(&self) -> (u16, &'static str) {
        match self {
            ApiError::NotFound { .. } | ApiError::NoRoute => (404, "NotFound"),
            ApiError::AlreadyExists { .. } => (409, "AlreadyExists"),
            ApiError::Conflict { .. } | ApiError::ApplyConflict { .. } => (409, "Conflict"),
            ApiError::Invalid { .. } => (422, "Invalid"),
            ApiError::BadRequest(_) => (400, "BadRequest"),
            ApiError::Expired(_) => (410, "Expired"),
            ApiError::MethodNotAllowed => (405, "MethodNotAllowed"),
            ApiError::UnsupportedMediaType(_) => (415, "UnsupportedMediaType"),
            ApiError::TooLarge { .. } => (413, "RequestEntityTooLarge"),
            ApiError::Unavailable(_) => (503, "ServiceUnavailable"),
            ApiError::Unauthorized => (401, "Unauthorized"),
            ApiError::Forbidden { .. } | ApiError::NamespaceTerminating { .. } => {
                (403, "Forbidden")
            }
            ApiError::TooManyRequests | ApiError::TooManyRequestsBecause { .. } => {
                (429, "TooManyRequests")
            }
            ApiError::Timeout(_)
            | ApiError::StoreTimeout(_)
            | ApiError::TooLargeResourceVersion { .. } => (504, "Timeout"),
            ApiError::Internal(_) => (500, "InternalError"),
        }
    }

    /// The `Status` object for this error.
    pub fn status(&self) -> serde_json::Value {
        let (code, reason) = self.code_reason();
        let details = match self {
            ApiError::NotFound {
                group,
                resource,
                name,
            }
            | ApiError::AlreadyExists {
                group,
                resource,
                name,
            }
            | ApiError::Conflict {
                group,
                resource,
                name,
                ..
            }
            | ApiError::Forbidden {
                group,
                resource,
                name,
                ..
            } => {
                json!({"name": name, "group": group, "kind": resource})
            }
            ApiError::Invalid {
                group,
                kind,
                name,
                causes,
            } => json!({
                "name": name, "group": group, "kind": kind,
                "causes": causes.iter().map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field})).collect::<Vec<_>>(),
            }),
            ApiError::NamespaceTerminating {
                group,
                resource,
                name,
                namespace,
            } => json!({
                "name": name, "group": group, "kind": resource,
                "causes": [{
                    "reason": "NamespaceTerminating",
                    "message": format!("namespace {namespace} is being terminated"),
                    "field": "metadata.namespace",
                }],
            }),
            ApiError::TooManyRequestsBecause { causes, .. } => json!({
                "causes": causes.iter().map(|c| json!({"reason": c.reason, "message": c.message})).collect::<Vec<_>>(),
            }),
            ApiError::ApplyConflict { causes, .. } => json!({
                "causes": causes.iter().map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field})).collect::<Vec<_>>(),
            }),
            ApiError::Unavailable(_) | ApiError::TooManyRequests => json!({"retryAfterSeconds": 1}),
            ApiError::TooLargeResourceVersion { .. } => json!({
                "causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
                "retryAfterSeconds": 1,
            }),
            _ => serde_json::Value::Null,
        };
        let mut s = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": self.to_string(), "reason": reason, "code": code,
        });
        if !details.is_null() {
            s["details"] = details;
        }
        s
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (code, _) = self.code_reason();
        let mut resp = (
            StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            axum::Json(self.status()),
        )
            .into_response();
        let retry = matches!(
            self,
            ApiError::Unavailable(_)
                | ApiError::TooManyRequests
                | ApiError::TooLargeResourceVersion { .. }
        );
        if retry {
            resp.headers_mut()
                .insert("retry-after", HeaderValue::from_static("1"));
        }
        resp
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match &e {
            // Nothing was written: the client may retry.
            StoreError::NoLeader(_)
            | StoreError::NotLeader { .. }
            | StoreError::Transport { .. }
            | StoreError::WatchDropped { .. } => ApiError::Unavailable(e.to_string()),
            StoreError::Compacted {
                requested,
                compacted,
            } => ApiError::Expired(format!(
                "too old resource version: {requested} ({compacted})"
            )),
            // A write may have been applied: 504, as kube-apiserver answers
            // a request that ran out of time, never "retry" (503).
            StoreError::Timeout { .. } => ApiError::StoreTimeout(e.to_string()),
            // Malformed or issued elsewhere: the client's mistake (an
            // expired token is `Compacted`, a 410).
            StoreError::InvalidContinue(m) => {
                ApiError::BadRequest(format!("invalid continue token: {m}"))
            }
            StoreError::FutureRevision { requested, current } => {
                ApiError::TooLargeResourceVersion {
                    requested: *requested,
                    current: *current,
                }
            }
            StoreError::ValueTooLarge { size, limit, .. } => ApiError::TooLarge {
                size: *size,
                limit: *limit,
            },
            StoreError::InvalidCommand(m) => ApiError::BadRequest(m.clone()),
            StoreError::TooManyWatches { .. } => ApiError::TooManyRequests,
            _ => ApiError::Internal(e.to_string()),
        }
    }
}

/// Storage failures map as the store's always did. `NotFound`,
/// `AlreadyExists` and `Conflict` need the resource's name, so the registry
/// maps them where it knows it; one that reaches here is a registry bug.
impl From<crate::registry::storage::StorageError> for ApiError {
    fn from(e: crate::registry::storage::StorageError) -> ApiError {
        use crate::registry::storage::StorageError as S;
        match e {
            S::Unavailable(m) => ApiError::Unavailable(m),
            S::Compacted {
                requested,
                compacted,
            } => ApiError::Expired(format!(
                "too old resource version: {requested} ({compacted})"
            )),
            S::Timeout(m) => ApiError::StoreTimeout(m),
            S::InvalidContinue(m) => ApiError::BadRequest(format!("invalid continue token: {m}")),
            S::FutureRevision { requested, current } => {
                ApiError::TooLargeResourceVersion { requested, current }
            }
            S::TooLarge { size, limit, .. } => ApiError::TooLarge { size, limit },
            S::Invalid(m) => ApiError::BadRequest(m),
            S::TooManyWatches { .. } => ApiError::TooManyRequests,
            S::Internal(m) => ApiError::Internal(m),
            e @ (S::NotFound { .. } | S::AlreadyExists { .. } | S::Conflict { .. }) => {
                ApiError::Internal(format!("storage answer without a resource: {e}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code_of(e: ApiError) -> (u16, serde_json::Value, Option<String>) {
        let status = e.status();
        let resp = e.into_response();
        let retry = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        (resp.status().as_u16(), status, retry)
    }

    #[test]
    fn an_unknown_write_outcome_is_a_timeout_never_a_retryable_503() {
        let (code, status, retry) = code_of(
            StoreError::Timeout {
                step: "committing a write",
                millis: 5000,
            }
            .into(),
        );
        assert_eq!(code, 504);
        assert_eq!(status["reason"], "Timeout");
        assert_eq!(retry, None, "no invitation to repeat the write");
        let (code, _, retry) = code_of(StoreError::NoLeader("none".into()).into());
        assert_eq!((code, retry.as_deref()), (503, Some("1")));
    }

    #[test]
    fn a_future_revision_carries_the_cause_client_go_looks_for() {
        let (code, status, retry) = code_of(
            StoreError::FutureRevision {
                requested: 90,
                current: 7,
            }
            .into(),
        );
        assert_eq!(code, 504);
        assert_eq!(status["reason"], "Timeout");
        assert_eq!(
            status["message"],
            "Timeout: Too large resource version: 90, current: 7"
        );
        assert_eq!(
            status["details"]["causes"][0],
            json!({"reason": "ResourceVersionTooLarge", "message": "Too large resource version"})
        );
        assert_eq!(status["details"]["retryAfterSeconds"], 1);
        assert_eq!(retry.as_deref(), Some("1"));
    }

    #[test]
    fn a_bad_continue_token_is_the_clients_mistake_and_a_compacted_one_expired() {
        let (code, status, _) =
            code_of(StoreError::InvalidContinue("not hexadecimal".into()).into());
        assert_eq!((code, status["reason"].as_str()), (400, Some("BadRequest")));
        let (code, status, _) = code_of(
            StoreError::Compacted {
                requested: 3,
                compacted: 9,
            }
            .into(),
        );
        assert_eq!((code, status["reason"].as_str()), (410, Some("Expired")));
    }

    #[test]
    fn messages_name_the_group() {
        let nf = |group: &str, resource: &str| {
            ApiError::NotFound {
                group: group.into(),
                resource: resource.into(),
                name: "x".into(),
            }
            .to_string()
        };
        assert_eq!(
            nf("apps", "deployments"),
            r#"deployments.apps "x" not found"#
        );
        assert_eq!(nf("", "configmaps"), r#"configmaps "x" not found"#);
        let conflict = ApiError::Conflict {
            group: "apps".into(),
            resource: "deployments".into(),
            name: "x".into(),
            message: "m".into(),
        };
        assert_eq!(
            conflict.to_string(),
            r#"Operation cannot be fulfilled on deployments.apps "x": m"#
        );
        let invalid = ApiError::Invalid {
            group: "apps".into(),
            kind: "Deployment".into(),
            name: "x".into(),
            causes: vec![Cause::required("spec.selector")],
        };
        assert_eq!(
            invalid.to_string(),
            r#"Deployment.apps "x" is invalid: spec.selector: Required value"#
        );
        // details.kind stays the bare resource, as kubectl reads it.
        assert_eq!(conflict.status()["details"]["kind"], "deployments");
    }
}
