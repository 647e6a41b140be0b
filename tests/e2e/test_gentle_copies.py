"""Gentle copies, copies read from a real streaming standby, and the storage budget, through the
operator: the branch passes the schema and row checks, status says where its rows came from, and the
primary's copy of the source is never opened. The DatabaseServer's status reports its replicas' health."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from envbranch.api.common import GROUP, VERSION
from envbranch_testing.controlplane import ControlPlane
from envbranch_testing.operator import ExternalOperator, OperatorProcess
from envbranch_testing.postgres import Postgres, Standby
from envbranch_testing.processes import free_port, wait_until
from envbranch_testing.rich_schema import RICH_SCHEMA, assert_same_copy
from envbranch_testing.scenario import Project, assert_nothing_left


@pytest.fixture(scope="module")
def standby(postgres: Postgres) -> Iterator[Standby]:
    with Standby(postgres) as replica:
        yield replica


@pytest.fixture
def rich_project(project: Project, standby: Standby) -> Iterator[tuple[Project, str]]:
    """`project` with a production root adopting a copy of the rich database, replayed on the standby."""
    dbname = f"rich_{project.namespace.replace('-', '_')}"
    with project.pg.connect(role=project.pg.admin) as conn:
        conn.execute(f'CREATE DATABASE "{dbname}"')
    with project.pg.connect(dbname, role=project.pg.admin) as conn:
        conn.execute(RICH_SCHEMA)
    project.allow_adoption(dbname)
    project.apply_env("production", {"database": {"serverRef": "main", "name": dbname}})
    project.wait_phase("production", "Active")
    wait_until(standby.caught_up, timeout=60, what="the standby to replay the rich database")
    yield project, dbname


def _patch_server(project: Project, spec: dict[str, Any]) -> None:
    project.custom.patch_namespaced_custom_object(GROUP, VERSION, project.namespace, "databaseservers", "main",
                                                  {"spec": spec})


def _replicas_ready(project: Project, status: str) -> dict[str, Any]:
    """The DatabaseServer's status once its ReplicasReady condition has `status`."""
    def reached() -> dict[str, Any] | None:
        server = project.server_status()
        found = next((c for c in server.get("conditions") or [] if c["type"] == "ReplicasReady"), None)
        return server if found is not None and found["status"] == status else None

    return wait_until(reached, timeout=90, what=f"ReplicasReady={status} on DatabaseServer main")


def _condition(status: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in status.get("conditions") or [] if c["type"] == type_), None)


def test_the_server_status_names_a_dead_replica_until_it_is_removed(project: Project, standby: Standby,
                                                                     controlplane: ControlPlane) -> None:
    live, dead = f"{standby.host}:{standby.port}", f"{standby.host}:{free_port()}"
    _patch_server(project, {"replicas": [{"host": standby.host, "port": standby.port},
                                         {"host": standby.host, "port": int(dead.rsplit(":", 1)[1])}]})
    _replicas_ready(project, "False")
    # A standby that has not replayed a transaction since it started cannot say its lag yet: the next
    # probes do, once the primary's writes (this test's own) reach it.
    def lag_known() -> dict[str, Any] | None:
        server = project.server_status()
        known = any(r["address"] == live and "replayLagSeconds" in r for r in server.get("replicas") or [])
        return server if known else None

    status = wait_until(lag_known, timeout=60, what=f"the replay lag of {live} in the status")
    replicas_ready = _condition(status, "ReplicasReady")
    assert replicas_ready is not None and replicas_ready["reason"] == "ReplicaUnavailable", replicas_ready
    assert dead in replicas_ready["message"] and f"{live}:" not in replicas_ready["message"]
    assert project.pg.admin.password not in replicas_ready["message"]
    assert _condition(status, "Ready")["status"] == "True"  # type: ignore[index]  # the primary serves on
    usable = {r["address"]: r for r in status["replicas"]}
    assert usable[live]["usable"] and usable[live]["replayLagSeconds"] >= 0, usable
    assert not usable[dead]["usable"] and usable[dead]["reason"] == "Unreachable", usable
    assert status["replicasUsable"] == "1/2"
    table = controlplane.kubectl("get", "dbserver", "main", "-n", project.namespace).stdout
    assert "REPLICAS" in table.splitlines()[0] and " 1/2 " in table.splitlines()[1], table
    project.wait_events("main", "ReplicaUnavailable", kind="DatabaseServer")  # posted after the status
    warnings = project.core.list_namespaced_event(
        project.namespace, field_selector="involvedObject.kind=DatabaseServer,reason=ReplicaUnavailable").items
    assert [(e.type, e.message) for e in warnings] == [("Warning", replicas_ready["message"])]

    _patch_server(project, {"replicas": [{"host": standby.host, "port": standby.port}]})
    status = _replicas_ready(project, "True")
    assert [r["address"] for r in status["replicas"]] == [live] and status["replicasUsable"] == "1/1"
    project.wait_events("main", "ReplicasUsable", kind="DatabaseServer")

    _patch_server(project, {"replicas": None})
    wait_until(lambda: "replicas" not in project.server_status() and _condition(project.server_status(),
                                                                                "ReplicasReady") is None,
               timeout=90, what="the replica status to go with spec.replicas")


