"""Every operator session and client tool uses exactly the DatabaseServer's TLS settings: the CA
(sslrootcert), the client certificate (sslcert/sslkey) and sslMode, through private files that
live only while they are needed. A certificate that does not verify is a permanent TlsError that
says why, never a retry, a hang or plain text. One TLS server (Debian's PostgreSQL, which has
OpenSSL) serves the module; it rejects every TCP session without TLS."""

from __future__ import annotations

import datetime as dt
import glob
import os
import stat
import tempfile
import uuid
from collections.abc import Iterator

import pytest
from psycopg import sql

from envbranch import postgres as engine
from envbranch.postgres.schema import schema_dump
from envbranch_testing.certs import CertificateAuthority
from envbranch_testing.postgres import CERT_ADMIN_USER, Postgres
from envbranch_testing.sample_app import create_shop_database, row_counts


def _ca(pg: Postgres) -> CertificateAuthority:
    assert pg.tls is not None and pg.tls.ca is not None
    return pg.tls.ca


def _server(pg: Postgres, **changes: object) -> engine.Server:
    fields: dict[str, object] = {"host": pg.host, "port": pg.port, "user": pg.admin.user,
                                 "password": pg.admin.password, "sslmode": "verify-full",
                                 "tls": engine.Tls(_ca(pg).cert_pem)}
    fields.update(changes)
    return engine.Server(**fields)  # type: ignore[arg-type]


def _tls_dirs() -> set[str]:
    return set(glob.glob(os.path.join(tempfile.gettempdir(), "envbranch-tls-*")))


@pytest.fixture(scope="module")
def shop_db(tls_postgres: Postgres) -> Iterator[str]:
    create_shop_database(tls_postgres, "tls_shop")
    yield "tls_shop"


def test_verify_full_probes_and_clones_by_template_and_dump(tls_postgres: Postgres, shop_db: str) -> None:
    pg, server, before = tls_postgres, _server(tls_postgres), _tls_dirs()
    caps = engine.probe(server)
    assert (caps.tls.encrypted, caps.tls.verified, caps.tls.client_certificate) == (True, "Full", False)
    assert caps.tls.protocol and caps.tls.protocol.startswith("TLS")
    assert "verified (CA and host name)" in caps.tls.describe()
    for strategy in ("Template", "Dump"):  # Dump: pg_dump and psql through PGSSLROOTCERT/PGSSLMODE
        target = f"tls_{strategy.lower()}_{uuid.uuid4().hex[:6]}"
        result = engine.clone_database(server, shop_db, server, target, mode="Full", strategy=strategy,  # type: ignore[arg-type]
                                       uid=str(uuid.uuid4()))
        assert result.strategy == strategy
        assert row_counts(pg, target) == row_counts(pg, shop_db)
    assert "CREATE TABLE" in schema_dump(server, shop_db)
    assert _tls_dirs() == before, "the private TLS folders are removed after use"


def test_tls_files_are_private_and_short_lived(tls_postgres: Postgres) -> None:
    client = _ca(tls_postgres).issue(CERT_ADMIN_USER)
    server = _server(tls_postgres, tls=engine.Tls(_ca(tls_postgres).cert_pem, client.cert_pem, client.key_pem))
    with server.tls_files() as written:
        assert written.tls_dir is not None
        folder = written.tls_dir
        assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
        assert sorted(os.listdir(folder)) == ["ca.crt", "tls.crt", "tls.key"]
        assert {stat.S_IMODE(os.stat(os.path.join(folder, f)).st_mode) for f in os.listdir(folder)} == {0o600}
        env = written.env()
        assert env["PGSSLROOTCERT"] == os.path.join(folder, "ca.crt") and env["PGSSLMODE"] == "verify-full"
        assert env["PGSSLKEY"] == os.path.join(folder, "tls.key")
        assert client.key_pem.decode() not in repr(written) and "tls.key" not in repr(written)
    assert not os.path.exists(folder)
    with pytest.raises(RuntimeError, match="tls_files"):
        server.env()  # a tool is never started without the files


