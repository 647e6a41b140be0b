"""Copy flags, adoption and a root's destructive settings are for project owners only, enforced by the
chart's ValidatingAdmissionPolicies through CEL's authorizer, with real users on the real API server."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from kubernetes import client

from envbranch.api.common import GROUP, VERSION
from envbranch_testing.admission import as_user, bind_users, copy_refused, create_environment
from envbranch_testing.controlplane import ControlPlane
from envbranch_testing.crds import install_crds
from envbranch_testing.manifests import apply
from envbranch_testing.processes import wait_until


@pytest.fixture(scope="module")
def project(controlplane: ControlPlane, k8s: client.ApiClient) -> str:
    install_crds(k8s)
    apply(controlplane, "copy-policy.yaml", "owner-policy.yaml", "user-roles.yaml")
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


@pytest.fixture(scope="module")
def other_team(k8s: client.ApiClient, project: str) -> str:
    """Another team's namespace: nobody of `project` is bound there."""
    ns = f"{project}-other"
    client.CoreV1Api(k8s).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    return ns


def _refused(api: client.CustomObjectsApi, ns: str, name: str, spec: dict[str, Any]) -> str | None:
    """The 403 text for an Environment the owner policy must refuse; None (object removed) if admitted."""
    try:
        create_environment(api, ns, name, spec)
    except client.ApiException as exc:
        return str(exc.body) if exc.status == 403 else None
    api.delete_namespaced_custom_object(GROUP, VERSION, ns, "environments", name)
    return None


def test_adopting_another_teams_namespace_is_refused_even_to_a_project_owner(
        controlplane: ControlPlane, project: str, other_team: str) -> None:
    bob = as_user(controlplane, "bob")  # owner of `project`, nobody in `other_team`
    body = wait_until(lambda: _refused(bob, project, "steal", {"namespace": other_team}), timeout=30,
                      what="the adoption policy to refuse adopting another team's namespace")
    assert f"adopting namespace {other_team} is reserved for its owners: bob may not \\\"adopt\\\"" in body
    assert f"in namespace {other_team}" in body
    # Own project's namespaces are the owner's to adopt; an editor may adopt nothing.
    assert _refused(bob, project, "own", {"namespace": project}) is None
    body = str(_refused(as_user(controlplane, "alice"), project, "mine", {"namespace": project}))
    assert "alice may not \\\"adopt\\\"" in body


def test_owners_of_both_namespaces_may_adopt(controlplane: ControlPlane, k8s: client.ApiClient, project: str,
                                             other_team: str) -> None:
    client.RbacAuthorizationV1Api(k8s).create_namespaced_role_binding(other_team, {
        "metadata": {"name": "carol-owner"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "envbranch-owner"},
        "subjects": [{"kind": "User", "name": "carol", "apiGroup": "rbac.authorization.k8s.io"}]})
    carol = as_user(controlplane, "carol")  # admin of `project`, owner in `other_team`
    wait_until(lambda: _refused(carol, project, "adopt-other", {"namespace": other_team}) is None, timeout=30,
               what="carol, owner in both namespaces, to be allowed to adopt")


def test_adopting_a_database_needs_an_owner(controlplane: ControlPlane, project: str) -> None:
    spec = {"database": {"serverRef": "main", "name": "payroll"}}
    body = wait_until(lambda: _refused(as_user(controlplane, "alice"), project, "take-db", spec), timeout=30,
                      what="the adoption policy to refuse an editor adopting a database")
    assert "adopting database payroll is reserved for project owners: alice" in body
    assert _refused(as_user(controlplane, "bob"), project, "bob-db", spec) is None


def _patch(api: client.CustomObjectsApi, ns: str, name: str, patch: dict[str, Any]) -> str | None:
    try:
        api.patch_namespaced_custom_object(GROUP, VERSION, ns, "environments", name, patch)
    except client.ApiException as exc:
        assert exc.status == 403, exc.body
        return str(exc.body)
    return None


@pytest.mark.parametrize("patch", [
    {"spec": {"ttl": "1s"}},
    {"spec": {"deletionPolicy": "Delete"}},
    {"metadata": {"annotations": {"envbranch.io/retry": "1"}}},
    {"spec": {"personalData": True}},
], ids=["ttl", "deletionPolicy", "retry", "personalData"])
def test_only_owners_change_what_destroys_a_root(controlplane: ControlPlane, k8s: client.ApiClient, project: str,
                                                 patch: dict[str, Any]) -> None:
    root = f"root-{uuid.uuid4().hex[:6]}"
    create_environment(client.CustomObjectsApi(k8s), project, root, {"namespace": project})
    alice, bob = as_user(controlplane, "alice"), as_user(controlplane, "bob")
    body = wait_until(lambda: _patch(alice, project, root, patch), timeout=30,
                      what="the root-changes policy to refuse an editor")
    assert "reserved for project owners: alice may not \\\"manage\\\"" in body
    # An editor still renames the root; an owner may change the rest.
    assert _patch(alice, project, root, {"spec": {"displayName": "Renamed"}}) is None
    assert _patch(bob, project, root, patch) is None


