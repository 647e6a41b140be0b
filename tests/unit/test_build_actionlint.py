"""hack/build-actionlint.sh: actionlint pinned by hack/actionlint/go.mod, built once however many runs
start at once, not at all once built. A stand-in `go` on PATH records each build instead of compiling."""

from __future__ import annotations

import os
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "hack" / "build-actionlint.sh"
MODULE = REPO / "hack" / "actionlint"
FAKE_GO = """#!/usr/bin/env bash
echo "$CGO_ENABLED $PWD $*" >> "$FAKE_GO_CALLS"
sleep 1
while [ $# -gt 0 ]; do
  if [ "$1" = -o ]; then out=$2; fi
  shift
done
printf '#!/bin/sh\\n' > "$out/actionlint"; chmod +x "$out/actionlint"
"""


def _version() -> str:
    match = re.search(r"(?m)^\s*(?:require\s+)?github\.com/rhysd/actionlint (v\S+)", (MODULE / "go.mod").read_text())
    assert match
    return match.group(1)


def test_the_module_pins_actionlint_apart_from_helm() -> None:
    assert re.fullmatch(r"v1\.\d+\.\d+", _version())
    assert '_ "github.com/rhysd/actionlint/cmd/actionlint"' in (MODULE / "tools.go").read_text()
    assert f"github.com/rhysd/actionlint {_version()} h1:" in (MODULE / "go.sum").read_text()
    # Its own module: helm's dependency versions (hack/tools) are never moved by actionlint's.
    assert "helm.sh" not in (MODULE / "go.mod").read_text()
    assert "actionlint" not in (REPO / "hack/tools/go.mod").read_text()


def test_make_lint_runs_actionlint_on_the_workflows() -> None:
    lint = re.search(r"(?ms)^lint:.*?(?=^\S)", (REPO / "Makefile").read_text())
    assert lint and "hack/build-actionlint.sh" in lint.group(0) and ".github/workflows/" in lint.group(0)


def test_concurrent_runs_build_once_and_later_runs_not_at_all(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "go").write_text(FAKE_GO)
    (bin_dir / "go").chmod(0o755)
    calls = tmp_path / "calls"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "ENVBRANCH_CACHE": str(tmp_path / "cache"),
           "FAKE_GO_CALLS": str(calls)}

    def run() -> str:
        out = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, check=True, timeout=60)
        return out.stdout.strip().splitlines()[-1]

    with ThreadPoolExecutor(3) as pool:
        folders = set(pool.map(lambda _: run(), range(3)))
    expected = tmp_path / "cache" / f"actionlint-{_version()}"
    assert folders == {str(expected)}
    assert os.access(expected / "actionlint", os.X_OK)
    builds = calls.read_text().splitlines()
    assert len(builds) == 1, builds
    assert builds[0].startswith(f"0 {MODULE} build ")
    assert builds[0].endswith("github.com/rhysd/actionlint/cmd/actionlint")
    assert run() == str(expected)
    assert len(calls.read_text().splitlines()) == 1
