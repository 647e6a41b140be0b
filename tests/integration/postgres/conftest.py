"""The rich source database on each server version."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from envbranch import postgres as engine
from envbranch_testing.postgres import Postgres
from envbranch_testing.rich_schema import RICH_SCHEMA, admin_server


@pytest.fixture(scope="session")
def rich_source(postgres_each: Postgres) -> Iterator[tuple[Postgres, str]]:
    """`rich` on each server version, created by the admin role (as the operator's admin would own it)."""
    pg = postgres_each
    with pg.connect(role=pg.admin) as conn:
        conn.execute("CREATE DATABASE rich")
    with pg.connect("rich", role=pg.admin) as conn:
        conn.execute(RICH_SCHEMA)
    yield pg, "rich"
    engine.drop_database(admin_server(pg), "rich")
