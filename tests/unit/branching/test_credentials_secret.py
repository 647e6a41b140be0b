"""The branch credentials Secret carries the server's sslMode and CA, never the admin's client
certificate or key."""

from __future__ import annotations

import base64
from urllib.parse import parse_qs, urlsplit

from envbranch import postgres as engine
from envbranch.branching.steps.credentials import credentials_secret

CA = b"-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n"
CERT = b"-----BEGIN CERTIFICATE-----\nADMIN\n-----END CERTIFICATE-----\n"
KEY = b"-----BEGIN PRIVATE KEY-----\nADMIN-KEY\n-----END PRIVATE KEY-----\n"


def _values(server: engine.Server) -> dict[str, str]:
    body = credentials_secret("feature-db", server, "shop_feature", "shop_feature_owner", "s3cret", labels={})
    return {k: base64.b64decode(v).decode() for k, v in body["data"].items()}


def test_verify_full_with_a_ca() -> None:
    server = engine.Server("db.example.com", 5432, "admin", "adminpw", sslmode="verify-full",
                           tls=engine.Tls(CA, CERT, KEY))
    values = _values(server)
    assert set(values) == {"username", "password", "host", "port", "dbname", "uri", "jdbc-uri", "pgpass",
                           "sslmode", "ca.crt"}
    assert values["ca.crt"] == CA.decode() and values["sslmode"] == "verify-full"
    uri = urlsplit(values["uri"])
    assert (uri.hostname, uri.port, uri.path, uri.username) == ("db.example.com", 5432, "/shop_feature",
                                                               "shop_feature_owner")
    assert parse_qs(uri.query) == {"sslmode": ["verify-full"]}
    jdbc = parse_qs(urlsplit(values["jdbc-uri"].removeprefix("jdbc:")).query)
    assert jdbc["ssl"] == ["true"] and jdbc["sslmode"] == ["verify-full"]
    # The admin's client certificate and key stay with the operator.
    text = "".join(values.values())
    assert "ADMIN" not in text and "adminpw" not in text


def test_no_tls() -> None:
    values = _values(engine.Server("db", 5432, "admin", "pw", sslmode="disable"))
    assert "ca.crt" not in values and values["sslmode"] == "disable"
    assert values["uri"].endswith("/shop_feature?sslmode=disable")
    assert "ssl=true" not in values["jdbc-uri"] and values["jdbc-uri"].endswith("&sslmode=disable")
