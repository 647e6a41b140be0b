"""The chart's Argo CD health checks run by Argo CD itself: hack/argocd-health calls util/lua's
VM.ExecuteHealthLua from github.com/argoproj/argo-cd/v3 v3.6.1 (built with Go 1.27.3 through
GOTOOLCHAIN), the function Argo CD's application controller runs for a health customization. Its VM
opens only the package, base, table and a safe os library — no string or math library, which lupa's
full Lua 5.1 (test_health_lua.py) would let a script use — holds integers as Kubernetes' unstructured
objects do, and turns an unknown status into Unknown."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from envbranch_testing.tools import CHART, argocd_health, argocd_health_upstream

CAPTURED: dict[str, dict[str, Any]] = yaml.safe_load((Path(__file__).parent / "captured_status.yaml").read_text())


def _with(obj: dict[str, Any], generation: int | None = None, **status: Any) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    if generation is not None:
        out["metadata"]["generation"] = generation
    out["status"] = {**(out.get("status") or {}), **status}
    return out


def _cases() -> dict[str, dict[str, Any]]:
    cases = dict(CAPTURED)
    for kind in ("Environment", "DatabaseServer"):
        bare = {"apiVersion": "envbranch.io/v1alpha1", "kind": kind, "metadata": {"name": "x", "generation": 1}}
        cases[f"{kind}-no-status"] = bare
        cases[f"{kind}-empty-status"] = {**bare, "status": {}}
    cases["active-generation-ahead"] = _with(CAPTURED["active"], generation=3)
    cases["active-observed"] = _with(CAPTURED["active"], generation=3, observedGeneration=3)
    cases["failed-spec-changed"] = _with(CAPTURED["failed"], generation=2)
    cases["stalled-no-phase"] = _with(CAPTURED["active"], phase=None, conditions=[
        {"type": "Stalled", "status": "True", "reason": "X", "message": "stuck"}])
    cases["deleting"] = _with(CAPTURED["active"], phase="Deleting", conditions=[
        {"type": "Ready", "status": "False", "reason": "Deleting", "message": "removing the database"},
        {"type": "Reconciling", "status": "True", "reason": "Deleting", "message": "removing the database"}])
    cases["server-generation-ahead"] = _with(CAPTURED["server-ready"], generation=2)
    return cases


CASES = _cases()


@pytest.fixture(scope="module")
def upstream() -> dict[str, dict[str, str]]:
    names = sorted(CASES)
    return dict(zip(names, argocd_health_upstream([CASES[n] for n in names]), strict=True))


@pytest.mark.parametrize(("moment", "health", "says"), [
    ("pending", "Progressing", "Pending: waiting for source Environment 'production' to exist"),
    ("branching", "Progressing", "Branching: branching"),
    ("active", "Healthy", "branched from production (System)"),
    ("root-active", "Healthy", "root environment"),
    ("generation-ahead", "Progressing", "generation 2 not yet observed (status is for 1)"),
    ("failed", "Degraded", "step credentials failed: fault injected at step credentials (test switch); rolled back"),
    ("server-ready", "Healthy", "PostgreSQL 18"),
    ("server-unreachable", "Degraded", "password authentication failed"),
])
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
