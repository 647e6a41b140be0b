"""No generated password, rotated value, source secret value or admin password appears in the
operator's log, any Event, any Environment or DatabaseServer, or the text of a failed run; branch
credentials are 32 random bytes for a role without superuser/createdb/createrole, and nobody but that
role may connect to the branch database."""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest
from psycopg import sql

from envbranch import postgres as engine
from envbranch_testing.controlplane import ControlPlane
from envbranch_testing.operator import OperatorProcess
from envbranch_testing.processes import wait_until
from envbranch_testing.sample_app import shop_configuration
from envbranch_testing.scenario import Project

ALL = {"fileProviders": True, "gatewayRoutes": True, "securityConfig": True, "environmentVariables": True}


def _decoded(project: Project, ns: str, name: str) -> dict[str, str]:
    data = project.core.read_namespaced_secret(name, ns).data or {}
    return {k: base64.b64decode(v).decode() for k, v in data.items()}


def _all_branch_passwords(project: Project) -> dict[str, str]:
    """The password of every branch credentials Secret in the cluster right now."""
    found = {}
    for secret in project.core.list_secret_for_all_namespaces(label_selector="envbranch.io/environment").items:
        data = secret.data or {}
        if secret.type == "kubernetes.io/basic-auth" and "password" in data:
            found[f"{secret.metadata.namespace}/{secret.metadata.name}"] = base64.b64decode(data["password"]).decode()
    return found


@pytest.fixture
def statement_log(shop: Project) -> Iterator[Callable[[], str]]:
    """The session server logs every statement while the test runs (log_statement = all, reloaded,
    then reset); yields a function that reads what the server logged since."""
    log = shop.pg.base_dir / "postgres.log"
    start = log.stat().st_size
    with shop.pg.connect() as conn:
        conn.execute("ALTER SYSTEM SET log_statement = 'all'")
        conn.execute("SELECT pg_reload_conf()")
    try:
        # A reload is asynchronous: wait until a new session logs its statements.
        marker = f"statement log on {uuid.uuid4().hex}"

        def logging_on() -> bool:
            with shop.pg.connect() as conn:
                conn.execute(sql.SQL("SELECT {}").format(sql.Literal(marker)))
            return marker in log.read_text(errors="replace")

        wait_until(logging_on, timeout=30, what="log_statement = all to take effect")
        yield lambda: log.read_bytes()[start:].decode(errors="replace")
    finally:
        with shop.pg.connect() as conn:
            conn.execute("ALTER SYSTEM RESET log_statement")
            conn.execute("SELECT pg_reload_conf()")


@pytest.mark.reliability("secrets never leak", "no branch password (every one in the cluster), rotated value, "
                         "source Secret value or admin password in the operator log, Events, Environment and "
                         "DatabaseServer YAML, failure messages or the PostgreSQL log written with log_statement = "
                         "all; that log holds the branch role's CREATE ROLE and its ALTER ROLE … LOGIN PASSWORD with "
                         "a SCRAM-SHA-256 verifier (hashed by the client), so the check is not vacuous")
