"""The status is EnvironmentStatus end to end: a wrong field fails here, and writes are minimal merge
patches by alias."""

from __future__ import annotations

import pytest
from core_fakes import World

from envbranch.api.environment import DatabaseStatus
from envbranch.branching.run import Run


def _run(world: World) -> Run:
    return Run(world.ctx, world.add_env("production", status={"phase": "Branching", "namespace": "shop-production"}))


def test_a_field_the_status_does_not_have_is_an_error(world: World) -> None:
    run = _run(world)
    with pytest.raises(TypeError, match="credentialSecret"):
        run.write(credentialSecret="x")
    with pytest.raises(ValueError, match="phase"):
        run.write(phase="Branched")
    assert not world.kube.patches


def test_only_changed_fields_are_patched_by_alias_and_nothing_when_nothing_changed(world: World) -> None:
    run = _run(world)
    run.write(phase="Branching", namespace="shop-production")
    assert not world.kube.patches
    run.write(phase="Branching", credentials_secret="production-db",
              database=DatabaseStatus(server="main", name="shop", strategy="Adopted"))
    assert world.kube.patches == [("production", {
        "credentialsSecret": "production-db", "database": {"server": "main", "name": "shop", "strategy": "Adopted"}})]
    run.write(credentials_secret=None)
    assert world.kube.patches[-1] == ("production", {"credentialsSecret": None})  # null removes it
    assert "credentialsSecret" not in world.status("production")


def test_conditions_are_models_written_whole(world: World) -> None:
    run = _run(world)
    run.set_phase("Active", "Active", "root environment")
    _, patch = world.kube.patches[-1]
    assert [c["type"] for c in patch["conditions"]] == ["Ready", "Reconciling", "Stalled"]
    assert set(patch["conditions"][0]) == {"type", "status", "reason", "message", "lastTransitionTime",
                                           "observedGeneration"}
    patches = len(world.kube.patches)
    Run(world.ctx, world.env("production")).set_phase("Active", "Active", "root environment")
    assert len(world.kube.patches) == patches
