//! Tests of strategic merge patch: one table row or more per directive
//! against the expected object, malformed and misfitting patches, and a
//! property test that applies kubectl's two-way patch old → new to old and
//! expects new. They run against a small schema of the fields of Pods and
//! Deployments that matter here ([`Fields`]) and against the Kubernetes
//! schema table.

use proptest::prelude::*;
use serde_json::{Value, json};

use super::PatchError;
use super::strategic::{Meta, Strategy, apply};
use super::two_way;

/// A test schema keyed by field name: the patch metadata of Pod and
/// Deployment fields, which in those kinds depends on the name alone.
#[derive(Clone, Copy)]
pub struct Fields(Option<usize>);

const MERGE: Strategy = Strategy {
    merge: true,
    replace: false,
    retain_keys: false,
};

const FIELDS: &[(&str, Option<&str>, Strategy)] = &[
    ("containers", Some("name"), MERGE),
    ("initContainers", Some("name"), MERGE),
    ("env", Some("name"), MERGE),
    ("ports", Some("containerPort"), MERGE),
    ("volumeMounts", Some("mountPath"), MERGE),
    (
        "volumes",
        Some("name"),
        Strategy {
            merge: true,
            replace: false,
            retain_keys: true,
        },
    ),
    ("finalizers", None, MERGE),
    (
        "strategy",
        None,
        Strategy {
            merge: false,
            replace: false,
            retain_keys: true,
        },
    ),
    (
        "replaced",
        None,
        Strategy {
            merge: false,
            replace: true,
            retain_keys: false,
        },
    ),
    ("merged_no_key", None, MERGE),
];

impl Meta for Fields {
    fn child(&self, key: &str) -> Option<Self> {
        Some(Fields(FIELDS.iter().position(|f| f.0 == key)))
    }
    fn item(&self) -> Option<Self> {
        Some(Fields(None))
    }
    fn strategy(&self) -> Strategy {
        self.0.map(|i| FIELDS[i].2).unwrap_or_default()
    }
    fn merge_key(&self) -> Option<&str> {
        self.0.and_then(|i| FIELDS[i].1)
    }
}

fn smp(original: &Value, patch: &Value) -> Result<Value, PatchError> {
    apply(original, patch, Some(Fields(None)))
}

fn pod() -> Value {
    json!({
        "metadata": {"name": "p", "labels": {"app": "web", "tier": "fe"}, "finalizers": ["a", "b"]},
        "spec": {
            "containers": [
                {"name": "api", "image": "api:1",
                 "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                 "ports": [{"containerPort": 80, "name": "http"}, {"containerPort": 443}]},
                {"name": "side", "image": "side:1"}
            ],
            "volumes": [{"name": "cfg", "configMap": {"name": "c"}}],
            "tolerations": [{"key": "k1", "operator": "Exists"}, {"key": "k2", "operator": "Exists"}]
        }
    })
}

/// `pod()` with `edit` applied to it.
fn pod_with(edit: impl FnOnce(&mut Value)) -> Value {
    let mut p = pod();
    edit(&mut p);
    p
}

/// The rows that need the test schema's made-up fields.
const TEST_SCHEMA_ONLY: &[&str] = &["replace strategy replaces a map", "merged_no_key"];

/// The Kubernetes schema of built-in kind `group`/`version`/`kind`.
fn k8s(group: &str, version: &str, kind: &str) -> crate::schema::Node<'static> {
    crate::schema::builtin()
        .kind(group, version, kind)
        .unwrap_or_else(|| panic!("no schema for {group}/{version}/{kind}"))
}

