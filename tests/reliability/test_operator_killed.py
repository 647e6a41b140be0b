"""SIGKILL the operator at each step boundary of a branch, and in the middle of a long dump, restart
it: the branch ends Active with exactly one database, one role and one credentials Secret."""

from __future__ import annotations

import time

import pytest
from faults import BIG_ROOT, DUMP, assert_converged, source_database, unpause, wait_copying
from psycopg import sql

from envbranch_testing.operator import OperatorProcess
from envbranch_testing.processes import wait_until
from envbranch_testing.reliability_table import Recorder
from envbranch_testing.scenario import Project

STEPS = ["namespace", "database", "credentials", "configuration"]
pytestmark = pytest.mark.needs_local_operator  # SIGKILLs and restarts the operator process


@pytest.mark.reliability("operator SIGKILLed at a step boundary", "ends Active; tagged with its UID exactly "
                         "one database and one role; in its namespace exactly the credentials Secret, the copied "
                         "Secret, envbranch-environment and the copied ConfigMap")
@pytest.mark.parametrize("step", STEPS)
def test_killed_at_a_step_boundary_the_branch_still_converges(shop: Project, operator: OperatorProcess,
                                                               step: str) -> None:
    name = f"killed-{step}"
    shop.apply_env(name, {"source": "production", "mode": "Full", "copy": {"environmentVariables": True}},
                   annotations={"envbranch.io/inject-pause": step})
    wait_until(lambda: shop.status(name).get("progress", {}).get("step") == step, timeout=60,
               what=f"{name} to pause at step {step}")
    operator.kill()
    try:
        unpause(shop, name)
    finally:
        operator.start()
    status = shop.wait_phase(name, "Active", "Failed", timeout=180)
    assert_converged(shop, name, status, secrets={"app-secrets"}, configmaps={"app-env"})


@pytest.mark.reliability("operator SIGKILLed during a long dump", "Full mode, Dump strategy, ~200 MB source "
                         "killed mid-COPY: ends Active; one database (the partial copy replaced), one role, one "
                         "Secret; all four tables equal to the source by row count and md5 of the rows in key "
                         "order")
def test_killed_during_a_long_dump_the_branch_still_converges(big: Project, operator: OperatorProcess,
                                                              record: Recorder) -> None:
    name = "killed-mid-dump"
    source_db = source_database(big, BIG_ROOT)
    big.apply_env(name, {"source": BIG_ROOT, "mode": "Full", "database": DUMP})
    wait_copying(big.pg, source_db)
    operator.kill()
    started = time.monotonic()
    operator.start()
    status = big.wait_phase(name, "Active", "Failed", timeout=180)
    record.number("restart → Active", f"{time.monotonic() - started:.1f} s")
    with big.pg.connect() as conn:
        size = conn.execute("SELECT pg_database_size(%s)", (source_db,)).fetchone()
    record.number("source", f"{int(str(size[0])) / 2**20:.0f} MiB" if size else "?")
    assert_converged(big, name, status)
    assert status["database"]["strategy"] == "Dump"
    # Every table of the source, by count and by a digest of its rows in key order.
    copied = _digests(big, status["database"]["name"])
    assert copied == _digests(big, source_db)
    assert sorted(copied) == ["t0", "t1", "t2", "t3"] and {n for n, _ in copied.values()} == {60_000}


def _digests(project: Project, dbname: str) -> dict[str, tuple[int, str]]:
    """(rows, md5 of the rows in primary-key order) of every table in the public schema."""
    with project.pg.connect(dbname) as conn:
        tables = [str(r[0]) for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1").fetchall()]
        found = {}
        for table in tables:  # names read from the catalog of a test database
            row = conn.execute(sql.SQL("SELECT count(*), coalesce(md5(string_agg(id::text || ':' || payload, ',' "
                                       "ORDER BY id)), '') FROM {}").format(sql.Identifier(table))).fetchone()
            assert row is not None
            found[table] = (int(str(row[0])), str(row[1]))
    return found
