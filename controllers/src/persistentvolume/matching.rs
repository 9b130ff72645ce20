//! Which persistent volume a claim may bind, as Kubernetes' volume binder
//! decides it (shared by the PV binder and the scheduler's volume topology
//! check): a volume already meant for the claim (its claimRef names it)
//! wins; otherwise the smallest Available, unclaimed volume of the claim's
//! class and volume mode whose capacity covers the request, whose access
//! modes include the claim's, whose labels satisfy the claim's selector
//! and, when a node is given, whose node affinity admits that node.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;

use crate::scheduler::labels::{self, Labels};
use crate::scheduler::quantity::parse_milli;

/// The annotation a default StorageClass carries.
pub const DEFAULT_CLASS_ANNOTATION: &str = "storageclass.kubernetes.io/is-default-class";

/// A claim's namespace and name.
pub type ClaimKey = (String, String);

/// The claim's storage class: its own, "" for none.
pub fn claim_class(claim: &PersistentVolumeClaim) -> String {
    claim
        .spec
        .as_ref()
        .and_then(|s| s.storage_class_name.clone())
        .unwrap_or_default()
}

/// The volume's storage class, "" for none.
pub fn volume_class(pv: &PersistentVolume) -> String {
    pv.spec
        .as_ref()
        .and_then(|s| s.storage_class_name.clone())
        .unwrap_or_default()
}

/// Whether `class` binds at the first consumer (WaitForFirstConsumer).
pub fn waits_for_consumer(class: Option<&StorageClass>) -> bool {
    class.and_then(|c| c.volume_binding_mode.as_deref()) == Some("WaitForFirstConsumer")
}

/// The name of the default StorageClass among `classes`, if one is marked.
pub fn default_class<'a>(classes: impl Iterator<Item = &'a StorageClass>) -> Option<String> {
    classes
        .filter(|c| {
            c.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(DEFAULT_CLASS_ANNOTATION))
                .is_some_and(|v| v == "true")
        })
        .filter_map(|c| c.metadata.name.clone())
        .max()
}

fn storage(
    map: Option<
        &std::collections::BTreeMap<
            String,
            k8s_openapi::apimachinery::pkg::api::resource::Quantity,
        >,
    >,
) -> i128 {
    map.and_then(|m| m.get("storage"))
        .and_then(|q| parse_milli(&q.0))
        .unwrap_or(0)
}

/// The volume's capacity in milli-bytes.
pub fn capacity(pv: &PersistentVolume) -> i128 {
    storage(pv.spec.as_ref().and_then(|s| s.capacity.as_ref()))
}

/// The claim's storage request in milli-bytes.
pub fn request(claim: &PersistentVolumeClaim) -> i128 {
    storage(
        claim
            .spec
            .as_ref()
            .and_then(|s| s.resources.as_ref())
            .and_then(|r| r.requests.as_ref()),
    )
}

/// Whether the volume's claimRef names this claim (by uid when it has one).
pub fn is_for_claim(pv: &PersistentVolume, claim: &PersistentVolumeClaim) -> bool {
    let Some(r) = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
        return false;
    };
    r.namespace == claim.metadata.namespace
        && r.name == claim.metadata.name
        && r.uid
            .as_deref()
            .filter(|u| !u.is_empty())
            .is_none_or(|u| Some(u) == claim.metadata.uid.as_deref())
}

/// Whether the volume's node affinity admits `node` (no affinity: any node).
pub fn admits_node(pv: &PersistentVolume, node: &Node) -> bool {
    let Some(sel) = pv
        .spec
        .as_ref()
        .and_then(|s| s.node_affinity.as_ref())
        .and_then(|a| a.required.as_ref())
    else {
        return true;
    };
    let empty = Labels::new();
    labels::node_selector_matches(
        sel,
        node.metadata.name.as_deref().unwrap_or_default(),
        node.metadata.labels.as_ref().unwrap_or(&empty),
    )
}

