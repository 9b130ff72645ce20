//! The codec against kubectl 1.33's real bytes (testdata/, captured from
//! `kubectl.1.33 create …` against a listener that saved each body), JSON →
//! protobuf → JSON round trips for every API group Keel serves, and
//! malformed input: always a 400, never a panic.

use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::kinds::Kinds;

fn target(group: &str, version: &str, plural: &str) -> RequestTarget {
    let kinds = Kinds::builtin();
    RequestTarget::resolve(&kinds, group, version, &["namespaces", "default", plural])
        .or_else(|_| RequestTarget::resolve(&kinds, group, version, &[plural]))
        .unwrap()
}

fn golden(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/src/registry/protobuf/testdata/{name}.pb",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn bad_request(r: Result<impl std::fmt::Debug, ApiError>) -> String {
    match r {
        Err(ApiError::BadRequest(m)) => m,
        other => panic!("expected a 400, got {other:?}"),
    }
}

/// A length-delimited field (short values only).
fn field(n: u32, b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    wire::put_bytes(&mut out, n, b);
    out
}

fn envelope_of(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
    envelope(api_version, kind, raw)
}

#[test]
fn the_table_covers_every_builtin_kind_and_its_list() {
    let s = schema::schema().unwrap();
    for rt in crate::kinds::builtin() {
        let av = rt.api_version();
        assert!(
            s.kind(&av, &rt.kind).is_some(),
            "{av} {} has no protobuf message",
            rt.kind
        );
        // Reviews are never listed.
        if !rt.kind.ends_with("Review") && rt.kind != "TokenRequest" {
            assert!(
                s.kind(&av, &format!("{}List", rt.kind)).is_some(),
                "{av} {}List",
                rt.kind
            );
        }
    }
    assert!(s.kind("v1", "Status").is_some());
    assert!(s.kind("v1", "PodSpec").is_none(), "not a kind");
    assert!(s.kind("example.com/v1", "Widget").is_none());
}

#[test]
fn kubectl_namespace_bytes_decode_exactly() {
    let body = golden("namespace");
    let v = decode(&target("", "v1", "namespaces"), &body).unwrap();
    assert_eq!(
        v,
        json!({"apiVersion": "v1", "kind": "Namespace",
               "metadata": {"name": "golden-ns"}, "spec": {}, "status": {}})
    );
    // Our encoding of it decodes back to the same object.
    let again = encode_object(&v).unwrap();
    assert!(again.starts_with(MAGIC));
    assert_eq!(decode_body(&again, None).unwrap().2, v);
}

#[test]
fn kubectl_configmap_bytes_decode_exactly() {
    let body = golden("configmap");
    let v = decode(&target("", "v1", "configmaps"), &body).unwrap();
    assert_eq!(
        v,
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "golden-cm", "namespace": "default"},
               "data": {"a": "1", "b": "two"}})
    );
    assert_eq!(decode_body(&encode_object(&v).unwrap(), None).unwrap().2, v);
}