fn directive_cases() -> Vec<(&'static str, Value, Value)> {
    vec![
        (
            "maps merge and null removes a key",
            json!({"metadata": {"labels": {"tier": null, "new": "x"}}}),
            pod_with(|p| p["metadata"]["labels"] = json!({"app": "web", "new": "x"})),
        ),
        (
            "containers merge by name",
            json!({"spec": {"containers": [{"name": "side", "image": "side:2"}, {"name": "log", "image": "log:1"}]}}),
            pod_with(|p| {
                p["spec"]["containers"][1]["image"] = json!("side:2");
                let cs = p["spec"]["containers"].as_array_mut().unwrap();
                cs.push(json!({"name": "log", "image": "log:1"}));
            }),
        ),
        (
            "a container the server lacks goes first (Kubernetes' order)",
            json!({"spec": {"containers": [{"name": "log", "image": "log:1"}]}}),
            pod_with(|p| {
                let cs = p["spec"]["containers"].as_array_mut().unwrap();
                cs.insert(0, json!({"name": "log", "image": "log:1"}));
            }),
        ),
        (
            "env merges by name inside the container that matches",
            json!({"spec": {"containers": [{"name": "api", "env": [{"name": "B", "value": "22"}]}]}}),
            pod_with(|p| p["spec"]["containers"][0]["env"][1]["value"] = json!("22")),
        ),
        (
            "ports merge by containerPort",
            json!({"spec": {"containers": [{"name": "api", "ports": [{"containerPort": 443, "name": "https"}]}]}}),
            pod_with(|p| p["spec"]["containers"][0]["ports"][1]["name"] = json!("https")),
        ),
        (
            "volumes merge by name",
            json!({"spec": {"volumes": [{"name": "cfg", "configMap": {"defaultMode": 420}}]}}),
            pod_with(|p| p["spec"]["volumes"][0]["configMap"]["defaultMode"] = json!(420)),
        ),
        (
            "tolerations are atomic: replaced",
            json!({"spec": {"tolerations": [{"key": "k3", "operator": "Exists"}]}}),
            pod_with(|p| p["spec"]["tolerations"] = json!([{"key": "k3", "operator": "Exists"}])),
        ),
        (
            "finalizers merge as a set",
            json!({"metadata": {"finalizers": ["b", "c"]}}),
            pod_with(|p| p["metadata"]["finalizers"] = json!(["a", "b", "c"])),
        ),
        (
            "$deleteFromPrimitiveList removes values from a set",
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a", "zz"]}}),
            pod_with(|p| p["metadata"]["finalizers"] = json!(["b"])),
        ),
        (
            "$setElementOrder orders containers",
            json!({"spec": {"$setElementOrder/containers": [{"name": "side"}, {"name": "api"}]}}),
            pod_with(|p| {
                let cs = p["spec"]["containers"].as_array_mut().unwrap();
                cs.reverse();
            }),
        ),
        (
            "$setElementOrder with an added and a deleted element (kubectl apply)",
            json!({"spec": {"$setElementOrder/containers": [{"name": "new"}, {"name": "api"}],
                            "containers": [{"name": "new", "image": "n:1"}, {"name": "side", "$patch": "delete"}]}}),
            pod_with(|p| {
                let api = p["spec"]["containers"][0].clone();
                p["spec"]["containers"] = json!([{"name": "new", "image": "n:1"}, api]);
            }),
        ),
        (
            "$setElementOrder of env inside a container, with $patch: delete",
            json!({"spec": {"containers": [{"name": "api", "$setElementOrder/env": [{"name": "C"}, {"name": "A"}],
                                            "env": [{"name": "C", "value": "3"}, {"name": "B", "$patch": "delete"}]}]}}),
            pod_with(|p| {
                p["spec"]["containers"][0]["env"] =
                    json!([{"name": "C", "value": "3"}, {"name": "A", "value": "1"}])
            }),
        ),
        (
            "$setElementOrder of a set with $deleteFromPrimitiveList",
            json!({"metadata": {"$setElementOrder/finalizers": ["c", "b"], "finalizers": ["c"],
                                "$deleteFromPrimitiveList/finalizers": ["a"]}}),
            pod_with(|p| p["metadata"]["finalizers"] = json!(["c", "b"])),
        ),
        (
            "$patch: delete of a list element",
            json!({"spec": {"containers": [{"name": "api", "$patch": "delete"}]}}),
            pod_with(|p| {
                p["spec"]["containers"].as_array_mut().unwrap().remove(0);
            }),
        ),
        (
            "$patch: delete of a map removes the field",
            json!({"metadata": {"labels": {"$patch": "delete"}}}),
            pod_with(|p| {
                p["metadata"].as_object_mut().unwrap().remove("labels");
            }),
        ),
        (
            "$patch: replace on a map",
            json!({"metadata": {"labels": {"$patch": "replace", "only": "this"}}}),
            pod_with(|p| p["metadata"]["labels"] = json!({"only": "this"})),
        ),
        (
            "$patch: replace on a list",
            json!({"spec": {"containers": [{"name": "solo", "image": "s:1"}, {"$patch": "replace"}]}}),
            pod_with(|p| p["spec"]["containers"] = json!([{"name": "solo", "image": "s:1"}])),
        ),
        (
            "$patch: replace inside spec.template, as kubectl rollout undo sends it",
            json!({"spec": {"$patch": "replace", "containers": [{"name": "old", "image": "o:1"}]}}),
            pod_with(|p| p["spec"] = json!({"containers": [{"name": "old", "image": "o:1"}]})),
        ),
        (
            "$patch: merge is the default",
            json!({"metadata": {"labels": {"$patch": "merge", "tier": "be"}}}),
            pod_with(|p| p["metadata"]["labels"]["tier"] = json!("be")),
        ),
        (
            "$retainKeys clears the volume source the patch does not keep",
            json!({"spec": {"volumes": [{"name": "cfg", "emptyDir": {}, "configMap": null,
                                         "$retainKeys": ["emptyDir", "name"]}]}}),
            pod_with(|p| p["spec"]["volumes"] = json!([{"name": "cfg", "emptyDir": {}}])),
        ),
        (
            "a list element added with directives inside stores none of them",
            json!({"spec": {"containers": [{"name": "x", "env": [{"name": "E", "value": "1"}, {"name": "F", "$patch": "delete"}],
                                            "$setElementOrder/env": [{"name": "E"}], "securityContext": null}]}}),
            pod_with(|p| {
                p["spec"]["containers"].as_array_mut().unwrap().insert(
                    0,
                    json!({"name": "x", "env": [{"name": "E", "value": "1"}]}),
                );
            }),
        ),
        (
            "a field of no schema merges as a map, its lists replaced",
            json!({"spec": {"extra": {"a": [3]}, "containers": [{"name": "api", "args": ["x"]}]}}),
            pod_with(|p| {
                p["spec"]["extra"] = json!({"a": [3]});
                p["spec"]["containers"][0]["args"] = json!(["x"]);
            }),
        ),
        (
            "replace strategy replaces a map",
            json!({"replaced": {"b": 2, "c": null}}),
            pod_with(|p| p["replaced"] = json!({"b": 2})),
        ),
        (
            "keys starting with $ that are not directives are data",
            json!({"spec": {"schema": {"$ref": "#/x"}}}),
            pod_with(|p| p["spec"]["schema"] = json!({"$ref": "#/x"})),
        ),
    ]
}

