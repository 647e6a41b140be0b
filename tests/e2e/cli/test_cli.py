"""The command line against the local control plane and a running operator."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from typer.testing import CliRunner

from envbranch.cli import main as cli_main
from envbranch.cli.main import app, slug
from envbranch_testing.controlplane import ControlPlane
from envbranch_testing.manifests import apply
from envbranch_testing.processes import free_port, wait_until
from envbranch_testing.sample_app import shop_configuration
from envbranch_testing.scenario import Project

runner = CliRunner()


@pytest.fixture
def cli(controlplane: ControlPlane, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("KUBECONFIG", str(controlplane.kubeconfig))
    monkeypatch.setenv("COLUMNS", "200")  # a wide terminal: table cells on one line each
    yield  # each command builds its API client from KUBECONFIG as it runs


def test_slug_from_display_name() -> None:
    assert slug("Feature_Login") == "feature-login"
    assert slug("  Ünïcode & Co  ") == "n-code-co"


@pytest.mark.usefixtures("cli")
def test_branch_follows_to_active_then_list_status_rename_delete(shop: Project) -> None:
    ns = shop.namespace
    result = runner.invoke(app, ["branch", "Feature_Login", "--from", "production", "--mode", "System",
                                 "--copy", "environment-variables", "-n", ns])
    assert result.exit_code == 0, result.output
    assert "feature-login is Active" in result.output
    listed = json.loads(runner.invoke(app, ["list", "-n", ns, "-o", "json"]).output)
    row = next(r for r in listed if r["name"] == "feature-login")
    assert row["displayName"] == "Feature_Login" and row["phase"] == "Active" and row["mode"] == "System"
    status = yaml.safe_load(runner.invoke(app, ["status", "feature-login", "-n", ns, "-o", "yaml"]).output)
    assert status["copied"] == {"environmentVariables": 2}
    # A taken slug is a clear conflict.
    again = runner.invoke(app, ["branch", "feature-login", "--from", "production", "-n", ns])
    assert again.exit_code == 1 and "conflict" in again.output and "already exists" in again.output
    assert runner.invoke(app, ["rename", "feature-login", "Login_V2", "-n", ns]).exit_code == 0
    assert (shop.env("feature-login") or {})["spec"]["displayName"] == "Login_V2"
    gone = runner.invoke(app, ["delete", "feature-login", "-n", ns, "--wait"])
    assert gone.exit_code == 0 and shop.env("feature-login") is None


@pytest.mark.usefixtures("cli")
def test_a_failing_branch_exits_non_zero_with_the_reason(shop: Project) -> None:
    # The branch's namespace is someone else's: the operator fails the branch at its namespace step.
    shop.create_namespace(f"{shop.namespace}-doomed", labels={"team": "someone-else"})
    failed = runner.invoke(app, ["branch", "doomed", "--from", "production", "-n", shop.namespace,
                                 "--timeout", "120"])
    assert failed.exit_code == 1, failed.output
    assert "branch failed: NamespaceConflict" in failed.output, failed.output
    assert f"namespace '{shop.namespace}-doomed' already exists" in failed.output, failed.output
    assert "is Active" not in failed.output
    assert shop.status("doomed")["phase"] == "Failed"
    bad = runner.invoke(app, ["branch", "x", "--from", "production", "--copy", "everything", "-n", shop.namespace])
    assert bad.exit_code == 1 and "unknown copy flag" in bad.output
    assert shop.env("x") is None


@pytest.mark.usefixtures("cli")
def test_clear_errors_for_missing_environment_and_cluster(project: Project, monkeypatch: pytest.MonkeyPatch,
                                                          controlplane: ControlPlane, tmp_path: object) -> None:
    missing = runner.invoke(app, ["status", "nope", "-n", project.namespace])
    assert missing.exit_code == 1 and "Environment 'nope' not found" in missing.output
    cfg = yaml.safe_load(controlplane.kubeconfig.read_text())
    cfg["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{free_port()}"
    path = controlplane.base_dir / "nowhere.kubeconfig"
    path.write_text(yaml.safe_dump(cfg))
    monkeypatch.setenv("KUBECONFIG", str(path))
    down = runner.invoke(app, ["list", "-n", "x"])
    assert down.exit_code == 1 and "cannot reach the Kubernetes API server" in down.output


@pytest.mark.usefixtures("cli")
def test_no_permission_is_reported(controlplane: ControlPlane, project: Project,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", str(controlplane.kubeconfig_for("mallory")))
    denied = runner.invoke(app, ["list", "-n", project.namespace])
    assert denied.exit_code == 1 and "permission denied" in denied.output


# -- branch: dry run, no wait, a failure's reason -----------------------------------------------------
@pytest.mark.usefixtures("cli")
def test_branch_dry_run_no_wait_and_a_failure_with_its_reason(shop: Project) -> None:
    ns = shop.namespace
    dry = runner.invoke(app, ["branch", "Feature_Dry", "--from", "production", "--mode", "Full", "--copy",
                              "file-providers", "-n", ns, "--dry-run", "-o", "json"])
    assert dry.exit_code == 0, dry.output
    assert json.loads(dry.stdout) == {
        "apiVersion": "envbranch.io/v1alpha1", "kind": "Environment",
        "metadata": {"name": "feature-dry", "namespace": ns},
        "spec": {"source": "production", "mode": "Full", "displayName": "Feature_Dry",
                 "copy": {"fileProviders": True}}}
    assert shop.env("feature-dry") is None
    # --no-wait returns once the Environment exists, before the operator has finished.
    quick = runner.invoke(app, ["branch", "other", "--from", "production", "-n", ns, "--no-wait"])
    assert quick.exit_code == 0 and "environment other created" in quick.output
    assert shop.env("other") is not None and "is Active" not in quick.output
    taken = runner.invoke(app, ["branch", "Other", "--from", "production", "-n", ns])
    assert taken.exit_code == 1 and "conflict" in taken.output and "already exists" in taken.output
    # The operator refuses a display name another Environment has: non-zero exit, with the reason.
    assert runner.invoke(app, ["rename", "other", "Shared_Name", "-n", ns]).exit_code == 0
    failed = runner.invoke(app, ["branch", "Shared_Name", "--from", "production", "-n", ns, "--timeout", "120"])
    assert failed.exit_code == 1, failed.output
    assert "branch failed: DisplayNameTaken" in failed.output and "'other'" in failed.output


# -- diff ---------------------------------------------------------------------------------------------
PROD_SECRET_VALUES = [v for obj in shop_configuration("x") if obj["kind"] == "Secret"
                      for v in obj["data"].values()]


def _no_secret_values(*outputs: str) -> None:
    """Neither a production Secret value (base64 or plain) nor the test's own secret values printed."""
    plain = [base64.b64decode(v).decode() for v in PROD_SECRET_VALUES] + ["sk_test_branch_value"]
    plain.remove("shop-web")  # the OAuth client id is also part of its Secret's name, oauth-shop-web
    for text in outputs:
        for value in [*PROD_SECRET_VALUES, *plain, base64.b64encode(b"sk_test_branch_value").decode()]:
            assert value not in text


