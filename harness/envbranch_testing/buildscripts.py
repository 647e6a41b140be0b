"""Running a hack/build-*.sh script with a stand-in `go` on PATH that records each build instead of
compiling: how the tests show a script builds once however many runs start at once."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

FAKE_GO = """#!/usr/bin/env bash
# Records the call, takes a while like a real build, and leaves the binaries where -o says.
echo "$CGO_ENABLED $PWD $*" >> "$FAKE_GO_CALLS"
sleep 1
while [ $# -gt 0 ]; do
  if [ "$1" = -o ]; then out=$2; fi
  shift
done
for b in {binaries}; do printf '#!/bin/sh\\n' > "$out/$b"; chmod +x "$out/$b"; done
"""


def with_fake_go(script: Path, tmp_path: Path, binaries: tuple[str, ...]) -> tuple[Callable[[], str], Path]:
    """(a function running `script` that returns the folder it prints last, the file of recorded builds)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "go").write_text(FAKE_GO.replace("{binaries}", " ".join(binaries)))
    (bin_dir / "go").chmod(0o755)
    calls = tmp_path / "calls"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "ENVBRANCH_CACHE": str(tmp_path / "cache"),
           "FAKE_GO_CALLS": str(calls)}

    def run() -> str:
        out = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, check=True, timeout=60)
        return out.stdout.strip().splitlines()[-1]

    return run, calls


def run_at_once(run: Callable[[], str], times: int = 3) -> set[str]:
    with ThreadPoolExecutor(times) as pool:
        return set(pool.map(lambda _: run(), range(times)))
