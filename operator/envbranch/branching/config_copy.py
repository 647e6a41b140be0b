"""The configuration step's copies: the source's configuration by category, as the copy flags ask.

The transformation (`copy_body`) is pure; `planned_copies` lists what to copy through kube/, and the
configuration step (steps/configuration.py) creates the copies.
"""

from __future__ import annotations

import base64
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from envbranch.api import common
from envbranch.kube import configuration
from envbranch.kube.client import KubeClient
from envbranch.kube.configuration import Kind

CATEGORY_LABEL = common.LABEL_CATEGORY
ENVIRONMENT_LABEL = common.LABEL_ENVIRONMENT
PROVIDER_ID = common.LABEL_PROVIDER_ID
COPIED_FROM_ID = common.LABEL_COPIED_FROM_ID
COPIED_FROM = common.ANNOTATION_COPIED_FROM
ROTATE_KEYS = common.ANNOTATION_ROTATE_KEYS

# category label value -> the copy flag that allows it
CATEGORY_FLAGS: dict[str, str] = {
    "file-providers": "fileProviders",
    "gateway-routes": "gatewayRoutes",
    "security-config": "securityConfig",
    "oauth-clients": "securityConfig",
    "environment-variables": "environmentVariables",
}
NEVER_COPIED = "auth-providers"
KINDS: tuple[Kind, ...] = ("ConfigMap", "Secret")

# GitOps tools own these on the source; on a copy they would make Argo CD prune or claim it.
_DROPPED_LABELS = {"app.kubernetes.io/instance", ENVIRONMENT_LABEL, common.LABEL_UID, PROVIDER_ID, COPIED_FROM_ID}
_DROPPED_ANNOTATIONS = {"kubectl.kubernetes.io/last-applied-configuration", COPIED_FROM}
_DROPPED_PREFIXES = ("argocd.argoproj.io/",)


def _keep(key: str, dropped: set[str]) -> bool:
    return key not in dropped and not key.startswith(_DROPPED_PREFIXES)


def rotate_keys_of(obj: dict[str, Any]) -> list[str]:
    """Keys named in the rotate annotation that the object really has."""
    wanted = (obj["metadata"].get("annotations") or {}).get(ROTATE_KEYS, "")
    data = obj.get("data") or {}
    return sorted({k.strip() for k in wanted.split(",") if k.strip() in data})


def fresh_secret_value() -> str:
    """A new random value for a rotated key, base64-encoded as Secret data is."""
    return base64.b64encode(secrets.token_urlsafe(32).encode()).decode()


def portable_body(source: dict[str, Any]) -> dict[str, Any]:
    """A ConfigMap/Secret as it could be created anywhere: name, labels and annotations without
    server-set metadata, GitOps tracking and envbranch's own bookkeeping; data, type, immutable."""
    meta = source["metadata"]
    labels = {k: v for k, v in (meta.get("labels") or {}).items() if _keep(k, _DROPPED_LABELS)}
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if _keep(k, _DROPPED_ANNOTATIONS)}
    body: dict[str, Any] = {"metadata": {"name": meta["name"], "labels": labels, "annotations": annotations}}
    for key in ("data", "binaryData", "type", "immutable"):
        if source.get(key) is not None:
            body[key] = source[key]
    return body


def copy_body(kind: Kind, source: dict[str, Any], owner_labels: dict[str, str], category: str,
              new_value: Callable[[], str] = fresh_secret_value) -> tuple[dict[str, Any], list[str]]:
    """The copy of one ConfigMap/Secret, labelled as the branch's (`owner_labels`), and the Secret keys
    given fresh values."""
    meta = source["metadata"]
    body = portable_body(source)
    labels, annotations = body["metadata"]["labels"], body["metadata"]["annotations"]
    labels.update(owner_labels)
    annotations[COPIED_FROM] = f"{meta['namespace']}/{meta['name']}"
    if category == "file-providers":
        old_id = (meta.get("labels") or {}).get(PROVIDER_ID)
        labels[PROVIDER_ID] = str(uuid.uuid4())
        if old_id:
            labels[COPIED_FROM_ID] = old_id
    rotated: list[str] = []
    if kind == "Secret":
        rotated = rotate_keys_of(source)
        body["data"] = {**(source.get("data") or {}), **{k: new_value() for k in rotated}}
    return body, rotated


@dataclass
class CopyReport:
    copied: dict[str, int] = field(default_factory=dict)  # copy flag -> objects copied
    rotations: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)


def planned_copies(kube: KubeClient, source_namespace: str, flags: dict[str, bool]) -> tuple[
        list[tuple[Kind, dict[str, Any], str]], list[tuple[Kind, dict[str, Any]]]]:
    """(what to copy: kind, object, category; auth providers found, never copied)."""
    wanted = sorted(cat for cat, flag in CATEGORY_FLAGS.items() if flags.get(flag))
    to_copy: list[tuple[Kind, dict[str, Any], str]] = []
    never: list[tuple[Kind, dict[str, Any]]] = []
    for kind in KINDS:
        if wanted:
            selector = f"{CATEGORY_LABEL} in ({','.join(wanted)})"
            for obj in configuration.list_labelled(kube, kind, source_namespace, selector):
                to_copy.append((kind, obj, obj["metadata"]["labels"][CATEGORY_LABEL]))
        for obj in configuration.list_labelled(kube, kind, source_namespace, f"{CATEGORY_LABEL}={NEVER_COPIED}"):
            never.append((kind, obj))
    to_copy.sort(key=lambda t: (t[2], t[0], t[1]["metadata"]["name"]))
    return to_copy, never
