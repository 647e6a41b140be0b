"""A DatabaseServer's replicas in its status (ReplicasReady, status.replicas, replicasUsable), written
by the probe from the replica checks (faked here): the unusable ones named, the primary's Ready left
alone, an Event when ReplicasReady appears or flips, and no status write while only a lag wobbles."""

from __future__ import annotations

from typing import Any

import pytest
from core_fakes import PROJECT, SERVER, World

from envbranch import postgres as engine
from envbranch.api.databaseserver import DatabaseServerSpec
from envbranch.branching import connection, server_replicas, servers

STANDBY, DEAD = "10.0.0.8:5432", "10.0.0.9:5999"
REFUSED = 'connection to server at "10.0.0.9", port 5999 failed: Connection refused'


class Probe:
    """What the fake checks answer: the primary's readiness and each replica's lag or failure."""

    def __init__(self) -> None:
        self.primary_ready = True
        self.lag: float | None = 0.4
        self.checked: list[list[str]] = []

    def check(self, ctx: Any, project: str, name: str, spec: DatabaseServerSpec) -> list[engine.ReplicaCheck]:
        listed = [f"{r.host}:{r.port}" for r in spec.replicas or []]
        self.checked.append(listed)
        return [engine.ReplicaCheck(a, True, "Usable", "standby of db.example:5432", self.lag) if a == STANDBY
                else engine.ReplicaCheck(a, False, "Unreachable", REFUSED) for a in listed]


@pytest.fixture
def probe(world: World, monkeypatch: pytest.MonkeyPatch) -> Probe:
    fake = Probe()
    monkeypatch.setattr(connection, "probe", lambda ctx, project, name: (
        (True, "Connected", "PostgreSQL 18.1", {"version": "18.1"}) if fake.primary_ready
        else (False, "Unreachable", "connection refused", {})))
    monkeypatch.setattr(connection, "check_replicas", fake.check)
    monkeypatch.setattr(servers, "protect_admin_secret", lambda kube, body: None)
    return fake


def _server(world: World) -> dict[str, Any]:
    return world.kube.objects[("databaseservers", PROJECT, SERVER)]


def _list(world: World, *addresses: str) -> None:
    spec = _server(world)["spec"]
    spec["replicas"] = [{"host": a.split(":")[0], "port": int(a.split(":")[1])} for a in addresses]
    if not addresses:
        del spec["replicas"]


def _probe(world: World) -> dict[str, Any]:
    servers.probe_server(world.ctx, _server(world))
    return _server(world)["status"]


def _condition(status: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in status.get("conditions") or [] if c["type"] == type_), None)


def test_an_unusable_replica_is_named_and_the_primary_stays_ready(world: World, probe: Probe) -> None:
    _list(world, STANDBY, DEAD)
    status = _probe(world)
    replicas = _condition(status, "ReplicasReady")
    assert replicas is not None and replicas["status"] == "False" and replicas["reason"] == "ReplicaUnavailable"
    assert DEAD in replicas["message"] and "Connection refused" in replicas["message"]
    assert STANDBY not in replicas["message"]
    assert _condition(status, "Ready")["status"] == "True"  # type: ignore[index]
    assert status["replicasUsable"] == "1/2"
    assert status["replicas"] == [
        {"address": STANDBY, "usable": True, "reason": "Usable", "message": "standby of db.example:5432",
         "replayLagSeconds": 0},
        {"address": DEAD, "usable": False, "reason": "Unreachable", "message": REFUSED}]
    # The server was Ready before: the one Event is about the replicas, a Warning.
    assert [(reason, warning) for _, reason, _, warning in world.kube.events] == [("ReplicaUnavailable", True)]