#[test]
fn every_kubectl_create_body_decodes() {
    let cases = [
        (
            "secret",
            "",
            "v1",
            "secrets",
            "/data/password",
            json!("aHVudGVyMg=="),
        ),
        (
            "serviceaccount",
            "",
            "v1",
            "serviceaccounts",
            "/metadata/name",
            json!("golden-sa"),
        ),
        (
            "service",
            "",
            "v1",
            "services",
            "/spec/ports/0/targetPort",
            json!(8080),
        ),
        (
            "resourcequota",
            "",
            "v1",
            "resourcequotas",
            "/spec/hard/cpu",
            json!("2"),
        ),
        (
            "deployment",
            "apps",
            "v1",
            "deployments",
            "/spec/replicas",
            json!(2),
        ),
        (
            "job",
            "batch",
            "v1",
            "jobs",
            "/spec/template/spec/containers/0/command",
            json!(["echo", "hi"]),
        ),
        (
            "cronjob",
            "batch",
            "v1",
            "cronjobs",
            "/spec/schedule",
            json!("*/5 * * * *"),
        ),
        (
            "rolebinding",
            "rbac.authorization.k8s.io",
            "v1",
            "rolebindings",
            "/subjects/0/name",
            json!("alice"),
        ),
        (
            "priorityclass",
            "scheduling.k8s.io",
            "v1",
            "priorityclasses",
            "/value",
            json!(1000),
        ),
        (
            "poddisruptionbudget",
            "policy",
            "v1",
            "poddisruptionbudgets",
            "/spec/minAvailable",
            json!(1),
        ),
        (
            "ingress",
            "networking.k8s.io",
            "v1",
            "ingresses",
            "/spec/rules/0/host",
            json!("foo.com"),
        ),
    ];
    let s = schema::schema().unwrap();
    for (file, group, version, plural, pointer, want) in cases {
        let body = golden(file);
        let (av, kind, v) = decode_body(&body, None).unwrap();
        assert_eq!(v.pointer(pointer), Some(&want), "{file}: {v}");
        assert!(s.kind(&av, &kind).is_some());
        // Kinds Keel serves also decode through their request target.
        if let Ok(t) = RequestTarget::resolve(
            &Kinds::builtin(),
            group,
            version,
            &["namespaces", "default", plural],
        ) {
            assert_eq!(decode(&t, &body).unwrap(), v, "{file}");
        }
        // Go's zero values that JSON omits stay out; required ones stay in.
        assert!(v["metadata"].get("uid").is_none(), "{file}: {v}");
        assert!(v["metadata"].get("creationTimestamp").is_none(), "{file}");
        // Encode → decode is the identity on what kubectl sent.
        assert_eq!(
            decode_body(&encode_object(&v).unwrap(), None).unwrap().2,
            v,
            "{file}"
        );
    }
    let d = decode_body(&golden("deployment"), None).unwrap().2;
    assert_eq!(
        d.pointer("/spec/template/spec/containers/0"),
        Some(
            &json!({"name": "nginx", "image": "nginx:1.27", "ports": [{"containerPort": 80}], "resources": {}})
        )
    );
}

