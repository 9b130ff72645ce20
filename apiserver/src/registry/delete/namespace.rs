//! The API side of a namespace's lifecycle (kube-apiserver's namespace
//! store and its NamespaceLifecycle admission plugin). The first DELETE of
//! a namespace only marks it: `deletionTimestamp`, `status.phase:
//! Terminating`, and the GC finalizers the options ask for; the namespace
//! controller then empties it and clears `spec.finalizers` through
//! `namespaces/{name}/finalize`, which removes it once `metadata.finalizers`
//! are gone too ([`super::graceful::should_delete_during_update`]). Later
//! DELETEs return it unchanged while `spec.finalizers` remain, and delete it
//! as any object afterwards. `default`, `kube-system` and `kube-public`
//! cannot be deleted, and nothing new is created in a terminating namespace.

use serde_json::{Value, json};

use super::graceful::is_deleting;
use super::options::DeleteOptions;
use super::{Outcome, propagation};
use crate::admission;
use crate::error::ApiError;
use crate::http::auth::UserInfo;
use crate::meta;
use crate::registry::storage::{self, Consistency, StorageError, UpdateError, Write, Written};
use crate::registry::{Registry, storage_error};
use crate::request::RequestTarget;

/// The namespaces the system needs; deleting one is refused.
const IMMORTAL: [&str; 3] = ["default", "kube-system", "kube-public"];

/// Whether `t` is the namespaces resource.
pub fn is_namespace(t: &RequestTarget) -> bool {
    t.rt.group.is_empty() && t.rt.plural == "namespaces"
}

fn str_at<'a>(obj: &'a Value, pointer: &str) -> &'a str {
    obj.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// The namespace store's precondition failure (its own wording).
fn precondition_failed(name: &str, what: &str, want: &str, have: &str) -> ApiError {
    ApiError::Conflict {
        group: String::new(),
        resource: "namespaces".into(),
        name: name.into(),
        message: format!(
            "Precondition failed: {what} in precondition: {want}, {what} in object meta: {have}"
        ),
    }
}

impl Registry {
    /// DELETE of a namespace.
    pub(super) async fn delete_namespace(
        &self,
        t: &RequestTarget,
        name: &str,
        opts: &DeleteOptions,
        user: &UserInfo,
    ) -> Result<Outcome, ApiError> {
        let (_, ns) = self.current(t, name).await?;
        // The uid read now is a precondition of the marking write, so a
        // namespace deleted and created again meanwhile is not marked.
        let uid = str_at(&ns, "/metadata/uid").to_string();
        if let Some(want) = opts.uid().filter(|u| *u != uid) {
            return Err(precondition_failed(name, "UID", want, &uid));
        }
        let rv = str_at(&ns, "/metadata/resourceVersion");
        if let Some(want) = opts.resource_version().filter(|r| *r != rv) {
            return Err(precondition_failed(name, "ResourceVersion", want, rv));
        }
        if IMMORTAL.contains(&name) {
            return Err(ApiError::Forbidden {
                group: String::new(),
                resource: "namespaces".into(),
                name: name.into(),
                reason: "this namespace may not be deleted".into(),
            });
        }
        self.admit(&admission::Attributes {
            user,
            operation: admission::Operation::Delete,
            target: t,
            name,
            object: None,
            old: Some(&ns),
        })?;
        if is_deleting(&ns) {
            if ns
                .pointer("/spec/finalizers")
                .and_then(Value::as_array)
                .is_some_and(|f| !f.is_empty())
            {
                return Ok(Outcome {
                    object: ns,
                    removed: false,
                });
            }
            return self.delete_object(t, name, opts, user).await;
        }
        self.start_terminating(t, name, &uid, opts, user).await
    }

    /// The first DELETE: mark the namespace terminating.
    async fn start_terminating(
        &self,
        t: &RequestTarget,
        name: &str,
        uid: &str,
        opts: &DeleteOptions,
        user: &UserInfo,
    ) -> Result<Outcome, ApiError> {
        let key = t.rt.key(None, name);
        let now = meta::now_secs();
        let attempt = storage::guaranteed_update(&*self.storage, &key, &user.actor(), |kv| {
            let old = self.decode(kv)?;
            let have = str_at(&old, "/metadata/uid");
            if have != uid {
                return Err(precondition_failed(name, "UID", uid, have));
            }
            if let Some(want) = opts.resource_version()
                && want != kv.mod_revision.to_string()
            {
                return Err(precondition_failed(
                    name,
                    "ResourceVersion",
                    want,
                    &kv.mod_revision.to_string(),
                ));
            }
            let mut ns = old.clone();
            if !is_deleting(&ns) {
                ns["metadata"]["deletionTimestamp"] = json!(meta::rfc3339(now));
            }
            super::super::decode::set_field(&mut ns, "status", "phase", json!("Terminating"))?;
            let current = propagation::finalizers(&ns);
            if let Some(f) = propagation::namespace_after_delete(opts, &current) {
                ns["metadata"]["finalizers"] = json!(f);
            }
            let write = if ns == old || opts.dry_run() {
                Write::Keep
            } else {
                Write::Put(super::stored(t, &ns))
            };
            Ok((write, ns))
        })
        .await;
        let (mut ns, written) = attempt.map_err(|e| match e {
            UpdateError::Rejected(e) => e,
            UpdateError::Storage(e) => storage_error(t, name, e),
        })?;
        if let Written::Put { revision } = written {
            ns["metadata"]["resourceVersion"] = json!(revision.to_string());
        }
        Ok(Outcome {
            object: ns,
            removed: false,
        })
    }

    /// NamespaceLifecycle on a create of `obj` in namespace `ns`: the
    /// namespace must exist (404) and not be terminating (403, with the
    /// `NamespaceTerminating` cause clients look for).
    pub(in crate::registry) async fn admit_create_in_namespace(
        &self,
        t: &RequestTarget,
        ns: &str,
        obj: &Value,
    ) -> Result<(), ApiError> {
        let ns_type = self
            .kinds
            .find("", "v1", "namespaces")
            .expect("namespaces are served");
        let kv = match self
            .storage
            .get(&ns_type.key(None, ns), Consistency::Linearizable)
            .await
        {
            Ok((kv, _)) => kv,
            Err(StorageError::NotFound { .. }) => {
                return Err(ApiError::NotFound {
                    group: String::new(),
                    resource: "namespaces".into(),
                    name: ns.into(),
                });
            }
            Err(e) => return Err(e.into()),
        };
        let namespace = self.decode(&kv)?;
        if str_at(&namespace, "/status/phase") == "Terminating" {
            return Err(ApiError::NamespaceTerminating {
                group: t.rt.group.clone(),
                resource: t.rt.plural.clone(),
                name: str_at(obj, "/metadata/name").into(),
                namespace: ns.into(),
            });
        }
        Ok(())
    }
}
