"""Code a branch owner plants in a branch never runs as the DatabaseServer's admin role.

The owner of a branch (anyone with its credentials Secret) plants catalog look-alikes
(`public.quote_ident(name)`, `public.format(text, name, name)`, `public.pg_relation_size(oid)`, an
operator `public.=(name, text)`) and a CHECK constraint and a generated column calling a function
that refuses to run as the admin. Branching that branch (Template and Dump), handing ownership
over, probing the server, finding tags and dumping the schema for `envbranch diff` must all
succeed: any planted code that ran as the admin would have raised. The test first shows the traps
are armed.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from envbranch import postgres as engine
from envbranch.postgres.schema import schema_dump
from envbranch_testing.postgres import Postgres, Role
from envbranch_testing.rich_schema import admin_server

TRAP = """
CREATE FUNCTION public.refuse_admin(what text) RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF current_user = {admin} THEN
        RAISE EXCEPTION 'planted % ran as %', what, current_user;
    END IF;
    RETURN true;
END $$;
CREATE FUNCTION public.quote_ident(name) RETURNS text LANGUAGE sql
    AS $$ SELECT CASE WHEN public.refuse_admin('quote_ident') THEN pg_catalog.quote_ident($1::text) END $$;
CREATE FUNCTION public.format(text, name, name) RETURNS text LANGUAGE sql
    AS $$ SELECT CASE WHEN public.refuse_admin('format') THEN pg_catalog.format($1, $2::text, $3::text) END $$;
CREATE FUNCTION public.pg_relation_size(oid) RETURNS bigint LANGUAGE sql
    AS $$ SELECT CASE WHEN public.refuse_admin('pg_relation_size') THEN 0::bigint END $$;
CREATE FUNCTION public.name_eq_text(name, text) RETURNS boolean LANGUAGE sql
    AS $$ SELECT public.refuse_admin('operator =') AND $1::text = $2 $$;
CREATE OPERATOR public.= (LEFTARG = name, RIGHTARG = text, FUNCTION = public.name_eq_text);
CREATE FUNCTION public.doubled(x int) RETURNS int LANGUAGE sql IMMUTABLE
    AS $$ SELECT CASE WHEN public.refuse_admin('generated column') THEN x * 2 END $$;
CREATE TABLE guarded (
    x int CHECK (public.refuse_admin('check constraint')),
    y int GENERATED ALWAYS AS (public.doubled(x)) STORED
);
INSERT INTO guarded (x) SELECT generate_series(1, 100);
"""


@contextlib.contextmanager
def tenant_database(pg: Postgres, prefix: str, schema: str) -> Iterator[tuple[str, str]]:
    """(database, tenant): a database owned by a tenant role (the admin a member of it, as of any
    source), with `schema` run by that tenant ({tenant} and {admin} filled in as literals)."""
    suffix = uuid.uuid4().hex[:8]
    tenant, db = f"tenant_{suffix}", f"{prefix}_{suffix}"
    with pg.connect() as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'tenant'").format(sql.Identifier(tenant)))
        conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(tenant), sql.Identifier(pg.admin.user)))
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(db), sql.Identifier(tenant)))
    try:
        with pg.connect(db, role=Role(tenant, "tenant")) as conn:
            conn.execute(sql.SQL(schema).format(admin=sql.Literal(pg.admin.user), tenant=sql.Literal(tenant)))
        yield db, tenant
    finally:
        with pg.connect() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db)))
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(tenant)))


@pytest.fixture
def planted(postgres_each: Postgres) -> Iterator[tuple[Postgres, str, str]]:
    """A database owned by a tenant role, with the traps planted by that tenant."""
    with tenant_database(postgres_each, "planted", TRAP) as (db, tenant):
        yield postgres_each, db, tenant


def test_the_traps_are_armed(planted: tuple[Postgres, str, str]) -> None:
    """Without the defences the planted code runs as the admin and says so."""
    pg, db, _ = planted
    with pg.connect(db, role=pg.admin) as conn:
        with pytest.raises(psycopg.errors.RaiseException, match="planted quote_ident ran as"):
            conn.execute("SELECT quote_ident(nspname) FROM pg_namespace")
        with pytest.raises(psycopg.errors.RaiseException, match=r"planted (check constraint|generated column) ran as"):
            conn.execute("INSERT INTO guarded (x) VALUES (1)")


@pytest.mark.parametrize("strategy", ["Template", "Dump"])
def test_branching_a_planted_branch_runs_none_of_it_as_admin(planted: tuple[Postgres, str, str],
                                                             strategy: str) -> None:
    pg, src, _ = planted
    server = admin_server(pg)
    uid = str(uuid.uuid4())
    dst = f"{src}_{strategy.lower()}"
    role = f"{dst}_owner"
    engine.create_owner_role(server, role, uid)
    try:
        result = engine.clone_database(server, src, server, dst, mode="Full", strategy=strategy,  # type: ignore[arg-type]
                                       uid=uid, owner=role)
        assert result.strategy == strategy
        engine.grant_ownership(server, dst, role)
        assert engine.probe(server).can_create_db
        assert any(t.name == dst for t in engine.find_tagged(server))
        assert "CREATE TABLE public.guarded" in schema_dump(server, dst)
        with pg.connect(dst) as conn:
            assert conn.execute("SELECT count(*), sum(y) FROM guarded").fetchone() == (100, 10100)
            owner = conn.execute("SELECT relowner::regrole::text FROM pg_class WHERE relname = 'guarded'").fetchone()
        assert owner == (role,)
    finally:
        engine.drop_branch(server, dst, role, uid)


def test_row_data_never_reaches_the_failure_message(postgres: Postgres) -> None:
    """A row the branch role may not load (its CHECK calls code that says no to anyone but the
    tenant) fails the Dump; the server quotes the row (DETAIL: Failing row contains …, CONTEXT: COPY
    …: "…"), and none of it reaches the message conditions and Events carry."""
    pg = postgres
    rows = """
        CREATE FUNCTION public.only_tenant() RETURNS boolean LANGUAGE sql STABLE
            AS $$ SELECT current_user = {tenant} $$;
        CREATE TABLE customers (id int PRIMARY KEY, email text CHECK (public.only_tenant()));
        INSERT INTO customers VALUES (1, 'jane.doe.private@example.com');
    """
    with tenant_database(pg, "rows", rows) as (src, _):
        _assert_no_row_data(pg, src)


def _assert_no_row_data(pg: Postgres, src: str) -> None:
    server, uid = admin_server(pg), str(uuid.uuid4())
    dst, role = f"{src}_copy", f"{src}_copy_owner"
    engine.create_owner_role(server, role, uid)
    try:
        with pytest.raises(engine.EngineError) as failed:
            engine.clone_database(server, src, server, dst, mode="Full", strategy="Dump", uid=uid, owner=role)
        message = failed.value.message
        assert "violates check constraint" in message, message  # the failure is there, and says why
        assert "jane.doe.private" not in message and "jane.doe.private" not in str(failed.value)
    finally:
        engine.drop_branch(server, dst, role, uid)
