"""The official Python `kubernetes` client against keel server: list, create,
update with a conflict, label selectors, and a watch resumed across a
reconnect with the last resourceVersion (no gaps, no duplicates).

Usage: python3 client.py KUBECONFIG   (exits non-zero on any failure)
"""
import sys

from kubernetes import client, config, watch

config.load_kube_config(sys.argv[1])
v1 = client.CoreV1Api()
ns = "default"

names = [n.metadata.name for n in v1.list_namespace().items]
assert "default" in names and "kube-system" in names, names

cm = client.V1ConfigMap(
    metadata=client.V1ObjectMeta(name="py-cm", labels={"app": "py"}), data={"a": "1"}
)
created = v1.create_namespaced_config_map(ns, cm)
assert created.metadata.uid and created.metadata.resource_version
stale_rv = created.metadata.resource_version

created.data["a"] = "2"
updated = v1.replace_namespaced_config_map("py-cm", ns, created)
assert updated.data["a"] == "2"
assert int(updated.metadata.resource_version) > int(stale_rv)

created.metadata.resource_version = stale_rv
try:
    v1.replace_namespaced_config_map("py-cm", ns, created)
    raise AssertionError("a stale resourceVersion must conflict")
except client.ApiException as e:
    assert e.status == 409, e.status
    assert "Conflict" in e.body, e.body

try:
    v1.create_namespaced_config_map(ns, cm)
    raise AssertionError("a second create must fail")
except client.ApiException as e:
    assert e.status == 409 and "AlreadyExists" in e.body, e.body

listed = v1.list_namespaced_config_map(ns, label_selector="app=py")
assert [i.metadata.name for i in listed.items] == ["py-cm"], listed.items
assert v1.list_namespaced_config_map(ns, label_selector="app!=py").items == []
start_rv = listed.metadata.resource_version


def patch(value):
    return v1.patch_namespaced_config_map("py-cm", ns, {"data": {"a": value}})


def watch_until(rv, want):
    """Watch from rv until the values in `want` were seen; return (values, last rv)."""
    seen, last = [], rv
    w = watch.Watch()
    for ev in w.stream(
        v1.list_namespaced_config_map,
        ns,
        resource_version=rv,
        label_selector="app=py",
        timeout_seconds=20,
    ):
        obj = ev["object"]
        seen.append((ev["type"], obj.data["a"]))
        last = obj.metadata.resource_version
        if len(seen) == len(want):
            w.stop()
    return seen, last


patch("3")
first, last = watch_until(start_rv, ["3"])
assert first == [("MODIFIED", "3")], first

# Changes while no watch is open are delivered when the watch resumes.
patch("4")
patch("5")
second, _ = watch_until(last, ["4", "5"])
assert second == [("MODIFIED", "4"), ("MODIFIED", "5")], second

v1.delete_namespaced_config_map("py-cm", ns)
try:
    v1.read_namespaced_config_map("py-cm", ns)
    raise AssertionError("deleted object still readable")
except client.ApiException as e:
    assert e.status == 404, e.status
print("python client: ok")
