"""Branch roles own their database and nothing else, log in with SCRAM, reach nothing else;
tags find them; drop_branch removes them for sure."""

from __future__ import annotations

import dataclasses
import re
import uuid

import psycopg
import pytest
from psycopg import sql

from envbranch import postgres as engine
from envbranch_testing.postgres import Postgres, Role
from envbranch_testing.rich_schema import admin_server


@pytest.fixture
def branch(rich_source: tuple[Postgres, str]) -> tuple[Postgres, str, str, str, str]:
    pg, src = rich_source
    server = admin_server(pg)
    uid = str(uuid.uuid4())
    db, role = f"cred_{uid[:8]}", f"cred_{uid[:8]}_owner"
    engine.clone_database(server, src, server, db, mode="Full", strategy="Auto", uid=uid)
    password = engine.create_branch_role(server, role, uid)
    engine.grant_ownership(server, db, role)
    return pg, db, role, password, uid


def test_branch_role_owns_everything_in_its_database(branch: tuple[Postgres, str, str, str, str]) -> None:
    pg, db, role, password, _ = branch
    with pg.connect(db, role=Role(role, password)) as conn:
        conn.execute("INSERT INTO \"café\" VALUES ('mine')")
        conn.execute("CREATE TABLE scratch (x int)")
        assert conn.execute("SELECT current_user").fetchone() == (role,)
    with pg.connect(db) as conn:
        foreign = conn.execute("""
            SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%%'
              AND c.relkind IN ('r', 'p', 'v', 'm', 'S') AND c.relowner <> %s::regrole
              AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype = 'e')
            UNION ALL
            SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
            WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND p.proowner <> %s::regrole
              AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype IN ('e', 'i'))
            UNION ALL
            SELECT t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
            WHERE t.typtype IN ('e', 'd') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
              AND t.typowner <> %s::regrole
              AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = t.oid AND d.deptype = 'e')
            UNION ALL SELECT collname FROM pg_collation WHERE collnamespace = 'billing'::regnamespace
              AND collowner <> %s::regrole
            UNION ALL SELECT stxname FROM pg_statistic_ext WHERE stxowner <> %s::regrole
            UNION ALL SELECT cfgname FROM pg_ts_config WHERE cfgnamespace = 'billing'::regnamespace
              AND cfgowner <> %s::regrole
            UNION ALL SELECT dictname FROM pg_ts_dict WHERE dictnamespace = 'billing'::regnamespace
              AND dictowner <> %s::regrole
            UNION ALL SELECT conname FROM pg_conversion WHERE connamespace = 'billing'::regnamespace
              AND conowner <> %s::regrole
            """, (role,) * 8).fetchall()
        assert foreign == []
        assert conn.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s",
                            (db,)).fetchone() == (role,)


def test_branch_role_is_unprivileged_and_reaches_nothing_else(branch: tuple[Postgres, str, str, str, str],
                                                              ) -> None:
    pg, db, role, password, _ = branch
    with pg.connect() as conn:
        flags = conn.execute("SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolcanlogin, "
                             "rolpassword LIKE 'SCRAM-SHA-256$%%' FROM pg_authid WHERE rolname = %s",
                             (role,)).fetchone()
        assert flags == (False, False, False, False, True, True)
        public_connect = conn.execute("SELECT has_database_privilege('public', %s, 'CONNECT')", (db,)).fetchone()
        assert public_connect == (False,)
        conn.execute("CREATE DATABASE other_branch")
        conn.execute("REVOKE CONNECT ON DATABASE other_branch FROM PUBLIC")
    try:
        with pytest.raises(psycopg.OperationalError, match="permission denied"):
            pg.connect("other_branch", role=Role(role, password))
    finally:
        with pg.connect() as conn:
            conn.execute("DROP DATABASE other_branch")


def test_tags_find_the_branch_and_drop_removes_it_even_while_connected(
        branch: tuple[Postgres, str, str, str, str]) -> None:
    pg, db, role, password, uid = branch
    server = admin_server(pg)
    assert {(t.kind, t.name) for t in engine.find_tagged(server) if t.uid == uid} == {("database", db), ("role", role)}
    with pytest.raises(engine.PermanentError, match="not tagged as this environment's"):
        engine.drop_branch(server, db, role, uid=str(uuid.uuid4()))
    session = pg.connect(db, role=Role(role, password))
    try:
        engine.drop_branch(server, db, role, uid=uid)
    finally:
        session.close()
    assert [t for t in engine.find_tagged(server) if t.uid == uid] == []
    engine.drop_branch(server, db, role, uid=uid)  # idempotent


