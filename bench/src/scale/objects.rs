//! The objects the scale suite creates: Nodes and Pods shaped like a real
//! cluster's (about 2 KiB and 4 KiB of JSON), numbered so that pod `i` runs
//! on node `i % nodes`.

use serde_json::{Value, json};

pub fn node(i: usize) -> Value {
    let name = format!("node-{i:05}");
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {
            "kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
            "node.kubernetes.io/instance-type": "m5.xlarge", "topology.kubernetes.io/zone": format!("zone-{}", i % 3),
            "topology.kubernetes.io/region": "region-1"}},
        "spec": {"podCIDR": format!("10.{}.{}.0/24", 64 + i / 256, i % 256), "providerID": format!("example://region-1/{name}")},
        "status": {
            "capacity": {"cpu": "4", "memory": "16073948Ki", "pods": "110", "ephemeral-storage": "101445540Ki"},
            "allocatable": {"cpu": "3920m", "memory": "15035612Ki", "pods": "110", "ephemeral-storage": "93492209510"},
            "conditions": [
                {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory", "message": "kubelet has sufficient memory available", "lastHeartbeatTime": "2026-11-27T10:00:00Z", "lastTransitionTime": "2026-11-20T10:00:00Z"},
                {"type": "DiskPressure", "status": "False", "reason": "KubeletHasNoDiskPressure", "message": "kubelet has no disk pressure", "lastHeartbeatTime": "2026-11-27T10:00:00Z", "lastTransitionTime": "2026-11-20T10:00:00Z"},
                {"type": "PIDPressure", "status": "False", "reason": "KubeletHasSufficientPID", "message": "kubelet has sufficient PID available", "lastHeartbeatTime": "2026-11-27T10:00:00Z", "lastTransitionTime": "2026-11-20T10:00:00Z"},
                {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status", "lastHeartbeatTime": "2026-11-27T10:00:00Z", "lastTransitionTime": "2026-11-20T10:00:00Z"}],
            "addresses": [{"type": "InternalIP", "address": format!("192.168.{}.{}", i / 250, i % 250 + 1)}, {"type": "Hostname", "address": name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {"machineID": format!("{i:032x}"), "systemUUID": format!("{i:08x}-0000-4000-8000-000000000000"), "bootID": format!("{i:08x}-1111-4000-8000-000000000000"),
                "kernelVersion": "6.1.0-18-cloud-amd64", "osImage": "Debian GNU/Linux 12 (bookworm)", "containerRuntimeVersion": "containerd://1.7.13",
                "kubeletVersion": "v1.33.0", "kubeProxyVersion": "v1.33.0", "operatingSystem": "linux", "architecture": "amd64"}
        }
    })
}

pub fn pod(i: usize, nodes: usize) -> Value {
    let app = format!("app-{}", i % 50);
    let container = |name: &str, image: &str, port: u16| {
        json!({
            "name": name, "image": image,
            "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
            "env": [{"name": "LOG_LEVEL", "value": "info"}, {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}},
            "volumeMounts": [{"name": "config", "mountPath": "/etc/app"}, {"name": "kube-api-access", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true}],
            "livenessProbe": {"httpGet": {"path": "/healthz", "port": port}, "periodSeconds": 10},
            "readinessProbe": {"httpGet": {"path": "/ready", "port": port}, "periodSeconds": 5}
        })
    };
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": format!("{app}-{i:06}"),
            "labels": {"app": app, "tier": "backend", "pod-template-hash": "5d8f7c9b6d"},
            "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "9090"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("{app}-5d8f7c9b6d"),
                "uid": format!("{:08x}-2222-4000-8000-000000000000", i % 50), "controller": true, "blockOwnerDeletion": true}]
        },
        "spec": {
            "nodeName": format!("node-{:05}", i % nodes),
            "serviceAccountName": "default",
            "containers": [container("app", "registry.example.com/team/app:1.4.2", 8080), container("proxy", "registry.example.com/infra/proxy:2.1.0", 15001)],
            "volumes": [{"name": "config", "configMap": {"name": format!("{app}-config")}},
                {"name": "kube-api-access", "projected": {"sources": [{"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}}]}}],
            "tolerations": [
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}]
        },
        "status": {
            "phase": "Running", "qosClass": "Burstable",
            "hostIP": format!("192.168.{}.{}", (i % nodes) / 250, (i % nodes) % 250 + 1),
            "podIP": format!("10.{}.{}.{}", 64 + (i % nodes) / 256, (i % nodes) % 256, i / nodes % 250 + 2),
            "startTime": "2026-11-27T10:00:00Z",
            "conditions": [
                {"type": "Initialized", "status": "True", "lastTransitionTime": "2026-11-27T10:00:00Z"},
                {"type": "Ready", "status": "True", "lastTransitionTime": "2026-11-27T10:00:05Z"},
                {"type": "ContainersReady", "status": "True", "lastTransitionTime": "2026-11-27T10:00:05Z"},
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-11-27T10:00:00Z"}],
            "containerStatuses": [
                {"name": "app", "ready": true, "restartCount": 0, "image": "registry.example.com/team/app:1.4.2", "imageID": "registry.example.com/team/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "containerID": format!("containerd://{i:064x}"), "started": true, "state": {"running": {"startedAt": "2026-11-27T10:00:02Z"}}},
                {"name": "proxy", "ready": true, "restartCount": 0, "image": "registry.example.com/infra/proxy:2.1.0", "imageID": "registry.example.com/infra/proxy@sha256:fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210", "containerID": format!("containerd://{:064x}", (i + 1) << 20), "started": true, "state": {"running": {"startedAt": "2026-11-27T10:00:03Z"}}}]
        }
    })
}

/// How many of `pods` pods run on node number `node`.
pub fn pods_on(node: usize, nodes: usize, pods: usize) -> usize {
    pods / nodes + usize::from(node < pods % nodes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_are_spread_over_the_nodes_they_name() {
        let (nodes, pods) = (7, 45);
        for n in 0..nodes {
            let named = (0..pods)
                .filter(|i| pod(*i, nodes)["spec"]["nodeName"] == format!("node-{n:05}"))
                .count();
            assert_eq!(pods_on(n, nodes, pods), named, "node {n}");
        }
    }
}