#[test]
fn directives_give_the_expected_objects() {
    for (name, patch, want) in directive_cases() {
        let got = smp(&pod(), &patch).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(got, want, "{name}");
    }
}

/// The same rows with the Kubernetes schema of Pod.
#[test]
fn directives_give_the_expected_objects_with_the_pod_schema() {
    for (name, patch, want) in directive_cases() {
        if TEST_SCHEMA_ONLY.contains(&name) {
            continue;
        }
        let got = apply(&pod(), &patch, Some(k8s("", "v1", "Pod")))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn deployment_strategy_retain_keys() {
    let d = json!({"spec": {"replicas": 1, "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}});
    let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}});
    let want = json!({"spec": {"replicas": 1, "strategy": {"type": "Recreate"}}});
    assert_eq!(smp(&d, &patch).unwrap(), want);
    assert_eq!(
        apply(&d, &patch, Some(k8s("apps", "v1", "Deployment"))).unwrap(),
        want
    );
}

/// Node taints are atomic and owner references merge by uid, in the
/// Kubernetes schema.
#[test]
fn kubernetes_schema_lists() {
    let node = json!({"metadata": {"name": "n", "ownerReferences": [{"uid": "1", "name": "a"}]},
                      "spec": {"taints": [{"key": "a", "effect": "NoSchedule"}]}});
    let got = apply(
        &node,
        &json!({"metadata": {"ownerReferences": [{"uid": "2", "name": "b"}]},
                "spec": {"taints": [{"key": "b", "effect": "NoExecute"}]}}),
        Some(k8s("", "v1", "Node")),
    )
    .unwrap();
    assert_eq!(
        got["spec"]["taints"],
        json!([{"key": "b", "effect": "NoExecute"}])
    );
    assert_eq!(names(&got["metadata"]["ownerReferences"]), ["2", "1"]);
}

fn names(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap()
        .iter()
        .filter_map(|x| x["uid"].as_str())
        .collect()
}

#[test]
fn refused_patches_say_why() {
    let cases: Vec<(Value, bool, &str)> = vec![
        // (patch, malformed (400) rather than failed (422), message part)
        (json!([1]), true, "must be a JSON object"),
        (
            json!({"metadata": {"labels": {"$patch": "explode"}}}),
            true,
            "unknown patch type",
        ),
        (
            json!({"spec": {"containers": [{"$patch": "bogus", "name": "api"}]}}),
            true,
            "unknown patch type",
        ),
        (
            json!({"spec": {"$setElementOrder/containers": "api"}}),
            true,
            "setElementOrder",
        ),
        (
            json!({"spec": {"$setElementOrder/containers": [{"image": "x"}]}}),
            true,
            "merge key",
        ),
        (
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": "a"}}),
            true,
            "primitive list",
        ),
        (
            json!({"spec": {"strategy": {"$retainKeys": "type"}}}),
            true,
            "retainKeys",
        ),
        (
            json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {}}}}),
            false,
            "doesn't match retainKeys",
        ),
        (
            json!({"spec": {"containers": [{"image": "x"}]}}),
            false,
            "does not contain declared merge key: name",
        ),
        (
            json!({"spec": {"containers": [{"$patch": "delete"}]}}),
            false,
            "merge key",
        ),
        (
            json!({"spec": {"containers": [["x"]]}}),
            false,
            "lists of lists",
        ),
        (
            json!({"spec": {"containers": ["x"]}}),
            false,
            "mix objects and scalars",
        ),
        (
            json!({"merged_no_key": [{"a": 1}]}),
            false,
            "without merge key",
        ),
        (json!({"$patch": "delete"}), false, "whole object"),
    ];
    for (patch, malformed, part) in cases {
        let test_only = patch.get("merged_no_key").is_some();
        let real = (!test_only).then(|| apply(&pod(), &patch, Some(k8s("", "v1", "Pod"))));
        for got in [Some(smp(&pod(), &patch)), real].into_iter().flatten() {
            match got {
                Err(PatchError::Malformed(m)) if malformed && m.contains(part) => {}
                Err(PatchError::Failed(m)) if !malformed && m.contains(part) => {}
                other => panic!(
                    "{patch}: want {} with {part:?}, got {other:?}",
                    if malformed { "400" } else { "422" }
                ),
            }
        }
    }
}