def test_connection_errors_are_classified_without_the_password(postgres: Postgres) -> None:
    wrong = engine.Server(postgres.host, postgres.port, postgres.admin.user, "a-wrong-password-1234")
    with pytest.raises(engine.PermanentError) as info:
        engine.probe(wrong)
    assert "password authentication failed" in str(info.value)
    assert "a-wrong-password-1234" not in str(info.value) and "a-wrong-password-1234" not in repr(wrong)
    from envbranch_testing.processes import free_port

    with pytest.raises(engine.TransientError):
        engine.probe(engine.Server("127.0.0.1", free_port(), "nobody", "x-password-5678"))


@pytest.mark.parametrize("strategy", ["Template", "Dump"])
def test_a_database_born_owned_by_its_role_is_recognised_without_its_tag(rich_source: tuple[Postgres, str],
                                                                          strategy: str) -> None:
    """A crash between CREATE DATABASE and its tag (simulated: the tag removed) leaves a database the
    finalizer and the reaper still know as the branch's, through its owner role."""
    pg, src = rich_source
    server = admin_server(pg)
    uid = str(uuid.uuid4())
    db, role = f"born_{uid[:8]}", f"born_{uid[:8]}_owner"
    engine.create_owner_role(server, role, uid)
    engine.clone_database(server, src, server, db, mode="Full", strategy=strategy,  # type: ignore[arg-type]
                          uid=uid, owner=role)
    with pg.connect() as conn:
        owner = conn.execute("SELECT datdba::regrole::text FROM pg_database WHERE datname = %s", (db,)).fetchone()
        assert owner == (role,)
        conn.execute(f'COMMENT ON DATABASE "{db}" IS NULL')
        assert engine.tags.database_uid(conn, db) == uid
        login = conn.execute("SELECT rolcanlogin FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
        assert login == (False,)  # no LOGIN until the credentials step gives it a password
    assert ("database", db, uid) in {(t.kind, t.name, t.uid) for t in engine.find_tagged(server)}
    engine.drop_branch(server, db, role, uid)
    with pg.connect() as conn:
        assert conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,)).fetchone() is None
        assert conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() is None


def test_an_untagged_database_of_someone_else_is_never_ours(rich_source: tuple[Postgres, str]) -> None:
    pg, _ = rich_source
    server = admin_server(pg)
    db = f"theirs_{uuid.uuid4().hex[:8]}"
    with pg.connect() as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    try:
        with pg.connect() as conn:
            assert engine.tags.database_uid(conn, db) is None
        with pytest.raises(engine.NotOurs):
            engine.drop_database(server, db, str(uuid.uuid4()))
    finally:
        with pg.connect() as conn:
            conn.execute(f'DROP DATABASE "{db}"')


@pytest.mark.parametrize("strategy", ["Template", "Dump"])
def test_no_other_role_may_connect_while_the_copy_is_made(rich_source: tuple[Postgres, str], strategy: str) -> None:
    """CONNECT is revoked from PUBLIC right after CREATE DATABASE, before any row is loaded and long
    before the credentials step: another tenant's role cannot read a copy under way."""
    pg, src = rich_source
    server, uid = admin_server(pg), str(uuid.uuid4())
    db, role = f"early_{uid[:8]}", f"early_{uid[:8]}_owner"
    engine.create_owner_role(server, role, uid)
    try:
        engine.clone_database(server, src, server, db, mode="Full", strategy=strategy, uid=uid,  # type: ignore[arg-type]
                              owner=role)
        with pg.connect() as conn:
            assert conn.execute("SELECT has_database_privilege('public', %s, 'CONNECT')", (db,)).fetchone() == (False,)
            conn.execute(f'CREATE ROLE "other_{uid[:8]}" LOGIN PASSWORD \'other\'')
        with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
            pg.connect(db, role=Role(f"other_{uid[:8]}", "other")).close()
    finally:
        engine.drop_branch(server, db, role, uid)
        with pg.connect() as conn:
            conn.execute(f'DROP ROLE IF EXISTS "other_{uid[:8]}"')


