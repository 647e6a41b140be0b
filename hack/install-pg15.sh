#!/usr/bin/env bash
# Installs Debian's PostgreSQL 15 server (a second version for the tests) when it is missing.
# Best effort: without root or apt the tests run against PostgreSQL 18 alone.
set -euo pipefail
if [ -x /usr/lib/postgresql/15/bin/postgres ]; then exit 0; fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "note: PostgreSQL 15 not installed and no root/apt; tests run against PostgreSQL 18 only" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
# Tests start their own servers; the package must not create and start a cluster of its own.
mkdir -p /etc/postgresql-common/createcluster.d
echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.d/envbranch.conf
apt-get update -qq
apt-get install -y -qq --no-install-recommends postgresql-15 >/dev/null || \
  echo "note: apt-get install postgresql-15 failed; tests run against PostgreSQL 18 only" >&2
