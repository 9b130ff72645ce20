//! NodeRestriction admission: the writes the Node authorizer lets every
//! node make, narrowed to the node's own objects. A node creates only
//! mirror pods bound to itself that reference nothing, deletes only pods
//! bound to itself, updates only the status of those, writes only its own
//! Node (its labels within [`super::labels`], never its taints) and its own
//! Lease, and asks for tokens only bound to its own pods. Refusals are 403s
//! worded as Kubernetes' plugin words them.

use std::sync::Arc;

use serde_json::Value;

use super::authorizer::NODE_LEASE_NAMESPACE;
use super::graph::Graph;
use super::refs::{RefKind, ServiceAccount, pod_refs};
use super::{MIRROR_ANNOTATION, labels, node_name};
use crate::admission::{Admit, Attributes, Operation};
use crate::error::ApiError;

pub struct NodeRestriction {
    graph: Arc<Graph>,
}

impl NodeRestriction {
    pub fn new(graph: Arc<Graph>) -> NodeRestriction {
        NodeRestriction { graph }
    }
}

/// A 403 naming the written object.
fn forbidden(a: &Attributes<'_>, reason: String) -> ApiError {
    ApiError::Forbidden {
        group: a.target.rt.group.clone(),
        resource: a.target.rt.plural.clone(),
        name: a.name.to_string(),
        reason,
    }
}

fn operation(op: Operation) -> &'static str {
    match op {
        Operation::Create => "CREATE",
        Operation::Update => "UPDATE",
        Operation::Delete => "DELETE",
    }
}

fn text<'v>(v: Option<&'v Value>, pointer: &str) -> &'v str {
    v.and_then(|v| v.pointer(pointer))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

impl Admit for NodeRestriction {
    fn admit(&self, a: &Attributes<'_>) -> Result<(), ApiError> {
        let Some(node) = node_name(a.user) else {
            return Ok(());
        };
        let rt = &a.target.rt;
        let kind = (rt.group.as_str(), rt.plural.as_str());
        let watched = matches!(
            kind,
            ("", "pods" | "nodes" | "serviceaccounts")
                | ("coordination.k8s.io", "leases")
                | ("storage.k8s.io", "csinodes")
        );
        if !watched {
            return Ok(());
        }
        if node.is_empty() {
            return Err(forbidden(
                a,
                format!("could not determine node from user {:?}", a.user.name),
            ));
        }
        let sub = a.target.subresource.map(|s| s.name()).unwrap_or_default();
        match kind {
            ("", "pods") => match sub {
                "" => self.pod(node, a),
                "status" => pod_status(node, a),
                other => Err(forbidden(
                    a,
                    format!(
                        "unexpected pod subresource {other:?}, only 'status' and 'eviction' are allowed"
                    ),
                )),
            },
            ("", "nodes") => own_node(node, a),
            ("", "serviceaccounts") if sub == "token" && a.operation == Operation::Create => {
                self.token(node, a)
            }
            ("", "serviceaccounts") => Ok(()),
            ("coordination.k8s.io", "leases") => {
                if a.target.namespace.as_deref() != Some(NODE_LEASE_NAMESPACE) {
                    return Err(forbidden(
                        a,
                        format!(
                            "can only access leases in the {NODE_LEASE_NAMESPACE:?} system namespace"
                        ),
                    ));
                }
                same_name(a, node, "node lease")
            }
            _ => same_name(a, node, "CSINode"),
        }
    }
}

/// The name of a node's own object must be the node's.
fn same_name(a: &Attributes<'_>, node: &str, what: &str) -> Result<(), ApiError> {
    if a.name == node {
        Ok(())
    } else {
        Err(forbidden(
            a,
            format!("can only access {what} with the same name as the requesting node"),
        ))
    }
}

impl NodeRestriction {
    fn pod(&self, node: &str, a: &Attributes<'_>) -> Result<(), ApiError> {
        match a.operation {
            Operation::Create => self.mirror_pod(node, a),
            Operation::Delete => {
                if text(a.old, "/spec/nodeName") == node {
                    Ok(())
                } else {
                    Err(forbidden(
                        a,
                        format!(
                            "node {node:?} can only delete pods with spec.nodeName set to itself"
                        ),
                    ))
                }
            }
            // Includes a binding, which arrives as an update of the pod.
            op => Err(forbidden(
                a,
                format!(
                    "unexpected operation {:?}, node {node:?} can only create and delete mirror pods",
                    operation(op)
                ),
            )),
        }
    }

