"""Namespaces: the runtime home of an environment."""

from __future__ import annotations

from kubernetes import client

from envbranch.kube.client import KubeClient, get_or_none


def read_namespace(kube: KubeClient, name: str) -> client.V1Namespace | None:
    return get_or_none(lambda: kube.core().read_namespace(name))


def create_namespace(kube: KubeClient, name: str, labels: dict[str, str]) -> client.V1Namespace:
    return kube.core().create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels)))


def delete_namespace(kube: KubeClient, name: str) -> None:
    """Ask for deletion; the namespace controller finishes it (see namespace_gone)."""
    if read_namespace(kube, name) is not None:
        get_or_none(lambda: kube.core().delete_namespace(name, propagation_policy="Background"))


def namespace_gone(kube: KubeClient, name: str) -> bool:
    return read_namespace(kube, name) is None


def cluster_uid(kube: KubeClient) -> str | None:
    """The UID of kube-system: a stable identity of this cluster (None where it cannot be read)."""
    try:
        ns = read_namespace(kube, "kube-system")
    except client.ApiException:
        return None
    return str(ns.metadata.uid) if ns is not None else None
