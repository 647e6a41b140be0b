"""Copy flags are for project owners only, enforced by the chart's ValidatingAdmissionPolicy through
CEL's authorizer, with real users on the real API server."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from kubernetes import client, config

from envbranch.api.common import GROUP, VERSION
from envbranch.testing.controlplane import ControlPlane
from envbranch.testing.crds import install_crds
from envbranch.testing.manifests import apply
from envbranch.testing.processes import wait_until


@pytest.fixture(scope="module")
def project(controlplane: ControlPlane, k8s: client.ApiClient) -> str:
    install_crds(k8s)
    apply(controlplane, "copy-policy.yaml", "user-roles.yaml")
    ns = f"perm-{uuid.uuid4().hex[:6]}"
    client.CoreV1Api(k8s).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    rbac = client.RbacAuthorizationV1Api(k8s)
    for user, role in (("alice", "envbranch-editor"), ("bob", "envbranch-owner"), ("carol", "admin"),
                       ("dave", "edit"), ("erin", "envbranch-viewer")):
        rbac.create_namespaced_role_binding(ns, {
            "metadata": {"name": f"{user}-{role}"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"kind": "User", "name": user, "apiGroup": "rbac.authorization.k8s.io"}]})
    return ns


def _as(controlplane: ControlPlane, user: str) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(config.new_client_from_config(config_file=str(controlplane.kubeconfig_for(user))))


def _body(name: str, copy: dict[str, bool] | None) -> dict[str, Any]:
    spec: dict[str, Any] = {"source": "production", "mode": "System"}
    if copy is not None:
        spec["copy"] = copy
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Environment", "metadata": {"name": name}, "spec": spec}


def _create(api: client.CustomObjectsApi, ns: str, name: str, copy: dict[str, bool] | None) -> None:
    api.create_namespaced_custom_object(GROUP, VERSION, ns, "environments", _body(name, copy))


def _refused(api: client.CustomObjectsApi, ns: str, name: str, copy: dict[str, bool]) -> str | None:
    try:
        _create(api, ns, name, copy)
    except client.ApiException as exc:
        return str(exc.body) if exc.status == 403 else None
    api.delete_namespaced_custom_object(GROUP, VERSION, ns, "environments", name)  # policy not active yet
    return None


def test_editor_branches_without_copy_flags_and_is_refused_with_them(controlplane: ControlPlane, project: str) -> None:
    alice = _as(controlplane, "alice")
    _create(alice, project, "alice-plain", None)
    _create(alice, project, "alice-false", {"fileProviders": False})
    body = wait_until(lambda: _refused(alice, project, "alice-copy", {"environmentVariables": True}), timeout=30,
                      what="the copy-flags policy to refuse an editor")
    assert "copy flags are reserved for project owners: alice may not \\\"copy\\\"" in body
    assert f"in namespace {project}" in body and "envbranch-owner" in body


@pytest.mark.parametrize("user", ["bob", "carol"])
def test_owners_and_namespace_admins_may_copy(controlplane: ControlPlane, project: str, user: str) -> None:
    api = _as(controlplane, user)
    wait_until(lambda: _refused(_as(controlplane, "alice"), project, "probe", {"gatewayRoutes": True}),
               timeout=30, what="the policy to be active")
    # The admin role gets `copy` through aggregation, which the controller manager performs.
    wait_until(lambda: _create(api, project, f"{user}-copy", {"fileProviders": True, "gatewayRoutes": True})
               or True, timeout=30, what=f"{user} to be allowed to copy")


def test_edit_role_cannot_copy_and_viewer_cannot_create(controlplane: ControlPlane, project: str) -> None:
    dave = _as(controlplane, "dave")
    wait_until(lambda: _refused(dave, project, "dave-copy", {"securityConfig": True}), timeout=30,
               what="the policy to refuse the edit role")
    _create(dave, project, "dave-plain", None)
    with pytest.raises(client.ApiException) as info:
        _create(_as(controlplane, "erin"), project, "erin", None)
    assert info.value.status == 403


def test_nobody_switches_copy_flags_on_later(controlplane: ControlPlane, project: str) -> None:
    bob = _as(controlplane, "bob")
    _create(bob, project, "bob-later", None)
    with pytest.raises(client.ApiException) as info:
        bob.patch_namespaced_custom_object(GROUP, VERSION, project, "environments", "bob-later",
                                           {"spec": {"copy": {"fileProviders": True}}})
    assert "spec.copy is immutable" in str(info.value.body)
