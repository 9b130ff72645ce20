//! The subresources besides `/status` (which is the update path with the
//! kind's status strategy): `/binding` assigns a pod to a node, `/scale`
//! reads and writes the replicas as an `autoscaling/v1` Scale: a built-in
//! kind's `spec.replicas`, a custom resource's `specReplicasPath` (with
//! `statusReplicasPath` and `labelSelectorPath`). Both write through the
//! guaranteed update.

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use super::{Registry, decode};
use crate::crd::ScalePaths;
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
        // The binding target itself: its write keeps the status it sets.
        self.guaranteed_update(t, name, q, user, |_, old| {
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
            bound_metadata(&mut new, &binding);
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
            &scale_of(&obj, kv.mod_revision, &paths_of(t), t.rt.custom.is_some()),
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
        let paths = paths_of(t);
        let custom = t.rt.custom.is_some();
        self.guaranteed_update(&main, name, q, user, |kv, old| {
            let wanted = match ty {
                None => body.clone(),
                Some(ty) => {
                    let mut s = scale_of(old, kv.mod_revision, &paths, custom);
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
            set_at(&mut new, &paths.spec, json!(replicas))?;
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
            &scale_of(&obj, kv.mod_revision, &paths, custom),
        ))
    }
}

/// Where `t`'s replicas are: a custom resource's scale paths, or
/// `spec.replicas` with the selector of `spec.selector.matchLabels`.
fn paths_of(t: &RequestTarget) -> ScalePaths {
    t.rt.custom
        .as_ref()
        .and_then(|c| c.scale.clone())
        .unwrap_or_else(|| ScalePaths {
            spec: "/spec/replicas".into(),
            status: "/status/replicas".into(),
            selector: None,
        })
}

/// Set the value at JSON `pointer`, creating the objects on the way; a
/// value on the way that is not an object is an error, not a panic.
fn set_at(obj: &mut Value, pointer: &str, value: Value) -> Result<(), ApiError> {
    let parts: Vec<String> = pointer
        .split('/')
        .skip(1)
        .map(|p| p.replace("~1", "/").replace("~0", "~"))
        .collect();
    let Some((last, parents)) = parts.split_last() else {
        return Err(ApiError::Internal("an empty scale path".into()));
    };
    let mut at = obj;
    for p in parents {
        let Some(m) = at.as_object_mut() else {
            return Err(ApiError::Internal(format!(
                "the object has no object at {pointer} to scale"
            )));
        };
        let next = m.entry(p.clone()).or_insert(Value::Null);
        if next.is_null() {
            *next = json!({});
        }
        at = next;
    }
    match at.as_object_mut() {
        Some(m) => {
            m.insert(last.clone(), value);
            Ok(())
        }
        None => Err(ApiError::Internal(format!(
            "the object has no object at {pointer} to scale"
        ))),
    }
}

/// The `autoscaling/v1` Scale of a resource whose replicas are at `paths`.
fn scale_of(obj: &Value, revision: u64, paths: &ScalePaths, custom: bool) -> Value {
    let custom_selector = paths.selector.as_ref().map(|p| {
        obj.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    });
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
    // A built-in kind defaults to one replica; a custom resource without
    // the field has none.
    let default_replicas = if custom { 0 } else { 1 };
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
        "spec": {"replicas": obj.pointer(&paths.spec).and_then(Value::as_i64).unwrap_or(default_replicas)},
        "status": {
            "replicas": obj.pointer(&paths.status).and_then(Value::as_i64).unwrap_or(0),
            "selector": custom_selector.unwrap_or(selector),
        },
    })
}

/// What a binding writes besides the node, as kube-apiserver's pod
/// storage does: the binding's annotations merged into the pod's, and the
/// PodScheduled condition True (its transition time moved only when its
/// status changes; the scheduler's Unschedulable reason and message go).
fn bound_metadata(pod: &mut Value, binding: &Value) {
    if let Some(annotations) = binding
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        && let Some(meta) = pod.get_mut("metadata").and_then(Value::as_object_mut)
    {
        let into = meta.entry("annotations").or_insert_with(|| json!({}));
        if !into.is_object() {
            *into = json!({});
        }
        if let Some(into) = into.as_object_mut() {
            for (k, v) in annotations {
                into.insert(k.clone(), v.clone());
            }
        }
    }
    let Some(obj) = pod.as_object_mut() else {
        return;
    };
    let status = obj.entry("status").or_insert_with(|| json!({}));
    if !status.is_object() {
        *status = json!({});
    }
    let Some(status) = status.as_object_mut() else {
        return;
    };
    let conditions = status.entry("conditions").or_insert_with(|| json!([]));
    if !conditions.is_array() {
        *conditions = json!([]);
    }
    let Some(conditions) = conditions.as_array_mut() else {
        return;
    };
    let now = crate::meta::rfc3339(crate::meta::now_secs());
    let scheduled = json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now});
    match conditions
        .iter_mut()
        .find(|c| c.get("type").and_then(Value::as_str) == Some("PodScheduled"))
    {
        Some(c) if c.get("status").and_then(Value::as_str) == Some("True") => {}
        Some(c) => *c = scheduled,
        None => conditions.push(scheduled),
    }
}

#[cfg(test)]
mod bind_tests {
    use super::*;

    #[test]
    fn a_binding_marks_the_pod_scheduled_and_carries_its_annotations() {
        let mut pod = json!({
            "metadata": {"name": "p", "annotations": {"a": "1"}},
            "status": {"conditions": [
                {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/1 nodes are available"},
                {"type": "Other", "status": "True"},
            ]},
        });
        bound_metadata(&mut pod, &json!({"metadata": {"annotations": {"b": "2"}}}));
        assert_eq!(pod["metadata"]["annotations"], json!({"a": "1", "b": "2"}));
        let c = &pod["status"]["conditions"][0];
        assert_eq!(c["status"], "True");
        assert!(c.get("reason").is_none() && c.get("message").is_none());
        assert!(c["lastTransitionTime"].is_string());
        assert_eq!(pod["status"]["conditions"][1]["type"], "Other");
        let mut fresh = json!({"metadata": {"name": "p"}});
        bound_metadata(&mut fresh, &json!({}));
        assert_eq!(fresh["status"]["conditions"][0]["type"], "PodScheduled");
    }
}