/// Whether an unclaimed volume could satisfy the claim, node aside.
pub fn fits(pv: &PersistentVolume, claim: &PersistentVolumeClaim) -> bool {
    let (Some(vs), Some(cs)) = (pv.spec.as_ref(), claim.spec.as_ref()) else {
        return false;
    };
    if pv.metadata.deletion_timestamp.is_some()
        || vs.claim_ref.is_some()
        || pv.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Available")
    {
        return false;
    }
    let mode = |m: &Option<String>| m.clone().unwrap_or_else(|| "Filesystem".into());
    if mode(&vs.volume_mode) != mode(&cs.volume_mode) || volume_class(pv) != claim_class(claim) {
        return false;
    }
    if let Some(sel) = &cs.selector {
        let empty = Labels::new();
        if !labels::selector_matches(sel, pv.metadata.labels.as_ref().unwrap_or(&empty)) {
            return false;
        }
    }
    let have = vs.access_modes.as_deref().unwrap_or_default();
    if !cs.access_modes.iter().flatten().all(|m| have.contains(m)) {
        return false;
    }
    capacity(pv) >= request(claim)
}

/// The volume the claim should bind among `volumes` (on `node` when
/// given), skipping those `taken` says are spoken for.
pub fn find<'a>(
    claim: &PersistentVolumeClaim,
    volumes: impl Iterator<Item = &'a Arc<PersistentVolume>>,
    node: Option<&Node>,
    taken: &dyn Fn(&PersistentVolume) -> bool,
) -> Option<Arc<PersistentVolume>> {
    let mut best: Option<&Arc<PersistentVolume>> = None;
    for pv in volumes {
        if node.is_some_and(|n| !admits_node(pv, n)) {
            continue;
        }
        if is_for_claim(pv, claim) {
            return Some(pv.clone());
        }
        if taken(pv) || !fits(pv, claim) {
            continue;
        }
        if best.is_none_or(|b| (capacity(pv), &pv.metadata.name) < (capacity(b), &b.metadata.name))
        {
            best = Some(pv);
        }
    }
    best.cloned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, ObjectReference,
        PersistentVolumeClaimSpec, PersistentVolumeSpec, PersistentVolumeStatus,
        VolumeNodeAffinity, VolumeResourceRequirements,
    };
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

    pub fn pv(name: &str, size: &str, class: &str, node: Option<&str>) -> Arc<PersistentVolume> {
        Arc::new(PersistentVolume {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some([("size".to_string(), size.to_string())].into()),
                ..Default::default()
            },
            spec: Some(PersistentVolumeSpec {
                capacity: Some([("storage".to_string(), Quantity(size.into()))].into()),
                access_modes: Some(vec!["ReadWriteOnce".into()]),
                storage_class_name: Some(class.into()),
                node_affinity: node.map(|n| VolumeNodeAffinity {
                    required: Some(NodeSelector {
                        node_selector_terms: vec![NodeSelectorTerm {
                            match_expressions: Some(vec![NodeSelectorRequirement {
                                key: "kubernetes.io/hostname".into(),
                                operator: "In".into(),
                                values: Some(vec![n.into()]),
                            }]),
                            match_fields: None,
                        }],
                    }),
                }),
                ..Default::default()
            }),
            status: Some(PersistentVolumeStatus {
                phase: Some("Available".into()),
                ..Default::default()
            }),
        })
    }

    pub fn pvc(name: &str, size: &str, class: &str) -> PersistentVolumeClaim {
        PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                uid: Some(format!("uid-{name}")),
                ..Default::default()
            },
            spec: Some(PersistentVolumeClaimSpec {
                access_modes: Some(vec!["ReadWriteOnce".into()]),
                storage_class_name: Some(class.into()),
                resources: Some(VolumeResourceRequirements {
                    requests: Some([("storage".to_string(), Quantity(size.into()))].into()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn node(name: &str) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some([("kubernetes.io/hostname".to_string(), name.to_string())].into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn name(pv: Option<Arc<PersistentVolume>>) -> Option<String> {
        pv.and_then(|p| p.metadata.name.clone())
    }

    #[test]
    fn the_smallest_fitting_volume_wins() {
        let vols = [
            pv("big", "10Gi", "local", None),
            pv("small", "1Gi", "local", None),
            pv("mid", "5Gi", "local", None),
            pv("other-class", "2Gi", "fast", None),
        ];
        let none = |_: &PersistentVolume| false;
        let claim = pvc("c", "2Gi", "local");
        assert_eq!(
            name(find(&claim, vols.iter(), None, &none)),
            Some("mid".into())
        );
        assert_eq!(
            name(find(&pvc("c", "1Gi", "local"), vols.iter(), None, &none)),
            Some("small".into())
        );
        assert_eq!(
            name(find(&pvc("c", "20Gi", "local"), vols.iter(), None, &none)),
            None
        );
        assert_eq!(
            name(find(&pvc("c", "1Gi", "fast"), vols.iter(), None, &none)),
            Some("other-class".into())
        );
        let taken = |p: &PersistentVolume| p.metadata.name.as_deref() == Some("mid");
        assert_eq!(
            name(find(&claim, vols.iter(), None, &taken)),
            Some("big".into())
        );
    }

    #[test]
    fn modes_selector_phase_and_claims_are_respected() {
        let claim = pvc("c", "1Gi", "");
        let mut rwx = (*pv("rwx", "1Gi", "", None)).clone();
        rwx.spec.as_mut().unwrap().access_modes = Some(vec!["ReadWriteMany".into()]);
        assert!(!fits(&rwx, &claim));
        let mut block = (*pv("block", "1Gi", "", None)).clone();
        block.spec.as_mut().unwrap().volume_mode = Some("Block".into());
        assert!(!fits(&block, &claim));
        let mut released = (*pv("rel", "1Gi", "", None)).clone();
        released.status.as_mut().unwrap().phase = Some("Released".into());
        assert!(!fits(&released, &claim));
        let mut selective = claim.clone();
        selective.spec.as_mut().unwrap().selector = Some(LabelSelector {
            match_labels: Some([("size".to_string(), "2Gi".to_string())].into()),
            ..Default::default()
        });
        assert!(!fits(&pv("p", "1Gi", "", None), &selective));
        assert!(fits(&pv("p", "2Gi", "", None), &selective));
        // A volume whose claimRef names the claim wins even when Bound-phase.
        let mut mine = (*pv("mine", "1Gi", "", None)).clone();
        mine.spec.as_mut().unwrap().claim_ref = Some(ObjectReference {
            namespace: Some("ns".into()),
            name: Some("c".into()),
            uid: Some("uid-c".into()),
            ..Default::default()
        });
        mine.status.as_mut().unwrap().phase = Some("Bound".into());
        assert!(is_for_claim(&mine, &claim));
        assert!(!fits(&mine, &claim));
        let vols = [pv("free", "1Gi", "", None), Arc::new(mine.clone())];
        assert_eq!(
            name(find(&claim, vols.iter(), None, &|_| false)),
            Some("mine".into())
        );
        // Another claim of that name (another uid) does not own it.
        let mut other = claim.clone();
        other.metadata.uid = Some("uid-other".into());
        assert!(!is_for_claim(&mine, &other));
    }

    #[test]
    fn node_affinity_limits_local_volumes() {
        let vols = [
            pv("on-a", "1Gi", "local", Some("a")),
            pv("on-b", "2Gi", "local", Some("b")),
        ];
        let claim = pvc("c", "1Gi", "local");
        let none = |_: &PersistentVolume| false;
        assert_eq!(
            name(find(&claim, vols.iter(), Some(&node("b")), &none)),
            Some("on-b".into())
        );
        assert_eq!(
            name(find(&claim, vols.iter(), Some(&node("c")), &none)),
            None
        );
        assert_eq!(
            name(find(&claim, vols.iter(), None, &none)),
            Some("on-a".into())
        );
    }
}
