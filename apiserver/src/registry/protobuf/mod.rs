//! Protobuf request bodies (`application/vnd.kubernetes.protobuf`): the
//! `k8s\0` magic, the `runtime.Unknown` envelope, then the object, decoded
//! into the same JSON the registry gets from a JSON body. kubectl ≥ 1.32
//! sends its `create secret|configmap|namespace|serviceaccount|role|…`
//! commands this way. The kinds here are those commands' kinds; any other
//! kind's protobuf body is a 415 that says to send JSON (every protobuf
//! kind is the writes issue's to finish).

mod wire;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use prost::Message;
use serde_json::{Map, Value, json};

use crate::error::ApiError;
use crate::request::RequestTarget;

/// The media type of a protobuf body.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

const MAGIC: &[u8] = b"k8s\0";

/// The object a protobuf body of `t`'s kind holds, as JSON.
pub fn decode(t: &RequestTarget, body: &[u8]) -> Result<Value, ApiError> {
    let bad = |m: String| ApiError::BadRequest(format!("the protobuf request body {m}"));
    let envelope = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| bad("does not start with the k8s\\0 prefix".into()))?;
    let unknown =
        wire::Unknown::decode(envelope).map_err(|e| bad(format!("does not decode: {e}")))?;
    if unknown
        .content_encoding
        .as_deref()
        .is_some_and(|e| !e.is_empty())
    {
        return Err(ApiError::UnsupportedMediaType(format!(
            "content encoding {:?} of a protobuf body is not supported",
            unknown.content_encoding.unwrap_or_default()
        )));
    }
    let type_meta = unknown.type_meta.unwrap_or_default();
    let kind = type_meta.kind.unwrap_or_default();
    let api_version = type_meta.api_version.unwrap_or_default();
    if kind != t.rt.kind {
        return Err(bad(format!(
            "holds a {kind:?} where a {} was expected",
            t.rt.kind
        )));
    }
    let raw = unknown.raw.unwrap_or_default();
    let raw = raw.as_slice();
    let undecodable =
        |e: prost::DecodeError| bad(format!("holds a {kind} that does not decode: {e}"));
    let mut obj = match (t.rt.group.as_str(), kind.as_str()) {
        ("", "Secret") => secret(wire::Secret::decode(raw).map_err(undecodable)?),
        ("", "ConfigMap") => config_map(wire::ConfigMap::decode(raw).map_err(undecodable)?),
        ("", "Namespace") => namespace(wire::Namespace::decode(raw).map_err(undecodable)?),
        ("", "ServiceAccount") => {
            service_account(wire::ServiceAccount::decode(raw).map_err(undecodable)?)
        }
        ("rbac.authorization.k8s.io", "Role" | "ClusterRole") => {
            role(wire::Role::decode(raw).map_err(undecodable)?)
        }
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => {
            binding(wire::RoleBinding::decode(raw).map_err(undecodable)?)
        }
        _ => {
            return Err(ApiError::UnsupportedMediaType(format!(
                "protobuf bodies of {kind} are not decoded yet; send application/json (decoded: Secret, ConfigMap, Namespace, ServiceAccount, Role, ClusterRole, RoleBinding, ClusterRoleBinding)"
            )));
        }
    };
    obj.insert("apiVersion".into(), json!(api_version));
    obj.insert("kind".into(), json!(kind));
    Ok(Value::Object(obj))
}

