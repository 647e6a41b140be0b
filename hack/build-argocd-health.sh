#!/usr/bin/env bash
# Builds hack/argocd-health (the chart's Argo CD health checks run by Argo CD's own util/lua package)
# into $ENVBRANCH_CACHE/argocd-health-argo-cd-<version>/ (skipped when already there).
# Prints the directory holding the binary on its last line.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# Argo CD v3.6 needs Go 1.27; the go command fetches this toolchain from the Go module proxy.
export GOTOOLCHAIN=go1.27.3
version=$(awk '$1 == "github.com/argoproj/argo-cd/v3" {print $2; exit}' "$here/argocd-health/go.mod")
cache=${ENVBRANCH_CACHE:-$HOME/.cache/envbranch}
out="$cache/argocd-health-argo-cd-$version"
src_sum=$(cat "$here/argocd-health/main.go" "$here/argocd-health/go.mod" "$here/argocd-health/go.sum" | sha256sum | cut -c1-12)
[ -x "$out/argocd-health-$src_sum" ] && { echo "$out"; exit 0; }
command -v go >/dev/null || { echo "error: Go is needed to build hack/argocd-health" >&2; exit 1; }
mkdir -p "$out"
exec 9>"$out/.lock"
flock 9
if [ ! -x "$out/argocd-health-$src_sum" ]; then
  (cd "$here/argocd-health" && CGO_ENABLED=0 GOFLAGS=-mod=readonly go build -trimpath -ldflags "-s -w" \
    -o "$out/argocd-health-$src_sum.tmp" .) >&2
  mv "$out/argocd-health-$src_sum.tmp" "$out/argocd-health-$src_sum"
  ln -sfn "argocd-health-$src_sum" "$out/argocd-health"
fi
echo "$out"