/// JSON → protobuf → JSON is the identity for an object of each group.
#[test]
fn json_round_trips_through_protobuf_for_every_group() {
    let meta = |name: &str| {
        json!({"name": name, "namespace": "default", "uid": "u-1",
        "resourceVersion": "42", "generation": 3, "creationTimestamp": "2024-05-06T07:08:09Z",
        "labels": {"app": "web"}, "annotations": {"a": "b"},
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "u-0", "controller": true, "blockOwnerDeletion": false}],
        "finalizers": ["x/y"],
        "managedFields": [{"manager": "kubectl", "operation": "Update", "apiVersion": "v1", "time": "2024-05-06T07:08:09Z", "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {".": {}, "f:a": {}}}}]})
    };
    let container = json!({"name": "app", "image": "nginx", "command": ["sh"], "args": ["-c", "x"],
        "ports": [{"containerPort": 80, "protocol": "TCP", "name": "http"}],
        "env": [{"name": "A", "value": "1"}, {"name": "B", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}}],
        "resources": {"limits": {"cpu": "500m", "memory": "1Gi"}, "requests": {"cpu": "100m"}},
        "volumeMounts": [{"name": "data", "mountPath": "/data", "readOnly": true}],
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTP"}, "initialDelaySeconds": 5, "periodSeconds": 10},
        "readinessProbe": {"tcpSocket": {"port": 8080}},
        "securityContext": {"runAsNonRoot": false, "runAsUser": 0, "privileged": false},
        "imagePullPolicy": "IfNotPresent"});
    let pod_spec = json!({"containers": [container], "restartPolicy": "Always",
        "volumes": [{"name": "data", "emptyDir": {"sizeLimit": "1Gi"}}, {"name": "cm", "configMap": {"name": "c", "defaultMode": 420, "items": [{"key": "a", "path": "a"}]}}],
        "nodeSelector": {"disk": "ssd"}, "serviceAccountName": "default", "terminationGracePeriodSeconds": 30,
        "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]}}},
        "automountServiceAccountToken": false});
    let template = json!({"metadata": {"labels": {"app": "web"}}, "spec": pod_spec});
    let selector = json!({"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]}]});
    let schema = json!({"type": "object", "description": "d",
        "properties": {
            "spec": {"type": "object", "required": ["size"], "x-kubernetes-preserve-unknown-fields": true,
                "properties": {"size": {"type": "integer", "format": "int32", "minimum": 1, "maximum": 10.5, "default": 3},
                    "tags": {"type": "array", "items": {"type": "string", "enum": ["a", "b"]}, "x-kubernetes-list-type": "set"},
                    "any": {"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]},
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "open": {"type": "object", "additionalProperties": false}}}}});
    let cases = vec![
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta("p"), "spec": pod_spec,
               "status": {"phase": "Running", "podIP": "10.0.0.1", "podIPs": [{"ip": "10.0.0.1"}], "startTime": "2024-05-06T07:08:09Z",
                 "conditions": [{"type": "Ready", "status": "True", "lastProbeTime": null, "lastTransitionTime": "2024-05-06T07:08:10Z"}],
                 "containerStatuses": [{"name": "app", "ready": true, "restartCount": 0, "image": "nginx", "imageID": "", "started": true,
                    "state": {"running": {"startedAt": "2024-05-06T07:08:11Z"}}, "lastState": {}}]}}),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": meta("s"),
               "spec": {"type": "ClusterIP", "selector": {"app": "web"}, "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
                 "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}, {"port": 443, "targetPort": "https", "nodePort": 30443}],
                 "sessionAffinity": "None", "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack"},
               "status": {"loadBalancer": {}}}),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta("c"), "data": {"a": "1", "empty": ""},
               "binaryData": {"bin": "AAEC"}, "immutable": false}),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": meta("sec"), "type": "Opaque",
               "data": {"password": "aHVudGVyMg==", "empty": ""}, "immutable": true}),
        json!({"apiVersion": "v1", "kind": "Node", "metadata": meta("n1"),
               "spec": {"podCIDR": "10.1.0.0/24", "taints": [{"key": "k", "value": "v", "effect": "NoSchedule", "timeAdded": "2024-05-06T07:08:09Z"}], "unschedulable": true},
               "status": {"capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"}, "allocatable": {"cpu": "3800m"},
                 "addresses": [{"type": "InternalIP", "address": "192.168.0.2"}],
                 "nodeInfo": {"machineID": "m", "systemUUID": "s", "bootID": "b", "kernelVersion": "6", "osImage": "o", "containerRuntimeVersion": "c",
                   "kubeletVersion": "v1.33.0", "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": "amd64"},
                 "conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": "2024-05-06T07:08:09Z", "lastTransitionTime": "2024-05-06T07:08:09Z", "reason": "KubeletReady", "message": "ok"}]}}),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ns"},
               "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Terminating",
                 "conditions": [{"type": "NamespaceDeletionContentFailure", "status": "False", "lastTransitionTime": "2024-05-06T07:08:09Z", "reason": "r", "message": "m"}]}}),
        json!({"apiVersion": "v1", "kind": "Event", "metadata": meta("e"),
               "involvedObject": {"kind": "Pod", "namespace": "default", "name": "p", "uid": "u", "apiVersion": "v1"},
               "reason": "Started", "message": "m", "source": {"component": "kubelet", "host": "n1"},
               "firstTimestamp": "2024-05-06T07:08:09Z", "lastTimestamp": "2024-05-06T07:08:09Z", "count": 2, "type": "Normal",
               "eventTime": "2024-05-06T07:08:09.123456Z", "reportingComponent": "kubelet", "reportingInstance": "n1"}),
        json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": meta("e2"),
               "eventTime": "2024-05-06T07:08:09.000001Z", "reportingController": "c", "reportingInstance": "i", "action": "A",
               "reason": "R", "regarding": {"kind": "Pod", "name": "p"}, "note": "n", "type": "Warning",
               "series": {"count": 3, "lastObservedTime": "2024-05-06T07:08:10.500000Z"}}),
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": meta("pvc"),
               "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}, "storageClassName": "", "volumeMode": "Filesystem"}}),
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta("d"),
               "spec": {"replicas": 0, "selector": selector, "template": template, "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600,
                 "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}}},
               "status": {"observedGeneration": 3, "replicas": 2, "readyReplicas": 1,
                 "conditions": [{"type": "Available", "status": "True", "lastUpdateTime": "2024-05-06T07:08:09Z", "lastTransitionTime": "2024-05-06T07:08:09Z", "reason": "r", "message": "m"}]}}),
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": meta("ss"),
               "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": template, "serviceName": "web",
                 "podManagementPolicy": "Parallel", "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
                 "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}],
                 "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Delete"}}}),
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": meta("j"),
               "spec": {"parallelism": 1, "completions": 1, "backoffLimit": 6, "template": template, "ttlSecondsAfterFinished": 0, "suspend": false},
               "status": {"startTime": "2024-05-06T07:08:09Z", "succeeded": 1, "ready": 0}}),
        json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": meta("cj"),
               "spec": {"schedule": "*/5 * * * *", "concurrencyPolicy": "Forbid", "suspend": false, "successfulJobsHistoryLimit": 3,
                 "jobTemplate": {"metadata": {"labels": {"a": "b"}}, "spec": {"template": template}}},
               "status": {"lastScheduleTime": "2024-05-06T07:10:00Z", "active": [{"kind": "Job", "name": "cj-1", "namespace": "default"}]}}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "cr"},
               "rules": [{"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"], "resourceNames": ["a"]}, {"verbs": ["get"], "nonResourceURLs": ["/healthz"]}],
               "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"agg": "true"}}]}}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": meta("rb"),
               "subjects": [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "alice"}, {"kind": "ServiceAccount", "name": "sa", "namespace": "default"}],
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"}}),
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": meta("np"),
               "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress"],
                 "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}, {"namespaceSelector": {}}], "ports": [{"protocol": "TCP", "port": 80}, {"port": "http", "endPort": 90}]}]}}),
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": meta("ing"),
               "spec": {"ingressClassName": "nginx", "tls": [{"hosts": ["a.com"], "secretName": "s"}],
                 "rules": [{"host": "a.com", "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "svc", "port": {"number": 80}}}}]}}]}}),
        json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "fast"},
               "provisioner": "x.io/p", "parameters": {"type": "ssd"}, "reclaimPolicy": "Delete", "allowVolumeExpansion": true, "volumeBindingMode": "WaitForFirstConsumer"}),
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta("l"),
               "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15, "acquireTime": "2024-05-06T07:08:09.000000Z", "renewTime": "2024-05-06T07:08:19.654321Z", "leaseTransitions": 0}}),
        json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": "widgets.example.com"},
               "spec": {"group": "example.com", "scope": "Namespaced",
                 "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList", "shortNames": ["wd"]},
                 "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": schema},
                   "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.size", "statusReplicasPath": ".status.size"}},
                   "additionalPrinterColumns": [{"name": "Size", "type": "integer", "jsonPath": ".spec.size"}]}],
                 "conversion": {"strategy": "Webhook", "webhook": {"conversionReviewVersions": ["v1"], "clientConfig": {"caBundle": "Y2E=", "url": "https://x"}}}},
               "status": {"acceptedNames": {"plural": "widgets", "kind": "Widget"}, "storedVersions": ["v1"],
                 "conditions": [{"type": "Established", "status": "True", "lastTransitionTime": "2024-05-06T07:08:09Z"}]}}),
        json!({"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService", "metadata": {"name": "v1.example.com"},
               "spec": {"group": "example.com", "version": "v1", "groupPriorityMinimum": 1000, "versionPriority": 15,
                 "service": {"namespace": "ns", "name": "svc", "port": 443}, "caBundle": "Y2E="}}),
        json!({"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure", "code": 404, "reason": "NotFound",
               "message": "pods \"x\" not found", "details": {"name": "x", "kind": "pods", "causes": [{"reason": "FieldValueInvalid", "message": "m", "field": "f"}]}}),
        json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "7", "continue": "c", "remainingItemCount": 3},
               "items": [{"metadata": {"name": "a"}, "spec": {"containers": [{"name": "x", "image": "i"}]}}]}),
    ];
    for v in cases {
        let kind = v["kind"].as_str().unwrap().to_string();
        let pb = encode_checked(&v).unwrap_or_else(|e| panic!("{kind} does not encode: {e}"));
        let (_, _, back) = decode_body(&pb, None).unwrap_or_else(|e| panic!("{kind}: {e:?}"));
        assert_eq!(back, without_nulls(&v), "{kind}");
    }
}