#[test]
fn nesting_is_bounded() {
    let mut patch = json!({"x": 1});
    for _ in 0..(super::strategic::MAX_DEPTH + 5) {
        patch = json!({"spec": patch});
    }
    assert!(matches!(
        smp(&json!({}), &patch),
        Err(PatchError::Malformed(_))
    ));
    let mut list = json!([{"name": "a"}]);
    for _ in 0..(super::strategic::MAX_DEPTH + 5) {
        list = json!([{"name": "a", "containers": list}]);
    }
    assert!(smp(&json!({}), &json!({"containers": list})).is_err());
}

#[test]
fn patches_of_any_shape_never_panic() {
    let shapes = [
        json!(null),
        json!(5),
        json!("s"),
        json!([]),
        json!([null, 1, {"name": null}]),
        json!({"$patch": null}),
        json!({"containers": {"$patch": "delete"}}),
        json!({"containers": [{"name": {"a": 1}}]}),
        json!({"$setElementOrder/containers": [], "containers": null}),
        json!({"$setElementOrder/finalizers": [{"a": 1}], "finalizers": 5}),
        json!({"$retainKeys": [], "x": null}),
    ];
    for p in &shapes {
        for o in [
            pod(),
            json!(null),
            json!({"containers": 5, "finalizers": {"a": 1}}),
        ] {
            let _ = smp(&o, p);
            let _ = smp(&o, &json!({"spec": p}));
        }
    }
}

