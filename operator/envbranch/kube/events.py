"""Kubernetes Events on an Environment or DatabaseServer: what `kubectl describe` shows."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from kubernetes import client

from envbranch.kube.client import KubeClient

log = logging.getLogger(__name__)
COMPONENT = "envbranch-operator"


def emit(kube: KubeClient, obj: dict[str, Any], reason: str, message: str, *, warning: bool = False) -> None:
    """Post an Event about `obj` (a custom object body). Best effort: an Event lost is not a failure."""
    meta = obj["metadata"]
    now = dt.datetime.now(dt.UTC)
    event = client.CoreV1Event(
        metadata=client.V1ObjectMeta(generate_name=f"{meta['name']}.", namespace=meta["namespace"]),
        involved_object=client.V1ObjectReference(
            api_version=obj["apiVersion"], kind=obj["kind"], name=meta["name"],
            namespace=meta["namespace"], uid=meta["uid"], resource_version=meta.get("resourceVersion")),
        reason=reason, message=message[:1024], type="Warning" if warning else "Normal",
        source=client.V1EventSource(component=COMPONENT), reporting_component=COMPONENT,
        reporting_instance=COMPONENT, first_timestamp=now, last_timestamp=now, count=1,
    )
    try:
        kube.core().create_namespaced_event(meta["namespace"], event)
    except Exception as exc:  # never let reporting break the reconcile
        log.warning("could not post Event %s on %s/%s: %s", reason, meta["namespace"], meta["name"], exc)