/// `v` without null members (protobuf has no null: they are left out).
fn without_nulls(v: &Value) -> Value {
    match v {
        Value::Object(o) => Value::Object(
            o.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(without_nulls).collect()),
        v => v.clone(),
    }
}

#[test]
fn presence_omitempty_and_required_fields_follow_go_json() {
    // A Deployment with replicas 0 (a pointer: kept), paused false
    // (omitempty: dropped) and a container with no name (required: "").
    let container = [field(2, b"nginx")].concat();
    let pod_spec = field(2, &container);
    let template = field(2, &pod_spec);
    let mut spec = vec![0x08, 0x00]; // replicas = 0
    spec.extend([0x38, 0x00]); // paused = false
    spec.extend(field(3, &template));
    let raw = [field(1, &field(1, b"d")), field(2, &spec)].concat();
    let v = decode_body(&envelope_of("apps/v1", "Deployment", &raw), None)
        .unwrap()
        .2;
    assert_eq!(v["spec"]["replicas"], 0);
    assert!(v["spec"].get("paused").is_none());
    assert_eq!(
        v["spec"]["template"]["spec"]["containers"][0],
        json!({"name": "", "image": "nginx"})
    );
    // A role's rule keeps its required verbs even when none were sent.
    let raw = [field(1, &field(1, b"r")), field(2, &field(2, b""))].concat();
    let v = decode_body(
        &envelope_of("rbac.authorization.k8s.io/v1", "Role", &raw),
        None,
    )
    .unwrap()
    .2;
    assert_eq!(v["rules"], json!([{"verbs": [], "apiGroups": [""]}]));
}

