#!/usr/bin/env python3
"""Generates apiserver/src/registry/protobuf/k8s-proto.json: the protobuf
schema of every stable Kubernetes API group, as the table the protobuf codec
(apiserver/src/registry/protobuf/) interprets.

Facts read, nothing copied: field numbers, wire types, repeated and map
fields come from the generated.proto files of k8s.io/api, apimachinery,
apiextensions-apiserver and kube-aggregator; the JSON side of each field (its
JSON name, `omitempty`, pointer or not, `inline`) from the Go struct tags of
the same packages, matched by field number.

Usage: scripts/gen-k8s-proto.py [MIRROR_ROOT [REF]]
MIRROR_ROOT holds bare clones kubernetes+api/repo, kubernetes+apimachinery/repo,
kubernetes+apiextensions-apiserver/repo and kubernetes+kube-aggregator/repo
(default /work/.mirror, as the `fetch` tool leaves them); REF is the
branch read in each (default release-1.33).

Table format (JSON):
  {"groups":   {"<apiVersion>": "<proto package>"},
   "messages": {"<package>.<Message>":
                {"f": [[number, jsonName, type, flags(, mapValueType)]...],
                 "s": "<special>" (absent for plain messages)}}}
type: a scalar (string bool int32 int64 uint32 uint64 double float bytes),
"map" (key type string; value type is element 5) or a message's full name.
flags: 1 repeated, 2 omitempty (a zero value is left out of JSON),
4 pointer (presence kept: a present zero is kept), 8 inline (the message's
fields sit in the parent's JSON object).
"""

import json
import os
import re
import subprocess
import sys

ROOT = sys.argv[1] if len(sys.argv) > 1 else "/work/.mirror"
# The Kubernetes release the server speaks (kubectl 1.33, k8s-openapi v1_33).
REF = sys.argv[2] if len(sys.argv) > 2 else "release-1.33"
OUT = os.path.join(
    os.path.dirname(os.path.abspath(__file__)),
    "..", "apiserver", "src", "registry", "protobuf", "k8s-proto.json",
)

# (repository, package directories, groupName fallback)
APIM = "kubernetes+apimachinery"
SOURCES = [
    (APIM, ["pkg/apis/meta/v1", "pkg/runtime", "pkg/util/intstr", "pkg/api/resource"]),
    ("kubernetes+apiextensions-apiserver", ["pkg/apis/apiextensions/v1"]),
    ("kubernetes+kube-aggregator", ["pkg/apis/apiregistration/v1"]),
]

# Messages whose JSON is not their fields (custom Go JSON marshalling).
META = "k8s.io.apimachinery.pkg.apis.meta.v1."
EXT = "k8s.io.apiextensions_apiserver.pkg.apis.apiextensions.v1."
SPECIAL = {
    META + "Time": "time",
    META + "MicroTime": "microtime",
    META + "Duration": "duration",
    META + "FieldsV1": "fieldsv1",
    "k8s.io.apimachinery.pkg.runtime.RawExtension": "rawext",
    "k8s.io.apimachinery.pkg.api.resource.Quantity": "quantity",
    "k8s.io.apimachinery.pkg.api.resource.QuantityValue": "quantity",
    "k8s.io.apimachinery.pkg.util.intstr.IntOrString": "intorstring",
    EXT + "JSON": "json",
    EXT + "JSONSchemaPropsOrArray": "orarray",
    EXT + "JSONSchemaPropsOrBool": "orbool",
    EXT + "JSONSchemaPropsOrStringArray": "orstringarray",
}


def git(repo, *args):
    return subprocess.run(
        ["git", "--git-dir", os.path.join(ROOT, repo, "repo"), *args],
        check=True, capture_output=True, text=True,
    ).stdout


def files(repo):
    return git(repo, "ls-tree", "-r", "--name-only", REF).split("\n")


def show(repo, path):
    return git(repo, "show", f"{REF}:{path}")


FIELD = re.compile(r"^\s*(optional|repeated)\s+(\.?[\w.]+)\s+(\w+)\s*=\s*(\d+)\s*;")
MAP = re.compile(r"^\s*map<\s*(\w+)\s*,\s*(\.?[\w.]+)\s*>\s+(\w+)\s*=\s*(\d+)\s*;")


def parse_proto(text):
    """{message name: [(number, name, label, type, map value type)]}, package."""
    package = re.search(r"^package\s+([\w.]+)\s*;", text, re.M).group(1)
    messages, current = {}, None
    for line in text.split("\n"):
        m = re.match(r"^message\s+(\w+)\s*\{", line)
        if m:
            current = messages.setdefault(m.group(1), [])
            continue
        if line.startswith("}"):
            current = None
            continue
        if current is None:
            continue
        m = FIELD.match(line)
        if m:
            current.append((int(m.group(4)), m.group(3), m.group(1), m.group(2), None))
            continue
        m = MAP.match(line)
        if m:
            current.append((int(m.group(4)), m.group(3), "map", m.group(1), m.group(2)))
    return package, messages


