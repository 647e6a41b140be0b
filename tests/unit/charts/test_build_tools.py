"""hack/build-tools.sh: pinned versions from hack/tools/go.mod, one build however many runs start at
once, none once built. A stand-in `go` on PATH records each build instead of compiling."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from envbranch_testing.buildscripts import run_at_once, with_fake_go

REPO = Path(__file__).resolve().parents[3]
SCRIPT = REPO / "hack" / "build-tools.sh"


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
    run, calls = with_fake_go(SCRIPT, tmp_path, ("helm", "kubeconform"))
    folders = run_at_once(run)
    expected = (tmp_path / "cache" / f"tools-helm-{_module_version('helm.sh/helm/v3')}"
                f"-kubeconform-{_module_version('github.com/yannh/kubeconform')}")
    assert folders == {str(expected)}
    assert all((expected / b).is_file() and os.access(expected / b, os.X_OK) for b in ("helm", "kubeconform"))
    builds = calls.read_text().splitlines()
    assert len(builds) == 1, builds
    assert builds[0].startswith("0 ") and " build " in builds[0] and "helm.sh/helm/v3/cmd/helm" in builds[0]
    assert "github.com/yannh/kubeconform/cmd/kubeconform" in builds[0]
    assert run() == str(expected)
    assert len(calls.read_text().splitlines()) == 1
