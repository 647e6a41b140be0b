"""No generated password, rotated value, source secret value or admin password appears in the
operator's log, any Event, any Environment or DatabaseServer, or the text of a failed run."""

from __future__ import annotations

import base64

from envbranch.testing.controlplane import ControlPlane
from envbranch.testing.operator import OperatorProcess
from envbranch.testing.processes import wait_until
from envbranch.testing.sample_app import shop_configuration
from envbranch.testing.scenario import Project

ALL = {"fileProviders": True, "gatewayRoutes": True, "securityConfig": True, "environmentVariables": True}


def _decoded(project: Project, ns: str, name: str) -> dict[str, str]:
    data = project.core.read_namespaced_secret(name, ns).data or {}
    return {k: base64.b64decode(v).decode() for k, v in data.items()}


def test_no_secret_value_reaches_logs_events_or_status(shop: Project, operator: OperatorProcess,
                                                       controlplane: ControlPlane) -> None:
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
        "postgres log": (shop.pg.base_dir / "postgres.log").read_text(errors="replace"),
    }
    leaks = [(what, where) for what, value in secrets.items() for where, text in haystacks.items() if value in text]
    assert leaks == []
    assert "rolled back" in haystacks["environments"] and "password authentication failed" in haystacks["events"]
