"""The chart's Argo CD health checks (charts/envbranch/health/*.lua), run by lupa's Lua 5.1 the way
Argo CD runs them, on status objects captured from a real run and on the edge cases around them."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from envbranch_testing.tools import CHART, HEALTH_SCRIPTS, argocd_health

CAPTURED: dict[str, dict[str, Any]] = yaml.safe_load((Path(__file__).parent / "captured_status.yaml").read_text())


def _with(obj: dict[str, Any], generation: int | None = None, **status: Any) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    if generation is not None:
        out["metadata"]["generation"] = generation
    out["status"] = {**(out.get("status") or {}), **status}
    return out


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
def test_captured_objects(moment: str, health: str, says: str) -> None:
    result = argocd_health(CAPTURED[moment])
    assert result["status"] == health
    assert says in result["message"]


def test_captured_objects_cover_every_moment() -> None:
    assert set(CAPTURED) == {"server-ready", "server-unreachable", "pending", "root-active", "branching", "active",
                             "generation-ahead", "failed"}
    assert {o["status"]["phase"] for o in CAPTURED.values() if o["kind"] == "Environment"} == {
        "Pending", "Branching", "Active", "Failed"}


@pytest.mark.parametrize("kind", ["Environment", "DatabaseServer"])
def test_no_status_yet_is_progressing(kind: str) -> None:
    obj = {"apiVersion": "envbranch.io/v1alpha1", "kind": kind, "metadata": {"name": "x", "generation": 1}}
    assert argocd_health(obj)["status"] == "Progressing"
    assert argocd_health({**obj, "status": {}})["status"] == "Progressing"


def test_ready_for_an_older_generation_is_progressing_until_observed() -> None:
    active = CAPTURED["active"]
    assert argocd_health(_with(active, generation=3))["status"] == "Progressing"
    assert argocd_health(_with(active, generation=3, observedGeneration=3))["status"] == "Healthy"
    # Ready=True without any observedGeneration is not proof it is current.
    no_observed = _with(active)
    del no_observed["status"]["observedGeneration"]
    assert argocd_health(no_observed)["status"] == "Progressing"


def test_a_failed_environment_whose_spec_changed_is_progressing_again() -> None:
    # The operator retries a Failed environment on a spec change; until it has looked, it is not Degraded.
    assert argocd_health(_with(CAPTURED["failed"], generation=2))["status"] == "Progressing"


def test_failed_while_still_rolling_back_is_degraded() -> None:
    failed = CAPTURED["failed"]
    rolling_back = _with(failed, conditions=[
        {**c, "status": "True" if c["type"] == "Reconciling" else "False" if c["type"] == "Stalled" else c["status"],
         "message": "step credentials failed: fault injected; rolling back"}
        for c in failed["status"]["conditions"]])
    result = argocd_health(rolling_back)
    assert result == {"status": "Degraded",
                      "message": "step credentials failed: fault injected; rolling back"}


def test_stalled_without_a_phase_is_degraded_and_deleting_is_progressing() -> None:
    active = CAPTURED["active"]
    stalled = _with(active, phase=None, conditions=[{"type": "Stalled", "status": "True", "reason": "X",
                                                     "message": "stuck"}])
    assert argocd_health(stalled) == {"status": "Degraded", "message": "stuck"}
    deleting = _with(active, phase="Deleting", conditions=[
        {"type": "Ready", "status": "False", "reason": "Deleting", "message": "removing the database"},
        {"type": "Reconciling", "status": "True", "reason": "Deleting", "message": "removing the database"}])
    assert argocd_health(deleting) == {"status": "Progressing", "message": "Deleting: removing the database"}


def test_a_server_probe_behind_its_generation_is_progressing() -> None:
    assert argocd_health(_with(CAPTURED["server-ready"], generation=2))["status"] == "Progressing"
    assert argocd_health(_with(CAPTURED["server-unreachable"], generation=2))["status"] == "Progressing"


def test_argocd_cm_snippet_carries_the_scripts_verbatim() -> None:
    snippet = yaml.safe_load((CHART / "argocd-cm-health.yaml").read_text())
    assert snippet["data"] == {f"resource.customizations.health.envbranch.io_{kind}": path.read_text()
                               for kind, path in HEALTH_SCRIPTS.items()}
