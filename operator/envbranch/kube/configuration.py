"""ConfigMaps and Secrets: the configuration of an environment, handled alike by kind."""

from __future__ import annotations

from typing import Any, Literal

from kubernetes.client.rest import ApiException

from envbranch.kube.client import KubeClient, get_or_none

Kind = Literal["ConfigMap", "Secret"]


def list_labelled(kube: KubeClient, kind: Kind, namespace: str, selector: str) -> list[dict[str, Any]]:
    """Objects as plain dicts (API field names), so ConfigMaps and Secrets share one code path."""
    api = kube.core()
    if kind == "ConfigMap":
        items = api.list_namespaced_config_map(namespace, label_selector=selector).items
    else:
        items = api.list_namespaced_secret(namespace, label_selector=selector).items
    return [api.api_client.sanitize_for_serialization(i) for i in items]


def read(kube: KubeClient, kind: Kind, namespace: str, name: str) -> dict[str, Any] | None:
    api = kube.core()
    reader = api.read_namespaced_config_map if kind == "ConfigMap" else api.read_namespaced_secret
    obj = get_or_none(lambda: reader(name, namespace))
    return None if obj is None else api.api_client.sanitize_for_serialization(obj)


def create(kube: KubeClient, kind: Kind, namespace: str, body: dict[str, Any]) -> bool:
    """Create; False when it already exists (the caller decides whether that copy is its own)."""
    api = kube.core()
    creator = api.create_namespaced_config_map if kind == "ConfigMap" else api.create_namespaced_secret
    try:
        creator(namespace, {"apiVersion": "v1", "kind": kind, **body})
    except ApiException as exc:
        if exc.status == 409:
            return False
        raise
    return True


def replace(kube: KubeClient, kind: Kind, namespace: str, name: str, body: dict[str, Any]) -> None:
    api = kube.core()
    replacer = api.replace_namespaced_config_map if kind == "ConfigMap" else api.replace_namespaced_secret
    replacer(name, namespace, {"apiVersion": "v1", "kind": kind, **body})


def delete(kube: KubeClient, kind: Kind, namespace: str, name: str) -> None:
    api = kube.core()
    deleter = api.delete_namespaced_config_map if kind == "ConfigMap" else api.delete_namespaced_secret
    get_or_none(lambda: deleter(name, namespace))


def gone(kube: KubeClient, kind: Kind, namespace: str, name: str) -> bool:
    return read(kube, kind, namespace, name) is None


def list_both(kube: KubeClient, namespace: str, selector: str = "") -> list[tuple[Kind, dict[str, Any]]]:
    """ConfigMaps, then Secrets, of a namespace matching `selector` ("" for every one), as (kind, object)."""
    kinds: tuple[Kind, ...] = ("ConfigMap", "Secret")
    return [(kind, obj) for kind in kinds for obj in list_labelled(kube, kind, namespace, selector)]