def parse_go(texts):
    """{struct: {number: (json name, omitempty, pointer, inline, skip)}} and
    the named slice types (`type Verbs []string`)."""
    structs, slices = {}, set()
    for text in texts:
        for m in re.finditer(r"^type\s+(\w+)\s+\[\]", text, re.M):
            slices.add(m.group(1))
        for m in re.finditer(r"^type\s+(\w+)\s+struct\s*\{(.*?)^\}", text, re.M | re.S):
            fields = structs.setdefault(m.group(1), {})
            for line in m.group(2).split("\n"):
                line = line.split("//")[0] if "`" not in line else line
                t = re.search(r"`([^`]*)`", line)
                if not t:
                    continue
                tag = t.group(1)
                pb = re.search(r'protobuf:"[^",]*,(\d+),', tag)
                if not pb:
                    continue
                js = re.search(r'json:"([^"]*)"', tag)
                parts = (js.group(1) if js else "").split(",")
                tokens = line[: t.start()].split()
                gotype = tokens[-1] if tokens else ""
                name = parts[0]
                fields[int(pb.group(1))] = (
                    name,
                    "omitempty" in parts[1:],
                    gotype.startswith("*"),
                    name == "" and ("inline" in parts[1:] or len(tokens) == 1),
                    name == "-",
                )
    return structs, slices


def package_sources():
    """(repo, dir, groupName or None) of every package in the table."""
    out = []
    api = files("kubernetes+api")
    for f in api:
        m = re.match(r"^([\w]+)/(v\d+)/generated\.proto$", f)
        if m:
            out.append(("kubernetes+api", f"{m.group(1)}/{m.group(2)}"))
    for repo, dirs in SOURCES:
        out.extend((repo, d) for d in dirs)
    return out


def main():
    groups, messages = {}, {}
    for repo, d in package_sources():
        names = [f for f in files(repo) if f.startswith(d + "/") and "/" not in f[len(d) + 1:]]
        package, protos = parse_proto(show(repo, d + "/generated.proto"))
        gos = [
            show(repo, f) for f in names
            if f.endswith(".go") and not f.endswith("_test.go")
            and not os.path.basename(f).startswith(("zz_generated", "generated."))
            and not f.endswith("swagger_doc_generated.go")
        ]
        structs, slices = parse_go(gos)
        # The group: doc.go's `+groupName=` or register.go's `GroupName`.
        group = None
        for f in names:
            if f.endswith(("/doc.go", "/register.go")):
                text = show(repo, f)
                g = re.search(r"^// \+groupName=(\S*)", text, re.M) or re.search(
                    r'^const GroupName = "([^"]*)"', text, re.M)
                if g:
                    group = g.group(1)
        if re.search(r"/v\d+$", d) and group is not None and "meta/v1" not in d:
            version = d.rsplit("/", 1)[1]
            groups[f"{group}/{version}" if group else version] = package
        for name, fields in protos.items():
            full = f"{package}.{name}"
            go = structs.get(name, {})
            out = []
            for number, fname, label, ftype, value in fields:
                json_name, omitempty, pointer, inline, skip = go.get(
                    number, (fname, True, False, False, False))
                if skip:
                    continue
                flags = (1 if label == "repeated" else 0) | (2 if omitempty else 0) \
                    | (4 if pointer else 0) | (8 if inline else 0)
                if label == "map":
                    out.append([number, json_name, "map", flags, resolve(package, value)])
                else:
                    out.append([number, json_name, resolve(package, ftype), flags])
            messages[full] = {"f": sorted(out)}
            # Specials keep their fields: the codec reads the unions' schema
            # message and the lists' item type from them.
            if full in SPECIAL:
                messages[full]["s"] = SPECIAL[full]
            elif name in slices and len(fields) == 1 and fields[0][2] == "repeated":
                messages[full]["s"] = "list"
    # Every message a field names must be in the table.
    for full, m in messages.items():
        for f in m.get("f", []):
            for t in f[2:3] + f[4:5]:
                if t.startswith("k8s.io.") and t not in messages:
                    sys.exit(f"{full}.{f[1]}: unknown message {t}")
    table = {"groups": dict(sorted(groups.items())), "messages": dict(sorted(messages.items()))}
    with open(OUT, "w") as fh:
        json.dump(table, fh, separators=(",", ":"))
        fh.write("\n")
    print(f"{OUT}: {len(groups)} group versions, {len(messages)} messages")


SCALARS = {"string", "bool", "int32", "int64", "uint32", "uint64", "double", "float", "bytes"}


def resolve(package, t):
    if t in SCALARS:
        return t
    if t.startswith("."):
        return t[1:]
    return f"{package}.{t}"


if __name__ == "__main__":
    main()
