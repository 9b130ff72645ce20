//! What server-side apply reads from a custom resource's schema
//! ([`crate::fieldmanager::typed`]): whether an object is a struct or a
//! map and whether it merges field by field, how a list merges
//! (`x-kubernetes-list-type`, `x-kubernetes-list-map-keys`; lists are atomic
//! unless they say otherwise, as in Kubernetes), and the schema of each
//! child.

use super::{Additional, Node};
use crate::schema::{ListType, MapType};

/// How apply sees an object under a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectShape {
    /// Named fields (`properties`): each field merges on its own.
    Struct,
    /// Arbitrary keys (`additionalProperties`, or unknown fields kept by
    /// `x-kubernetes-preserve-unknown-fields`): each key is an entry.
    Map,
}

impl Node {
    /// `x-kubernetes-list-type` (absent: atomic).
    pub fn list_type(&self) -> ListType {
        match self.list_type.as_deref() {
            Some("set") => ListType::Set,
            Some("map") => ListType::Map,
            _ => ListType::Atomic,
        }
    }

    /// `x-kubernetes-list-map-keys`.
    pub fn list_map_keys(&self) -> &[String] {
        &self.list_map_keys
    }

    /// `x-kubernetes-map-type` (absent: granular).
    pub fn map_type(&self) -> MapType {
        match self.map_type.as_deref() {
            Some("atomic") => MapType::Atomic,
            _ => MapType::Granular,
        }
    }

    /// Whether the node is a resource whose `metadata` is ObjectMeta: the
    /// top of a custom resource, or an embedded resource.
    pub fn is_resource(&self) -> bool {
        self.resource_root || self.embedded
    }

    /// How an object value here merges.
    pub fn object_shape(&self) -> ObjectShape {
        if !self.properties.is_empty() || self.is_resource() {
            return ObjectShape::Struct;
        }
        match &self.additional {
            Some(_) => ObjectShape::Map,
            None if self.preserve_unknown => ObjectShape::Map,
            None => ObjectShape::Struct,
        }
    }

    /// The schema of field (or map key) `name`; `None`: no schema (an
    /// unknown field kept by `x-kubernetes-preserve-unknown-fields`).
    pub fn child(&self, name: &str) -> Option<&Node> {
        self.properties
            .get(name)
            .or_else(|| self.additional.as_ref().and_then(Additional::schema))
    }

    /// The schema of list items.
    pub fn item(&self) -> Option<&Node> {
        self.items.as_deref()
    }

    /// The item schema's `default` of list-map key `key`, which an applied
    /// item without the key is defaulted to.
    pub fn key_default(&self, key: &str) -> Option<&serde_json::Value> {
        self.items.as_deref()?.properties.get(key)?.default.as_ref()
    }
}
