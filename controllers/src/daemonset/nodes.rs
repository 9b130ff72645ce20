//! Which nodes a DaemonSet's pod belongs on, as Kubernetes'
//! `NodeShouldRunDaemonPod` decides: the template's nodeSelector and
//! required node affinity, and the node's taints against the template's
//! tolerations plus those Kubernetes adds to every daemon pod. A
//! `NoSchedule` taint keeps new pods off but leaves running ones;
//! a `NoExecute` taint (or a selector that stopped matching) removes them.
//! Pure functions of the Node and the pod spec.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, PodSpec,
    Taint, Toleration,
};

/// The two answers: place a new pod there; keep a running pod there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fit {
    pub should_run: bool,
    pub should_continue: bool,
}

/// The tolerations Kubernetes adds to daemon pods, so they run where
/// ordinary pods may not (a node not ready, under pressure, cordoned).
pub fn daemon_tolerations(host_network: bool) -> Vec<Toleration> {
    let t = |key: &str, effect: &str| Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some(effect.into()),
        ..Default::default()
    };
    let mut out = vec![
        t("node.kubernetes.io/not-ready", "NoExecute"),
        t("node.kubernetes.io/unreachable", "NoExecute"),
        t("node.kubernetes.io/disk-pressure", "NoSchedule"),
        t("node.kubernetes.io/memory-pressure", "NoSchedule"),
        t("node.kubernetes.io/pid-pressure", "NoSchedule"),
        t("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if host_network {
        out.push(t("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    out
}

/// `spec` with the daemon tolerations it lacks added.
pub fn add_daemon_tolerations(spec: &mut PodSpec) {
    let host_network = spec.host_network == Some(true);
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    for t in daemon_tolerations(host_network) {
        let present = tolerations
            .iter()
            .any(|have| have.key == t.key && have.effect == t.effect);
        if !present {
            tolerations.push(t);
        }
    }
}

/// Whether a daemon pod with `spec` should run on `node`.
pub fn fit(node: &Node, spec: &PodSpec) -> Fit {
    let no = Fit {
        should_run: false,
        should_continue: false,
    };
    let labels = node.metadata.labels.clone().unwrap_or_default();
    let name = node.metadata.name.as_deref().unwrap_or_default();
    let selector_ok = spec
        .node_selector
        .as_ref()
        .is_none_or(|sel| sel.iter().all(|(k, v)| labels.get(k) == Some(v)));
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| {
            na.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    let affinity_ok = required.is_none_or(|sel| selector_matches(sel, &labels, name));
    if !selector_ok || !affinity_ok {
        return no;
    }
    let mut tolerations = spec.tolerations.clone().unwrap_or_default();
    tolerations.extend(daemon_tolerations(spec.host_network == Some(true)));
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default();
    let untolerated = |effect: &str| {
        taints
            .iter()
            .filter(|t| t.effect == effect)
            .any(|t| !tolerations.iter().any(|tol| tolerates(tol, t)))
    };
    let no_execute = untolerated("NoExecute");
    let no_schedule = untolerated("NoSchedule");
    Fit {
        should_run: !no_execute && !no_schedule,
        should_continue: !no_execute,
    }
}

/// Whether toleration `tol` tolerates `taint` (Kubernetes' `ToleratesTaint`).
pub fn tolerates(tol: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = tol.effect.as_deref().filter(|e| !e.is_empty())
        && effect != taint.effect
    {
        return false;
    }
    let key = tol.key.as_deref().unwrap_or_default();
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match tol.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => {
            !key.is_empty()
                && tol.value.as_deref().unwrap_or_default()
                    == taint.value.as_deref().unwrap_or_default()
        }
        _ => false,
    }
}

/// A required node selector: any term matches (an empty term matches nothing).
pub fn selector_matches(sel: &NodeSelector, labels: &BTreeMap<String, String>, name: &str) -> bool {
    sel.node_selector_terms
        .iter()
        .any(|term| term_matches(term, labels, name))
}

fn term_matches(term: &NodeSelectorTerm, labels: &BTreeMap<String, String>, name: &str) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    exprs
        .iter()
        .all(|r| requirement_matches(r, labels.get(&r.key).map(String::as_str)))
        && fields.iter().all(|r| {
            let value = (r.key == "metadata.name").then_some(name);
            r.key == "metadata.name" && requirement_matches(r, value)
        })
}

fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    let number = |s: &str| s.parse::<i64>().ok();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), Some(bound)) = (
                value.and_then(number),
                values.first().and_then(|b| number(b)),
            ) else {
                return false;
            };
            if r.operator == "Gt" {
                v > bound
            } else {
                v < bound
            }
        }
        _ => false,
    }
}

