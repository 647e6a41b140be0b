"""Argo CD's view of a real run: the chart's Lua health checks evaluated on the Environment and
DatabaseServer objects the operator wrote, in every phase a branch goes through, and the status
following kstatus conventions in every version the API server stored.

One run records every version of every object in its namespace through a watch, and keeps the
objects fetched at chosen moments: waiting for a source, branching, Active, Failed by an injected
fault, a spec change not yet observed, and deleting. ENVBRANCH_CAPTURE_STATUS=<file> writes those
to a file (how tests/unit/charts/captured_status.yaml was made)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from envbranch.api.common import GROUP, VERSION
from envbranch_testing.operator import OperatorProcess
from envbranch_testing.postgres import Postgres
from envbranch_testing.processes import wait_until
from envbranch_testing.scenario import Project
from envbranch_testing.tools import argocd_health
from envbranch_testing.watches import Watches

PLURALS = ("environments", "databaseservers")


class Recorder(Watches):
    """Every version of every Environment and DatabaseServer in a namespace, as a watch sees them."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        custom = client.CustomObjectsApi(api)
        self.versions: list[dict[str, Any]] = []
        super().__init__([(custom.list_namespaced_custom_object, (GROUP, VERSION, namespace, plural), {}, "0")
                          for plural in PLURALS])

    def on_event(self, event: dict[str, Any]) -> str:
        self.versions.append(event["object"])
        return str(event["object"]["metadata"]["resourceVersion"])


@dataclass
class Run:
    project: Project
    versions: list[dict[str, Any]]
    snapshots: dict[str, dict[str, Any]] = field(default_factory=dict)

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [v for v in self.versions if v["kind"] == kind]


def _server(project: Project, name: str) -> dict[str, Any]:
    return dict(project.custom.get_namespaced_custom_object(GROUP, VERSION, project.namespace, "databaseservers",
                                                            name))


def _annotate(project: Project, name: str, annotations: dict[str, str | None]) -> None:
    project.custom.patch_namespaced_custom_object(GROUP, VERSION, project.namespace, "environments", name,
                                                  {"metadata": {"annotations": annotations}})


@pytest.fixture(scope="module")
def run(operator: OperatorProcess, k8s: client.ApiClient, postgres: Postgres) -> Iterator[Run]:
    project = Project(k8s, f"h-{uuid.uuid4().hex[:6]}", postgres)
    project.create_namespace(project.namespace)
    with Recorder(k8s, project.namespace) as recorder:
        result = Run(project, recorder.versions)
        snap = result.snapshots
        project.create_server()
        project.wait_server_ready()
        snap["server-ready"] = _server(project, "main")
        project.create_server("broken", password="not-the-password")
        wait_until(lambda: any(c["type"] == "Ready" and c["status"] == "False"
                               for c in project.server_status("broken").get("conditions") or []),
                   timeout=60, what="DatabaseServer broken to report not Ready")
        snap["server-unreachable"] = _server(project, "broken")

        # A branch applied before its source: Pending; then held at its database step: Branching.
        project.apply_env("feature", {"source": "production", "mode": "System"},
                          annotations={"envbranch.io/inject-pause": "database"})
        project.wait_phase("feature", "Pending")
        snap["pending"] = project.env("feature") or {}
        project.setup_production(f"shop_{project.namespace.replace('-', '_')}", f"{project.namespace}-prod")
        snap["root-active"] = project.env("production") or {}
        wait_until(lambda: project.status("feature").get("progress", {}).get("step") == "database",
                   timeout=60, what="feature to pause at its database step")
        snap["branching"] = project.env("feature") or {}
        _annotate(project, "feature", {"envbranch.io/inject-pause": None})
        project.wait_phase("feature", "Active")
        snap["active"] = project.env("feature") or {}

        # A spec change: the new generation is not observed until the operator has looked at it.
        # (The object as this write stored it: the operator may observe it a moment later.)
        snap["generation-ahead"] = project.custom.patch_namespaced_custom_object(
            GROUP, VERSION, project.namespace, "environments", "feature", {"spec": {"displayName": "Feature_Renamed"}})
        wait_until(lambda: (e := project.env("feature") or {})["metadata"]["generation"]
                   == e["status"].get("observedGeneration"), timeout=60, what="feature's new generation observed")

        # A step that fails: rolled back, Failed and Stalled.
        project.apply_env("broken", {"source": "production", "mode": "System"},
                          annotations={"envbranch.io/inject-fault": "credentials"})
        project.wait_stalled("broken")
        snap["failed"] = project.env("broken") or {}

        project.delete_env("feature")
        project.wait_gone("feature")
        wait_until(lambda: any(v["kind"] == "Environment" and v["metadata"]["name"] == "feature"
                               and v.get("status", {}).get("phase") == "Deleting" for v in recorder.versions)
                   or None, timeout=30, what="the watch to see feature Deleting")
    if target := os.environ.get("ENVBRANCH_CAPTURE_STATUS"):
        Path(target).write_text(yaml.safe_dump({k: _portable(v) for k, v in snap.items()}, sort_keys=False))
    yield result
    project.delete_namespaces()