/// `fields` without the absent and empty ones, as a JSON object.
fn object(fields: Vec<(&str, Value)>) -> Map<String, Value> {
    fields
        .into_iter()
        .filter(|(_, v)| match v {
            Value::Null => false,
            Value::Array(a) => !a.is_empty(),
            Value::Object(o) => !o.is_empty(),
            _ => true,
        })
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

fn base64_map(m: std::collections::BTreeMap<String, Vec<u8>>) -> Value {
    Value::Object(
        m.into_iter()
            .map(|(k, v)| (k, json!(B64.encode(v))))
            .collect(),
    )
}

fn time(t: Option<wire::Time>) -> Value {
    t.map_or(Value::Null, |t| {
        json!(crate::meta::rfc3339(t.seconds.unwrap_or(0)))
    })
}

fn metadata(m: Option<wire::ObjectMeta>) -> Value {
    let m = m.unwrap_or_default();
    let owners = m
        .owner_references
        .into_iter()
        .map(|o| {
            Value::Object(object(vec![
                ("apiVersion", json!(o.api_version)),
                ("kind", json!(o.kind)),
                ("name", json!(o.name)),
                ("uid", json!(o.uid)),
                ("controller", json!(o.controller)),
                ("blockOwnerDeletion", json!(o.block_owner_deletion)),
            ]))
        })
        .collect::<Vec<_>>();
    Value::Object(object(vec![
        ("name", json!(m.name)),
        ("generateName", json!(m.generate_name)),
        ("namespace", json!(m.namespace)),
        ("uid", json!(m.uid)),
        ("resourceVersion", json!(m.resource_version)),
        ("generation", json!(m.generation)),
        ("creationTimestamp", time(m.creation_timestamp)),
        ("deletionTimestamp", time(m.deletion_timestamp)),
        (
            "deletionGracePeriodSeconds",
            json!(m.deletion_grace_period_seconds),
        ),
        ("labels", json!(m.labels)),
        ("annotations", json!(m.annotations)),
        ("ownerReferences", json!(owners)),
        ("finalizers", json!(m.finalizers)),
    ]))
}

fn secret(s: wire::Secret) -> Map<String, Value> {
    object(vec![
        ("metadata", metadata(s.metadata)),
        ("data", base64_map(s.data)),
        ("stringData", json!(s.string_data)),
        ("type", json!(s.r#type)),
        ("immutable", json!(s.immutable)),
    ])
}

fn config_map(c: wire::ConfigMap) -> Map<String, Value> {
    object(vec![
        ("metadata", metadata(c.metadata)),
        ("data", json!(c.data)),
        ("binaryData", base64_map(c.binary_data)),
        ("immutable", json!(c.immutable)),
    ])
}

fn namespace(n: wire::Namespace) -> Map<String, Value> {
    let spec = n
        .spec
        .map(|s| Value::Object(object(vec![("finalizers", json!(s.finalizers))])));
    object(vec![
        ("metadata", metadata(n.metadata)),
        ("spec", spec.unwrap_or(Value::Null)),
    ])
}

fn service_account(sa: wire::ServiceAccount) -> Map<String, Value> {
    let secrets = sa
        .secrets
        .into_iter()
        .map(|r| {
            Value::Object(object(vec![
                ("kind", json!(r.kind)),
                ("namespace", json!(r.namespace)),
                ("name", json!(r.name)),
                ("uid", json!(r.uid)),
                ("apiVersion", json!(r.api_version)),
                ("resourceVersion", json!(r.resource_version)),
                ("fieldPath", json!(r.field_path)),
            ]))
        })
        .collect::<Vec<_>>();
    let pulls = sa
        .image_pull_secrets
        .into_iter()
        .map(|r| Value::Object(object(vec![("name", json!(r.name))])))
        .collect::<Vec<_>>();
    object(vec![
        ("metadata", metadata(sa.metadata)),
        ("secrets", json!(secrets)),
        ("imagePullSecrets", json!(pulls)),
        (
            "automountServiceAccountToken",
            json!(sa.automount_service_account_token),
        ),
    ])
}

fn role(r: wire::Role) -> Map<String, Value> {
    let rules = r
        .rules
        .into_iter()
        .map(|p| {
            let mut rule = object(vec![
                ("apiGroups", json!(p.api_groups)),
                ("resources", json!(p.resources)),
                ("resourceNames", json!(p.resource_names)),
                ("nonResourceURLs", json!(p.non_resource_urls)),
            ]);
            // Required, so kept even when empty.
            rule.insert("verbs".into(), json!(p.verbs));
            Value::Object(rule)
        })
        .collect::<Vec<_>>();
    let aggregation = r.aggregation_rule.map(|a| {
        let selectors = a
            .cluster_role_selectors
            .into_iter()
            .map(|s| {
                let exprs = s
                    .match_expressions
                    .into_iter()
                    .map(|e| {
                        Value::Object(object(vec![
                            ("key", json!(e.key)),
                            ("operator", json!(e.operator)),
                            ("values", json!(e.values)),
                        ]))
                    })
                    .collect::<Vec<_>>();
                Value::Object(object(vec![
                    ("matchLabels", json!(s.match_labels)),
                    ("matchExpressions", json!(exprs)),
                ]))
            })
            .collect::<Vec<_>>();
        json!({"clusterRoleSelectors": selectors})
    });
    let mut o = object(vec![
        ("metadata", metadata(r.metadata)),
        ("aggregationRule", aggregation.unwrap_or(Value::Null)),
    ]);
    // `rules` is kept even when empty: a role with no rules is a role.
    o.insert("rules".into(), json!(rules));
    o
}

fn binding(b: wire::RoleBinding) -> Map<String, Value> {
    let subjects = b
        .subjects
        .into_iter()
        .map(|s| {
            Value::Object(object(vec![
                ("kind", json!(s.kind)),
                ("apiGroup", json!(s.api_group)),
                ("name", json!(s.name)),
                ("namespace", json!(s.namespace)),
            ]))
        })
        .collect::<Vec<_>>();
    let role_ref = b.role_ref.map(|r| {
        Value::Object(object(vec![
            ("apiGroup", json!(r.api_group)),
            ("kind", json!(r.kind)),
            ("name", json!(r.name)),
        ]))
    });
    object(vec![
        ("metadata", metadata(b.metadata)),
        ("subjects", json!(subjects)),
        ("roleRef", role_ref.unwrap_or(Value::Null)),
    ])
}

#[cfg(test)]
mod tests;
