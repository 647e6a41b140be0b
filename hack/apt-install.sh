#!/usr/bin/env bash
# Best effort: install the Debian packages named after the first argument that are not installed
# yet. The first argument says what happens without them (printed when they cannot be had).
#   bash hack/apt-install.sh "tests run against PostgreSQL 18 only" postgresql-15
set -uo pipefail
without=$1
shift
want=()
for pkg in "$@"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || want+=("$pkg")
done
[ ${#want[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "note: no root/apt to install ${want[*]}: $without" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
# Tests and benchmarks start their own servers: a PostgreSQL package must not create and start a
# cluster of its own.
mkdir -p /etc/postgresql-common/createcluster.d
echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.d/envbranch.conf
apt-get update -qq >/dev/null || true
for pkg in "${want[@]}"; do
  apt-get install -y -qq --no-install-recommends "$pkg" >/dev/null ||
    echo "note: apt-get install $pkg failed: $without" >&2
done
exit 0
