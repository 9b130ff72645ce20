//! What a served kind is: its descriptor ([`ResourceType`]), its rules
//! ([`Strategy`]), the subresources it declares and the columns of its table.

use std::sync::Arc;

use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

use super::conversion::Conversion;
use super::typed::Typed;
use crate::error::Cause;
use crate::meta;

/// A column of `kubectl get` output (Table `columnDefinitions`).
#[derive(Clone, Debug, PartialEq)]
pub struct Column {
    pub name: String,
    pub kind: String,
    /// The Table column's `format` (`name`, `date`, `int32`, …; mostly empty).
    pub format: String,
    pub description: String,
    /// 0: always shown; 1: only with `-o wide`.
    pub priority: u8,
}

impl Column {
    /// A string column shown by plain `kubectl get`.
    pub fn new(name: &str, description: &str) -> Column {
        Column {
            name: name.into(),
            kind: "string".into(),
            format: String::new(),
            description: description.into(),
            priority: 0,
        }
    }

    /// The same column, shown only with `-o wide`.
    pub fn wide(mut self) -> Column {
        self.priority = 1;
        self
    }
}

/// The rules of one kind (Kubernetes' `RESTCreateStrategy` and
/// `RESTUpdateStrategy`, plus its table printer).
pub trait Strategy: Send + Sync {
    /// The rule a name must satisfy.
    fn name_rule(&self) -> fn(&str) -> Option<String> {
        meta::dns1123_subdomain
    }
    /// Fill in defaults on create (never validation).
    fn prepare_create(&self, _obj: &mut Value) {}
    /// Normalize an update (never validation).
    fn prepare_update(&self, new: &mut Value, _old: &Value) {
        self.prepare_create(new)
    }
    /// Field errors of a (prepared) object; never mutates.
    fn validate(&self, _obj: &Value) -> Vec<Cause> {
        vec![]
    }
    /// Field errors only a new object is checked for (rules an update
    /// ratchets: what was stored before may stay).
    fn validate_create(&self, _obj: &Value) -> Vec<Cause> {
        vec![]
    }
    /// Field errors of a change (never mutates): immutable fields.
    fn validate_update(&self, _new: &Value, _old: &Value) -> Vec<Cause> {
        vec![]
    }
    /// Columns between NAME and AGE.
    fn columns(&self) -> Vec<Column> {
        vec![]
    }
    /// Cells for [`Strategy::columns`].
    fn cells(&self, _obj: &Value) -> Vec<Value> {
        vec![]
    }
    /// Change an object on its first DELETE, before finalizers are looked
    /// at (a CRD gets its cleanup finalizer and `Terminating` condition).
    fn prepare_delete(&self, _obj: &mut Value) {}
}

/// A kind without rules beyond its type and metadata.
pub struct NoRules;
impl Strategy for NoRules {}

/// Writes of a kind that declares [`Subresource::Status`]: the main resource
/// never changes `status`, and `/status` changes nothing else (Kubernetes'
/// `PrepareForUpdate` of a strategy and of its status strategy).
pub struct StatusStrategy;

impl StatusStrategy {
    /// An update through the main resource keeps the stored status.
    pub fn prepare_main_update(new: &mut Value, old: &Value) {
        match old.get("status") {
            Some(st) => new["status"] = st.clone(),
            None => remove(new, "status"),
        }
    }

    /// An update through `/status`: the stored object with the new status
    /// (and the resourceVersion the client sent, for its precondition).
    pub fn prepare_status_update(new: &mut Value, old: &Value) {
        let status = new.get("status").cloned();
        let rv = new["metadata"]["resourceVersion"].clone();
        *new = old.clone();
        new["metadata"]["resourceVersion"] = rv;
        match status {
            Some(st) => new["status"] = st,
            None => remove(new, "status"),
        }
    }
}

fn remove(obj: &mut Value, field: &str) {
    if let Some(o) = obj.as_object_mut() {
        o.remove(field);
    }
}

