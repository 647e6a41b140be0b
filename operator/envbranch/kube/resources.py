"""The two custom resources through the API: reads, status patches, deletes."""

from __future__ import annotations

import base64
from typing import Any, Literal

from envbranch.api.common import DATABASESERVERS, ENVIRONMENTS, GROUP, VERSION
from envbranch.kube.client import KubeClient, get_or_none

__all__ = ["DATABASESERVERS", "ENVIRONMENTS", "create", "delete", "get", "list_all", "list_in", "patch",
           "patch_status", "read", "read_secret_values", "read_values", "remove", "secret_finalizers",
           "secrets_with_finalizer", "set_secret_finalizer"]


def get(kube: KubeClient, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
    return get_or_none(lambda: kube.custom().get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name))


# For the CLI: these raise the API's errors (a 404 included) for the caller to report; `group` lets
# it point at another API group (its tests ask for one the server does not serve).
def read(kube: KubeClient, plural: str, namespace: str, name: str, *, group: str = GROUP) -> dict[str, Any]:
    return dict(kube.custom().get_namespaced_custom_object(group, VERSION, namespace, plural, name))


def list_all(kube: KubeClient, plural: str, namespace: str, *, group: str = GROUP) -> list[dict[str, Any]]:
    return list(kube.custom().list_namespaced_custom_object(group, VERSION, namespace, plural)["items"])


def create(kube: KubeClient, plural: str, namespace: str, body: dict[str, Any], *,
           group: str = GROUP) -> dict[str, Any]:
    return dict(kube.custom().create_namespaced_custom_object(group, VERSION, namespace, plural, body))


def patch(kube: KubeClient, plural: str, namespace: str, name: str, body: dict[str, Any], *,
          group: str = GROUP) -> dict[str, Any]:
    return dict(kube.custom().patch_namespaced_custom_object(group, VERSION, namespace, plural, name, body))


def remove(kube: KubeClient, plural: str, namespace: str, name: str, *, group: str = GROUP) -> None:
    kube.custom().delete_namespaced_custom_object(group, VERSION, namespace, plural, name)


def list_in(kube: KubeClient, plural: str, namespace: str | None = None) -> list[dict[str, Any]]:
    if namespace is None:
        result = kube.custom().list_cluster_custom_object(GROUP, VERSION, plural)
    else:
        result = kube.custom().list_namespaced_custom_object(GROUP, VERSION, namespace, plural)
    return list(result.get("items", []))


def patch_status(kube: KubeClient, plural: str, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
    """JSON merge patch of .status: lists (conditions, inventory) are replaced whole."""
    return dict(kube.custom().patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, plural, name, {"status": status},
        _content_type="application/merge-patch+json"))


def delete(kube: KubeClient, plural: str, namespace: str, name: str) -> None:
    get_or_none(lambda: kube.custom().delete_namespaced_custom_object(GROUP, VERSION, namespace, plural, name))


def set_secret_finalizer(kube: KubeClient, namespace: str, name: str, finalizer: str, present: bool) -> None:
    """Add or remove one finalizer of a Secret (strategic merge: other finalizers are left alone)."""
    patch: dict[str, Any] = ({"metadata": {"finalizers": [finalizer]}} if present else
                             {"metadata": {"$deleteFromPrimitiveList/finalizers": [finalizer]}})
    get_or_none(lambda: kube.core().patch_namespaced_secret(
        name, namespace, patch, _content_type="application/strategic-merge-patch+json"))


def secrets_with_finalizer(kube: KubeClient, namespace: str, finalizer: str) -> list[str]:
    return [s.metadata.name for s in kube.core().list_namespaced_secret(namespace).items
            if finalizer in (s.metadata.finalizers or [])]


def secret_finalizers(kube: KubeClient, namespace: str, name: str) -> list[str] | None:
    secret = get_or_none(lambda: kube.core().read_namespaced_secret(name, namespace))
    return None if secret is None else list(secret.metadata.finalizers or [])


def read_secret_values(kube: KubeClient, namespace: str, name: str, keys: tuple[str, ...]) -> dict[str, str] | None:
    """Decoded values of `keys` of a Secret, None when the Secret is missing. Never logged."""
    secret = get_or_none(lambda: kube.core().read_namespaced_secret(name, namespace))
    if secret is None:
        return None
    data = secret.data or {}
    return {k: base64.b64decode(data[k]).decode() for k in keys if k in data}


def read_values(kube: KubeClient, kind: Literal["Secret", "ConfigMap"], namespace: str, name: str,
                keys: tuple[str, ...]) -> dict[str, bytes] | None:
    """The bytes of `keys` in a Secret or ConfigMap (data or binaryData), None when it is missing.
    Never logged."""
    if kind == "Secret":
        secret = get_or_none(lambda: kube.core().read_namespaced_secret(name, namespace))
        if secret is None:
            return None
        data = secret.data or {}
        return {k: base64.b64decode(data[k]) for k in keys if k in data}
    config_map = get_or_none(lambda: kube.core().read_namespaced_config_map(name, namespace))
    if config_map is None:
        return None
    text, binary = config_map.data or {}, config_map.binary_data or {}
    return {k: text[k].encode() if k in text else base64.b64decode(binary[k]) for k in keys
            if k in text or k in binary}