def _expect_tls_error(server: engine.Server, *words: str) -> str:
    with pytest.raises(engine.TlsError) as caught:
        engine.probe(server)
    message = caught.value.message
    assert not caught.value.transient
    for word in words:
        assert word in message, message
    assert (not server.password or server.password not in message) and "envbranch-tls-" not in message
    return message


@pytest.mark.parametrize("case", ["wrong-ca", "host-name", "no-ca"])
def test_a_certificate_that_does_not_verify_is_a_tls_error(tls_postgres: Postgres, case: str) -> None:
    if case == "wrong-ca":
        _expect_tls_error(_server(tls_postgres, tls=engine.Tls(CertificateAuthority().cert_pem)),
                          "certificate verify failed", "signed by spec.tls's ca.crt")
    elif case == "host-name":
        if tls_postgres.host != "127.0.0.1":
            pytest.skip("the host-name case reaches the server as localhost")
        _expect_tls_error(_server(tls_postgres, host="localhost"), 'does not match host name "localhost"')
    else:
        _expect_tls_error(_server(tls_postgres, tls=None), "root certificate file", "set spec.tls")


def test_plain_text_is_refused_both_ways(tls_postgres: Postgres, postgres: Postgres) -> None:
    # A server without TLS, with verify-full: no fallback to plain text.
    plain = engine.Server(postgres.host, postgres.port, postgres.admin.user, postgres.admin.password,
                          sslmode="verify-full", tls=engine.Tls(_ca(tls_postgres).cert_pem))
    _expect_tls_error(plain, "server does not support SSL")
    # A server that requires TLS, with sslmode disable: its hostnossl reject names the fix.
    _expect_tls_error(_server(tls_postgres, sslmode="disable", tls=None), "no encryption", "requires TLS")


def test_an_expired_server_certificate_is_a_tls_error(tls_postgres: Postgres) -> None:
    pg, ca = tls_postgres, _ca(tls_postgres)
    assert pg.tls is not None
    current = pg.tls.certificate
    expired = ca.issue("envbranch-test-postgres", server=True, ips=(pg.host,),
                       not_after=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
    pg.replace_certificate(expired)
    try:
        _expect_tls_error(_server(pg), "certificate verify failed", "valid now")
    finally:
        pg.replace_certificate(current)
    assert engine.probe(_server(pg)).tls.encrypted


def test_client_certificate_authentication(tls_postgres: Postgres, shop_db: str) -> None:
    pg, ca = tls_postgres, _ca(tls_postgres)
    with pg.connect() as conn:  # the certificate admin needs the shop's tables to dump them
        conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(pg.admin.user), sql.Identifier(CERT_ADMIN_USER)))
    client = ca.issue(CERT_ADMIN_USER)
    # No password at all: the server admits this role by certificate only.
    server = _server(pg, user=CERT_ADMIN_USER, password="", tls=engine.Tls(ca.cert_pem, client.cert_pem,
                                                                            client.key_pem))
    caps = engine.probe(server)
    assert caps.tls.client_certificate and caps.can_create_db
    assert "client certificate presented" in caps.tls.describe()
    target = f"tls_cert_{uuid.uuid4().hex[:6]}"
    engine.clone_database(server, shop_db, server, target, mode="System", strategy="Dump", uid=str(uuid.uuid4()))
    assert set(row_counts(pg, target).values()) == {0}
    # Without the certificate, or with one from another CA or expired, the server refuses.
    _expect_tls_error(_server(pg, user=CERT_ADMIN_USER, password=""), "requires a valid client certificate")
    other = CertificateAuthority().issue(CERT_ADMIN_USER)
    _expect_tls_error(_server(pg, user=CERT_ADMIN_USER, password="",
                              tls=engine.Tls(ca.cert_pem, other.cert_pem, other.key_pem)), "unknown ca")
    old = ca.issue(CERT_ADMIN_USER, not_after=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
    message = _expect_tls_error(_server(pg, user=CERT_ADMIN_USER, password="",
                                        tls=engine.Tls(ca.cert_pem, old.cert_pem, old.key_pem)), "expired")
    assert "PRIVATE KEY" not in message