/// The two-way patch round trip on hand-picked changes, each also a
/// directive kubectl emits.
#[test]
fn kubectl_two_way_patches_round_trip() {
    let old = pod();
    let new = pod_with(|p| {
        p["metadata"]["labels"] = json!({"app": "web2"});
        p["metadata"]["finalizers"] = json!(["c", "a"]);
        p["spec"]["containers"] = json!([
            {"name": "side", "image": "side:1"},
            {"name": "api", "image": "api:2", "env": [{"name": "B", "value": "2"}, {"name": "A", "value": "9"}],
             "ports": [{"containerPort": 8080}]},
        ]);
        p["spec"]["volumes"] = json!([{"name": "cfg", "secret": {"secretName": "s"}}]);
        p["spec"]["tolerations"] = json!([]);
    });
    let patch = two_way::diff(&old, &new, Some(Fields(None)));
    assert!(
        patch.to_string().contains("$setElementOrder/containers"),
        "{patch}"
    );
    assert!(patch.to_string().contains("$retainKeys"), "{patch}");
    assert!(
        patch
            .to_string()
            .contains("$deleteFromPrimitiveList/finalizers"),
        "{patch}"
    );
    assert_eq!(smp(&old, &patch).unwrap(), new, "patch {patch}");
}

/// Generators of Deployment-like objects for the property test: unique names for
/// the lists merged by key, in any order.
mod objects {
    use proptest::prelude::*;
    use proptest::sample::subsequence;
    use serde_json::{Map, Value, json};