#[test]
fn review_bodies_decode_with_or_without_type_meta() {
    // kubectl auth can-i: a SelfSubjectAccessReview.
    let attrs = [field(1, b"default"), field(2, b"list"), field(5, b"pods")].concat();
    let obj = [field(1, b""), field(2, &field(1, &attrs))].concat();
    let body = [MAGIC.to_vec(), field(2, &obj)].concat();
    let v = decode_kind(&body, "authorization.k8s.io/v1", "SelfSubjectAccessReview").unwrap();
    assert_eq!(
        v["spec"]["resourceAttributes"],
        json!({"namespace": "default", "verb": "list", "resource": "pods"})
    );
    // kubectl create token: a TokenRequest, expirationSeconds = 7200.
    let bound = [field(1, b"Pod"), field(3, b"web")].concat();
    let mut spec = [field(1, b"vault"), field(1, b"api"), field(3, &bound)].concat();
    spec.extend([4 << 3, 0xa0, 0x38]);
    let body = envelope_of("authentication.k8s.io/v1", "TokenRequest", &field(2, &spec));
    let v = decode_kind(&body, "authentication.k8s.io/v1", "TokenRequest").unwrap();
    assert_eq!(v["spec"]["audiences"], json!(["vault", "api"]));
    assert_eq!(v["spec"]["expirationSeconds"], 7200);
    assert_eq!(
        v["spec"]["boundObjectRef"],
        json!({"kind": "Pod", "name": "web"})
    );
    let msg = bad_request(decode_kind(
        &body,
        "authentication.k8s.io/v1",
        "TokenReview",
    ));
    assert!(msg.contains("TokenRequest"), "{msg}");
}

#[test]
fn malformed_bodies_are_400s() {
    let ns = golden("namespace");
    // Every truncation of a real body (past the envelope's type meta) fails.
    for n in 4..ns.len() - 4 {
        let r = decode_body(&ns[..n], None);
        if let Ok((_, _, v)) = &r {
            panic!("a {n}-byte prefix decoded: {v}");
        }
    }
    assert!(bad_request(decode_body(b"{\"kind\":\"Pod\"}", None)).contains("k8s\\0"));
    // The name as a varint: the wrong wire type.
    let raw = field(1, &[0x08, 0x01]);
    let msg = bad_request(decode_body(&envelope_of("v1", "Namespace", &raw), None));
    assert!(msg.contains("wire type"), "{msg}");
    // A length far past the end.
    let raw = [0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f];
    let msg = bad_request(decode_body(&envelope_of("v1", "Namespace", &raw), None));
    assert!(msg.contains("past the end"), "{msg}");
    // Invalid UTF-8 in a string.
    let raw = field(1, &field(1, &[0xff, 0xfe]));
    bad_request(decode_body(&envelope_of("v1", "Namespace", &raw), None));
    // An unknown kind, and a kind of a custom resource group.
    let msg = bad_request(decode_body(&envelope_of("v1", "Widget", b""), None));
    assert!(msg.contains("no protobuf form"), "{msg}");
    bad_request(decode_body(
        &envelope_of("example.com/v1", "Widget", b""),
        None,
    ));
    // A content encoding is refused.
    let body = [
        MAGIC.to_vec(),
        field(1, &field(2, b"Namespace")),
        field(3, b"gzip"),
    ]
    .concat();
    bad_request(decode_body(&body, None));
    // A body past the limit is a 413.
    let huge = vec![0u8; MAX_BODY + 1];
    assert!(matches!(
        decode_body(&huge, None),
        Err(ApiError::TooLarge { .. })
    ));
}

