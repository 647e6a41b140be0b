"""TLS failures are permanent, say what to fix, and carry neither the password nor the private
folder's path; a Server's repr holds no key material."""

from __future__ import annotations

import psycopg
import pytest

from envbranch import postgres as engine
from envbranch.postgres.errors import classify

FOLDER = "/var/run/envbranch-tls-abc123"  # a made-up path, only compared


@pytest.mark.parametrize(("line", "fix"), [
    ("SSL error: certificate verify failed", "signed by spec.tls's ca.crt"),
    ('server certificate for "db" does not match host name "10.0.0.5"', "spec.host"),
    ("server does not support SSL, but SSL was required", "TLS off"),
    (f'could not load private key file "{FOLDER}/tls.key": bad', "tls.crt/tls.key"),
    ('FATAL:  pg_hba.conf rejects connection for host "10.0.0.1", user "a", database "b", no encryption',
     "requires TLS"),
])
def test_tls_failures_are_permanent(line: str, fix: str) -> None:
    exc = psycopg.OperationalError(f"connection failed: {line} pw=hunter2")
    err = classify(exc, ("hunter2",), tls_dirs=(FOLDER,))
    assert isinstance(err, engine.TlsError) and not err.transient
    assert fix in err.message and "hunter2" not in err.message and FOLDER not in err.message


def test_a_refused_connection_is_still_transient() -> None:
    err = classify(psycopg.OperationalError("connection failed: Connection refused"))
    assert err.transient and not isinstance(err, engine.TlsError)


def test_no_key_material_in_repr_and_no_tool_environment_without_files() -> None:
    server = engine.Server("db", 5432, "admin", "pw", sslmode="verify-full",
                           tls=engine.Tls(b"CA-PEM", b"CERT-PEM", b"KEY-PEM"))
    assert "PEM" not in repr(server) and "'pw'" not in repr(server)
    with pytest.raises(RuntimeError):
        server.env()
    with pytest.raises(RuntimeError):
        server.conninfo()
