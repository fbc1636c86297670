#!/usr/bin/env bash
# Builds the real Kubernetes control plane the real-tier tests run against (crates/kube-real):
# kube-apiserver and kube-controller-manager v1.20.2 from Debian bookworm's source package
# `kubernetes` (vendored; the newest Debian source package that still builds the server binaries),
# compiled with Go 1.15 (Debian bullseye's golang-1.15-go; Go 1.19 builds an apiserver that crashes
# in json-iterator), plus etcd from Debian's etcd-server package. Only Debian's packages are used.
#
# Result: .tools/kube-1.20.2/bin/{kube-apiserver,kube-controller-manager,etcd}. Cached by version:
# a second run with the binaries present does nothing. Cold: about 8-15 minutes on 2 cores.
# Needs root for apt-get (as on CI). Each failing step says which step failed and why.
set -euo pipefail
KUBE_VERSION="1.20.2"
KUBE_SRC_VERSION="${QMS_KUBE_SRC_VERSION:-1.20.5+really1.20.2-1.1+deb12u1}"
GO_PKG="golang-1.15-go"
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="$root/.tools/kube-$KUBE_VERSION"
bin="$dest/bin"
stamp="$dest/installed-from"
want="kubernetes=$KUBE_SRC_VERSION $GO_PKG etcd-server"

say() { echo "install-kube: $*" >&2; }
fail() {
  say "FAILED at step '$step': $*"
  if [[ -n "${log:-}" && -s "$log" ]]; then
    say "last lines of $log:"
    tail -n 40 "$log" >&2
  fi
  exit 1
}
step="check cache"

if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -x "$bin/kube-apiserver" \
  && -x "$bin/kube-controller-manager" && -x "$bin/etcd" ]] \
  && "$bin/kube-apiserver" --version >/dev/null 2>&1 && "$bin/etcd" --version >/dev/null 2>&1; then
  exit 0
fi

start=$(date +%s)
[[ "$(id -u)" == 0 ]] || fail "apt-get needs root; run as root or install $want by hand into $bin"
command -v apt-get >/dev/null || fail "apt-get is required (Debian or a Debian-based machine)"

work="$root/.tools/kube-build"
rm -rf "$work"
mkdir -p "$work"
log="$work/step.log"

step="apt sources"
# deb-src for bookworm (the kubernetes source package) and bullseye's binaries (golang-1.15-go).
# bullseye's versions are all older than bookworm's, so adding it upgrades nothing.
cat >/etc/apt/sources.list.d/qms-kube.sources <<'EOF'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian
Suites: bullseye
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
say "apt-get update (deb-src bookworm, bullseye for $GO_PKG)"
apt-get update -q >"$log" 2>&1 || fail "apt-get update failed (network to Debian's mirrors?)"

step="install build tools"
say "installing $GO_PKG, rsync, dpkg-dev, make"
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
  "$GO_PKG" rsync dpkg-dev make openssl >"$log" 2>&1 || fail "apt-get install $GO_PKG rsync dpkg-dev failed"
goroot="/usr/lib/go-1.15"
[[ -x "$goroot/bin/go" ]] || fail "$goroot/bin/go missing after installing $GO_PKG"

step="etcd"
say "fetching etcd from etcd-server"
(cd "$work" && apt-get download -q etcd-server >"$log" 2>&1) || fail "apt-get download etcd-server failed"
dpkg-deb -x "$work"/etcd-server_*.deb "$work/etcd" || fail "cannot unpack etcd-server"
mkdir -p "$bin"
install -m 0755 "$work/etcd/usr/bin/etcd" "$bin/etcd"
"$bin/etcd" --version >/dev/null 2>&1 || fail "etcd from etcd-server does not run"

step="kubernetes source"
say "apt-get source kubernetes=$KUBE_SRC_VERSION (34 MB)"
(cd "$work" && apt-get source -q "kubernetes=$KUBE_SRC_VERSION" >"$log" 2>&1) \
  || fail "apt-get source kubernetes=$KUBE_SRC_VERSION failed (is the bookworm deb-src entry reachable?)"
src="$(find "$work" -maxdepth 1 -mindepth 1 -type d -name 'kubernetes-*' | head -n1)"
[[ -n "$src" && -f "$src/Makefile" ]] || fail "no unpacked kubernetes source tree in $work"

step="build"
say "building kube-apiserver and kube-controller-manager with Go 1.15 (GOPATH mode; 7-15 minutes)"
gopath="$work/gopath"
mkdir -p "$gopath/src/k8s.io"
ln -s "$src" "$gopath/src/k8s.io/kubernetes"
(
  cd "$gopath/src/k8s.io/kubernetes"
  export PATH="$goroot/bin:$PATH" GOROOT="$goroot" GOPATH="$gopath" GO111MODULE=off
  export GOCACHE="$work/gocache" GOFLAGS="" CGO_ENABLED=0
  # No .git in the source tree: the version comes from a file (hack/lib/version.sh), not from the
  # enclosing repository's git.
  printf "KUBE_GIT_COMMIT='debian-%s'\nKUBE_GIT_TREE_STATE='clean'\nKUBE_GIT_VERSION='v%s'\nKUBE_GIT_MAJOR='1'\nKUBE_GIT_MINOR='20'\n" \
    "$KUBE_SRC_VERSION" "$KUBE_VERSION" >"$work/version.env"
  export KUBE_GIT_VERSION_FILE="$work/version.env" KUBE_BUILD_PLATFORMS=linux/amd64
  make WHAT="cmd/kube-apiserver cmd/kube-controller-manager"
) >"$log" 2>&1 || fail "make WHAT=\"cmd/kube-apiserver cmd/kube-controller-manager\" failed"

step="install"
for b in kube-apiserver kube-controller-manager; do
  f="$(find "$src/_output" -type f -name "$b" -perm -u+x | head -n1)"
  [[ -n "$f" ]] || fail "the build produced no $b under $src/_output"
  install -m 0755 "$f" "$bin/$b"
  "$bin/$b" --version >/dev/null 2>&1 || fail "$bin/$b does not run"
done
echo "$want" >"$stamp"
rm -rf "$work"
say "kube-apiserver $("$bin/kube-apiserver" --version | awk '{print $2}'), kube-controller-manager and etcd installed in $bin ($(($(date +%s) - start)) s)"