#[test]
fn deep_nesting_is_refused() {
    // JSONSchemaProps nested through `not` (field 31) 200 times.
    let mut props: Vec<u8> = field(5, b"string");
    for _ in 0..200 {
        props = field(28, &props);
    }
    let version = [field(1, b"v1"), field(4, &field(1, &props))].concat();
    let spec = [field(1, b"example.com"), field(7, &version)].concat();
    let raw = [field(1, &field(1, b"w.example.com")), field(2, &spec)].concat();
    let body = envelope_of("apiextensions.k8s.io/v1", "CustomResourceDefinition", &raw);
    let msg = bad_request(decode_body(&body, None));
    assert!(msg.contains("deeper"), "{msg}");
    // RawExtensions holding envelopes holding RawExtensions…: the same bound.
    let mut obj = Vec::new();
    for _ in 0..150 {
        let data = field(1, &[MAGIC, &obj[..]].concat());
        let revision = [field(1, &field(1, b"r")), field(2, &data)].concat();
        obj = [
            field(
                1,
                &[field(1, b"apps/v1"), field(2, b"ControllerRevision")].concat(),
            ),
            field(2, &revision),
        ]
        .concat();
    }
    bad_request(decode_body(&[MAGIC, &obj[..]].concat(), None));
}

#[test]
fn watch_events_frame_and_decode() {
    let ev = json!({"type": "ADDED", "object": {"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "c", "resourceVersion": "5"}, "data": {"a": "1"}}});
    let frame = encode_watch_event(&ev).unwrap();
    let len = u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
    assert_eq!(len, frame.len() - 4);
    assert_eq!(decode_watch_event(&frame[4..]).unwrap(), ev);
    // A custom resource has no protobuf form.
    assert!(
        encode_watch_event(
            &json!({"type": "ADDED", "object": {"apiVersion": "example.com/v1", "kind": "Widget"}})
        )
        .is_none()
    );
}

#[test]
fn accept_headers_choose_protobuf_only_when_preferred() {
    use axum::http::{HeaderMap, HeaderValue, header};
    let wants = |accept: &str| {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_str(accept).unwrap());
        negotiate::wants_protobuf(&h)
    };
    assert!(wants(
        "application/vnd.kubernetes.protobuf, application/json"
    ));
    assert!(wants(
        "application/vnd.kubernetes.protobuf,application/json"
    ));
    assert!(wants("application/vnd.kubernetes.protobuf;stream=watch"));
    assert!(!wants(
        "application/json, application/vnd.kubernetes.protobuf"
    ));
    assert!(!wants("application/json"));
    assert!(!wants("*/*"));
    assert!(!wants(
        "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
    ));
    assert!(!wants(
        "application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io,application/json"
    ));
    assert!(!wants(
        "application/vnd.kubernetes.protobuf;q=0.5, application/json"
    ));
    assert!(!wants(""));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Random bytes after the magic, in an envelope, or mutating a real
    /// body: a value or a 400, never a panic.
    #[test]
    fn random_bodies_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512),
                                 at in any::<usize>(), byte in any::<u8>()) {
        let check = |body: &[u8]| match decode_body(body, None) {
            Ok(_) | Err(ApiError::BadRequest(_)) => {}
            Err(e) => panic!("unexpected error {e:?}"),
        };
        check(&[MAGIC, &bytes[..]].concat());
        check(&envelope_of("apps/v1", "Deployment", &bytes));
        check(&envelope_of("apiextensions.k8s.io/v1", "CustomResourceDefinition", &bytes));
        let mut d = golden("deployment");
        let i = at % d.len();
        d[i] = byte;
        check(&d);
        d.truncate(i);
        check(&d);
    }
}