def test_no_secret_value_reaches_logs_events_or_status(shop: Project, operator: OperatorProcess,
                                                       controlplane: ControlPlane,
                                                       statement_log: Callable[[], str]) -> None:
    shop.apply_env("leaky", {"source": "production", "mode": "Full", "copy": ALL})
    shop.apply_env("leaky-failed", {"source": "production", "mode": "Full", "copy": ALL},
                   annotations={"envbranch.io/inject-fault": "configuration"})
    shop.create_server("wrong", password="wrong-admin-password-value")
    status = shop.wait_phase("leaky", "Active")
    shop.wait_stalled("leaky-failed")
    wait_until(lambda: any(c["status"] == "False" for c in shop.server_status("wrong").get("conditions") or []),
               timeout=60, what="the wrong DatabaseServer to report its failure")

    ns = status["namespace"]
    creds = _decoded(shop, ns, "leaky-db")
    secrets = {"branch password": creds["password"], "admin password": shop.pg.admin.password,
               "superuser password": shop.pg.superuser.password, "wrong password": "wrong-admin-password-value"}
    for where, password in _all_branch_passwords(shop).items():
        secrets[f"branch password {where}"] = password
    for rotation in status["rotations"]:
        for key in rotation["keys"]:
            secrets[f"rotated {rotation['secret']}/{key}"] = _decoded(shop, ns, rotation["secret"])[key]
    for obj in shop_configuration("x"):
        if obj["kind"] == "Secret":
            for key, value in obj["data"].items():
                secrets[f"source {obj['metadata']['name']}/{key}"] = base64.b64decode(value).decode()
    # Values long enough to be meaningful (a client id like "shop-web" is not a secret).
    secrets = {k: v for k, v in secrets.items() if len(v) >= 12}
    assert len(secrets) >= 8

    haystacks = {
        "operator log": operator.log(),
        "events": controlplane.kubectl("get", "events", "-A", "-o", "yaml").stdout,
        "environments": controlplane.kubectl("get", "env", "-A", "-o", "yaml").stdout,
        "databaseservers": controlplane.kubectl("get", "dbserver", "-A", "-o", "yaml").stdout,
        "postgres log": statement_log(),
    }
    leaks = [(what, where) for what, value in secrets.items() for where, text in haystacks.items() if value in text]
    assert leaks == []
    # The statement log saw the role get its password: as a SCRAM verifier, never the password.
    role = engine.branch_role_name(shop.namespace, "leaky")
    assert re.search(rf'statement: CREATE ROLE "{role}" NOLOGIN', haystacks["postgres log"])
    given = re.findall(rf"""statement: ALTER ROLE "{role}" LOGIN PASSWORD '([^']*)'""", haystacks["postgres log"])
    assert len(given) == 1 and given[0].startswith("SCRAM-SHA-256$4096:"), given
    assert "rolled back" in haystacks["environments"] and "password authentication failed" in haystacks["events"]


@pytest.mark.reliability("branch credentials", "password is 32 random bytes (base64url), different per branch; the "
                         "role is NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION; PUBLIC has no CONNECT: another "
                         "login role is refused, the branch role gets in")
def test_branch_credentials_are_strong_and_private(shop: Project) -> None:
    shop.apply_env("creds-a", {"source": "production", "mode": "System"})
    shop.apply_env("creds-b", {"source": "production", "mode": "System"})
    a, b = shop.wait_phase("creds-a", "Active"), shop.wait_phase("creds-b", "Active")
    creds = _decoded(shop, a["namespace"], "creds-a-db")
    other = _decoded(shop, b["namespace"], "creds-b-db")["password"]
    raw = base64.urlsafe_b64decode(creds["password"] + "=" * (-len(creds["password"]) % 4))
    assert len(raw) == 32 and creds["password"] != other
    with shop.pg.connect() as conn:
        attrs = conn.execute("SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls, rolcanlogin "
                             "FROM pg_roles WHERE rolname = %s", (creds["username"],)).fetchone()
        assert attrs == (False, False, False, False, False, True)
        public = conn.execute("SELECT has_database_privilege('public', %s, 'CONNECT')", (creds["dbname"],)).fetchone()
        assert public == (False,)
        outsider, password = f"outsider_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(outsider),
                                                                        sql.Literal(password)))
    try:
        with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
            psycopg.connect(host=shop.pg.host, port=shop.pg.port, dbname=creds["dbname"], user=outsider,
                            password=password, connect_timeout=10).close()
        # The other branch's role is an outsider too.
        with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
            psycopg.connect(host=shop.pg.host, port=shop.pg.port, dbname=creds["dbname"],
                            user=_decoded(shop, b["namespace"], "creds-b-db")["username"], password=other,
                            connect_timeout=10).close()
        with psycopg.connect(creds["uri"], connect_timeout=10) as conn:
            assert conn.execute("SELECT current_user").fetchone() == (creds["username"],)
    finally:
        with shop.pg.connect() as conn:
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(outsider)))
