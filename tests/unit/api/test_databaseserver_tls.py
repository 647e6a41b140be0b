"""DatabaseServer.spec.tls: a CA reference needs an sslMode that checks it."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from envbranch.api import DatabaseServerSpec

BASE = {"host": "db.example.com", "adminSecretRef": {"name": "admin"}}


def test_the_default_ssl_mode_is_prefer_and_tls_is_optional() -> None:
    spec = DatabaseServerSpec.model_validate(BASE)
    assert spec.ssl_mode == "prefer" and spec.tls is None


@pytest.mark.parametrize("mode", ["require", "verify-ca", "verify-full"])
def test_tls_with_a_checking_mode(mode: str) -> None:
    spec = DatabaseServerSpec.model_validate({**BASE, "sslMode": mode, "tls": {"name": "pg-ca"}})
    assert spec.tls is not None and spec.tls.kind == "Secret" and spec.tls.name == "pg-ca"


@pytest.mark.parametrize("spec", [
    {"tls": {"name": "pg-ca"}},                                          # default prefer would fall back
    {"sslMode": "allow", "tls": {"name": "pg-ca"}},
    {"sslMode": "verify-full", "tls": {"name": "pg-ca", "kind": "Certificate"}},
    {"sslMode": "verify-full", "tls": {"name": "Not_A_Name"}},
    {"sslMode": "verify-full", "tls": {"kind": "ConfigMap"}},
])
def test_bad_tls_specs_are_refused(spec: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        DatabaseServerSpec.model_validate({**BASE, **spec})


def test_a_config_map_may_hold_the_ca() -> None:
    spec = DatabaseServerSpec.model_validate({**BASE, "sslMode": "verify-full",
                                              "tls": {"kind": "ConfigMap", "name": "trust-bundle"}})
    assert spec.tls is not None and spec.tls.kind == "ConfigMap"
