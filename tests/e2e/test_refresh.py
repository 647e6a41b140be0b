"""Sealed environments and refresh in place (issue 16): the real operator, API server and PostgreSQL.

A sealed snapshot hands out no credentials and lets no role but the operator's admin in, so its
branches are Template copies. A refresh re-clones a branch from its source beside the old database
and swaps the names: same role, password and Secret, new source rows, children untouched; a copy
that fails leaves the old data serving and says why."""

from __future__ import annotations

import base64
import datetime as dt
import uuid
from typing import Any

import psycopg
import pytest
from kubernetes import client
from psycopg import sql
from typer.testing import CliRunner

from envbranch import postgres as engine
from envbranch.api.common import parse_rfc3339
from envbranch.cli.main import app
from envbranch_testing.controlplane import ControlPlane
from envbranch_testing.postgres import Role
from envbranch_testing.processes import wait_until
from envbranch_testing.scenario import Project


def _condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions") or [] if c["type"] == type_), {})


def _secret(project: Project, name: str) -> client.V1Secret:
    return project.core.read_namespaced_secret(f"{name}-db", f"{project.namespace}-{name}")


def _uri(secret: client.V1Secret) -> str:
    return base64.b64decode(secret.data["uri"]).decode()


def _customers(conninfo: str) -> int:
    with psycopg.connect(conninfo, connect_timeout=10) as conn:
        return int(str(conn.execute("SELECT count(*) FROM customers").fetchone()[0]))  # type: ignore[index]


def _add_customers(project: Project, n: int) -> None:
    with project.pg.connect(project.status("production")["database"]["name"]) as conn:
        conn.execute("INSERT INTO customers (email, name) SELECT 'new' || i || '-' || %s || '@example.com', "
                     "'New ' || i FROM generate_series(1, %s) i", (uuid.uuid4().hex[:6], n))


def _refresh(project: Project, name: str, token: str, timeout: float = 180) -> dict[str, Any]:
    """Ask for a refresh and wait until it is over (Done or Failed); the status then."""
    project.annotate(name, {"envbranch.io/refresh": token})
    return wait_until(lambda: (s := project.status(name)).get("refresh", {}).get("token") == token and
                      s["refresh"]["stage"] in ("Done", "Failed") and s, timeout=timeout,
                      what=f"refresh {token} of {name} to finish")


def _leftovers(project: Project, dbname: str) -> list[str]:
    """Databases beside `dbname` that a refresh makes: none may outlive it."""
    with project.pg.connect() as conn:
        rows = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s ORDER BY 1",
                            (dbname.replace("_", r"\_") + r"\_\_\_%",)).fetchall()
    return [str(r[0]) for r in rows]


def _login_refused(pg_conninfo: str) -> str:
    with pytest.raises(psycopg.OperationalError) as refused:
        psycopg.connect(pg_conninfo, connect_timeout=10).close()
    return str(refused.value)


