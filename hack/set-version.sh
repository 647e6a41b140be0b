#!/usr/bin/env bash
# The release version is written once, as pyproject.toml's [project] version; everything else that
# names it follows from there:
#   charts/envbranch/Chart.yaml   version and appVersion (this script writes them)
#   charts/envbranch/values.yaml  image.tag "" = the chart's appVersion (or the same version spelled out)
#   CHANGELOG.md                  a section "## [X.Y.Z] - YYYY-MM-DD" (release notes of the tag)
#   envbranch.__version__         read from the installed package's metadata
#
#   hack/set-version.sh X.Y.Z            (make version V=X.Y.Z) write X.Y.Z into pyproject.toml and
#                                        Chart.yaml; CHANGELOG.md's [Unreleased] becomes [X.Y.Z] - today
#   hack/set-version.sh --check [X.Y.Z]  exit 1 unless all of them agree (and are X.Y.Z, with its
#                                        CHANGELOG.md section, as the release workflow checks a tag)
# ENVBRANCH_ROOT names the tree to work on (default: this checkout); RELEASE_DATE the section's date.
set -euo pipefail

root=${ENVBRANCH_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}
pyproject=$root/pyproject.toml
chart=$root/charts/envbranch/Chart.yaml
values=$root/charts/envbranch/values.yaml
changelog=$root/CHANGELOG.md
repo_url=https://github.com/envbranch/envbranch

die() { echo "error: $*" >&2; exit 1; }
is_version() { [[ $1 =~ ^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$ ]]; }
# [project] version = "X" (not a version key of another table).
package_version() {
  awk '/^\[/ {in_project = ($0 == "[project]")} in_project && /^version *= *"/ {
    sub(/^version *= *"/, ""); sub(/".*/, ""); print; exit}' "$pyproject"
}
chart_field() { sed -n -E "s/^$1: *\"?([^\" ]*)\"? *(#.*)?$/\\1/p" "$chart" | head -n1; }
image_tag() {
  awk '/^[^ #]/ {in_image = ($0 ~ /^image:/)} in_image && /^  tag:/ {
    sub(/^  tag: */, ""); sub(/ *#.*/, ""); gsub(/"/, ""); print; exit}' "$values"
}
has_section() { grep -q -E "^## \[${1//./\\.}\] - [0-9]{4}-[0-9]{2}-[0-9]{2}$" "$changelog" 2>/dev/null; }

check() {
  local want=${1:-} version app tag failed=0
  version=$(package_version)
  is_version "$version" || die "pyproject.toml: [project] version \"$version\" is not X.Y.Z"
  if [ -n "$want" ] && [ "$version" != "$want" ]; then
    echo "pyproject.toml: version $version, expected $want (make version V=$want)" >&2; failed=1
  fi
  [ "$(chart_field version)" = "$version" ] ||
    { echo "Chart.yaml: version $(chart_field version), pyproject.toml: $version (make version V=$version)" >&2; failed=1; }
  app=$(chart_field appVersion)
  [ "$app" = "$version" ] ||
    { echo "Chart.yaml: appVersion $app, pyproject.toml: $version (make version V=$version)" >&2; failed=1; }
  tag=$(image_tag)
  [ -z "$tag" ] || [ "$tag" = "$version" ] ||
    { echo "values.yaml: image.tag $tag, chart appVersion $app (leave it \"\" to follow appVersion)" >&2; failed=1; }
  if [ -n "$want" ] && ! has_section "$want"; then
    echo "CHANGELOG.md: no section \"## [$want] - YYYY-MM-DD\" (make version V=$want moves [Unreleased] there)" >&2
    failed=1
  fi
  [ "$failed" = 0 ] || exit 1
  echo "version $version: pyproject.toml, Chart.yaml version and appVersion, image tag${want:+, CHANGELOG.md} agree"
}

set_version() {
  local new=$1 date=${RELEASE_DATE:-$(date -u +%F)} tmp
  is_version "$new" || die "\"$new\" is not a version X.Y.Z"
  tmp=$(mktemp)
  awk -v v="$new" '/^\[/ {in_project = ($0 == "[project]")}
    in_project && !done && /^version *= *"/ {print "version = \"" v "\""; done = 1; next} {print}' \
    "$pyproject" >"$tmp" && cat "$tmp" >"$pyproject"
  sed -E -e "s/^version: *[^ #]*/version: $new/" -e "s/^appVersion: *\"?[^\" #]*\"?/appVersion: \"$new\"/" \
    "$chart" >"$tmp" && cat "$tmp" >"$chart"
  if ! has_section "$new"; then
    grep -q -x '## \[Unreleased\]' "$changelog" || die "CHANGELOG.md has no \"## [Unreleased]\" heading"
    # [Unreleased] -> [X.Y.Z] - date under a new, empty [Unreleased]; the links at the bottom follow.
    awk -v v="$new" -v d="$date" -v url="$repo_url" '
      $0 == "## [Unreleased]" {print; print ""; print "## [" v "] - " d; next}
      /^\[Unreleased\]: / {
        prev = ""
        if (match($0, /compare\/v[^.]+\.[^.]+\.[^.]+\.\.\.HEAD$/)) {
          prev = substr($0, RSTART + 9, RLENGTH - 9 - 7)
        }
        print "[Unreleased]: " url "/compare/v" v "...HEAD"
        if (prev != "") print "[" v "]: " url "/compare/v" prev "...v" v
        else print "[" v "]: " url "/releases/tag/v" v
        next
      }
      {print}' "$changelog" >"$tmp" && cat "$tmp" >"$changelog"
  fi
  rm -f "$tmp"
  check "$new"
}

case ${1:-} in
  --check) check "${2:-}" ;;
  "" | -h | --help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; [ -n "${1:-}" ] ;;
  *) set_version "$1" ;;
esac
