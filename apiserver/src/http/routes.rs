//! The one router of the API server. Every path it serves is a route here;
//! a resource path's tail (namespace, name, subresource) is resolved by
//! [`crate::request`], against the kinds served at that moment.
//!
//! Layers, outermost first: the body limit, [`auth::authenticate`], then
//! for everything but `/version` and health [`auth::require_user`],
//! [`impersonate::impersonate`] and the authorization of non-resource paths
//! (`authorize_path`), and for `/api` and `/apis` the request limits and
//! metrics ([`server::limits`]). Resource requests are authorized in
//! `serve` once their target is resolved.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Extension, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::middleware::{Next, from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use serde_json::json;

use super::auth::UserInfo;
use super::{AppState, auth, health, impersonate, server};
use crate::error::ApiError;
use crate::registry::MAX_BODY;
use crate::request::{self, RequestTarget};
use crate::response;
use crate::{authz, discovery};

/// The router over `state`.
pub fn router(state: AppState) -> Router {
    // Each discovery path also with a trailing slash, as it was served
    // before the router had routes.
    let api = Router::new()
        .route("/api", any(core_root))
        .route("/api/", any(core_root))
        .route("/apis", any(groups_root))
        .route("/apis/", any(groups_root))
        .route("/apis/{group}", any(group))
        .route("/apis/{group}/", any(group))
        .route("/api/{version}", any(core_resources))
        .route("/api/{version}/", any(core_resources))
        .route("/apis/{group}/{version}", any(resources))
        .route("/apis/{group}/{version}/", any(resources))
        .route("/api/{version}/{*rest}", any(core_resource))
        .route("/apis/{group}/{version}/{*rest}", any(resource))
        .route_layer(from_fn_with_state(state.clone(), server::limits));
    let mut authenticated = Router::new()
        .merge(api)
        .route("/openapi/v2", any(openapi_v2))
        .route("/openapi/v3", any(openapi_v3_index))
        .route("/openapi/v3/{*gv}", any(openapi_v3))
        .route("/metrics", any(metrics))
        .fallback(no_route)
        .layer(from_fn_with_state(state.clone(), authorize_path))
        .layer(from_fn_with_state(state.clone(), impersonate::impersonate))
        .layer(from_fn(auth::require_user));
    // Outside impersonation, so an event names the real user and the one
    // impersonated; inside authentication, so it names a user at all.
    if let Some(log) = &state.audit {
        let audit = crate::audit::AuditState {
            log: log.clone(),
            kinds: state.registry.kinds.clone(),
        };
        authenticated = authenticated.layer(from_fn_with_state(audit, crate::audit::audit));
    }
    Router::new()
        .route("/version", get(version))
        .merge(health::routes())
        .merge(authenticated)
        .layer(from_fn(crate::registry::protobuf::negotiate::layer))
        .layer(from_fn_with_state(state.clone(), auth::authenticate))
        .layer(DefaultBodyLimit::max(MAX_BODY * 2))
        .with_state(state)
}