def test_a_wobbling_lag_writes_no_status_and_a_moving_one_does(world: World, probe: Probe) -> None:
    _list(world, STANDBY)
    _probe(world)
    writes = len(world.kube.patches)
    for lag in (2.7, 0.0, 4.4, 0.0):
        probe.lag = lag
        _probe(world)
    assert len(world.kube.patches) == writes
    assert _server(world)["status"]["replicas"][0]["replayLagSeconds"] == 0
    probe.lag = 3600.2
    assert _probe(world)["replicas"][0]["replayLagSeconds"] == 3600
    probe.lag = 3900  # under a tenth of an hour more: no write
    _probe(world)
    assert len(world.kube.patches) == writes + 1
    assert [reason for _, reason, _, _ in world.kube.events] == ["ReplicasUsable"]  # none per lag


def test_another_unusable_replica_is_told_while_replicas_stay_unready(world: World, probe: Probe) -> None:
    _list(world, STANDBY, DEAD)
    _probe(world)
    _probe(world)  # nothing changed: no second Event
    other = "10.0.0.10:5432"
    _list(world, STANDBY, DEAD, other)
    status = _probe(world)
    assert other in _condition(status, "ReplicasReady")["message"]  # type: ignore[index]
    assert [(reason, warning) for _, reason, _, warning in world.kube.events] == [
        ("ReplicaUnavailable", True), ("ReplicaUnavailable", True)]
    assert status["replicasUsable"] == "1/3"


def test_removing_the_dead_replica_makes_replicas_ready(world: World, probe: Probe) -> None:
    _list(world, STANDBY, DEAD)
    _probe(world)
    _list(world, STANDBY)
    status = _probe(world)
    replicas = _condition(status, "ReplicasReady")
    assert replicas is not None and replicas["status"] == "True" and replicas["reason"] == "ReplicasUsable"
    assert status["replicasUsable"] == "1/1" and [r["address"] for r in status["replicas"]] == [STANDBY]
    assert world.kube.events[-1][1:] == ("ReplicasUsable", replicas["message"], False)


def test_with_no_replica_listed_there_is_no_condition_and_no_field(world: World, probe: Probe) -> None:
    status = _probe(world)
    assert _condition(status, "ReplicasReady") is None and "replicas" not in status
    assert probe.checked == []
    _list(world, DEAD)
    assert _probe(world)["replicasUsable"] == "0/1"
    _list(world)
    status = _probe(world)
    assert _condition(status, "ReplicasReady") is None
    assert "replicas" not in status and "replicasUsable" not in status
    assert _condition(status, "Ready")["status"] == "True"  # type: ignore[index]


def test_while_the_primary_is_down_the_last_replica_status_stays(world: World, probe: Probe) -> None:
    _list(world, STANDBY, DEAD)
    before = _probe(world)["replicas"]
    probe.primary_ready = False
    status = _probe(world)
    assert _condition(status, "Ready")["status"] == "False"  # type: ignore[index]
    assert status["replicas"] == before and _condition(status, "ReplicasReady")["status"] == "False"  # type: ignore[index]
    assert len(probe.checked) == 1  # not checked against a primary that cannot be read


def test_steady_lags_keeps_only_small_moves_of_the_same_replica() -> None:
    stored = [{"address": "a:1", "replayLagSeconds": 100}, {"address": "b:1", "replayLagSeconds": 0},
              {"address": "c:1", "usable": False}]
    wanted = [{"address": "a:1", "replayLagSeconds": 109}, {"address": "b:1", "replayLagSeconds": 5},
              {"address": "c:1", "replayLagSeconds": 2}, {"address": "d:1", "replayLagSeconds": 3}]
    assert [r["replayLagSeconds"] for r in server_replicas.steady_lags(stored, wanted)] == [100, 5, 2, 3]
    assert server_replicas.steady_lags(None, wanted) == wanted


def test_a_primary_lost_between_probe_and_check_keeps_the_last_replica_status(
        world: World, probe: Probe, monkeypatch: pytest.MonkeyPatch) -> None:
    _list(world, STANDBY)
    before = _probe(world)["replicas"]

    def primary_gone(*_: Any) -> list[engine.ReplicaCheck]:
        raise engine.TransientError("connection refused")

    monkeypatch.setattr(connection, "check_replicas", primary_gone)
    _list(world, STANDBY, DEAD)
    status = _probe(world)
    assert status["replicas"] == before and status["replicasUsable"] == "1/1"
