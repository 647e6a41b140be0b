#!/usr/bin/env bash
# Builds actionlint (the GitHub Actions workflow linter make lint runs) from the Go module in
# hack/actionlint into $ENVBRANCH_CACHE/actionlint-<v>/ (skipped when it is already there), next to
# helm and kubeconform (hack/build-tools.sh). Its own module: its dependencies never move helm's.
# Concurrent runs wait on a lock, so it is built once. Prints the directory holding the binary on
# its last line.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
modver() { awk -v m="$1" '{for (i = 1; i < NF; i++) if ($i == m) {print $(i + 1); exit}}' "$here/actionlint/go.mod"; }
version=$(modver github.com/rhysd/actionlint)
cache=${ENVBRANCH_CACHE:-$HOME/.cache/envbranch}
out="$cache/actionlint-${version}"

if [ -x "$out/actionlint" ]; then echo "$out"; exit 0; fi

if ! command -v go >/dev/null 2>&1; then
  echo "error: the Go toolchain (the version hack/actionlint/go.mod names, or newer) is needed to build actionlint." >&2
  echo "       Install it (Debian: apt-get install golang-go, or from go.dev) and run make again." >&2
  exit 1
fi

mkdir -p "$cache"
exec 9>"$out.lock"
flock 9
# Another run may have built it while this one waited for the lock.
if [ -x "$out/actionlint" ]; then echo "$out"; exit 0; fi

rm -rf "$out.tmp" && mkdir -p "$out.tmp"
export CGO_ENABLED=0 GOFLAGS=-mod=mod
echo ">> building actionlint $version into $out" >&2
# No -X flags: actionlint -version reads its version from the build info of the module it was built from.
(cd "$here/actionlint" && go build -trimpath -ldflags "-s -w" -o "$out.tmp/" \
  github.com/rhysd/actionlint/cmd/actionlint) >&2
rm -rf "$out" && mv "$out.tmp" "$out"
echo "$out"
