"""A refresh in place broken half-way: the operator SIGKILLed in the middle of the copy, just before
and just after the swap; PostgreSQL stopped in the middle of the copy. The environment ends with its
old database or its new one under its own name, never without one and never with a second one left
beside it; its Secret is the same bytes and still logs in."""

from __future__ import annotations

import base64
import time
from typing import Any

import psycopg
import pytest
from faults import BIG_ROOT, DUMP, unpause, wait_copying

from envbranch_testing.operator import OperatorProcess
from envbranch_testing.processes import WaitTimeout, wait_until
from envbranch_testing.reliability_table import Recorder
from envbranch_testing.scenario import Project

pytestmark = pytest.mark.needs_local_operator  # SIGKILLs and restarts the operator process


def _over(project: Project, name: str, token: str) -> dict[str, Any] | None:
    status = project.status(name)
    state = status.get("refresh") or {}
    return status if state.get("token") == token and state.get("stage") in ("Done", "Failed") else None


def _secret(project: Project, name: str) -> dict[str, str]:
    return dict(project.core.read_namespaced_secret(f"{name}-db", f"{project.namespace}-{name}").data)


def _databases_of(project: Project, dbname: str) -> list[str]:
    """The environment's database and anything a refresh made beside it."""
    with project.pg.connect() as conn:
        rows = conn.execute("SELECT datname FROM pg_database WHERE datname = %s OR datname LIKE %s ORDER BY 1",
                            (dbname, dbname.replace("_", r"\_") + r"\_\_\_%")).fetchall()
    return [str(r[0]) for r in rows]


def _assert_one_database(project: Project, name: str, status: dict[str, Any], secret: dict[str, str]) -> int:
    """Exactly the environment's own database, tagged with its UID; the same Secret logs in. Returns
    the rows of t0 it serves."""
    db = status["database"]["name"]
    assert _databases_of(project, db) == [db]
    assert sorted(t.name for t in project.tagged(project.uid(name)) if t.kind == "database") == [db]
    assert [e["name"] for e in status["inventory"] if e["kind"] == "Database"] == [db]
    assert _secret(project, name) == secret
    with psycopg.connect(base64.b64decode(secret["uri"]).decode(), connect_timeout=10) as conn:
        return int(str(conn.execute("SELECT count(*) FROM t0").fetchone()[0]))  # type: ignore[index]


def _noticed(project: Project, name: str) -> str | None:
    """How the refresh shows it met the stopped server without giving up: a Retrying Event (the copy
    is tried again), or Refreshed=False waiting for the DatabaseServer to be Ready again."""
    retries = [m for r, m in project.events(name) if r == "Retrying"]
    if retries:
        return f"Retrying: {retries[0]}"
    refreshed = next((c for c in project.status(name).get("conditions") or [] if c["type"] == "Refreshed"), {})
    return f"waiting: {refreshed['message']}" if refreshed.get("reason") == "ServerNotReady" else None


def _grow_source(project: Project, root: str, rows: int) -> None:
    with project.pg.connect(project.status(root)["database"]["name"]) as conn:
        conn.execute("INSERT INTO t0 SELECT g, 'new' FROM generate_series(1000001, 1000000 + %s) g", (rows,))


@pytest.mark.reliability("operator SIGKILLed during a refresh", "a Dump refresh of a ~200 MB branch, the "
                         "operator killed mid-copy, at the swap and right after it, then restarted: the refresh "
                         "ends Done with the new rows; one database under the environment's name, nothing "
                         "beside it, the Secret byte-identical and logging in")
@pytest.mark.parametrize("point", ["mid-copy", "refresh-swap", "refresh-swapped"])
def test_operator_killed_during_a_refresh(big: Project, operator: OperatorProcess, record: Recorder,
                                          point: str) -> None:
    name = f"refresh-{point}"
    big.apply_env(name, {"source": BIG_ROOT, "mode": "Full", "database": DUMP})
    big.wait_phase(name, "Active", timeout=300)
    _grow_source(big, BIG_ROOT, 10)
    try:
        _kill_during_refresh(big, operator, record, name, point)
    finally:  # the session's big source stays as the other tests expect it
        with big.pg.connect(big.status(BIG_ROOT)["database"]["name"]) as conn:
            conn.execute("DELETE FROM t0 WHERE id > 1000000")
    big.delete_env(name)
    big.wait_gone(name, timeout=180)


def _kill_during_refresh(big: Project, operator: OperatorProcess, record: Recorder, name: str, point: str) -> None:
    secret = _secret(big, name)
    token = f"kill-{point}"
    pause = {} if point == "mid-copy" else {"envbranch.io/inject-pause": point}
    big.annotate(name, {"envbranch.io/refresh": token, **pause})
    if point == "mid-copy":
        wait_copying(big.pg, big.status(BIG_ROOT)["database"]["name"])
    else:
        try:
            wait_until(lambda: "Paused" in big.event_reasons(name), timeout=300, what=f"{name} to pause at {point}")
        except WaitTimeout as exc:  # say where the refresh stood instead
            status = big.status(name)
            raise AssertionError(f"{exc}; refresh: {status.get('refresh')}; conditions: "
                                 f"{status.get('conditions')}; events: {big.events(name)[-8:]}") from None
    operator.kill()
    try:
        if pause:
            unpause(big, name)
    finally:
        operator.start()
    started = time.monotonic()
    status = wait_until(lambda: _over(big, name, token), timeout=300, what=f"the refresh of {name} to end")
    record.number(f"{point}: restart → Done", f"{time.monotonic() - started:.1f} s")
    assert status["refresh"]["stage"] == "Done", status
    assert _assert_one_database(big, name, status, secret) == 60_010


@pytest.mark.reliability("PostgreSQL stopped during a refresh", "the server stopped mid-copy of a refresh and "
                         "started again: the refresh is retried (never Failed for the stop), ends Done; one "
                         "database under the environment's name, nothing beside it, the Secret byte-identical")
def test_postgres_stopped_during_a_refresh(side: Project, record: Recorder) -> None:
    name = "refresh-pg-stopped"
    side.apply_env(name, {"source": "side-root", "mode": "Full", "database": DUMP})
    status = side.wait_phase(name, "Active", timeout=300)
    secret = _secret(side, name)
    _grow_source(side, "side-root", 5)
    side.annotate(name, {"envbranch.io/refresh": "through-a-stop"})
    wait_copying(side.pg, "side_source")
    assert side.pg.process is not None
    side.pg.process.stop()
    noticed = wait_until(lambda: _noticed(side, name), timeout=60, what="the operator to notice the stopped server")
    record.number("while down", noticed)
    assert side.status(name)["refresh"]["stage"] in ("Copying", "Copied")
    side.pg.start()
    restarted = time.monotonic()
    status = wait_until(lambda: _over(side, name, "through-a-stop"), timeout=300, what=f"the refresh of {name}")
    record.number("restart → refresh over", f"{time.monotonic() - restarted:.1f} s, {status['refresh']['stage']}")
    assert status["refresh"]["stage"] == "Done", status
    assert _assert_one_database(side, name, status, secret) == 40_005
