"""hack/build-tools.sh: pinned versions from hack/tools/go.mod, one build however many runs start at
once, none once built. A stand-in `go` on PATH records each build instead of compiling."""

from __future__ import annotations

import os
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
SCRIPT = REPO / "hack" / "build-tools.sh"
FAKE_GO = """#!/usr/bin/env bash
# Records the call, takes a while like a real build, and leaves the binaries where -o says.
echo "$CGO_ENABLED $*" >> "$FAKE_GO_CALLS"
sleep 1
while [ $# -gt 0 ]; do
  if [ "$1" = -o ]; then out=$2; fi
  shift
done
for b in helm kubeconform; do printf '#!/bin/sh\\n' > "$out/$b"; chmod +x "$out/$b"; done
"""


def _module_version(module: str) -> str:
    match = re.search(rf"(?m)^\s*(?:require\s+)?{re.escape(module)} (v\S+)", (REPO / "hack/tools/go.mod").read_text())
    assert match, module
    return match.group(1)


def test_the_module_pins_helm_3_and_kubeconform() -> None:
    assert re.fullmatch(r"v3\.\d+\.\d+", _module_version("helm.sh/helm/v3"))
    assert re.fullmatch(r"v\d+\.\d+\.\d+", _module_version("github.com/yannh/kubeconform"))
    tools_go = (REPO / "hack/tools/tools.go").read_text()
    assert '_ "helm.sh/helm/v3/cmd/helm"' in tools_go and '_ "github.com/yannh/kubeconform/cmd/kubeconform"' in tools_go
    sums = (REPO / "hack/tools/go.sum").read_text()
    assert f"helm.sh/helm/v3 {_module_version('helm.sh/helm/v3')} h1:" in sums
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


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
    expected = (tmp_path / "cache" / f"tools-helm-{_module_version('helm.sh/helm/v3')}"
                f"-kubeconform-{_module_version('github.com/yannh/kubeconform')}")
    assert folders == {str(expected)}
    assert all((expected / b).is_file() and os.access(expected / b, os.X_OK) for b in ("helm", "kubeconform"))
    builds = calls.read_text().splitlines()
    assert len(builds) == 1, builds
    assert builds[0].startswith("0 build ") and "helm.sh/helm/v3/cmd/helm" in builds[0]
    assert "github.com/yannh/kubeconform/cmd/kubeconform" in builds[0]
    assert run() == str(expected)
    assert len(calls.read_text().splitlines()) == 1
