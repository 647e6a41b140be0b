"""The command line against the local control plane and a running operator."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import yaml
from typer.testing import CliRunner

from envbranch.cli.main import app, slug
from envbranch.kube import client as kube
from envbranch.testing.controlplane import ControlPlane
from envbranch.testing.processes import free_port
from envbranch.testing.scenario import Project

runner = CliRunner()


@pytest.fixture
def cli(controlplane: ControlPlane, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("KUBECONFIG", str(controlplane.kubeconfig))
    kube._client = None  # the CLI's client is built from KUBECONFIG on first use
    yield
    kube._client = None


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
    shop.apply_env("doomed", {"source": "production", "mode": "System"},
                   annotations={"envbranch.io/inject-fault": "database"})
    result = runner.invoke(app, ["status", "doomed", "-n", shop.namespace])
    assert result.exit_code == 0
    bad = runner.invoke(app, ["branch", "x", "--from", "production", "--copy", "everything", "-n", shop.namespace])
    assert bad.exit_code == 1 and "unknown copy flag" in bad.output


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
    kube._client = None
    down = runner.invoke(app, ["list", "-n", "x"])
    assert down.exit_code == 1 and "cannot reach the Kubernetes API server" in down.output


@pytest.mark.usefixtures("cli")
def test_no_permission_is_reported(controlplane: ControlPlane, project: Project,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", str(controlplane.kubeconfig_for("mallory")))
    kube._client = None
    denied = runner.invoke(app, ["list", "-n", project.namespace])
    assert denied.exit_code == 1 and "permission denied" in denied.output
