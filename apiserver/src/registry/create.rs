//! The create verb: system fields, defaults and validation of a new object,
//! then a write that fails if the name is taken. The default namespaces are
//! created through here too ([`Registry::create_object`]).

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use super::storage::StorageError;
use super::{Registry, decode, services, storage_error};
use crate::admission;
use crate::error::ApiError;
use crate::fieldmanager;
use crate::http::auth::UserInfo;
use crate::meta;
use crate::request::{Query, RequestTarget};
use crate::response;

impl Registry {
    /// POST of a collection.
    pub(super) async fn create(
        &self,
        t: &RequestTarget,
        q: &Query,
        headers: &HeaderMap,
        body: Bytes,
        user: &UserInfo,
    ) -> Result<Response, ApiError> {
        let mut obj = decode::parse_body(t, headers, &body, false)?;
        decode::check_type(t, &mut obj)?;
        let warnings = decode::field_validation(t, &mut obj, q)?;
        let dry_run = q.get("dryRun").is_some_and(|d| d == "All");
        let obj = self.create_managed(t, obj, dry_run, user, q).await?;
        Ok(response::with_warnings(
            response::json(StatusCode::CREATED, &obj),
            &warnings,
        ))
    }

    /// Create `obj`, decoded and of `t`'s type: metadata the system owns
    /// (uid, creation time, generation), a generated name, the kind's
    /// defaults and validation, admission for `user`, then the write.
    /// Returns the stored object (or, for a dry run, the object that would
    /// be stored).
    pub async fn create_object(
        &self,
        t: &RequestTarget,
        obj: Value,
        dry_run: bool,
        user: &UserInfo,
    ) -> Result<Value, ApiError> {
        self.create_managed(t, obj, dry_run, user, &Query::new())
            .await
    }

    /// [`Registry::create_object`] with the write's query, which names its
    /// field manager ([`crate::fieldmanager`]).
    pub(super) async fn create_managed(
        &self,
        t: &RequestTarget,
        mut obj: Value,
        dry_run: bool,
        user: &UserInfo,
        q: &Query,
    ) -> Result<Value, ApiError> {
        if !obj.get("metadata").is_some_and(Value::is_object) {
            obj["metadata"] = json!({});
        }
        if t.rt.namespaced {
            let ns = t
                .namespace
                .clone()
                .ok_or_else(|| ApiError::BadRequest("a namespace is required".into()))?;
            match obj.pointer("/metadata/namespace").and_then(Value::as_str) {
                Some(n) if !n.is_empty() && n != ns => {
                    return Err(ApiError::BadRequest("the namespace of the provided object does not match the namespace sent on the request".into()));
                }
                _ => obj["metadata"]["namespace"] = json!(ns),
            }
        } else if let Some(m) = obj["metadata"].as_object_mut() {
            m.remove("namespace");
        }
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if name.is_empty()
            && let Some(g) = obj
                .pointer("/metadata/generateName")
                .and_then(Value::as_str)
        {
            let suffix: String = meta::new_uid()
                .chars()
                .filter(|c| c.is_ascii_alphanumeric())
                .take(5)
                .collect();
            obj["metadata"]["name"] = json!(format!("{g}{suffix}"));
        }
        let m = obj["metadata"]
            .as_object_mut()
            .expect("metadata is an object");
        for f in [
            "resourceVersion",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "managedFields",
            "selfLink",
        ] {
            // An apply that creates brings the entries it made.
            if f == "managedFields" && q.contains_key(fieldmanager::APPLIED) {
                continue;
            }
            m.remove(f);
        }
        m.insert("uid".into(), json!(meta::new_uid()));
        m.insert(
            "creationTimestamp".into(),
            json!(meta::rfc3339(meta::now_secs())),
        );
        if obj.get("spec").is_some() {
            obj["metadata"]["generation"] = json!(1);
        }
        t.rt.strategy.prepare_create(&mut obj);
        fieldmanager::on_create(t, &mut obj, q);
        decode::validate(t, &obj, None)?;
        if let Some(ns) = &t.namespace {
            self.admit_create_in_namespace(t, ns, &obj).await?;
        }
        let name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        self.admit(&admission::Attributes {
            user,
            operation: admission::Operation::Create,
            target: t,
            name: &name,
            object: Some(&obj),
            old: None,
        })?;
        // ResourceQuota admission: checked (and, unless a dry run, charged)
        // after every other admission plugin, as kube-apiserver runs it last.
        self.charge_quotas(t, &name, &obj, dry_run, user).await?;
        if dry_run {
            // A Service's addresses are checked against the ranges, not reserved.
            if services::is_service(t) {
                let causes = services::range_causes(&self.service_network(), &obj);
                if !causes.is_empty() {
                    return Err(ApiError::Invalid {
                        group: String::new(),
                        kind: t.rt.kind.clone(),
                        name,
                        causes,
                    });
                }
            }
            // A dry run answers as the write would: an existing name is a conflict.
            if self.current(t, &name).await.is_ok() {
                let key = t.rt.key(t.namespace.as_deref(), &name);
                return Err(storage_error(t, &name, StorageError::AlreadyExists { key }));
            }
            return Ok(obj);
        }
        let uid = obj["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let key = t.rt.key(t.namespace.as_deref(), &name);
        // A Service's cluster IP and node ports are reserved first, and
        // released if the Service is not written.
        let held = match services::is_service(t) {
            true => Some(self.allocate_service(&mut obj, &user.actor()).await?),
            false => None,
        };
        let created = self
            .storage
            .create(
                &key,
                t.rt.to_stored(obj.clone()).to_string().into_bytes(),
                Some(uid),
                &user.actor(),
            )
            .await;
        let rev = match created {
            Ok(rev) => rev,
            Err(e) => {
                if let Some(held) = held {
                    let ns = t.namespace.as_deref().unwrap_or_default();
                    self.release(held, ns, &name).await;
                }
                return Err(storage_error(t, &name, e));
            }
        };
        obj["metadata"]["resourceVersion"] = json!(rev.to_string());
        Ok(obj)
    }
}
