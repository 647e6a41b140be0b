"""Each rule of the design, end to end: the operator as a subprocess, real API server, real PostgreSQL."""

from __future__ import annotations

import base64

import psycopg
import pytest

from envbranch_testing.postgres import Role
from envbranch_testing.sample_app import row_counts
from envbranch_testing.scenario import Project

ALL_FLAGS = {"fileProviders": True, "gatewayRoutes": True, "securityConfig": True, "environmentVariables": True}


def _secret(project: Project, ns: str, name: str) -> dict[str, str]:
    data = project.core.read_namespaced_secret(name, ns).data or {}
    return {k: base64.b64decode(v).decode() for k, v in data.items()}


def _names(project: Project, ns: str) -> set[str]:
    cms = {c.metadata.name for c in project.core.list_namespaced_config_map(ns).items}
    secrets = {s.metadata.name for s in project.core.list_namespaced_secret(ns).items}
    return (cms | secrets) - {"kube-root-ca.crt"}


def test_full_branch_with_every_copy_flag(shop: Project) -> None:
    shop.apply_env("staging", {"source": "production", "mode": "Full", "copy": ALL_FLAGS})
    status = shop.wait_phase("staging", "Active", "Failed")
    assert status["phase"] == "Active", status
    ns = status["namespace"]
    assert ns == f"{shop.namespace}-staging"
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "Ready": "True", "SourceReady": "True", "DatabaseReady": "True", "CredentialsReady": "True",
        "ConfigCopied": "True", "Stalled": "False", "Reconciling": "False"}
    # An idle source on the same server: Auto can copy by template, and does.
    assert status["database"]["strategy"] == "Template", status["database"]
    assert status["database"]["bytes"] > 0 and status["database"]["seconds"] > 0, status["database"]
    src_db = f"shop_{shop.namespace.replace('-', '_')}"
    # Where the application runs, told by its registration ConfigMap.
    registration = shop.core.read_namespaced_config_map("envbranch-environment", ns)
    assert registration.data == {
        "project": shop.namespace, "environment": "staging", "parent": "production", "mode": "Full",
        "databaseHost": shop.pg.host, "databasePort": str(shop.pg.port),
        "databaseName": status["database"]["name"], "credentialsSecret": "staging-db"}
    assert registration.metadata.labels == {"envbranch.io/environment": "staging",
                                            "envbranch.io/uid": shop.uid("staging")}
    assert row_counts(shop.pg, status["database"]["name"]) == row_counts(shop.pg, src_db)
    # Configuration: everything but the auth provider, with the credentials and registration.
    assert _names(shop, ns) == {"uploads", "invoices", "routes", "webhooks", "cors", "oauth-shop-web", "app-env",
                                "app-secrets", "staging-db", "envbranch-environment"}
    assert status["copied"] == {"fileProviders": 2, "gatewayRoutes": 2, "securityConfig": 2,
                                "environmentVariables": 2}
    assert status["skipped"] == [
        {"kind": "Secret", "name": "google-login", "reason": "auth providers are never copied"}]
    # Rotated keys differ and are listed; other keys are copied as they are.
    prod_ns = f"{shop.namespace}-prod"
    assert sorted(status["rotations"], key=lambda r: r["secret"]) == [
        {"secret": "oauth-shop-web", "keys": ["client-secret"]}, {"secret": "webhooks", "keys": ["signing-secret"]}]
    src, copy = _secret(shop, prod_ns, "webhooks"), _secret(shop, ns, "webhooks")
    assert copy["signing-secret"] != src["signing-secret"] and copy["url"] == src["url"]
    # New provider ids, the old kept; GitOps tracking dropped.
    uploads = shop.core.read_namespaced_config_map("uploads", ns).metadata
    assert uploads.labels["envbranch.io/copied-from-id"] == "11111111-1111-4111-8111-111111111111"
    assert uploads.labels["envbranch.io/provider-id"] != "11111111-1111-4111-8111-111111111111"
    assert "app.kubernetes.io/instance" not in uploads.labels
    assert not any(k.startswith("argocd.argoproj.io/") for k in uploads.annotations or {})
    assert uploads.annotations["envbranch.io/copied-from"] == f"{prod_ns}/uploads"
    # The credentials work on the branch and nowhere else.
    creds = _secret(shop, ns, "staging-db")
    assert set(creds) == {"username", "password", "host", "port", "dbname", "uri", "jdbc-uri", "pgpass", "sslmode"}
    role = Role(creds["username"], creds["password"])
    with shop.pg.connect(creds["dbname"], role=role) as conn:
        conn.execute("INSERT INTO products (sku, title, price_cents) VALUES ('new', 'New', 1)")
    with psycopg.connect(creds["uri"]) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (creds["username"],)
    with pytest.raises(psycopg.OperationalError, match="permission denied"):
        shop.pg.connect(src_db, role=role)


