"""Dump limits, replicas and the storage budget as the reconcile core passes them on (fakes)."""

from __future__ import annotations

from typing import Any

import pytest
from core_fakes import PROJECT, SERVER, World, fake_context

from envbranch import postgres as engine
from envbranch.api.databaseserver import DatabaseServerSpec
from envbranch.api.environment import DumpLimits
from envbranch.branching import connection, database
from envbranch.branching.errors import StepFailed

BRANCH = {"source": "production", "mode": "Full"}
ADMIN = engine.Server("db.example", 5432, "admin", "pw", sslmode="verify-full")


def _spec(**extra: Any) -> DatabaseServerSpec:
    return DatabaseServerSpec.model_validate({"host": "db.example", "adminSecretRef": {"name": "admin"}, **extra})


def test_environment_limits_override_the_server_defaults_field_by_field() -> None:
    spec = _spec(dump={"maxRate": "8Mi", "streams": 4}, replicas=[{"host": "standby-1"}, {"host": "10.0.0.9",
                                                                                          "port": 6432}])
    options = database.dump_options(ADMIN, spec, DumpLimits(streams=1))
    assert (options.streams, options.max_rate) == (1, 8 * 1024**2)
    assert [(r.host, r.port, r.user, r.sslmode) for r in options.replicas] == [
        ("standby-1", 5432, "admin", "verify-full"), ("10.0.0.9", 6432, "admin", "verify-full")]
    assert database.dump_options(ADMIN, _spec(), None) == engine.DumpOptions()
    assert database.dump_options(ADMIN, _spec(), DumpLimits(max_rate="20Mi")).max_rate == 20 * 1024**2


def test_a_copy_is_spooled_only_when_asked_and_the_operator_has_a_spool() -> None:
    spooled, spool = _spec(dump={"maxRate": "8Mi", "spool": True}), engine.Spool("/spool")
    assert database.dump_options(ADMIN, spooled, None, spool).spool is spool
    assert database.dump_options(ADMIN, spooled, None, None).spool is None  # no --spool-dir: streamed
    assert database.dump_options(ADMIN, spooled, DumpLimits(spool=False), spool).spool is None
    assert database.dump_options(ADMIN, _spec(), DumpLimits(spool=True), spool).spool is spool
    assert database.dump_options(ADMIN, _spec(), None, spool).spool is None


def test_the_environment_dump_limits_reach_the_copy(world: World) -> None:
    world.add_active_source()
    world.add_env("feature", {**BRANCH, "database": {"dump": {"maxRate": "2Mi", "streams": 1}}})
    world.reconcile("feature")
    assert world.status("feature")["phase"] == "Active"
    assert world.pg.limits_seen == [DumpLimits(max_rate="2Mi", streams=1)]
    # The budget is checked against the target server, this branch's own (partial) database not counted.
    assert world.pg.storage_checks == [(SERVER, f"{PROJECT}_production", "Full", f"{PROJECT}__feature")]


def test_only_a_branch_of_a_sealed_source_waits_for_it_to_be_idle(world: World) -> None:
    world.add_active_source()
    world.add_env("snapshot", {**BRANCH, "access": "Sealed"},
                  status={"phase": "Active", "namespace": f"{PROJECT}-snapshot",
                          "database": {"server": SERVER, "name": f"{PROJECT}__snapshot"}})
    world.add_env("from-snapshot", {"source": "snapshot", "mode": "Full"})
    world.add_env("from-production", BRANCH)
    world.reconcile("from-snapshot")
    world.reconcile("from-production")
    assert world.status("from-snapshot")["phase"] == world.status("from-production")["phase"] == "Active"
    assert world.pg.busy_waits_seen == [True, False]


def test_only_a_sealed_copy_is_flushed_for_its_first_branch(world: World) -> None:
    world.add_active_source()
    world.add_env("snapshot", {**BRANCH, "access": "Sealed"})
    world.add_env("feature", BRANCH)
    world.reconcile("snapshot")
    world.reconcile("feature")
    assert world.status("snapshot")["phase"] == world.status("feature")["phase"] == "Active"
    assert world.pg.flushes_seen == [True, False]


def test_a_branch_over_the_storage_budget_fails_before_anything_is_copied(world: World) -> None:
    world.add_active_source()
    world.pg.fail["require_storage"] = StepFailed("database", database.INSUFFICIENT_STORAGE, "does not fit")
    world.add_env("feature", BRANCH)
    world.reconcile("feature")
    status = world.status("feature")
    assert status["phase"] == "Failed" and not status.get("inventory")
    assert world.condition("feature", "Ready")["reason"] == "InsufficientStorage"
    assert world.condition("feature", "DatabaseReady")["reason"] == "InsufficientStorage"
    assert world.pg.limits_seen == []  # no copy was started
    assert not world.kube.namespaces and not world.pg.databases and not world.pg.roles


def test_a_disk_full_copy_is_reported_as_insufficient_storage(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connection, "server_info", lambda ctx, project, name: ADMIN)
    monkeypatch.setattr(connection, "server_spec", lambda kube, project, name: _spec())

    class NoDatabases:
        def __enter__(self) -> NoDatabases:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

        def execute(self, *args: object) -> NoDatabases:
            return self

        def fetchone(self) -> None:
            return None

    monkeypatch.setattr(engine.Server, "connect", lambda self, *a, **k: NoDatabases())

    def full(*args: object, **kwargs: object) -> engine.CloneResult:
        raise engine.DiskFull("could not extend file: No space left on device", "53100")

    monkeypatch.setattr(engine, "clone_database", full)
    with pytest.raises(StepFailed) as failed:
        database.clone(fake_context(), PROJECT, source_server=SERVER, source_database="shop_production", server=SERVER,
                       database="shop__feature", mode="Full", strategy="Dump", uid="u", progress=lambda s, p: None)
    assert failed.value.reason == "InsufficientStorage" and "dropped at once" in failed.value.message