    fn names(
        pool: &'static [&'static str],
        max: usize,
    ) -> impl Strategy<Value = Vec<&'static str>> {
        subsequence(pool, 0..=max).prop_shuffle()
    }

    fn small_map(keys: &'static [&'static str]) -> impl Strategy<Value = Value> {
        (names(keys, 3), prop::collection::vec("[a-c]{0,2}", 3)).prop_map(|(ks, vs)| {
            let m: Map<String, Value> = ks
                .iter()
                .zip(vs)
                .map(|(k, v)| (k.to_string(), json!(v)))
                .collect();
            Value::Object(m)
        })
    }

    fn env() -> impl Strategy<Value = Value> {
        (
            names(&["A", "B", "C", "D"], 4),
            prop::collection::vec(prop::option::of("[xy]"), 4),
        )
            .prop_map(|(ns, vs)| {
                Value::Array(
                    ns.iter()
                        .zip(vs)
                        .map(|(n, v)| match v {
                            Some(v) => json!({"name": n, "value": v}),
                            None => json!({"name": n}),
                        })
                        .collect(),
                )
            })
    }

    const PORTS: &[i32] = &[80, 443, 8080];

    fn ports() -> impl Strategy<Value = Value> {
        (
            subsequence(PORTS, 0..=3).prop_shuffle(),
            prop::collection::vec(prop::option::of("[pq]"), 3),
        )
            .prop_map(|(ps, ns)| {
                Value::Array(
                    ps.iter()
                        .zip(ns)
                        .map(|(p, n)| match n {
                            Some(n) => json!({"containerPort": p, "name": n}),
                            None => json!({"containerPort": p}),
                        })
                        .collect(),
                )
            })
    }

    fn container(name: &'static str) -> impl Strategy<Value = Value> {
        (
            "[ab]:[12]",
            prop::option::of(env()),
            prop::option::of(ports()),
            prop::option::of(prop::collection::vec("[rs]", 0..3)),
        )
            .prop_map(move |(image, env, ports, args)| {
                let mut c = json!({"name": name, "image": image});
                if let Some(e) = env {
                    c["env"] = e;
                }
                if let Some(p) = ports {
                    c["ports"] = p;
                }
                if let Some(a) = args {
                    c["args"] = json!(a);
                }
                c
            })
    }

    fn containers() -> impl Strategy<Value = Value> {
        names(&["api", "side", "log"], 3)
            .prop_flat_map(|ns| ns.into_iter().map(container).collect::<Vec<_>>())
            .prop_map(Value::Array)
    }

    fn volumes() -> impl Strategy<Value = Value> {
        (
            names(&["v1", "v2", "v3"], 3),
            prop::collection::vec(0..3u8, 3),
        )
            .prop_map(|(ns, kinds)| {
                Value::Array(
                    ns.iter()
                        .zip(kinds)
                        .map(|(n, k)| match k {
                            0 => json!({"name": n, "emptyDir": {}}),
                            1 => json!({"name": n, "configMap": {"name": format!("c{n}")}}),
                            _ => json!({"name": n, "secret": {"secretName": "s"}}),
                        })
                        .collect(),
                )
            })
    }

    fn strategy() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(json!({"type": "Recreate"})),
            Just(json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}})),
            Just(json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 2}})),
        ]
    }

    /// A Deployment-shaped object: labels, annotations and finalizers; a
    /// strategy; a pod template with containers, volumes and tolerations.
    pub fn object() -> impl Strategy<Value = Value> {
        (
            prop::option::of(small_map(&["app", "tier", "env", "zone"])),
            prop::option::of(small_map(&["a/1", "b/2", "c/3"])),
            prop::option::of(names(&["f/a", "f/b", "f/c"], 3)),
            prop::option::of(strategy()),
            containers(),
            prop::option::of(volumes()),
            prop::option::of(prop::collection::vec("[kl]", 0..3)),
        )
            .prop_map(|(labels, annotations, finalizers, strategy, containers, volumes, tolerations)| {
                let mut meta = json!({"name": "d"});
                if let Some(l) = labels {
                    meta["labels"] = l;
                }
                if let Some(a) = annotations {
                    meta["annotations"] = a;
                }
                if let Some(f) = finalizers {
                    meta["finalizers"] = json!(f);
                }
                let mut pod = json!({"containers": containers});
                if let Some(v) = volumes {
                    pod["volumes"] = v;
                }
                if let Some(t) = tolerations {
                    pod["tolerations"] = t.iter().map(|k| json!({"key": k, "operator": "Exists"})).collect();
                }
                let mut spec = json!({"template": {"spec": pod}});
                if let Some(s) = strategy {
                    spec["strategy"] = s;
                }
                json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": spec})
            })
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// kubectl's two-way patch old → new, applied to old by the server,
    /// gives new.
    #[test]
    fn two_way_patch_applied_to_old_gives_new(old in objects::object(), new in objects::object()) {
        let patch = two_way::diff(&old, &new, Some(Fields(None)));
        let got = smp(&old, &patch);
        prop_assert_eq!(got.as_ref().ok(), Some(&new), "patch {}: {:?}", patch, got);
        // Applying it again changes nothing.
        let again = smp(&new, &patch);
        prop_assert_eq!(again.ok(), Some(new));
    }

    /// The same with the Kubernetes schema of Deployment, on both sides.
    #[test]
    fn two_way_patch_round_trips_with_the_deployment_schema(old in objects::object(), new in objects::object()) {
        let schema = Some(k8s("apps", "v1", "Deployment"));
        let patch = two_way::diff(&old, &new, schema);
        let got = apply(&old, &patch, schema);
        prop_assert_eq!(got.as_ref().ok(), Some(&new), "patch {}: {:?}", patch, got);
    }
}
