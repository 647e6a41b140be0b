"""Refresh in place and sealed environments against the fakes: what a refresh does next from what
exists (next_action), the whole refresh, a restart at every point of it, a failed copy, and the
schedule's clock."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest
from core_fakes import PROJECT, SERVER, World

from envbranch import postgres as engine
from envbranch.api.environment import RefreshStatus
from envbranch.branching import refresh, schedule
from envbranch.branching.errors import Transient, Waiting
from envbranch.branching.run import Run

CURRENT = "shop__staging"
FRESH, PREVIOUS = f"{CURRENT}___next", f"{CURRENT}___prev"


@pytest.fixture
def staging(world: World) -> World:
    """An Active Full branch `staging` of an Active `production`, refreshes swapping without a grace."""
    world.ctx.settings = dataclasses.replace(world.ctx.settings, refresh_grace=0)
    world.add_active_source()
    world.pg.databases[(SERVER, f"{PROJECT}_production")] = None
    world.add_env("staging", {"source": "production", "mode": "Full"})
    world.reconcile("staging")
    assert world.status("staging")["phase"] == "Active"
    return world


def _found(**oids: int) -> dict[str, engine.refresh.Found]:
    names = {"cur": CURRENT, "fresh": FRESH, "prev": PREVIOUS}
    return {names[k]: engine.refresh.Found(v, True) for k, v in oids.items()}


def _state(stage: str, oid: int | None = None) -> RefreshStatus:
    return RefreshStatus.model_validate({"token": "t", "stage": stage, "database": FRESH, "previous": PREVIOUS,
                                         "databaseOid": oid})


@pytest.mark.parametrize(("stage", "oid", "found", "action"), [
    ("Copying", None, {"cur": 1}, "copy"),                          # nothing copied yet
    ("Copying", None, {"cur": 1, "fresh": 2}, "copy"),              # a partial copy: copied again
    ("Copied", 2, {"cur": 1, "fresh": 2}, "swap"),                  # complete, not swapped
    ("Copied", 2, {"cur": 2, "prev": 1}, "drop-previous"),          # swapped, old one still there
    ("Copied", 2, {"cur": 2}, "finish"),                            # swapped and dropped
    ("Copied", 2, {"cur": 1}, "recopy"),                            # the copy vanished before the swap
    ("Copied", 2, {"cur": 1, "fresh": 3}, "recopy"),                # ... and another took its name
    ("Copied", 2, {"fresh": 2, "prev": 1}, "promote"),              # the name empty (made by hand)
    ("Copying", None, {"fresh": 2, "prev": 1}, "restore"),          # ... a partial copy is never promoted
    ("Copying", None, {"fresh": 2}, "lost"),
    ("Copying", None, {"cur": 1, "prev": 9}, "drop-previous"),      # never two left over
])
def test_next_action_comes_from_what_exists(stage: str, oid: int | None, found: dict[str, int], action: str) -> None:
    assert refresh.next_action(_state(stage, oid), CURRENT, _found(**found)) == action


def _databases(world: World) -> list[str]:
    return sorted(name for (_, name) in world.pg.databases if name.startswith(CURRENT))


def _ask(world: World, token: str) -> None:
    world.env("staging")  # exists
    world.kube.objects[("environments", PROJECT, "staging")]["metadata"]["annotations"]["envbranch.io/refresh"] = token


def test_a_refresh_swaps_in_a_new_copy_and_keeps_role_secret_and_name(staging: World) -> None:
    before = staging.status("staging")
    secret = dict(staging.kube.config[("Secret", f"{PROJECT}-staging", "staging-db")])
    old_oid = staging.pg.oid(SERVER, CURRENT)
    _ask(staging, "one")
    staging.reconcile("staging")
    status = staging.status("staging")
    assert status["refresh"]["stage"] == "Done" and status["refresh"]["token"] == "one"
    assert status["lastRefresh"]["token"] == "one" and status["lastRefresh"]["cutoffSeconds"] == 0.05
    assert staging.pg.swaps == [(CURRENT, FRESH, PREVIOUS)]
    assert _databases(staging) == [CURRENT] and staging.pg.oid(SERVER, CURRENT) != old_oid
    assert staging.kube.config[("Secret", f"{PROJECT}-staging", "staging-db")] == secret
    assert status["inventory"] == before["inventory"] and status["database"]["name"] == CURRENT
    assert (FRESH, "shop__staging_owner", False) in staging.pg.handed_over
    assert staging.condition("staging", "Refreshed")["status"] == "True"
    assert staging.reasons("staging")[-3:] == ["Refreshing", "RefreshSwapping", "Refreshed"]
    staging.reconcile("staging")  # the same token again asks for nothing
    assert staging.pg.swaps == [(CURRENT, FRESH, PREVIOUS)]


def test_a_token_applied_with_the_manifest_refreshes_nothing(world: World) -> None:
    world.add_active_source()
    world.add_env("staging", {"source": "production", "mode": "Full"}, annotations={"envbranch.io/refresh": "x"})
    world.reconcile("staging")
    world.reconcile("staging")
    assert world.status("staging")["refresh"] == {"token": "x", "stage": "Done"} and not world.pg.swaps


def _crash_at(world: World, stage: str, databases: dict[str, int]) -> None:
    """The state a killed operator leaves: status at `stage`, the databases as given (name -> oid)."""
    uid = world.env("staging")["metadata"]["uid"]
    world.pg.databases = {k: v for k, v in world.pg.databases.items() if not k[1].startswith(CURRENT)}
    for name, oid in databases.items():
        world.pg.databases[(SERVER, name)] = uid
        world.pg.oids[(SERVER, name)] = oid
    body = world.kube.objects[("environments", PROJECT, "staging")]
    body["metadata"]["annotations"]["envbranch.io/refresh"] = "t"
    body["status"]["refresh"] = {"token": "t", "stage": stage, "database": FRESH, "previous": PREVIOUS,
                                 "databaseOid": 2 if stage == "Copied" else None, "strategy": "Template",
                                 "bytes": 5, "startedAt": "2030-01-01T00:00:00Z"}
    body["status"]["inventory"] += [{"kind": "Database", "name": FRESH, "server": SERVER}]


@pytest.mark.parametrize(("stage", "databases"), [
    ("Copying", {CURRENT: 1}), ("Copying", {CURRENT: 1, FRESH: 7}), ("Copied", {CURRENT: 1, FRESH: 2}),
    ("Copied", {CURRENT: 2, PREVIOUS: 1}), ("Copied", {CURRENT: 2}), ("Copied", {FRESH: 2, PREVIOUS: 1}),
])
def test_a_restart_anywhere_in_a_refresh_ends_with_one_database(staging: World, stage: str,
                                                                 databases: dict[str, int]) -> None:
    _crash_at(staging, stage, databases)
    staging.reconcile("staging")
    status = staging.status("staging")
    assert status["refresh"]["stage"] == "Done", status["refresh"]
    assert _databases(staging) == [CURRENT]
    assert [e["name"] for e in status["inventory"] if e["kind"] == "Database"] == [CURRENT]


def test_a_failed_copy_keeps_the_old_database_and_says_why(staging: World) -> None:
    old_oid = staging.pg.oid(SERVER, CURRENT)
    staging.pg.fail["clone"] = engine.PermanentError("permission denied for table customers", "42501")
    _ask(staging, "doomed")
    staging.reconcile("staging")
    status = staging.status("staging")
    cond = staging.condition("staging", "Refreshed")
    assert status["refresh"]["stage"] == "Failed" and status["phase"] == "Active" and "lastRefresh" not in status
    assert (cond["status"], cond["reason"]) == ("False", "CopyFailed")
    assert "permission denied for table customers" in cond["message"]
    assert _databases(staging) == [CURRENT] and staging.pg.oid(SERVER, CURRENT) == old_oid
    assert [e["name"] for e in status["inventory"] if e["kind"] == "Database"] == [CURRENT]
    _ask(staging, "again")
    staging.reconcile("staging")
    assert staging.status("staging")["refresh"]["stage"] == "Done"


def test_a_transient_copy_failure_is_retried_then_given_up(staging: World) -> None:
    _ask(staging, "flaky")
    for attempt in range(1, refresh.MAX_COPY_ATTEMPTS):
        staging.pg.fail["clone"] = engine.TransientError("connection refused")
        with pytest.raises(Transient):
            staging.reconcile("staging")
        assert staging.status("staging")["refresh"]["attempts"] == attempt
    staging.pg.fail["clone"] = engine.TransientError("connection refused")
    staging.reconcile("staging")
    assert staging.status("staging")["refresh"]["stage"] == "Failed" and _databases(staging) == [CURRENT]


def test_the_swap_waits_for_the_grace_period(staging: World) -> None:
    staging.ctx.settings = dataclasses.replace(staging.ctx.settings, refresh_grace=30)
    _ask(staging, "graceful")
    with pytest.raises(Waiting) as wait:
        staging.reconcile("staging")
    assert wait.value.reason == "RefreshGrace" and 0 < wait.value.delay <= 30
    assert staging.status("staging")["refresh"]["stage"] == "Copied" and not staging.pg.swaps


def test_a_token_too_long_for_status_is_recorded_by_its_digest(staging: World) -> None:
    _ask(staging, "x" * 5000)
    staging.reconcile("staging")
    state = staging.status("staging")["refresh"]
    assert state["stage"] == "Done" and state["token"].startswith("sha256:") and len(state["token"]) == 71
    staging.reconcile("staging")
    assert len(staging.pg.swaps) == 1


def test_a_root_is_not_refreshed(world: World) -> None:
    world.add_env("production", annotations={"envbranch.io/refresh": "x"})
    world.reconcile("production")
    world.kube.objects[("environments", PROJECT, "production")]["metadata"]["annotations"]["envbranch.io/refresh"] = "y"
    world.reconcile("production")
    assert world.condition("production", "Refreshed")["reason"] == "NoSource"


def test_a_sealed_branch_has_no_login_no_secret_and_no_registration(world: World) -> None:
    world.add_active_source()
    world.add_env("snapshot", {"source": "production", "mode": "Full", "access": "Sealed"})
    world.reconcile("snapshot")
    status = world.status("snapshot")
    assert status["phase"] == "Active" and status["access"] == "Sealed" and "credentialsSecret" not in status
    assert not [k for k in world.kube.config if k[1] == f"{PROJECT}-snapshot"]
    assert ("shop__snapshot", "shop__snapshot_owner", True) in world.pg.handed_over
    assert world.condition("snapshot", "CredentialsReady")["reason"] == "Sealed"
    assert [e["kind"] for e in status["inventory"]] == ["Namespace", "Role", "Database"]


def test_an_environment_active_from_before_is_shown_open(world: World) -> None:
    world.add_env("old", status={"phase": "Active", "observedGeneration": 1})
    world.reconcile("old")
    assert world.status("old")["access"] == "Open"


def _scheduled(world: World, cron: str, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    world.add_env("nightly", {"source": "production", "mode": "Full", "refresh": {"schedule": cron}},
                  status={"phase": "Active", "branchedAt": "2030-01-01T00:00:00Z"}, annotations=annotations)
    return world.env("nightly")


def test_the_schedule_asks_for_a_refresh_when_due_and_catches_up_once(world: World) -> None:
    body = _scheduled(world, "0 3 * * *")
    wait = schedule.tick(world.ctx, body, now=dt.datetime(2030, 1, 1, 2, 59, 55, tzinfo=dt.UTC))
    assert wait == 5 and world.status("nightly")["nextRefresh"] == "2030-01-01T03:00:00Z"
    assert "envbranch.io/refresh-scheduled" not in world.env("nightly")["metadata"]["annotations"]
    # Down for three nights: one refresh, for the last time due.
    schedule.tick(world.ctx, world.env("nightly"), now=dt.datetime(2030, 1, 4, 5, 0, tzinfo=dt.UTC))
    assert world.env("nightly")["metadata"]["annotations"]["envbranch.io/refresh-scheduled"] == "2030-01-04T03:00:00Z"
    assert world.status("nightly")["nextRefresh"] == "2030-01-05T03:00:00Z"
    run = Run(world.ctx, world.env("nightly"))
    assert refresh.wanted(run) == (None, "2030-01-04T03:00:00Z")


def test_last_refresh_names_what_asked_for_it(staging: World) -> None:
    annotations = staging.kube.objects[("environments", PROJECT, "staging")]["metadata"]["annotations"]
    annotations["envbranch.io/refresh-scheduled"] = "2030-01-02T03:00:00Z"
    staging.reconcile("staging")
    assert staging.status("staging")["lastRefresh"]["token"] == "scheduled 2030-01-02T03:00:00Z"
    annotations["envbranch.io/refresh"] = "by-hand"
    staging.reconcile("staging")
    assert staging.status("staging")["lastRefresh"]["token"] == "by-hand"


def test_an_impossible_schedule_is_reported(world: World) -> None:
    schedule.tick(world.ctx, _scheduled(world, "0 0 31 2 *"), now=dt.datetime(2030, 1, 1, tzinfo=dt.UTC))
    cond = world.condition("nightly", "Refreshed")
    assert (cond["status"], cond["reason"]) == ("False", "InvalidSchedule") and "0 0 31 2 *" in cond["message"]


def test_names_beside_a_long_database_name_fit_and_differ() -> None:
    long = "p" * 63
    fresh, previous = (engine.refresh.beside(long, s) for s in (engine.refresh.FRESH_SUFFIX,
                                                               engine.refresh.PREVIOUS_SUFFIX))
    assert len(fresh) <= 63 and len(previous) <= 63 and fresh != previous and "___" in fresh
    assert engine.refresh.beside("shop__a", engine.refresh.FRESH_SUFFIX) == "shop__a___next"