def test_editors_keep_managing_their_branches(controlplane: ControlPlane, project: str) -> None:
    alice = as_user(controlplane, "alice")
    _create(alice, project, "alice-ttl", None)
    assert _patch(alice, project, "alice-ttl", {"spec": {"ttl": "1h", "deletionPolicy": "Delete"},
                                                "metadata": {"annotations": {"envbranch.io/retry": "2"}}}) is None


def test_an_editor_cannot_drop_a_roots_personal_data_mark(controlplane: ControlPlane, k8s: client.ApiClient,
                                                          project: str) -> None:
    root = f"pii-{uuid.uuid4().hex[:6]}"
    create_environment(client.CustomObjectsApi(k8s), project, root, {"namespace": project, "personalData": True})
    alice, bob = as_user(controlplane, "alice"), as_user(controlplane, "bob")
    for patch in ({"spec": {"personalData": False}}, {"spec": {"personalData": None}}):
        body = wait_until(lambda p=patch: _patch(alice, project, root, p), timeout=30,  # type: ignore[misc]
                          what="the root-changes policy to refuse an editor")
        assert "personalData" in body and "alice may not \\\"manage\\\"" in body
    assert _patch(bob, project, root, {"spec": {"personalData": False}}) is None


def _policy(api: client.CustomObjectsApi, ns: str, name: str) -> None:
    api.create_namespaced_custom_object(GROUP, VERSION, ns, "maskingpolicies", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "MaskingPolicy", "metadata": {"name": name},
        "spec": {"keySecretRef": {"name": "masking-key"},
                 "rules": [{"table": "users", "column": "email", "function": "Email"}]}})


def test_owners_write_masking_policies_and_everyone_else_reads_them(controlplane: ControlPlane,
                                                                    project: str) -> None:
    _policy(as_user(controlplane, "bob"), project, "pii")
    wait_until(lambda: _policy(as_user(controlplane, "carol"), project, "pii-admin") or True, timeout=30,
               what="the admin role to be allowed to write MaskingPolicies (aggregation)")
    for user in ("alice", "dave", "erin"):
        api = as_user(controlplane, user)
        assert api.get_namespaced_custom_object(GROUP, VERSION, project, "maskingpolicies", "pii")["spec"]
        with pytest.raises(client.ApiException) as info:
            _policy(api, project, f"{user}-policy")
        assert info.value.status == 403
        with pytest.raises(client.ApiException) as patched:
            api.patch_namespaced_custom_object(GROUP, VERSION, project, "maskingpolicies", "pii",
                                               {"spec": {"unclassified": "Allow"}})
        assert patched.value.status == 403


def test_replicas_and_the_storage_budget_are_for_owners_and_dump_limits_for_everyone(
        controlplane: ControlPlane, k8s: client.ApiClient, project: str) -> None:
    """A replica list decides where the operator sends the admin password, a budget how much disk
    branches may take: DatabaseServers are written by owners only. Dump limits only slow the
    branch's own copy: editors may set them."""
    server = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "DatabaseServer", "metadata": {"name": "fenced"},
              "spec": {"host": "db.example", "adminSecretRef": {"name": "admin"}}}
    client.CustomObjectsApi(k8s).create_namespaced_custom_object(GROUP, VERSION, project, "databaseservers", server)
    patch = {"spec": {"replicas": [{"host": "attacker.example"}], "storage": {"budgetBytes": 10**12}}}
    alice, bob = as_user(controlplane, "alice"), as_user(controlplane, "bob")
    with pytest.raises(client.ApiException) as refused:
        alice.patch_namespaced_custom_object(GROUP, VERSION, project, "databaseservers", "fenced", patch)
    assert refused.value.status == 403
    bob.patch_namespaced_custom_object(GROUP, VERSION, project, "databaseservers", "fenced", patch)
    create_environment(alice, project, "alice-gentle", {"source": "production", "mode": "Full",
                                                        "database": {"dump": {"maxRate": "20Mi", "streams": 1}}})
