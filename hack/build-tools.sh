#!/usr/bin/env bash
# Builds helm and kubeconform from the Go module in hack/tools into
# $ENVBRANCH_CACHE/tools-helm-<v>-kubeconform-<v>/ (skipped when both are already there), next to
# the control plane. Concurrent runs wait on a lock, so the tools are built once.
# Prints the directory holding the binaries on its last line.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
modver() { awk -v m="$1" '{for (i = 1; i < NF; i++) if ($i == m) {print $(i + 1); exit}}' "$here/tools/go.mod"; }
helm_version=$(modver helm.sh/helm/v3)
kubeconform_version=$(modver github.com/yannh/kubeconform)
cache=${ENVBRANCH_CACHE:-$HOME/.cache/envbranch}
out="$cache/tools-helm-${helm_version}-kubeconform-${kubeconform_version}"
bins=(helm kubeconform)

have_all() { for b in "${bins[@]}"; do [ -x "$out/$b" ] || return 1; done; }
if have_all; then echo "$out"; exit 0; fi

if ! command -v go >/dev/null 2>&1; then
  echo "error: the Go toolchain (the version hack/tools/go.mod names, or newer) is needed to build helm and kubeconform." >&2
  echo "       Install it (Debian: apt-get install golang-go, or from go.dev) and run make again." >&2
  exit 1
fi

mkdir -p "$cache"
exec 9>"$out.lock"
flock 9
# Another run may have built them while this one waited for the lock.
if have_all; then echo "$out"; exit 0; fi

rm -rf "$out.tmp" && mkdir -p "$out.tmp"
export CGO_ENABLED=0 GOFLAGS=-mod=mod
# As helm's own Makefile does: its default Kubernetes version (`helm template`, `helm lint`) is that of
# the client-go it is built with. -X main.version stamps kubeconform (helm's main has no such variable).
k8s_minor=$(modver k8s.io/client-go | cut -d. -f2)
ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$helm_version \
 -X helm.sh/helm/v3/internal/version.gitTreeState=clean -X main.version=$kubeconform_version"
for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
  ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$k8s_minor"
done
echo ">> building helm $helm_version and kubeconform $kubeconform_version into $out" >&2
(cd "$here/tools" && go build -trimpath -ldflags "$ldflags" -o "$out.tmp/" \
  helm.sh/helm/v3/cmd/helm github.com/yannh/kubeconform/cmd/kubeconform) >&2
rm -rf "$out" && mv "$out.tmp" "$out"
echo "$out"
