//! The `authentication.k8s.io/v1` reviews, answered and never stored:
//! SelfSubjectReview (`kubectl auth whoami`: the requester's own user) and
//! TokenReview (whether a bearer token authenticates, and as whom, for
//! services that accept ServiceAccount tokens).

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::http::auth::UserInfo;
use crate::registry::Registry;
use crate::registry::protobuf;
use crate::request::RequestTarget;
use crate::response;

/// POST of a review `t` by `user`.
pub async fn create(
    registry: &Registry,
    t: &RequestTarget,
    headers: &HeaderMap,
    body: &Bytes,
    user: &UserInfo,
) -> Result<Response, ApiError> {
    let out = match t.rt.kind.as_str() {
        "SelfSubjectReview" => {
            decode(headers, body, "SelfSubjectReview")?;
            json!({
                "kind": "SelfSubjectReview",
                "apiVersion": "authentication.k8s.io/v1",
                "metadata": {"creationTimestamp": null},
                "status": {"userInfo": user_info(user)},
            })
        }
        "TokenReview" => token_review(registry, decode(headers, body, "TokenReview")?).await,
        _ => return Err(ApiError::MethodNotAllowed),
    };
    Ok(response::json(StatusCode::CREATED, &out))
}

/// A review body of `kind` (authentication.k8s.io/v1): JSON, or the
/// protobuf kubectl ≥1.32 sends.
pub fn decode(headers: &HeaderMap, body: &Bytes, kind: &str) -> Result<Value, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if ct.split(';').next().unwrap_or("").trim() == protobuf::MEDIA_TYPE {
        return protobuf::decode_kind(body, "authentication.k8s.io/v1", kind);
    }
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("the request body is not valid JSON: {e}")))?;
    if !v.is_object() {
        return Err(ApiError::BadRequest(
            "the request body must be a JSON object".into(),
        ));
    }
    Ok(v)
}

/// A user as `authentication.k8s.io/v1` UserInfo.
pub fn user_info(user: &UserInfo) -> Value {
    let mut v = json!({"username": user.name, "groups": user.groups});
    if !user.uid.is_empty() {
        v["uid"] = json!(user.uid);
    }
    if !user.extra.is_empty() {
        v["extra"] = json!(user.extra);
    }
    v
}

fn strings(v: Option<&Value>) -> Option<Vec<String>> {
    let a = v?.as_array()?;
    Some(
        a.iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
    )
}

async fn token_review(registry: &Registry, review: Value) -> Value {
    let token = review
        .pointer("/spec/token")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let asked = strings(review.pointer("/spec/audiences")).filter(|a| !a.is_empty());
    let status = match registry
        .authenticator()
        .token(token, registry, asked.as_deref())
        .await
    {
        Ok((user, audiences)) => json!({
            "authenticated": true,
            "user": user_info(&user),
            "audiences": audiences,
        }),
        // Why is logged, not told: the caller learns only that it failed.
        Err(why) => {
            tracing::debug!(reason = %why, "TokenReview refused a token");
            json!({"authenticated": false, "error": "invalid bearer token"})
        }
    };
    json!({
        "kind": "TokenReview",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"creationTimestamp": null},
        "spec": review.get("spec").cloned().unwrap_or(json!({})),
        "status": status,
    })
}
