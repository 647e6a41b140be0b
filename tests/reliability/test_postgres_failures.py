"""PostgreSQL failing under a clone: the server stopped mid-copy and started again, and the source
database dropped mid-copy. Either the branch retries to Active or it fails with its rollback
complete; nothing is left behind either way."""

from __future__ import annotations

import time

import pytest
from faults import DUMP, adopt_root, assert_converged, assert_nothing_left, create_big_database, wait_copying

from envbranch import postgres as engine
from envbranch_testing.processes import wait_until
from envbranch_testing.reliability_table import Recorder
from envbranch_testing.scenario import Project


def _settled(project: Project, name: str) -> dict[str, object] | None:
    """Active, or Failed with the rollback finished (Stalled=True)."""
    status = project.status(name)
    stalled = any(c["type"] == "Stalled" and c["status"] == "True" for c in status.get("conditions") or [])
    return status if status.get("phase") == "Active" or (status.get("phase") == "Failed" and stalled) else None


def _noticed(project: Project, name: str) -> str | None:
    """How the operator shows it met the stopped server, without giving up: a Retrying Event (a
    transient failure, run again with backoff), or Pending while its DatabaseServer is not Ready."""
    retries = [m for r, m in project.events(name) if r == "Retrying"]
    if retries:
        return f"Retrying: {retries[0]}"
    ready = next((c for c in project.status(name).get("conditions") or [] if c["type"] == "Ready"), {})
    return f"Pending: {ready['message']}" if ready.get("reason") == "ServerNotReady" else None


@pytest.mark.reliability("PostgreSQL stopped during a clone, then started", "while the server is down the "
                         "branch is not Failed (a Retrying Event or Pending on ServerNotReady); the same port after "
                         "the restart; a Retrying Event naming the lost connection in step database before Active "
                         "(or before the rollback); Active with one database, role and Secret, or Failed with "
                         "nothing left; no orphan database or role on the server")
def test_server_stopped_during_a_clone_recovers_or_rolls_back(side: Project, record: Recorder) -> None:
    name = "pg-stopped"
    side.apply_env(name, {"source": "side-root", "mode": "Full", "database": DUMP})
    uid = side.uid(name)
    wait_copying(side.pg, "side_source")
    port = side.pg.port
    assert side.pg.process is not None
    side.pg.process.stop()
    noticed = wait_until(lambda: _noticed(side, name), timeout=60,
                         what=f"the operator to retry or wait for the server while PostgreSQL is down ({name})")
    assert side.status(name).get("phase") != "Failed"
    record.number("while down", noticed)
    side.pg.start()
    assert side.pg.port == port
    restarted = time.monotonic()
    status = wait_until(lambda: _settled(side, name), timeout=180, what=f"{name} to be Active or rolled back")
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")  # type: ignore[union-attr]
    record.number("ended", f"{status['phase']} {time.monotonic() - restarted:.1f} s after the restart "
                  f"({ready['reason']}: {ready['message']})")
    # The copy the stop broke was retried: a Retrying Event naming the lost connection came before
    # the branch was Active (or rolled back), and no step failed for good.
    end = "Active" if status["phase"] == "Active" else "RolledBack"
    events = side.wait_events(name, end)
    retried = [m for r, m in events if r == "Retrying"]
    assert retried and "step database" in retried[0] and "connection" in retried[0].lower(), events
    assert [r for r, _ in events].index("Retrying") < [r for r, _ in events].index(end), events
    record.number("retries", len(retried))
    if status["phase"] == "Active":
        assert_converged(side, name, status)
        expected = [("database", uid), ("role", uid)]
    else:
        assert status.get("inventory") in (None, [])
        assert_nothing_left(side, name, uid)
        expected = []
    # Nothing on the server but what the branch owns: whatever the crash left is reaped.
    wait_until(lambda: _tagged_on(side) == expected, timeout=30, what="no orphan on the restarted server")
    side.delete_env(name)
    side.wait_gone(name)
    assert _tagged_on(side) == []


def _tagged_on(project: Project) -> list[tuple[str, str]]:
    return sorted((t.kind, t.uid) for t in engine.find_tagged(project.engine_server()))


@pytest.mark.reliability("source database dropped during a clone", "DROP DATABASE … WITH (FORCE) of the source "
                         "mid-COPY: Failed, Stalled, the Ready message names the cause, rollback complete, no "
                         "namespace, database or role left")
def test_source_dropped_during_a_clone_fails_and_rolls_back(project: Project) -> None:
    dbname = f"vanishing_{project.namespace.replace('-', '_')}"
    create_big_database(project.pg, dbname, rows=30_000)
    adopt_root(project, "vanishing", dbname)
    name = "orphaned-branch"
    project.apply_env(name, {"source": "vanishing", "mode": "Full", "database": DUMP})
    uid = project.uid(name)
    wait_copying(project.pg, dbname)
    with project.pg.connect() as conn:
        conn.execute(f'DROP DATABASE "{dbname}" WITH (FORCE)')  # a fixed test name, not user input
    status = project.wait_stalled(name, timeout=180)
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False" and "rolled back" in ready["message"], ready
    assert "step database failed" in ready["message"], ready
    assert status.get("inventory") in (None, [])
    assert_nothing_left(project, name, uid)
    project.wait_events(name, "RolledBack")
