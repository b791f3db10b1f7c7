#!/usr/bin/env bash
# Validates every manifest in deploy/kubernetes/ (run by .ci/run; runs alone too):
#  1. against the Kubernetes OpenAPI schemas, strictly (an unknown field is an
#     error), for 1.30 (the oldest with lifecycle.preStop.sleep) and the
#     validator's newest: kubernetes-validate from PyPI, schemas bundled, offline;
#  2. the pod specs against the "restricted" Pod Security Standard
#     (check_restricted.py, after its own self-test);
#  3. when kubectl is on the PATH, also the kustomize renderings of base/ and
#     redis/ (kustomize is not installed by this script).
# Python packages go into a venv under target/ (Debian 12's system Python
# refuses `pip install`, PEP 668).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${K8S_VALIDATE_VENV:-$root/target/k8s-validate-venv}"
py="$venv/bin/python"

if ! "$py" -c 'import kubernetes_validate, yaml' 2>/dev/null; then
  if ! command -v python3 >/dev/null; then
    apt-get update -qq && apt-get install -y -qq python3 python3-venv
  fi
  rm -rf "$venv"
  if ! python3 -m venv "$venv" 2>/dev/null; then
    apt-get update -qq && apt-get install -y -qq python3-venv
    rm -rf "$venv"
    python3 -m venv "$venv"
  fi
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    'kubernetes-validate==1.37.0' 'PyYAML==6.0.3'
fi

cd "$here"
# Every YAML file but the kustomizations (not Kubernetes objects).
mapfile -t manifests < <(find . -name '*.yaml' ! -name kustomization.yaml | sort)

validate() {
  # kubernetes-validate only warns (exit 0) for a kind it has no schema for:
  # treat that as an error, a typo in apiVersion/kind must not pass.
  local out
  if ! out="$("$venv/bin/kubernetes-validate" --strict "$@" 2>&1)"; then
    echo "$out"; return 1
  fi
  [ -z "$out" ] || echo "$out"
  if grep -q "Couldn't find schema" <<<"$out"; then
    echo "kubernetes-validate: a kind without a schema (see above)"; return 1
  fi
}

for version in 1.30.0 1.37.0; do
  echo "== kubernetes-validate --strict -k $version"
  validate --quiet -k "$version" "${manifests[@]}"
  echo "${#manifests[@]} file(s) valid against Kubernetes $version"
done

echo "== restricted Pod Security"
"$py" check_restricted.py --self-test
"$py" check_restricted.py --read-only-root "${manifests[@]}"

if command -v kubectl >/dev/null; then
  echo "== kustomize renderings (kubectl kustomize)"
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  for overlay in base redis; do
    kubectl kustomize "$overlay" >"$tmp/$overlay.yaml"
    validate --quiet -k 1.30.0 "$tmp/$overlay.yaml"
    "$py" check_restricted.py --read-only-root "$tmp/$overlay.yaml"
  done
else
  echo "== kubectl not installed: kustomize renderings not checked"
fi