def test_a_sealed_snapshot_lets_only_the_operator_in_and_its_branches_are_template_copies(shop: Project) -> None:
    shop.apply_env("open", {"source": "production", "mode": "System"})
    shop.apply_env("snapshot", {"source": "production", "mode": "Full", "access": "Sealed"})
    status = shop.wait_phase("snapshot", "Active")
    db = status["database"]["name"]
    assert status["access"] == "Sealed" and "credentialsSecret" not in status
    assert _condition(status, "CredentialsReady")["reason"] == "Sealed"
    ns = status["namespace"]
    assert [s.metadata.name for s in shop.core.list_namespaced_secret(ns).items] == []
    assert {c.metadata.name for c in shop.core.list_namespaced_config_map(ns).items} - {"kube-root-ca.crt"} == set()
    owner = engine.branch_role_name(shop.namespace, "snapshot")
    with shop.pg.connect() as conn:
        assert conn.execute("SELECT rolcanlogin FROM pg_roles WHERE rolname = %s", (owner,)).fetchone() == (False,)
        grantees = conn.execute("SELECT DISTINCT a.grantee::regrole::text FROM pg_database d, "
                                "aclexplode(d.datacl) a WHERE d.datname = %s AND a.privilege_type = 'CONNECT'",
                                (db,)).fetchall()
        assert grantees == [(owner,)]  # the owner's own entry; the owner cannot log in
        # Even the branch role with a password of its own is refused: it has no LOGIN.
        conn.execute(sql.SQL("ALTER ROLE {} PASSWORD 'tried-anyway'").format(sql.Identifier(owner)))
        stranger = Role(f"stranger_{uuid.uuid4().hex[:6]}", "stranger-password")
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
            sql.Identifier(stranger.user), sql.Literal(stranger.password)))
    assert "not permitted to log in" in _login_refused(shop.pg.conninfo(db, Role(owner, "tried-anyway")))
    assert "permission denied for database" in _login_refused(shop.pg.conninfo(db, stranger))
    # The application role of an open branch of the same production.
    shop.wait_phase("open", "Active")
    app_uri = _uri(_secret(shop, "open"))
    assert "permission denied for database" in _login_refused(app_uri.replace(
        f"/{shop.status('open')['database']['name']}?", f"/{db}?"))
    with shop.pg.connect(db, role=shop.pg.admin) as conn:  # the operator's admin role
        assert conn.execute("SELECT count(*) FROM customers").fetchone() == (200,)
    # Every branch of the snapshot is a Template copy, whatever runs on production meanwhile.
    with shop.pg.connect(shop.status("production")["database"]["name"]) as busy:
        busy.execute("SELECT 1")
        shop.apply_env("pr-1", {"source": "snapshot", "mode": "Full"})
        child = shop.wait_phase("pr-1", "Active")
    assert child["database"]["strategy"] == "Template" and child["access"] == "Open"
    assert _customers(_uri(_secret(shop, "pr-1"))) == 200


def test_access_is_immutable_and_refresh_is_for_branches(shop: Project) -> None:
    shop.apply_env("fixed", {"source": "production", "mode": "System"})
    with pytest.raises(client.ApiException) as refused:
        shop.custom.patch_namespaced_custom_object("envbranch.io", "v1alpha1", shop.namespace, "environments",
                                                   "fixed", {"spec": {"access": "Sealed"}})
    assert refused.value.status == 422 and "spec.access is immutable" in str(refused.value.body)
    with pytest.raises(client.ApiException) as rootless:
        shop.apply_env("rootsched", {"refresh": {"schedule": "0 3 * * *"}})
    assert "spec.refresh needs spec.source" in str(rootless.value.body)
    with pytest.raises(client.ApiException) as bad:
        shop.apply_env("badsched", {"source": "production", "mode": "System", "refresh": {"schedule": "nightly"}})
    assert bad.value.status == 422 and "spec.refresh.schedule" in str(bad.value.body)
    # Well-formed at apply, impossible to the operator: said in the condition.
    shop.apply_env("never", {"source": "production", "mode": "System", "refresh": {"schedule": "0 0 31 2 *"}})
    shop.wait_phase("never", "Active")
    cond = wait_until(lambda: _condition(shop.status("never"), "Refreshed") or None, timeout=60,
                      what="the invalid schedule to be reported")
    assert cond["status"] == "False" and cond["reason"] == "InvalidSchedule"


