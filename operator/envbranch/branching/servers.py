"""DatabaseServer reconcile: probe the server and report Ready, version and strategies."""

from __future__ import annotations

from typing import Any

from envbranch.api import common
from envbranch.branching import database
from envbranch.branching.conditions import now_rfc3339, set_condition
from envbranch.kube import events, resources


def probe_server(body: dict[str, Any]) -> bool:
    """Probe and write status when something changed. True when the server is Ready."""
    meta = body["metadata"]
    status: dict[str, Any] = dict(body.get("status") or {})
    generation = int(meta.get("generation") or 1)
    ok, reason, message, caps = database.probe(meta["namespace"], meta["name"])
    conds = set_condition(list(status.get("conditions") or []), common.CONDITION_READY, ok, reason, message,
                          generation)
    wanted: dict[str, Any] = {"conditions": conds, "observedGeneration": generation, **caps}
    changed = {k: v for k, v in wanted.items() if status.get(k) != v}
    if changed:
        changed["lastProbeTime"] = now_rfc3339()
        resources.patch_status(resources.DATABASESERVERS, meta["namespace"], meta["name"], changed)
        was_ready = any(c.get("type") == common.CONDITION_READY and c.get("status") == "True"
                        for c in status.get("conditions") or [])
        if ok != was_ready or "conditions" not in status:
            events.emit(body, reason, message, warning=not ok)
    return ok
