"""The swap of a refresh on real PostgreSQL (18 and 15), as the operator's admin role: both renames in
one transaction after ending the sessions of the database it replaces, OIDs following the names, no
database but ours ever renamed, and new sessions allowed again when a swap cannot happen."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest

from envbranch import postgres as engine
from envbranch_testing.postgres import Postgres, Role
from envbranch_testing.rich_schema import admin_server


def _branch(pg: Postgres, name: str, uid: str, role: str, marker: str) -> None:
    """A database owned by `role` (tagged with `uid`) holding one row that tells it apart."""
    server = admin_server(pg)
    engine.create_empty_database(server, name, uid, owner=role)
    engine.grant_ownership(server, name, role)
    with pg.connect(name, role=pg.admin) as conn:
        conn.execute(f"SET ROLE {role}")  # a test's own role name
        conn.execute("CREATE TABLE which (v text)")
        conn.execute("INSERT INTO which VALUES (%s)", (marker,))


@pytest.fixture
def pair(postgres_each: Postgres) -> Iterator[tuple[Postgres, str, str, Role]]:
    """`<db>` (marked old) and `<db>___next` (marked new) of one environment, and its LOGIN role."""
    pg = postgres_each
    uid = str(uuid.uuid4())
    db, role = f"swap_{uid[:8]}", f"swap_{uid[:8]}_owner"
    password = engine.create_branch_role(admin_server(pg), role, uid)
    _branch(pg, db, uid, role, "old")
    _branch(pg, engine.refresh.beside(db, engine.refresh.FRESH_SUFFIX), uid, role, "new")
    yield pg, db, uid, Role(role, password)
    server = admin_server(pg)
    for suffix in ("", engine.refresh.FRESH_SUFFIX, engine.refresh.PREVIOUS_SUFFIX):
        engine.drop_database(server, engine.refresh.beside(db, suffix) if suffix else db, uid)
    engine.drop_role(server, role, uid)


def _which(pg: Postgres, db: str, role: Role) -> str:
    with pg.connect(db, role=role) as conn:
        return str(conn.execute("SELECT v FROM which").fetchone()[0])  # type: ignore[index]


def test_the_swap_ends_sessions_and_renames_both_at_once(pair: tuple[Postgres, str, str, Role]) -> None:
    pg, db, uid, role = pair
    server = admin_server(pg)
    fresh = engine.refresh.beside(db, engine.refresh.FRESH_SUFFIX)
    previous = engine.refresh.beside(db, engine.refresh.PREVIOUS_SUFFIX)
    before = engine.refresh.find(server, (db, fresh, previous), uid)
    assert set(before) == {db, fresh} and all(f.ours for f in before.values())
    session = psycopg.connect(pg.conninfo(db, role), autocommit=True)  # the application, connected
    cutoff = engine.refresh.swap(server, db, fresh, previous, uid)
    assert 0 <= cutoff < 30
    with pytest.raises(psycopg.OperationalError):
        session.execute("SELECT 1")
    after = engine.refresh.find(server, (db, fresh, previous), uid)
    assert set(after) == {db, previous}
    assert after[db].oid == before[fresh].oid and after[previous].oid == before[db].oid
    assert _which(pg, db, role) == "new"  # same name, same role and password, the new rows


def test_a_database_not_ours_is_never_renamed(pair: tuple[Postgres, str, str, Role]) -> None:
    pg, db, _, role = pair
    server = admin_server(pg)
    fresh = engine.refresh.beside(db, engine.refresh.FRESH_SUFFIX)
    with pytest.raises(engine.NotOurs):
        engine.refresh.swap(server, db, fresh, engine.refresh.beside(db, engine.refresh.PREVIOUS_SUFFIX),
                            str(uuid.uuid4()))
    assert _which(pg, db, role) == "old"


def test_a_swap_that_cannot_happen_lets_sessions_in_again(pair: tuple[Postgres, str, str, Role]) -> None:
    pg, db, uid, role = pair
    server = admin_server(pg)
    fresh = engine.refresh.beside(db, engine.refresh.FRESH_SUFFIX)
    taken = engine.refresh.beside(db, engine.refresh.PREVIOUS_SUFFIX)
    with pg.connect(role=pg.admin) as conn:  # the name the old database would take is in use
        conn.execute(f'CREATE DATABASE "{taken}"')  # a test's own name
    try:
        with pytest.raises(engine.EngineError):
            engine.refresh.swap(server, db, fresh, taken, uid)
        assert _which(pg, db, role) == "old"  # not swapped, and connections allowed again
        assert set(engine.refresh.find(server, (db, fresh), uid)) == {db, fresh}
    finally:
        engine.drop_database(server, taken)


def test_a_name_left_empty_is_mended_by_a_rename(pair: tuple[Postgres, str, str, Role]) -> None:
    pg, db, uid, role = pair
    server = admin_server(pg)
    previous = engine.refresh.beside(db, engine.refresh.PREVIOUS_SUFFIX)
    engine.refresh.rename(server, db, previous, uid)
    assert db not in engine.refresh.find(server, (db,), uid)
    engine.refresh.rename(server, previous, db, uid)
    assert _which(pg, db, role) == "old"