def _portable(obj: dict[str, Any]) -> dict[str, Any]:
    """What a health check reads: kind, generation, status (no uid, no managedFields)."""
    meta = obj["metadata"]
    return {"apiVersion": obj["apiVersion"], "kind": obj["kind"],
            "metadata": {"name": meta["name"], "generation": meta["generation"]}, "status": obj.get("status")}


def _cond(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == type_), None)


def _is(obj: dict[str, Any], type_: str) -> bool:
    return (_cond(obj, type_) or {}).get("status") == "True"


def _generation_observed(obj: dict[str, Any]) -> bool:
    return bool((obj.get("status") or {}).get("observedGeneration") == obj["metadata"]["generation"])


@pytest.mark.parametrize(("moment", "health"), [
    ("pending", "Progressing"), ("branching", "Progressing"), ("active", "Healthy"), ("root-active", "Healthy"),
    ("generation-ahead", "Progressing"), ("failed", "Degraded"),
    ("server-ready", "Healthy"), ("server-unreachable", "Degraded"),
])
def test_health_of_the_objects_at_each_moment_of_a_run(run: Run, moment: str, health: str) -> None:
    obj = run.snapshots[moment]
    result = argocd_health(obj)
    assert result["status"] == health, (result, obj.get("status"))
    assert result["message"], result


def test_health_messages_say_why(run: Run) -> None:
    assert "waiting for source Environment 'production'" in argocd_health(run.snapshots["pending"])["message"]
    assert "step credentials failed" in argocd_health(run.snapshots["failed"])["message"]
    assert "password authentication failed" in argocd_health(run.snapshots["server-unreachable"])["message"]
    assert "not yet observed" in argocd_health(run.snapshots["generation-ahead"])["message"]


# The contract, by phase (not a copy of the Lua's checks): what Argo CD shows for each phase once the
# generation is observed. A version whose spec is ahead of its status is Progressing whatever its phase.
HEALTH_BY_PHASE = {None: "Progressing", "Pending": "Progressing", "Branching": "Progressing", "Active": "Healthy",
                   "Failed": "Degraded", "Deleting": "Progressing"}


def _expected_environment_health(env: dict[str, Any]) -> str:
    status = env.get("status") or {}
    if status.get("observedGeneration") not in (None, env["metadata"]["generation"]):
        return "Progressing"
    return HEALTH_BY_PHASE[status.get("phase")]


def test_health_of_every_environment_version_the_run_stored(run: Run) -> None:
    envs = run.of("Environment")
    seen: dict[str, set[str]] = {}
    for env in envs:
        result = argocd_health(env)
        assert result["status"] == _expected_environment_health(env), (result, env.get("status"))
        seen.setdefault(result["status"], set()).add(str((env.get("status") or {}).get("phase")))
    # Every phase a branch goes through was seen, and every health Argo CD can show for it.
    assert set().union(*seen.values()) >= {"None", "Pending", "Branching", "Active", "Failed", "Deleting"}
    assert seen["Progressing"] >= {"None", "Pending", "Branching", "Deleting"}
    assert seen["Healthy"] == {"Active"} and seen["Degraded"] == {"Failed"}


def test_status_follows_kstatus_conventions(run: Run) -> None:
    with_phase = [e for e in run.of("Environment") if (e.get("status") or {}).get("phase")]
    assert with_phase
    for env in with_phase:
        status, generation = env["status"], env["metadata"]["generation"]
        ready, reconciling, stalled = (_cond(env, t) for t in ("Ready", "Reconciling", "Stalled"))
        assert ready and reconciling and stalled, status
        for cond in status["conditions"]:
            assert cond["status"] in ("True", "False") and cond["reason"] and cond["lastTransitionTime"]
            assert 1 <= cond["observedGeneration"] <= generation, cond
        # At most one of the three is True, and which one follows the phase.
        assert [ready["status"], reconciling["status"], stalled["status"]].count("True") <= 1, status
        assert (ready["status"] == "True") == (status["phase"] == "Active"), status
        if status["phase"] in ("Pending", "Branching", "Deleting"):
            assert reconciling["status"] == "True", status
        if stalled["status"] == "True":
            assert status["phase"] == "Failed" and status.get("inventory") in (None, []), status
        # Settled (Ready or Stalled): the status speaks for a generation, never a future one.
        if ready["status"] == "True" or stalled["status"] == "True":
            assert 1 <= status["observedGeneration"] <= generation, status
    # The final word on each Environment is for its current generation.
    last = {e["metadata"]["name"]: e for e in run.of("Environment")}
    for name in ("production", "broken"):
        assert _generation_observed(last[name]) and (_is(last[name], "Ready") or _is(last[name], "Stalled"))
    for server in run.of("DatabaseServer"):
        if server.get("status"):
            ready = _cond(server, "Ready")
            assert ready and ready["status"] in ("True", "False"), server["status"]
            # A spec change (a database listed as adoptable) is seen before it is probed again.
            assert 1 <= server["status"]["observedGeneration"] <= server["metadata"]["generation"]
    last_server = run.of("DatabaseServer")[-1]
    assert last_server["status"]["observedGeneration"] == last_server["metadata"]["generation"]
