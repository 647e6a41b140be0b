"""TLS to PostgreSQL that can be verified, end to end: a DatabaseServer with `sslMode: verify-full`
and `spec.tls` branches by Template and Dump; its branches' credentials Secrets carry the mode and
the CA, and an application using only that Secret connects verified; a client certificate can
replace the admin's password; every TLS setup that does not hold leaves the server Ready=False
with the reason, and a branch on it creates nothing.

One TLS PostgreSQL (Debian's build, with OpenSSL) and one project serve the module."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest
from kubernetes import client
from psycopg import sql

from envbranch_testing.certs import CertificateAuthority
from envbranch_testing.operator import ExternalOperator, OperatorProcess
from envbranch_testing.postgres import CERT_ADMIN_USER, Postgres
from envbranch_testing.processes import wait_until
from envbranch_testing.sample_app import row_counts
from envbranch_testing.scenario import Project


def _ca(pg: Postgres) -> CertificateAuthority:
    assert pg.tls is not None and pg.tls.ca is not None
    return pg.tls.ca


@pytest.fixture(scope="module")
def tls_shop(operator: OperatorProcess | ExternalOperator, k8s: client.ApiClient,
             tls_postgres: Postgres) -> Iterator[Project]:
    """A project whose DatabaseServer `main` is verify-full against the test CA, with production on it."""
    proj = Project(k8s, f"tls-{uuid.uuid4().hex[:6]}", tls_postgres)
    proj.create_namespace(proj.namespace)
    proj.create_tls_object("pg-ca", {"ca.crt": _ca(tls_postgres).cert_pem}, kind="ConfigMap")
    proj.create_server(ssl_mode="verify-full", tls={"kind": "ConfigMap", "name": "pg-ca"})
    proj.wait_server_ready()
    proj.setup_production(f"shop_{proj.namespace.replace('-', '_')}", f"{proj.namespace}-prod")
    yield proj
    # The branches go while their server still runs: their finalizers drop databases and roles there.
    names = [e["metadata"]["name"] for e in proj.custom.list_namespaced_custom_object(
        "envbranch.io", "v1alpha1", proj.namespace, "environments")["items"]]
    for name in names:
        proj.delete_env(name)
    for name in names:
        proj.wait_gone(name)
    proj.delete_namespaces()


def _secret(project: Project, namespace: str, name: str) -> dict[str, str]:
    data = project.core.read_namespaced_secret(name, namespace).data or {}
    return {k: base64.b64decode(v).decode() for k, v in data.items()}


def _connect_as_the_app(creds: dict[str, str], folder: Path) -> psycopg.Connection[tuple[object, ...]]:
    """What an application does with the Secret: mount ca.crt, point sslrootcert at it, use `uri`."""
    ca_file = folder / "ca.crt"
    ca_file.write_text(creds["ca.crt"])
    return psycopg.connect(creds["uri"], sslrootcert=str(ca_file))


def test_verify_full_branches_by_template_and_dump(tls_shop: Project, tmp_path: Path) -> None:
    shop = tls_shop
    ready = shop.wait_server_condition("main")
    assert "server certificate verified (CA and host name)" in ready["message"], ready
    assert shop.server_status("main")["tls"] == {"encrypted": True, "protocol": ready["message"].split("(")[1]
                                                 .split(")")[0], "verified": "Full", "clientCertificate": False}
    for strategy in ("Template", "Dump"):
        shop.apply_env(strategy.lower(), {"source": "production", "mode": "Full",
                                          "database": {"strategy": strategy}})
    src_db = f"shop_{shop.namespace.replace('-', '_')}"
    for strategy in ("Template", "Dump"):
        status = shop.wait_phase(strategy.lower(), "Active", "Failed")
        assert status["phase"] == "Active", status
        assert status["database"]["strategy"] == strategy
        assert row_counts(shop.pg, status["database"]["name"]) == row_counts(shop.pg, src_db)
        creds = _secret(shop, status["namespace"], status["credentialsSecret"])
        assert creds["ca.crt"] == _ca(shop.pg).cert_pem.decode()
        assert "tls.crt" not in creds and "tls.key" not in creds
        assert parse_qs(urlsplit(creds["uri"]).query) == {"sslmode": ["verify-full"]}
        assert creds["jdbc-uri"].endswith("&ssl=true&sslmode=verify-full") and creds["sslmode"] == "verify-full"
        with _connect_as_the_app(creds, tmp_path) as conn:
            assert conn.pgconn.ssl_in_use
            assert conn.execute("SELECT current_user").fetchone() == (creds["username"],)
        # Without the CA, verify-full refuses: the uri never silently drops to an unchecked session.
        with pytest.raises(psycopg.OperationalError, match="root certificate file"):
            psycopg.connect(creds["uri"], sslrootcert=str(tmp_path / "absent.crt"))


def _bad_servers(shop: Project, plain: Postgres) -> dict[str, tuple[str, str]]:
    """DatabaseServers whose TLS does not hold -> (Ready reason, message fragment)."""
    ca = _ca(shop.pg)
    shop.create_tls_object("other-ca", {"ca.crt": CertificateAuthority().cert_pem})
    shop.create_server("wrong-ca", ssl_mode="verify-full", tls={"name": "other-ca"})
    shop.create_server("plain", pg=plain, ssl_mode="verify-full", tls={"kind": "ConfigMap", "name": "pg-ca"})
    shop.create_server("no-tls-object", ssl_mode="verify-full", tls={"name": "absent"})
    half = ca.issue(CERT_ADMIN_USER)
    shop.create_tls_object("half-pair", {"ca.crt": ca.cert_pem, "tls.crt": half.cert_pem})
    shop.create_server("half-pair", ssl_mode="verify-full", tls={"name": "half-pair"})
    expected = {
        "wrong-ca": ("TLSFailed", "certificate verify failed"),
        "plain": ("TLSFailed", "server does not support SSL"),
        "no-tls-object": ("TLSNotFound", "Secret 'absent'"),
        "half-pair": ("TLSInvalid", "both 'tls.crt' and 'tls.key'"),
    }
    if shop.pg.host == "127.0.0.1":  # the certificate names 127.0.0.1 only
        shop.create_server("wrong-host", host="localhost", ssl_mode="verify-full",
                           tls={"kind": "ConfigMap", "name": "pg-ca"})
        expected["wrong-host"] = ("TLSFailed", 'does not match host name "localhost"')
    return expected


def test_tls_that_does_not_hold_is_not_ready_and_branches_create_nothing(tls_shop: Project,
                                                                         postgres: Postgres) -> None:
    shop = tls_shop
    for name, (reason, fragment) in _bad_servers(shop, postgres).items():
        ready = shop.wait_server_condition(name)
        assert (ready["status"], ready["reason"]) == ("False", reason), (name, ready)
        assert fragment in ready["message"], (name, ready)
        assert "PRIVATE KEY" not in ready["message"] and "envbranch-tls-" not in ready["message"]
        assert "tls" not in shop.server_status(name)
    shop.apply_env("blocked", {"source": "production", "mode": "System", "database": {"serverRef": "wrong-ca"}})

    def waiting() -> dict[str, object] | None:
        status = shop.status("blocked")
        ready = next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), None)
        return ready if ready and ready["reason"] == "ServerNotReady" else None

    ready = wait_until(waiting, timeout=60, what="the branch to wait for its server")
    assert "certificate verify failed" in str(ready["message"])
    assert shop.status("blocked").get("phase") == "Pending"
    assert not shop.namespace_exists(f"{shop.namespace}-blocked")
    assert shop.tagged(shop.uid("blocked")) == []


def test_client_certificate_replaces_the_admin_password(tls_shop: Project, tmp_path: Path,
                                                       operator: OperatorProcess | ExternalOperator) -> None:
    shop, ca = tls_shop, _ca(tls_shop.pg)
    with shop.pg.connect() as conn:  # it acts for the owner of production's database, as `main`'s admin does
        conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(shop.pg.admin.user),
                                                      sql.Identifier(CERT_ADMIN_USER)))
    pair = ca.issue(CERT_ADMIN_USER)
    shop.create_tls_object("certadmin-tls", {"ca.crt": ca.cert_pem, "tls.crt": pair.cert_pem,
                                             "tls.key": pair.key_pem})
    # The password is never used: the server admits this role by certificate only.
    shop.create_server("certs", user=CERT_ADMIN_USER, password="not-used", ssl_mode="verify-full",
                       tls={"name": "certadmin-tls"})
    shop.wait_server_ready("certs")
    assert shop.server_status("certs")["tls"]["clientCertificate"] is True
    assert "client certificate presented" in shop.wait_server_condition("certs")["message"]
    # A Dump into the certificate server: psql and the branch's role work through PGSSLCERT/PGSSLKEY.
    shop.apply_env("by-cert", {"source": "production", "mode": "System",
                               "database": {"serverRef": "certs", "strategy": "Dump"}})
    status = shop.wait_phase("by-cert", "Active", "Failed")
    assert status["phase"] == "Active", status
    creds = _secret(shop, status["namespace"], status["credentialsSecret"])
    assert "tls.key" not in creds and "tls.crt" not in creds and pair.key_pem.decode() not in str(creds)
    with _connect_as_the_app(creds, tmp_path) as conn:  # the branch role logs in by password, over TLS
        assert conn.pgconn.ssl_in_use
    key_body = pair.key_pem.decode().splitlines()[1]
    assert key_body not in operator.log()
    events = shop.core.list_namespaced_event(shop.namespace).items
    assert not any(key_body in (e.message or "") for e in events)
