//! The static part of the Node authorizer: what every node may do whatever
//! pods it runs, as Kubernetes' `system:node` rules grant it. Resources the
//! graph decides (secrets, configmaps, claims, volumes, service account
//! tokens) and those checked by name (leases, CSINodes) are not here.

use crate::authz::Attributes;

/// One rule: these verbs on these `resource[/subresource]`s of one group.
struct Rule {
    group: &'static str,
    resources: &'static [&'static str],
    verbs: &'static [&'static str],
}

const READ: &[&str] = &["get", "list", "watch"];

const RULES: &[Rule] = &[
    // Checking a client's credentials or access: non-mutating creates.
    Rule {
        group: "authentication.k8s.io",
        resources: &["tokenreviews"],
        verbs: &["create"],
    },
    Rule {
        group: "authorization.k8s.io",
        resources: &["subjectaccessreviews", "localsubjectaccessreviews"],
        verbs: &["create"],
    },
    // Service environment variables of the pods it runs.
    Rule {
        group: "",
        resources: &["services"],
        verbs: READ,
    },
    // Registering and reporting; NodeRestriction limits a node to its own.
    Rule {
        group: "",
        resources: &["nodes"],
        verbs: &["create", "get", "list", "watch", "update", "patch"],
    },
    Rule {
        group: "",
        resources: &["nodes/status"],
        verbs: &["update", "patch"],
    },
    Rule {
        group: "",
        resources: &["events"],
        verbs: &["create", "update", "patch"],
    },
    Rule {
        group: "events.k8s.io",
        resources: &["events"],
        verbs: &["create", "update", "patch"],
    },
    Rule {
        group: "",
        resources: &["pods"],
        verbs: READ,
    },
    // Mirror pods, and the status of the pods it runs: NodeRestriction
    // limits both to pods bound to the node.
    Rule {
        group: "",
        resources: &["pods"],
        verbs: &["create", "delete"],
    },
    Rule {
        group: "",
        resources: &["pods/status"],
        verbs: &["update", "patch"],
    },
    Rule {
        group: "",
        resources: &["pods/eviction"],
        verbs: &["create"],
    },
    Rule {
        group: "",
        resources: &["endpoints"],
        verbs: &["get"],
    },
    // Rotating its own client certificate.
    Rule {
        group: "certificates.k8s.io",
        resources: &["certificatesigningrequests"],
        verbs: &["create", "get", "list", "watch"],
    },
    Rule {
        group: "storage.k8s.io",
        resources: &["volumeattachments"],
        verbs: &["get"],
    },
    Rule {
        group: "storage.k8s.io",
        resources: &["csidrivers"],
        verbs: READ,
    },
    Rule {
        group: "node.k8s.io",
        resources: &["runtimeclasses"],
        verbs: READ,
    },
];

/// Whether a static rule allows `a`.
pub fn allows(a: &Attributes) -> bool {
    if !a.resource_request {
        return false;
    }
    let resource = if a.subresource.is_empty() {
        a.resource.clone()
    } else {
        format!("{}/{}", a.resource, a.subresource)
    };
    RULES.iter().any(|r| {
        r.group == a.api_group
            && r.resources.contains(&resource.as_str())
            && r.verbs.contains(&a.verb.as_str())
    })
}
