"""A sealed snapshot's Dump is checkpointed at once, so its first branch does not write it (postgres/durability.py):
only when the admin role may (superuser or pg_checkpoint), on PostgreSQL 18 and 15."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
from psycopg import sql

from envbranch import postgres as engine
from envbranch.postgres.durability import may_checkpoint
from envbranch_testing.postgres import Postgres
from envbranch_testing.rich_schema import admin_server


def _checkpoint_lsn(pg: Postgres) -> str:
    with pg.connect() as conn:
        row = conn.execute("SELECT checkpoint_lsn::text FROM pg_control_checkpoint()").fetchone()
    assert row is not None
    return str(row[0])


@pytest.fixture
def checkpointer(postgres_each: Postgres) -> Iterator[engine.Server]:
    """An admin role like the harness's, also a member of pg_checkpoint."""
    pg, password = postgres_each, secrets.token_urlsafe(16)
    with pg.connect() as conn:
        conn.execute(sql.SQL("CREATE ROLE ckpt_admin LOGIN CREATEDB CREATEROLE PASSWORD {}").format(
            sql.Literal(password)))
        conn.execute("GRANT pg_checkpoint TO ckpt_admin")
    try:
        yield engine.Server(pg.host, pg.port, "ckpt_admin", password)
    finally:
        with pg.connect() as conn:
            conn.execute("DROP ROLE ckpt_admin")


def test_an_admin_without_pg_checkpoint_asks_for_none(postgres_each: Postgres) -> None:
    pg = postgres_each
    with pg.connect() as conn:  # something to write, so that a checkpoint would move checkpoint_lsn
        conn.execute("CREATE TABLE IF NOT EXISTS ckpt_probe (n int); INSERT INTO ckpt_probe VALUES (1)")
    before = _checkpoint_lsn(pg)
    assert not may_checkpoint(admin_server(pg))
    assert engine.checkpoint_if_allowed(admin_server(pg)) is False
    assert _checkpoint_lsn(pg) == before


def test_a_member_of_pg_checkpoint_checkpoints(postgres_each: Postgres, checkpointer: engine.Server) -> None:
    pg = postgres_each
    with pg.connect() as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS ckpt_probe (n int); INSERT INTO ckpt_probe VALUES (1)")
    before = _checkpoint_lsn(pg)
    assert engine.checkpoint_if_allowed(checkpointer) is True
    assert _checkpoint_lsn(pg) != before  # CHECKPOINT returns once the checkpoint is done
