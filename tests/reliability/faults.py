"""Shared by the reliability tests: a big source database, seeing a copy run, and what a converged
or a rolled-back branch must look like."""

from __future__ import annotations

from typing import Any

from kubernetes import client
from psycopg import sql

from envbranch import postgres as engine
from envbranch.api.common import GROUP, VERSION
from envbranch_testing.postgres import Postgres
from envbranch_testing.processes import wait_until
from envbranch_testing.scenario import Project, assert_nothing_left  # noqa: F401 - shared by the tests here

BIG_ROOT = "big"


DUMP = {"strategy": "Dump"}


def create_big_database(pg: Postgres, dbname: str, *, tables: int = 4, rows: int = 60_000) -> None:
    """`tables` tables of `rows` rows of ~800 bytes (~50 MB each at the default), owned by the admin."""
    with pg.connect(role=pg.admin) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    with pg.connect(dbname, role=pg.admin) as conn:
        for i in range(tables):
            table = sql.Identifier(f"t{i}")
            conn.execute(sql.SQL("CREATE TABLE {} (id bigint PRIMARY KEY, payload text NOT NULL)").format(table))
            conn.execute(sql.SQL("INSERT INTO {} SELECT g, repeat(md5(g::text), 24) FROM generate_series(1, {}) g")
                         .format(table, sql.Literal(rows)))


def adopt_root(project: Project, name: str, dbname: str, server: str = "main") -> dict[str, Any]:
    """A root Environment adopting an existing database (its namespace is created for it)."""
    project.allow_adoption(dbname, server)
    project.apply_env(name, {"database": {"serverRef": server, "name": dbname}})
    return project.wait_phase(name, "Active")


def source_database(project: Project, root: str) -> str:
    return str(project.status(root)["database"]["name"])


def copying(pg: Postgres, source_db: str) -> bool:
    """A row COPY out of `source_db` by the operator is running right now: the Dump is mid-copy."""
    with pg.connect() as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND state = 'active' "
                           "AND application_name = 'envbranch' AND query LIKE 'COPY %%TO STDOUT%%'",
                           (source_db,)).fetchone()
    return bool(row and int(str(row[0])) > 0)


def wait_copying(pg: Postgres, source_db: str, timeout: float = 90) -> None:
    wait_until(lambda: copying(pg, source_db), timeout=timeout, interval=0.05,
               what=f"the operator to be copying rows out of {source_db}")


def unpause(project: Project, name: str) -> None:
    project.custom.patch_namespaced_custom_object(GROUP, VERSION, project.namespace, "environments", name, {
        "metadata": {"annotations": {"envbranch.io/inject-pause": None}}})


def wait_paused(project: Project, name: str, step: str, timeout: float = 60) -> None:
    """The operator holds `name` at `step` (the test switch posted its Paused Event)."""
    wait_until(lambda: project.status(name).get("progress", {}).get("step") == step
               and "Paused" in project.event_reasons(name), timeout=timeout, what=f"{name} to pause at {step}")


def assert_converged(project: Project, name: str, status: dict[str, Any], *, secrets: set[str] | None = None,
                     configmaps: set[str] | None = None) -> None:
    """Active with exactly one database and one role (tagged with the UID) and one credentials Secret."""
    assert status["phase"] == "Active", status
    db = status["database"]["name"]
    tagged = sorted((t.kind, t.name) for t in project.tagged(project.uid(name)))
    assert tagged == [("database", db), ("role", engine.branch_role_name(project.namespace, name))]
    ns = status["namespace"]
    assert {s.metadata.name for s in project.core.list_namespaced_secret(ns).items} == {f"{name}-db", *(secrets or ())}
    cms = {c.metadata.name for c in project.core.list_namespaced_config_map(ns).items} - {"kube-root-ca.crt"}
    assert cms == {"envbranch-environment", *(configmaps or ())}
    with project.pg.connect() as conn:
        same_name = conn.execute("SELECT count(*) FROM pg_database WHERE datname = %s", (db,)).fetchone()
    assert same_name == (1,)


def stalled_message(status: dict[str, Any]) -> str:
    return str(next(c for c in status["conditions"] if c["type"] == "Ready")["message"])


def api_ready(api: client.ApiClient) -> bool:
    client.CoreV1Api(api).list_namespace(limit=1)
    return True
