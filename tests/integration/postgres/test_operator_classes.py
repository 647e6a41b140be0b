"""Operator classes and families: only a superuser may create them. A Template copy keeps them and
hands them to the branch role; a Dump, restored as the branch role, could never recreate them, so it
refuses before anything is copied, with the way out in the message."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from psycopg import sql

from envbranch import postgres as engine
from envbranch_testing.postgres import Postgres
from envbranch_testing.rich_schema import admin_server

OPCLASS = """
CREATE FUNCTION cents_eq(numeric, numeric) RETURNS boolean LANGUAGE sql IMMUTABLE
    AS 'SELECT round($1, 2) = round($2, 2)';
CREATE FUNCTION cents_hash(numeric) RETURNS integer LANGUAGE sql IMMUTABLE AS 'SELECT hashtext(round($1, 2)::text)';
CREATE OPERATOR === (LEFTARG = numeric, RIGHTARG = numeric, FUNCTION = cents_eq);
CREATE TABLE prices (id int PRIMARY KEY, amount numeric);
INSERT INTO prices SELECT i, i / 3.0 FROM generate_series(1, 200) i;
"""
# As a superuser, then handed to the application's owner, as a production database would have it.
SUPERUSER_PART = """
CREATE OPERATOR CLASS cents_ops FOR TYPE numeric USING hash AS OPERATOR 1 ===, FUNCTION 1 cents_hash(numeric);
ALTER OPERATOR CLASS cents_ops USING hash OWNER TO {admin};
ALTER OPERATOR FAMILY cents_ops USING hash OWNER TO {admin};
CREATE INDEX prices_cents ON prices USING hash (amount cents_ops);
"""


@pytest.fixture
def opclass_source(postgres_each: Postgres) -> Iterator[tuple[Postgres, str]]:
    pg, db = postgres_each, f"opclass_{uuid.uuid4().hex[:8]}"
    with pg.connect(role=pg.admin) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
    with pg.connect(db, role=pg.admin) as conn:
        conn.execute(OPCLASS)
    with pg.connect(db) as conn:  # the superuser
        conn.execute(sql.SQL(SUPERUSER_PART).format(admin=sql.Identifier(pg.admin.user)))
    yield pg, db
    engine.drop_database(admin_server(pg), db)


def test_template_keeps_operator_classes_and_hands_them_over(opclass_source: tuple[Postgres, str]) -> None:
    pg, src = opclass_source
    server, uid = admin_server(pg), str(uuid.uuid4())
    dst, role = f"{src}_t", f"{src}_t_owner"
    engine.create_owner_role(server, role, uid)
    try:
        result = engine.clone_database(server, src, server, dst, mode="Full", strategy="Template", uid=uid, owner=role)
        assert result.strategy == "Template"
        engine.grant_ownership(server, dst, role)
        with pg.connect(dst) as conn:
            owners = conn.execute(
                "SELECT (SELECT opcowner::regrole::text FROM pg_opclass WHERE opcname = 'cents_ops'), "
                "(SELECT opfowner::regrole::text FROM pg_opfamily WHERE opfname = 'cents_ops')").fetchone()
            assert owners == (role, role)
            assert conn.execute("SELECT count(*) FROM prices WHERE amount === 1.0").fetchone() == (1,)
    finally:
        engine.drop_branch(server, dst, role, uid)


@pytest.mark.parametrize("mode", ["Full", "System"])
def test_a_dump_refuses_a_source_with_operator_classes_before_copying(opclass_source: tuple[Postgres, str],
                                                                      mode: str) -> None:
    pg, src = opclass_source
    server, uid = admin_server(pg), str(uuid.uuid4())
    dst, role = f"{src}_{mode.lower()}", f"{src}_{mode.lower()}_owner"
    engine.create_owner_role(server, role, uid)
    try:
        with pytest.raises(engine.PermanentError) as refused:
            engine.clone_database(server, src, server, dst, mode=mode, strategy="Dump", uid=uid,  # type: ignore[arg-type]
                                  owner=role)
        assert "has operator class public.cents_ops, operator family public.cents_ops: only a superuser" \
            in refused.value.message
        assert "strategy Template" in refused.value.message
        with pg.connect() as conn:
            assert conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dst,)).fetchone() is None
    finally:
        engine.drop_branch(server, dst, role, uid)
