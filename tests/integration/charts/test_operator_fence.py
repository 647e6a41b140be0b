"""The chart's fence on the operator's own writes (templates/operator-fence.yaml), acting as the
operator's ServiceAccount user with exactly the chart's ClusterRole, on the real API server. The e2e
suite runs the operator itself under the same fence, so everything it needs is proved allowed there."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client, config

from envbranch_testing.controlplane import ControlPlane
from envbranch_testing.operator import OPERATOR_USER, ExternalOperator, OperatorProcess
from envbranch_testing.processes import wait_until

MARK = {"envbranch.io/uid": "0f8e1a52-0000-4000-8000-000000000001", "envbranch.io/environment": "b"}


@pytest.fixture(scope="module")
def as_operator(controlplane: ControlPlane, operator: OperatorProcess | ExternalOperator) -> client.CoreV1Api:
    # The operator fixture installs the role, the binding and the fence, as local_operator does.
    return client.CoreV1Api(config.new_client_from_config(config_file=str(controlplane.kubeconfig_for(OPERATOR_USER))))


@pytest.fixture
def team(k8s: client.ApiClient) -> str:
    """A namespace envbranch did not make, holding a team's Secret and ConfigMap."""
    core = client.CoreV1Api(k8s)
    ns = f"team-{uuid.uuid4().hex[:6]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    core.create_namespaced_secret(ns, {"metadata": {"name": "payments"}, "stringData": {"key": "v"}})
    core.create_namespaced_config_map(ns, {"metadata": {"name": "settings"}, "data": {"a": "1"}})
    return ns


def _denied(call: Callable[[], Any]) -> str | None:
    """The fence's refusal text; None when the call went through."""
    try:
        call()
    except client.ApiException as exc:
        assert exc.status == 403, exc.body
        return str(exc.body)
    return None


def _secret(name: str, labels: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels or {}}, "stringData": {"k": "v"}, **extra}


def test_the_operator_creates_only_what_it_labels(as_operator: client.CoreV1Api, team: str) -> None:
    body = wait_until(lambda: _denied(lambda: as_operator.create_namespaced_secret(team, _secret("x"))),
                      timeout=30, what="the fence to refuse an unlabelled Secret")
    assert "creates only objects labelled envbranch.io/uid; secrets x is not" in body
    assert _denied(lambda: as_operator.create_namespaced_config_map(
        team, {"metadata": {"name": "y"}, "data": {}})) is not None
    assert _denied(lambda: as_operator.create_namespaced_secret(team, _secret("ours", MARK))) is None
    token = _secret("token", MARK, type="kubernetes.io/service-account-token")
    token["metadata"]["annotations"] = {"kubernetes.io/service-account.name": "default"}
    assert "never writes service-account-token" in str(_denied(
        lambda: as_operator.create_namespaced_secret(team, token)))
    assert f"namespaces {team}-unlabelled is not" in str(_denied(lambda: as_operator.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=f"{team}-unlabelled")))))


def test_the_operator_never_changes_or_deletes_a_teams_objects(as_operator: client.CoreV1Api, team: str) -> None:
    wait_until(lambda: _denied(lambda: as_operator.patch_namespaced_secret(
        "payments", team, {"stringData": {"key": "stolen"}})), timeout=30, what="the fence to refuse a change")
    assert _denied(lambda: as_operator.patch_namespaced_secret(
        "payments", team, {"metadata": {"labels": MARK}})) is not None  # claiming it by labelling it
    refused = _denied(lambda: as_operator.delete_namespaced_config_map("settings", team))
    assert "deletes only what it made" in str(refused)
    assert _denied(lambda: as_operator.delete_namespaced_secret("payments", team)) is not None
    assert "not namespaces" in str(_denied(lambda: as_operator.delete_namespace(team)))
    # A finalizer, and nothing else, may be put on and taken off a team's Secret (the admin Secret's keeper).
    fin = {"metadata": {"finalizers": ["envbranch.io/database-server"]}}
    assert _denied(lambda: as_operator.patch_namespaced_secret("payments", team, fin)) is None
    assert _denied(lambda: as_operator.patch_namespaced_secret(
        "payments", team, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["envbranch.io/database-server"]}},
        _content_type="application/strategic-merge-patch+json")) is None


def test_the_operator_changes_and_removes_what_it_made(as_operator: client.CoreV1Api, team: str) -> None:
    wait_until(lambda: _denied(lambda: as_operator.create_namespaced_secret(team, _secret("mine", MARK))) is None,
               timeout=30, what="a labelled Secret to be created")
    assert _denied(lambda: as_operator.patch_namespaced_secret("mine", team, {"stringData": {"k": "w"}})) is None
    unlabel = {"metadata": {"labels": {"envbranch.io/uid": None}}}
    assert _denied(lambda: as_operator.patch_namespaced_secret("mine", team, unlabel)) is not None
    assert _denied(lambda: as_operator.delete_namespaced_secret("mine", team)) is None
    ns = client.V1Namespace(metadata=client.V1ObjectMeta(name=f"{team}-branch", labels=MARK))
    assert _denied(lambda: as_operator.create_namespace(ns)) is None
    assert _denied(lambda: as_operator.delete_namespace(ns.metadata.name)) is None