def _states(config: dict[str, list[dict[str, Any]]]) -> dict[str, str]:
    return {f"{e['kind']}/{e['name']}": e["state"] for entries in config.values() for e in entries}


@pytest.mark.usefixtures("cli")
def test_diff_schema_and_configuration_by_category(shop: Project) -> None:
    ns = shop.namespace
    shop.apply_env("feature-x", {"source": "production", "mode": "System", "copy": {"environmentVariables": True}})
    status = shop.wait_phase("feature-x", "Active", "Failed")
    assert status["phase"] == "Active", status
    result = runner.invoke(app, ["diff", "production", "feature-x", "-n", ns, "-o", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    # Schema only, no rows: the tables, types, views and indexes are the same.
    assert data["schema"] == {"identical": True, "diff": ""}
    config = data["configuration"]
    assert set(config) == {"file-providers", "gateway-routes", "security-config", "oauth-clients",
                           "environment-variables", "auth-providers"}
    assert _states(config) == {
        "ConfigMap/uploads": "only-in-a", "ConfigMap/invoices": "only-in-a", "ConfigMap/routes": "only-in-a",
        "Secret/webhooks": "only-in-a", "ConfigMap/cors": "only-in-a", "Secret/oauth-shop-web": "only-in-a",
        "Secret/google-login": "only-in-a", "ConfigMap/app-env": "same", "Secret/app-secrets": "same"}

    # A column added in the branch, and a Secret value changed there.
    with shop.pg.connect(status["database"]["name"]) as conn:
        conn.execute("ALTER TABLE orders ADD COLUMN coupon_code text")
    shop.core.patch_namespaced_secret("app-secrets", status["namespace"], {
        "data": {"STRIPE_KEY": base64.b64encode(b"sk_test_branch_value").decode()}})
    table = runner.invoke(app, ["diff", "production", "feature-x", "-n", ns])
    assert table.exit_code == 0, table.output
    assert "+    coupon_code text" in table.stdout and "only in production" in table.stdout
    assert "differs: STRIPE_KEY changed (value hidden)" in table.stdout
    as_yaml = runner.invoke(app, ["diff", "production", "feature-x", "-n", ns, "-o", "yaml", "--exit-code"])
    assert as_yaml.exit_code == 1  # they differ
    data = yaml.safe_load(as_yaml.stdout)
    assert not data["schema"]["identical"] and "+    coupon_code text" in data["schema"]["diff"]
    added = [ln for ln in data["schema"]["diff"].splitlines() if ln.startswith(("+", "-"))
             and not ln.startswith(("+++", "---"))]
    # Only the new column (and the comma it puts after the last one): names, owners and tags normalised.
    assert len(added) == 3 and added[2] == "+    coupon_code text", added
    assert added[0].startswith("-    placed_at") and added[1] == added[0].replace("-", "+", 1) + ",", added
    secrets = {e["name"]: e for e in data["configuration"]["environment-variables"]}
    assert secrets["app-secrets"] == {"kind": "Secret", "name": "app-secrets", "state": "differs",
                                      "keys": {"changed": ["STRIPE_KEY"]}}
    _no_secret_values(result.output, table.output, as_yaml.output)
    same = runner.invoke(app, ["diff", "feature-x", "feature-x", "-n", ns, "--exit-code", "--no-config"])
    assert same.exit_code == 0 and "schema: identical" in same.stdout


# -- export and import --------------------------------------------------------------------------------
def _config_of(project: Project, namespace: str) -> dict[str, tuple[str, dict[str, str]]]:
    """name -> (resourceVersion, data) of every ConfigMap and Secret in a namespace."""
    objs = [*project.core.list_namespaced_config_map(namespace).items,
            *project.core.list_namespaced_secret(namespace).items]
    return {f"{type(o).__name__.removeprefix('V1')}/{o.metadata.name}": (o.metadata.resource_version, o.data or {})
            for o in objs}


@pytest.mark.usefixtures("cli")
def test_export_import_round_trip(shop: Project, tmp_path: Path) -> None:
    ns = shop.namespace
    everything = {"fileProviders": True, "gatewayRoutes": True, "securityConfig": True, "environmentVariables": True}
    shop.apply_env("target", {"source": "production", "mode": "System", "copy": everything})
    shop.apply_env("bare", {"source": "production", "mode": "System"})
    target_ns = shop.wait_phase("target", "Active")["namespace"]
    bare_ns = shop.wait_phase("bare", "Active")["namespace"]

    exported = runner.invoke(app, ["export", "production", "-n", ns])
    assert exported.exit_code == 0, exported.output
    bundle = yaml.safe_load(exported.stdout)
    assert bundle["kind"] == "ConfigurationBundle" and bundle["apiVersion"] == "envbranch.io/v1alpha1"
    items = {f"{i['kind']}/{i['metadata']['name']}": i for i in bundle["items"]}
    assert set(items) == {"ConfigMap/uploads", "ConfigMap/invoices", "ConfigMap/routes", "Secret/webhooks",
                          "ConfigMap/cors", "Secret/oauth-shop-web", "ConfigMap/app-env", "Secret/app-secrets"}
    assert items["Secret/app-secrets"]["data"] == {"STRIPE_KEY": "<redacted>"}
    assert set(items["ConfigMap/uploads"]["metadata"]) == {"name", "labels"}  # no uid, resourceVersion, ...
    assert "# Redacted Secret keys:" in exported.stdout and "app-secrets (STRIPE_KEY)" in exported.stdout
    path = tmp_path / "bundle.yaml"
    path.write_text(exported.stdout)

    # The target drifts: a value changed, an object deleted, a stale one added, its own Stripe key.
    shop.core.patch_namespaced_config_map("app-env", target_ns, {"data": {"LOG_LEVEL": "debug"}})
    shop.core.delete_namespaced_config_map("cors", target_ns)
    shop.core.create_namespaced_config_map(target_ns, {"metadata": {"name": "stale", "labels": {
        "envbranch.io/category": "gateway-routes"}}, "data": {"x": "y"}})
    shop.core.patch_namespaced_secret("app-secrets", target_ns, {
        "data": {"STRIPE_KEY": base64.b64encode(b"sk_test_branch_value").decode()}})

    # A redacted key the target does not have: refused, nothing changed.
    before_bare = _config_of(shop, bare_ns)
    refused = runner.invoke(app, ["import", str(path), "--into", "bare", "-n", ns])
    assert refused.exit_code == 1 and "<redacted> in the bundle and the target has no value" in refused.output
    assert _config_of(shop, bare_ns) == before_bare

    before = _config_of(shop, target_ns)
    dry = runner.invoke(app, ["import", str(path), "--into", "target", "-n", ns, "--dry-run", "-o", "json"])
    assert dry.exit_code == 0, dry.output
    plan = {f"{c['kind']}/{c['name']}": c for c in json.loads(dry.stdout)["changes"]}
    assert {k: c["action"] for k, c in plan.items() if c["action"] != "unchanged"} == {
        "ConfigMap/app-env": "update", "ConfigMap/cors": "create", "ConfigMap/stale": "delete"}
    assert plan["ConfigMap/app-env"]["keys"] == {"changed": ["LOG_LEVEL"]}
    assert _config_of(shop, target_ns) == before  # a dry run changes nothing
    dry_table = runner.invoke(app, ["import", str(path), "--into", "target", "-n", ns, "--dry-run"])
    assert "dry run: target" in dry_table.stdout and "would create 1, update 1, delete 1" in dry_table.stdout

    done = runner.invoke(app, ["import", str(path), "--into", "target", "-n", ns])
    assert done.exit_code == 0, done.output
    assert "did create 1, update 1, delete 1" in done.stdout
    after = _config_of(shop, target_ns)
    assert "ConfigMap/stale" not in after and after["ConfigMap/app-env"][1]["LOG_LEVEL"] == "info"
    assert "Secret/target-db" in after and "ConfigMap/envbranch-environment" in after  # not configuration
    assert base64.b64decode(after["Secret/app-secrets"][1]["STRIPE_KEY"]) == b"sk_test_branch_value"  # kept
    cors = shop.core.read_namespaced_config_map("cors", target_ns).metadata
    assert cors.labels["envbranch.io/environment"] == "target"
    # The configurations are now equal, but for the Secret values the target keeps as its own.
    compared = runner.invoke(app, ["diff", "production", "target", "-n", ns, "--no-schema", "-o", "json"])
    states = _states(json.loads(compared.stdout)["configuration"])
    assert {k: v for k, v in states.items() if v != "same"} == {
        "Secret/webhooks": "differs", "Secret/oauth-shop-web": "differs",  # rotated when branched
        "Secret/app-secrets": "differs", "Secret/google-login": "only-in-a"}
    again = runner.invoke(app, ["import", str(path), "--into", "target", "-n", ns, "-o", "yaml"])
    assert {c["action"] for c in yaml.safe_load(again.stdout)["changes"]} == {"unchanged"}
    _no_secret_values(exported.output, refused.output, dry.output, dry_table.output, done.output, compared.output,
                      again.output)


@pytest.mark.usefixtures("cli")
def test_an_invalid_bundle_is_refused_and_nothing_changes(shop: Project, tmp_path: Path) -> None:
    ns = shop.namespace
    prod_ns = f"{ns}-prod"
    before = _config_of(shop, prod_ns)
    cases = {
        "auth.yaml": {"apiVersion": "envbranch.io/v1alpha1", "kind": "ConfigurationBundle", "items": [
            {"kind": "Secret", "metadata": {"name": "google-login", "labels": {
                "envbranch.io/category": "auth-providers"}}, "data": {"client-id": "Zm9v"}}]},
        "kind.yaml": {"apiVersion": "envbranch.io/v1alpha1", "kind": "Environment", "items": []},
        "b64.yaml": {"apiVersion": "envbranch.io/v1alpha1", "kind": "ConfigurationBundle", "items": [
            {"kind": "Secret", "metadata": {"name": "x", "labels": {"envbranch.io/category": "oauth-clients"}},
             "data": {"k": "not base64!"}}]},
    }
    for name, document in cases.items():
        path = tmp_path / name
        path.write_text(yaml.safe_dump(document))
        result = runner.invoke(app, ["import", str(path), "--into", "production", "-n", ns])
        assert result.exit_code == 1 and "error: invalid bundle:" in result.output, result.output
    (tmp_path / "broken.yaml").write_text("items: [unclosed\n")
    broken = runner.invoke(app, ["import", str(tmp_path / "broken.yaml"), "--into", "production", "-n", ns])
    assert broken.exit_code == 1 and "is not YAML or JSON" in broken.output
    empty = runner.invoke(app, ["import", str(tmp_path / "missing.yaml"), "--into", "production", "-n", ns])
    assert empty.exit_code == 1 and "cannot read" in empty.output
    assert _config_of(shop, prod_ns) == before


# -- errors of every data command ---------------------------------------------------------------------
@pytest.mark.usefixtures("cli")
def test_missing_environment_and_missing_crds(shop: Project, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    ns = shop.namespace
    bundle = tmp_path / "b.yaml"
    bundle.write_text(yaml.safe_dump({"apiVersion": "envbranch.io/v1alpha1", "kind": "ConfigurationBundle"}))
    for args in (["diff", "production", "nope"], ["export", "nope"], ["import", str(bundle), "--into", "nope"],
                 ["status", "nope"], ["delete", "nope"]):
        result = runner.invoke(app, [*args, "-n", ns])
        assert result.exit_code == 1, (args, result.output)
        assert result.output == f"error: Environment 'nope' not found in namespace '{ns}'\n", args
    # A cluster without the envbranch CRDs answers 404 for the whole group: ask for a group that the
    # (real) API server does not serve.
    monkeypatch.setattr(cli_main, "GROUP", "nosuch.envbranch.io")
    for args in (["list"], ["diff", "production", "feature"], ["export", "production"]):
        result = runner.invoke(app, [*args, "-n", ns])
        assert result.exit_code == 1 and "the envbranch CRDs are not installed" in result.output, result.output


@pytest.mark.usefixtures("cli")
def test_no_permission_and_no_cluster_for_diff_export_import(controlplane: ControlPlane, shop: Project,
                                                             tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ns = shop.namespace
    bundle = tmp_path / "b.yaml"
    bundle.write_text(yaml.safe_dump({"apiVersion": "envbranch.io/v1alpha1", "kind": "ConfigurationBundle"}))
    commands = (["diff", "production", "production"], ["export", "production"],
                ["import", str(bundle), "--into", "production"])
    monkeypatch.setenv("KUBECONFIG", str(controlplane.kubeconfig_for("nobody")))
    for args in commands:
        denied = runner.invoke(app, [*args, "-n", ns])
        assert denied.exit_code == 1 and denied.output.startswith("error: permission denied:"), denied.output
        assert 'User "nobody"' in denied.output and denied.output.count("\n") == 1
    cfg = yaml.safe_load(controlplane.kubeconfig.read_text())
    cfg["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{free_port()}"
    nowhere = tmp_path / "nowhere.kubeconfig"
    nowhere.write_text(yaml.safe_dump(cfg))
    monkeypatch.setenv("KUBECONFIG", str(nowhere))
    for args in commands:
        down = runner.invoke(app, [*args, "-n", ns])
        assert down.exit_code == 1 and "cannot reach the Kubernetes API server" in down.output


def test_every_command_has_help_with_examples() -> None:
    for command in ("branch", "list", "status", "rename", "delete", "diff", "export", "import", "operator"):
        result = runner.invoke(app, [command, "--help"])
        assert result.exit_code == 0 and "Examples:" in result.output and f"envbranch {command}" in result.output


def test_diff_names_the_permissions_it_lacks(shop: Project, controlplane: ControlPlane,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A viewer of the project reads Environments but not Secrets, nor the runtime namespaces: diff says
    which permissions it needs before reading anything."""
    ns = shop.namespace
    apply(controlplane, "user-roles.yaml")
    client.RbacAuthorizationV1Api(shop.api).create_namespaced_role_binding(ns, {
        "metadata": {"name": "vic-view"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
        "subjects": [{"kind": "User", "name": "vic", "apiGroup": "rbac.authorization.k8s.io"}]})
    monkeypatch.setenv("KUBECONFIG", str(controlplane.kubeconfig_for("vic")))
    monkeypatch.setenv("COLUMNS", "400")
    # The view role reaches Environments through aggregation, which the controller manager performs.
    result = wait_until(lambda: (r := runner.invoke(app, ["diff", "production", "production", "-n", ns]))
                        .exit_code == 1 and "you may not" in r.output and r, timeout=30,
                        what="diff as a viewer to name what it lacks")
    assert f"get secrets in {ns} (the DatabaseServer's admin Secret, to read the schemas)" in result.output
    assert f"list configmaps in {ns}-prod (the configuration of production)" in result.output
    assert "--no-schema or --no-config" in result.output