async fn version() -> Response {
    axum::Json(json!({
        "major": "1", "minor": "33",
        "gitVersion": format!("v1.33.0+keel-{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": "", "gitTreeState": "clean", "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "rust", "compiler": "rustc", "platform": format!("{}/{}", std::env::consts::OS, if cfg!(target_arch = "x86_64") { "amd64" } else { std::env::consts::ARCH }),
    }))
    .into_response()
}

async fn no_route() -> ApiError {
    ApiError::NoRoute
}

// Handlers read the path's segments as sent (see `request::segments`), not
// percent-decoded path parameters: a name is part of a store key.

/// `/api`.
async fn core_root(State(s): State<AppState>, headers: HeaderMap) -> Response {
    if discovery::wants_aggregated(&headers) {
        return discovery::aggregated(&s.registry.kinds, true);
    }
    response::json(StatusCode::OK, &discovery::api_versions())
}

/// `/apis`, with the aggregated groups ([`crate::aggregator`]).
async fn groups_root(State(s): State<AppState>, headers: HeaderMap) -> Response {
    if discovery::wants_aggregated(&headers) {
        let local = discovery::aggregated(&s.registry.kinds, false);
        return match &s.aggregator {
            Some(a) => a.merge_aggregated(local).await,
            None => local,
        };
    }
    let mut list = discovery::group_list(&s.registry.kinds);
    if let Some(a) = &s.aggregator {
        a.merge_group_list(&mut list);
    }
    response::json(StatusCode::OK, &list)
}

/// `/apis/{group}`.
async fn group(State(s): State<AppState>, uri: Uri) -> Result<Response, ApiError> {
    let segs = request::segments(uri.path());
    let mut v = discovery::group(&s.registry.kinds, segs[1]);
    if let Some(a) = &s.aggregator {
        v = a.group(v, segs[1]);
    }
    Ok(response::json(StatusCode::OK, &v?))
}

/// `/api/{version}`.
async fn core_resources(State(s): State<AppState>, uri: Uri) -> Result<Response, ApiError> {
    let segs = request::segments(uri.path());
    let v = discovery::resource_list(&s.registry.kinds, "", segs[1])?;
    Ok(response::json(StatusCode::OK, &v))
}

/// `/apis/{group}/{version}`: the extension server's when aggregated.
async fn resources(
    State(s): State<AppState>,
    user: Option<Extension<UserInfo>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let segs = request::segments(uri.path());
    let user = user.map(|u| u.0).unwrap_or_default();
    let proxied = aggregated(
        &s,
        &user,
        segs[1],
        segs[2],
        &[],
        &method,
        &uri,
        &headers,
        body,
    )
    .await;
    if let Some(r) = proxied {
        return r;
    }
    let v = discovery::resource_list(&s.registry.kinds, segs[1], segs[2])?;
    Ok(response::json(StatusCode::OK, &v))
}

/// The extension server's answer when an APIService sends `group`/`version`
/// to one ([`crate::aggregator`]); `None` when this server serves it.
#[allow(clippy::too_many_arguments)]
async fn aggregated(
    s: &AppState,
    user: &UserInfo,
    group: &str,
    version: &str,
    rest: &[&str],
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> Option<Result<Response, ApiError>> {
    let a = s.aggregator.as_ref()?;
    let reg = a.remote(group, version)?;
    Some(
        a.serve(&reg, &*s.authorizer, user, rest, method, uri, headers, body)
            .await,
    )
}

/// `/api/{version}/…`.
async fn core_resource(
    State(s): State<AppState>,
    user: Option<Extension<UserInfo>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let segs = request::segments(uri.path());
    let user = user.map(|u| u.0).unwrap_or_default();
    serve(
        &s,
        "",
        segs[1],
        &segs[2..],
        method,
        &uri,
        headers,
        body,
        &user,
    )
    .await
}

/// `/apis/{group}/{version}/…`.
async fn resource(
    State(s): State<AppState>,
    user: Option<Extension<UserInfo>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let segs = request::segments(uri.path());
    let user = user.map(|u| u.0).unwrap_or_default();
    let rest = &segs[3..];
    if segs[1] == HISTORY_GROUP && segs[2] == "v1" && rest.first() == Some(&"history") {
        return history(&s, &rest[1..], &method, &user).await;
    }
    let proxied = aggregated(
        &s,
        &user,
        segs[1],
        segs[2],
        rest,
        &method,
        &uri,
        &headers,
        body.clone(),
    );
    if let Some(r) = proxied.await {
        return r;
    }
    serve(
        &s, segs[1], segs[2], rest, method, &uri, headers, body, &user,
    )
    .await
}

/// Keel's own group: object history ([`crate::registry`]'s `history`).
const HISTORY_GROUP: &str = "keel.dev";

/// `/apis/keel.dev/v1/history/{group}/{version}/…{resource}/{name}`: the
/// object's history, for whoever may `get` the object.
async fn history(
    s: &AppState,
    path: &[&str],
    method: &Method,
    user: &UserInfo,
) -> Result<Response, ApiError> {
    let [group, version, rest @ ..] = path else {
        return Err(ApiError::NoRoute);
    };
    let group = if *group == "core" { "" } else { group };
    let target = RequestTarget::resolve(&s.registry.kinds, group, version, rest)?;
    let Some(name) = target.name.clone().filter(|_| target.subresource.is_none()) else {
        return Err(ApiError::NoRoute);
    };
    if method != Method::GET {
        return Err(ApiError::MethodNotAllowed);
    }
    authz::check(
        &*s.authorizer,
        &authz::Attributes::resource(user, request::Verb::Get, &target),
    )?;
    s.registry.history(&target, &name).await
}

#[allow(clippy::too_many_arguments)]
async fn serve(
    s: &AppState,
    group: &str,
    version: &str,
    rest: &[&str],
    method: Method,
    uri: &Uri,
    headers: HeaderMap,
    body: Bytes,
    user: &UserInfo,
) -> Result<Response, ApiError> {
    if rest.is_empty() {
        // `/api/v1//`: the resource list, as `/api/v1/`.
        let v = discovery::resource_list(&s.registry.kinds, group, version)?;
        return Ok(response::json(StatusCode::OK, &v));
    }
    let target = RequestTarget::resolve(&s.registry.kinds, group, version, rest)?;
    let q = request::query(uri);
    let verb = target.verb(&method, &q)?;
    authz::check(
        &*s.authorizer,
        &authz::Attributes::resource(user, verb, &target),
    )?;
    if target.rt.create_only && target.rt.group == "authorization.k8s.io" {
        return access_review(s, &target, verb, &headers, body, user);
    }
    s.registry
        .serve(verb, &target, &q, &headers, body, user)
        .await
}

/// Authorization of the non-resource requests: discovery (`/api`,
/// `/apis/{group}/{version}`), `/openapi/…`, `/metrics`. Resource requests
/// are authorized in [`serve`], once their target is resolved.
async fn authorize_path(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let segs = request::segments(path);
    let resource = match segs.first() {
        Some(&"api") => segs.len() > 2,
        Some(&"apis") => segs.len() > 3,
        _ => false,
    };
    if !resource {
        let user = req
            .extensions()
            .get::<UserInfo>()
            .cloned()
            .unwrap_or_default();
        let a = authz::Attributes::path(&user, req.method().as_str(), path);
        if let Err(e) = authz::check(&*s.authorizer, &a) {
            return e.into_response();
        }
    }
    next.run(req).await
}

/// A create of an `authorization.k8s.io` review, answered at once.
fn access_review(
    s: &AppState,
    t: &RequestTarget,
    verb: request::Verb,
    headers: &HeaderMap,
    body: Bytes,
    user: &UserInfo,
) -> Result<Response, ApiError> {
    if verb != request::Verb::Create || t.subresource.is_some() {
        return Err(ApiError::MethodNotAllowed);
    }
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let proto = crate::registry::protobuf::MEDIA_TYPE;
    let obj = if ct.split(';').next().unwrap_or("").trim() == proto {
        crate::registry::protobuf::decode_kind(&body, &t.rt.api_version(), &t.rt.kind)?
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::BadRequest(format!("the review does not decode: {e}")))?
    };
    let index = s.rbac.as_ref().map(|r| &**r.index());
    let answer = authz::rbac::review::answer(&*s.authorizer, index, t, obj, user)?;
    Ok(response::json(StatusCode::CREATED, &answer))
}

async fn openapi_v2(State(s): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    crate::openapi::v2_document(&s.registry, &headers).await
}

async fn openapi_v3_index(
    State(s): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    crate::openapi::v3_index(&s.registry, &headers).await
}

async fn openapi_v3(
    State(s): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let gv = uri.path().strip_prefix("/openapi/v3/").unwrap_or_default();
    let q = request::query(&uri);
    crate::openapi::v3_document(&s.registry, gv, q.get("hash").map(String::as_str), &headers).await
}

async fn metrics(State(s): State<AppState>) -> Response {
    let text = format!(
        "{}{}",
        s.metrics.render(),
        s.registry.storage.render_metrics()
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_match_the_routes_that_matched() {
        // What a route template matched is what the handler indexes.
        assert_eq!(
            request::segments("/apis/apps/v1/namespaces/d/deployments/x/"),
            ["apis", "apps", "v1", "namespaces", "d", "deployments", "x"]
        );
        assert_eq!(request::segments("/api/v1/"), ["api", "v1"]);
    }
}