/// A subresource a kind serves besides the object itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subresource {
    /// `/status`: get, update and patch of `status` only.
    Status,
    /// `/scale`: an `autoscaling/v1` Scale of `spec.replicas`.
    Scale,
    /// `/binding`: a `v1` Binding that assigns a pod to a node.
    Binding,
    /// `/token`: an `authentication.k8s.io/v1` TokenRequest for a
    /// ServiceAccount (`registry::token`).
    Token,
    /// `/finalize`: a namespace's `spec.finalizers`, written by the
    /// namespace controller (`registry::delete`).
    Finalize,
    /// `/eviction`: a `policy/v1` Eviction that deletes a pod if its
    /// PodDisruptionBudget allows (`registry::eviction`).
    Eviction,
}

impl Subresource {
    /// The path segment after the object's name.
    pub fn name(self) -> &'static str {
        match self {
            Subresource::Status => "status",
            Subresource::Scale => "scale",
            Subresource::Binding => "binding",
            Subresource::Token => "token",
            Subresource::Finalize => "finalize",
            Subresource::Eviction => "eviction",
        }
    }

    /// The subresource a path segment names, if any.
    pub fn from_name(name: &str) -> Option<Subresource> {
        [
            Subresource::Status,
            Subresource::Scale,
            Subresource::Binding,
            Subresource::Token,
            Subresource::Finalize,
            Subresource::Eviction,
        ]
        .into_iter()
        .find(|s| s.name() == name)
    }
}

/// A served resource type: where it is served, how it is discovered, its
/// typed check and schema, and its rules.
#[derive(Clone)]
pub struct ResourceType {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub singular: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub subresources: Vec<Subresource>,
    pub strategy: Arc<dyn Strategy>,
    /// The Kubernetes type's check and schema (`None`: no typed check, such
    /// as a custom resource without a structural schema).
    pub typed: Option<Typed>,
    /// Only `create` is served: a review answered, never stored
    /// (SubjectAccessReview, TokenReview, …).
    pub create_only: bool,
    /// Stored in another version's form ([`Conversion`]); `None`: as served.
    pub conversion: Option<Conversion>,
    /// A custom resource version's structural schema (defaults, pruning,
    /// validation, and the list and map types server-side apply merges by).
    pub structural: Option<Arc<crate::structural::Structural>>,
    /// What a custom resource version serves beyond a built-in kind (its
    /// storage version, scale paths, deprecation, selectable fields); set
    /// by [`crate::crd`], `None` for built-in kinds.
    pub custom: Option<Arc<crate::crd::CustomResource>>,
}

impl ResourceType {
    /// The kind of `k8s-openapi` type `K`: group, version, kind, plural and
    /// scope come from the type, with its typed check and schema; no rules,
    /// short names, categories or subresources until the builders add them.
    pub fn of<K>() -> ResourceType
    where
        K: k8s_openapi::Resource + DeserializeOwned + Serialize + schemars::JsonSchema,
        K::Scope: 'static,
    {
        let namespaced = std::any::TypeId::of::<K::Scope>()
            == std::any::TypeId::of::<k8s_openapi::NamespaceResourceScope>();
        ResourceType {
            group: K::GROUP.into(),
            version: K::VERSION.into(),
            kind: K::KIND.into(),
            plural: K::URL_PATH_SEGMENT.into(),
            singular: K::KIND.to_ascii_lowercase(),
            namespaced,
            short_names: vec![],
            categories: vec![],
            subresources: vec![],
            strategy: Arc::new(NoRules),
            typed: Some(Typed::of::<K>()),
            create_only: false,
            conversion: None,
            structural: None,
            custom: None,
        }
    }

    /// Stored as another version stores it (one store behind both).
    pub fn stored_as(mut self, conversion: Conversion) -> ResourceType {
        self.conversion = Some(conversion);
        self
    }

    /// With a custom resource version's structural schema.
    pub fn with_structural(mut self, s: Arc<crate::structural::Structural>) -> ResourceType {
        self.structural = Some(s);
        self
    }

    /// A stored object as this version serves it.
    pub fn served(&self, obj: Value) -> Value {
        if let Some(c) = &self.custom {
            return c.served(self, obj);
        }
        match &self.conversion {
            Some(c) => (c.from_stored)(obj),
            None => obj,
        }
    }

    /// A served object of this version as it is stored.
    pub fn to_stored(&self, obj: Value) -> Value {
        if let Some(c) = &self.custom {
            return c.to_stored(obj);
        }
        match &self.conversion {
            Some(c) => (c.to_stored)(obj),
            None => obj,
        }
    }

