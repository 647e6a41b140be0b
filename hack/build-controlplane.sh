#!/usr/bin/env bash
# Builds etcd, kube-apiserver, kube-controller-manager and kubectl from Go modules into
# $ENVBRANCH_CACHE/k8s-<version>/ (skipped when every binary is already there).
# Prints the directory holding the binaries on its last line.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# The versions are the ones the two go.mod files pin.
modver() { awk -v m="$2" '{for (i = 1; i < NF; i++) if ($i == m) {print $(i + 1); exit}}' "$here/$1/go.mod"; }
k8s_version=$(modver k8s k8s.io/kubernetes)
etcd_version=$(modver etcd go.etcd.io/etcd/server/v3)
cache=${ENVBRANCH_CACHE:-$HOME/.cache/envbranch}
out="$cache/k8s-${k8s_version}-etcd-${etcd_version}"
bins=(etcd kube-apiserver kube-controller-manager kubectl)

have_all() { for b in "${bins[@]}"; do [ -x "$out/$b" ] || return 1; done; }
if have_all; then echo "$out"; exit 0; fi
# One build at a time: a second caller waits for the first and then finds the binaries.
mkdir -p "$cache"
exec 9>"$cache/.build-controlplane.lock"
flock 9
if have_all; then echo "$out"; exit 0; fi

if ! command -v go >/dev/null 2>&1; then
  echo "error: the Go toolchain (>= 1.26) is needed to build the local control plane." >&2
  echo "       Install it (Debian: apt-get install golang-go, or from go.dev) and run make again," >&2
  echo "       or point KUBEBUILDER_ASSETS at a folder holding etcd, kube-apiserver and kubectl." >&2
  exit 1
fi

mkdir -p "$out.tmp"
export CGO_ENABLED=0 GOFLAGS=-mod=mod
minor=$(echo "$k8s_version" | cut -d. -f2)
pkg=k8s.io/component-base/version
ldflags="-s -w -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor \
 -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
echo ">> building kube-apiserver, kube-controller-manager, kubectl $k8s_version into $out" >&2
(cd "$here/k8s" && go build -trimpath -ldflags "$ldflags" -o "$out.tmp/" \
  k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kubectl) >&2
echo ">> building etcd $etcd_version" >&2
(cd "$here/etcd" && go build -trimpath -ldflags "-s -w" -o "$out.tmp/etcd" .) >&2
rm -rf "$out" && mv "$out.tmp" "$out"
echo "$out"
