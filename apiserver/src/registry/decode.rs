//! From a request body to an object the registry may store: the body's media
//! type and syntax, the kind's Kubernetes type (type errors, unknown fields
//! and `fieldValidation`), `apiVersion` and `kind`, and the field rules of
//! the kind's strategy.

use axum::body::Bytes;
use axum::http::{HeaderMap, header};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::meta;
use crate::request::{Query, RequestTarget};

/// Largest request body accepted (the store's own value limit is 1.5 MiB).
pub const MAX_BODY: usize = 3 << 20;

/// The body as a JSON object: JSON, or YAML when the content type says so.
/// `patch` bodies skip the media type check (the patch verb checks its own).
pub(super) fn parse_body(
    t: &RequestTarget,
    headers: &HeaderMap,
    body: &Bytes,
    patch: bool,
) -> Result<Value, ApiError> {
    if body.len() > MAX_BODY {
        return Err(ApiError::TooLarge {
            size: body.len(),
            limit: MAX_BODY,
        });
    }
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let base = ct.split(';').next().unwrap_or("").trim();
    if !patch && base == super::protobuf::MEDIA_TYPE {
        return super::protobuf::decode(t, body);
    }
    let yaml = base == "application/yaml";
    if !patch && !yaml && base != "application/json" && base != "*/*" && !base.is_empty() {
        return Err(ApiError::UnsupportedMediaType(format!(
            "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf (got {base})"
        )));
    }
    let v: Value = if yaml {
        crate::kinds::typed::from_yaml(body)
            .map_err(|e| ApiError::BadRequest(format!("the request body is not valid YAML: {e}")))?
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::BadRequest(format!("the request body is not valid JSON: {e}")))?
    };
    if !v.is_object() {
        return Err(ApiError::BadRequest(format!(
            "the request body must be a JSON object describing a {}",
            t.rt.kind
        )));
    }
    Ok(v)
}

/// A body that is JSON of any shape (bindings, scales, patches).
pub(super) fn json_body(body: &Bytes) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("the request body is not valid JSON: {e}")))
}

/// Decode into the kind's Kubernetes type (a wrong type is a 400 naming
/// the field), drop unknown fields from `obj`, and apply `fieldValidation`
/// (Strict: refuse, Warn (default): warn, Ignore). Returns the warnings to
/// send back as `Warning` headers.
pub(super) fn field_validation(
    t: &RequestTarget,
    obj: &mut Value,
    q: &Query,
) -> Result<Vec<String>, ApiError> {
    let unknown = if t.rt.custom.is_some() {
        // A custom resource: its structural schema prunes ([`crate::crd`]).
        crate::crd::unknown_fields(&t.rt, obj)?
    } else {
        let check = t.rt.typed.map(|typed| typed.check).ok_or_else(|| {
            ApiError::Internal(format!("no Kubernetes type is known for {}", t.rt.kind))
        })?;
        let known = check(obj).map_err(|e| {
            ApiError::BadRequest(format!(
                "{kind} in version \"{v}\" cannot be handled as a {kind}: {msg} (field {path})",
                kind = t.rt.kind,
                v = t.rt.version,
                msg = e.message,
                path = e.path
            ))
        })?;
        let (unknown, pruned) = crate::kinds::typed::prune(obj, &known);
        *obj = pruned;
        unknown
    };
    if unknown.is_empty() {
        return Ok(vec![]);
    }
    let listed: Vec<String> = unknown
        .iter()
        .map(|f| format!("unknown field \"{f}\""))
        .collect();
    match q.get("fieldValidation").map(String::as_str) {
        Some("Strict") => Err(ApiError::BadRequest(format!(
            "{kind} in version \"{v}\" cannot be handled as a {kind}: strict decoding error: {}",
            listed.join(", "),
            kind = t.rt.kind,
            v = t.rt.version
        ))),
        Some("Ignore") => Ok(vec![]),
        _ => Ok(listed),
    }
}

/// apiVersion and kind must name the URL's type; missing ones are taken
/// from the URL, as Kubernetes does (the Python client omits them).
pub(super) fn check_type(t: &RequestTarget, obj: &mut Value) -> Result<(), ApiError> {
    let av = obj
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let kind = obj
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if (!av.is_empty() && av != t.rt.api_version()) || (!kind.is_empty() && kind != t.rt.kind) {
        return Err(ApiError::BadRequest(format!(
            "the API version in the data ({av}) does not match the expected API version ({}), or the kind ({kind}) does not match {}",
            t.rt.api_version(),
            t.rt.kind
        )));
    }
    obj["apiVersion"] = json!(t.rt.api_version());
    obj["kind"] = json!(t.rt.kind);
    Ok(())
}

/// Field errors of an object, and on update of the change from `old`.
pub(super) fn validate(
    t: &RequestTarget,
    obj: &Value,
    old: Option<&Value>,
) -> Result<(), ApiError> {
    let mut causes = meta::validate_meta(obj, t.rt.namespaced, t.rt.strategy.name_rule());
    causes.extend(t.rt.strategy.validate(obj));
    causes.extend(super::delete::objectmeta::finalizer_causes(obj));
    if old.is_none() {
        causes.extend(t.rt.strategy.validate_create(obj));
    }
    if let Some(old) = old {
        causes.extend(t.rt.strategy.validate_update(obj, old));
        causes.extend(super::delete::objectmeta::update_causes(obj, old));
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Invalid {
            group: t.rt.group.clone(),
            kind: t.rt.kind.clone(),
            name: obj
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .into(),
            causes,
        })
    }
}

/// `obj[parent][key] = value`, as an error rather than a panic when a
/// stored `obj[parent]` is neither an object nor absent.
pub(super) fn set_field(
    obj: &mut Value,
    parent: &str,
    key: &str,
    value: Value,
) -> Result<(), ApiError> {
    let Some(o) = obj.as_object_mut() else {
        return Err(ApiError::Internal(
            "the stored object is not an object".into(),
        ));
    };
    let p = o.entry(parent).or_insert(Value::Null);
    if p.is_null() {
        *p = json!({});
    }
    match p {
        Value::Object(m) => {
            m.insert(key.into(), value);
            Ok(())
        }
        _ => Err(ApiError::Internal(format!(
            "the stored object's {parent} is not an object"
        ))),
    }
}