    /// Whether stored objects change on their way out ([`Self::served`]),
    /// so watch events are converted per watcher instead of sharing bytes.
    pub fn converts(&self) -> bool {
        self.conversion.is_some() || self.custom.is_some()
    }

    /// Serving only `create` (a review kind, never stored).
    pub fn create_only(mut self) -> ResourceType {
        self.create_only = true;
        self
    }

    /// The verbs discovery lists for the kind.
    pub fn verbs(&self) -> &'static [&'static str] {
        if self.create_only {
            &["create"]
        } else if self.group.is_empty() && self.plural == "namespaces" {
            // Kubernetes never deletes namespaces as a collection.
            &[
                "create", "delete", "get", "list", "patch", "update", "watch",
            ]
        } else {
            &[
                "create",
                "delete",
                "deletecollection",
                "get",
                "list",
                "patch",
                "update",
                "watch",
            ]
        }
    }

    /// With these rules.
    pub fn strategy(mut self, strategy: impl Strategy + 'static) -> ResourceType {
        self.strategy = Arc::new(strategy);
        self
    }

    /// With these short names (`kubectl get cm`).
    pub fn short_names(mut self, names: &[&str]) -> ResourceType {
        self.short_names = names.iter().map(|s| s.to_string()).collect();
        self
    }

    /// With these categories (`kubectl get all`).
    pub fn categories(mut self, categories: &[&str]) -> ResourceType {
        self.categories = categories.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Serving these subresources.
    pub fn subresources(mut self, subresources: &[Subresource]) -> ResourceType {
        self.subresources = subresources.to_vec();
        self
    }

    /// Whether the kind serves `sub`.
    pub fn has(&self, sub: Subresource) -> bool {
        self.subresources.contains(&sub)
    }

    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The store key prefix of this resource in one namespace (or all).
    pub fn prefix(&self, namespace: Option<&str>) -> String {
        let group = match self
            .conversion
            .as_ref()
            .map_or(&*self.group, |c| c.stored_group)
        {
            "" => "core",
            g => g,
        };
        match namespace {
            Some(ns) if self.namespaced => format!("/registry/{group}/{}/{ns}/", self.plural),
            _ => format!("/registry/{group}/{}/", self.plural),
        }
    }

    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        format!("{}{name}", self.prefix(namespace))
    }
}

impl std::fmt::Debug for ResourceType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ResourceType({}, {})", self.api_version(), self.plural)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::{apps::v1::Deployment, core::v1::Namespace};

    #[test]
    fn descriptors_come_from_the_kubernetes_type() {
        let d = ResourceType::of::<Deployment>();
        assert_eq!(
            (d.group.as_str(), d.version.as_str(), d.kind.as_str()),
            ("apps", "v1", "Deployment")
        );
        assert_eq!(
            (d.plural.as_str(), d.singular.as_str()),
            ("deployments", "deployment")
        );
        assert!(d.namespaced && d.typed.is_some());
        let ns = ResourceType::of::<Namespace>();
        assert!(!ns.namespaced);
        assert_eq!(ns.api_version(), "v1");
        assert_eq!(ns.key(None, "a"), "/registry/core/namespaces/a");
        assert_eq!(d.key(Some("n"), "a"), "/registry/apps/deployments/n/a");
    }

    #[test]
    fn status_writes_touch_only_status() {
        let old = serde_json::json!({"metadata": {"resourceVersion": "1"}, "spec": {"a": 1}, "status": {"s": 1}});
        let mut main = serde_json::json!({"metadata": {"resourceVersion": "1"}, "spec": {"a": 2}, "status": {"s": 2}});
        StatusStrategy::prepare_main_update(&mut main, &old);
        assert_eq!(
            (main["spec"]["a"].clone(), main["status"]["s"].clone()),
            (2.into(), 1.into())
        );
        let mut status = serde_json::json!({"metadata": {"resourceVersion": "7"}, "spec": {"a": 2}, "status": {"s": 2}});
        StatusStrategy::prepare_status_update(&mut status, &old);
        assert_eq!(
            (status["spec"]["a"].clone(), status["status"]["s"].clone()),
            (1.into(), 2.into())
        );
        assert_eq!(status["metadata"]["resourceVersion"], "7");
    }
}
