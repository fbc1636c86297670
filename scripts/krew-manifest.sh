#!/usr/bin/env bash
# Writes the krew manifest of a release: deploy/krew/qms.yaml with ${REPO_URL} and the archives'
# sha256 filled in.
#
# usage: scripts/krew-manifest.sh REPO_URL DIST_DIR [OUT]
#   REPO_URL  https://github.com/<owner>/<repo> (the release is <REPO_URL>/releases/tag/v<version>)
#   DIST_DIR  holds kubectl-qms_v<version>_<os>_<arch>.tar.gz for linux and darwin, amd64 and
#             arm64, each with the `kubectl-qms` binary at its top level, e.g.
#               cargo build --release -p kubectl-qms --target aarch64-unknown-linux-musl
#               tar -czf DIST_DIR/kubectl-qms_v0.1.0_linux_arm64.tar.gz \
#                 -C target/aarch64-unknown-linux-musl/release kubectl-qms
#   OUT       where to write the manifest (default DIST_DIR/qms.yaml); upload it with the
#             archives, or submit it to a krew index as plugins/qms.yaml.
# Nothing is written unless every archive exists and holds the binary.
set -euo pipefail

die() {
  echo "krew-manifest: $*" >&2
  exit 1
}

[ $# -ge 2 ] && [ $# -le 3 ] || die "usage: $0 REPO_URL DIST_DIR [OUT]"
repo_url=${1%/}
dist=$2
out=${3:-$dist/qms.yaml}
case $repo_url in
  https://*) ;;
  *) die "REPO_URL must be an https:// URL, got '$repo_url'" ;;
esac
case $repo_url in
  *[[:space:]\"\'\$]*) die "REPO_URL must not contain spaces, quotes or \$" ;;
esac

root=$(cd "$(dirname "$0")/.." && pwd)
template=$root/deploy/krew/qms.yaml
version=$(sed -n 's/^  version: //p' "$template")
[ -n "$version" ] || die "no spec.version in $template"

# The template's comment header names the placeholders: the release manifest gets its own.
manifest="# krew manifest of kubectl-qms $version, written by scripts/krew-manifest.sh
$(grep -v '^#' "$template")"
manifest=${manifest//'${REPO_URL}'/$repo_url}
for os in linux darwin; do
  for arch in amd64 arm64; do
    archive=$dist/kubectl-qms_${version}_${os}_${arch}.tar.gz
    [ -f "$archive" ] || die "missing archive $archive"
    tar -tzf "$archive" 2>/dev/null | grep -qxE '(\./)?kubectl-qms' ||
      die "$archive does not hold kubectl-qms at its top level"
    sum=$(sha256sum "$archive" | cut -d' ' -f1)
    placeholder="\${SHA256_${os^^}_${arch^^}}"
    manifest=${manifest//"$placeholder"/$sum}
  done
done
if grep -q '\${' <<<"$manifest"; then
  die "placeholders left in the manifest: $(grep -o '\${[^}]*}' <<<"$manifest" | sort -u | tr '\n' ' ')"
fi

tmp=$(mktemp "$out.XXXXXX")
printf '%s\n' "$manifest" >"$tmp"
mv "$tmp" "$out"
echo "$out"