def test_refresh_on_demand_keeps_identity_brings_new_rows_and_children_survive(
        shop: Project, controlplane: ControlPlane, monkeypatch: pytest.MonkeyPatch) -> None:
    shop.apply_env("staging", {"source": "production", "mode": "Full", "ttl": "72h"},
                   annotations={"envbranch.io/refresh": "t0"})
    status = shop.wait_phase("staging", "Active")
    assert status["refresh"] == {"token": "t0", "stage": "Done"}  # a token applied with it asks for nothing
    before = _secret(shop, "staging")
    uri = _uri(before)
    assert _customers(uri) == 200
    shop.apply_env("child", {"source": "staging", "mode": "Full"})
    child = shop.wait_phase("child", "Active")
    with psycopg.connect(_uri(_secret(shop, "child"))) as conn:
        conn.execute("INSERT INTO customers (email, name) VALUES ('child@example.com', 'Child')")
    _add_customers(shop, 7)
    session = psycopg.connect(uri, autocommit=True)  # a session the swap ends
    refreshed = _refresh(shop, "staging", "t1")
    assert refreshed["refresh"]["stage"] == "Done", refreshed
    assert _condition(refreshed, "Refreshed")["status"] == "True"
    last = refreshed["lastRefresh"]
    assert last["token"] == "t1" and last["bytes"] > 0 and last["strategy"] in ("Template", "Dump")
    assert 0 <= last["cutoffSeconds"] <= last["seconds"]
    with pytest.raises(psycopg.OperationalError):
        session.execute("SELECT 1")
    after = _secret(shop, "staging")
    assert after.data == before.data and after.metadata.resource_version == before.metadata.resource_version
    assert _customers(uri) == 207  # the same connection string, the new rows
    db = refreshed["database"]["name"]
    assert db == status["database"]["name"] and _leftovers(shop, db) == []
    assert refreshed["expiresAt"] == status["expiresAt"] and refreshed["branchedAt"] == status["branchedAt"]
    assert sorted((t.kind, t.name) for t in shop.tagged(shop.uid("staging"))) == [
        ("database", db), ("role", engine.branch_role_name(shop.namespace, "staging"))]
    assert [e for e in refreshed["inventory"] if e["kind"] == "Database"] == [
        {"kind": "Database", "name": db, "server": "main"}]
    assert shop.status("child")["phase"] == "Active" and shop.status("child")["database"] == child["database"]
    assert _customers(_uri(_secret(shop, "child"))) == 201
    # The CLI asks for one the same way, and waits for it.
    monkeypatch.setenv("KUBECONFIG", str(controlplane.kubeconfig))  # each command builds its client from it
    _add_customers(shop, 3)
    result = CliRunner().invoke(app, ["refresh", "staging", "-n", shop.namespace, "--wait", "--timeout", "180"])
    assert result.exit_code == 0, result.output
    assert "staging refreshed" in result.output and _customers(uri) == 210


def test_a_scheduled_refresh_runs_on_time(shop: Project) -> None:
    shop.apply_env("nightly", {"source": "production", "mode": "Full", "refresh": {"schedule": "* * * * *"}})
    shop.wait_phase("nightly", "Active")
    secret = _secret(shop, "nightly")
    assert wait_until(lambda: shop.status("nightly").get("nextRefresh"), timeout=30, what="nextRefresh")
    _add_customers(shop, 4)
    added = dt.datetime.now(dt.UTC)
    # A run may fire before the rows were added (the minute can turn at once): wait for one after.
    status = wait_until(lambda: (s := shop.status("nightly")).get("refresh", {}).get("stage") == "Done" and
                        parse_rfc3339(s["refresh"]["startedAt"]) > added.replace(microsecond=0) and s,
                        timeout=180, what="a scheduled refresh started after the rows were added")
    assert status["lastRefresh"]["token"].startswith("scheduled ")
    assert _secret(shop, "nightly").data == secret.data
    assert _customers(_uri(secret)) == 204


def test_a_refresh_whose_copy_fails_keeps_the_old_data_and_says_why(shop: Project) -> None:
    shop.apply_env("fragile", {"source": "production", "mode": "Full", "database": {"strategy": "Dump"}})
    status = shop.wait_phase("fragile", "Active")
    uri = _uri(_secret(shop, "fragile"))
    source = shop.status("production")["database"]["name"]
    with shop.pg.connect(source) as conn:  # the copy may not read one table of the source
        conn.execute(sql.SQL("REVOKE SELECT ON customers FROM {}").format(sql.Identifier(shop.pg.admin.user)))
    try:
        failed = _refresh(shop, "fragile", "doomed")
    finally:
        with shop.pg.connect(source) as conn:
            conn.execute(sql.SQL("GRANT SELECT ON customers TO {}").format(sql.Identifier(shop.pg.admin.user)))
    cond = _condition(failed, "Refreshed")
    assert failed["refresh"]["stage"] == "Failed" and cond["status"] == "False" and cond["reason"] == "CopyFailed"
    assert "permission denied" in cond["message"] and "was not replaced" in cond["message"]
    assert failed["phase"] == "Active" and "lastRefresh" not in failed
    assert _customers(uri) == 200
    db = status["database"]["name"]
    wait_until(lambda: _leftovers(shop, db) == [] and [e["name"] for e in shop.status("fragile")["inventory"]
                                                       if e["kind"] == "Database"] == [db],
               timeout=60, what="the partial copy to be dropped and forgotten")
    shop.wait_events("fragile", "RefreshFailed")
    # Readable again, the next token refreshes.
    _add_customers(shop, 2)
    assert _refresh(shop, "fragile", "again")["refresh"]["stage"] == "Done"
    assert _customers(uri) == 202