@pytest.mark.parametrize("theirs", [None, "another environment"])
def test_a_role_not_tagged_ours_is_never_taken_over(postgres: Postgres, theirs: str | None) -> None:
    """The postgres layer itself refuses (not only branching's check before it): a role of the branch's
    name that is someone else's, untagged or another UID's, keeps its password, LOGIN and comment."""
    server, uid = admin_server(postgres), str(uuid.uuid4())
    role = f"taken_{uid[:8]}_owner"
    comment = engine.tags.tag_for(str(uuid.uuid4()), None) if theirs else None
    with postgres.connect() as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'theirs-pw'").format(sql.Identifier(role)))
        conn.execute(sql.SQL("COMMENT ON ROLE {} IS {}").format(sql.Identifier(role), sql.Literal(comment)))
    try:
        with pytest.raises(engine.NotOurs):
            engine.create_owner_role(server, role, uid)
        with pytest.raises(engine.NotOurs):
            engine.create_branch_role(server, role, uid)
        postgres.connect(role=Role(role, "theirs-pw")).close()  # its password still works
        with postgres.connect() as conn:
            assert engine.tags.role_uid(conn, role) == (engine.tags._uid(comment) if comment else None)
            assert conn.execute("SELECT rolcanlogin FROM pg_roles WHERE rolname = %s", (role,)).fetchone() == (True,)
    finally:
        with postgres.connect() as conn:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def test_tags_name_the_cluster_of_the_server_they_are_written_through(postgres: Postgres) -> None:
    """The cluster comes with the Server (the operator's context sets it), never from a module global:
    a server without one writes plain tags in the same process."""
    cluster, uid = str(uuid.uuid4()), str(uuid.uuid4())
    ours = dataclasses.replace(admin_server(postgres), cluster=cluster)
    role, plain = f"clu_{uid[:8]}_owner", f"clu_{uid[:8]}_plain"
    engine.create_owner_role(ours, role, uid)
    engine.create_owner_role(admin_server(postgres), plain, uid)
    try:
        found = {t.name: t for t in engine.find_tagged(ours) if t.uid == uid}
        assert found[role].cluster == cluster and found[plain].cluster is None
        assert found[role].foreign_to(str(uuid.uuid4())) and not found[role].foreign_to(cluster)
    finally:
        engine.drop_role(ours, role, uid)
        engine.drop_role(ours, plain, uid)


def test_the_password_reaches_the_server_only_as_a_scram_verifier(postgres_each: Postgres) -> None:
    """The admin's sessions log every statement: the role's password is sent as a SCRAM-SHA-256
    verifier computed by the client (libpq's PQencryptPasswordConn), never as plain text."""
    pg = postgres_each
    server = admin_server(pg)
    uid = str(uuid.uuid4())
    role = f"scram_{uid[:8]}_owner"
    log = pg.base_dir / "postgres.log"
    start = log.stat().st_size
    with pg.connect() as conn:
        conn.execute(f'ALTER ROLE "{pg.admin.user}" SET log_statement = \'all\'')  # a fixed test role name
    try:
        engine.create_owner_role(server, role, uid)
        password = engine.create_branch_role(server, role, uid)
    finally:
        with pg.connect() as conn:
            conn.execute(f'ALTER ROLE "{pg.admin.user}" RESET log_statement')
    try:
        logged = log.read_bytes()[start:].decode(errors="replace")
        given = re.findall(rf"""statement: ALTER ROLE "{role}" LOGIN PASSWORD '([^']*)'""", logged)
        assert len(given) == 1 and given[0].startswith("SCRAM-SHA-256$4096:"), logged[-2000:]
        assert password not in logged
        with pg.connect() as conn:
            stored = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,)).fetchone()
        assert stored == (given[0],)
        with pg.connect(role=Role(role, password)) as conn:  # the verifier is of this password
            assert conn.execute("SELECT current_user").fetchone() == (role,)
    finally:
        engine.drop_role(server, role, uid)
