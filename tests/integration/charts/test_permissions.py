"""Copy flags are for project owners only, enforced by the chart's ValidatingAdmissionPolicy through
CEL's authorizer, with real users on the real API server."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from kubernetes import client

from envbranch.api.common import GROUP, VERSION
from envbranch.testing.admission import as_user, bind_users, copy_refused, create_environment
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
    bind_users(k8s, ns)
    return ns


def _create(api: client.CustomObjectsApi, ns: str, name: str, copy: dict[str, bool] | None) -> None:
    spec: dict[str, Any] = {"source": "production", "mode": "System"}
    if copy is not None:
        spec["copy"] = copy
    create_environment(api, ns, name, spec)


def test_editor_branches_without_copy_flags_and_is_refused_with_them(controlplane: ControlPlane, project: str) -> None:
    alice = as_user(controlplane, "alice")
    _create(alice, project, "alice-plain", None)
    _create(alice, project, "alice-false", {"fileProviders": False})
    body = wait_until(lambda: copy_refused(alice, project, "alice-copy", {"environmentVariables": True}), timeout=30,
                      what="the copy-flags policy to refuse an editor")
    assert "copy flags are reserved for project owners: alice may not \\\"copy\\\"" in body
    assert f"in namespace {project}" in body and "envbranch-owner" in body


@pytest.mark.parametrize("user", ["bob", "carol"])
def test_owners_and_namespace_admins_may_copy(controlplane: ControlPlane, project: str, user: str) -> None:
    api = as_user(controlplane, user)
    wait_until(lambda: copy_refused(as_user(controlplane, "alice"), project, "probe", {"gatewayRoutes": True}),
               timeout=30, what="the policy to be active")
    # The admin role gets `copy` through aggregation, which the controller manager performs.
    wait_until(lambda: _create(api, project, f"{user}-copy", {"fileProviders": True, "gatewayRoutes": True})
               or True, timeout=30, what=f"{user} to be allowed to copy")


def test_edit_role_cannot_copy_and_viewer_cannot_create(controlplane: ControlPlane, project: str) -> None:
    dave = as_user(controlplane, "dave")
    wait_until(lambda: copy_refused(dave, project, "dave-copy", {"securityConfig": True}), timeout=30,
               what="the policy to refuse the edit role")
    _create(dave, project, "dave-plain", None)
    with pytest.raises(client.ApiException) as info:
        _create(as_user(controlplane, "erin"), project, "erin", None)
    assert info.value.status == 403


def test_nobody_switches_copy_flags_on_later(controlplane: ControlPlane, project: str) -> None:
    bob = as_user(controlplane, "bob")
    _create(bob, project, "bob-later", None)
    with pytest.raises(client.ApiException) as info:
        bob.patch_namespaced_custom_object(GROUP, VERSION, project, "environments", "bob-later",
                                           {"spec": {"copy": {"fileProviders": True}}})
    assert "spec.copy is immutable" in str(info.value.body)
