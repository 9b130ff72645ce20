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

    /// Stop serving the kinds `remove` names (group, version, plural) and
    /// serve `add` instead, at once, so no request in between finds
    /// neither (a CRD changed). Refused, changing nothing, when one of `add`
    /// is served already and not removed.
    pub fn replace(
        &self,
        remove: &[(String, String, String)],
        add: Vec<ResourceType>,
    ) -> Result<(), KindsError> {
        let mut types = self.types.write().unwrap_or_else(PoisonError::into_inner);
        let removed = |t: &ResourceType| {
            remove
                .iter()
                .any(|(g, v, p)| t.group == *g && t.version == *v && t.plural == *p)
        };
        for (i, t) in add.iter().enumerate() {
            let same = |o: &ResourceType| {
                o.group == t.group && o.version == t.version && o.plural == t.plural
            };
            if types.iter().any(|o| same(o) && !removed(o)) || add[..i].iter().any(same) {
                return Err(KindsError::Duplicate {
                    group: t.group.clone(),
                    version: t.version.clone(),
                    plural: t.plural.clone(),
                });
            }
        }
        // Appended in the order given: discovery prefers a group's first
        // version, so the caller's order (Kubernetes' version priority) wins.
        let mut kept: Vec<Arc<ResourceType>> = types.drain(..).filter(|t| !removed(t)).collect();
        kept.extend(add.into_iter().map(Arc::new));
        *types = kept;
        Ok(())
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

    #[test]
    fn replace_swaps_kinds_at_once_and_refuses_duplicates() {
        use k8s_openapi::api::batch::v1::CronJob;
        let kinds = Kinds::default();
        kinds.add(ResourceType::of::<Job>()).unwrap();
        kinds.add(ResourceType::of::<CronJob>()).unwrap();
        let key = |p: &str| ("batch".to_string(), "v1".to_string(), p.to_string());
        let mut job = ResourceType::of::<Job>();
        job.short_names = vec!["j".into()];
        kinds.replace(&[key("jobs")], vec![job]).unwrap();
        let all = kinds.all();
        assert_eq!(all[0].plural, "cronjobs");
        assert_eq!(all[1].short_names, ["j"], "replaced");
        // Adding what is served, and not removed, changes nothing.
        assert!(
            kinds
                .replace(&[key("jobs")], vec![ResourceType::of::<CronJob>()])
                .is_err()
        );
        assert_eq!(kinds.all().len(), 2);
        kinds
            .replace(&[key("jobs"), key("cronjobs")], vec![])
            .unwrap();
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
