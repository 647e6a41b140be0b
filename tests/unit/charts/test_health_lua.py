"""The chart's Argo CD health checks (charts/envbranch/health/*.lua), run by lupa's Lua 5.1 the way
Argo CD runs them, on status objects captured from a real run and on the edge cases around them
(health_cases.py, shared with test_health_argocd.py)."""

from __future__ import annotations

import pytest
import yaml
from health_cases import CAPTURED, CAPTURED_HEALTH, EDGE_CASES, with_status

from envbranch_testing.tools import CHART, HEALTH_SCRIPTS, argocd_health


@pytest.mark.parametrize(("moment", "health", "says"), CAPTURED_HEALTH)
def test_captured_objects(moment: str, health: str, says: str) -> None:
    result = argocd_health(CAPTURED[moment])
    assert result["status"] == health
    assert says in result["message"]


def test_captured_objects_cover_every_moment() -> None:
    assert set(CAPTURED) == {"server-ready", "server-unreachable", "pending", "root-active", "branching", "active",
                             "generation-ahead", "failed"}
    assert {moment for moment, _, _ in CAPTURED_HEALTH} == set(CAPTURED)
    assert {o["status"]["phase"] for o in CAPTURED.values() if o["kind"] == "Environment"} == {
        "Pending", "Branching", "Active", "Failed"}


@pytest.mark.parametrize("kind", ["Environment", "DatabaseServer"])
def test_no_status_yet_is_progressing(kind: str) -> None:
    assert argocd_health(EDGE_CASES[f"{kind}-no-status"])["status"] == "Progressing"
    assert argocd_health(EDGE_CASES[f"{kind}-empty-status"])["status"] == "Progressing"


def test_ready_for_an_older_generation_is_progressing_until_observed() -> None:
    assert argocd_health(EDGE_CASES["active-generation-ahead"])["status"] == "Progressing"
    assert argocd_health(EDGE_CASES["active-observed"])["status"] == "Healthy"
    # Ready=True without any observedGeneration is not proof it is current.
    no_observed = with_status(CAPTURED["active"])
    del no_observed["status"]["observedGeneration"]
    assert argocd_health(no_observed)["status"] == "Progressing"


def test_a_failed_environment_whose_spec_changed_is_progressing_again() -> None:
    # The operator retries a Failed environment on a spec change; until it has looked, it is not Degraded.
    assert argocd_health(EDGE_CASES["failed-spec-changed"])["status"] == "Progressing"


def test_failed_while_still_rolling_back_is_degraded() -> None:
    failed = CAPTURED["failed"]
    rolling_back = with_status(failed, conditions=[
        {**c, "status": "True" if c["type"] == "Reconciling" else "False" if c["type"] == "Stalled" else c["status"],
         "message": "step credentials failed: fault injected; rolling back"}
        for c in failed["status"]["conditions"]])
    result = argocd_health(rolling_back)
    assert result == {"status": "Degraded",
                      "message": "step credentials failed: fault injected; rolling back"}


def test_stalled_without_a_phase_is_degraded_and_deleting_is_progressing() -> None:
    assert argocd_health(EDGE_CASES["stalled-no-phase"]) == {"status": "Degraded", "message": "stuck"}
    assert argocd_health(EDGE_CASES["deleting"]) == {"status": "Progressing",
                                                     "message": "Deleting: removing the database"}


def test_a_server_probe_behind_its_generation_is_progressing() -> None:
    assert argocd_health(EDGE_CASES["server-generation-ahead"])["status"] == "Progressing"
    assert argocd_health(EDGE_CASES["server-unreachable-generation-ahead"])["status"] == "Progressing"


def test_argocd_cm_snippet_carries_the_scripts_verbatim() -> None:
    snippet = yaml.safe_load((CHART / "argocd-cm-health.yaml").read_text())
    assert snippet["data"] == {f"resource.customizations.health.envbranch.io_{kind}": path.read_text()
                               for kind, path in HEALTH_SCRIPTS.items()}
