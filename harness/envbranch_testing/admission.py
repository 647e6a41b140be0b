"""Bad Environment specs and the users of the copy-flags policy, shared by the CRD validation, the
permission and the reliability tests: one list of cases, one way to act as a user."""

from __future__ import annotations

from typing import Any

from kubernetes import client, config

from envbranch.api.common import GROUP, VERSION
from envbranch_testing.controlplane import ControlPlane

# (case id, spec, what the API server says) for specs refused at apply time by the CRD schema or CEL.
BAD_SPECS: list[tuple[str, dict[str, Any], str]] = [
    ("branch-without-mode", {"source": "production"}, "spec.mode is required on a branch"),
    ("bad-mode", {"source": "production", "mode": "Partial"}, 'supported values: \\"Full\\", \\"System\\"'),
    ("namespace-on-branch", {"source": "production", "mode": "Full", "namespace": "x"},
     "are for root environments only"),
    ("dbname-on-branch", {"source": "production", "mode": "Full", "database": {"name": "x"}},
     "are for root environments only"),
    ("copy-on-root", {"copy": {"fileProviders": True}}, "spec.copy needs spec.source"),
    ("bad-display", {"displayName": "has spaces"}, "spec.displayName"),
    ("long-display", {"displayName": "x" * 65}, "spec.displayName"),
    ("bad-source", {"source": "Production", "mode": "Full"}, "spec.source"),
    ("bad-ttl", {"source": "production", "mode": "Full", "ttl": "3 days"}, "spec.ttl"),
    ("bad-strategy", {"source": "production", "mode": "Full", "database": {"strategy": "Fast"}},
     "spec.database.strategy"),
    ("bad-policy", {"deletionPolicy": "Keep"}, "spec.deletionPolicy"),
    ("masking-on-system", {"source": "production", "mode": "System", "database": {"masking": "pii"}},
     "spec.database.masking needs mode Full"),
    ("personal-data-on-branch", {"source": "production", "mode": "Full", "personalData": True},
     "spec.personalData is for root environments only"),
    ("slow-dump", {"source": "production", "mode": "Full", "database": {"dump": {"maxRate": "512Ki"}}},
     "maxRate must be at least 1Mi"),
    ("bad-rate", {"source": "production", "mode": "Full", "database": {"dump": {"maxRate": "20MB"}}},
     "spec.database.dump.maxRate"),
    ("no-streams", {"source": "production", "mode": "Full", "database": {"dump": {"streams": 0}}},
     "spec.database.dump.streams"),
]

# (case id, spec patch, message) for changes refused on a branch created with
# {"source": "production", "mode": "System", "copy": {"environmentVariables": True}}.
IMMUTABLE_BRANCH_CHANGES: list[tuple[str, dict[str, Any], str]] = [
    ("change-mode", {"mode": "Full"}, "spec.mode is immutable"),
    ("change-source", {"source": "other"}, "spec.source is immutable"),
    ("change-copy", {"copy": {"fileProviders": True}}, "spec.copy is immutable"),
    ("change-database", {"database": {"strategy": "Dump"}}, "spec.database is immutable"),
    ("add-masking", {"database": {"masking": "pii"}}, "spec.database is immutable"),
]

# Who is bound to what in a permissions test namespace.
USER_ROLES = (("alice", "envbranch-editor"), ("bob", "envbranch-owner"), ("carol", "admin"),
              ("dave", "edit"), ("erin", "envbranch-viewer"))


def environment_body(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Environment", "metadata": {"name": name}, "spec": spec}


def create_environment(api: client.CustomObjectsApi, ns: str, name: str, spec: dict[str, Any],
                       **kwargs: Any) -> dict[str, Any]:
    return dict(api.create_namespaced_custom_object(GROUP, VERSION, ns, "environments",
                                                    environment_body(name, spec), **kwargs))


def refusal(api: client.CustomObjectsApi, ns: str, name: str, spec: dict[str, Any], status: int = 422) -> str:
    """The API server's answer to an Environment it must refuse; AssertionError when it accepts it."""
    try:
        create_environment(api, ns, name, spec)
    except client.ApiException as exc:
        assert exc.status == status, exc.body
        return str(exc.body)
    raise AssertionError(f"Environment {name} with spec {spec} was accepted")


def bind_users(k8s: client.ApiClient, ns: str) -> None:
    rbac = client.RbacAuthorizationV1Api(k8s)
    for user, role in USER_ROLES:
        rbac.create_namespaced_role_binding(ns, {
            "metadata": {"name": f"{user}-{role}"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"kind": "User", "name": user, "apiGroup": "rbac.authorization.k8s.io"}]})


def as_user(controlplane: ControlPlane, user: str) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(config.new_client_from_config(config_file=str(controlplane.kubeconfig_for(user))))


def copy_refused(api: client.CustomObjectsApi, ns: str, name: str, copy: dict[str, bool]) -> str | None:
    """The policy's 403 text for a branch with copy flags; None (and the object removed again) when it
    was admitted, e.g. because the policy is not active yet."""
    try:
        create_environment(api, ns, name, {"source": "production", "mode": "System", "copy": copy})
    except client.ApiException as exc:
        return str(exc.body) if exc.status == 403 else None
    api.delete_namespaced_custom_object(GROUP, VERSION, ns, "environments", name)
    return None
