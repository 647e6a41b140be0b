"""A branch whose role name someone else already uses on the server fails clearly, leaves that role
exactly as it was, and leaves nothing of its own behind."""

from __future__ import annotations

from typing import Any

from psycopg import sql

from envbranch import postgres as engine
from envbranch_testing.processes import wait_until
from envbranch_testing.scenario import Project


def _role_state(project: Project, role: str) -> tuple[Any, ...]:
    """Everything about the role a branch could change: attributes, password, comment, memberships."""
    with project.pg.connect() as conn:
        row = conn.execute(
            "SELECT rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin, rolreplication, rolbypassrls, "
            "rolconnlimit, rolpassword, rolvaliduntil, shobj_description(oid, 'pg_authid'), "
            "ARRAY(SELECT (roleid::regrole::text, member::regrole::text) FROM pg_auth_members "
            "      WHERE roleid = a.oid OR member = a.oid ORDER BY 1), "
            "ARRAY(SELECT datname FROM pg_database WHERE datdba = a.oid ORDER BY 1) "
            "FROM pg_authid a WHERE rolname = %s", (role,)).fetchone()
    assert row is not None, f"role {role} is gone"
    return tuple(row)


def test_a_role_name_taken_by_someone_else_fails_the_branch_and_is_left_alone(shop: Project) -> None:
    name = "taken"
    role = engine.branch_role_name(shop.namespace, name)
    dbname = engine.branch_database_name(shop.namespace, name)
    with shop.pg.connect() as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'someone-elses-password'").format(sql.Identifier(role)))
        conn.execute(sql.SQL("COMMENT ON ROLE {} IS 'the payroll team''s role'").format(sql.Identifier(role)))
    before = _role_state(shop, role)
    try:
        shop.apply_env(name, {"source": "production", "mode": "System"})
        uid = shop.uid(name)
        assert shop.wait_phase(name, "Active", "Failed")["phase"] == "Failed"
        status = shop.wait_stalled(name)
        ready = next(c for c in status["conditions"] if c["type"] == "Ready")
        assert ready["reason"] == "RoleConflict", ready
        assert f"role {role} already exists" in ready["message"] and "not this environment's" in ready["message"]
        assert "rolled back" in ready["message"], ready
        database_ready = next(c for c in status["conditions"] if c["type"] == "DatabaseReady")
        assert database_ready["status"] == "False" and database_ready["reason"] == "RoleConflict"
        assert status.get("inventory") in (None, [])
        # That role is exactly as it was; the branch made nothing that is left.
        assert _role_state(shop, role) == before
        wait_until(lambda: not shop.namespace_exists(f"{shop.namespace}-{name}"), timeout=60,
                   what="the branch namespace to be gone")
        assert shop.tagged(uid) == []
        with shop.pg.connect() as conn:
            assert conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone() is None
        shop.wait_events(name, "RolledBack")
        # Deleting the failed branch (its finalizer) leaves the role alone too.
        shop.delete_env(name)
        shop.wait_gone(name, timeout=60)
        assert _role_state(shop, role) == before
    finally:
        with shop.pg.connect() as conn:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
