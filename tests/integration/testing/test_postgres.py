"""The test PostgreSQL is real: TCP with SCRAM, a non-superuser admin, template clones, client tools."""

from __future__ import annotations

import subprocess

import psycopg
import pytest

from envbranch_testing.postgres import Postgres
from envbranch_testing.processes import pid_alive


def test_admin_role_can_create_but_is_not_superuser(postgres_each: Postgres) -> None:
    with postgres_each.connect(role=postgres_each.admin) as conn:
        row = conn.execute("SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_roles "
                           "WHERE rolname = current_user").fetchone()
    assert row == (False, True, True)


def test_wrong_password_is_refused(postgres: Postgres) -> None:
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(host=postgres.host, port=postgres.port, user=postgres.admin.user,
                        password="wrong", dbname="postgres")


def test_create_database_from_template_with_file_copy(postgres_each: Postgres) -> None:
    with postgres_each.connect(role=postgres_each.admin) as conn:
        conn.execute("CREATE DATABASE smoke_src")
    with postgres_each.connect("smoke_src", role=postgres_each.admin) as conn:
        conn.execute("CREATE TABLE t AS SELECT generate_series(1, 100) AS n")
    with postgres_each.connect(role=postgres_each.admin) as conn:
        conn.execute("CREATE DATABASE smoke_dst TEMPLATE smoke_src STRATEGY FILE_COPY")
    with postgres_each.connect("smoke_dst", role=postgres_each.admin) as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (100,)
    with postgres_each.connect(role=postgres_each.admin) as conn:
        conn.execute("DROP DATABASE smoke_dst")
        conn.execute("DROP DATABASE smoke_src")


def test_client_tools_are_at_least_the_server_version(postgres_each: Postgres) -> None:
    tools = postgres_each.client_tools()
    assert tools.major >= postgres_each.major
    for tool in ("pg_dump", "pg_restore", "psql"):
        out = subprocess.run([tools.path(tool), "--version"], capture_output=True, text=True, check=True)
        assert str(tools.major) in out.stdout


def test_stop_leaves_no_process() -> None:
    pg = Postgres()
    with pg:
        assert pg.process is not None and pg.process.pid is not None
        pid = pg.process.pid
        assert pid_alive(pid)
    assert not pid_alive(pid)
    assert not pg.base_dir.exists()
