//! The runtime kind table: the kinds served now, looked up by group, version
//! and plural. Built-in kinds fill it at start; custom resources will be
//! added and removed while the server runs, so it is a shared value owned by
//! the registry, not a static.

use std::sync::{Arc, PoisonError, RwLock};

use super::ResourceType;

/// A change the table refuses.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KindsError {
    #[error("{plural}.{group}/{version} is already served")]
    Duplicate {
        group: String,
        version: String,
        plural: String,
    },
}

/// The served kinds. Clones share one table.
#[derive(Clone, Default)]
pub struct Kinds {
    types: Arc<RwLock<Vec<Arc<ResourceType>>>>,
}

impl Kinds {
    /// The kinds built into the server, in discovery order.
    pub fn builtin() -> Kinds {
        let kinds = Kinds::default();
        for t in super::builtin() {
            kinds
                .add(t)
                .expect("built-in kinds have distinct group/version/plural");
        }
        kinds
    }

    /// The kind served at `group`/`version`/`plural`.
    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceType>> {
        self.read()
            .iter()
            .find(|t| t.group == group && t.version == version && t.plural == plural)
            .cloned()
    }

    /// Every served kind, in the order they were added.
    pub fn all(&self) -> Vec<Arc<ResourceType>> {
        self.read().clone()
    }

    /// Serve `t`; refused when its group/version/plural is served already.
    pub fn add(&self, t: ResourceType) -> Result<(), KindsError> {
        let mut types = self.types.write().unwrap_or_else(PoisonError::into_inner);
        if types
            .iter()
            .any(|o| o.group == t.group && o.version == t.version && o.plural == t.plural)
        {
            return Err(KindsError::Duplicate {
                group: t.group,
                version: t.version,
                plural: t.plural,
            });
        }
        types.push(Arc::new(t));
        Ok(())
    }

    /// Stop serving `group`/`version`/`plural`; whether it was served.
    pub fn remove(&self, group: &str, version: &str, plural: &str) -> bool {
        let mut types = self.types.write().unwrap_or_else(PoisonError::into_inner);
        let before = types.len();
        types.retain(|t| !(t.group == group && t.version == version && t.plural == plural));
        types.len() != before
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<Arc<ResourceType>>> {
        // A panic while holding the lock cannot leave the Vec half-changed.
        self.types.read().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::Job;

    #[test]
    fn kinds_are_added_once_and_removed() {
        let kinds = Kinds::default();
        assert!(kinds.find("batch", "v1", "jobs").is_none());
        kinds.add(ResourceType::of::<Job>()).unwrap();
        let shared = kinds.clone();
        assert_eq!(shared.find("batch", "v1", "jobs").unwrap().kind, "Job");
        assert!(matches!(
            kinds.add(ResourceType::of::<Job>()),
            Err(KindsError::Duplicate { .. })
        ));
        assert!(shared.remove("batch", "v1", "jobs"));
        assert!(!kinds.remove("batch", "v1", "jobs"));
        assert!(kinds.all().is_empty());
    }

    /// Field validation relies on every built-in kind having a Kubernetes type.
    #[test]
    fn every_served_kind_has_a_typed_check() {
        for t in Kinds::builtin().all() {
            assert!(
                t.typed.is_some(),
                "{}/{} has no typed check",
                t.group,
                t.kind
            );
        }
    }
}
