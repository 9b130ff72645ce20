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
    #[error("{resource} \"{name}\" not found")]
    NotFound {
        group: String,
        resource: String,
        name: String,
    },
    #[error("{resource} \"{name}\" already exists")]
    AlreadyExists {
        group: String,
        resource: String,
        name: String,
    },
    #[error("Operation cannot be fulfilled on {resource} \"{name}\": {message}")]
    Conflict {
        group: String,
        resource: String,
        name: String,
        message: String,
    },
    #[error("{kind} \"{name}\" is invalid: {}", causes.iter().map(|c| format!("{}: {}", c.field, c.message)).collect::<Vec<_>>().join(", "))]
    Invalid {
        group: String,
        kind: String,
        name: String,
        causes: Vec<Cause>,
    },
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
    #[error("too many requests, please try again later")]
    TooManyRequests,
    #[error("the request did not finish within {0} seconds")]
    Timeout(u64),
    #[error("Internal error occurred: {0}")]
    Internal(String),
}

impl ApiError {
    fn code_reason(&self) -> (u16, &'static str) {
        match self {
            ApiError::NotFound { .. } | ApiError::NoRoute => (404, "NotFound"),
            ApiError::AlreadyExists { .. } => (409, "AlreadyExists"),
            ApiError::Conflict { .. } => (409, "Conflict"),
            ApiError::Invalid { .. } => (422, "Invalid"),
            ApiError::BadRequest(_) => (400, "BadRequest"),
            ApiError::Expired(_) => (410, "Expired"),
            ApiError::MethodNotAllowed => (405, "MethodNotAllowed"),
            ApiError::UnsupportedMediaType(_) => (415, "UnsupportedMediaType"),
            ApiError::TooLarge { .. } => (413, "RequestEntityTooLarge"),
            ApiError::Unavailable(_) => (503, "ServiceUnavailable"),
            ApiError::Unauthorized => (401, "Unauthorized"),
            ApiError::TooManyRequests => (429, "TooManyRequests"),
            ApiError::Timeout(_) => (504, "Timeout"),
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
            ApiError::Unavailable(_) | ApiError::TooManyRequests => json!({"retryAfterSeconds": 1}),
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
        if code == 503 || code == 429 {
            resp.headers_mut()
                .insert("retry-after", HeaderValue::from_static("1"));
        }
        resp
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match &e {
            StoreError::NoLeader(_)
            | StoreError::NotLeader { .. }
            | StoreError::Timeout { .. }
            | StoreError::Transport { .. }
            | StoreError::WatchDropped { .. } => ApiError::Unavailable(e.to_string()),
            StoreError::Compacted {
                requested,
                compacted,
            } => ApiError::Expired(format!(
                "too old resource version: {requested} ({compacted})"
            )),
            StoreError::InvalidContinue(m) => ApiError::Expired(format!(
                "the provided continue parameter is too old or invalid: {m}"
            )),
            StoreError::FutureRevision { .. } => {
                ApiError::Unavailable(format!("Too large resource version: {e}"))
            }
            StoreError::ValueTooLarge { size, limit, .. } => ApiError::TooLarge {
                size: *size,
                limit: *limit,
            },
            StoreError::InvalidCommand(m) => ApiError::BadRequest(m.clone()),
            _ => ApiError::Internal(e.to_string()),
        }
    }
}