def test_a_branch_read_from_the_standby_leaves_the_primary_alone(rich_project: tuple[Project, str],
                                                                 standby: Standby) -> None:
    project, src = rich_project
    _patch_server(project, {"replicas": [{"host": standby.host, "port": standby.port}]})
    before = project.pg.sessions_opened(src)
    project.apply_env("from-standby", {"source": "production", "mode": "Full", "database": {"strategy": "Dump"}})
    status = project.wait_phase("from-standby", "Active", "Failed")
    assert status["phase"] == "Active", status
    database = status["database"]
    assert database["rowsFrom"] == f"{standby.host}:{standby.port}", database
    assert database["replicaLagSeconds"] >= 0
    assert project.pg.sessions_opened(src) == before + 1  # only our marker opened it on the primary
    assert_same_copy(project.pg, src, database["name"], from_standby=True)
    assert any(reason == "DatabaseCloned" and f"read from replica {standby.host}:{standby.port}" in message
               for reason, message in project.events("from-standby"))


@pytest.mark.parametrize("spool", [False, True], ids=["streamed", "spooled"])
def test_a_gentle_branch_keeps_every_object_and_row(rich_project: tuple[Project, str],
                                                    operator: OperatorProcess | ExternalOperator, spool: bool) -> None:
    project, src = rich_project
    _patch_server(project, {"dump": {"maxRate": "2Mi", "streams": 3, "spool": spool}})
    project.apply_env("gentle", {"source": "production", "mode": "Full",
                                 "database": {"strategy": "Dump", "dump": {"streams": 1}}})
    status = project.wait_phase("gentle", "Active", "Failed")
    assert status["phase"] == "Active", status
    assert status["database"]["rowsFrom"] == f"{project.pg.host}:{project.pg.port}"
    assert status["database"].get("replicaLagSeconds") is None
    assert_same_copy(project.pg, src, status["database"]["name"])
    database = status["database"]
    assert database["spooled"] is spool, database
    assert 0 < database["snapshotSeconds"] <= database["seconds"], database
    assert any(r == "DatabaseCloned" and ("(spooled, then loaded at maxRate)" in m) is spool
               for r, m in project.events("gentle")), project.events("gentle")
    if isinstance(operator, OperatorProcess):  # the chart's Pod keeps its spool to itself
        assert list(operator.spool_dir.iterdir()) == []


def test_a_branch_over_the_storage_budget_fails_before_anything_is_copied(rich_project: tuple[Project, str]) -> None:
    project, _ = rich_project
    _patch_server(project, {"storage": {"budgetBytes": 1024 * 1024, "reserveBytes": 0}})
    project.apply_env("too-big", {"source": "production", "mode": "Full"})
    status = project.wait_stalled("too-big")
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "InsufficientStorage" and "does not fit" in ready["message"], ready
    assert "spec.storage" in ready["message"]
    assert_nothing_left(project, "too-big", project.uid("too-big"))
