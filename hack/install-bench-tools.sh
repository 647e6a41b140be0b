#!/usr/bin/env bash
# Best effort, for `make bench`: pgcopydb (P3's third hand-made baseline) and xfsprogs (P8 makes a
# reflink XFS loop file system with it). Whatever cannot be installed is reported in the results.
set -uo pipefail
want=()
command -v pgcopydb >/dev/null || want+=(pgcopydb)
command -v mkfs.xfs >/dev/null || want+=(xfsprogs)
[ ${#want[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "note: no root/apt to install ${want[*]}; the benchmark reports them as unavailable" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
# pgcopydb pulls in postgresql-common: it must not create and start a cluster of its own.
mkdir -p /etc/postgresql-common/createcluster.d
echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.d/envbranch.conf
apt-get update -qq >/dev/null || true
for pkg in "${want[@]}"; do
  apt-get install -y -qq --no-install-recommends "$pkg" >/dev/null ||
    echo "note: apt-get install $pkg failed; the benchmark reports it as unavailable" >&2
done
exit 0
