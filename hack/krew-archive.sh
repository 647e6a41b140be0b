#!/usr/bin/env bash
# The krew plugin of a release (make krew), from the wheel make dist built. Writes into OUT_DIR:
#   kubectl-envbranch-vX.Y.Z.tar.gz  kubectl-envbranch (krew/launcher.py), the wheel, constraints.txt
#                                    and LICENSE; the same bytes for the same inputs (sorted entries,
#                                    owner 0, mtime of the last commit or SOURCE_DATE_EPOCH)
#   envbranch.yaml                   krew/envbranch.yaml with the version and the archive's sha256
#   hack/krew-archive.sh DIST_DIR OUT_DIR
set -euo pipefail
usage="usage: hack/krew-archive.sh DIST_DIR OUT_DIR"
root=$(cd "$(dirname "$0")/.." && pwd)
dist=${1:?$usage}
out=${2:?$usage}

shopt -s nullglob
wheels=("$dist"/envbranch-*-py3-none-any.whl)
[ ${#wheels[@]} -eq 1 ] || { echo "error: expected one envbranch wheel in $dist (make dist), found ${#wheels[@]}" >&2; exit 1; }
wheel=${wheels[0]}
version=$(basename "$wheel" | cut -d- -f2)
archive=kubectl-envbranch-v$version.tar.gz
epoch=${SOURCE_DATE_EPOCH:-$(git -C "$root" log -1 --format=%ct 2>/dev/null || echo 0)}

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
install -m 0755 "$root/krew/launcher.py" "$stage/kubectl-envbranch"
install -m 0644 "$wheel" "$root/constraints.txt" "$root/LICENSE" "$stage/"
mkdir -p "$out"
(cd "$stage" && tar --sort=name --mtime="@$epoch" --owner=0 --group=0 --numeric-owner -cf - \
  kubectl-envbranch "$(basename "$wheel")" constraints.txt LICENSE) | gzip -n -9 >"$out/$archive"
if command -v sha256sum >/dev/null; then sha=$(sha256sum "$out/$archive"); else sha=$(shasum -a 256 "$out/$archive"); fi
sha=${sha%% *}
# The manifest without the template's leading comment.
awk 'started || !/^#/ {started = 1; print}' "$root/krew/envbranch.yaml" |
  sed -e "s/@VERSION@/$version/g" -e "s/@SHA256@/$sha/g" >"$out/envbranch.yaml"
echo "$out/$archive"
echo "$out/envbranch.yaml"