/// The node a daemon pod is meant for: its `nodeName` once bound, else the
/// `metadata.name` its required node affinity pins it to.
pub fn target_node(spec: &PodSpec) -> Option<String> {
    if let Some(n) = spec.node_name.as_ref().filter(|n| !n.is_empty()) {
        return Some(n.clone());
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms.iter().find_map(|t| {
        t.match_fields.as_deref()?.iter().find_map(|r| {
            let values = r.values.as_deref()?;
            (r.key == "metadata.name" && r.operator == "In" && values.len() == 1)
                .then(|| values[0].clone())
        })
    })
}

/// Pin `spec` to `node` as Kubernetes does since 1.12: every term of the
/// required node affinity gets (in place of any `metadata.name` field
/// requirement) `matchFields metadata.name In [node]`; the scheduler then
/// binds the pod there.
pub fn pin_to_node(spec: &mut PodSpec, node: &str) {
    let pin = NodeSelectorRequirement {
        key: "metadata.name".into(),
        operator: "In".into(),
        values: Some(vec![node.into()]),
    };
    let affinity = spec.affinity.get_or_insert_with(Affinity::default);
    let na = affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    let required = na
        .required_during_scheduling_ignored_during_execution
        .get_or_insert_with(NodeSelector::default);
    if required.node_selector_terms.is_empty() {
        required
            .node_selector_terms
            .push(NodeSelectorTerm::default());
    }
    for term in &mut required.node_selector_terms {
        let mut fields: Vec<NodeSelectorRequirement> = term
            .match_fields
            .take()
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.key != "metadata.name")
            .collect();
        fields.push(pin.clone());
        term.match_fields = Some(fields);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::NodeSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn node(name: &str, labels: &[(&str, &str)], taints: &[(&str, &str, &str)]) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                taints: Some(
                    taints
                        .iter()
                        .map(|(k, v, e)| Taint {
                            key: k.to_string(),
                            value: (!v.is_empty()).then(|| v.to_string()),
                            effect: e.to_string(),
                            time_added: None,
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn req(key: &str, op: &str, values: &[&str]) -> NodeSelectorRequirement {
        NodeSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: (!values.is_empty()).then(|| values.iter().map(|v| v.to_string()).collect()),
        }
    }

    fn with_affinity(terms: Vec<NodeSelectorTerm>) -> PodSpec {
        PodSpec {
            affinity: Some(Affinity {
                node_affinity: Some(NodeAffinity {
                    required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                        node_selector_terms: terms,
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn fits(n: &Node, s: &PodSpec) -> (bool, bool) {
        let f = fit(n, s);
        (f.should_run, f.should_continue)
    }

    #[test]
    fn node_selectors_and_affinity_choose_the_nodes() {
        let ssd = node("a", &[("disk", "ssd"), ("cores", "8")], &[]);
        let hdd = node("b", &[("disk", "hdd"), ("cores", "2")], &[]);
        let mut spec = PodSpec::default();
        assert_eq!(fits(&ssd, &spec), (true, true));
        spec.node_selector = Some([("disk".to_string(), "ssd".to_string())].into());
        assert_eq!(fits(&ssd, &spec), (true, true));
        assert_eq!(fits(&hdd, &spec), (false, false));

        for (term, a, b) in [
            (vec![req("disk", "In", &["ssd", "nvme"])], true, false),
            (vec![req("disk", "NotIn", &["ssd"])], false, true),
            (vec![req("gpu", "DoesNotExist", &[])], true, true),
            (vec![req("disk", "Exists", &[])], true, true),
            (vec![req("cores", "Gt", &["4"])], true, false),
            (vec![req("cores", "Lt", &["4"])], false, true),
            (vec![req("cores", "Gt", &["x"])], false, false),
            (
                vec![req("disk", "Exists", &[]), req("cores", "Gt", &["4"])],
                true,
                false,
            ),
        ] {
            let spec = with_affinity(vec![NodeSelectorTerm {
                match_expressions: Some(term.clone()),
                match_fields: None,
            }]);
            assert_eq!(
                (fit(&ssd, &spec).should_run, fit(&hdd, &spec).should_run),
                (a, b),
                "{term:?}"
            );
        }
        // Terms are ORed; matchFields reads the node's name.
        let spec = with_affinity(vec![
            NodeSelectorTerm {
                match_expressions: None,
                match_fields: Some(vec![req("metadata.name", "In", &["b"])]),
            },
            NodeSelectorTerm {
                match_expressions: Some(vec![req("disk", "In", &["nvme"])]),
                match_fields: None,
            },
        ]);
        assert_eq!(
            (fit(&ssd, &spec).should_run, fit(&hdd, &spec).should_run),
            (false, true)
        );
        // An empty term matches nothing.
        let spec = with_affinity(vec![NodeSelectorTerm::default()]);
        assert_eq!(fits(&ssd, &spec), (false, false));
    }

    #[test]
    fn taints_keep_new_pods_off_and_no_execute_removes_running_ones() {
        let spec = PodSpec::default();
        let cordoned = node(
            "a",
            &[],
            &[("node.kubernetes.io/unschedulable", "", "NoSchedule")],
        );
        let not_ready = node(
            "a",
            &[],
            &[("node.kubernetes.io/not-ready", "", "NoExecute")],
        );
        let pressure = node(
            "a",
            &[],
            &[("node.kubernetes.io/disk-pressure", "", "NoSchedule")],
        );
        // Daemon pods tolerate these, as in Kubernetes.
        for n in [&cordoned, &not_ready, &pressure] {
            assert_eq!(fits(n, &spec), (true, true));
        }
        let dedicated = node("a", &[], &[("dedicated", "gpu", "NoSchedule")]);
        assert_eq!(fits(&dedicated, &spec), (false, true));
        let evicting = node("a", &[], &[("dedicated", "gpu", "NoExecute")]);
        assert_eq!(fits(&evicting, &spec), (false, false));
        let soft = node("a", &[], &[("dedicated", "gpu", "PreferNoSchedule")]);
        assert_eq!(fits(&soft, &spec), (true, true));
        let net = node(
            "a",
            &[],
            &[("node.kubernetes.io/network-unavailable", "", "NoSchedule")],
        );
        assert_eq!(fits(&net, &spec), (false, true));
        let host = PodSpec {
            host_network: Some(true),
            ..Default::default()
        };
        assert_eq!(fits(&net, &host), (true, true));

        let tol =
            |key: Option<&str>, op: &str, value: Option<&str>, effect: Option<&str>| PodSpec {
                tolerations: Some(vec![Toleration {
                    key: key.map(Into::into),
                    operator: Some(op.into()),
                    value: value.map(Into::into),
                    effect: effect.map(Into::into),
                    toleration_seconds: None,
                }]),
                ..Default::default()
            };
        for (spec, ok) in [
            (
                tol(Some("dedicated"), "Equal", Some("gpu"), Some("NoExecute")),
                true,
            ),
            (
                tol(Some("dedicated"), "Equal", Some("cpu"), Some("NoExecute")),
                false,
            ),
            (tol(Some("dedicated"), "Exists", None, None), true),
            (tol(None, "Exists", None, None), true),
            (tol(None, "Exists", None, Some("NoSchedule")), false),
            (tol(Some("other"), "Exists", None, None), false),
        ] {
            assert_eq!(
                fit(&evicting, &spec).should_continue,
                ok,
                "{:?}",
                spec.tolerations
            );
        }
    }

    #[test]
    fn daemon_pods_are_pinned_by_node_affinity() {
        let mut spec = with_affinity(vec![
            NodeSelectorTerm {
                match_expressions: Some(vec![req("disk", "In", &["ssd"])]),
                match_fields: Some(vec![req("metadata.name", "In", &["old"])]),
            },
            NodeSelectorTerm {
                match_expressions: Some(vec![req("zone", "Exists", &[])]),
                match_fields: None,
            },
        ]);
        pin_to_node(&mut spec, "n1");
        let terms = &spec
            .affinity
            .as_ref()
            .unwrap()
            .node_affinity
            .as_ref()
            .unwrap()
            .required_during_scheduling_ignored_during_execution
            .as_ref()
            .unwrap()
            .node_selector_terms;
        assert_eq!(terms.len(), 2);
        for t in terms {
            assert_eq!(
                t.match_fields.as_deref(),
                Some(&[req("metadata.name", "In", &["n1"])][..])
            );
        }
        assert_eq!(terms[0].match_expressions.as_ref().unwrap()[0].key, "disk");
        assert_eq!(target_node(&spec).as_deref(), Some("n1"));
        let mut bare = PodSpec::default();
        pin_to_node(&mut bare, "n2");
        assert_eq!(target_node(&bare).as_deref(), Some("n2"));
        bare.node_name = Some("n3".into());
        assert_eq!(target_node(&bare).as_deref(), Some("n3"));

        let mut spec = PodSpec::default();
        add_daemon_tolerations(&mut spec);
        add_daemon_tolerations(&mut spec);
        assert_eq!(spec.tolerations.as_ref().map(Vec::len), Some(6));
    }
}
