#!/usr/bin/env bash
# Best effort, for `make lint`: shellcheck from Debian's apt (tests/unit/test_packaging.py runs it on
# hack/*.sh when it is installed, and skips that check otherwise).
set -uo pipefail
command -v shellcheck >/dev/null && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "note: no root/apt to install shellcheck; the shell scripts are only parsed (bash -n)" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null || true
apt-get install -y -qq --no-install-recommends shellcheck >/dev/null ||
  echo "note: apt-get install shellcheck failed; the shell scripts are only parsed (bash -n)" >&2
exit 0
