//! The subresources besides `/status` (which is the update path with the
//! kind's status strategy): `/binding` assigns a pod to a node, `/scale`
//! reads and writes `spec.replicas` as an `autoscaling/v1` Scale. Both
//! write through the guaranteed update.

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use super::{Registry, decode};
use crate::error::{ApiError, Cause};
use crate::http::auth::UserInfo;
use crate::request::{Query, RequestTarget};
use crate::response;

impl Registry {
    /// POST `pods/{name}/binding`: assign the pod to a node, once.
    pub(super) async fn bind(
        &self,
        t: &RequestTarget,
        name: &str,
        q: &Query,
        body: Bytes,
        user: &UserInfo,
    ) -> Result<Response, ApiError> {
        let binding = decode::json_body(&body)?;
        let node = binding
            .pointer("/target/name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| ApiError::Invalid {
                group: String::new(),
                kind: "Binding".into(),
                name: name.into(),
                causes: vec![Cause::required("target.name")],
            })?
            .to_string();
        let main = t.main();
        self.guaranteed_update(&main, name, q, user, |_, old| {
            if let Some(current) = old
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
            {
                return Err(ApiError::Conflict {
                    group: String::new(),
                    resource: "pods/binding".into(),
                    name: name.into(),
                    message: format!("pod {name} is already assigned to node \"{current}\""),
                });
            }
            let mut new = old.clone();
            decode::set_field(&mut new, "spec", "nodeName", json!(node))?;
            Ok(new)
        })
        .await?;
        Ok(response::json(
            StatusCode::CREATED,
            &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
        ))
    }

    /// GET of `/scale`.
    pub(super) async fn get_scale(
        &self,
        t: &RequestTarget,
        name: &str,
    ) -> Result<Response, ApiError> {
        let (kv, obj) = self.current(t, name).await?;
        Ok(response::json(
            StatusCode::OK,
            &scale_of(&obj, kv.mod_revision),
        ))
    }

    /// PUT (`patch` false) or PATCH of `/scale`: only `spec.replicas` of the resource changes.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn scale(
        &self,
        t: &RequestTarget,
        name: &str,
        q: &Query,
        patch: bool,
        headers: &HeaderMap,
        body: Bytes,
        user: &UserInfo,
    ) -> Result<Response, ApiError> {
        let ty = if patch {
            let schema = crate::schema::builtin();
            let scale = schema
                .kind("autoscaling", "v1", "Scale")
                .or_else(|| schema.definition("io.k8s.api.autoscaling.v1.Scale"));
            Some(super::patch::PatchType::of(headers, scale)?)
        } else {
            None
        };
        let body = decode::json_body(&body)?;
        let invalid = |cause| ApiError::Invalid {
            group: "autoscaling".into(),
            kind: "Scale".into(),
            name: name.into(),
            causes: vec![cause],
        };
        let main = t.main();
        self.guaranteed_update(&main, name, q, user, |kv, old| {
            let wanted = match ty {
                None => body.clone(),
                Some(ty) => {
                    let mut s = scale_of(old, kv.mod_revision);
                    super::patch::apply(&mut s, &body, ty, |m| {
                        invalid(Cause::invalid("patch", m))
                    })?;
                    s
                }
            };
            let replicas = wanted
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .ok_or_else(|| invalid(Cause::required("spec.replicas")))?;
            if replicas < 0 {
                return Err(invalid(Cause::invalid(
                    "spec.replicas",
                    "must be greater than or equal to 0",
                )));
            }
            let mut new = old.clone();
            decode::set_field(&mut new, "spec", "replicas", json!(replicas))?;
            // A resourceVersion in the Scale is a precondition on the resource.
            if let Some(rv) = wanted.pointer("/metadata/resourceVersion") {
                new["metadata"]["resourceVersion"] = rv.clone();
            }
            Ok(new)
        })
        .await?;
        let (kv, obj) = self.current(t, name).await?;
        Ok(response::json(
            StatusCode::OK,
            &scale_of(&obj, kv.mod_revision),
        ))
    }
}

/// The `autoscaling/v1` Scale of a resource with `spec.replicas`.
fn scale_of(obj: &Value, revision: u64) -> Value {
    let selector = obj
        .pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": obj.pointer("/metadata/name"),
            "namespace": obj.pointer("/metadata/namespace"),
            "uid": obj.pointer("/metadata/uid"),
            "resourceVersion": revision.to_string(),
            "creationTimestamp": obj.pointer("/metadata/creationTimestamp"),
        },
        "spec": {"replicas": obj.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1)},
        "status": {
            "replicas": obj.pointer("/status/replicas").and_then(Value::as_i64).unwrap_or(0),
            "selector": selector,
        },
    })
}
