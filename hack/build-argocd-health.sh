#!/usr/bin/env bash
# Builds hack/argocd-health (the chart's Argo CD health checks on gopher-lua, as Argo CD runs them)
# into $ENVBRANCH_CACHE/argocd-health-gopher-lua-<version>/ (skipped when already there).
# Prints the directory holding the binary on its last line.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
version=$(awk '$1 == "require" && $2 == "github.com/yuin/gopher-lua" {print $3}' "$here/argocd-health/go.mod")
cache=${ENVBRANCH_CACHE:-$HOME/.cache/envbranch}
out="$cache/argocd-health-gopher-lua-$version"
src_sum=$(cat "$here/argocd-health/main.go" "$here/argocd-health/go.mod" | sha256sum | cut -c1-12)
[ -x "$out/argocd-health-$src_sum" ] && { echo "$out"; exit 0; }
command -v go >/dev/null || { echo "error: Go is needed to build hack/argocd-health" >&2; exit 1; }
mkdir -p "$out"
exec 9>"$out/.lock"
flock 9
if [ ! -x "$out/argocd-health-$src_sum" ]; then
  (cd "$here/argocd-health" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w" \
    -o "$out/argocd-health-$src_sum.tmp" .) >&2
  mv "$out/argocd-health-$src_sum.tmp" "$out/argocd-health-$src_sum"
  ln -sfn "argocd-health-$src_sum" "$out/argocd-health"
fi
echo "$out"
