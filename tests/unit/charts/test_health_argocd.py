"""The chart's Argo CD health checks run by Argo CD itself: hack/argocd-health calls util/lua's
VM.ExecuteHealthLua from github.com/argoproj/argo-cd/v3 v3.6.1 (built with Go 1.27.3 through
GOTOOLCHAIN), the function Argo CD's application controller runs for a health customization. Its VM
opens only the package, base, table and a safe os library — no string or math library, which lupa's
full Lua 5.1 (test_health_lua.py) would let a script use — holds integers as Kubernetes' unstructured
objects do, and turns an unknown status into Unknown."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from health_cases import CAPTURED_HEALTH, CASES

from envbranch_testing.tools import CHART, argocd_health, argocd_health_upstream


@pytest.fixture(scope="module")
def upstream() -> dict[str, dict[str, str]]:
    names = sorted(CASES)
    return dict(zip(names, argocd_health_upstream([CASES[n] for n in names]), strict=True))


@pytest.mark.parametrize(("moment", "health", "says"), CAPTURED_HEALTH)
def test_captured_objects_on_argocds_vm(upstream: dict[str, dict[str, str]], moment: str, health: str,
                                        says: str) -> None:
    assert "error" not in upstream[moment], upstream[moment]
    assert upstream[moment]["status"] == health
    assert says in upstream[moment]["message"]


@pytest.mark.parametrize("case", sorted(CASES))
def test_argocd_and_lupa_agree(upstream: dict[str, dict[str, str]], case: str) -> None:
    assert "error" not in upstream[case], upstream[case]
    assert upstream[case] == {k: v for k, v in argocd_health(CASES[case]).items() if v}


def test_a_script_that_needs_the_string_library_fails_as_in_argocd(tmp_path: Path) -> None:
    # What the restricted VM is for: string.format works in lupa but not in Argo CD.
    from envbranch_testing import tools

    script = tmp_path / "s.lua"
    script.write_text('return {status = "Healthy", message = string.format("%d", 1)}')
    saved = dict(tools.HEALTH_SCRIPTS)
    tools.HEALTH_SCRIPTS["Environment"] = script
    try:
        result = argocd_health_upstream([{"kind": "Environment", "metadata": {"name": "x"}}])[0]
    finally:
        tools.HEALTH_SCRIPTS.update(saved)
    assert "error" in result and "string" in result["error"]


def test_the_argocd_cm_snippet_keeps_argocds_restricted_libraries() -> None:
    snippet = yaml.safe_load((CHART / "argocd-cm-health.yaml").read_text())
    assert not [key for key in snippet["data"] if "useOpenLibs" in key]
