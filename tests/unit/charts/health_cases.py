"""The objects both health-check suites run the chart's Lua scripts on: status objects captured from a
real run (captured_status.yaml) and the edge cases built from them, with what Argo CD should say of
the captured ones. test_health_lua.py runs them on lupa, test_health_argocd.py on Argo CD's own util/lua."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

CAPTURED: dict[str, dict[str, Any]] = yaml.safe_load(
    (Path(__file__).parent / "captured_status.yaml").read_text())

# (moment captured, health, part of its message)
CAPTURED_HEALTH = [
    ("pending", "Progressing", "Pending: waiting for source Environment 'production' to exist"),
    ("branching", "Progressing", "Branching: branching"),
    ("active", "Healthy", "branched from production (System)"),
    ("root-active", "Healthy", "root environment"),
    ("generation-ahead", "Progressing", "generation 2 not yet observed (status is for 1)"),
    ("failed", "Degraded", "step credentials failed: fault injected at step credentials (test switch); rolled back"),
    ("server-ready", "Healthy", "PostgreSQL 18"),
    ("server-unreachable", "Degraded", "password authentication failed"),
]


def with_status(obj: dict[str, Any], generation: int | None = None, **status: Any) -> dict[str, Any]:
    """A copy of obj at another generation and with these status fields replaced."""
    out = copy.deepcopy(obj)
    if generation is not None:
        out["metadata"]["generation"] = generation
    out["status"] = {**(out.get("status") or {}), **status}
    return out


def _edge_cases() -> dict[str, dict[str, Any]]:
    cases: dict[str, dict[str, Any]] = {}
    for kind in ("Environment", "DatabaseServer"):
        bare = {"apiVersion": "envbranch.io/v1alpha1", "kind": kind, "metadata": {"name": "x", "generation": 1}}
        cases[f"{kind}-no-status"] = bare
        cases[f"{kind}-empty-status"] = {**bare, "status": {}}
    cases["active-generation-ahead"] = with_status(CAPTURED["active"], generation=3)
    cases["active-observed"] = with_status(CAPTURED["active"], generation=3, observedGeneration=3)
    cases["failed-spec-changed"] = with_status(CAPTURED["failed"], generation=2)
    cases["stalled-no-phase"] = with_status(CAPTURED["active"], phase=None, conditions=[
        {"type": "Stalled", "status": "True", "reason": "X", "message": "stuck"}])
    cases["deleting"] = with_status(CAPTURED["active"], phase="Deleting", conditions=[
        {"type": "Ready", "status": "False", "reason": "Deleting", "message": "removing the database"},
        {"type": "Reconciling", "status": "True", "reason": "Deleting", "message": "removing the database"}])
    cases["server-generation-ahead"] = with_status(CAPTURED["server-ready"], generation=2)
    cases["server-unreachable-generation-ahead"] = with_status(CAPTURED["server-unreachable"], generation=2)
    return cases


EDGE_CASES = _edge_cases()
# Every object: the captured ones and the edge cases.
CASES = {**CAPTURED, **EDGE_CASES}
