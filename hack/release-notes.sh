#!/usr/bin/env bash
# Prints the body of CHANGELOG.md's section "## [X.Y.Z] - date" (the release notes of tag vX.Y.Z);
# exit 1 when there is no such section or it is empty.
#   hack/release-notes.sh X.Y.Z [CHANGELOG.md]
set -euo pipefail
version=${1:?usage: hack/release-notes.sh X.Y.Z [CHANGELOG.md]}
changelog=${2:-$(cd "$(dirname "$0")/.." && pwd)/CHANGELOG.md}
notes=$(awk -v heading="## [$version] - " '
  index($0, heading) == 1 {inside = 1; next}
  inside && (/^## / || /^\[[^]]+\]: /) {exit}
  inside {print}' "$changelog" | sed -e '/./,$!d')   # leading blank lines dropped ($(...) drops trailing ones)
if [ -z "${notes//[[:space:]]/}" ]; then
  echo "error: $changelog has no notes under \"## [$version] - YYYY-MM-DD\"" >&2
  exit 1
fi
printf '%s\n' "$notes"