def test_system_branch_copies_schema_and_only_environment_variables(shop: Project) -> None:
    shop.apply_env("feature-x", {"source": "production", "mode": "System", "copy": {"environmentVariables": True}})
    status = shop.wait_phase("feature-x", "Active", "Failed")
    assert status["phase"] == "Active", status
    assert status["database"]["strategy"] == "Dump"
    assert status["database"]["bytes"] > 0 and status["database"]["seconds"] > 0, status["database"]
    assert set(row_counts(shop.pg, status["database"]["name"]).values()) == {0}
    assert _names(shop, status["namespace"]) == {"app-env", "app-secrets", "feature-x-db", "envbranch-environment"}
    assert status["copied"] == {"environmentVariables": 2}
    assert status.get("rotations") == []


def test_no_copy_flags_copy_nothing(shop: Project) -> None:
    shop.apply_env("bare", {"source": "production", "mode": "System"})
    status = shop.wait_phase("bare", "Active", "Failed")
    assert status["phase"] == "Active", status
    assert _names(shop, status["namespace"]) == {"bare-db", "envbranch-environment"}


def test_metrics_report_branches_steps_bytes_rollbacks_and_phases(shop: Project, operator: object) -> None:
    from envbranch_testing.operator import ExternalOperator, OperatorProcess, scrape_metrics

    # Locally the operator's own port; against a cluster, a port-forward to the chart's metrics Service.
    # Earlier tests raised these counters already: what one branch and one rollback add is checked.
    assert isinstance(operator, OperatorProcess | ExternalOperator)

    def value(samples: dict[str, float], prefix: str) -> float:
        return sum(v for k, v in samples.items() if k.startswith(prefix))

    before = scrape_metrics(operator.metrics_port)
    shop.apply_env("measured", {"source": "production", "mode": "Full"})
    status = shop.wait_phase("measured", "Active")
    strategy = status["database"]["strategy"]
    after_branch = scrape_metrics(operator.metrics_port)
    shop.apply_env("measured-fail", {"source": "production", "mode": "Full"},
                   annotations={"envbranch.io/inject-fault": "credentials"})
    shop.wait_stalled("measured-fail")
    after = scrape_metrics(operator.metrics_port)

    def delta(prefix: str, start: dict[str, float] = before, end: dict[str, float] = after) -> float:
        return value(end, prefix) - value(start, prefix)

    # Other projects' branches may finish meanwhile (their namespaces are deleted in the background),
    # but none of them fails by this fault or copies into a Full branch of this strategy in this window.
    # Labels as Prometheus prints them: sorted by name.
    active = f'envbranch_branch_duration_seconds_count{{mode="Full",result="Active",strategy="{strategy}"}}'
    assert delta(active, before, after_branch) == 1
    failed = f'envbranch_branch_duration_seconds_count{{mode="Full",result="Failed",strategy="{strategy}"}}'
    assert delta(failed, after_branch, after) == 1
    # Both went through the database step (a step retried after a wait is observed again).
    assert delta('envbranch_step_duration_seconds_count{step="database"}') >= 2
    assert delta(f'envbranch_bytes_copied_total{{strategy="{strategy}"}}', before, after_branch) == \
        status["database"]["bytes"]
    assert delta('envbranch_rollbacks_total{reason="InjectedFault"}') == 1
    assert value(after, 'envbranch_environments{phase="Active"}') >= 2  # a gauge: production and measured
    assert value(after, 'envbranch_environments{phase="Failed"}') >= 1


FLAG_OBJECTS = {"fileProviders": {"uploads", "invoices"}, "gatewayRoutes": {"routes", "webhooks"},
                "securityConfig": {"cors", "oauth-shop-web"}, "environmentVariables": {"app-env", "app-secrets"}}


@pytest.mark.parametrize("flag", sorted(FLAG_OBJECTS))
def test_each_copy_flag_copies_its_categories_and_nothing_else(shop: Project, flag: str) -> None:
    name = f"only-{flag.lower()}"
    shop.apply_env(name, {"source": "production", "mode": "System", "copy": {flag: True}})
    status = shop.wait_phase(name, "Active", "Failed")
    assert status["phase"] == "Active", status
    assert _names(shop, status["namespace"]) == FLAG_OBJECTS[flag] | {f"{name}-db", "envbranch-environment"}
    assert status["copied"] == {flag: 2}
    assert "google-login" not in _names(shop, status["namespace"])