    fn mirror_pod(&self, node: &str, a: &Attributes<'_>) -> Result<(), ApiError> {
        let pod = a.object.unwrap_or(&Value::Null);
        let mirror = pod
            .pointer("/metadata/annotations")
            .and_then(Value::as_object)
            .is_some_and(|m| m.contains_key(MIRROR_ANNOTATION));
        let refuse = |why: String| Err(forbidden(a, why));
        if !mirror {
            return refuse(format!(
                "pod does not have {MIRROR_ANNOTATION:?} annotation, node {node:?} can only create mirror pods"
            ));
        }
        if text(Some(pod), "/spec/nodeName") != node {
            return refuse(format!(
                "node {node:?} can only create pods with spec.nodeName set to itself"
            ));
        }
        self.mirror_owner(node, a, pod)?;
        let refs = pod_refs(pod, ServiceAccount::Named);
        let mentions_token = pod
            .pointer("/spec/volumes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .flat_map(|v| v.pointer("/projected/sources").and_then(Value::as_array))
            .flatten()
            .any(|s| s.get("serviceAccountToken").is_some());
        if refs.any(RefKind::ServiceAccount) || mentions_token {
            return refuse(format!(
                "node {node:?} can not create pods that reference a service account"
            ));
        }
        for (kind, what) in [
            (RefKind::Secret, "secrets"),
            (RefKind::ConfigMap, "configmaps"),
            (RefKind::PersistentVolumeClaim, "persistentvolumeclaims"),
        ] {
            if refs.any(kind) {
                return refuse(format!(
                    "node {node:?} can not create pods that reference {what}"
                ));
            }
        }
        Ok(())
    }

    /// A mirror pod's one owner, if it has one, is its node, as controller.
    fn mirror_owner(&self, node: &str, a: &Attributes<'_>, pod: &Value) -> Result<(), ApiError> {
        let owners = pod
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let refuse = |why: String| Err(forbidden(a, why));
        let owner = match owners {
            [] => return Ok(()),
            [one] => one,
            _ => {
                return refuse(format!(
                    "node {node:?} can only create pods with a single owner reference set to itself"
                ));
            }
        };
        let is_node = text(Some(owner), "/apiVersion") == "v1"
            && text(Some(owner), "/kind") == "Node"
            && text(Some(owner), "/name") == node;
        if !is_node {
            return refuse(format!(
                "node {node:?} can only create pods with an owner reference set to itself"
            ));
        }
        if owner.get("controller") != Some(&Value::Bool(true)) {
            return refuse(format!(
                "node {node:?} can only create pods with a controller owner reference set to itself"
            ));
        }
        if owner.get("blockOwnerDeletion") == Some(&Value::Bool(true)) {
            return refuse(format!(
                "node {node:?} must not set blockOwnerDeletion on an owner reference"
            ));
        }
        let uid = text(Some(owner), "/uid");
        match self.graph.node_uid(node) {
            None => Err(ApiError::NotFound {
                group: String::new(),
                resource: "nodes".into(),
                name: node.to_string(),
            }),
            Some(known) if known != uid => refuse(format!(
                "node {node} UID mismatch: expected {known} got {uid}"
            )),
            Some(_) => Ok(()),
        }
    }

    /// A token a node asks for is bound to a pod that runs on the node.
    fn token(&self, node: &str, a: &Attributes<'_>) -> Result<(), ApiError> {
        let r = a.object.and_then(|o| o.pointer("/spec/boundObjectRef"));
        let field = |f: &str| text(r, f);
        let refuse = |why: String| Err(forbidden(a, why));
        if r.is_none()
            || field("/apiVersion") != "v1"
            || field("/kind") != "Pod"
            || field("/name").is_empty()
        {
            return refuse("node requested token not bound to a pod".into());
        }
        let uid = field("/uid");
        if uid.is_empty() {
            return refuse("node requested token with a pod binding without a uid".into());
        }
        let namespace = a.target.namespace.as_deref().unwrap_or_default();
        let Some(pod) = self.graph.pod(namespace, field("/name")) else {
            return Err(ApiError::NotFound {
                group: String::new(),
                resource: "pods".into(),
                name: field("/name").to_string(),
            });
        };
        if pod.uid != uid {
            return refuse(format!(
                "the UID in the bound object reference ({uid}) does not match the UID in record. The object might have been deleted and then recreated"
            ));
        }
        if pod.node != node {
            return refuse(
                "node requested token bound to a pod scheduled on a different node".into(),
            );
        }
        Ok(())
    }
}

fn pod_status(node: &str, a: &Attributes<'_>) -> Result<(), ApiError> {
    if a.operation != Operation::Update {
        return Err(forbidden(
            a,
            format!("unexpected operation {:?}", operation(a.operation)),
        ));
    }
    if text(a.old, "/spec/nodeName") != node {
        return Err(forbidden(
            a,
            format!(
                "node {node:?} can only update pod status for pods with spec.nodeName set to itself"
            ),
        ));
    }
    let labels = |v: Option<&Value>| v.and_then(|v| v.pointer("/metadata/labels")).cloned();
    if labels(a.object) != labels(a.old) {
        return Err(forbidden(
            a,
            format!("node {node:?} cannot update labels through pod status"),
        ));
    }
    Ok(())
}

/// A node writes only its own Node; it registers and relabels itself only
/// within the allowed labels, and never changes its taints.
fn own_node(node: &str, a: &Attributes<'_>) -> Result<(), ApiError> {
    if a.name != node {
        return Err(forbidden(
            a,
            format!("node {node:?} is not allowed to modify node {:?}", a.name),
        ));
    }
    let labels_of = |v: Option<&Value>| {
        v.and_then(|v| v.pointer("/metadata/labels"))
            .and_then(Value::as_object)
            .cloned()
    };
    match a.operation {
        Operation::Create => {
            let refused = labels::forbidden(labels_of(a.object).as_ref(), None);
            if !refused.is_empty() {
                return Err(forbidden(
                    a,
                    format!(
                        "node {node:?} is not allowed to set the following labels: {}",
                        refused.join(", ")
                    ),
                ));
            }
        }
        Operation::Update => {
            let taints = |v: Option<&Value>| {
                v.and_then(|v| v.pointer("/spec/taints"))
                    .filter(|t| t.as_array().is_some_and(|t| !t.is_empty()))
                    .cloned()
            };
            if taints(a.object) != taints(a.old) {
                return Err(forbidden(
                    a,
                    format!("node {node:?} is not allowed to modify taints"),
                ));
            }
            let refused =
                labels::forbidden(labels_of(a.object).as_ref(), labels_of(a.old).as_ref());
            if !refused.is_empty() {
                return Err(forbidden(
                    a,
                    format!("is not allowed to modify labels: {}", refused.join(", ")),
                ));
            }
        }
        Operation::Delete => {}
    }
    Ok(())
}
